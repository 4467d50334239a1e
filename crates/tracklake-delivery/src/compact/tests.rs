use super::*;
use crate::{Delivery, DeliveryConfig, Format, LakeConfig, read_lake};
use chrono::{TimeZone, Utc};
use object_store::path::Path;
use std::collections::HashMap;
use tracklake_event::{Device, Event, UserId};
use tracklake_table::{EmbeddedTable, Table, TableConfig};

fn event(id: &str) -> Event {
    Event {
        event_id: id.into(),
        // A few users, mixed across deliveries.
        user_id: UserId::Int(id.bytes().map(i64::from).sum::<i64>() % 5),
        event_type: "login".into(),
        event_at: Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap(),
        received_at: Utc::now(),
        user_agent: None,
        ip_address: None,
        properties: Default::default(),
        device: Device::unknown(),
        web: Default::default(),
        server_assigned_id: false,
    }
}

async fn counts(lake: &Lake) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for f in read_lake(lake).await.unwrap() {
        for (_, id) in f.events {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// A table and lake holding `deliveries` files of 10 events each in one partition.
async fn small_files(
    format: Format,
    gzip: bool,
    deliveries: usize,
) -> (tempfile::TempDir, Arc<EmbeddedTable>, Arc<Lake>) {
    let dir = tempfile::tempdir().unwrap();
    let table =
        Arc::new(EmbeddedTable::open(&dir.path().join("table"), &TableConfig::default()).unwrap());
    let lake = Arc::new(
        Lake::open(
            &LakeConfig {
                format,
                gzip,
                ..LakeConfig::default()
            },
            dir.path(),
        )
        .unwrap(),
    );
    let off = CompactionConfig {
        enabled: false,
        ..CompactionConfig::default()
    };
    for d in 0..deliveries {
        let delivery = Delivery::start(
            table.clone(),
            lake.clone(),
            Default::default(),
            DeliveryConfig::default(),
            off.clone(),
        )
        .unwrap();
        table
            .put((0..10).map(|i| event(&format!("{d}-{i}"))).collect())
            .await
            .unwrap();
        delivery.stop().await.unwrap();
    }
    (dir, table, lake)
}

/// In a Delta lake a merge is one commit; the merged file is sorted by
/// user; the sources stay for readers of older versions until vacuum.
#[tokio::test]
async fn a_delta_merge_is_one_commit_and_vacuum_deletes_the_sources_later() {
    let (dir, table, lake) = small_files(Format::Parquet, false, 5).await;
    let before = lake.snapshot().await.unwrap();
    assert_eq!(before.files.len(), 5);
    let delivered = crate::tests::codecs(lake.read(&before.files[0].path).await.unwrap());
    let status = Status::default();
    compact_once(&*table, &lake, &CompactionConfig::default(), &status)
        .await
        .unwrap();
    let after = lake.snapshot().await.unwrap();
    assert_eq!(after.version, before.version.map(|v| v + 1));
    assert_eq!(after.delivered, before.delivered);
    assert_eq!(after.files.len(), 1, "{:?}", after.files);
    assert_eq!(crate::lake::range_of(&after.files[0].path), Some((1, 50)));
    assert_eq!(after.files[0].rows(), Some(50));
    let counts = counts(&lake).await;
    assert_eq!(counts.len(), 50);
    assert!(counts.values().all(|n| *n == 1));
    assert_eq!(status.compacted_files.load(Ordering::Relaxed), 5);
    // Sorted by user, so one user's events are together.
    let body = lake.read(&after.files[0].path).await.unwrap();
    // Delivered files are LZ4 (a zstd codec per column costs memory while
    // delivering); merged files are zstd.
    assert_eq!(delivered, ["LZ4_RAW".to_string()].into());
    assert_eq!(
        crate::tests::codecs(body.clone()),
        ["ZSTD".to_string()].into()
    );
    let users = crate::rewrite::user_ids(body).unwrap();
    assert!(users.windows(2).all(|w| w[0] <= w[1]), "{users:?}");
    // A reader of the older version still finds its files…
    for file in &before.files {
        lake.read(&file.path).await.unwrap();
    }
    assert_eq!(lake.vacuum().await.unwrap(), 0, "within the retention");
    // …until vacuum, past the retention, deletes them.
    let impatient = Lake::open(
        &LakeConfig {
            retention_secs: 0,
            ..LakeConfig::default()
        },
        dir.path(),
    )
    .unwrap();
    assert_eq!(impatient.vacuum().await.unwrap(), 5);
    assert_eq!(lake.files().await.unwrap().len(), 1);
    assert_eq!(read_lake(&lake).await.unwrap().len(), 1);
}

#[tokio::test]
async fn small_files_merge_into_one_covering_file() {
    for (format, gzip) in [(Format::Ndjson, false), (Format::Ndjson, true)] {
        let (_dir, table, lake) = small_files(format, gzip, 5).await;
        assert_eq!(lake.files().await.unwrap().len(), 5);
        let status = Status::default();
        compact_once(&*table, &lake, &CompactionConfig::default(), &status)
            .await
            .unwrap();
        let files = lake.files().await.unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        let name = FileName::parse(&files[0].location).unwrap();
        assert_eq!((name.first, name.last), (1, 50));
        let counts = counts(&lake).await;
        assert_eq!(counts.len(), 50);
        assert!(counts.values().all(|n| *n == 1));
        assert_eq!(status.compacted_files.load(Ordering::Relaxed), 5);
    }
}

#[tokio::test]
async fn a_swap_cut_short_is_invisible_and_finished_later() {
    let (_dir, table, lake) = small_files(Format::Ndjson, false, 3).await;
    let sources = lake.files().await.unwrap();
    // The merged file was published, the sources not yet deleted (a crash).
    let bodies: Vec<bytes::Bytes> = {
        let mut b = Vec::new();
        for f in &sources {
            b.push(lake.read(&f.location).await.unwrap());
        }
        b
    };
    let (merged, rows) = merge_ndjson(bodies, false).unwrap();
    assert_eq!(rows, 30);
    lake.publish(&lake.file_path("dt=2026-11-27", 1, 30), merged.into())
        .await
        .unwrap();
    assert_eq!(lake.files().await.unwrap().len(), 4);
    // Readers that follow the covering rule see each event once mid-swap.
    let c = counts(&lake).await;
    assert_eq!((c.len(), c.values().max().copied()), (30, Some(1)));
    compact_once(
        &*table,
        &lake,
        &CompactionConfig::default(),
        &Status::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        lake.files().await.unwrap().len(),
        1,
        "covered sources are deleted"
    );
}

#[tokio::test]
async fn merging_drops_duplicate_events() {
    let (_dir, _table, lake) = small_files(Format::Parquet, false, 2).await;
    let files = lake.files().await.unwrap();
    let body = lake.read(&files[0].location).await.unwrap();
    let (merged, rows) = merge_parquet(vec![body.clone(), body]).unwrap();
    assert_eq!(rows, 10);
    assert!(!merged.is_empty());
}

fn meta(first: u64, last: u64, size: u64) -> (FileName, ObjectMeta) {
    let location = Path::from(format!(
        "events/dt=2026-11-27/part-{first:020}-{last:020}.parquet"
    ));
    let name = FileName::parse(&location).unwrap();
    (
        name,
        ObjectMeta {
            location,
            last_modified: Utc::now(),
            size,
            e_tag: None,
            version: None,
        },
    )
}

#[test]
fn only_adjacent_small_files_form_runs() {
    let mib = 1024 * 1024;
    // small, small, LARGE, small, small, small — with a 128 MiB target
    let files = vec![
        meta(1, 10, mib),
        meta(11, 20, mib),
        meta(21, 30, 100 * mib),
        meta(31, 40, mib),
        meta(41, 50, mib),
        meta(51, 60, mib),
    ];
    let runs = small_runs(&files, 128 * mib, 2);
    let ranges: Vec<(u64, u64)> = runs
        .iter()
        .map(|r| (r[0].0.first, r[r.len() - 1].0.last))
        .collect();
    assert_eq!(
        ranges,
        [(1, 20), (31, 60)],
        "the large file is neither merged nor covered"
    );
    // A run stops before it would pass the target.
    let files: Vec<_> = (0..5)
        .map(|i| meta(i * 10 + 1, i * 10 + 10, 40 * mib))
        .collect();
    let runs = small_runs(&files, 100 * mib, 2);
    assert!(
        runs.iter()
            .all(|r| r.iter().map(|(_, m)| m.size).sum::<u64>() <= 100 * mib)
    );
    assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 4);
}

/// Sources streamed into sorted runs of a few rows: every row comes out
/// once, each row group sorted by user and time, whatever the run length.
#[test]
fn a_merge_sorts_each_run_and_keeps_every_row() {
    use arrow_array::cast::AsArray;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let source = |ids: std::ops::Range<u32>| {
        let events: Vec<Event> = ids
            .map(|i| {
                let mut e = event(&format!("e{i}"));
                e.user_id = UserId::Int(i64::from((i * 7919) % 13));
                e.event_at += chrono::Duration::seconds(i64::from(i % 50));
                e
            })
            .collect();
        let rows: Vec<_> = events
            .iter()
            .map(|e| crate::row::Row::from_event(e).unwrap())
            .collect();
        bytes::Bytes::from(crate::encode::parquet(&rows).unwrap())
    };
    let (send, bodies) = tokio::sync::mpsc::channel(3);
    for ids in [0..1500, 1500..2200, 2200..4000] {
        send.try_send(source(ids)).unwrap();
    }
    drop(send);
    let (body, rows) = super::delta::merge_sorted(bodies, 1000).unwrap();
    assert_eq!(rows, 4000);
    let body = bytes::Bytes::from(body);
    let groups = ParquetRecordBatchReaderBuilder::try_new(body.clone())
        .unwrap()
        .metadata()
        .num_row_groups();
    // A run ends at the first source batch that brings it to 1000 rows:
    // 1500, then 700 + 1800.
    assert_eq!(groups, 2);
    let mut ids = Vec::new();
    for group in 0..groups {
        let reader = ParquetRecordBatchReaderBuilder::try_new(body.clone())
            .unwrap()
            .with_row_groups(vec![group])
            .build()
            .unwrap();
        let mut keys = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let text = |name| crate::inspect::text_column(&batch, name).unwrap();
            let at = batch
                .column_by_name("event_at")
                .unwrap()
                .as_primitive::<arrow_array::types::TimestampMicrosecondType>()
                .clone();
            let (users, events) = (text("user_id"), text("event_id"));
            for r in 0..batch.num_rows() {
                keys.push((users.value(r).to_owned(), at.value(r)));
                ids.push(events.value(r).to_owned());
            }
        }
        assert!(
            keys.windows(2).all(|w| w[0] <= w[1]),
            "row group {group} is not sorted"
        );
    }
    ids.sort();
    let mut expected: Vec<String> = (0..4000).map(|i| format!("e{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected);
}
