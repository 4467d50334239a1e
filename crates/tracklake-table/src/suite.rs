//! The behaviour every [`Table`] must show, run against each engine: the
//! embedded table in this crate's tests, DynamoDB in tracklake-aws's (with
//! the `suite` feature). User ids are digits — `<prefix><check><two digits>`
//! — so that a table keyed by number (the article's) takes them too, and
//! runs sharing one store do not meet.

use chrono::{DateTime, TimeZone, Utc};
use tracklake_event::{Device, Event, UserId};

use crate::{Error, Order, Page, PutOutcome, Query, Table};

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(minute)
}

fn event(user: &str, id: &str, kind: &str, minute: i64) -> Event {
    Event {
        event_id: id.into(),
        user_id: UserId::Text(user.into()),
        event_type: kind.into(),
        event_at: at(minute),
        received_at: at(minute),
        user_agent: Some("Mozilla/5.0".into()),
        ip_address: Some("203.0.113.9".parse().unwrap()),
        properties: [("plan".to_owned(), serde_json::json!("pro"))]
            .into_iter()
            .collect(),
        device: Device::unknown(),
        web: Default::default(),
        server_assigned_id: false,
    }
}

fn ids(page: &Page) -> Vec<&str> {
    page.events.iter().map(|e| e.event_id.as_str()).collect()
}

/// Every check, each with its own users.
pub async fn run_all(t: &dyn Table, prefix: &str) {
    newest_first_and_oldest_first(t, &format!("{prefix}1")).await;
    same_event_id_is_stored_once(t, &format!("{prefix}2")).await;
    limit_counts_matching_rows_not_rows_read(t, &format!("{prefix}3")).await;
    time_range_is_inclusive_and_users_do_not_mix(t, &format!("{prefix}4")).await;
    cursors_page_through_everything_once(t, &format!("{prefix}5")).await;
    events_at_the_same_instant_are_all_kept(t, &format!("{prefix}6")).await;
    deleting_a_user_keeps_everyone_else(t, &format!("{prefix}7")).await;
}

pub async fn newest_first_and_oldest_first(t: &dyn Table, p: &str) {
    let u = format!("{p}01");
    t.put(vec![
        event(&u, "b", "login", 2),
        event(&u, "a", "login", 1),
        event(&u, "c", "login", 3),
    ])
    .await
    .unwrap();
    let page = t.query(Query::recent(&u)).await.unwrap();
    assert_eq!(ids(&page), ["c", "b", "a"]);
    assert_eq!(page.next_cursor, None);
    assert_eq!(page.events[0], event(&u, "c", "login", 3), "stored as sent");
    let page = t
        .query(Query {
            order: Order::Oldest,
            ..Query::recent(&u)
        })
        .await
        .unwrap();
    assert_eq!(ids(&page), ["a", "b", "c"]);
}

pub async fn same_event_id_is_stored_once(t: &dyn Table, p: &str) {
    let (u1, u2) = (format!("{p}01"), format!("{p}02"));
    let first = t.put(vec![event(&u1, "x", "login", 1)]).await.unwrap();
    assert!(matches!(&first[0], PutOutcome::Stored(_)));
    // A retry with a different time and type is still the same event.
    let again = t
        .put(vec![
            event(&u1, "x", "material-view", 5),
            event(&u2, "x", "login", 1),
            event(&u2, "x", "login", 1),
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
    assert_eq!(t.query(Query::recent(&u1)).await.unwrap().events.len(), 1);
}

pub async fn limit_counts_matching_rows_not_rows_read(t: &dyn Table, p: &str) {
    let u = format!("{p}07");
    // 12 logins, each followed by 20 material views (DynamoDB's Limit 10
    // with a filter would return at most one login here).
    let mut events = Vec::new();
    for i in 0..12 {
        events.push(event(&u, &format!("login-{i}"), "login", i * 100));
        for j in 0..20 {
            events.push(event(
                &u,
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
        ..Query::recent(&u)
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

pub async fn time_range_is_inclusive_and_users_do_not_mix(t: &dyn Table, p: &str) {
    let (u, a, b) = (format!("{p}01"), format!("{p}10"), format!("{p}11"));
    t.put(
        (0..10)
            .map(|m| event(&u, &format!("e{m}"), "login", m))
            .collect(),
    )
    .await
    .unwrap();
    t.put(vec![
        event(&a, "other", "login", 5),
        event(&b, "other", "login", 5),
    ])
    .await
    .unwrap();
    let page = t
        .query(Query {
            from: Some(at(3)),
            to: Some(at(6)),
            ..Query::recent(&u)
        })
        .await
        .unwrap();
    assert_eq!(ids(&page), ["e6", "e5", "e4", "e3"]);
    assert_eq!(t.query(Query::recent(&a)).await.unwrap().events.len(), 1);
    let nobody = t.query(Query::recent(format!("{p}99"))).await.unwrap();
    assert!(nobody.events.is_empty());
}

pub async fn cursors_page_through_everything_once(t: &dyn Table, p: &str) {
    let u = format!("{p}03");
    // Several events share one timestamp: the cursor must not skip or repeat.
    t.put(
        (0..25)
            .map(|i| event(&u, &format!("e{i:02}"), "login", i / 4))
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
                    ..Query::recent(&u)
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
            ..Query::recent(&u)
        })
        .await,
        Err(Error::BadCursor)
    ));
}

/// The article keyed its table on (user_id, event_at): a second event of
/// the same user at the same instant overwrote the first.
pub async fn events_at_the_same_instant_are_all_kept(t: &dyn Table, p: &str) {
    let u = format!("{p}05");
    t.put(
        (0..5)
            .map(|i| event(&u, &format!("s{i}"), "login", 9))
            .collect(),
    )
    .await
    .unwrap();
    let page = t.query(Query::recent(&u)).await.unwrap();
    assert_eq!(page.events.len(), 5);
}

pub async fn deleting_a_user_keeps_everyone_else(t: &dyn Table, p: &str) {
    let (gone, kept) = (format!("{p}91"), format!("{p}92"));
    t.put(
        (0..6)
            .map(|i| {
                event(
                    if i % 2 == 0 { &gone } else { &kept },
                    &format!("d{i}"),
                    "login",
                    i,
                )
            })
            .collect(),
    )
    .await
    .unwrap();
    let deleted = t.delete_user(&gone).await.unwrap();
    assert_eq!(deleted.events, 3);
    assert!(
        t.query(Query::recent(&gone))
            .await
            .unwrap()
            .events
            .is_empty()
    );
    assert_eq!(t.query(Query::recent(&kept)).await.unwrap().events.len(), 3);
    // The ids are free again: the same event can be stored anew.
    let again = t.put(vec![event(&gone, "d0", "login", 0)]).await.unwrap();
    assert!(matches!(again[0], PutOutcome::Stored(_)));
}
