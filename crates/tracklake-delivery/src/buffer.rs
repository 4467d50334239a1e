//! A delivery range encoded as Parquet while it is read: one file writer
//! per lake partition, fed a few thousand rows at a time, so a buffer costs
//! its compressed files and small open pages, not its events' JSON.
//! (Encoding each batch's columns on two threads was tried: no faster on
//! two cores, and more CPU per event.)
//!
//! Delivered files are compressed with LZ4, not zstd: parquet keeps a
//! codec in every column writer, and a zstd codec holds a compression and
//! a decompression context (a few hundred KB together). With 17 columns,
//! a day per partition and two buffers, a seed over 30 days held over 1,000
//! of them (heaptrack), and the server peaked near 360 MB where it now
//! peaks near 270. Compaction rewrites small files with zstd.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use tracklake_table::Change;

use crate::encode::{Columns, SCHEMA, parquet_properties};
use crate::partitions::{Encoded, encoded_file, errors_file};
use crate::row::Row;
use crate::{Error, Lake};

/// Rows held as Arrow columns, across partitions, before they are encoded:
/// bounds that part of a buffer's memory.
const WRITE_ROWS: usize = 8 * 1024;
/// Parquet page size while delivering: each partition's writer holds its
/// open pages uncompressed, so they are kept small (compaction rewrites
/// the files with the default pages).
const PAGE_BYTES: usize = 64 * 1024;
/// The codec of delivered files: stateless, unlike zstd (module docs).
pub(crate) const DELIVERED: Compression = Compression::LZ4_RAW;

/// A delivery range being read, already encoded as Parquet. A user erased
/// while it filled may be in it: publishing checks the erasure generation
/// and encodes the range again when one began (`publish::Buffered`).
#[derive(Default)]
pub(crate) struct ParquetBuffer {
    parts: BTreeMap<String, Part>,
    /// Partition names by hour since the epoch: partitions are whole hours
    /// or days, so each hour is named once, not each row.
    names: HashMap<i64, String>,
    /// Records that could not be read: sequence number, JSON, why.
    failures: Vec<(u64, Vec<u8>, String)>,
    oldest: Option<DateTime<Utc>>,
    records: usize,
    /// Rows in Arrow columns, not yet encoded.
    pending: usize,
}

/// One partition's file: the rows not yet encoded, and its writer.
struct Part {
    columns: Columns,
    writer: ArrowWriter<Vec<u8>>,
}

impl ParquetBuffer {
    /// Encodes `changes`, privacy applied; a change that cannot be read is
    /// kept for `errors/`.
    pub(crate) fn append<'a>(
        &mut self,
        lake: &Lake,
        changes: impl IntoIterator<Item = &'a Change>,
    ) -> Result<(), Error> {
        for change in changes {
            let mut row = match Row::decode(&change.json) {
                Ok(row) => row,
                Err(error) => {
                    let reason = error.to_string();
                    self.failures
                        .push((change.seq, change.json.clone(), reason));
                    continue;
                }
            };
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
                self.encode()?;
            }
        }
        Ok(())
    }

    /// Encodes the rows held, in every partition.
    fn encode(&mut self) -> Result<(), Error> {
        for part in self.parts.values_mut() {
            if !part.columns.is_empty() {
                let batch = part.columns.finish()?;
                part.writer.write(&batch).map_err(Error::Parquet)?;
            }
        }
        self.pending = 0;
        Ok(())
    }

    /// The files of `(from, to]`, and the `errors/` file.
    pub(crate) fn finish(mut self, lake: &Lake, from: u64, to: u64) -> Result<Encoded, Error> {
        self.encode()?;
        let files = self
            .parts
            .into_iter()
            .map(|(partition, part)| encoded_file(lake, &partition, from, to, part.finish()?))
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
            .set_compression(DELIVERED)
            .build();
        let writer = ArrowWriter::try_new(Vec::new(), SCHEMA.clone(), Some(properties))
            .map_err(Error::Parquet)?;
        Ok(Part {
            columns: Columns::with_capacity(0),
            writer,
        })
    }

    /// The whole file (the rows held must have been encoded).
    fn finish(self) -> Result<Vec<u8>, Error> {
        self.writer.into_inner().map_err(Error::Parquet)
    }
}
