use std::path::Path;

use crate::embedded::tests::{event, ids, open};
use crate::{ChangeLog, PutOutcome, Query, Table};

const USER: i64 = 4;

async fn store(dir: &Path, range: std::ops::RangeInclusive<i64>) {
    let t = open(dir);
    let events = range
        .map(|i| event(USER, &format!("e{i}"), "login", i))
        .collect();
    t.put(events).await.unwrap();
    t.close().await.unwrap();
}

fn recent(ids_: &[&str]) -> Vec<String> {
    ids_.iter().map(|s| s.to_string()).collect()
}

/// fjall is committed after the log and not synced: a crash can take its
/// newest groups. They come back from the log at open.
#[tokio::test]
async fn rows_fjall_lost_are_indexed_again_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 1..=100).await;
    {
        // What fjall holds after losing the group of 61..=100.
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = |n: &str| {
            db.keyspace(n, fjall::KeyspaceCreateOptions::default)
                .unwrap()
        };
        let (rows, ids, meta) = (ks("rows"), ks("ids"), ks("meta"));
        for guard in rows.iter() {
            let (key, value) = guard.into_inner().unwrap();
            if crate::keys::seq_from(&value).unwrap() > 60 {
                ids.remove(crate::keys::id_key_of_row(&key).unwrap())
                    .unwrap();
                rows.remove(key).unwrap();
            }
        }
        meta.insert(crate::writer::LAST_SEQ, 60u64.to_be_bytes())
            .unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let t = open(dir.path());
    let page = t.query(Query::recent(USER.to_string())).await.unwrap();
    assert_eq!(page.events.len(), 50);
    assert_eq!(page.events[0].event_id, "e100");
    // Their ids are back too: a retry is a duplicate, not a second copy.
    let again = t.put(vec![event(USER, "e99", "login", 99)]).await.unwrap();
    assert!(matches!(again[0], PutOutcome::Duplicate(_)));
    let stored = t
        .put(vec![event(USER, "e101", "login", 101)])
        .await
        .unwrap();
    assert!(matches!(stored[0], PutOutcome::Stored(_)));
    let changes = t.read_changes(0, 1000).await.unwrap();
    assert_eq!(changes.len(), 101);
    assert_eq!(changes.last().unwrap().seq, 101);
}

/// After a power loss fjall may hold rows of a group whose log write never
/// reached the disk (it was never acknowledged): they go, and their
/// sequence numbers are not handed out again.
#[tokio::test]
async fn rows_past_the_end_of_the_log_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path(), 1..=10).await;
    let log_dir = dir.path().join("log");
    let segment = std::fs::read_dir(&log_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let kept = std::fs::read(&segment).unwrap();
    store(dir.path(), 11..=20).await;
    // The second group's frames never reached the disk.
    std::fs::write(&segment, kept).unwrap();
    let t = open(dir.path());
    let page = t.query(Query::recent(USER.to_string())).await.unwrap();
    assert_eq!(
        ids(&page),
        recent(&["e10", "e9", "e8", "e7", "e6", "e5", "e4", "e3", "e2", "e1"])
    );
    // The lost events can be sent again, and are stored under new numbers.
    let again = t.put(vec![event(USER, "e15", "login", 15)]).await.unwrap();
    assert!(matches!(again[0], PutOutcome::Stored(_)));
    let changes = t.read_changes(10, 100).await.unwrap();
    assert_eq!(changes.iter().map(|c| c.seq).collect::<Vec<_>>(), [21]);
}
