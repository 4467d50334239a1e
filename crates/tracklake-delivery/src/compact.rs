//! Compaction: small files of a partition are merged into files near
//! `target_size_mib`, then vacuum deletes what no recent version reads.
//!
//! In a Delta lake (Parquet) a merge is one commit that removes the
//! sources and adds the merged file, whose rows are sorted by `user_id`
//! and `event_at` (one user's events together: their statistics let a
//! query or an erasure skip the rest). Readers of an older version keep
//! reading the sources until vacuum deletes them, `lake.retention_secs`
//! after the merge.
//!
//! In a plain (NDJSON) lake, runs of adjacent small files are merged,
//! deduplicated by `(user_id, event_id)`; the merged file is named after
//! the union of its sources' change ranges,
//! so it covers them; it is published first and the sources deleted after.
//! Readers that follow the covering rule ([`crate::Lake::live_files`]) never
//! see an event twice or miss one, even mid-swap; a swap cut short by a
//! crash is finished at the next start. Only runs of *adjacent* small files
//! are merged, so a merged range never covers a file that was not merged,
//! and large files (late events' old days included) are never rewritten.

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use object_store::ObjectMeta;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracklake_table::ChangeLog;

use crate::lake::{FileName, split_covered};
use crate::rewrite::{filter_ndjson, filter_parquet};
use crate::{CONSUMER, Error, Lake, Status};

/// The `[compaction]` section of the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionConfig {
    pub enabled: bool,
    /// Merged files aim at this size, in MiB; files of half of it or more
    /// count as large and are left alone.
    pub target_size_mib: u64,
    /// How often partitions are looked at, in seconds.
    pub interval_secs: u64,
    /// Fewest adjacent small files worth merging.
    pub min_files: usize,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            enabled: true,
            target_size_mib: 128,
            interval_secs: 300,
            min_files: 2,
        }
    }
}

/// Runs compaction and vacuum until `stop` turns true.
pub async fn run(
    table: Arc<dyn ChangeLog>,
    lake: Arc<Lake>,
    config: CompactionConfig,
    status: Arc<Status>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Err(error) = compact_once(&*table, &lake, &config, &status).await {
            tracing::warn!(%error, "compaction failed; retrying at the next interval");
        }
        match lake.vacuum().await {
            Ok(0) => {}
            Ok(files) => tracing::info!(files, "vacuum deleted files no recent version reads"),
            Err(error) => tracing::warn!(%error, "vacuum failed; retrying at the next interval"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(config.interval_secs.max(1))) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One pass: finish interrupted swaps, then merge runs of small files.
pub async fn compact_once(
    table: &dyn ChangeLog,
    lake: &Lake,
    config: &CompactionConfig,
    status: &Status,
) -> Result<(), Error> {
    let _rewriting = lake.rewriting().await;
    if lake.is_delta() {
        return delta::compact(lake, config, status).await;
    }
    let (live, covered) = split_covered(lake.files().await?);
    for file in covered {
        lake.delete(&file.location).await?;
    }
    let committed = table.checkpoint(CONSUMER).await?.unwrap_or(0);
    let target = config.target_size_mib.max(1) * 1024 * 1024;
    let mut partitions: BTreeMap<String, Vec<(FileName, ObjectMeta)>> = BTreeMap::new();
    for file in live {
        if let Some(name) = FileName::parse(&file.location).filter(|n| n.last <= committed) {
            partitions
                .entry(name.partition.clone())
                .or_default()
                .push((name, file));
        }
    }
    for (partition, mut files) in partitions {
        files.sort_by_key(|(n, _)| n.first);
        for run in small_runs(&files, target, config.min_files.max(2)) {
            merge(lake, &partition, run, status).await?;
        }
    }
    Ok(())
}

/// Runs of adjacent files under half the target, each run under the target.
fn small_runs(
    files: &[(FileName, ObjectMeta)],
    target: u64,
    min_files: usize,
) -> Vec<&[(FileName, ObjectMeta)]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, (_, meta)) in files.iter().enumerate() {
        let small = meta.size < target / 2;
        if !small || size + meta.size > target {
            if i - start >= min_files {
                runs.push(&files[start..i]);
            }
            start = if small { i } else { i + 1 };
            size = if small { meta.size } else { 0 };
        } else {
            size += meta.size;
        }
    }
    if files.len() - start >= min_files {
        runs.push(&files[start..]);
    }
    runs
}

async fn merge(
    lake: &Lake,
    partition: &str,
    run: &[(FileName, ObjectMeta)],
    status: &Status,
) -> Result<(), Error> {
    let first = run.iter().map(|(n, _)| n.first).min().unwrap_or(0);
    let last = run.iter().map(|(n, _)| n.last).max().unwrap_or(0);
    let mut sources = Vec::with_capacity(run.len());
    for (_, meta) in run {
        sources.push(lake.read(&meta.location).await?);
    }
    let is_parquet = run[0].1.location.as_ref().ends_with(".parquet");
    let gzip = run[0].1.location.as_ref().ends_with(".gz");
    let (body, rows) = tokio::task::spawn_blocking(move || {
        if is_parquet {
            merge_parquet(sources)
        } else {
            merge_ndjson(sources, gzip)
        }
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    let target = lake.file_path(partition, first, last);
    let bytes = body.len();
    lake.publish(&target, body.into()).await?;
    for (_, meta) in run {
        lake.delete(&meta.location).await?;
    }
    status.compactions.fetch_add(1, Ordering::Relaxed);
    status
        .compacted_files
        .fetch_add(run.len() as u64, Ordering::Relaxed);
    tracing::info!(
        partition,
        files = run.len(),
        rows,
        bytes,
        first_seq = first,
        last_seq = last,
        "compacted"
    );
    Ok(())
}

/// A 128-bit fingerprint of `(user_id, event_id)` for deduplication.
fn fingerprint(user: &str, id: &str) -> u128 {
    let h = |salt: u8| {
        std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default()
            .hash_one((salt, user, id))
    };
    (u128::from(h(1)) << 64) | u128::from(h(2))
}

/// Parquet `sources` as one file, each event once.
fn merge_parquet(sources: Vec<bytes::Bytes>) -> Result<(Vec<u8>, usize), Error> {
    let mut seen = HashSet::new();
    filter_parquet(sources, |user, id| seen.insert(fingerprint(user, id)))
}

/// NDJSON `sources` as one file, each event once.
fn merge_ndjson(sources: Vec<bytes::Bytes>, gzip: bool) -> Result<(Vec<u8>, usize), Error> {
    let mut seen = HashSet::new();
    filter_ndjson(sources, gzip, |user, id| seen.insert(fingerprint(user, id)))
}

mod delta;
#[cfg(test)]
mod tests;
