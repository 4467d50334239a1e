use super::*;
use chrono::{DateTime, TimeZone, Utc};
use tracklake_event::{Device, UserId};

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(minute)
}

pub(crate) fn event(user: i64, id: &str, kind: &str, minute: i64) -> Event {
    Event {
        event_id: id.into(),
        user_id: UserId::Int(user),
        event_type: kind.into(),
        event_at: at(minute),
        received_at: at(minute),
        user_agent: None,
        ip_address: None,
        properties: Default::default(),
        device: Device::unknown(),
        web: Default::default(),
        server_assigned_id: false,
    }
}

/// `n` logins, `e0`, `e1`, …, dealt to `users` users, a minute apart.
fn logins(n: i64, users: i64) -> Vec<Event> {
    (0..n)
        .map(|i| event(i % users, &format!("e{i}"), "login", i))
        .collect()
}

pub(crate) fn open(dir: &Path) -> EmbeddedTable {
    EmbeddedTable::open(dir, &TableConfig::default()).unwrap()
}

pub(crate) fn ids(page: &Page) -> Vec<&str> {
    page.events.iter().map(|e| e.event_id.as_str()).collect()
}

#[tokio::test]
async fn behaves_as_every_table_must() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    crate::suite::run_all(&t, "").await;
}

#[tokio::test]
async fn duplicates_do_not_enter_the_change_stream() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    t.put(vec![event(1, "x", "login", 1)]).await.unwrap();
    t.put(vec![
        event(1, "x", "material-view", 5),
        event(2, "x", "login", 1),
    ])
    .await
    .unwrap();
    assert_eq!(t.read_changes(0, 100).await.unwrap().len(), 2);
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = open(dir.path());
        t.put(vec![event(1, "a", "login", 1), event(1, "b", "login", 2)])
            .await
            .unwrap();
        t.save_checkpoint("lake", 1).await.unwrap();
        t.close().await.unwrap();
        assert!(
            t.put(vec![event(1, "late", "login", 3)]).await.is_err(),
            "closed tables refuse writes"
        );
    }
    let t = open(dir.path());
    assert_eq!(ids(&t.query(Query::recent("1")).await.unwrap()), ["b", "a"]);
    assert_eq!(t.checkpoint("lake").await.unwrap(), Some(1));
    assert_eq!(t.checkpoint("other").await.unwrap(), None);
    assert!(matches!(
        t.put(vec![event(1, "a", "login", 1)]).await.unwrap()[0],
        PutOutcome::Duplicate(_)
    ));
    t.put(vec![event(1, "c", "login", 3)]).await.unwrap();
    let changes = t.read_changes(0, 10).await.unwrap();
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [1, 2, 3], "sequence numbers continue after a restart");
    assert_eq!(*t.watch_changes().borrow(), 3);
}

#[tokio::test]
async fn change_stream_reads_in_batches_and_trims() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    t.put(logins(250, 7)).await.unwrap();
    let first = t.read_changes(0, 100).await.unwrap();
    assert_eq!(first.len(), 100);
    assert_eq!((first[0].seq, first[99].seq), (1, 100));
    assert_eq!(first[0].event().unwrap().event_id, "e0");
    let last = t.read_changes(200, 100).await.unwrap();
    assert_eq!(last.len(), 50);
    t.trim_changes(100).await.unwrap();
    assert_eq!(t.read_changes(0, 10).await.unwrap()[0].seq, 101);
    assert!(t.read_changes(250, 10).await.unwrap().is_empty());
    // Trimming goes on where it stopped after a reopen, and again at once.
    t.close().await.unwrap();
    drop(t);
    let t = open(dir.path());
    t.trim_changes(200).await.unwrap();
    t.trim_changes(150).await.unwrap();
    assert_eq!(t.read_changes(0, 10).await.unwrap()[0].seq, 201);
    // The changes hold the events, so trimming keeps every segment (250
    // changes in segments of 64) and every event stays readable.
    assert_eq!(t.stats()["changes"]["segments"], 4);
    let all = Query {
        limit: 1000,
        ..Query::recent("3")
    };
    assert_eq!(t.query(all).await.unwrap().events.len(), 36);
    t.trim_changes(250).await.unwrap();
    assert!(t.read_changes(0, 10).await.unwrap().is_empty());
    t.close().await.unwrap();
    drop(t);
    let t = open(dir.path());
    t.put(vec![event(1, "late", "login", 1)]).await.unwrap();
    let changes = t.read_changes(0, 10).await.unwrap();
    assert_eq!(changes.iter().map(|c| c.seq).collect::<Vec<_>>(), [251]);
}

#[tokio::test]
async fn retention_removes_old_rows_only() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    let mut old = event(1, "old", "login", 0);
    old.event_at = Utc::now() - chrono::Duration::days(40);
    let mut new = event(1, "new", "login", 0);
    new.event_at = Utc::now() - chrono::Duration::days(2);
    t.put(vec![old.clone(), new]).await.unwrap();
    // A consumer that has not read the old row yet holds it back.
    t.save_checkpoint("lake", 0).await.unwrap();
    assert_eq!(crate::retention::sweep(&t.ks, 30).unwrap(), 0);
    assert_eq!(t.read_changes(0, 10).await.unwrap().len(), 2);
    t.save_checkpoint("lake", 2).await.unwrap();
    assert_eq!(crate::retention::sweep(&t.ks, 30).unwrap(), 1);
    assert_eq!(ids(&t.query(Query::recent("1")).await.unwrap()), ["new"]);
    // Its id entry went too, so the same event may be stored again.
    assert!(matches!(
        t.put(vec![old]).await.unwrap()[0],
        PutOutcome::Stored(_)
    ));
}

#[tokio::test]
async fn retention_drops_segments_no_row_points_into() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    let aged = |id: u64, days: i64| {
        let mut e = event(id as i64 % 5, &format!("e{id}"), "login", 0);
        e.event_at = Utc::now() - chrono::Duration::days(days);
        e
    };
    // Segment 0 (changes 1..=64) only old events; segment 1 one old and
    // the rest new; segment 2 is being written.
    t.put((1..=64).map(|i| aged(i, 40)).collect())
        .await
        .unwrap();
    t.put(
        (65..=140)
            .map(|i| aged(i, if i == 65 { 40 } else { 1 }))
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(t.stats()["changes"]["segments"], 3);
    t.save_checkpoint("lake", 140).await.unwrap();
    assert_eq!(crate::retention::sweep(&t.ks, 30).unwrap(), 65);
    assert_eq!(t.stats()["changes"]["segments"], 2);
    let left = t.stored_ids().unwrap();
    assert_eq!(left.len(), 75);
    assert!(left.iter().all(|(_, _, seq)| *seq > 65));
    // The old change of the kept segment stays in its file, which goes
    // once no row points into it.
    assert!(t.ks.log.get(65).unwrap().is_some());
    assert!(t.ks.log.get(66).unwrap().is_some());
}

/// A table whose rows carry their events' JSON (written before rows
/// pointed into the change log) reads as before; new rows point, and
/// trimming drops the delivered segments of the old rows only.
#[tokio::test]
async fn rows_that_carry_their_json_are_read_and_their_changes_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = |name: &str| {
            db.keyspace(name, fjall::KeyspaceCreateOptions::default)
                .unwrap()
        };
        let (rows, ids, meta) = (ks("rows"), ks("ids"), ks("meta"));
        for seq in 1..=100u64 {
            let e = event(1, &format!("e{seq}"), "login", seq as i64);
            let json = serde_json::to_vec(&e).unwrap();
            let row = crate::keys::row_key("1", e.event_at, &e.event_id);
            rows.insert(row, [&seq.to_be_bytes()[..], &json].concat())
                .unwrap();
            ids.insert(
                crate::keys::id_key("1", &e.event_id),
                crate::keys::time_bytes(e.event_at),
            )
            .unwrap();
            // Changes 1..=64 were delivered and dropped; 65..=100 wait.
            if seq > 64 {
                ks(&format!("changes.{:020}", 65))
                    .insert(seq.to_be_bytes(), json)
                    .unwrap();
            }
        }
        meta.insert(b"last_seq", 100u64.to_be_bytes()).unwrap();
        meta.insert(b"changes_trimmed", 64u64.to_be_bytes())
            .unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let t = open(dir.path());
    let page = t.query(Query::recent("1")).await.unwrap();
    assert_eq!(page.events.len(), 50);
    assert_eq!(page.events[0].event_id, "e100");
    assert!(matches!(
        t.put(vec![event(1, "e3", "login", 3)]).await.unwrap()[0],
        PutOutcome::Duplicate(ref e) if e.event_id == "e3"
    ));
    t.put(
        (101..=200)
            .map(|i| event(1, &format!("e{i}"), "login", i))
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(t.read_changes(0, 1000).await.unwrap().len(), 136);
    // Segment 1 (65..=128) holds old and new changes: it stays.
    t.trim_changes(200).await.unwrap();
    assert_eq!(t.stats()["changes"]["segments"], 3);
    t.close().await.unwrap();
    drop(t);
    let t = open(dir.path());
    let all = Query {
        limit: 1000,
        ..Query::recent("1")
    };
    assert_eq!(t.query(all).await.unwrap().events.len(), 200);
    assert_eq!(t.stored_ids().unwrap().len(), 200);
    let deleted = t.delete_user("1").await.unwrap();
    assert_eq!((deleted.events, deleted.undelivered), (200, 0));
    assert!(t.ks.log.get(150).unwrap().is_none());
}

/// Once writes stop, the write buffers are flushed to table files and
/// freed; what they held stays readable.
#[tokio::test]
async fn idle_write_buffers_are_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let table = open(dir.path());
    table.put(logins(200, 7)).await.unwrap();
    let buffered = || table.ks.db.write_buffer_size();
    assert!(buffered() > 0);
    let deadline = std::time::Instant::now() + crate::writer::IDLE_FLUSH * 50;
    while buffered() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} bytes still buffered",
            buffered()
        );
        tokio::time::sleep(crate::writer::IDLE_FLUSH / 4).await;
    }
    assert_eq!(table.read_changes(0, 1000).await.unwrap().len(), 200);
    let page = table
        .query(Query {
            limit: 100,
            ..Query::recent("3")
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 29);
}

#[tokio::test]
async fn concurrent_writers_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = Arc::new(open(dir.path()));
    let mut tasks = Vec::new();
    for w in 0..16 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..10 {
                let events = (0..20)
                    .map(|i| event(w, &format!("{b}-{i}"), "login", b * 20 + i))
                    .collect();
                t.put(events).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*t.watch_changes().borrow(), 16 * 10 * 20);
    let page = t
        .query(Query {
            limit: 1000,
            ..Query::recent("3")
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 200);
}

#[tokio::test]
async fn deleting_a_user_removes_rows_ids_and_undelivered_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    t.put(logins(30, 3)).await.unwrap();
    t.trim_changes(15).await.unwrap(); // half delivered
    let deleted = t.delete_user("1").await.unwrap();
    assert_eq!(deleted.events, 10);
    assert_eq!(deleted.undelivered, 5);
    assert_eq!(deleted.through_seq, 30);
    // The segment was written anew without them: nothing is hidden any
    // more, and the file holds the other users' 20.
    assert!(t.ks.log.hidden_segments().is_empty());
    assert_eq!(t.ks.log.read(1, 30, 100).unwrap().len(), 20);
    assert!(t.query(Query::recent("1")).await.unwrap().events.is_empty());
    assert_eq!(t.query(Query::recent("0")).await.unwrap().events.len(), 10);
    assert_eq!(t.query(Query::recent("2")).await.unwrap().events.len(), 10);
    let changes = t.read_changes(0, 100).await.unwrap();
    assert_eq!(changes.len(), 10);
    assert!(
        changes
            .iter()
            .all(|c| c.event().unwrap().user_id != UserId::Int(1))
    );
    // The id is free again: the same event can be stored anew, and survives a reopen.
    let again = t.put(vec![event(1, "e1", "login", 1)]).await.unwrap();
    assert!(matches!(again[0], PutOutcome::Stored(_)));
    t.close().await.unwrap();
    drop(t);
    let t = open(dir.path());
    assert_eq!(ids(&t.query(Query::recent("1")).await.unwrap()), ["e1"]);
    assert_eq!(t.stored_ids().unwrap().len(), 21);
}

/// A table written when the change log was one fjall keyspace opens with
/// its undelivered changes moved into the log's files.
#[tokio::test]
async fn a_change_log_kept_in_fjall_is_moved_into_files() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let changes = db
            .keyspace("changes", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let meta = db
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        for seq in 101..=200u64 {
            let json = serde_json::to_vec(&event(1, &format!("e{seq}"), "login", 1)).unwrap();
            changes.insert(seq.to_be_bytes(), json).unwrap();
        }
        meta.insert(b"last_seq", 200u64.to_be_bytes()).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let t = open(dir.path());
    let changes = t.read_changes(0, 1000).await.unwrap();
    assert_eq!(changes.len(), 100);
    assert_eq!((changes[0].seq, changes[99].seq), (101, 200));
    assert_eq!(changes[0].event().unwrap().event_id, "e101");
    t.close().await.unwrap();
    drop(t);
    let t = open(dir.path());
    assert_eq!(t.read_changes(0, 1000).await.unwrap().len(), 100);
}

/// A deletion is durable before its segments are written anew: a rewrite
/// the process did not get to is done at the next open.
#[tokio::test]
async fn an_unfinished_purge_is_done_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    t.put(logins(20, 2)).await.unwrap();
    t.close().await.unwrap();
    drop(t);
    {
        // What a deletion of change 3 leaves when the process dies before
        // the rewrite: its marker, and the change still in the file.
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let meta = db
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        meta.insert(crate::log::hidden_key(3), []).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let t = open(dir.path());
    assert!(t.ks.log.hidden_segments().is_empty());
    assert!(t.ks.meta.get(crate::log::hidden_key(3)).unwrap().is_none());
    let left: Vec<u64> =
        t.ks.log
            .read(1, 20, 100)
            .unwrap()
            .iter()
            .map(|c| c.seq)
            .collect();
    assert_eq!(left.len(), 19);
    assert!(!left.contains(&3));
}
