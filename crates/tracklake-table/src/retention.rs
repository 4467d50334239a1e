//! Optional retention: rows older than `retention_days` leave the table.
//! The lake keeps the history, so this only bounds the table's size. A row
//! leaves only once every consumer of the change stream has read it (when
//! none is registered, nothing waits for it), and its change with it; a
//! segment of the change log goes once no row points into it.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::Duration;

use chrono::Utc;

use crate::embedded::Keyspaces;
use crate::keys::{decode_row, id_key_of_row, seq_from, time_of_row};
use crate::log::segment_of;
use crate::writer::LAST_SEQ;

pub(crate) const CHECKPOINT_PREFIX: &[u8] = b"checkpoint/";

const SWEEP_EVERY: Duration = Duration::from_secs(3600);
const DELETE_BATCH: usize = 10_000;

/// A background thread that sweeps once at start and then hourly; dropping
/// it stops the thread.
pub(crate) struct Sweeper {
    _stop: mpsc::Sender<()>,
}

impl Sweeper {
    pub fn start(ks: Keyspaces, days: u32) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("table-retention".into())
            .spawn(move || {
                loop {
                    match sweep(&ks, days) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(rows = n, days, "retention removed old rows"),
                        Err(error) => tracing::warn!(%error, "retention sweep failed"),
                    }
                    // A message or a dropped sender both mean: stop.
                    if stopped.recv_timeout(SWEEP_EVERY) != Err(mpsc::RecvTimeoutError::Timeout) {
                        return;
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "could not start the retention thread");
        }
        Sweeper { _stop: stop }
    }
}

/// Removes rows (and their id entries and changes) older than `days`, then
/// the segments no row points into; returns how many rows.
pub(crate) fn sweep(ks: &Keyspaces, days: u32) -> Result<usize, crate::Error> {
    use crate::Error::{Read, Write};
    let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
    let released = released_through(ks).map_err(Read)?;
    let mut removed = 0;
    let mut referenced = BTreeSet::new();
    let mut batch = ks.db.batch();
    for guard in ks.rows.iter() {
        let (key, value) = guard.into_inner().map_err(Read)?;
        let row = decode_row(&value)?;
        if time_of_row(&key).is_none_or(|t| t >= cutoff) || row.seq > released {
            if row.inline.is_none() {
                referenced.insert(segment_of(row.seq));
            }
            continue;
        }
        if let Some(id) = id_key_of_row(&key) {
            batch.remove(&ks.ids, id);
        }
        // Its change stays in the log's file until no row points into
        // the segment; nothing reads it meanwhile.
        batch.remove(&ks.rows, key);
        removed += 1;
        if batch.len() >= DELETE_BATCH {
            std::mem::replace(&mut batch, ks.db.batch())
                .commit()
                .map_err(Write)?;
        }
    }
    batch.commit().map_err(Write)?;
    let segments = ks.log.drop_unreferenced(released, &referenced)?;
    if segments > 0 {
        tracing::info!(segments, "retention dropped segments of the change log");
    }
    Ok(removed)
}

/// The newest change every consumer has read: the lowest checkpoint, or the
/// newest change when no consumer is registered.
fn released_through(ks: &Keyspaces) -> Result<u64, fjall::Error> {
    let mut lowest: Option<u64> = None;
    for guard in ks.meta.prefix(CHECKPOINT_PREFIX) {
        let seq = seq_from(&guard.value()?).unwrap_or(0);
        lowest = Some(lowest.map_or(seq, |l| l.min(seq)));
    }
    match lowest {
        Some(seq) => Ok(seq),
        None => Ok(ks
            .meta
            .get(LAST_SEQ)?
            .as_deref()
            .and_then(seq_from)
            .unwrap_or(0)),
    }
}
