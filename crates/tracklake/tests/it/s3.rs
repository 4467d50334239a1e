//! The lake on S3, against the AWS emulator on loopback.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{AWS_TEST_ENV, Moto, Server, free_port};

fn config(endpoint: &str) -> String {
    format!(
        "[lake]\nurl = \"s3://tracklake-test/lake/\"\n[lake.s3]\nendpoint = \"{endpoint}\"\nallow_http = true\n\
         [delivery]\nbuffer_interval_secs = 1\n"
    )
}

/// Each event id's count in the bucket's Parquet files.
async fn counts(moto: &Moto) -> HashMap<String, usize> {
    moto.delta_ids("tracklake-test", "lake/events/").await
}

async fn wait_for(moto: &Moto, n: usize) -> HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = counts(moto).await;
        if c.len() >= n {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} events reached S3",
            c.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn files_land_in_s3_under_the_documented_keys() {
    if !Moto::available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    moto.create_bucket("tracklake-test").await;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        &dir.path().join("data"),
        &config(&moto.endpoint),
        &AWS_TEST_ENV,
    );
    let (status, _) = s
        .post(&json!([
            {"user_id": 1, "event_type": "login", "event_id": "a", "event_at": "2019-06-29T16:46:23Z"},
            {"user_id": 1, "event_type": "login", "event_id": "b"}
        ]))
        .await;
    assert_eq!(status, 200);
    let counts = wait_for(&moto, 2).await;
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    let keys = moto.keys("tracklake-test", "lake/events/").await;
    let old: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("lake/events/dt=2019-06-29/part-"))
        .collect();
    assert_eq!(old.len(), 1, "{keys:?}");
    let name = old[0].rsplit('/').next().unwrap();
    let digits: Vec<&str> = name
        .trim_start_matches("part-")
        .trim_end_matches(".parquet")
        .split('-')
        .collect();
    // The change range, then a unique id.
    assert!(
        digits.len() == 3
            && digits[..2]
                .iter()
                .all(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
            && digits[2].len() == 32,
        "{name}"
    );
    // The Delta log sits beside the partitions.
    assert!(
        keys.iter()
            .any(|k| k == "lake/events/_delta_log/00000000000000000000.json"),
        "{keys:?}"
    );
}

#[tokio::test]
async fn an_s3_outage_loses_and_doubles_nothing() {
    if !Moto::available() {
        return;
    }
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    // S3 is down when tracklake starts: ingest must keep working.
    let s = Server::start_with_env(&dir.path().join("data"), &config(&endpoint), &AWS_TEST_ENV);
    for b in 0..4 {
        let batch: Vec<_> = (0..25)
            .map(|i| json!({"user_id": b, "event_type": "login", "event_id": format!("{b}-{i}")}))
            .collect();
        assert_eq!(s.post(&json!(batch)).await.0, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let moto = Moto::start(port).await;
    moto.create_bucket("tracklake-test").await;
    let counts = wait_for(&moto, 100).await;
    assert!(
        counts.values().all(|n| *n == 1),
        "doubled after the outage: {counts:?}"
    );
    s.stop();
    assert_eq!(self::counts(&moto).await.len(), 100);
}

/// SQL over a lake on S3: the built-in `events` table, and an Athena table
/// whose `s3://` location is read through the same configured store.
#[tokio::test]
async fn sql_reads_the_lake_on_s3() {
    if !Moto::available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    moto.create_bucket("tracklake-test").await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[lake]\nurl = \"s3://tracklake-test/lake/\"\nformat = \"ndjson\"\n[lake.s3]\nendpoint = \"{}\"\nallow_http = true\n\
         [delivery]\nbuffer_interval_secs = 1\n[query]\nfresh = false\n",
        moto.endpoint
    );
    let s = Server::start_with_env(&dir.path().join("data"), &config, &AWS_TEST_ENV);
    let events: Vec<_> = (0..25)
        .map(|i| json!({"user_id": i % 5, "event_type": "login", "event_id": format!("s{i}")}))
        .collect();
    assert_eq!(s.post(&serde_json::Value::Array(events)).await.0, 200);
    let query = |sql: &'static str| {
        let s = &s;
        async move {
            let (status, body) = s.sql(sql).await;
            assert_eq!(status, 200, "{body}");
            body["rows"].clone()
        }
    };
    // fresh = false: only what is in the bucket counts.
    let deadline = Instant::now() + Duration::from_secs(60);
    while query("SELECT count(*) AS n FROM events").await != json!([{"n": 25}]) {
        assert!(
            Instant::now() < deadline,
            "the S3 lake never held all 25 events"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    query("CREATE DATABASE exampro_events LOCATION 's3://tracklake-test/'").await;
    query(
        "CREATE EXTERNAL TABLE exampro_events.events (user_id INT, event_at STRING, event_id STRING, event_type STRING) \
         ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION 's3://tracklake-test/lake/'",
    )
    .await;
    let rows =
        query("SELECT count(*) AS n, count(DISTINCT user_id) AS users FROM exampro_events.events")
            .await;
    assert_eq!(rows, json!([{"n": 25, "users": 5}]));
}

/// `tracklake aws athena-ddl` over a lake on S3 (Parquet — a Delta table —
/// then JSON lines): its statements run in tracklake's own SQL, and the
/// table they define answers as the built-in `events` does.
#[tokio::test]
async fn athena_ddl_defines_the_lake_as_written() {
    if !Moto::available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    for (n, format) in ["parquet", "ndjson"].into_iter().enumerate() {
        let bucket = format!("athena-{n}");
        moto.create_bucket(&bucket).await;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = format!(
            "[lake]\nurl = \"s3://{bucket}/lake/\"\nformat = \"{format}\"\n[lake.s3]\nendpoint = \"{}\"\nallow_http = true\n\
             [delivery]\nbuffer_interval_secs = 1\n[query]\nfresh = false\n",
            moto.endpoint
        );
        let s = Server::start_with_env(&data, &config, &AWS_TEST_ENV);
        let now = chrono::Utc::now();
        let events: Vec<_> = (0..40)
            .map(|i| {
                let at = now - chrono::Duration::days(i % 4);
                json!({"user_id": i % 5, "event_type": if i % 3 == 0 { "material-view" } else { "login" },
                       "event_id": format!("a{i}"), "event_at": at.to_rfc3339()})
            })
            .collect();
        assert_eq!(s.post(&serde_json::Value::Array(events)).await.0, 200);
        let query = |sql: String| {
            let s = &s;
            async move {
                let (status, body) = s.sql(&sql).await;
                assert_eq!(status, 200, "{sql}: {body}");
                body["rows"].clone()
            }
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while query("SELECT count(*) AS n FROM events".into()).await != json!([{"n": 40}]) {
            assert!(
                Instant::now() < deadline,
                "the S3 lake never held all 40 events"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let ddl = crate::harness::stdout_of(
            std::process::Command::new(crate::harness::BIN)
                .args(["aws", "athena-ddl", "--config"])
                .arg(data.with_extension("toml")),
        );
        assert!(
            ddl.contains(&format!("LOCATION 's3://{bucket}/lake/events/'")),
            "{ddl}"
        );
        // tracklake's Parquet lake is a Delta table; JSON lines are plain files.
        assert_eq!(
            ddl.contains("TBLPROPERTIES ('table_type' = 'DELTA')"),
            format == "parquet",
            "{ddl}"
        );
        for statement in ddl.split(";\n").filter(|s| !s.trim().is_empty()) {
            query(statement.to_owned()).await;
        }
        for table in ["events", "tracklake.events"] {
            let by_type = query(format!(
                "SELECT event_type, count(*) AS n, count(DISTINCT user_id) AS users FROM {table} \
                 GROUP BY event_type ORDER BY event_type"
            ))
            .await;
            assert_eq!(
                by_type,
                json!([{"event_type": "login", "n": 26, "users": 5},
                       {"event_type": "material-view", "n": 14, "users": 5}]),
                "{format} {table}"
            );
            let by_day = query(format!(
                "SELECT dt, count(*) AS n FROM {table} GROUP BY dt ORDER BY dt"
            ))
            .await;
            assert_eq!(
                by_day.as_array().unwrap().len(),
                4,
                "{format} {table}: {by_day}"
            );
            assert!(
                by_day.as_array().unwrap().iter().all(|r| r["n"] == 10),
                "{by_day}"
            );
        }
        s.stop();
    }
}

/// A TCP relay to S3 that can be cut: while down it closes new connections
/// at once and drops every open one, mid-request or not.
struct Relay {
    endpoint: String,
    down: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (down, state) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *state.borrow() {
                    continue;
                }
                let (upstream, mut state) = (upstream.clone(), state.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        Relay { endpoint, down }
    }

    fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }
}

/// S3 lost for 30 s in the middle of a run, under steady ingest: every
/// request is still acknowledged, delivery fails and backs off, then
/// catches up, and the lake holds every event exactly once.
#[tokio::test]
async fn s3_lost_mid_run_under_load_loses_and_doubles_nothing() {
    if !Moto::available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    moto.create_bucket("tracklake-test").await;
    let relay = Relay::start(moto.endpoint.trim_start_matches("http://").to_owned()).await;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        &dir.path().join("data"),
        &config(&relay.endpoint),
        &AWS_TEST_ENV,
    );
    let mut sent = 0;
    let mut send_for = async |s: &Server, secs: u64| {
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            let batch: Vec<_> = (0..50)
                .map(|i| json!({"user_id": i % 7, "event_type": "login", "event_id": format!("e{}", sent + i)}))
                .collect();
            let (code, body) = s.post(&json!(batch)).await;
            assert_eq!(code, 200, "{body}");
            sent += 50;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    send_for(&s, 5).await;
    relay.set_down(true);
    send_for(&s, 30).await;
    let during = s.get("/v1/status").await.1["delivery"].clone();
    assert!(
        during["failed_puts"].as_u64().unwrap_or(0) > 0,
        "delivery did not notice S3 was gone: {during}"
    );
    relay.set_down(false);
    send_for(&s, 5).await;
    let counts = wait_for(&moto, sent).await;
    assert_eq!(counts.len(), sent);
    assert!(
        counts.values().all(|n| *n == 1),
        "doubled after the outage: {:?}",
        counts
            .iter()
            .filter(|(_, n)| **n > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    s.stop();
}
