//! The change log, kept in segments: one keyspace per [`SEGMENT`]
//! consecutive sequence numbers, named `changes.<first seq>`. It is where
//! events are stored (rows point into it), so a segment goes only as a
//! whole: when retention has removed every row that points into it, or,
//! for the changes of earlier versions whose rows carry their own JSON,
//! once delivered. (A tombstone per delivered change cost delivery a third
//! of its CPU time: the tombstones were journaled, flushed and compacted
//! against the log they deleted.)
//!
//! Trimming is logical: [`TRIMMED`] in `meta` says up to where the stream
//! is consumed, so reads skip what every consumer has.

use std::collections::BTreeMap;
use std::sync::RwLock;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};

use crate::keys::{Row, seq_from, seq_key};
use crate::{Change, Error};
use tracklake_event::Event;

/// Changes per segment: about 35 MB of seed-like events (64 in this
/// crate's tests, so that they cross segments).
pub(crate) const SEGMENT: u64 = if cfg!(test) { 64 } else { 1 << 16 };
/// The `meta` key of the trimmed-through sequence number.
pub(crate) const TRIMMED: &[u8] = b"changes_trimmed";
/// The `meta` key of the first sequence number whose row points into the
/// log (set when a table of an earlier version is first opened).
pub(crate) const POINTERS_FROM: &[u8] = b"rows_point_from";
const PREFIX: &str = "changes.";
/// The one keyspace of earlier versions, moved into segments at open.
const LEGACY: &str = "changes";

pub(crate) struct Segments {
    db: Database,
    /// How a new segment is made.
    options: KeyspaceCreateOptions,
    /// By segment number, `(seq - 1) / SEGMENT`.
    open: RwLock<BTreeMap<u64, Keyspace>>,
}

pub(crate) fn segment_of(seq: u64) -> u64 {
    seq.saturating_sub(1) / SEGMENT
}

/// Segments below this one hold only changes `<= through`.
fn first_kept(through: u64) -> u64 {
    through / SEGMENT
}

fn name(segment: u64) -> String {
    format!("{PREFIX}{:020}", segment * SEGMENT + 1)
}

impl Segments {
    /// Opens every segment, moving an earlier version's log into segments.
    pub fn open(db: &Database, options: KeyspaceCreateOptions) -> Result<Self, fjall::Error> {
        let mut open = BTreeMap::new();
        for name in db.list_keyspace_names() {
            let Some(first) = name
                .strip_prefix(PREFIX)
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let keyspace = db.keyspace(&name, || options.clone())?;
            open.insert(segment_of(first), keyspace);
        }
        let segments = Segments {
            db: db.clone(),
            options,
            open: RwLock::new(open),
        };
        if db.keyspace_exists(LEGACY) {
            segments.move_legacy()?;
        }
        Ok(segments)
    }

    fn move_legacy(&self) -> Result<(), fjall::Error> {
        let legacy = self.db.keyspace(LEGACY, KeyspaceCreateOptions::default)?;
        let mut batch = self.db.batch();
        for guard in legacy.iter() {
            let (key, value) = guard.into_inner()?;
            if let Some(seq) = seq_from(&key) {
                batch.insert(&self.for_write(seq)?, key, value);
            }
            if batch.len() >= 10_000 {
                std::mem::replace(&mut batch, self.db.batch()).commit()?;
            }
        }
        batch.commit()?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        self.db.delete_keyspace(legacy)
    }

    /// The segment that holds `seq`, created when it is the first.
    pub fn for_write(&self, seq: u64) -> Result<Keyspace, fjall::Error> {
        let segment = segment_of(seq);
        if let Some(keyspace) = self.read_lock().get(&segment) {
            return Ok(keyspace.clone());
        }
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        if let Some(keyspace) = open.get(&segment) {
            return Ok(keyspace.clone());
        }
        let keyspace = self.db.keyspace(&name(segment), || self.options.clone())?;
        open.insert(segment, keyspace.clone());
        Ok(keyspace)
    }

    /// Up to `max` changes in `from..=to`, oldest first.
    pub fn read(&self, from: u64, to: u64, max: usize) -> Result<Vec<Change>, Error> {
        let segments: Vec<Keyspace> = self
            .read_lock()
            .range(segment_of(from)..=segment_of(to))
            .map(|(_, k)| k.clone())
            .collect();
        let mut changes = Vec::new();
        for keyspace in segments {
            for guard in keyspace
                .range(seq_key(from)..=seq_key(to))
                .take(max - changes.len())
            {
                let (key, json) = guard.into_inner().map_err(Error::Read)?;
                let seq = seq_from(&key)
                    .ok_or(Error::Corrupt("a change key that is not a sequence number"))?;
                changes.push(Change {
                    seq,
                    json: json.to_vec(),
                });
            }
            if changes.len() == max {
                break;
            }
        }
        Ok(changes)
    }

    /// The stored JSON of one change, if it is kept.
    pub fn get(&self, seq: u64) -> Result<Option<fjall::Slice>, Error> {
        let Some(keyspace) = self.read_lock().get(&segment_of(seq)).cloned() else {
            return Ok(None);
        };
        keyspace.get(seq_key(seq)).map_err(Error::Read)
    }

    /// The event a row stores: its own JSON (rows of earlier versions) or
    /// the change it points at.
    pub fn event(&self, row: &Row<'_>) -> Result<Event, Error> {
        let decode = |json: &[u8]| serde_json::from_slice(json).map_err(Error::Decode);
        match row.inline {
            Some(json) => decode(json),
            None => decode(
                &self
                    .get(row.seq)?
                    .ok_or(Error::Corrupt("a row whose change is missing"))?,
            ),
        }
    }

    /// Removes one change (in the caller's batch).
    pub fn remove(&self, batch: &mut fjall::OwnedWriteBatch, seq: u64) {
        if let Some(keyspace) = self.read_lock().get(&segment_of(seq)) {
            batch.remove(keyspace, seq_key(seq).to_vec());
        }
    }

    /// Rewrites these segments without what was removed from them, so that
    /// a deleted user's events leave the disk: the log is written in key
    /// order and seldom compacted, so its removals would otherwise stay
    /// tombstones over the data. Flushes the segments' write buffers first.
    pub fn purge(&self, segments: &[u64]) -> Result<(), Error> {
        for segment in segments {
            let Some(keyspace) = self.read_lock().get(segment).cloned() else {
                continue;
            };
            keyspace.rotate_memtable_and_wait().map_err(Error::Write)?;
            keyspace.major_compact().map_err(Error::Write)?;
        }
        Ok(())
    }

    /// Every open segment, oldest first.
    pub fn all(&self) -> Vec<Keyspace> {
        self.read_lock().values().cloned().collect()
    }

    /// Drops the segments whose changes are all `<= through`: only for
    /// changes that no row points at.
    pub fn drop_through(&self, through: u64) -> Result<(), fjall::Error> {
        self.drop_where(|segment| segment < first_kept(through))
    }

    /// Drops the segments whose changes are all `<= through` and that no
    /// row points into (`referenced` holds the segments rows point into).
    pub fn drop_unreferenced(
        &self,
        through: u64,
        referenced: &std::collections::BTreeSet<u64>,
    ) -> Result<usize, fjall::Error> {
        let mut dropped = 0;
        self.drop_where(|segment| {
            let drop = segment < first_kept(through) && !referenced.contains(&segment);
            dropped += usize::from(drop);
            drop
        })?;
        Ok(dropped)
    }

    fn drop_where(&self, mut drop: impl FnMut(u64) -> bool) -> Result<(), fjall::Error> {
        let done: Vec<Keyspace> = {
            let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<u64> = open.keys().copied().filter(|s| drop(*s)).collect();
            gone.iter().filter_map(|s| open.remove(s)).collect()
        };
        for keyspace in done {
            self.db.delete_keyspace(keyspace)?;
        }
        Ok(())
    }

    fn read_lock(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Keyspace>> {
        self.open.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_consecutive_sequence_numbers() {
        assert_eq!(segment_of(1), 0);
        assert_eq!(segment_of(SEGMENT), 0);
        assert_eq!(segment_of(SEGMENT + 1), 1);
        // Segment 0 holds 1..=SEGMENT: it goes once SEGMENT is trimmed.
        assert_eq!(first_kept(SEGMENT - 1), 0);
        assert_eq!(first_kept(SEGMENT), 1);
        assert_eq!(first_kept(2 * SEGMENT - 1), 1);
        assert!(name(0) < name(1) && name(1) < name(10));
    }
}
