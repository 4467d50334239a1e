//! The embedded engine in `<data-dir>/table`: the change log's files in
//! `log/` (see `log`), and a fjall database of rows and ids over them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fjall::config::{CompressionPolicy, PartitioningPolicy};
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tracklake_event::Event;

use crate::keys::{decode_row, seq_from, seq_key};
use crate::log::{HIDDEN_PREFIX, Log, POINTERS_FROM, TRIMMED, hidden_key};
use crate::query::{Page, Query, scan};
use crate::retention::{CHECKPOINT_PREFIX, Sweeper};
use crate::writer::{Command, Encoded, Writer};
use crate::{BoxFuture, Change, ChangeLog, Deleted, Error, PutOutcome, Table};

/// The `[table]` section of the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableConfig {
    /// Delete rows whose `event_at` is older than this many days (the lake
    /// keeps the history). None keeps everything.
    pub retention_days: Option<u32>,
    /// Most events written in one group commit.
    pub max_group_events: usize,
    /// Write requests that may wait for the writer before callers wait too.
    pub queue_depth: usize,
    /// Block cache, in MiB, on top of the operating system's page cache
    /// (which holds the table's files too, outside the process). It fills
    /// with whatever is read, delivery's reads of the change log included.
    /// At 10 million events `recent(user, 50)` took about 0.5 ms at p50
    /// and 1.0-4.8 ms at p99 with 32 (docs/BENCHMARKS.md): raise it for
    /// read-heavy use when memory allows.
    pub cache_mib: u64,
    /// Write buffer of each of the table's keyspaces (rows, ids and meta),
    /// in MiB: with the journal, this bounds the memory of writes.
    pub memtable_mib: u64,
    /// Journal kept before write buffers must be flushed, in MiB (at least
    /// 64). This is what bounds memory under sustained writes: write
    /// buffers waiting for a flush hold their journal.
    pub journal_mib: u64,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            retention_days: None,
            max_group_events: 20_000,
            queue_depth: 1024,
            cache_mib: 32,
            memtable_mib: 8,
            journal_mib: 64,
        }
    }
}

/// Handles to the keyspaces; cheap to clone.
#[derive(Clone)]
pub(crate) struct Keyspaces {
    pub db: Database,
    pub rows: Keyspace,
    pub ids: Keyspace,
    pub log: Arc<Log>,
    pub meta: Keyspace,
}

/// The default table: fjall on local disk, one writer thread doing group
/// commit, readers on tokio's blocking pool.
pub struct EmbeddedTable {
    ks: Keyspaces,
    commands: mpsc::Sender<Command>,
    durable: watch::Receiver<u64>,
    healthy: Arc<AtomicBool>,
    sweeper: Mutex<Option<Sweeper>>,
    /// Changes up to here are trimmed: the next trim starts after it.
    trimmed: Arc<AtomicU64>,
    /// Changes before this one belong to rows that carry their own JSON
    /// (written by an earlier version): trimming drops them.
    pointers_from: u64,
}

impl EmbeddedTable {
    /// Opens (or creates) the table in `dir`, replaying its journal, and
    /// starts its writer threads.
    pub fn open(dir: &Path, config: &TableConfig) -> Result<Self, Error> {
        let open_err = |source| Error::Open {
            path: dir.display().to_string(),
            source,
        };
        let db = Database::builder(dir)
            .cache_size(config.cache_mib * 1024 * 1024)
            .max_journaling_size(config.journal_mib.max(64) * 1024 * 1024)
            .open()
            .map_err(open_err)?;
        let memtable = config.memtable_mib.max(1) * 1024 * 1024;
        // Every level compressed: the default leaves the first two raw,
        // which more than doubles the table on disk.
        // Filters and indexes partitioned on every level: fjall's default
        // keeps them whole below L2, so a lookup that missed the cache read
        // and checksummed a filter of megabytes (the id lookups of ingest
        // slowed to a sixth past 5 million events).
        let stored = KeyspaceCreateOptions::default()
            .max_memtable_size(memtable)
            .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
            .filter_block_partitioning_policy(PartitioningPolicy::all(true))
            .index_block_partitioning_policy(PartitioningPolicy::all(true));
        let keyspace = |name: &str| db.keyspace(name, || stored.clone()).map_err(open_err);
        let meta = keyspace("meta")?;
        let hidden = meta
            .prefix(HIDDEN_PREFIX)
            .map(|guard| {
                let key = guard.key().map_err(Error::Read)?;
                seq_from(&key[HIDDEN_PREFIX.len()..]).ok_or(Error::Corrupt("a short hidden change"))
            })
            .collect::<Result<_, Error>>()?;
        let ks = Keyspaces {
            rows: keyspace("rows")?,
            ids: keyspace("ids")?,
            log: Arc::new(Log::open(&dir.join("log"), hidden)?),
            meta,
            db: db.clone(),
        };
        crate::log::move_from_fjall(&db, &ks.log)?;
        let last_seq = crate::recover::rebuild(&ks)?;
        purge_hidden(&ks, &ks.log.hidden_segments())?;
        let trimmed = trimmed_through(&ks.meta)?;
        let pointers_from = match ks.meta.get(POINTERS_FROM).map_err(Error::Read)? {
            Some(v) => seq_from(&v).ok_or(Error::Corrupt("a short rows_point_from"))?,
            None => {
                // Rows written from here on point into the change log.
                ks.meta
                    .insert(POINTERS_FROM, seq_key(last_seq + 1).to_vec())
                    .map_err(Error::Write)?;
                ks.db
                    .persist(PersistMode::SyncAll)
                    .map_err(Error::Persist)?;
                last_seq + 1
            }
        };
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let (durable_tx, durable_rx) = watch::channel(last_seq);
        let healthy = Arc::new(AtomicBool::new(true));
        let writer = Writer {
            ks: ks.clone(),
            commands: rx,
            durable: durable_tx,
            healthy: healthy.clone(),
            max_group_events: config.max_group_events.max(1),
            last_seq,
            appended: Vec::new(),
        };
        std::thread::Builder::new()
            .name("table-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::Task(e.to_string()))?;
        let sweeper = config
            .retention_days
            .map(|days| Sweeper::start(ks.clone(), days));
        Ok(EmbeddedTable {
            ks,
            commands: tx,
            durable: durable_rx,
            healthy,
            sweeper: Mutex::new(sweeper),
            trimmed: Arc::new(AtomicU64::new(trimmed)),
            pointers_from,
        })
    }

    /// Rows in the table (an estimate, cheap).
    pub fn approximate_rows(&self) -> usize {
        self.ks.rows.approximate_len()
    }

    /// `(user_id, event_id, seq)` of every row, for checks such as
    /// `tracklake lake verify` (reads the whole table).
    pub fn stored_ids(&self) -> Result<Vec<(String, String, u64)>, Error> {
        self.ks
            .rows
            .iter()
            .map(|guard| {
                let (_, value) = guard.into_inner().map_err(Error::Read)?;
                let row = decode_row(&value)?;
                let event = self.ks.log.event(&row)?;
                Ok((event.user_id.as_key(), event.event_id, row.seq))
            })
            .collect()
    }

    /// Runs `f` on tokio's blocking pool with the keyspaces.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Keyspaces) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let ks = self.ks.clone();
        tokio::task::spawn_blocking(move || f(&ks))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }
}

impl Table for EmbeddedTable {
    fn put(&self, events: Vec<Event>) -> BoxFuture<'_, Result<Vec<PutOutcome>, Error>> {
        Box::pin(async move {
            if !self.healthy.load(Ordering::Acquire) {
                return Err(Error::Failed);
            }
            // Encoding here spreads it over the callers' threads.
            let encoded = events
                .into_iter()
                .map(|event| {
                    // Seed-like events take about 500 bytes: no regrowing.
                    let mut json = Vec::with_capacity(768);
                    serde_json::to_writer(&mut json, &event).map_err(Error::Encode)?;
                    Ok(Encoded { event, json })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            let (reply, outcome) = oneshot::channel();
            self.commands
                .send(Command::Put(encoded, reply))
                .await
                .map_err(|_| Error::Closed)?;
            outcome.await.map_err(|_| Error::Closed)?
        })
    }

    fn query(&self, query: Query) -> BoxFuture<'_, Result<Page, Error>> {
        Box::pin(self.blocking(move |ks| scan(ks, &query)))
    }

    fn delete_user<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<Deleted, Error>> {
        Box::pin(async move {
            let (reply, outcome) = oneshot::channel();
            self.commands
                .send(Command::DeleteUser(user_id.to_owned(), reply))
                .await
                .map_err(|_| Error::Closed)?;
            let (deleted, segments) = outcome.await.map_err(|_| Error::Closed)??;
            // The user's changes are gone from reads; rewriting their
            // segments takes them off the disk too. The deletion itself is
            // durable by now: a failed rewrite is reported, not returned,
            // since a retried deletion finds nothing left to rewrite.
            let purged = segments.clone();
            if let Err(error) = self.blocking(move |ks| purge_hidden(ks, &purged)).await {
                tracing::error!(
                    %error,
                    ?segments,
                    "a deleted user's events stay on disk in these change-log segments until they are compacted or dropped"
                );
            }
            Ok(deleted)
        })
    }

    fn stats(&self) -> serde_json::Value {
        let ks = &self.ks;
        let keyspace = |k: &Keyspace| {
            serde_json::json!({
                "disk_bytes": k.disk_space(),
                "sealed_memtables": k.sealed_memtable_count(),
                "l0_tables": k.l0_table_count(),
                "tables": k.table_count(),
            })
        };
        let (segments, log_bytes) = ks.log.size();
        serde_json::json!({
            "last_seq": *self.durable.borrow(),
            "approximate_rows": ks.rows.approximate_len(),
            "write_buffer_bytes": ks.db.write_buffer_size(),
            "journals": ks.db.journal_count(),
            "outstanding_flushes": ks.db.outstanding_flushes(),
            "cache_bytes": ks.db.cache_size(),
            "rows": keyspace(&ks.rows),
            "ids": keyspace(&ks.ids),
            "changes": {
                "segments": segments,
                "disk_bytes": log_bytes,
                "dictionaries": ks.log.dictionaries(),
            },
        })
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn close(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            if let Ok(mut sweeper) = self.sweeper.lock() {
                sweeper.take();
            }
            let (reply, done) = oneshot::channel();
            if self.commands.send(Command::Stop(reply)).await.is_err() {
                return Ok(()); // already closed
            }
            done.await.map_err(|_| Error::Closed)?
        })
    }
}

impl ChangeLog for EmbeddedTable {
    fn read_changes(&self, after: u64, max: usize) -> BoxFuture<'_, Result<Vec<Change>, Error>> {
        // Only what is fsynced: a consumer must never deliver an event that
        // a crash could still take back.
        let durable = *self.durable.borrow();
        let after = after.max(self.trimmed.load(Ordering::Acquire));
        Box::pin(self.blocking(move |ks| {
            if after >= durable || max == 0 {
                return Ok(Vec::new());
            }
            ks.log.read(after + 1, durable, max)
        }))
    }

    fn watch_changes(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    fn checkpoint(&self, consumer: &str) -> BoxFuture<'_, Result<Option<u64>, Error>> {
        let key = checkpoint_key(consumer);
        Box::pin(self.blocking(move |ks| {
            Ok(ks
                .meta
                .get(key)
                .map_err(Error::Read)?
                .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
                .map(u64::from_be_bytes))
        }))
    }

    fn save_checkpoint<'a>(
        &'a self,
        consumer: &'a str,
        seq: u64,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let key = checkpoint_key(consumer);
        Box::pin(self.blocking(move |ks| {
            ks.meta
                .insert(key, seq_key(seq).to_vec())
                .map_err(Error::Write)?;
            ks.db.persist(PersistMode::SyncAll).map_err(Error::Persist)
        }))
    }

    fn trim_changes(&self, through: u64) -> BoxFuture<'_, Result<(), Error>> {
        let trimmed = self.trimmed.clone();
        let legacy_through = self.pointers_from - 1;
        Box::pin(self.blocking(move |ks| {
            let done = trimmed.load(Ordering::Acquire);
            if through <= done {
                return Ok(());
            }
            // Durable with the next commit; if a crash takes it back, the
            // changes it covers are behind every consumer's checkpoint.
            ks.meta
                .insert(TRIMMED, seq_key(through).to_vec())
                .map_err(Error::Write)?;
            ks.log.drop_through(through.min(legacy_through))?;
            trimmed.fetch_max(through, Ordering::AcqRel);
            Ok(())
        }))
    }
}

/// Writes these segments of the log anew without their hidden changes
/// (a deleted user's), then forgets them.
fn purge_hidden(ks: &Keyspaces, segments: &[u64]) -> Result<(), Error> {
    let removed = ks.log.purge(segments)?;
    if removed.is_empty() {
        return Ok(());
    }
    let mut batch = ks.db.batch();
    for seq in &removed {
        batch.remove(&ks.meta, hidden_key(*seq));
    }
    batch.commit().map_err(Error::Write)?;
    ks.db
        .persist(PersistMode::SyncAll)
        .map_err(Error::Persist)?;
    ks.log.forget_hidden(&removed);
    Ok(())
}

/// Up to where the change log is trimmed.
pub(crate) fn trimmed_through(meta: &Keyspace) -> Result<u64, Error> {
    Ok(meta
        .get(TRIMMED)
        .map_err(Error::Read)?
        .as_deref()
        .and_then(seq_from)
        .unwrap_or(0))
}

fn checkpoint_key(consumer: &str) -> Vec<u8> {
    [CHECKPOINT_PREFIX, consumer.as_bytes()].concat()
}

#[cfg(test)]
pub(crate) mod tests;
