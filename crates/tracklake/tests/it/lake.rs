//! Accepted events reach the lake, readable by an independent reader.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{BIN, FAST_LAKE_CONFIG, Server, lake_ids, stdout_of};

#[tokio::test]
async fn accepted_events_reach_the_lake_in_their_own_day() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, FAST_LAKE_CONFIG);
    let (status, _) = s
        .post(&json!([
            {"user_id": 1, "event_type": "login", "event_id": "old", "event_at": "2019-06-29T16:46:23Z"},
            {"user_id": 1, "event_type": "login", "event_id": "new-1"},
            {"user_id": "u2", "event_type": "material-view", "event_id": "new-2"},
            {"user_id": 1, "event_type": "login", "event_id": "old"}
        ]))
        .await;
    assert_eq!(status, 200);
    let lake = data.join("lake");
    let deadline = Instant::now() + Duration::from_secs(20);
    while lake_ids(&lake).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "events did not reach the lake: {:?}",
            lake_ids(&lake)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids = lake_ids(&lake);
    assert_eq!(ids.len(), 3);
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
    let backdated = std::fs::read_dir(lake.join("events/dt=2019-06-29"))
        .unwrap()
        .count();
    assert_eq!(backdated, 1, "the backdated event has its own partition");

    let text = stdout_of(
        Command::new(BIN)
            .args(["lake", "ls", "--data-dir"])
            .arg(&data),
    );
    assert!(
        text.contains("dt=2019-06-29") && text.contains("3 rows"),
        "{text}"
    );
}

#[test]
fn verify_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let s = Server::start(&data, FAST_LAKE_CONFIG);
        rt.block_on(s.post(&json!({"user_id": 1, "event_type": "login", "event_id": "keep"})));
        s.stop(); // publishes on the way out
    }
    let verify = || {
        Command::new(BIN)
            .args(["lake", "verify", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("1 events in the lake exactly once, 0 missing, 0 doubled")
    );
    // Lose the lake's files: verify must fail and name the event.
    std::fs::remove_dir_all(data.join("lake/events")).unwrap();
    let out = verify();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing: user 1 event keep"));
}

#[tokio::test]
async fn ingest_answers_503_when_delivery_lags_too_far() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A 15-minute buffer keeps events waiting; more than 10 waiting is too many.
    let config = "[delivery]\nbuffer_interval_secs = 900\nmax_lag_events = 10\n";
    let s = Server::start(&data, config);
    let batch: Vec<_> = (0..11)
        .map(|i| json!({"user_id": 1, "event_type": "login", "event_id": format!("e{i}")}))
        .collect();
    assert_eq!(s.post(&json!(batch)).await.0, 200);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/events", s.url))
        .json(&json!({"user_id": 1, "event_type": "login"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("11 events"),
        "{body}"
    );
    // Reads still work, and nothing accepted was lost: a stop publishes it.
    assert_eq!(s.all_ids("1").await.len(), 11);
    s.stop();
    assert_eq!(lake_ids(&data.join("lake")).len(), 11);
}

/// `tracklake lake migrate` converts a Parquet lake of the layout before the
/// Delta log — plain files named by change range, here with a compaction's
/// result beside its sources and no table — into a Delta table that holds
/// each event once; run again, it changes nothing.
#[test]
fn lake_migrate_converts_a_lake_of_the_earlier_layout() {
    use tracklake_event::{Device, Event, UserId};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let partition = data.join("lake/events/dt=2026-11-20");
    std::fs::create_dir_all(&partition).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z").unwrap();
    let events: Vec<Event> = (1..=30)
        .map(|i| Event {
            event_id: format!("e{i}"),
            user_id: UserId::Int(i % 3),
            event_type: "login".into(),
            event_at: at.into(),
            received_at: at.into(),
            user_agent: None,
            ip_address: None,
            properties: Default::default(),
            device: Device::unknown(),
            server_assigned_id: false,
        })
        .collect();
    for (first, last) in [(1, 10), (11, 20), (1, 20), (21, 30)] {
        let refs: Vec<&Event> = events[first - 1..last].iter().collect();
        let body = tracklake_delivery::encode(&refs, tracklake_delivery::Format::Parquet, false);
        std::fs::write(
            partition.join(format!("part-{first:020}-{last:020}.parquet")),
            body.unwrap(),
        )
        .unwrap();
    }
    let migrate = || {
        stdout_of(
            Command::new(BIN)
                .args(["lake", "migrate", "--data-dir"])
                .arg(&data),
        )
    };
    let text = migrate();
    assert!(
        text.contains("is a Delta table: version 0, 2 files, changes through 30"),
        "{text}"
    );
    let ids = lake_ids(&data.join("lake"));
    assert_eq!(ids.len(), 30);
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
    // The compaction's sources are gone; a second run finds the table made.
    assert_eq!(std::fs::read_dir(&partition).unwrap().count(), 2);
    assert!(migrate().contains("version 0, 2 files"));
}
