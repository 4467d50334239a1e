//! The single writer thread: group commit. Every request waiting when the
//! writer wakes goes into one atomic write batch and one fsync, so
//! concurrent writers share the cost of durability.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fjall::PersistMode;
use tokio::sync::{mpsc, oneshot, watch};
use tracklake_event::Event;

use crate::embedded::Keyspaces;
use crate::keys::{id_key, row_key, seq_key, time_bytes, time_from_bytes};
use crate::{Error, PutOutcome};

pub(crate) const LAST_SEQ: &[u8] = b"last_seq";

pub(crate) enum Command {
    Put(Vec<Event>, oneshot::Sender<Result<Vec<PutOutcome>, Error>>),
    /// Stop after everything queued before it, and sync.
    Stop(oneshot::Sender<Result<(), Error>>),
}

type Reply = oneshot::Sender<Result<Vec<PutOutcome>, Error>>;

pub(crate) struct Writer {
    pub ks: Keyspaces,
    pub commands: mpsc::Receiver<Command>,
    pub durable: watch::Sender<u64>,
    pub healthy: Arc<AtomicBool>,
    pub max_group_events: usize,
    pub last_seq: u64,
}

impl Writer {
    pub fn run(mut self) {
        while let Some(first) = self.commands.blocking_recv() {
            let mut group: Vec<(Vec<Event>, Reply)> = Vec::new();
            let mut stop = None;
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
                }
                if queued < self.max_group_events {
                    next = self.commands.try_recv().ok();
                }
            }
            self.commit(group);
            if let Some(reply) = stop {
                let synced = self
                    .ks
                    .db
                    .persist(PersistMode::SyncAll)
                    .map_err(Error::Persist);
                let _ = reply.send(synced);
                return;
            }
        }
    }

    fn commit(&mut self, group: Vec<(Vec<Event>, Reply)>) {
        if group.is_empty() {
            return;
        }
        if !self.healthy.load(Ordering::Acquire) {
            for (_, reply) in group {
                let _ = reply.send(Err(Error::Failed));
            }
            return;
        }
        let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        match self.write_group(batches) {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                // After a failed write or fsync the state on disk is unknown:
                // stop acknowledging anything until a restart recovers.
                tracing::error!(%error, "table write failed; refusing further writes");
                self.healthy.store(false, Ordering::Release);
                for reply in replies {
                    let _ = reply.send(Err(Error::Failed));
                }
            }
        }
    }

    fn write_group(&mut self, batches: Vec<Vec<Event>>) -> Result<Vec<Vec<PutOutcome>>, Error> {
        let ks = &self.ks;
        let mut batch = ks.db.batch();
        let mut seq = self.last_seq;
        // id key → (request, position) of an event stored earlier in this group
        let mut in_group: HashMap<Vec<u8>, (usize, usize)> = HashMap::new();
        let mut outcomes: Vec<Vec<PutOutcome>> = Vec::with_capacity(batches.len());
        for (r, events) in batches.into_iter().enumerate() {
            let mut out = Vec::with_capacity(events.len());
            for event in events {
                let user = event.user_id.as_key();
                let id = id_key(&user, &event.event_id);
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
                let json = serde_json::to_vec(&event).map_err(Error::Encode)?;
                seq += 1;
                batch.insert(
                    &ks.rows,
                    row_key(&user, event.event_at, &event.event_id),
                    json.clone(),
                );
                batch.insert(&ks.ids, id.clone(), time_bytes(event.event_at).to_vec());
                batch.insert(&ks.changes, seq_key(seq).to_vec(), json);
                in_group.insert(id, (r, out.len()));
                out.push(PutOutcome::Stored(event));
            }
            outcomes.push(out);
        }
        if seq != self.last_seq {
            batch.insert(&ks.meta, LAST_SEQ, seq_key(seq).to_vec());
            batch.commit().map_err(Error::Write)?;
            ks.db
                .persist(PersistMode::SyncAll)
                .map_err(Error::Persist)?;
            self.last_seq = seq;
            self.durable.send_replace(seq);
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
            Some(json) => Ok(Some(serde_json::from_slice(&json).map_err(Error::Decode)?)),
            None => Ok(None),
        }
    }
}
