//! Accepted events reach the lake, readable by an independent reader.

use std::path::Path;
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

/// Writes a Parquet lake of the layout before the Delta log under
/// `data/lake`: for each of `days` days, 30 events in files named by change
/// range — the first 20 in `sources` files and again in the file a
/// compaction made of them, the last 10 in one more. Returns the event ids,
/// each of which the converted lake must hold once.
fn write_legacy_lake(data: &Path, days: usize, sources: usize) -> Vec<String> {
    use tracklake_event::{Device, Event, UserId};
    let start = chrono::NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    let mut ids = Vec::new();
    for day in 0..days {
        let date = start + chrono::Days::new(day as u64);
        let partition = data.join(format!("lake/events/dt={date}"));
        std::fs::create_dir_all(&partition).unwrap();
        let at = date.and_hms_opt(12, 0, 0).unwrap().and_utc();
        let base = day * 30;
        let events: Vec<Event> = (1..=30)
            .map(|i| Event {
                event_id: format!("e{}", base + i),
                user_id: UserId::Int((i % 3) as i64),
                event_type: "login".into(),
                event_at: at,
                received_at: at,
                user_agent: None,
                ip_address: None,
                properties: Default::default(),
                device: Device::unknown(),
                web: Default::default(),
                server_assigned_id: false,
            })
            .collect();
        let each = 20 / sources;
        let mut files: Vec<(usize, usize)> = (0..sources)
            .map(|i| (i * each + 1, (i + 1) * each))
            .collect();
        files.extend([(1, 20), (21, 30)]);
        for (first, last) in files {
            let refs: Vec<&Event> = events[first - 1..last].iter().collect();
            let body =
                tracklake_delivery::encode(&refs, tracklake_delivery::Format::Parquet, false);
            let name = format!("part-{:020}-{:020}.parquet", base + first, base + last);
            std::fs::write(partition.join(name), body.unwrap()).unwrap();
        }
        ids.extend(events.into_iter().map(|e| e.event_id));
    }
    ids
}

fn migrate_command(data: &Path) -> Command {
    let mut command = Command::new(BIN);
    command.args(["lake", "migrate", "--data-dir"]).arg(data);
    command
}

/// `tracklake lake migrate` converts a Parquet lake of the layout before the
/// Delta log — plain files named by change range, here with a compaction's
/// result beside its two sources and no table — into a Delta table that holds
/// each event once; run again, it changes nothing.
#[test]
fn lake_migrate_converts_a_lake_of_the_earlier_layout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_legacy_lake(&data, 1, 2);
    let text = stdout_of(&mut migrate_command(&data));
    assert!(
        text.contains("is a Delta table: version 0, 2 files, changes through 30"),
        "{text}"
    );
    let ids = lake_ids(&data.join("lake"));
    assert_eq!(ids.len(), 30);
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
    // The compaction's sources are gone; a second run finds the table made.
    let partition = data.join("lake/events/dt=2026-10-01");
    assert_eq!(std::fs::read_dir(&partition).unwrap().count(), 2);
    assert!(stdout_of(&mut migrate_command(&data)).contains("version 0, 2 files"));
}

/// kill -9 at 20 moments of a migration (reading files, committing,
/// deleting the 400 superseded ones): run again, it finishes, and the lake
/// holds every event once.
#[test]
fn sigkill_during_migration_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template");
    let ids = write_legacy_lake(&template, 40, 10);
    // How long a whole migration takes here, to spread the kills over.
    let timed = dir.path().join("timed");
    copy_dir(&template, &timed);
    let started = Instant::now();
    stdout_of(&mut migrate_command(&timed));
    let whole = started.elapsed();
    let (mut cut_short, mut committed) = (0, 0);
    for round in 0..20u32 {
        let data = dir.path().join(format!("round{round}"));
        copy_dir(&template, &data);
        let mut child = migrate_command(&data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if round < 15 {
            // While it reads the files.
            std::thread::sleep(whole.mul_f64(f64::from(round + 1) / 16.0));
        } else {
            // As soon as its commit is there: while it deletes the
            // superseded files.
            let first = data.join("lake/events/_delta_log/00000000000000000000.json");
            while !first.exists() && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        child.kill().unwrap();
        let finished = child.wait().unwrap().success();
        cut_short += u32::from(!finished);
        committed += u32::from(!finished && data.join("lake/events/_delta_log").exists());
        let text = stdout_of(&mut migrate_command(&data));
        assert!(text.contains("is a Delta table"), "{text}");
        let in_lake = lake_ids(&data.join("lake"));
        assert_eq!(in_lake.len(), ids.len(), "round {round}");
        let doubled: Vec<_> = in_lake.iter().filter(|(_, n)| **n > 1).collect();
        assert!(doubled.is_empty(), "round {round}: {doubled:?}");
        std::fs::remove_dir_all(&data).unwrap();
    }
    eprintln!(
        "migration: {whole:?} whole; {cut_short} of 20 kills cut it short, \
         {committed} after its commit"
    );
    // The kills landed before the migration ended, some before its
    // commit and some after.
    assert!(
        cut_short >= 15,
        "only {cut_short} of 20 kills cut a migration short"
    );
    assert!(
        (1..cut_short).contains(&committed),
        "{committed} after the commit"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
