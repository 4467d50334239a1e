//! Converting a Parquet lake of an earlier tracklake (plain files under
//! `events/`, the covering rule, the stream position in the table) into a
//! Delta table, without loss: one commit creates the log holding every
//! live file that delivery had finished (changes up to `delivered`) with
//! that position. Files of an unfinished delivery are left out (the change
//! log still holds their events, delivered again next), and superseded ones
//! (a compaction's sources, an erasure's old versions) too; both are
//! deleted after the commit, or by vacuum should the process stop first.
//! Interrupted, it is simply done again: nothing changes before the commit.

use object_store::ObjectMeta;

use super::delta::DeltaLog;
use super::layout::{FileName, partition_day, range_of, split_covered};
use super::{Lake, NewFile};
use crate::Error;

/// Parquet files under `events/` that are in no Delta log.
pub(super) async fn legacy_files(lake: &Lake) -> Result<Vec<ObjectMeta>, Error> {
    Ok(lake
        .files()
        .await?
        .into_iter()
        .filter(|f| f.location.as_ref().ends_with(".parquet"))
        .collect())
}

pub(super) async fn convert(
    lake: &Lake,
    delta: &DeltaLog,
    stream: u64,
    delivered: u64,
) -> Result<(), Error> {
    let (live, superseded) = split_covered(legacy_files(lake).await?);
    let mut keep = Vec::new();
    let mut drop = superseded;
    for file in live {
        let name = FileName::parse(&file.location);
        match name
            .as_ref()
            .and_then(|n| Some((n, partition_day(&n.partition)?)))
        {
            Some((name, day)) if name.last <= delivered => keep.push((file, day)),
            Some(_) => drop.push(file),
            // Written for a Delta log but never committed to one.
            None if range_of(&file.location).is_some() => drop.push(file),
            None => {
                return Err(Error::Lake(format!(
                    "{} is not a file tracklake wrote; move it out of the lake and start again",
                    file.location
                )));
            }
        }
    }
    let mut adds = Vec::with_capacity(keep.len());
    for (file, day) in &keep {
        let body = lake.read(&file.location).await?;
        adds.push(NewFile::parquet(file.location.clone(), *day, &body)?);
    }
    tracing::info!(
        files = adds.len(),
        left_out = drop.len(),
        delivered,
        lake = %lake.location,
        "converting the lake into a Delta table"
    );
    delta
        .create(adds, stream, delivered, lake.retention_secs())
        .await?;
    for file in drop {
        lake.delete(&file.location).await?;
    }
    Ok(())
}
