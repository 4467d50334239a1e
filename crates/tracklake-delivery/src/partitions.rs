//! Encoding a delivery: the changes `(from, to]` as one file per lake
//! partition they touch, and the records that cannot be read as one file
//! of `errors/`.
//!
//! Parquet is encoded as the changes are read ([`ParquetBuffer`]): one
//! writer per partition takes the rows a few thousand at a time, so a
//! delivery buffer costs its compressed size, not its events' JSON.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use parquet::arrow::ArrowWriter;
use tracklake_table::Change;

use crate::encode::{self, Columns, Format, SCHEMA, parquet_properties};
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

/// Users whose changes up to a sequence number must not be published.
pub(crate) type Erasing = HashMap<String, u64>;

/// Rows held as Arrow columns, across partitions, before they are handed
/// to the Parquet writers: bounds that part of a buffer's memory.
const WRITE_ROWS: usize = 8 * 1024;
/// Parquet page size while delivering: each partition's writer holds its
/// open pages uncompressed, so they are kept small (compaction rewrites
/// the files with the default pages).
const PAGE_BYTES: usize = 64 * 1024;

/// A delivery range being read, already encoded as Parquet.
pub(crate) struct ParquetBuffer {
    parts: BTreeMap<String, Part>,
    /// Partition names by hour since the epoch: partitions are whole hours
    /// or days, so each hour is named once, not each row.
    names: HashMap<i64, String>,
    /// Records that could not be read: sequence number, JSON, why.
    failures: Vec<(u64, Vec<u8>, String)>,
    oldest: Option<DateTime<Utc>>,
    records: usize,
    /// Rows in Arrow columns, not yet handed to the writers.
    pending: usize,
}

/// One partition's writer and the rows not yet handed to it.
struct Part {
    columns: Columns,
    writer: ArrowWriter<Vec<u8>>,
}

impl ParquetBuffer {
    pub(crate) fn new() -> Self {
        ParquetBuffer {
            parts: BTreeMap::new(),
            names: HashMap::new(),
            failures: Vec::new(),
            oldest: None,
            records: 0,
            pending: 0,
        }
    }

    /// Encodes `changes`, privacy applied, leaving out those of users being
    /// erased; a change that cannot be read is kept for `errors/`.
    pub(crate) fn append<'a>(
        &mut self,
        lake: &Lake,
        changes: impl IntoIterator<Item = &'a Change>,
        erasing: Option<&Erasing>,
    ) -> Result<(), Error> {
        for change in changes {
            let mut row = match crate::row::Row::decode(&change.json) {
                Ok(row) => row,
                Err(error) => {
                    let reason = error.to_string();
                    self.failures
                        .push((change.seq, change.json.clone(), reason));
                    continue;
                }
            };
            let erased = erasing
                .and_then(|users| users.get(row.user_id.as_ref()))
                .is_some_and(|through| change.seq <= *through);
            if erased {
                continue;
            }
            row.ip_address = row.ip_address.map(|ip| lake.privacy().address(ip));
            self.oldest = Some(
                self.oldest
                    .map_or(row.received_at, |o| o.min(row.received_at)),
            );
            let name = self
                .names
                .entry(row.event_at.timestamp().div_euclid(3600))
                .or_insert_with(|| lake.partition(row.event_at));
            if !self.parts.contains_key(name.as_str()) {
                self.parts.insert(name.clone(), Part::new()?);
            }
            let part = self
                .parts
                .get_mut(name.as_str())
                .ok_or_else(|| Error::Lake(format!("no writer for partition {name}")))?;
            part.columns.push(&row);
            self.records += 1;
            self.pending += 1;
            if self.pending >= WRITE_ROWS {
                for part in self.parts.values_mut() {
                    part.write()?;
                }
                self.pending = 0;
            }
        }
        Ok(())
    }

    /// The files of `(from, to]`, and the `errors/` file.
    pub(crate) fn finish(self, lake: &Lake, from: u64, to: u64) -> Result<Encoded, Error> {
        let files = self
            .parts
            .into_iter()
            .map(|(partition, mut part)| {
                part.write()?;
                let body = part.writer.into_inner().map_err(Error::Parquet)?;
                encoded_file(lake, &partition, from, to, body)
            })
            .collect::<Result<_, Error>>()?;
        let failures: Vec<_> = self
            .failures
            .iter()
            .map(|(seq, json, reason)| (*seq, json.as_slice(), reason.as_str()))
            .collect();
        Ok(Encoded {
            files,
            errors: errors_file(&failures, from, to)?,
            oldest: self.oldest,
            records: self.records,
            failed: failures.len(),
        })
    }
}

impl Part {
    fn new() -> Result<Self, Error> {
        let properties = parquet_properties()?
            .into_builder()
            .set_data_page_size_limit(PAGE_BYTES)
            .set_dictionary_page_size_limit(PAGE_BYTES)
            .build();
        let writer = ArrowWriter::try_new(Vec::new(), SCHEMA.clone(), Some(properties))
            .map_err(Error::Parquet)?;
        Ok(Part {
            columns: Columns::with_capacity(0),
            writer,
        })
    }

    /// Hands the rows held to the writer.
    fn write(&mut self) -> Result<(), Error> {
        if !self.columns.is_empty() {
            let batch = self.columns.finish()?;
            self.writer.write(&batch).map_err(Error::Parquet)?;
        }
        Ok(())
    }
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
        let mut buffer = ParquetBuffer::new();
        buffer.append(lake, changes.iter().copied(), None)?;
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
fn errors_file(
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
