//! Rewriting lake files with some rows left out: compaction keeps the first
//! copy of each event, erasure keeps everyone's but one user's. Rows are
//! copied as they are (Parquet batches, NDJSON lines), never re-encoded
//! from events, so a rewrite cannot change what it keeps.

use std::io::{Read, Write};

use arrow_array::BooleanArray;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::Error;
use crate::encode::{conform, parquet_properties};
use crate::inspect::{json_ids_of, text_column};

/// Rows per batch read from a lake file: what a rewrite or a merge holds
/// decoded beyond its own bound.
pub(crate) const READ_ROWS: usize = 16 * 1024;

/// The record batches of a Parquet file (`READ_ROWS` rows each): all the
/// lake's columns (null where the file predates one), or just `column`.
pub(crate) fn parquet_batches(
    data: bytes::Bytes,
    column: Option<&str>,
) -> Result<impl Iterator<Item = Result<arrow_array::RecordBatch, Error>>, Error> {
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(data)
        .map_err(Error::Parquet)?
        .with_batch_size(READ_ROWS);
    let whole = column.is_none();
    if let Some(column) = column {
        let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), [column]);
        builder = builder.with_projection(mask);
    }
    let reader = builder.build().map_err(Error::Parquet)?;
    Ok(reader.map(move |batch| {
        let batch = batch.map_err(Error::Arrow)?;
        if whole { conform(batch) } else { Ok(batch) }
    }))
}

/// The rows of Parquet `sources` for which `keep(user_id, event_id)` holds,
/// as one Parquet file, and how many there are.
pub(crate) fn filter_parquet(
    sources: Vec<bytes::Bytes>,
    mut keep: impl FnMut(&str, &str) -> bool,
) -> Result<(Vec<u8>, usize), Error> {
    let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
    let mut rows = 0;
    for source in sources {
        for batch in parquet_batches(source, None)? {
            let batch = batch?;
            let (users, ids) = (
                text_column(&batch, "user_id")?,
                text_column(&batch, "event_id")?,
            );
            let mask: BooleanArray = (0..batch.num_rows())
                .map(|i| Some(keep(users.value(i), ids.value(i))))
                .collect();
            let kept =
                arrow_select::filter::filter_record_batch(&batch, &mask).map_err(Error::Arrow)?;
            rows += kept.num_rows();
            if writer.is_none() {
                writer = Some(
                    ArrowWriter::try_new(Vec::new(), kept.schema(), Some(parquet_properties()?))
                        .map_err(Error::Parquet)?,
                );
            }
            if let Some(w) = writer.as_mut() {
                w.write(&kept).map_err(Error::Parquet)?;
            }
        }
    }
    let body = match writer {
        Some(w) => w.into_inner().map_err(Error::Parquet)?,
        None => crate::encode(&[], crate::Format::Parquet, false)?,
    };
    Ok((body, rows))
}

/// The lines of NDJSON `sources` (gzipped when `gzip`) for which
/// `keep(user_id, event_id)` holds, and how many there are.
pub(crate) fn filter_ndjson(
    sources: Vec<bytes::Bytes>,
    gzip: bool,
    mut keep: impl FnMut(&str, &str) -> bool,
) -> Result<(Vec<u8>, usize), Error> {
    let mut out = Vec::new();
    let mut rows = 0;
    for source in sources {
        for line in ndjson_text(&source, gzip)?
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line).map_err(Error::EncodeJson)?;
            let (user, id) = json_ids_of(&v);
            if keep(&user, &id) {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
                rows += 1;
            }
        }
    }
    if !gzip {
        return Ok((out, rows));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&out).map_err(Error::Gzip)?;
    Ok((gz.finish().map_err(Error::Gzip)?, rows))
}

fn ndjson_text(source: &[u8], gzip: bool) -> Result<String, Error> {
    if !gzip {
        return Ok(String::from_utf8_lossy(source).into_owned());
    }
    let mut text = String::new();
    flate2::read::GzDecoder::new(source)
        .read_to_string(&mut text)
        .map_err(Error::Gzip)?;
    Ok(text)
}

/// How many rows of one lake file (`path` tells its format) belong to
/// `user`: reads only the `user_id` column of a Parquet file.
pub(crate) fn rows_of_user(path: &str, data: bytes::Bytes, user: &str) -> Result<usize, Error> {
    if path.ends_with(".parquet") {
        let mut n = 0;
        for batch in parquet_batches(data, Some("user_id"))? {
            let users = text_column(&batch?, "user_id")?;
            n += users.iter().filter(|u| *u == Some(user)).count();
        }
        return Ok(n);
    }
    let text = ndjson_text(&data, path.ends_with(".gz"))?;
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(Error::EncodeJson)?;
        n += usize::from(json_ids_of(&v).0 == user);
    }
    Ok(n)
}

/// The `user_id` column of a Parquet file, in file order.
#[cfg(test)]
pub(crate) fn user_ids(data: bytes::Bytes) -> Result<Vec<String>, Error> {
    let mut users = Vec::new();
    for batch in parquet_batches(data, Some("user_id"))? {
        let column = text_column(&batch?, "user_id")?;
        users.extend(column.iter().flatten().map(str::to_owned));
    }
    Ok(users)
}
