//! Brings fjall's rows and ids in line with the change log at open.
//!
//! A group is appended to the log, then committed to fjall unsynced, and
//! acknowledged once the log is fsynced. So after a crash fjall may lack
//! the newest groups: they are indexed again from the log. After a power
//! loss fjall may even hold rows of a group whose log write never reached
//! the disk (never acknowledged): those rows go.

use fjall::PersistMode;

use crate::Error;
use crate::embedded::Keyspaces;
use crate::keys::{decode_row, id_key, id_key_of_row, row_key, seq_from, seq_key, time_bytes};
use crate::writer::LAST_SEQ;

/// The `meta` key of the first sequence number written to the log's files
/// (earlier ones were moved there from fjall, or are gone).
const LOG_FROM: &[u8] = b"log_from";
/// Changes indexed per commit.
const CHUNK: usize = 10_000;

/// Reconciles fjall with the log; returns the newest sequence number
/// handed out, which is never handed out again.
pub(crate) fn rebuild(ks: &Keyspaces) -> Result<u64, Error> {
    let indexed = meta_seq(ks, LAST_SEQ)?.unwrap_or(0);
    let logged = ks.log.last_seq()?;
    let log_from = match meta_seq(ks, LOG_FROM)? {
        Some(seq) => seq,
        None => {
            ks.meta
                .insert(LOG_FROM, seq_key(indexed + 1))
                .map_err(Error::Write)?;
            ks.db
                .persist(PersistMode::SyncAll)
                .map_err(Error::Persist)?;
            indexed + 1
        }
    };
    if logged > indexed {
        index(ks, indexed, logged)?;
        return Ok(logged);
    }
    // Rows past the log's end (and past what an earlier version wrote)
    // point at nothing.
    let kept = logged.max(log_from - 1);
    if indexed > kept {
        unindex(ks, kept, indexed)?;
    }
    Ok(indexed)
}

fn meta_seq(ks: &Keyspaces, key: &[u8]) -> Result<Option<u64>, Error> {
    Ok(ks
        .meta
        .get(key)
        .map_err(Error::Read)?
        .as_deref()
        .and_then(seq_from))
}

/// Adds the rows and ids of the log's changes in `after+1..=through`.
fn index(ks: &Keyspaces, after: u64, through: u64) -> Result<(), Error> {
    let mut from = after + 1;
    let mut count = 0u64;
    while from <= through {
        let changes = ks.log.read(from, through, CHUNK)?;
        let Some(last) = changes.last().map(|c| c.seq) else {
            break;
        };
        let mut batch = ks.db.batch();
        for change in &changes {
            let event = change.event()?;
            let user = event.user_id.as_key();
            batch.insert(
                &ks.rows,
                row_key(&user, event.event_at, &event.event_id),
                seq_key(change.seq),
            );
            batch.insert(
                &ks.ids,
                id_key(&user, &event.event_id),
                time_bytes(event.event_at),
            );
        }
        batch.insert(&ks.meta, LAST_SEQ, seq_key(last));
        batch.commit().map_err(Error::Write)?;
        count += changes.len() as u64;
        from = last + 1;
    }
    ks.meta
        .insert(LAST_SEQ, seq_key(through))
        .map_err(Error::Write)?;
    ks.db
        .persist(PersistMode::SyncAll)
        .map_err(Error::Persist)?;
    tracing::info!(
        count,
        through,
        "indexed the change log's newest changes again after a crash"
    );
    Ok(())
}

/// Removes the rows (and ids) that point at changes in `after+1..=through`,
/// which the log does not hold. Reads every row: this follows a power loss
/// only.
fn unindex(ks: &Keyspaces, after: u64, through: u64) -> Result<(), Error> {
    let mut batch = ks.db.batch();
    let mut count = 0u64;
    for guard in ks.rows.iter() {
        let (key, value) = guard.into_inner().map_err(Error::Read)?;
        let row = decode_row(&value)?;
        if row.inline.is_some() || row.seq <= after || row.seq > through {
            continue;
        }
        if let Some(id) = id_key_of_row(&key) {
            batch.remove(&ks.ids, id);
        }
        batch.remove(&ks.rows, key);
        count += 1;
    }
    batch.commit().map_err(Error::Write)?;
    ks.db
        .persist(PersistMode::SyncAll)
        .map_err(Error::Persist)?;
    if count == 0 {
        return Ok(());
    }
    tracing::warn!(
        count,
        after,
        through,
        "removed rows whose events never reached the change log (lost in a crash before they were acknowledged)"
    );
    Ok(())
}

#[cfg(test)]
mod tests;
