//! The lake: files under `events/`, partitioned by the event's UTC date,
//! written through `object_store` so a local directory and S3 share one path.
//!
//! File names: `events/dt=YYYY-MM-DD/part-<first>-<last>.<ext>`, where
//! `first..=last` are the change-stream sequence numbers (20 digits) of the
//! delivery that wrote it. A delivery publishes one file per partition it
//! touched, all with the same range; names are unique and a redo after a
//! crash rewrites the very same names. A file rewritten to erase a user's
//! events keeps its range and gains a version, `part-<first>-<last>-v<n>.<ext>`,
//! which supersedes the earlier versions. The `firehose` layout writes
//! `events/YYYY/MM/DD/HH/part-…` (by event time) for users migrating a
//! Firehose-fed Athena table.

use std::path::Path as FsPath;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tracklake_event::{Event, Privacy};

use crate::Error;
use crate::encode::Format;

/// The `[lake]` section of the config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    /// A directory (or `file://` URL), or `s3://bucket/prefix/`; empty
    /// means `<data_dir>/lake`.
    pub url: String,
    pub format: Format,
    /// gzip NDJSON files (`.json.gz`).
    pub gzip: bool,
    pub layout: Layout,
    pub s3: S3Config,
}

/// `[lake.s3]`: where and how to reach S3 or an S3-compatible store.
/// Credentials come from the standard AWS environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), else
/// from the shared files (`~/.aws/credentials` and `~/.aws/config`, profile
/// `AWS_PROFILE`), else from the instance / container role.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:9000` for an S3-compatible store; default AWS.
    pub endpoint: Option<String>,
    /// Default: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's region,
    /// else `us-east-1`.
    pub region: Option<String>,
    /// Allow plain-HTTP endpoints (local stores and emulators).
    pub allow_http: bool,
    /// `bucket.host/key` addressing instead of path style (`host/bucket/key`).
    pub virtual_hosted_style: bool,
    /// Encrypt every lake file with this KMS key (SSE-KMS), as the article's
    /// bucket was.
    pub sse_kms_key_id: Option<String>,
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
    /// Held by whatever rewrites published files (compaction, erasure),
    /// so one never merges what the other is about to replace.
    rewriting: tokio::sync::Mutex<()>,
    /// Users whose events delivery must leave out while they are deleted.
    pub(crate) suppression: crate::deletion::Suppression,
    /// When set, delivery sends events here instead of writing files.
    sink: Option<Arc<dyn crate::RecordSink>>,
    config: LakeConfig,
    /// What of an IP address may be written here.
    privacy: Privacy,
    /// Where the lake is, for messages.
    pub location: String,
}

impl Lake {
    pub fn open(config: &LakeConfig, data_dir: &FsPath) -> Result<Self, Error> {
        if let Some(rest) = config.url.strip_prefix("s3://") {
            return Self::open_s3(config, rest);
        }
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
            rewriting: Default::default(),
            suppression: Default::default(),
            sink: None,
            config: config.clone(),
            privacy: Privacy::keep(),
            location: dir.display().to_string(),
        })
    }

    /// `bucket/prefix` of an `s3://` URL.
    fn open_s3(config: &LakeConfig, bucket_and_prefix: &str) -> Result<Self, Error> {
        let (bucket, prefix) = bucket_and_prefix
            .split_once('/')
            .unwrap_or((bucket_and_prefix, ""));
        if bucket.is_empty() {
            return Err(Error::UnsupportedLake(config.url.clone()));
        }
        let s3 = &config.s3;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(s3.allow_http)
            .with_virtual_hosted_style_request(s3.virtual_hosted_style);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &s3.sse_kms_key_id {
            builder = builder.with_sse_kms_encryption(key);
        }
        // The environment wins; the shared AWS files fill in what it lacks.
        let profile = crate::aws_profile::load();
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && let (Some(id), Some(secret)) = (profile.access_key_id, profile.secret_access_key)
        {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = profile.session_token {
                builder = builder.with_token(token);
            }
        }
        let region = s3
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .or(profile.region);
        if let Some(region) = region {
            builder = builder.with_region(region);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(builder.build().map_err(Error::Store)?);
        let prefix = prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Ok(Lake {
            store,
            rewriting: Default::default(),
            suppression: Default::default(),
            sink: None,
            config: config.clone(),
            privacy: Privacy::keep(),
            location: config.url.clone(),
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

    /// Where records of `first..=last` that could not be read are kept.
    pub fn error_path(&self, first: u64, last: u64) -> Path {
        Path::from(format!("errors/part-{first:020}-{last:020}.json"))
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

    /// The files readers should read: every published file except those
    /// whose change range lies inside another file's range in the same
    /// partition (the sources of a compaction whose swap is not finished).
    pub async fn live_files(&self) -> Result<Vec<ObjectMeta>, Error> {
        Ok(split_covered(self.files().await?).0)
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

/// A lake file's place: its partition and the change range in its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    pub partition: String,
    pub first: u64,
    pub last: u64,
    /// 0 as delivered; each rewrite that erased events adds one.
    pub version: u32,
    /// `parquet`, `json` or `json.gz`.
    pub extension: String,
}

impl FileName {
    /// Parses `events/<partition>/part-<first>-<last>[-v<version>].<ext>`.
    pub fn parse(path: &Path) -> Option<FileName> {
        let p = path.as_ref().strip_prefix("events/")?;
        let (partition, name) = p.rsplit_once('/')?;
        let (stem, extension) = name.strip_prefix("part-")?.split_once('.')?;
        let mut parts = stem.split('-');
        let (first, last) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
        let version = match parts.next() {
            None => 0,
            Some(v) => v.strip_prefix('v')?.parse().ok()?,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(FileName {
            partition: partition.to_owned(),
            first,
            last,
            version,
            extension: extension.to_owned(),
        })
    }

    /// Where this file is (the inverse of [`FileName::parse`]).
    pub fn path(&self) -> Path {
        let version = match self.version {
            0 => String::new(),
            v => format!("-v{v}"),
        };
        Path::from(format!(
            "events/{}/part-{:020}-{:020}{version}.{}",
            self.partition, self.first, self.last, self.extension
        ))
    }

    /// Whether readers should read `self` instead of `other`: a wider range
    /// (a compaction's output), or the same range in a later version.
    fn covers(&self, other: &FileName) -> bool {
        if self.partition != other.partition {
            return false;
        }
        if (self.first, self.last) == (other.first, other.last) {
            return self.version > other.version;
        }
        self.first <= other.first && other.last <= self.last
    }
}

/// Splits files into (live, covered): a covered file's range lies inside
/// another's in the same partition.
pub fn split_covered(files: Vec<ObjectMeta>) -> (Vec<ObjectMeta>, Vec<ObjectMeta>) {
    let names: Vec<Option<FileName>> = files.iter().map(|f| FileName::parse(&f.location)).collect();
    let covered: Vec<bool> = names
        .iter()
        .map(|n| {
            n.as_ref()
                .is_some_and(|n| names.iter().flatten().any(|other| other.covers(n)))
        })
        .collect();
    let (mut live, mut dead) = (Vec::new(), Vec::new());
    for (file, covered) in files.into_iter().zip(covered) {
        if covered {
            dead.push(file)
        } else {
            live.push(file)
        }
    }
    (live, dead)
}
