//! Lake file formats. Parquet: one fixed schema, zstd, dictionary encoding.
//! NDJSON: one event object per line (what Athena's JSON SerDe needs), the
//! article's field names, optionally gzipped.
//!
//! Parquet columns (the `dt` partition lives in the path):
//!
//! | column | type |
//! |---|---|
//! | `event_id`, `user_id`, `event_type` | string (`user_id` in its text form) |
//! | `event_at`, `received_at` | timestamp, microseconds, UTC |
//! | `user_agent`, `ip_address` | string, nullable |
//! | `properties` | string: the JSON object as text |
//! | `device_type` | string |
//! | `device_os`, `device_os_version`, `device_browser`, `device_browser_version`, `device_brand`, `device_model` | string, nullable |
//! | `device_is_bot` | boolean |

use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{BooleanBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, compute_leaves};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use tracklake_event::Event;

use crate::Error;
use crate::row::Row;

/// How lake files are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Parquet,
    Ndjson,
}

impl Format {
    /// The file extension, with gzip when asked for NDJSON.
    pub fn extension(self, gzip: bool) -> &'static str {
        match (self, gzip) {
            (Format::Parquet, _) => "parquet",
            (Format::Ndjson, false) => "json",
            (Format::Ndjson, true) => "json.gz",
        }
    }
}

/// Rows per Parquet row group: large enough for scans.
const ROW_GROUP_ROWS: usize = 1024 * 1024;
/// Rows per Arrow batch handed to the writer: bounds the memory of encoding.
const ARROW_BATCH_ROWS: usize = 64 * 1024;

pub static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let time = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        )
    };
    Arc::new(Schema::new(vec![
        text("event_id", false),
        text("user_id", false),
        text("event_type", false),
        time("event_at"),
        time("received_at"),
        text("user_agent", true),
        text("ip_address", true),
        text("properties", false),
        text("device_type", false),
        text("device_os", true),
        text("device_os_version", true),
        text("device_browser", true),
        text("device_browser_version", true),
        text("device_brand", true),
        text("device_model", true),
        Field::new("device_is_bot", DataType::Boolean, false),
    ]))
});

/// Encodes events as one file of `format`.
pub fn encode(events: &[&Event], format: Format, gzip: bool) -> Result<Vec<u8>, Error> {
    match format {
        Format::Parquet => parquet(&rows_of(events)?),
        Format::Ndjson => ndjson(events, gzip),
    }
}

fn rows_of<'a>(events: &[&'a Event]) -> Result<Vec<Row<'a>>, Error> {
    events.iter().map(|e| Row::from_event(e)).collect()
}

pub(crate) fn ndjson(events: &[&Event], gzip: bool) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(events.len() * 512);
    for event in events {
        serde_json::to_writer(&mut out, event).map_err(Error::EncodeJson)?;
        out.push(b'\n');
    }
    if !gzip {
        return Ok(out);
    }
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(out.len() / 4),
        flate2::Compression::default(),
    );
    gz.write_all(&out).map_err(Error::Gzip)?;
    gz.finish().map_err(Error::Gzip)
}

/// The events as one Arrow batch in [`SCHEMA`].
pub fn record_batch(events: &[&Event]) -> Result<RecordBatch, Error> {
    rows_batch(&rows_of(events)?)
}

/// The rows as one Arrow batch in [`SCHEMA`].
fn rows_batch(rows: &[Row]) -> Result<RecordBatch, Error> {
    let n = rows.len();
    let texts = || StringBuilder::with_capacity(n, n * 16);
    let (mut id, mut user, mut kind, mut ua, mut ip, mut props) =
        (texts(), texts(), texts(), texts(), texts(), texts());
    let (mut d_type, mut d_os, mut d_osv, mut d_br, mut d_brv, mut d_brand, mut d_model) = (
        texts(),
        texts(),
        texts(),
        texts(),
        texts(),
        texts(),
        texts(),
    );
    let utc = |b: TimestampMicrosecondBuilder| b.with_timezone("UTC");
    let (mut at, mut received) = (
        utc(TimestampMicrosecondBuilder::with_capacity(n)),
        utc(TimestampMicrosecondBuilder::with_capacity(n)),
    );
    let mut bot = BooleanBuilder::with_capacity(n);
    let mut address = String::new();
    for e in rows {
        id.append_value(&e.event_id);
        user.append_value(&e.user_id);
        kind.append_value(&e.event_type);
        at.append_value(e.event_at.timestamp_micros());
        received.append_value(e.received_at.timestamp_micros());
        ua.append_option(e.user_agent.as_deref());
        match e.ip_address {
            Some(a) => {
                address.clear();
                write!(address, "{a}").expect("writing to a String");
                ip.append_value(&address);
            }
            None => ip.append_null(),
        }
        props.append_value(&e.properties);
        let d = &e.device;
        d_type.append_value(&d.kind);
        d_os.append_option(d.os.as_deref());
        d_osv.append_option(d.os_version.as_deref());
        d_br.append_option(d.browser.as_deref());
        d_brv.append_option(d.browser_version.as_deref());
        d_brand.append_option(d.brand.as_deref());
        d_model.append_option(d.model.as_deref());
        bot.append_value(d.is_bot);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(user.finish()),
        Arc::new(kind.finish()),
        Arc::new(at.finish()),
        Arc::new(received.finish()),
        Arc::new(ua.finish()),
        Arc::new(ip.finish()),
        Arc::new(props.finish()),
        Arc::new(d_type.finish()),
        Arc::new(d_os.finish()),
        Arc::new(d_osv.finish()),
        Arc::new(d_br.finish()),
        Arc::new(d_brv.finish()),
        Arc::new(d_brand.finish()),
        Arc::new(d_model.finish()),
        Arc::new(bot.finish()),
    ];
    RecordBatch::try_new(SCHEMA.clone(), columns).map_err(Error::Arrow)
}

/// How every Parquet file of the lake is written.
pub(crate) fn parquet_properties() -> Result<WriterProperties, Error> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(Error::Parquet)?,
        ))
        .set_dictionary_enabled(true)
        // Unique per event: a dictionary only costs time before the writer
        // falls back to plain encoding.
        .set_column_dictionary_enabled(ColumnPath::from("event_id"), false)
        .set_column_dictionary_enabled(ColumnPath::from("properties"), false)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build())
}

/// The rows as one Parquet file. The columns of each row group are
/// encoded and compressed on two threads: they are independent, and this
/// is most of delivery's work.
pub(crate) fn parquet(rows: &[Row]) -> Result<Vec<u8>, Error> {
    let props = parquet_properties()?;
    let writer =
        ArrowWriter::try_new(Vec::new(), SCHEMA.clone(), Some(props)).map_err(Error::Parquet)?;
    let (mut file, columns) = writer.into_serialized_writer().map_err(Error::Parquet)?;
    for (index, group) in rows.chunks(ROW_GROUP_ROWS).enumerate() {
        let batches = group
            .chunks(ARROW_BATCH_ROWS)
            .map(rows_batch)
            .collect::<Result<Vec<_>, _>>()?;
        // Alternate columns between the threads: the heavy ones come first.
        let (even, odd): (Vec<_>, Vec<_>) = columns
            .create_column_writers(index)
            .map_err(Error::Parquet)?
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        let mut chunks = std::thread::scope(|scope| {
            let helper = scope.spawn(|| encode_columns(odd, &batches));
            let mut chunks = encode_columns(even, &batches)?;
            // A panic in the helper is a bug: let it surface as one.
            chunks.extend(
                helper
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))?,
            );
            Ok::<_, Error>(chunks)
        })?;
        chunks.sort_by_key(|(i, _)| *i);
        let mut row_group = file.next_row_group().map_err(Error::Parquet)?;
        for (_, chunk) in chunks {
            chunk
                .append_to_row_group(&mut row_group)
                .map_err(Error::Parquet)?;
        }
        row_group.close().map_err(Error::Parquet)?;
    }
    file.into_inner().map_err(Error::Parquet)
}

/// Encodes the given columns (by their index in [`SCHEMA`]) of every batch.
fn encode_columns(
    writers: Vec<(usize, ArrowColumnWriter)>,
    batches: &[RecordBatch],
) -> Result<Vec<(usize, ArrowColumnChunk)>, Error> {
    writers
        .into_iter()
        .map(|(i, mut writer)| {
            for batch in batches {
                for leaf in
                    compute_leaves(SCHEMA.field(i), batch.column(i)).map_err(Error::Parquet)?
                {
                    writer.write(&leaf).map_err(Error::Parquet)?;
                }
            }
            Ok((i, writer.close().map_err(Error::Parquet)?))
        })
        .collect()
}

#[cfg(test)]
mod tests;
