//! Encoding a delivery: the changes `(from, to]` as one file per lake
//! partition they touch, and the records that cannot be read as one file
//! of `errors/`. Parquet goes through [`ParquetBuffer`], which delivery
//! also fills as it reads.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use tracklake_table::Change;

use crate::buffer::ParquetBuffer;
use crate::encode::{self, Format};
use crate::lake::partition_day;
use crate::{Error, Lake};

/// One encoded file: where it goes, its partition's UTC date, its contents.
#[derive(Clone)]
pub(crate) struct EncodedFile {
    pub path: object_store::path::Path,
    pub day: NaiveDate,
    pub body: bytes::Bytes,
}

/// What encoding `(from, to]` made.
#[derive(Clone)]
pub(crate) struct Encoded {
    pub files: Vec<EncodedFile>,
    /// Records that could not be read, with the reason: `errors/…`.
    pub errors: Option<(object_store::path::Path, bytes::Bytes)>,
    /// When the oldest event was received.
    pub oldest: Option<DateTime<Utc>>,
    /// Rows written to the files.
    pub records: usize,
    /// Records that could not be read, written to `errors/` instead.
    pub failed: usize,
}

/// One file per partition touched by `(from, to]`, named after that range;
/// records that cannot be read go to `errors/` with the reason.
pub(crate) fn encode_partitions(
    lake: &Lake,
    changes: &[&Change],
    from: u64,
    to: u64,
) -> Result<Encoded, Error> {
    if lake.format() == Format::Parquet {
        let mut buffer = ParquetBuffer::default();
        buffer.append(lake, changes.iter().copied())?;
        return buffer.finish(lake, from, to);
    }
    let mut failures = Vec::new();
    let mut events = Vec::with_capacity(changes.len());
    for change in changes {
        match lake.event_of(change) {
            Ok(event) => events.push(event),
            Err(error) => failures.push((change.seq, change.json.as_slice(), error.to_string())),
        }
    }
    let files = by_partition(lake, events.iter().collect(), |e| e.event_at)
        .into_iter()
        .map(|(partition, group)| {
            let body = encode::ndjson(&group, lake.gzip())?;
            encoded_file(lake, &partition, from, to, body)
        })
        .collect::<Result<_, Error>>()?;
    let failures: Vec<_> = failures
        .iter()
        .map(|(seq, json, reason)| (*seq, *json, reason.as_str()))
        .collect();
    Ok(Encoded {
        files,
        errors: errors_file(&failures, from, to)?,
        oldest: events.iter().map(|e| e.received_at).min(),
        records: events.len(),
        failed: failures.len(),
    })
}

/// The `errors/` file of `(from, to]`, when some records could not be read.
pub(crate) fn errors_file(
    failures: &[(u64, &[u8], &str)],
    from: u64,
    to: u64,
) -> Result<Option<(object_store::path::Path, bytes::Bytes)>, Error> {
    let Some((first_seq, _, reason)) = failures.first() else {
        return Ok(None);
    };
    tracing::error!(
        records = failures.len(),
        first_seq,
        reason,
        "records that cannot be read go to the lake's errors/"
    );
    Ok(Some((
        crate::lake::error_path(from + 1, to),
        error_lines(failures)?.into(),
    )))
}

pub(crate) fn encoded_file(
    lake: &Lake,
    partition: &str,
    from: u64,
    to: u64,
    body: Vec<u8>,
) -> Result<EncodedFile, Error> {
    let day = partition_day(partition)
        .ok_or_else(|| Error::Lake(format!("{partition} names no date")))?;
    Ok(EncodedFile {
        path: lake.file_path(partition, from + 1, to),
        day,
        body: body.into(),
    })
}

/// One JSON object per failed record: its sequence number, why it failed,
/// and the record as stored.
fn error_lines(failures: &[(u64, &[u8], &str)]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for (seq, json, reason) in failures {
        let line = serde_json::json!({
            "seq": seq,
            "error": reason,
            "record": String::from_utf8_lossy(json),
        });
        serde_json::to_writer(&mut out, &line).map_err(Error::EncodeJson)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Groups items by the lake partition of their time, keeping their order.
fn by_partition<T>(
    lake: &Lake,
    items: Vec<T>,
    at: impl Fn(&T) -> DateTime<Utc>,
) -> BTreeMap<String, Vec<T>> {
    // Partitions are whole hours or days: name each hour once, not each item.
    let mut names: HashMap<i64, String> = HashMap::new();
    let mut partitions: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for item in items {
        let time = at(&item);
        let name = names
            .entry(time.timestamp().div_euclid(3600))
            .or_insert_with(|| lake.partition(time));
        match partitions.get_mut(name.as_str()) {
            Some(group) => group.push(item),
            None => {
                partitions.insert(name.clone(), vec![item]);
            }
        }
    }
    partitions
}
