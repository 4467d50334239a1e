//! Delivery: every event stored in the table reaches the lake exactly once,
//! as date-partitioned Parquet or NDJSON files that Athena, Trino, Spark and
//! DuckDB read directly.

mod aws_profile;
mod buffer;
mod compact;
mod deletion;
mod encode;
mod inspect;
mod lake;
mod partitions;
mod pipeline;
mod publish;
mod rewrite;
mod row;

#[cfg(test)]
mod tests;

pub use compact::{CompactionConfig, compact_once};
pub use deletion::{DeletionJob, Deletions, JobState};
pub use encode::{Format, SCHEMA, encode, record_batch};
pub use inspect::{FileContents, read_lake};
pub use lake::{
    APP_ID, Commit, DeltaReader, FileName, FileStats, Lake, LakeConfig, LakeFile, Layout, NewFile,
    Operation, S3Config, Snapshot, TABLE_DIR, TableVersion, Update, lake_store, partition_day,
    partition_template, range_of,
};
pub use pipeline::{CONSUMER, Delivery, DeliveryConfig, Lag, Status, StreamConfig};
pub use publish::{STREAM, claim_lake};

/// Where delivery sends events instead of writing lake files itself, such
/// as Kinesis Firehose (tracklake-aws), which then writes the lake.
pub trait RecordSink: Send + Sync {
    /// Sends events (one JSON line each); `Ok` once every one was accepted,
    /// with how many puts were refused on the way.
    fn send<'a>(
        &'a self,
        events: Vec<&'a tracklake_event::Event>,
    ) -> tracklake_table::BoxFuture<'a, Result<u64, String>>;
}

impl Error {
    /// Whether trying again cannot help (unlike an unreachable lake).
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::LakeTaken(_))
    }
}

/// Errors of the delivery stage, named after the failed operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid delivery settings: {0}")]
    Config(String),
    #[error("lake URL {0:?}: use a directory, file:///path or s3://bucket/prefix/")]
    UnsupportedLake(String),
    #[error("the lake directory {path}: {source}")]
    CreateLake {
        path: String,
        source: std::io::Error,
    },
    #[error("{action}: {source}")]
    Delta {
        action: &'static str,
        source: Box<deltalake_core::DeltaTableError>,
    },
    #[error("the lake: {0}")]
    Lake(String),
    #[error(
        "the lake at {0} is in an earlier tracklake's layout: start `tracklake serve` or run `tracklake lake migrate` to convert it into a Delta table"
    )]
    NeedsMigration(String),
    #[error(
        "the lake at {0} holds the deliveries of another tracklake data directory, and two must not share one lake: give this one a lake.url of its own (or move the lake's files away to start it afresh)"
    )]
    LakeTaken(String),
    #[error("lake storage: {0}")]
    Store(#[from] object_store::Error),
    #[error("decoding an event of the change log: {0}")]
    DecodeChange(serde_json::Error),
    #[error("encoding JSON: {0}")]
    EncodeJson(serde_json::Error),
    #[error("compressing NDJSON: {0}")]
    Gzip(std::io::Error),
    #[error("building Arrow data: {0}")]
    Arrow(arrow_schema::ArrowError),
    #[error("writing Parquet: {0}")]
    Parquet(parquet::errors::ParquetError),
    #[error("the table: {0}")]
    Table(#[from] tracklake_table::Error),
    #[error("the delivery task failed: {0}")]
    Task(String),
    #[error("sending to the record sink: {0}")]
    Sink(String),
}
