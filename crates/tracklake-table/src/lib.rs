//! The per-user event table and its change stream — the article's DynamoDB
//! table (`user_id` partition key, `event_at` sort key) with Streams.
//!
//! [`Table`] is what callers use; [`EmbeddedTable`] is the default engine
//! (a change log in files of checksummed frames, indexed by fjall, an LSM
//! tree). A DynamoDB-backed table
//! implements the same trait.

mod embedded;
mod keys;
mod log;
mod query;
mod recover;
mod retention;
#[cfg(any(test, feature = "suite"))]
pub mod suite;
mod writer;

use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;
use tracklake_event::Event;

pub use embedded::{EmbeddedTable, TableConfig};
pub use query::{MAX_LIMIT, Order, Page, Query};

/// A boxed future, so that `Table` can be used as `dyn Table`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What happened to one event handed to [`Table::put`].
#[derive(Debug, Clone, PartialEq)]
pub enum PutOutcome {
    /// Newly stored (and durable when `put` returned).
    Stored(Event),
    /// An event with the same `user_id` and `event_id` was already stored;
    /// this is that stored event, unchanged.
    Duplicate(Event),
}

/// One entry of the change stream: an INSERT with its new image, the shape
/// of a DynamoDB Streams record with `NEW_IMAGE`. The image stays the
/// stored JSON until asked for: delivery decodes it straight into lake
/// columns, which costs a fraction of building an [`Event`].
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Strictly increasing, never reused.
    pub seq: u64,
    /// The event as stored: its JSON object.
    pub json: Vec<u8>,
}

impl Change {
    /// The stored event.
    pub fn event(&self) -> Result<Event, Error> {
        serde_json::from_slice(&self.json).map_err(Error::Decode)
    }
}

/// What [`Table::delete_user`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deleted {
    /// The user's stored events.
    pub events: u64,
    /// Of those, how many were still waiting in the change log.
    pub undelivered: u64,
    /// Every change of this user up to here is gone; delivery must pass
    /// it before the lake can be cleaned for good.
    pub through_seq: u64,
}

/// The per-user event table: what ingest and the per-user reads need. The
/// embedded table and DynamoDB both implement it.
pub trait Table: Send + Sync + 'static {
    /// Stores events; returns once they are durable (fsynced), one outcome
    /// per event in order. Concurrent callers share one fsync.
    fn put(&self, events: Vec<Event>) -> BoxFuture<'_, Result<Vec<PutOutcome>, Error>>;

    /// A user's events, newest or oldest first; `limit` counts matching rows.
    fn query(&self, query: Query) -> BoxFuture<'_, Result<Page, Error>>;

    /// Removes every event of a user (by its text form, like
    /// [`Query::user_id`]) from the table and its change log; durable when
    /// it returns, and off the disk where the engine can tell (the embedded
    /// table rewrites the log's segments that held them). Events stored
    /// later are kept.
    fn delete_user<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<Deleted, Error>>;

    /// False once a write failed to reach disk: the table then refuses writes
    /// rather than acknowledge what it cannot keep.
    fn is_healthy(&self) -> bool;

    /// Engine figures for the status endpoint (write buffers, files, …).
    fn stats(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Finishes queued writes and makes everything durable.
    fn close(&self) -> BoxFuture<'_, Result<(), Error>>;
}

/// A table that keeps its own change stream, in one sequence, for the
/// in-process delivery (the embedded table). On AWS, DynamoDB Streams plays
/// this part.
pub trait ChangeLog: Table {
    /// Up to `max` changes with `seq > after`, oldest first. Only durable
    /// changes are returned.
    fn read_changes(&self, after: u64, max: usize) -> BoxFuture<'_, Result<Vec<Change>, Error>>;

    /// The newest durable sequence number; changes when new events are stored.
    fn watch_changes(&self) -> watch::Receiver<u64>;

    /// The saved position of a named consumer of the change stream.
    fn checkpoint(&self, consumer: &str) -> BoxFuture<'_, Result<Option<u64>, Error>>;

    /// Saves a consumer's position durably.
    fn save_checkpoint<'a>(
        &'a self,
        consumer: &'a str,
        seq: u64,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Marks changes with `seq <= through` consumed (after every consumer
    /// has them): reads skip them, and an engine may drop them (the
    /// embedded table keeps those its rows still point at).
    fn trim_changes(&self, through: u64) -> BoxFuture<'_, Result<(), Error>>;
}

/// Errors of the table, named after the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening the table at {path}: {source}")]
    Open { path: String, source: fjall::Error },
    #[error("writing to the table: {0}")]
    Write(fjall::Error),
    #[error("the change log at {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
    #[error("compressing or decompressing the change log: {0}")]
    Compress(std::io::Error),
    #[error("syncing the table to disk: {0}")]
    Persist(fjall::Error),
    #[error("reading the table: {0}")]
    Read(fjall::Error),
    #[error("decoding a stored event: {0}")]
    Decode(serde_json::Error),
    #[error("the table holds damaged data: {0}")]
    Corrupt(&'static str),
    #[error("encoding an event: {0}")]
    Encode(serde_json::Error),
    #[error("the cursor is not one this table handed out")]
    BadCursor,
    #[error("the table is closed")]
    Closed,
    #[error(
        "the table stopped accepting writes after a disk error; tracklake exits to be restarted, which recovers it"
    )]
    Failed,
    #[error("a table task panicked or was cancelled: {0}")]
    Task(String),
    /// A remote table (DynamoDB) could not be reached or refused for now.
    #[error("the table's service is unavailable: {0}")]
    Unavailable(String),
    /// A remote table answered with something this version cannot use.
    #[error("the table's service: {0}")]
    Service(String),
}
