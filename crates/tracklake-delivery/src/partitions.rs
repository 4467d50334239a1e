//! Encoding a delivery: the changes `(from, to]` as one file per lake
//! partition they touch, and the records that cannot be read as one file
//! of `errors/`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use tracklake_table::Change;

use crate::encode::{self, Format};
use crate::lake::partition_day;
use crate::row::Row;
use crate::{Error, Lake};

/// One encoded file: where it goes, its partition's UTC date, its contents.
pub(crate) struct EncodedFile {
    pub path: object_store::path::Path,
    pub day: NaiveDate,
    pub body: bytes::Bytes,
}

/// What encoding `(from, to]` made.
pub(crate) struct Encoded {
    pub files: Vec<EncodedFile>,
    /// Records that could not be read, with the reason: `errors/…`.
    pub errors: Option<(object_store::path::Path, bytes::Bytes)>,
    /// When the oldest event was received.
    pub oldest: Option<DateTime<Utc>>,
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
    let mut failures = Vec::new();
    let oldest;
    let files: Vec<EncodedFile> = match lake.format() {
        Format::Parquet => {
            let rows = decode_rows(lake, changes, &mut failures);
            oldest = rows.iter().map(|r| r.received_at).min();
            by_partition(lake, rows, |r| r.event_at)
                .into_iter()
                .map(|(partition, group)| {
                    let body = encode::parquet(&group)?;
                    encoded_file(lake, &partition, from, to, body)
                })
                .collect::<Result<_, Error>>()?
        }
        Format::Ndjson => {
            let mut events = Vec::with_capacity(changes.len());
            for change in changes {
                match lake.event_of(change) {
                    Ok(event) => events.push(event),
                    Err(error) => failures.push((*change, error.to_string())),
                }
            }
            oldest = events.iter().map(|e| e.received_at).min();
            by_partition(lake, events.iter().collect(), |e| e.event_at)
                .into_iter()
                .map(|(partition, group)| {
                    let body = encode::ndjson(&group, lake.gzip())?;
                    encoded_file(lake, &partition, from, to, body)
                })
                .collect::<Result<_, Error>>()?
        }
    };
    let mut errors = None;
    if !failures.is_empty() {
        tracing::error!(
            records = failures.len(),
            first_seq = failures[0].0.seq,
            reason = %failures[0].1,
            "records that cannot be read go to the lake's errors/"
        );
        errors = Some((
            crate::lake::error_path(from + 1, to),
            error_lines(&failures)?.into(),
        ));
    }
    Ok(Encoded {
        files,
        errors,
        oldest,
        failed: failures.len(),
    })
}

fn encoded_file(
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
fn error_lines(failures: &[(&Change, String)]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for (change, reason) in failures {
        let line = serde_json::json!({
            "seq": change.seq,
            "error": reason,
            "record": String::from_utf8_lossy(&change.json),
        });
        serde_json::to_writer(&mut out, &line).map_err(Error::EncodeJson)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The lake rows of `changes`, privacy applied; a change that cannot be
/// read goes to `failures`. Decoding is half of the encoding work, so the
/// second half is decoded on a second thread.
fn decode_rows<'a>(
    lake: &Lake,
    changes: &[&'a Change],
    failures: &mut Vec<(&'a Change, String)>,
) -> Vec<Row<'a>> {
    let decode = |part: &[&'a Change]| {
        let (mut rows, mut failed) = (Vec::with_capacity(part.len()), Vec::new());
        for &change in part {
            match Row::decode(&change.json) {
                Ok(mut row) => {
                    row.ip_address = row.ip_address.map(|ip| lake.privacy().address(ip));
                    rows.push(row);
                }
                Err(error) => failed.push((change, error.to_string())),
            }
        }
        (rows, failed)
    };
    let (first, second) = changes.split_at(changes.len() / 2);
    let ((mut rows, failed), (more, more_failed)) = std::thread::scope(|scope| {
        let helper = scope.spawn(|| decode(second));
        let first = decode(first);
        // A panic in the helper is a bug: let it surface as one.
        (
            first,
            helper
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    rows.extend(more);
    failures.extend(failed);
    failures.extend(more_failed);
    rows
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
