//! The lake: one owner of its layout ([`layout`]), its commits and its
//! snapshots. Parquet lakes are a Delta Lake table ([`delta`]): delivery,
//! compaction and erasure each make one commit ([`Lake::commit`]), and
//! readers — tracklake's SQL, the CLI, outside engines — read one version
//! ([`Lake::snapshot`]). NDJSON lakes are plain files for Athena's JSON
//! SerDe, read with the covering rule of [`layout::split_covered`].
//! Everything goes through `object_store`, so a local directory and S3
//! share one path.

mod config;
mod delta;
mod layout;
mod migrate;
mod place;
mod reader;
mod stats;

use std::path::Path as FsPath;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use tracklake_event::{Event, Privacy};

use crate::Error;
use crate::encode::Format;

pub use config::{LakeConfig, Layout, S3Config};
pub use delta::APP_ID;
pub use layout::{
    FileName, Naming, TABLE_DIR, error_path, partition_day, partition_of, partition_template,
    range_of, split_covered,
};
use place::{Missing, Place};
pub use reader::{DeltaReader, TableVersion};
pub use stats::FileStats;

/// The store rooted at `url` (a directory, `file://` or `s3://` URL), for
/// reading files tracklake did not write.
pub fn lake_store(url: &str, s3: &S3Config) -> Result<Arc<dyn ObjectStore>, Error> {
    Ok(Place::open(url, s3, FsPath::new("."), Missing::Create)?.here)
}

/// One data file of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeFile {
    /// From the lake's root: `events/dt=…/part-….parquet`.
    pub path: Path,
    /// Its partition: the events' UTC date.
    pub day: NaiveDate,
    pub size: u64,
    /// What the log says of its rows, when it says.
    pub stats: Option<FileStats>,
}

impl LakeFile {
    pub fn rows(&self) -> Option<u64> {
        self.stats.as_ref().map(|s| s.num_records)
    }

    /// As `object_store` lists it (the modification time is not kept).
    pub fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            location: self.path.clone(),
            last_modified: DateTime::<Utc>::UNIX_EPOCH,
            size: self.size,
            e_tag: None,
            version: None,
        }
    }
}

/// A file written to the lake and not yet committed.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub path: Path,
    pub day: NaiveDate,
    pub size: u64,
    /// The Add action's `stats` text.
    pub stats: Option<String>,
}

impl NewFile {
    /// A Parquet file about to be put at `path`, its statistics read off its footer.
    pub fn parquet(path: Path, day: NaiveDate, body: &bytes::Bytes) -> Result<NewFile, Error> {
        Ok(NewFile {
            path,
            day,
            size: body.len() as u64,
            stats: Some(FileStats::of_parquet(body)?.to_json()?),
        })
    }
}

/// What a commit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// New events from the change stream.
    Deliver,
    /// Files merged: the same events in fewer files.
    Compact,
    /// Files rewritten without a deleted user's events.
    Erase,
}

/// One change to the lake, committed whole or not at all.
#[derive(Debug, Clone)]
pub struct Update {
    pub operation: Operation,
    pub add: Vec<NewFile>,
    pub remove: Vec<LakeFile>,
    /// The change-stream position the lake holds after this commit.
    pub delivered_through: Option<u64>,
}

/// One version of the table: its files and the stream position they hold.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The Delta version; `None` for a lake of plain files.
    pub version: Option<u64>,
    pub files: Vec<LakeFile>,
    /// The newest change of the stream in these files.
    pub delivered: Option<u64>,
    /// The change stream the table is delivered from, when the log says.
    pub stream: Option<u64>,
}

/// One commit of the lake's history.
#[derive(Debug, Clone)]
pub struct Commit {
    pub version: u64,
    pub at: Option<DateTime<Utc>>,
    pub operation: String,
    /// The operation's parameters and metrics, as the log has them.
    pub details: serde_json::Map<String, serde_json::Value>,
}

pub struct Lake {
    /// Rooted at the lake: paths start at `events/`.
    store: Arc<dyn ObjectStore>,
    /// The Delta log of a Parquet lake.
    delta: Option<delta::DeltaLog>,
    /// Held by whatever rewrites published files (compaction, erasure),
    /// so one never merges what the other is about to replace.
    rewriting: tokio::sync::Mutex<()>,
    /// Held shared by a delivery from its first put to its commit, and
    /// exclusively by vacuum (with `rewriting`): vacuum never takes a file
    /// about to be committed for one a crash left behind, however long
    /// the puts before its commit retry.
    uncommitted: tokio::sync::RwLock<()>,
    /// Users whose events delivery must leave out while they are deleted.
    pub(crate) suppression: crate::deletion::Suppression,
    /// When set, delivery sends events here instead of writing files.
    sink: Option<Arc<dyn crate::RecordSink>>,
    config: LakeConfig,
    /// What of an IP address may be written here.
    privacy: Privacy,
    /// Where the lake is, for messages.
    pub location: String,
    /// The lake's directory when it is on local disk (not S3).
    pub local_dir: Option<std::path::PathBuf>,
}

impl Lake {
    pub fn open(config: &LakeConfig, data_dir: &FsPath) -> Result<Self, Error> {
        let place = Place::open(&config.url, &config.s3, data_dir, Missing::Create)?;
        let delta = match config.format {
            // Not made until the table is: a lake fed by Firehose never has one.
            Format::Parquet => Some(delta::DeltaLog::new(&place.join(TABLE_DIR)?, TABLE_DIR)),
            Format::Ndjson => None,
        };
        Ok(Lake {
            store: place.here,
            delta,
            rewriting: Default::default(),
            uncommitted: Default::default(),
            suppression: Default::default(),
            sink: None,
            config: config.clone(),
            privacy: Privacy::keep(),
            local_dir: (place.url.scheme() == "file")
                .then(|| place.url.to_file_path().ok())
                .flatten(),
            location: place.shown,
        })
    }

    /// Addresses written to this lake (and shown by SQL) follow `privacy`.
    pub fn with_privacy(mut self, privacy: Privacy) -> Self {
        self.privacy = privacy;
        self
    }

    /// Delivery sends events to `sink` (Firehose, say), which writes the
    /// lake, instead of writing files here.
    pub fn with_sink(mut self, sink: Arc<dyn crate::RecordSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    pub fn sink(&self) -> Option<&Arc<dyn crate::RecordSink>> {
        self.sink.as_ref()
    }

    pub fn privacy(&self) -> &Privacy {
        &self.privacy
    }

    /// A change's event as it may leave the table (privacy applied).
    pub fn event_of(&self, change: &tracklake_table::Change) -> Result<Event, Error> {
        let mut event = change.event()?;
        self.privacy.apply(&mut event);
        Ok(event)
    }

    pub fn format(&self) -> Format {
        self.config.format
    }

    /// The store the lake's files are in (prefixed: paths start at `events/`).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub fn s3_config(&self) -> &S3Config {
        &self.config.s3
    }

    pub fn gzip(&self) -> bool {
        self.config.gzip
    }

    /// The partition directory of an event: `dt=2026-11-27` or `2026/11/27/13`.
    pub fn partition(&self, event_at: DateTime<Utc>) -> String {
        layout::partition(self.config.layout, event_at)
    }

    /// Where a new file of changes `first..=last` in `partition` goes: a
    /// unique name in a Delta table, the range's own name for plain files.
    pub fn file_path(&self, partition: &str, first: u64, last: u64) -> Path {
        let naming = match self.delta {
            Some(_) => Naming::Unique,
            None => Naming::Range { version: 0 },
        };
        let ext = self.config.format.extension(self.config.gzip);
        layout::file_path(partition, first, last, naming, ext)
    }

    /// Whether the lake is a Delta table (Parquet), not plain files (NDJSON).
    pub fn is_delta(&self) -> bool {
        self.delta.is_some()
    }

    pub fn retention_secs(&self) -> u64 {
        self.config.retention_secs
    }

    /// The current version of a Delta lake. A lake with no log yet is
    /// empty, unless it holds files of an earlier tracklake's layout, which
    /// [`Lake::prepare`] converts first.
    pub async fn snapshot(&self) -> Result<Snapshot, Error> {
        let Some(delta) = &self.delta else {
            return Err(Error::Lake("an NDJSON lake has no snapshots".into()));
        };
        match delta.snapshot().await? {
            Some(snapshot) => Ok(snapshot),
            None if migrate::legacy_files(self).await?.is_empty() => Ok(Snapshot::default()),
            None => Err(Error::NeedsMigration(self.location.clone())),
        }
    }

    /// Commits `update` as one version of a Delta lake; returns it. Files
    /// it adds must have been put first ([`Lake::publish`]).
    pub async fn commit(&self, update: Update) -> Result<u64, Error> {
        match &self.delta {
            Some(delta) => delta.commit(update).await,
            None => Err(Error::Lake("an NDJSON lake has no commits".into())),
        }
    }

    /// Makes sure a Delta lake has its log: creates it for the change
    /// stream `stream`, converting the files of an earlier layout that hold
    /// changes up to `delivered` (what the table says was delivered) in the
    /// same commit. Returns the newest version.
    pub async fn prepare(&self, stream: u64, delivered: u64) -> Result<Snapshot, Error> {
        let Some(delta) = &self.delta else {
            return Err(Error::Lake("an NDJSON lake has no snapshots".into()));
        };
        if let Some(snapshot) = delta.snapshot().await? {
            return Ok(snapshot);
        }
        migrate::convert(self, delta, stream, delivered).await?;
        delta
            .snapshot()
            .await?
            .ok_or_else(|| Error::Lake("the Delta log just made is not there".into()))
    }

    /// Deletes what no version newer than the retention needs; returns how
    /// many files. Plain lakes delete as they go.
    pub async fn vacuum(&self) -> Result<usize, Error> {
        let Some(delta) = &self.delta else {
            return Ok(0);
        };
        let _rewriting = self.rewriting().await;
        let _no_delivery = self.uncommitted.write().await;
        delta.vacuum(self.config.retention_secs).await
    }

    /// The newest `limit` commits, newest first.
    pub async fn history(&self, limit: usize) -> Result<Vec<Commit>, Error> {
        let Some(delta) = &self.delta else {
            return Ok(Vec::new());
        };
        Ok(delta
            .history(limit)
            .await?
            .into_iter()
            .map(|(version, info)| {
                let mut details = serde_json::Map::new();
                for (k, v) in info.operation_parameters.unwrap_or_default() {
                    details.insert(k, v);
                }
                for (k, v) in info.info {
                    details.insert(k, v);
                }
                Commit {
                    version,
                    at: info.timestamp.and_then(DateTime::from_timestamp_millis),
                    operation: info.operation.unwrap_or_default(),
                    details,
                }
            })
            .collect())
    }

    /// Held by a delivery while it has files put and not yet committed.
    pub(crate) async fn delivering(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.uncommitted.read().await
    }

    /// Exclusive right to rewrite published files, while the guard lives.
    pub(crate) async fn rewriting(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.rewriting.lock().await
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

    /// The files readers of a plain (NDJSON) lake should read: every file
    /// except those whose change range lies inside another file's range in
    /// the same partition (the sources of a compaction whose swap is not
    /// finished).
    pub async fn live_files(&self) -> Result<Vec<ObjectMeta>, Error> {
        Ok(split_covered(self.files().await?).0)
    }

    /// Every file under `events/` but the Delta log, sorted by path.
    pub async fn files(&self) -> Result<Vec<ObjectMeta>, Error> {
        use futures_util::TryStreamExt;
        let mut files: Vec<ObjectMeta> = self
            .store
            .list(Some(&Path::from(TABLE_DIR)))
            .try_filter(|f| {
                let log = f
                    .location
                    .as_ref()
                    .starts_with(&format!("{TABLE_DIR}/_delta_log/"));
                std::future::ready(!log)
            })
            .try_collect()
            .await
            .map_err(Error::Store)?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }

    pub async fn delete(&self, path: &Path) -> Result<(), Error> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::Store(e)),
        }
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
