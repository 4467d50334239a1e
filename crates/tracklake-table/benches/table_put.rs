//! The table alone, without HTTP or validation: 8 concurrent writers put
//! 1,000,000 seed-like events in batches of 500, each batch durable (fsync)
//! before the next. Prints events/s and the process's peak memory.
//!
//! `cargo bench -p tracklake-table --bench table_put [-- EVENTS]`

use std::sync::Arc;
use std::time::Instant;

use tracklake_event::{Device, Event, UserId};
use tracklake_table::{EmbeddedTable, Table, TableConfig};

const WRITERS: u64 = 8;
const BATCH: u64 = 500;

fn event(n: u64) -> Event {
    let now = chrono::Utc::now();
    Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        user_id: UserId::Int((n * 7919 % 10_000) as i64),
        event_type: if n.is_multiple_of(3) { "login" } else { "material-view" }.into(),
        event_at: now - chrono::Duration::seconds((n * 997 % 604_800) as i64),
        received_at: now,
        user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36".into()),
        ip_address: Some("57.161.250.74".parse().expect("an address")),
        properties: serde_json::from_str(r#"{"material_id": 42, "title": "lorem ipsum dolor"}"#).expect("json"),
        device: Device {
            kind: "desktop".into(),
            os: Some("Windows".into()),
            os_version: Some("10".into()),
            browser: Some("Chrome".into()),
            browser_version: Some("131.0".into()),
            ..Device::default()
        },
        web: Default::default(),
        server_assigned_id: true,
    }
}

#[tokio::main]
async fn main() {
    let total: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let table = Arc::new(EmbeddedTable::open(dir.path(), &TableConfig::default()).expect("open"));
    let batches = total / BATCH / WRITERS;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let table = table.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..batches {
                let base = (w * batches + b) * BATCH;
                let events = (base..base + BATCH).map(event).collect();
                table.put(events).await.expect("put");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let secs = started.elapsed().as_secs_f64();
    let stored = batches * BATCH * WRITERS;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?");
    println!(
        "table put: {stored} events, {WRITERS} writers, batches of {BATCH}: {secs:.1} s = {:.0} events/s; peak memory {}",
        stored as f64 / secs,
        peak.trim_start_matches("VmHWM:").trim()
    );
}
