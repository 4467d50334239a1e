//! Per-user deletion against the real binary: over HTTP while events are
//! flowing, through the CLI both via the server and on a stopped data
//! directory; afterwards the user is in neither the table, nor SQL, nor any
//! lake file, and everyone else's events are each there exactly once.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{BIN, FAST_LAKE_CONFIG, Server, lake_ids, stdout_of};

/// `n` logins of `user`, with event ids `<user>-<i>` spread over ten days.
fn logins(user: &str, n: usize) -> Value {
    let user_id = user.parse::<i64>().map_or(json!(user), Value::from);
    let today = chrono::Utc::now();
    Value::Array(
        (0..n)
            .map(|i| {
                let at = today - chrono::Duration::days((i % 10) as i64);
                json!({"user_id": user_id, "event_type": "login", "event_id": format!("{user}-{i}"),
                       "event_at": at.to_rfc3339()})
            })
            .collect(),
    )
}

/// Lake event ids by user (the part before the first `-`).
fn lake_by_user(data: &std::path::Path) -> HashMap<String, Vec<(String, usize)>> {
    let mut by_user: HashMap<String, Vec<(String, usize)>> = HashMap::new();
    for (id, n) in lake_ids(&data.join("lake")) {
        let user = id.split('-').next().unwrap().to_owned();
        by_user.entry(user).or_default().push((id, n));
    }
    by_user
}

async fn wait_for_lake(data: &std::path::Path, events: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while lake_ids(&data.join("lake")).len() < events {
        assert!(Instant::now() < deadline, "delivery did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn wait_done(s: &Server, location: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, job) = s.get(location).await;
        assert_eq!(status, 200, "{job}");
        if job["state"] == "done" {
            return job;
        }
        assert!(Instant::now() < deadline, "deletion did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cli_delete(args: &[&str]) -> Value {
    let out = stdout_of(
        Command::new(BIN)
            .args(["users", "delete"])
            .args(args)
            .env_remove("TRACKLAKE_KEY"),
    );
    serde_json::from_str(&out).unwrap()
}

#[tokio::test]
async fn a_deleted_user_is_nowhere_and_everyone_else_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, FAST_LAKE_CONFIG);
    for user in ["alice", "42", "bob", "carol"] {
        assert_eq!(s.post(&logins(user, 30)).await.0, 200);
    }
    wait_for_lake(&data, 120).await;
    // A report computed now would name alice until it is forgotten.
    assert_eq!(s.get("/v1/reports/logins_per_day").await.0, 200);
    assert!(data.join("reports/logins_per_day.json").exists());
    // Some of alice's events are still in the pipeline when she is deleted.
    assert_eq!(s.post(&logins("alice", 45)).await.0, 200); // 15 new ids

    let response = reqwest::Client::new()
        .delete(format!("{}/v1/users/alice/events", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/deletions/{}", job["id"].as_str().unwrap())
    );
    assert_eq!(job["user_id"], "alice");
    let job = wait_done(&s, &location).await;
    assert_eq!(job["table_events"], 45, "{job}");
    assert!(job["finished_at"].is_string());

    assert!(s.all_ids("alice").await.is_empty());
    let (_, answer) = s
        .sql("SELECT count(*) AS n FROM events WHERE user_id = 'alice'")
        .await;
    assert_eq!(answer["rows"][0]["n"], 0, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while data.join("reports/logins_per_day.json").exists() {
        assert!(Instant::now() < deadline, "the kept report was not dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Deleting through the CLI while the server holds the data directory.
    let job = cli_delete(&["bob", "--data-dir", data.to_str().unwrap(), "--url", &s.url]);
    assert_eq!(
        (job["state"].as_str(), job["table_events"].as_u64()),
        (Some("done"), Some(30))
    );
    let (_, jobs) = s.get("/v1/deletions").await;
    assert_eq!(jobs["deletions"].as_array().unwrap().len(), 2);
    // alice sends a new event after her deletion: it is kept.
    assert_eq!(
        s.post(&json!({"user_id": "alice", "event_type": "login", "event_id": "alice-new"}))
            .await
            .0,
        201
    );
    s.stop();

    // On a stopped data directory the CLI does the work itself.
    let job = cli_delete(&["42", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(job["table_events"], 30, "{job}");
    assert_eq!(job["lake_events"], 30, "{job}");

    let lake = lake_by_user(&data);
    assert_eq!(lake["alice"], vec![("alice-new".to_owned(), 1)]);
    assert!(
        !lake.contains_key("bob") && !lake.contains_key("42"),
        "{lake:?}"
    );
    assert_eq!(lake["carol"].len(), 30);
    assert!(lake["carol"].iter().all(|(_, n)| *n == 1));
    let verify = Command::new(BIN)
        .args(["lake", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{report}");
    assert!(
        report.starts_with("31 events in the lake exactly once"),
        "{report}"
    );
}

#[tokio::test]
async fn deleting_asks_for_a_valid_user_and_an_existing_job() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), FAST_LAKE_CONFIG);
    let client = reqwest::Client::new();
    let r = client
        .delete(format!("{}/v1/users/a%01b/events", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "user_id");
    let (status, body) = s.get("/v1/deletions/no-such-job").await;
    assert_eq!(status, 404, "{body}");
    // A user who never sent anything: the same answer as any other.
    let r = client
        .delete(format!("{}/v1/users/nobody/events", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
}
