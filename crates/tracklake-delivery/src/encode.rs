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
//! | `device_bot` | string, nullable: `ai`, `search`, `monitor`, `headless` or `crawler` for a bot |
//! | `url`, `path`, `referrer_host`, `utm_source`, `utm_medium`, `utm_campaign`, `session_id` | string, nullable (see `tracklake_event::Web`) |
//!
//! Columns are only ever added, nullable, at the end: a file written
//! before one was added reads it as null ([`conform`]).

use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use tracklake_event::{Event, Web};

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
    Arc::new(Schema::new(
        vec![
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
            text("device_bot", true),
        ]
        .into_iter()
        .chain(Web::COLUMNS.map(|name| text(name, true)))
        .collect::<Vec<_>>(),
    ))
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
    let mut columns = Columns::with_capacity(rows.len());
    for row in rows {
        columns.push(row);
    }
    columns.finish()
}

/// Arrow builders of the [`SCHEMA`] columns, filled a row at a time.
pub(crate) struct Columns {
    id: StringBuilder,
    user: StringBuilder,
    kind: StringBuilder,
    at: TimestampMicrosecondBuilder,
    received: TimestampMicrosecondBuilder,
    ua: StringBuilder,
    ip: StringBuilder,
    props: StringBuilder,
    /// `device_type` to `device_model`, in [`SCHEMA`] order.
    device: [StringBuilder; 7],
    bot: BooleanBuilder,
    bot_kind: StringBuilder,
    /// `url` to `session_id`, in [`SCHEMA`] order.
    web: [StringBuilder; 7],
    /// The text of an IP address, reused.
    address: String,
}

impl Columns {
    pub(crate) fn with_capacity(n: usize) -> Self {
        let texts = || StringBuilder::with_capacity(n, n * 16);
        let time = || TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        Columns {
            id: texts(),
            user: texts(),
            kind: texts(),
            at: time(),
            received: time(),
            ua: texts(),
            ip: texts(),
            props: texts(),
            device: std::array::from_fn(|_| texts()),
            bot: BooleanBuilder::with_capacity(n),
            bot_kind: StringBuilder::with_capacity(n, 0),
            web: std::array::from_fn(|_| StringBuilder::with_capacity(n, 0)),
            address: String::new(),
        }
    }

    /// Rows pushed since the last [`Columns::finish`].
    pub(crate) fn len(&self) -> usize {
        self.bot.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn push(&mut self, e: &Row) {
        self.id.append_value(&e.event_id);
        self.user.append_value(&e.user_id);
        self.kind.append_value(&e.event_type);
        self.at.append_value(e.event_at.timestamp_micros());
        self.received.append_value(e.received_at.timestamp_micros());
        self.ua.append_option(e.user_agent.as_deref());
        match e.ip_address {
            Some(a) => {
                self.address.clear();
                write!(self.address, "{a}").expect("writing to a String");
                self.ip.append_value(&self.address);
            }
            None => self.ip.append_null(),
        }
        self.props.append_value(&e.properties);
        let d = &e.device;
        let [d_type, d_os, d_osv, d_br, d_brv, d_brand, d_model] = &mut self.device;
        d_type.append_value(&d.kind);
        d_os.append_option(d.os.as_deref());
        d_osv.append_option(d.os_version.as_deref());
        d_br.append_option(d.browser.as_deref());
        d_brv.append_option(d.browser_version.as_deref());
        d_brand.append_option(d.brand.as_deref());
        d_model.append_option(d.model.as_deref());
        self.bot.append_value(d.is_bot);
        self.bot_kind.append_option(d.bot.as_deref());
        for (builder, value) in self.web.iter_mut().zip(e.web.values()) {
            builder.append_option(value);
        }
    }

    /// The rows pushed so far as one batch; the builders start empty again.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, Error> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.user.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.at.finish()),
            Arc::new(self.received.finish()),
            Arc::new(self.ua.finish()),
            Arc::new(self.ip.finish()),
            Arc::new(self.props.finish()),
        ];
        columns.extend(
            self.device
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.bot.finish()));
        columns.push(Arc::new(self.bot_kind.finish()));
        columns.extend(
            self.web
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        RecordBatch::try_new(SCHEMA.clone(), columns).map_err(Error::Arrow)
    }
}

/// `batch` (read from a lake file) with the columns of [`SCHEMA`]: those
/// its file was written without are null. An error if a column it has is
/// not the lake's, or not of the lake's type.
pub(crate) fn conform(batch: RecordBatch) -> Result<RecordBatch, Error> {
    if batch.schema().fields() == SCHEMA.fields() {
        return Ok(batch);
    }
    let columns = SCHEMA
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => Err(Error::Lake(format!(
                "a lake file's column {} is {}, not {}",
                field.name(),
                column.data_type(),
                field.data_type()
            ))),
            None if field.is_nullable() => Ok(arrow_array::new_null_array(
                field.data_type(),
                batch.num_rows(),
            )),
            None => Err(Error::Lake(format!(
                "a lake file lacks the column {}",
                field.name()
            ))),
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let schema = batch.schema();
    if let Some(extra) = schema
        .fields()
        .iter()
        .find(|f| SCHEMA.field_with_name(f.name()).is_err())
    {
        return Err(Error::Lake(format!(
            "a lake file has the column {}, which the lake does not",
            extra.name()
        )));
    }
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

/// The rows as one Parquet file.
pub(crate) fn parquet(rows: &[Row]) -> Result<Vec<u8>, Error> {
    let mut writer = ArrowWriter::try_new(Vec::new(), SCHEMA.clone(), Some(parquet_properties()?))
        .map_err(Error::Parquet)?;
    for chunk in rows.chunks(ARROW_BATCH_ROWS) {
        writer.write(&rows_batch(chunk)?).map_err(Error::Parquet)?;
    }
    writer.into_inner().map_err(Error::Parquet)
}

#[cfg(test)]
mod tests;
