//! Moves the change log of earlier versions out of fjall into the log's
//! files: first one keyspace named `changes`, later one keyspace per
//! segment, `changes.<first seq>`.

use std::collections::BTreeSet;

use fjall::{Database, KeyspaceCreateOptions};

use super::Log;
use crate::Error;
use crate::keys::seq_from;

const PREFIX: &str = "changes";
/// Changes moved per append.
const CHUNK: usize = 10_000;

/// Appends every change held in fjall to the log, in sequence order, and
/// deletes each keyspace once its changes are durable in files. A move cut
/// short resumes where the log ends.
pub(crate) fn move_from_fjall(db: &Database, log: &Log) -> Result<(), Error> {
    let mut names: Vec<(u64, String)> = db
        .list_keyspace_names()
        .into_iter()
        .filter_map(|name| {
            let name: String = name.to_string();
            let first = match name.strip_prefix(PREFIX)? {
                "" => 0,
                rest => rest.strip_prefix('.')?.parse::<u64>().ok()?,
            };
            Some((first, name))
        })
        .collect();
    names.sort();
    for (_, name) in names {
        let keyspace = db
            .keyspace(&name, KeyspaceCreateOptions::default)
            .map_err(Error::Read)?;
        let mut moved = 0u64;
        let mut chunk: Vec<(u64, fjall::Slice)> = Vec::with_capacity(CHUNK);
        let mut touched = BTreeSet::new();
        let after = log.last_seq()?;
        for guard in keyspace.iter() {
            let (key, value) = guard.into_inner().map_err(Error::Read)?;
            let seq = seq_from(&key)
                .ok_or(Error::Corrupt("a change key that is not a sequence number"))?;
            if seq <= after {
                continue;
            }
            chunk.push((seq, value));
            if chunk.len() == CHUNK {
                moved += append(log, &mut chunk, &mut touched)?;
            }
        }
        moved += append(log, &mut chunk, &mut touched)?;
        log.sync(&touched)?;
        db.delete_keyspace(keyspace).map_err(Error::Write)?;
        tracing::info!(keyspace = %name, moved, "moved changes from fjall into the change log's files");
    }
    Ok(())
}

fn append(
    log: &Log,
    chunk: &mut Vec<(u64, fjall::Slice)>,
    touched: &mut BTreeSet<u64>,
) -> Result<u64, Error> {
    touched.extend(log.append(chunk)?);
    let moved = chunk.len() as u64;
    chunk.clear();
    Ok(moved)
}
