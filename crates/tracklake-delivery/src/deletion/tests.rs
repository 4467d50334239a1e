//! Deletion over a real table, a running delivery and a real lake.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use object_store::path::Path;
use tracklake_event::{Device, Event, UserId};
use tracklake_table::{EmbeddedTable, Query, Table, TableConfig};

use super::*;
use crate::{CompactionConfig, Delivery, DeliveryConfig, Format, LakeConfig, read_lake};

fn event(user: i64, id: &str, day: u32) -> Event {
    Event {
        event_id: id.into(),
        user_id: UserId::Int(user),
        event_type: "login".into(),
        event_at: Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap(),
        received_at: Utc::now(),
        user_agent: None,
        ip_address: None,
        properties: Default::default(),
        device: Device::unknown(),
        web: Default::default(),
        server_assigned_id: false,
    }
}

fn delivery(table: &Arc<EmbeddedTable>, lake: &Arc<Lake>, interval: u64) -> Delivery {
    Delivery::start(
        table.clone(),
        lake.clone(),
        Default::default(),
        DeliveryConfig {
            buffer_interval_secs: interval,
            ..Default::default()
        },
        CompactionConfig {
            enabled: false,
            ..Default::default()
        },
    )
    .unwrap()
}

/// `(user, event id)` → how many times it is in the lake's live files.
async fn lake_rows(lake: &Lake) -> HashMap<(String, String), usize> {
    let mut rows = HashMap::new();
    for file in read_lake(lake).await.unwrap() {
        for id in file.events {
            *rows.entry(id).or_default() += 1;
        }
    }
    rows
}

async fn wait_done(deletions: &Deletions, id: &str) -> DeletionJob {
    for _ in 0..500 {
        let job = deletions.get(id).unwrap();
        if job.state == JobState::Done {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("deletion job {id} did not finish: {:?}", deletions.get(id));
}

async fn wait_delivered(d: &Delivery, seq: u64) {
    for _ in 0..500 {
        if d.status().delivered_seq.load(Ordering::Relaxed) >= seq {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("delivery did not reach {seq}");
}

async fn deletes_from_table_lake_and_buffer(format: Format, gzip: bool) {
    let dir = tempfile::tempdir().unwrap();
    let table =
        Arc::new(EmbeddedTable::open(&dir.path().join("table"), &TableConfig::default()).unwrap());
    let lake = Arc::new(
        Lake::open(
            &LakeConfig {
                format,
                gzip,
                ..Default::default()
            },
            dir.path(),
        )
        .unwrap(),
    );
    // Three users over three days, in six deliveries; then a compaction.
    let d = delivery(&table, &lake, 0);
    let mut seq = 0;
    for round in 0..6 {
        let batch: Vec<Event> = (0..30)
            .map(|i| event(i % 3, &format!("r{round}e{i}"), 20 + (i % 3) as u32))
            .collect();
        seq += batch.len() as u64;
        table.put(batch).await.unwrap();
        wait_delivered(&d, seq).await;
    }
    d.stop().await.unwrap();
    let compaction = CompactionConfig::default();
    crate::compact_once(&*table, &lake, &compaction, &Default::default())
        .await
        .unwrap();
    // More events that delivery has read into its buffer but not published.
    let d = delivery(&table, &lake, 900);
    table
        .put(
            (0..9)
                .map(|i| event(i % 3, &format!("late{i}"), 25))
                .collect(),
        )
        .await
        .unwrap();
    for _ in 0..500 {
        if d.status().oldest_waiting_ms.load(Ordering::Relaxed) != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = lake_rows(&lake).await;
    assert!(before.keys().any(|(user, _)| user == "1"));

    let deletions = Deletions::start(
        dir.path(),
        table.clone() as Arc<dyn Table>,
        lake.clone(),
        Box::new(|| {}),
    )
    .unwrap();
    let job = deletions.request("1").unwrap();
    let job = wait_done(&deletions, &job.id).await;
    assert_eq!(job.table_events, 63);
    assert_eq!(job.lake_events, 60, "{job:?}");
    assert!(job.lake_files_rewritten >= 1 && job.finished_at.is_some());
    // An event the user sends after the deletion is kept.
    table.put(vec![event(1, "after", 26)]).await.unwrap();
    d.stop().await.unwrap(); // publishes the buffer

    let rows = lake_rows(&lake).await;
    let mut expected: HashMap<(String, String), usize> = before
        .into_iter()
        .filter(|((user, _), _)| user != "1")
        .collect();
    for i in (0..9).filter(|i| i % 3 != 1) {
        expected.insert((format!("{}", i % 3), format!("late{i}")), 1);
    }
    expected.insert(("1".into(), "after".into()), 1);
    assert_eq!(rows, expected);
    assert!(rows.values().all(|n| *n == 1));
    let left = table.query(Query::recent("1")).await.unwrap();
    assert_eq!(left.events.len(), 1);
    assert_eq!(
        table.query(Query::recent("2")).await.unwrap().events.len(),
        50
    );
    deletions.stop();

    // The job is on disk, finished, after a restart.
    let again = Deletions::start(
        dir.path(),
        table.clone() as Arc<dyn Table>,
        lake,
        Box::new(|| {}),
    )
    .unwrap();
    assert_eq!(again.get(&job.id).unwrap().state, JobState::Done);
    assert_eq!(again.list().len(), 1);
}

#[tokio::test]
async fn deletion_from_a_parquet_lake() {
    deletes_from_table_lake_and_buffer(Format::Parquet, false).await;
}

#[tokio::test]
async fn deletion_from_an_ndjson_gzip_lake() {
    deletes_from_table_lake_and_buffer(Format::Ndjson, true).await;
}

#[test]
fn a_rewritten_file_supersedes_its_earlier_version() {
    let v0 =
        Path::from("events/dt=2026-11-20/part-00000000000000000001-00000000000000000030.parquet");
    let name = FileName::parse(&v0).unwrap();
    assert_eq!((name.first, name.last, name.version), (1, 30, 0));
    assert_eq!(name.path(), v0);
    let v1 = FileName {
        version: 1,
        ..name.clone()
    };
    assert_eq!(
        v1.path().as_ref(),
        "events/dt=2026-11-20/part-00000000000000000001-00000000000000000030-v1.parquet"
    );
    assert_eq!(FileName::parse(&v1.path()), Some(v1.clone()));
    let meta = |location: Path| object_store::ObjectMeta {
        location,
        last_modified: Utc::now(),
        size: 1,
        e_tag: None,
        version: None,
    };
    let (live, covered) = split_covered(vec![meta(v0.clone()), meta(v1.path())]);
    assert_eq!(live[0].location, v1.path());
    assert_eq!(covered[0].location, v0);
    assert_eq!(
        FileName::parse(&Path::from("events/dt=x/part-1-2-x.parquet")),
        None
    );
}
