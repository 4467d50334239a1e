//! The change log, where events are stored: files of compressed frames in
//! `<table>/log`, one per [`SEGMENT`] consecutive sequence numbers, named
//! after the first (`<seq>.log`). Rows and ids (fjall) are an index over
//! it: a row holds its change's sequence number.
//!
//! The log is also the table's journal. The writer appends a group's
//! frames, then commits its rows and ids to fjall without a sync; the
//! syncer fsyncs the log's files once for every group written since, then
//! acknowledges. At open, rows and ids are rebuilt from whatever the log
//! holds past fjall's last sequence number. Each event is written once, in
//! arrival order (delivery reads it sequentially), and compressed once;
//! in fjall it was journaled, flushed and compacted (more than half of the
//! CPU time of ingest, and its write buffers).
//!
//! A segment goes only as a whole: when retention has removed every row
//! that points into it, or, for the changes of rows that carry their own
//! JSON (earlier versions), once delivered. A deleted user's changes are
//! hidden at once (their sequence numbers are kept in `meta` until then)
//! and their segments written anew without them.
//!
//! Trimming is logical: [`TRIMMED`] in `meta` says up to where the stream
//! is consumed, so reads skip what every consumer has.

mod dict;
mod file;
mod frame;
mod migrate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tracklake_event::Event;

use crate::keys::{Row, seq_key};
use crate::{Change, Error};
use dict::{Dicts, Trainer};
use file::{SegmentFile, io_error};
use frame::Encoder;
pub(crate) use migrate::move_from_fjall;

/// Changes per segment: about 8 MB of seed-like events once compressed
/// (64 in this crate's tests, so that they cross segments).
pub(crate) const SEGMENT: u64 = if cfg!(test) { 64 } else { 1 << 16 };
/// The `meta` key of the trimmed-through sequence number.
pub(crate) const TRIMMED: &[u8] = b"changes_trimmed";
/// The `meta` key of the first sequence number whose row points into the
/// log (set when a table of an earlier version is first opened).
pub(crate) const POINTERS_FROM: &[u8] = b"rows_point_from";
/// The `meta` prefix of a deleted user's changes still in the log's files.
pub(crate) const HIDDEN_PREFIX: &[u8] = b"hidden/";
const EXTENSION: &str = "log";

/// A test hook: milliseconds every fsync of the log is made to take longer,
/// to see how tracklake behaves on a slow disk (`tests/it/slow_disk.rs`).
pub(crate) const SYNC_DELAY_VARIABLE: &str = "TRACKLAKE_TEST_FSYNC_DELAY_MS";

fn sync_delay() -> Option<std::time::Duration> {
    let millis = std::env::var(SYNC_DELAY_VARIABLE).ok()?.parse().ok()?;
    tracing::warn!(
        millis,
        "{SYNC_DELAY_VARIABLE} set: every fsync of the table is slowed"
    );
    Some(std::time::Duration::from_millis(millis))
}

pub(crate) fn segment_of(seq: u64) -> u64 {
    seq.saturating_sub(1) / SEGMENT
}

/// Segments below this one hold only changes `<= through`.
fn first_kept(through: u64) -> u64 {
    through / SEGMENT
}

/// The first sequence number a segment holds.
fn first_seq(segment: u64) -> u64 {
    segment * SEGMENT + 1
}

fn file_name(segment: u64) -> String {
    format!("{:020}.{EXTENSION}", first_seq(segment))
}

/// The `meta` key that keeps a deleted user's change hidden until its
/// segment is written anew.
pub(crate) fn hidden_key(seq: u64) -> Vec<u8> {
    [HIDDEN_PREFIX, &seq_key(seq)].concat()
}

pub(crate) struct Log {
    dir: PathBuf,
    /// By segment number, `(seq - 1) / SEGMENT`.
    segments: RwLock<BTreeMap<u64, Arc<SegmentFile>>>,
    /// A deleted user's changes, hidden from reads until their segment is
    /// written anew without them.
    hidden: RwLock<BTreeSet<u64>>,
    /// The zstd dictionaries frames are compressed with (in `dict/`).
    dicts: Dicts,
    /// The writer's (and a rewrite's) compressor, buffers and samples.
    writing: Mutex<Writing>,
    /// Added to each sync ([`SYNC_DELAY_VARIABLE`]).
    sync_delay: Option<std::time::Duration>,
}

struct Writing {
    encoder: Encoder,
    trainer: Trainer,
}

impl Log {
    /// Opens the log in `dir`, cutting a torn write off its newest files.
    pub fn open(dir: &Path, hidden: BTreeSet<u64>) -> Result<Log, Error> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut found = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let path = entry.map_err(io_error(dir))?.path();
            let first = path
                .extension()
                .filter(|e| *e == EXTENSION)
                .and_then(|_| path.file_stem()?.to_str()?.parse::<u64>().ok());
            match first {
                Some(first) if first % SEGMENT == 1 => {
                    found.insert(segment_of(first), path);
                }
                // A rewrite that did not finish: the segment is whole.
                _ if path.extension().is_some_and(|e| e == "rewrite") => {
                    std::fs::remove_file(&path).map_err(io_error(&path))?;
                }
                _ => {}
            }
        }
        // A group spans at most two segments, and few groups wait for a
        // sync: only the newest three can hold a torn write.
        let verify_from = found.keys().next_back().map_or(0, |s| s.saturating_sub(2));
        let mut segments = BTreeMap::new();
        for (segment, path) in found {
            let file = SegmentFile::open(path, first_seq(segment), segment >= verify_from)?;
            segments.insert(segment, Arc::new(file));
        }
        Ok(Log {
            dir: dir.to_path_buf(),
            segments: RwLock::new(segments),
            hidden: RwLock::new(hidden),
            dicts: Dicts::open(&dir.join("dict"))?,
            writing: Mutex::new(Writing {
                encoder: Encoder::new()?,
                trainer: Trainer::default(),
            }),
            sync_delay: sync_delay(),
        })
    }

    /// The newest change in the log (0 when empty).
    pub fn last_seq(&self) -> Result<u64, Error> {
        for segment in self.all().iter().rev() {
            let last = segment.last_seq()?;
            if last > 0 {
                return Ok(last);
            }
        }
        Ok(0)
    }

    /// Appends changes (in sequence order, after every change stored);
    /// returns the segments written to, for [`Log::sync`].
    pub fn append(&self, changes: &[(u64, impl AsRef<[u8]>)]) -> Result<Vec<u64>, Error> {
        let mut writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let Writing { encoder, trainer } = &mut *writing;
        if let Some((first, _)) = changes.first() {
            let samples = changes.iter().map(|(seq, json)| (*seq, json.as_ref()));
            trainer.before_append(&self.dicts, *first, samples)?;
        }
        let mut touched = Vec::new();
        let (mut bytes, mut frames) = (Vec::new(), Vec::new());
        for run in changes.chunk_by(|a, b| segment_of(a.0) == segment_of(b.0)) {
            let (Some(first), Some(last)) = (run.first(), run.last()) else {
                continue;
            };
            let segment = segment_of(first.0);
            let file = self.for_write(segment)?;
            bytes.clear();
            frames.clear();
            encoder.encode(run, &self.dicts, &mut bytes, &mut frames)?;
            file.append(&bytes, &frames, last.0)?;
            touched.push(segment);
        }
        Ok(touched)
    }

    /// Makes the changes appended to these segments durable.
    pub fn sync(&self, segments: &BTreeSet<u64>) -> Result<(), Error> {
        if let Some(delay) = self.sync_delay {
            std::thread::sleep(delay);
        }
        for segment in segments {
            if let Some(file) = self.read_lock().get(segment).cloned() {
                file.sync()?;
            }
        }
        Ok(())
    }

    fn for_write(&self, segment: u64) -> Result<Arc<SegmentFile>, Error> {
        if let Some(file) = self.read_lock().get(&segment) {
            return Ok(file.clone());
        }
        let mut open = self.segments.write().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = open.get(&segment) {
            return Ok(file.clone());
        }
        let path = self.dir.join(file_name(segment));
        let file = Arc::new(SegmentFile::create(&self.dir, path, first_seq(segment))?);
        open.insert(segment, file.clone());
        Ok(file)
    }

    /// Up to `max` changes in `from..=to`, oldest first.
    pub fn read(&self, from: u64, to: u64, max: usize) -> Result<Vec<Change>, Error> {
        let files: Vec<Arc<SegmentFile>> = self
            .read_lock()
            .range(segment_of(from)..=segment_of(to))
            .map(|(_, f)| f.clone())
            .collect();
        // Copied out, so that a deletion (on the writer thread) never waits
        // for a read's I/O.
        let hidden: BTreeSet<u64> = self
            .hidden
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .range(from..=to)
            .copied()
            .collect();
        let mut changes = Vec::new();
        for file in files {
            if changes.len() >= max {
                break;
            }
            file.read(from, to, &self.dicts, |seq, json| {
                if !hidden.contains(&seq) {
                    changes.push(Change {
                        seq,
                        json: json.to_vec(),
                    });
                }
                changes.len() < max
            })?;
        }
        Ok(changes)
    }

    /// The stored JSON of one change, if it is kept.
    pub fn get(&self, seq: u64) -> Result<Option<Vec<u8>>, Error> {
        if self.is_hidden(seq) {
            return Ok(None);
        }
        let Some(file) = self.read_lock().get(&segment_of(seq)).cloned() else {
            return Ok(None);
        };
        let mut found = None;
        file.read(seq, seq, &self.dicts, |_, json| {
            found = Some(json.to_vec());
            false
        })?;
        Ok(found)
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

    fn is_hidden(&self, seq: u64) -> bool {
        self.hidden
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&seq)
    }

    /// Hides changes from reads (their `meta` entries are the caller's).
    pub fn hide(&self, seqs: impl IntoIterator<Item = u64>) {
        self.hidden
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(seqs);
    }

    /// Segments that hold hidden changes.
    pub fn hidden_segments(&self) -> Vec<u64> {
        let hidden = self.hidden.read().unwrap_or_else(|p| p.into_inner());
        let segments: BTreeSet<u64> = hidden.iter().map(|s| segment_of(*s)).collect();
        segments.into_iter().collect()
    }

    /// Writes these segments anew without their hidden changes, so that a
    /// deleted user's events leave the disk; returns the changes removed
    /// (no longer hidden: they are gone).
    pub fn purge(&self, segments: &[u64]) -> Result<Vec<u64>, Error> {
        let mut removed = Vec::new();
        for segment in segments {
            let hidden: BTreeSet<u64> = {
                let all = self.hidden.read().unwrap_or_else(|p| p.into_inner());
                let range = first_seq(*segment)..first_seq(segment + 1);
                all.range(range).copied().collect()
            };
            let file = self.read_lock().get(segment).cloned();
            let Some(file) = file.filter(|_| !hidden.is_empty()) else {
                // A segment already dropped holds nothing any more.
                removed.extend(hidden);
                continue;
            };
            let mut writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
            file.rewrite(&mut writing.encoder, &self.dicts, |seq| {
                !hidden.contains(&seq)
            })?;
            drop(writing);
            removed.extend(hidden);
        }
        Ok(removed)
    }

    /// Forgets hidden changes once their `meta` entries are gone.
    pub fn forget_hidden(&self, seqs: &[u64]) {
        let mut hidden = self.hidden.write().unwrap_or_else(|p| p.into_inner());
        for seq in seqs {
            hidden.remove(seq);
        }
    }

    /// Every segment, oldest first.
    fn all(&self) -> Vec<Arc<SegmentFile>> {
        self.read_lock().values().cloned().collect()
    }

    /// How many segments, and their bytes on disk.
    pub fn size(&self) -> (usize, u64) {
        let all = self.all();
        let bytes = all.iter().filter_map(|f| f.disk_bytes().ok()).sum();
        (all.len(), bytes)
    }

    /// How many zstd dictionaries the log's frames use.
    pub fn dictionaries(&self) -> usize {
        self.dicts.len()
    }

    /// Drops the segments whose changes are all `<= through`: only for
    /// changes that no row points at.
    pub fn drop_through(&self, through: u64) -> Result<usize, Error> {
        self.drop_where(|segment| segment < first_kept(through))
    }

    /// Drops the segments whose changes are all `<= through` and that no
    /// row points into (`referenced` holds the segments rows point into).
    pub fn drop_unreferenced(
        &self,
        through: u64,
        referenced: &BTreeSet<u64>,
    ) -> Result<usize, Error> {
        self.drop_where(|segment| segment < first_kept(through) && !referenced.contains(&segment))
    }

    /// The newest segment is always kept: where the log ends tells `recover`
    /// how far fjall may be ahead after a crash.
    fn drop_where(&self, mut drop: impl FnMut(u64) -> bool) -> Result<usize, Error> {
        let (gone, oldest): (Vec<Arc<SegmentFile>>, Option<u64>) = {
            let mut open = self.segments.write().unwrap_or_else(|p| p.into_inner());
            let newest = open.keys().next_back().copied();
            let gone: Vec<u64> = open
                .keys()
                .copied()
                .filter(|s| Some(*s) != newest && drop(*s))
                .collect();
            let gone = gone.iter().filter_map(|s| open.remove(s)).collect();
            (gone, open.keys().next().copied())
        };
        for file in &gone {
            std::fs::remove_file(&file.path).map_err(io_error(&file.path))?;
        }
        if !gone.is_empty() {
            file::sync_dir(&self.dir)?;
            if let Some(oldest) = oldest {
                self.dicts.drop_before(first_seq(oldest))?;
            }
        }
        Ok(gone.len())
    }

    fn read_lock(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<SegmentFile>>> {
        self.segments.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests;
