//! The Delta log stays quick to open however many commits it takes.

use super::*;
use crate::{NewFile, Operation, Update};

/// Every 100th version (99, 199, …) is a checkpoint (delta-rs's default
/// interval), and
/// a lake opened afresh starts from it: the commits before it may go
/// (log cleanup) without changing what a reader sees.
#[tokio::test]
async fn the_log_is_checkpointed_every_hundred_commits() {
    let s = setup(LakeConfig::default());
    crate::claim_lake(&*s.table, &s.lake).await.unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    for seq in 1..=101u64 {
        let update = Update {
            operation: Operation::Deliver,
            add: vec![NewFile {
                path: s.lake.file_path("dt=2026-11-20", seq, seq),
                day,
                size: 1,
                stats: None,
            }],
            remove: Vec::new(),
            delivered_through: Some(seq),
        };
        s.lake.commit(update).await.unwrap();
    }
    let log = s._dir.path().join("lake/events/_delta_log");
    assert!(
        log.join("00000000000000000099.checkpoint.parquet").exists(),
        "no checkpoint at version 99"
    );
    // A reader that finds only the checkpoint and the commits after it
    // still sees all 101 files and the stream position.
    for version in 0..=99 {
        std::fs::remove_file(log.join(format!("{version:020}.json"))).unwrap();
    }
    let fresh = Lake::open(&LakeConfig::default(), s._dir.path()).unwrap();
    let snapshot = fresh.snapshot().await.unwrap();
    assert_eq!(snapshot.version, Some(101));
    assert_eq!(snapshot.files.len(), 101);
    assert_eq!(snapshot.delivered, Some(101));
}
