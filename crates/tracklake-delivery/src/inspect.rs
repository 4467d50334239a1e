//! Reading the lake back: what `tracklake lake verify` and the tests check.
//! It reads files with the `parquet` crate and `serde_json` directly, not
//! through the writer's code; of a Parquet file only the footer and the two
//! id columns are fetched.

use std::io::Read;

use arrow_array::{Array, StringArray};
use object_store::ObjectMeta;
use object_store::path::Path;
// Deprecated in parquet 59 in favour of one's own `AsyncFileReader`; it
// still reads ranges through `object_store`, which is all this needs.
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use crate::{Error, Lake};

/// One lake file and the events in it.
#[derive(Debug, Clone)]
pub struct FileContents {
    pub path: Path,
    pub bytes: u64,
    /// `(user_id, event_id)` of every row, in file order.
    pub events: Vec<(String, String)>,
}

impl FileContents {
    /// The partition part of the path (`dt=2026-11-27`).
    pub fn partition(&self) -> String {
        let p = self.path.as_ref();
        let inner = p.strip_prefix("events/").unwrap_or(p);
        inner.rsplit_once('/').map_or("", |(dir, _)| dir).to_owned()
    }
}

/// Every file of the lake's current version (a Delta lake's snapshot, a
/// plain lake's [`Lake::live_files`]) with the ids of its events.
pub async fn read_lake(lake: &Lake) -> Result<Vec<FileContents>, Error> {
    let files = match lake.is_delta() {
        true => lake
            .snapshot()
            .await?
            .files
            .iter()
            .map(|f| f.meta())
            .collect(),
        false => lake.live_files().await?,
    };
    let mut out = Vec::new();
    for meta in files {
        let name = meta.location.as_ref().to_owned();
        if name.ends_with(".parquet") {
            let events = parquet_ids(lake, &meta).await?;
            out.push(FileContents {
                path: meta.location,
                bytes: meta.size,
                events,
            });
            continue;
        }
        let data = lake.read(&meta.location).await?;
        let events = if name.ends_with(".json.gz") {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&data[..])
                .read_to_string(&mut text)
                .map_err(Error::Gzip)?;
            json_ids(&text)?
        } else if name.ends_with(".json") {
            json_ids(&String::from_utf8_lossy(&data))?
        } else {
            continue; // not ours
        };
        out.push(FileContents {
            path: meta.location,
            bytes: meta.size,
            events,
        });
    }
    Ok(out)
}

#[allow(deprecated)]
async fn parquet_ids(lake: &Lake, meta: &ObjectMeta) -> Result<Vec<(String, String)>, Error> {
    use futures_util::TryStreamExt;
    let reader =
        ParquetObjectReader::new(lake.store(), meta.location.clone()).with_file_size(meta.size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(Error::Parquet)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["event_id", "user_id"]);
    let batches: Vec<_> = builder
        .with_projection(mask)
        .build()
        .map_err(Error::Parquet)?
        .try_collect()
        .await
        .map_err(Error::Parquet)?;
    let mut ids = Vec::new();
    for batch in batches {
        let (event_ids, users) = (
            text_column(&batch, "event_id")?,
            text_column(&batch, "user_id")?,
        );
        for i in 0..batch.num_rows() {
            if !event_ids.is_null(i) {
                ids.push((users.value(i).to_owned(), event_ids.value(i).to_owned()));
            }
        }
    }
    Ok(ids)
}

fn json_ids(text: &str) -> Result<Vec<(String, String)>, Error> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).map_err(Error::EncodeJson)?;
            Ok(json_ids_of(&v))
        })
        .collect()
}

/// A string column of a lake file's batch.
pub(crate) fn text_column(
    batch: &arrow_array::RecordBatch,
    name: &str,
) -> Result<StringArray, Error> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
        .ok_or_else(|| Error::Config(format!("a lake file lacks the string column {name}")))
}

/// `(user_id, event_id)` of an NDJSON event, the user id in its text form.
pub(crate) fn json_ids_of(v: &serde_json::Value) -> (String, String) {
    let user = match &v["user_id"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (user, v["event_id"].as_str().unwrap_or_default().to_owned())
}
