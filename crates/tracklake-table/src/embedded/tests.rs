use super::*;
use crate::Order;
use chrono::{DateTime, TimeZone, Utc};
use tracklake_event::{Device, UserId};

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(minute)
}

fn event(user: i64, id: &str, kind: &str, minute: i64) -> Event {
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
        server_assigned_id: false,
    }
}

fn open(dir: &Path) -> EmbeddedTable {
    EmbeddedTable::open(dir, &TableConfig::default()).unwrap()
}

fn ids(page: &Page) -> Vec<&str> {
    page.events.iter().map(|e| e.event_id.as_str()).collect()
}

#[tokio::test]
async fn newest_first_and_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    t.put(vec![
        event(1, "b", "login", 2),
        event(1, "a", "login", 1),
        event(1, "c", "login", 3),
    ])
    .await
    .unwrap();
    let page = t.query(Query::recent("1")).await.unwrap();
    assert_eq!(ids(&page), ["c", "b", "a"]);
    assert_eq!(page.next_cursor, None);
    let page = t
        .query(Query {
            order: Order::Oldest,
            ..Query::recent("1")
        })
        .await
        .unwrap();
    assert_eq!(ids(&page), ["a", "b", "c"]);
}

#[tokio::test]
async fn same_event_id_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    let first = t.put(vec![event(1, "x", "login", 1)]).await.unwrap();
    assert!(matches!(&first[0], PutOutcome::Stored(_)));
    // A retry with a different time and type is still the same event.
    let again = t
        .put(vec![
            event(1, "x", "material-view", 5),
            event(2, "x", "login", 1),
            event(2, "x", "login", 1),
        ])
        .await
        .unwrap();
    match &again[0] {
        PutOutcome::Duplicate(e) => {
            assert_eq!((e.event_type.as_str(), e.event_at), ("login", at(1)))
        }
        other => panic!("expected duplicate, got {other:?}"),
    }
    assert!(
        matches!(&again[1], PutOutcome::Stored(_)),
        "other user, same id: a new event"
    );
    assert!(
        matches!(&again[2], PutOutcome::Duplicate(_)),
        "duplicate inside one batch"
    );
    assert_eq!(t.query(Query::recent("1")).await.unwrap().events.len(), 1);
    let changes = t.read_changes(0, 100).await.unwrap();
    assert_eq!(
        changes.len(),
        2,
        "duplicates do not enter the change stream"
    );
}

#[tokio::test]
async fn limit_counts_matching_rows_not_rows_read() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    // 12 logins, each followed by 20 material views (DynamoDB's Limit 10
    // with a filter would return at most one login here).
    let mut events = Vec::new();
    for i in 0..12 {
        events.push(event(7, &format!("login-{i}"), "login", i * 100));
        for j in 0..20 {
            events.push(event(
                7,
                &format!("view-{i}-{j}"),
                "material-view",
                i * 100 + j + 1,
            ));
        }
    }
    t.put(events).await.unwrap();
    let q = Query {
        limit: 10,
        types: vec!["login".into()],
        ..Query::recent("7")
    };
    let page = t.query(q.clone()).await.unwrap();
    let want: Vec<String> = (2..12).rev().map(|i| format!("login-{i}")).collect();
    assert_eq!(ids(&page), want);
    let rest = t
        .query(Query {
            cursor: page.next_cursor,
            ..q
        })
        .await
        .unwrap();
    assert_eq!(ids(&rest), ["login-1", "login-0"]);
    assert_eq!(rest.next_cursor, None);
}

#[tokio::test]
async fn time_range_is_inclusive_and_users_do_not_mix() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    t.put(
        (0..10)
            .map(|m| event(1, &format!("e{m}"), "login", m))
            .collect(),
    )
    .await
    .unwrap();
    t.put(vec![
        event(10, "other", "login", 5),
        event(11, "other", "login", 5),
    ])
    .await
    .unwrap();
    let page = t
        .query(Query {
            from: Some(at(3)),
            to: Some(at(6)),
            ..Query::recent("1")
        })
        .await
        .unwrap();
    assert_eq!(ids(&page), ["e6", "e5", "e4", "e3"]);
    assert_eq!(t.query(Query::recent("10")).await.unwrap().events.len(), 1);
    assert!(
        t.query(Query::recent("nobody"))
            .await
            .unwrap()
            .events
            .is_empty()
    );
}

#[tokio::test]
async fn cursors_page_through_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(dir.path());
    // Several events share one timestamp: the cursor must not skip or repeat.
    t.put(
        (0..25)
            .map(|i| event(3, &format!("e{i:02}"), "login", i / 4))
            .collect(),
    )
    .await
    .unwrap();
    for order in [Order::Newest, Order::Oldest] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = t
                .query(Query {
                    limit: 7,
                    order,
                    cursor,
                    ..Query::recent("3")
                })
                .await
                .unwrap();
            seen.extend(page.events.iter().map(|e| e.event_id.clone()));
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 25, "{order:?}: {seen:?}");
        assert_eq!(seen.len(), 25);
    }
    assert!(matches!(
        t.query(Query {
            cursor: Some("!!".into()),
            ..Query::recent("3")
        })
        .await,
        Err(Error::BadCursor)
    ));
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
    t.put(
        (0..250)
            .map(|i| event(i % 7, &format!("e{i}"), "login", i))
            .collect(),
    )
    .await
    .unwrap();
    let first = t.read_changes(0, 100).await.unwrap();
    assert_eq!(first.len(), 100);
    assert_eq!((first[0].seq, first[99].seq), (1, 100));
    assert_eq!(first[0].event.event_id, "e0");
    let last = t.read_changes(200, 100).await.unwrap();
    assert_eq!(last.len(), 50);
    t.trim_changes(100).await.unwrap();
    assert_eq!(t.read_changes(0, 10).await.unwrap()[0].seq, 101);
    assert!(t.read_changes(250, 10).await.unwrap().is_empty());
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
    t.put(
        (0..30)
            .map(|i| event(i % 3, &format!("e{i}"), "login", i))
            .collect(),
    )
    .await
    .unwrap();
    t.trim_changes(15).await.unwrap(); // half delivered
    let deleted = t.delete_user("1").await.unwrap();
    assert_eq!(deleted.events, 10);
    assert_eq!(deleted.undelivered, 5);
    assert_eq!(deleted.through_seq, 30);
    assert!(t.query(Query::recent("1")).await.unwrap().events.is_empty());
    assert_eq!(t.query(Query::recent("0")).await.unwrap().events.len(), 10);
    assert_eq!(t.query(Query::recent("2")).await.unwrap().events.len(), 10);
    let changes = t.read_changes(0, 100).await.unwrap();
    assert_eq!(changes.len(), 10);
    assert!(changes.iter().all(|c| c.event.user_id != UserId::Int(1)));
    // The id is free again: the same event can be stored anew, and survives a reopen.
    let again = t.put(vec![event(1, "e1", "login", 1)]).await.unwrap();
    assert!(matches!(again[0], PutOutcome::Stored(_)));
    t.close().await.unwrap();
    drop(t);
    let t = open(dir.path());
    assert_eq!(ids(&t.query(Query::recent("1")).await.unwrap()), ["e1"]);
    assert_eq!(t.stored_ids().unwrap().len(), 21);
}
