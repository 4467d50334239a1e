//! Group commit on two threads. The writer appends every request waiting
//! when it wakes to the change log, then commits its rows and ids to fjall
//! in one atomic batch; the syncer fsyncs the log once for every group
//! written since its last fsync, then acknowledges them. While one fsync
//! runs the writer prepares the next group, so concurrent callers share
//! both the CPU work and the cost of durability. fjall is not synced here:
//! what a crash takes from it is rebuilt from the log at open (`recover`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use fjall::PersistMode;
use tokio::sync::{mpsc, oneshot, watch};
use tracklake_event::Event;
use tracklake_metrics::names;

use crate::embedded::{Keyspaces, trimmed_through};
use crate::keys::{decode_row, id_key, row_key, seq_key, time_bytes, time_from_bytes, user_prefix};
use crate::log::{hidden_key, segment_of};
use crate::{Deleted, Error, PutOutcome};

pub(crate) const LAST_SEQ: &[u8] = b"last_seq";

/// An event with its stored JSON, encoded by the caller (off the writer).
pub(crate) struct Encoded {
    pub event: Event,
    pub json: Vec<u8>,
}

type Reply = oneshot::Sender<Result<Vec<PutOutcome>, Error>>;

pub(crate) enum Command {
    Put(Vec<Encoded>, Reply),
    /// Remove every stored event of a user (its key), after everything
    /// queued before it.
    /// Answers with the segments of the change log it removed changes
    /// from, to be purged.
    DeleteUser(String, oneshot::Sender<Result<(Deleted, Vec<u64>), Error>>),
    /// Stop after everything queued before it, and sync.
    Stop(oneshot::Sender<Result<(), Error>>),
}

/// Written to the journal, waiting for an fsync.
enum Written {
    Group {
        last_seq: u64,
        /// The change log's segments it appended to.
        segments: Vec<u64>,
        /// When the group's write began: commit latency runs to its fsync.
        started: std::time::Instant,
        replies: Vec<(Reply, Result<Vec<PutOutcome>, Error>)>,
    },
    Stop(oneshot::Sender<Result<(), Error>>),
}

pub(crate) struct Writer {
    pub ks: Keyspaces,
    pub commands: mpsc::Receiver<Command>,
    pub durable: watch::Sender<u64>,
    pub healthy: Arc<AtomicBool>,
    pub max_group_events: usize,
    pub last_seq: u64,
    /// The log's segments the group being written appended to.
    pub appended: Vec<u64>,
}

impl Writer {
    /// Runs the writer on this thread and the syncer on a new one.
    pub fn run(mut self) {
        let (written_tx, written_rx) = std::sync::mpsc::sync_channel::<Written>(4);
        let syncer = Syncer {
            ks: self.ks.clone(),
            written: written_rx,
            durable: self.durable.clone(),
            healthy: self.healthy.clone(),
        };
        let syncer = std::thread::Builder::new()
            .name("table-syncer".into())
            .spawn(move || syncer.run());
        if let Err(error) = syncer {
            tracing::error!(%error, "cannot start the table's sync thread");
            self.healthy.store(false, Ordering::Release);
            return;
        }
        while let Some(first) = self.commands.blocking_recv() {
            let mut group: Vec<(Vec<Encoded>, Reply)> = Vec::new();
            let mut stop = None;
            let mut delete = None;
            let mut queued = 0;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Put(events, reply) => {
                        queued += events.len();
                        group.push((events, reply));
                    }
                    Command::Stop(reply) => {
                        stop = Some(reply);
                        break;
                    }
                    Command::DeleteUser(user, reply) => {
                        delete = Some((user, reply));
                        break;
                    }
                }
                if queued < self.max_group_events {
                    next = self.commands.try_recv().ok();
                }
            }
            if !group.is_empty() {
                metrics::histogram!(names::TABLE_GROUP_EVENTS).record(queued as f64);
                let written = self.write(group);
                if written_tx.send(written).is_err() {
                    return;
                }
            }
            if let Some((user, reply)) = delete {
                let _ = reply.send(self.delete_user(&user));
            }
            if let Some(reply) = stop {
                let _ = written_tx.send(Written::Stop(reply));
                return;
            }
        }
    }

    /// Removes a user's rows, id entries and changes in one atomic batch,
    /// made durable before returning. Done here, between groups, so that no
    /// put of the same user interleaves with it.
    fn delete_user(&mut self, user: &str) -> Result<(Deleted, Vec<u64>), Error> {
        if !self.healthy.load(Ordering::Acquire) {
            return Err(Error::Failed);
        }
        let ks = &self.ks;
        let prefix = user_prefix(user);
        let trimmed = trimmed_through(&ks.meta)?;
        let mut batch = ks.db.batch();
        let (mut events, mut changes) = (0u64, 0u64);
        let mut segments = std::collections::BTreeSet::new();
        let mut hidden = Vec::new();
        for guard in ks.rows.prefix(&prefix) {
            let (key, value) = guard.into_inner().map_err(Error::Read)?;
            // Every change of the user has a row: retention removes a row
            // before its change can be read again.
            let seq = decode_row(&value)?.seq;
            batch.insert(&ks.meta, hidden_key(seq), []);
            hidden.push(seq);
            segments.insert(segment_of(seq));
            changes += u64::from(seq > trimmed);
            batch.remove(&ks.rows, key);
            events += 1;
        }
        for guard in ks.ids.prefix(&prefix) {
            batch.remove(&ks.ids, guard.key().map_err(Error::Read)?);
        }
        batch.commit().map_err(Error::Write)?;
        ks.db.persist(PersistMode::SyncAll).map_err(|error| {
            self.healthy.store(false, Ordering::Release);
            Error::Persist(error)
        })?;
        ks.log.hide(hidden);
        let deleted = Deleted {
            events,
            undelivered: changes,
            through_seq: self.last_seq,
        };
        Ok((deleted, segments.into_iter().collect()))
    }

    fn write(&mut self, group: Vec<(Vec<Encoded>, Reply)>) -> Written {
        let started = std::time::Instant::now();
        let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let outcomes = if self.healthy.load(Ordering::Acquire) {
            self.write_batch(batches)
        } else {
            Err(Error::Failed)
        };
        let replies = match outcomes {
            Ok(outcomes) => replies
                .into_iter()
                .zip(outcomes.into_iter().map(Ok))
                .collect(),
            Err(error) => {
                if !matches!(error, Error::Failed) {
                    tracing::error!(%error, "table write failed; refusing further writes");
                }
                // After a failed write the state on disk is unknown: stop
                // acknowledging anything until a restart recovers.
                self.healthy.store(false, Ordering::Release);
                replies
                    .into_iter()
                    .map(|r| (r, Err(Error::Failed)))
                    .collect()
            }
        };
        Written::Group {
            last_seq: self.last_seq,
            segments: std::mem::take(&mut self.appended),
            started,
            replies,
        }
    }

    fn write_batch(&mut self, batches: Vec<Vec<Encoded>>) -> Result<Vec<Vec<PutOutcome>>, Error> {
        let ks = &self.ks;
        let mut batch = ks.db.batch();
        let mut seq = self.last_seq;
        // id key → (request, position) of an event stored earlier in this group
        let mut in_group: HashMap<Vec<u8>, (usize, usize)> = HashMap::new();
        let mut outcomes: Vec<Vec<PutOutcome>> = Vec::with_capacity(batches.len());
        let mut changes: Vec<(u64, Vec<u8>)> = Vec::new();
        for (r, events) in batches.into_iter().enumerate() {
            let mut out = Vec::with_capacity(events.len());
            for Encoded { event, json } in events {
                let user = event.user_id.as_key();
                let id = id_key(&user, &event.event_id);
                // A server-made UUIDv7 cannot have been stored before.
                if !event.server_assigned_id {
                    if let Some(&(pr, pi)) = in_group.get(&id) {
                        let earlier = if pr == r { &out[pi] } else { &outcomes[pr][pi] };
                        if let PutOutcome::Stored(e) = earlier {
                            out.push(PutOutcome::Duplicate(e.clone()));
                            continue;
                        }
                    }
                    if let Some(stored) = self.stored(&user, &id, &event.event_id)? {
                        out.push(PutOutcome::Duplicate(stored));
                        continue;
                    }
                    in_group.insert(id.clone(), (r, out.len()));
                }
                seq += 1;
                let row = row_key(&user, event.event_at, &event.event_id);
                batch.insert(&ks.rows, row, seq_key(seq).to_vec());
                batch.insert(&ks.ids, id, time_bytes(event.event_at).to_vec());
                changes.push((seq, json));
                out.push(PutOutcome::Stored(event));
            }
            outcomes.push(out);
        }
        if seq != self.last_seq {
            // The log first: a crash may then leave fjall behind the log
            // (rebuilt at open), never ahead of it.
            self.appended = ks.log.append(&changes)?;
            batch.insert(&ks.meta, LAST_SEQ, seq_key(seq).to_vec());
            batch.commit().map_err(Error::Write)?;
            self.last_seq = seq;
        }
        Ok(outcomes)
    }

    /// The stored event with this id, if any. A row removed by retention
    /// while its id entry lingers counts as absent.
    fn stored(&self, user: &str, id: &[u8], event_id: &str) -> Result<Option<Event>, Error> {
        let Some(at) = self.ks.ids.get(id).map_err(Error::Read)? else {
            return Ok(None);
        };
        let Some(at) = <[u8; 8]>::try_from(&at[..]).ok().and_then(time_from_bytes) else {
            return Ok(None);
        };
        match self
            .ks
            .rows
            .get(row_key(user, at, event_id))
            .map_err(Error::Read)?
        {
            Some(value) => Ok(Some(self.ks.log.event(&decode_row(&value)?)?)),
            None => Ok(None),
        }
    }
}

struct Syncer {
    ks: Keyspaces,
    written: std::sync::mpsc::Receiver<Written>,
    durable: watch::Sender<u64>,
    healthy: Arc<AtomicBool>,
}

/// Write buffers are flushed once no write came for this long: an idle
/// server holds no memtables (fjall flushes them only when full; after a
/// burst of ingest they held about 36 MB, heaptrack).
#[cfg(not(test))]
const IDLE_FLUSH: Duration = Duration::from_secs(5);
#[cfg(test)]
pub(crate) const IDLE_FLUSH: Duration = Duration::from_millis(200);

impl Syncer {
    fn run(self) {
        // Whether anything was written since write buffers were last flushed.
        let mut unflushed = false;
        loop {
            let first = match self.written.recv_timeout(IDLE_FLUSH) {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => {
                    if unflushed {
                        self.flush_write_buffers();
                        unflushed = false;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            unflushed = true;
            let mut pending = vec![first];
            pending.extend(self.written.try_iter());
            // One fsync of each segment written covers every group before
            // it; stopping syncs fjall too, so that the next open has
            // nothing to rebuild.
            let mut segments = std::collections::BTreeSet::new();
            let mut stop = false;
            for written in &pending {
                match written {
                    Written::Group { segments: s, .. } => segments.extend(s.iter().copied()),
                    Written::Stop(_) => stop = true,
                }
            }
            let synced = if self.healthy.load(Ordering::Acquire) {
                let fjall = || {
                    if stop {
                        self.ks
                            .db
                            .persist(PersistMode::SyncAll)
                            .map_err(Error::Persist)
                    } else {
                        Ok(())
                    }
                };
                self.ks.log.sync(&segments).and_then(|()| fjall()).map_err(|error| {
                    tracing::error!(%error, "fsync of the table failed; refusing further writes");
                    self.healthy.store(false, Ordering::Release);
                })
            } else {
                Err(())
            };
            for written in pending {
                match written {
                    Written::Group {
                        last_seq,
                        started,
                        replies,
                        ..
                    } => {
                        if synced.is_ok() {
                            metrics::histogram!(names::TABLE_COMMIT_SECONDS)
                                .record(started.elapsed().as_secs_f64());
                            self.durable.send_if_modified(|d| {
                                let newer = last_seq > *d;
                                *d = (*d).max(last_seq);
                                newer
                            });
                        }
                        for (reply, outcome) in replies {
                            let _ = reply.send(
                                outcome
                                    .and_then(|o| synced.map(|()| o).map_err(|()| Error::Failed)),
                            );
                        }
                    }
                    Written::Stop(reply) => {
                        let _ = reply.send(if synced.is_ok() {
                            Ok(())
                        } else {
                            Err(Error::Failed)
                        });
                        return;
                    }
                }
            }
        }
    }

    /// Seals every keyspace's write buffer so that fjall flushes it to a
    /// table file and frees it. What is sealed is already in the journal:
    /// a failure here costs memory, not data.
    fn flush_write_buffers(&self) {
        let ks = &self.ks;
        for keyspace in [&ks.rows, &ks.ids, &ks.meta] {
            if let Err(error) = keyspace.rotate_memtable() {
                let name: &str = keyspace.name();
                tracing::warn!(%error, keyspace = name, "flushing an idle write buffer failed");
            }
        }
    }
}
