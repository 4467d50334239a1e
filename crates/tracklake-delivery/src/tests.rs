//! The delivery pipeline over a real table and a real lake directory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use tracklake_event::{Device, Event, UserId};
use tracklake_table::{ChangeLog, EmbeddedTable, Table, TableConfig};

use crate::{Delivery, DeliveryConfig, Format, Lake, LakeConfig, Layout, read_lake};

mod log;
mod migration;

/// The codecs of a Parquet file's column chunks, without levels (a file
/// does not record them).
pub(crate) fn codecs(body: bytes::Bytes) -> std::collections::BTreeSet<String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(body).unwrap();
    let metadata = reader.metadata();
    assert!(metadata.num_row_groups() > 0);
    metadata
        .row_groups()
        .iter()
        .flat_map(|group| group.columns())
        .map(|column| {
            let codec = column.compression().to_string();
            codec.split('(').next().unwrap_or_default().to_owned()
        })
        .collect()
}

/// Event `id` of user 1, a login at noon on November `day` (shared by
/// the lake's tests).
pub(crate) fn event(id: &str, day: u32) -> Event {
    Event {
        event_id: id.into(),
        user_id: UserId::Int(1),
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

/// Events `e<i>` for `ids`, the one with id `i` on November `day(i)`.
fn events(ids: std::ops::Range<u32>, day: impl Fn(u32) -> u32) -> Vec<Event> {
    ids.map(|i| event(&format!("e{i}"), day(i))).collect()
}

/// Spread over three days.
fn three_days(i: u32) -> u32 {
    20 + i % 3
}

struct Setup {
    _dir: tempfile::TempDir,
    table: Arc<EmbeddedTable>,
    lake: Arc<Lake>,
}

impl Setup {
    /// Delivery (without compaction) with a buffer interval of `interval` s.
    fn deliver(&self, interval: u64) -> Delivery {
        Delivery::start(
            self.table.clone(),
            self.lake.clone(),
            Default::default(),
            config(interval),
            off(),
        )
        .unwrap()
    }
}

fn setup(lake_config: LakeConfig) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let table =
        Arc::new(EmbeddedTable::open(&dir.path().join("table"), &TableConfig::default()).unwrap());
    let lake = Arc::new(Lake::open(&lake_config, dir.path()).unwrap());
    Setup {
        _dir: dir,
        table,
        lake,
    }
}

/// How many times each event id is in the lake.
async fn counts(lake: &Lake) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for file in read_lake(lake).await.unwrap() {
        for (_, id) in file.events {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

fn off() -> crate::CompactionConfig {
    crate::CompactionConfig {
        enabled: false,
        ..Default::default()
    }
}

fn config(interval: u64) -> DeliveryConfig {
    DeliveryConfig {
        buffer_interval_secs: interval,
        ..DeliveryConfig::default()
    }
}

#[tokio::test]
async fn events_land_once_in_their_own_day() {
    let s = setup(LakeConfig::default());
    let d = s.deliver(0);
    s.table
        .put(vec![event("a", 20), event("b", 27), event("c", 27)])
        .await
        .unwrap();
    for _ in 0..200 {
        if d.status()
            .delivered_seq
            .load(std::sync::atomic::Ordering::Relaxed)
            == 3
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    d.stop().await.unwrap();
    let files = read_lake(&s.lake).await.unwrap();
    let mut parts: Vec<(String, usize)> = files
        .iter()
        .map(|f| (f.partition(), f.events.len()))
        .collect();
    parts.sort();
    assert_eq!(
        parts,
        [
            ("dt=2026-11-20".to_string(), 1),
            ("dt=2026-11-27".to_string(), 2)
        ]
    );
    let name = files[0].path.as_ref();
    assert!(
        name.starts_with("events/dt=2026-11-20/part-00000000000000000001-00000000000000000003-")
            && name.ends_with(".parquet"),
        "{name}"
    );
    assert_eq!(counts(&s.lake).await.len(), 3);
    assert_eq!(s.table.checkpoint("lake").await.unwrap(), Some(3));
    // One commit made the table, one delivered both files with the position.
    let snapshot = s.lake.snapshot().await.unwrap();
    assert_eq!((snapshot.version, snapshot.delivered), (Some(1), Some(3)));
    assert_eq!(snapshot.files.len(), 2);
    assert_eq!(
        snapshot.files.iter().filter_map(|f| f.rows()).sum::<u64>(),
        3
    );
    assert!(
        s.table.read_changes(0, 10).await.unwrap().is_empty(),
        "delivered changes are trimmed"
    );
}

#[tokio::test]
async fn stopping_publishes_what_is_buffered() {
    let s = setup(LakeConfig {
        format: Format::Ndjson,
        gzip: true,
        ..LakeConfig::default()
    });
    // A 15-minute buffer: only the stop can publish these in time.
    let d = s.deliver(900);
    s.table.put(events(0..50, |_| 27)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        read_lake(&s.lake).await.unwrap().is_empty(),
        "nothing published before the interval"
    );
    d.stop().await.unwrap();
    let counts = counts(&s.lake).await;
    assert_eq!(counts.len(), 50);
    assert!(counts.values().all(|n| *n == 1));
    let files = read_lake(&s.lake).await.unwrap();
    assert!(files[0].path.as_ref().ends_with(".json.gz"));
}

/// A delivery cut short before its commit left a file no version holds; one
/// cut short after its commit left the table's checkpoint behind the log.
/// Neither doubles nor loses an event.
#[tokio::test]
async fn a_delivery_cut_short_is_neither_lost_nor_doubled_in_a_delta_lake() {
    let s = setup(LakeConfig::default());
    s.table.put(events(0..30, three_days)).await.unwrap();
    // Changes 1..=10 were committed, but the process died before it moved
    // the table's checkpoint.
    assert_eq!(crate::claim_lake(&*s.table, &s.lake).await.unwrap(), 0);
    let first = events(0..10, three_days);
    let refs: Vec<&Event> = first.iter().collect();
    let body = bytes::Bytes::from(crate::encode(&refs, Format::Parquet, false).unwrap());
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    let path = s.lake.file_path("dt=2026-11-20", 1, 10);
    s.lake.publish(&path, body.clone()).await.unwrap();
    s.lake
        .commit(crate::Update {
            operation: crate::Operation::Deliver,
            add: vec![crate::NewFile::parquet(path, day, &body).unwrap()],
            remove: Vec::new(),
            delivered_through: Some(10),
        })
        .await
        .unwrap();
    // Changes 11..=30 were written but never committed.
    let orphan = s.lake.file_path("dt=2026-11-20", 11, 30);
    s.lake.publish(&orphan, body).await.unwrap();

    let d = s.deliver(900);
    d.stop().await.unwrap();
    let counts = counts(&s.lake).await;
    assert_eq!(counts.len(), 30);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert_eq!(s.table.checkpoint("lake").await.unwrap(), Some(30));
    assert_eq!(s.lake.snapshot().await.unwrap().delivered, Some(30));
}

/// A second data directory's table pointed at a lake that holds the first
/// one's deliveries is refused (its change positions would skip or double
/// events); the first keeps delivering to it.
#[tokio::test]
async fn two_tables_cannot_share_one_lake() {
    let first = setup(LakeConfig::default());
    first.table.put(events(0..5, |_| 20)).await.unwrap();
    first.deliver(900).stop().await.unwrap();
    let other = Arc::new(
        EmbeddedTable::open(&first._dir.path().join("other"), &TableConfig::default()).unwrap(),
    );
    let error = crate::claim_lake(&*other, &first.lake).await.unwrap_err();
    assert!(matches!(error, crate::Error::LakeTaken(_)), "{error}");
    assert!(error.is_fatal());
    assert!(error.to_string().contains("lake.url of its own"), "{error}");
    // Nothing changed for the table that owns it.
    assert_eq!(
        crate::claim_lake(&*first.table, &first.lake).await.unwrap(),
        5
    );
    assert_eq!(counts(&first.lake).await.len(), 5);
}

#[tokio::test]
async fn an_interrupted_delivery_is_finished_without_doubles() {
    let s = setup(LakeConfig {
        format: Format::Ndjson,
        ..LakeConfig::default()
    });
    s.table.put(events(0..30, three_days)).await.unwrap();
    // A delivery of changes 1..=30 crashed after recording its intent and
    // publishing one of its three files; a later file of an unrelated range
    // must not be touched.
    s.table.save_checkpoint("lake.intent", 30).await.unwrap();
    let early: Vec<Event> = (0..30)
        .step_by(3)
        .map(|i| event(&format!("e{i}"), 20))
        .collect();
    let refs: Vec<&Event> = early.iter().collect();
    let path = s.lake.file_path("dt=2026-11-20", 1, 30);
    s.lake
        .publish(
            &path,
            crate::encode(&refs, Format::Ndjson, false).unwrap().into(),
        )
        .await
        .unwrap();
    // Events stored after the crash must not widen the interrupted range.
    s.table.put(events(30..40, |_| 20)).await.unwrap();

    let d = s.deliver(900);
    d.stop().await.unwrap();
    let counts = counts(&s.lake).await;
    assert_eq!(counts.len(), 40);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert_eq!(s.table.checkpoint("lake").await.unwrap(), Some(40));
}

#[tokio::test]
async fn firehose_layout_uses_hour_prefixes() {
    let s = setup(LakeConfig {
        layout: Layout::Firehose,
        ..LakeConfig::default()
    });
    let d = s.deliver(900);
    s.table.put(vec![event("a", 27)]).await.unwrap();
    d.stop().await.unwrap();
    let files = read_lake(&s.lake).await.unwrap();
    assert_eq!(files.len(), 1);
    assert!(
        files[0]
            .path
            .as_ref()
            .starts_with("events/2026/11/27/12/part-"),
        "{}",
        files[0].path
    );
}

#[test]
fn settings_out_of_range_are_refused() {
    for bad in [
        DeliveryConfig {
            buffer_size_mib: 0,
            ..DeliveryConfig::default()
        },
        DeliveryConfig {
            buffer_size_mib: 129,
            ..DeliveryConfig::default()
        },
        DeliveryConfig {
            buffer_interval_secs: 901,
            ..DeliveryConfig::default()
        },
    ] {
        assert!(bad.check().is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn a_zero_stream_batch_is_refused() {
    let s = setup(LakeConfig::default());
    let stream = crate::StreamConfig { batch_size: 0 };
    let started = Delivery::start(s.table.clone(), s.lake.clone(), stream, config(1), off());
    assert!(matches!(started, Err(crate::Error::Config(m)) if m.contains("stream.batch_size")));
}

/// A destination that holds each send until the test lets it go, and
/// records what it was sent and how many sends overlapped.
struct GatedSink {
    gate: tokio::sync::Semaphore,
    active: std::sync::atomic::AtomicUsize,
    most_active: std::sync::atomic::AtomicUsize,
    sent: std::sync::Mutex<Vec<String>>,
}

impl crate::RecordSink for GatedSink {
    fn send<'a>(
        &'a self,
        events: Vec<&'a Event>,
    ) -> tracklake_table::BoxFuture<'a, Result<u64, String>> {
        use std::sync::atomic::Ordering::SeqCst;
        Box::pin(async move {
            let now = self.active.fetch_add(1, SeqCst) + 1;
            self.most_active.fetch_max(now, SeqCst);
            self.gate.acquire().await.unwrap().forget();
            let ids = events.iter().map(|e| e.event_id.clone());
            self.sent.lock().unwrap().extend(ids);
            self.active.fetch_sub(1, SeqCst);
            Ok(0)
        })
    }
}

/// While one buffer is being published, delivery reads the next; publishes
/// never overlap and keep the stream's order.
#[tokio::test]
async fn delivery_reads_ahead_while_publishing() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let table =
        Arc::new(EmbeddedTable::open(&dir.path().join("table"), &TableConfig::default()).unwrap());
    let sink = Arc::new(GatedSink {
        gate: tokio::sync::Semaphore::new(0),
        active: Default::default(),
        most_active: Default::default(),
        sent: Default::default(),
    });
    let lake = Arc::new(
        Lake::open(&LakeConfig::default(), dir.path())
            .unwrap()
            .with_sink(sink.clone()),
    );
    // Interval 0: every read is published at once.
    let d = Delivery::start(table.clone(), lake, Default::default(), config(0), off()).unwrap();
    let batch = |round: usize| -> Vec<Event> {
        (0..10)
            .map(|i| event(&format!("r{round}e{i}"), 20))
            .collect()
    };
    table.put(batch(0)).await.unwrap();
    // The first publish is held at the gate…
    while sink.active.load(SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // …while the next events are read.
    table.put(batch(1)).await.unwrap();
    let read_ahead = async {
        while d
            .status()
            .read_seq
            .load(std::sync::atomic::Ordering::Relaxed)
            < 20
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_ahead)
        .await
        .expect("the second batch is read while the first is published");
    assert_eq!(d.status().delivered_seq.load(SeqCst), 0);
    for round in 2..6 {
        table.put(batch(round)).await.unwrap();
    }
    sink.gate.add_permits(1_000);
    d.stop().await.unwrap();
    assert_eq!(sink.most_active.load(SeqCst), 1, "publishes overlapped");
    let expected: Vec<String> = (0..6)
        .flat_map(|r| (0..10).map(move |i| format!("r{r}e{i}")))
        .collect();
    assert_eq!(*sink.sent.lock().unwrap(), expected);
}

/// A record that cannot be read goes to `errors/` with its reason and the
/// record as stored; the others are encoded as usual.
#[test]
fn unreadable_records_go_to_errors() {
    use tracklake_table::Change;
    for format in [Format::Parquet, Format::Ndjson] {
        let dir = tempfile::tempdir().unwrap();
        let config = LakeConfig {
            format,
            ..LakeConfig::default()
        };
        let lake = Lake::open(&config, dir.path()).unwrap();
        let good = Change {
            seq: 7,
            json: serde_json::to_vec(&event("good", 5)).unwrap(),
        };
        let bad = Change {
            seq: 8,
            json: br#"{"event_id": 1, "broken": true}"#.to_vec(),
        };
        let encoded =
            crate::partitions::encode_partitions(&lake, &[&good, &bad, &good], 6, 8).unwrap();
        assert_eq!(encoded.failed, 1);
        assert_eq!(encoded.files.len(), 1);
        let path = encoded.files[0].path.to_string();
        let ext = format.extension(false);
        assert!(
            path.starts_with("events/dt=2026-11-05/part-00000000000000000007-00000000000000000008")
                && path.ends_with(ext),
            "{path}"
        );
        let (errors, body) = encoded.errors.unwrap();
        assert_eq!(
            errors.to_string(),
            "errors/part-00000000000000000007-00000000000000000008.json"
        );
        let line: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(line["seq"], 8);
        assert_eq!(line["record"], r#"{"event_id": 1, "broken": true}"#);
        assert!(
            line["error"].as_str().unwrap().contains("invalid type"),
            "{line}"
        );
    }
}

/// A Parquet buffer is encoded as it is read, a few thousand rows at a
/// time across its partitions: a buffer several times that bound, over
/// three days, gives each day's file every row of that day, once and in
/// the order read, with privacy applied to addresses.
#[test]
fn a_parquet_buffer_larger_than_its_arrow_batches_keeps_every_row() {
    use tracklake_event::PrivacyConfig;
    use tracklake_table::Change;
    let dir = tempfile::tempdir().unwrap();
    let privacy = tracklake_event::Privacy::new(
        &PrivacyConfig {
            ip: tracklake_event::IpMode::Truncate,
            ..PrivacyConfig::default()
        },
        dir.path(),
    )
    .unwrap();
    let lake = Lake::open(&LakeConfig::default(), dir.path())
        .unwrap()
        .with_privacy(privacy);
    let n = 20_000u32;
    let changes: Vec<Change> = (0..n)
        .map(|i| {
            let mut e = event(&format!("e{i}"), three_days(i));
            e.ip_address = Some("203.0.113.77".parse().unwrap());
            Change {
                seq: u64::from(i) + 1,
                json: serde_json::to_vec(&e).unwrap(),
            }
        })
        .collect();
    let mut buffer = crate::buffer::ParquetBuffer::default();
    // In stream-sized batches, as delivery reads them.
    for batch in changes.chunks(100) {
        buffer.append(&lake, batch).unwrap();
    }
    let encoded = buffer.finish(&lake, 0, u64::from(n)).unwrap();
    assert_eq!((encoded.records, encoded.failed), (n as usize, 0));
    assert!(encoded.errors.is_none());
    assert_eq!(encoded.files.len(), 3);
    for (file, day) in encoded.files.iter().zip(20..) {
        assert_eq!(file.day.to_string(), format!("2026-11-{day}"));
        // Compressed without a codec state per column (compaction
        // rewrites them with zstd).
        let codecs = codecs(file.body.clone());
        assert_eq!(
            codecs,
            [crate::buffer::DELIVERED.to_string()].into(),
            "day {day}"
        );
        let mut ids = Vec::new();
        for batch in crate::rewrite::parquet_batches(file.body.clone(), None).unwrap() {
            let batch = batch.unwrap();
            let column = |name| crate::inspect::text_column(&batch, name).unwrap();
            let (id, ip) = (column("event_id"), column("ip_address"));
            ids.extend(id.iter().map(|v| v.unwrap().to_owned()));
            assert!(ip.iter().all(|v| v == Some("203.0.113.0")), "{ip:?}");
        }
        let expected: Vec<String> = (0..n)
            .filter(|i| three_days(*i) == day)
            .map(|i| format!("e{i}"))
            .collect();
        assert_eq!(ids, expected, "day {day}");
    }
}
