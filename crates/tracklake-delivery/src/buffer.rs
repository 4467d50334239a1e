//! A delivery range encoded as Parquet while it is read: one file writer
//! per lake partition, fed a few thousand rows at a time, so a buffer costs
//! its compressed files and small open pages, not its events' JSON. Each
//! batch of rows is encoded on two threads (alternate columns), as the
//! columns are independent.

use std::collections::{BTreeMap, HashMap};

use arrow_array::RecordBatch;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::file::writer::SerializedFileWriter;
use tracklake_table::Change;

use crate::encode::{Columns, ROW_GROUP_ROWS, SCHEMA, parquet_properties};
use crate::partitions::{Encoded, encoded_file, errors_file};
use crate::row::Row;
use crate::{Error, Lake};

/// Users whose changes up to a sequence number must not be published.
pub(crate) type Erasing = HashMap<String, u64>;

/// Rows held as Arrow columns, across partitions, before they are encoded:
/// bounds that part of a buffer's memory.
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
    /// Rows in Arrow columns, not yet encoded.
    pending: usize,
}

/// One partition's file: the rows not yet encoded, the open row group's
/// column writers (by their index in [`SCHEMA`]), and the file so far.
struct Part {
    columns: Columns,
    writers: Vec<(usize, ArrowColumnWriter)>,
    /// Rows in the open row group.
    rows: usize,
    file: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    /// Row groups closed so far.
    groups: usize,
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
            let mut row = match Row::decode(&change.json) {
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
                self.encode()?;
            }
        }
        Ok(())
    }

    /// Encodes the rows held, in every partition: even columns here, odd
    /// ones on a second thread.
    fn encode(&mut self) -> Result<(), Error> {
        let mut even = Vec::new();
        let mut odd = Vec::new();
        for part in self.parts.values_mut() {
            if part.columns.is_empty() {
                continue;
            }
            let batch = part.columns.finish()?;
            part.rows += batch.num_rows();
            let (e, o): (Vec<_>, Vec<_>) = std::mem::take(&mut part.writers)
                .into_iter()
                .partition(|(i, _)| i % 2 == 0);
            even.push((batch.clone(), e));
            odd.push((batch, o));
        }
        self.pending = 0;
        if even.is_empty() {
            return Ok(());
        }
        let (even, odd) = std::thread::scope(|scope| {
            let helper = scope.spawn(|| encode_columns(odd));
            let even = encode_columns(even);
            // A panic in the helper is a bug: let it surface as one.
            let odd = helper
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (even, odd)
        });
        let parts = self.parts.values_mut().filter(|p| p.writers.is_empty());
        for (part, (even, odd)) in parts.zip(even?.into_iter().zip(odd?)) {
            part.writers = even;
            part.writers.extend(odd);
            part.writers.sort_by_key(|(i, _)| *i);
            if part.rows >= ROW_GROUP_ROWS {
                part.close_group()?;
            }
        }
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

/// Encodes each batch into its column writers.
fn encode_columns(
    jobs: Vec<(RecordBatch, Vec<(usize, ArrowColumnWriter)>)>,
) -> Result<Vec<Vec<(usize, ArrowColumnWriter)>>, Error> {
    jobs.into_iter()
        .map(|(batch, mut writers)| {
            for (i, writer) in &mut writers {
                for leaf in
                    compute_leaves(SCHEMA.field(*i), batch.column(*i)).map_err(Error::Parquet)?
                {
                    writer.write(&leaf).map_err(Error::Parquet)?;
                }
            }
            Ok(writers)
        })
        .collect()
}

impl Part {
    fn new() -> Result<Self, Error> {
        let properties = parquet_properties()?
            .into_builder()
            .set_data_page_size_limit(PAGE_BYTES)
            .set_dictionary_page_size_limit(PAGE_BYTES)
            .build();
        let (file, factory) = ArrowWriter::try_new(Vec::new(), SCHEMA.clone(), Some(properties))
            .map_err(Error::Parquet)?
            .into_serialized_writer()
            .map_err(Error::Parquet)?;
        let writers = column_writers(&factory, 0)?;
        Ok(Part {
            columns: Columns::with_capacity(0),
            writers,
            rows: 0,
            file,
            factory,
            groups: 0,
        })
    }

    /// Closes the open row group into the file and opens the next.
    fn close_group(&mut self) -> Result<(), Error> {
        let next = column_writers(&self.factory, self.groups + 1)?;
        let writers = std::mem::replace(&mut self.writers, next);
        let mut group = self.file.next_row_group().map_err(Error::Parquet)?;
        for (_, writer) in writers {
            let chunk = writer.close().map_err(Error::Parquet)?;
            chunk
                .append_to_row_group(&mut group)
                .map_err(Error::Parquet)?;
        }
        group.close().map_err(Error::Parquet)?;
        self.groups += 1;
        self.rows = 0;
        Ok(())
    }

    /// The whole file (the rows held must have been encoded).
    fn finish(mut self) -> Result<Vec<u8>, Error> {
        if self.rows > 0 {
            self.close_group()?;
        }
        self.file.into_inner().map_err(Error::Parquet)
    }
}

/// Column writers for row group `index`, with their index in [`SCHEMA`].
fn column_writers(
    factory: &ArrowRowGroupWriterFactory,
    index: usize,
) -> Result<Vec<(usize, ArrowColumnWriter)>, Error> {
    Ok(factory
        .create_column_writers(index)
        .map_err(Error::Parquet)?
        .into_iter()
        .enumerate()
        .collect())
}
