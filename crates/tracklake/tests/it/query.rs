//! SQL over every event: `POST /v1/query`, the reports, `tracklake query`
//! and the `tracklake sql` shell, against the real binary.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{BIN, FAST_LAKE_CONFIG, Server, lake_ids};

fn batch(n: usize, prefix: &str) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"user_id": i % 7, "event_type": if i % 3 == 0 { "login" } else { "material-view" },
                   "event_id": format!("{prefix}-{i}"), "ip_address": format!("203.0.113.{}", i % 5)})
        })
        .collect();
    Value::Array(events)
}

const COUNT: &str = "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events";

/// An event is in `events` as soon as it is acknowledged, and still once
/// after delivery has written it to the lake.
#[tokio::test]
async fn queries_see_acknowledged_events_once_before_and_after_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, FAST_LAKE_CONFIG);
    assert_eq!(s.post(&batch(300, "a")).await.0, 200);
    let (status, body) = s.sql(COUNT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([{"n": 300, "ids": 300}]));
    assert_eq!(body["columns"][0], json!({"name": "n", "type": "Int64"}));

    let deadline = Instant::now() + Duration::from_secs(30);
    while lake_ids(&data.join("lake")).len() < 300 {
        assert!(Instant::now() < deadline, "delivery did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.post(&batch(20, "b")).await.0, 200);
    let (_, body) = s.sql(COUNT).await;
    assert_eq!(body["rows"], json!([{"n": 320, "ids": 320}]));

    let (status, body) = s.sql("SELEC 1").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "sql");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Line: 1, Column: 1"),
        "{body}"
    );
    let (status, body) = s.sql("INSERT INTO events (event_id) VALUES ('x')").await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("read-only"),
        "{body}"
    );
}

#[tokio::test]
async fn reports_are_served_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), FAST_LAKE_CONFIG);
    assert_eq!(s.post(&batch(30, "r")).await.0, 200);
    let (status, list) = s.get("/v1/reports").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for name in [
        "logins_per_day",
        "events_per_type_per_day",
        "daily_active_users",
        "device_types",
        "account_sharing",
        "possible_scraping",
    ] {
        assert!(names.contains(&name), "{names:?}");
    }
    let (status, first) = s.get("/v1/reports/logins_per_day").await;
    assert_eq!(status, 200, "{first}");
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(first["rows"], json!([{"day": today, "logins": 10}]));
    // Within five minutes the same answer is served, even after new logins.
    assert_eq!(s.post(&batch(30, "r2")).await.0, 200);
    let (_, again) = s.get("/v1/reports/logins_per_day").await;
    assert_eq!(again["computed_at"], first["computed_at"]);
    assert_eq!(again["rows"], first["rows"]);
    let (status, body) = s.get("/v1/reports/nope").await;
    assert_eq!(status, 404, "{body}");
}

fn tracklake(args: &[&str], data: &std::path::Path, stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("TRACKLAKE_LOG", "warn")
        .env("HOME", data.parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tracklake query` asks the running server; stopped, it opens the data
/// directory itself; the answers agree.
#[tokio::test]
async fn the_cli_answers_with_or_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, FAST_LAKE_CONFIG);
    assert_eq!(s.post(&batch(42, "c")).await.0, 200);
    let url = s.url.clone();
    let query = [
        "query",
        "--format",
        "csv",
        "--url",
        &url,
        "SELECT event_type, count(*) AS n FROM events GROUP BY 1 ORDER BY 1",
    ];
    let (ok, remote, err) = tracklake(&query, &data, None);
    assert!(ok, "{err}");
    assert_eq!(remote, "event_type,n\nlogin,14\nmaterial-view,28\n");
    s.stop();
    let (ok, local, err) = tracklake(&query, &data, None);
    assert!(ok, "{err}");
    assert_eq!(local, remote);

    let (ok, out, err) = tracklake(&["query", "SELECT nope FROM events"], &data, None);
    assert!(!ok && err.contains("nope"), "{out}{err}");

    let script = "SELECT count(*) AS n\n  FROM events;\nSELEC;\nSHOW TABLES;\n";
    let (ok, out, err) = tracklake(&["sql"], &data, Some(script));
    assert!(ok, "{err}");
    assert!(
        out.contains("n\n42\n") && out.contains("tab_name\nevents"),
        "{out}"
    );
    assert!(err.contains("SELEC"), "{err}");
    let history = std::fs::read_to_string(dir.path().join(".tracklake_history")).unwrap();
    assert!(history.contains("SHOW TABLES;"), "{history}");
}
