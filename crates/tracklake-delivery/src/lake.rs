//! The lake: files under `events/`, partitioned by the event's UTC date,
//! written through `object_store` so a local directory and S3 share one path.
//!
//! File names: `events/dt=YYYY-MM-DD/part-<first>-<last>.<ext>`, where
//! `first..=last` are the change-stream sequence numbers (20 digits) of the
//! delivery that wrote it. A delivery publishes one file per partition it
//! touched, all with the same range; names are unique and a redo after a
//! crash rewrites the very same names. The `firehose` layout writes
//! `events/YYYY/MM/DD/HH/part-…` (by event time) for users migrating a
//! Firehose-fed Athena table.

use std::path::Path as FsPath;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::encode::Format;

/// The `[lake]` section of the config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    /// A directory (or `file://` URL); empty means `<data_dir>/lake`.
    pub url: String,
    pub format: Format,
    /// gzip NDJSON files (`.json.gz`).
    pub gzip: bool,
    pub layout: Layout,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `events/dt=YYYY-MM-DD/` (Hive-style, what Athena/Trino/Spark/DuckDB partition on).
    #[default]
    Hive,
    /// `events/YYYY/MM/DD/HH/`, Firehose's default prefix.
    Firehose,
}

pub struct Lake {
    store: Arc<dyn ObjectStore>,
    config: LakeConfig,
    /// Where the lake is, for messages.
    pub location: String,
}

impl Lake {
    pub fn open(config: &LakeConfig, data_dir: &FsPath) -> Result<Self, Error> {
        let dir = match config.url.as_str() {
            "" => data_dir.join("lake"),
            url if url.contains("://") && !url.starts_with("file://") => {
                return Err(Error::UnsupportedLake(url.to_owned()));
            }
            url => url.trim_start_matches("file://").into(),
        };
        std::fs::create_dir_all(&dir).map_err(|source| Error::CreateLake {
            path: dir.display().to_string(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(&dir).map_err(Error::Store)?;
        Ok(Lake {
            store: Arc::new(store),
            config: config.clone(),
            location: dir.display().to_string(),
        })
    }

    pub fn format(&self) -> Format {
        self.config.format
    }

    pub fn gzip(&self) -> bool {
        self.config.gzip
    }

    /// The partition directory of an event: `dt=2026-11-27` or `2026/11/27/13`.
    pub fn partition(&self, event_at: DateTime<Utc>) -> String {
        match self.config.layout {
            Layout::Hive => event_at.format("dt=%Y-%m-%d").to_string(),
            Layout::Firehose => event_at.format("%Y/%m/%d/%H").to_string(),
        }
    }

    pub fn file_path(&self, partition: &str, first: u64, last: u64) -> Path {
        let ext = self.config.format.extension(self.config.gzip);
        Path::from(format!(
            "events/{partition}/part-{first:020}-{last:020}.{ext}"
        ))
    }

    /// Publishes one file atomically: readers see all of it or nothing
    /// (a staged file renamed into place locally, a single PUT on S3).
    pub async fn publish(&self, path: &Path, bytes: bytes::Bytes) -> Result<(), Error> {
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(Error::Store)
    }

    /// Every published file, sorted by path.
    pub async fn files(&self) -> Result<Vec<ObjectMeta>, Error> {
        use futures_util::TryStreamExt;
        let mut files: Vec<ObjectMeta> = self
            .store
            .list(Some(&Path::from("events")))
            .try_collect()
            .await
            .map_err(Error::Store)?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }

    pub async fn read(&self, path: &Path) -> Result<bytes::Bytes, Error> {
        self.store
            .get(path)
            .await
            .map_err(Error::Store)?
            .bytes()
            .await
            .map_err(Error::Store)
    }
}
