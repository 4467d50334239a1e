//! The table on DynamoDB (the AWS emulator on loopback) passes the same
//! behaviour suite as the embedded table.

use serde_json::json;
use tracklake_aws::{DynamoTable, Layout};
use tracklake_table::Table;

use crate::harness::{AWS_TEST_ENV, Moto, Server, free_port};

#[tokio::test]
async fn dynamodb_table_behaves_as_every_table_must() {
    if !Moto::available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    let config = moto.sdk_config().await;
    let mut table = DynamoTable::connect(&config, "tracklake-events");
    table.create(Layout::Tracklake).await.unwrap();
    tracklake_table::suite::run_all(&table, "u-").await;
}

/// `tracklake serve` with `[aws] dynamodb_table`: ingest and the activity
/// feed go to DynamoDB; delivery is left to the stack's stream and Lambda.
#[tokio::test]
async fn serve_keeps_events_in_dynamodb() {
    if !Moto::available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    let config = moto.sdk_config().await;
    let mut table = DynamoTable::connect(&config, "served");
    table.create(Layout::Tracklake).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let toml = format!(
        "[aws]\ndynamodb_table = \"served\"\nendpoint = \"{}\"\n[ingest]\nevent_types = [\"login\"]\n",
        moto.endpoint
    );
    let s = Server::start_with_env(&data, &toml, &AWS_TEST_ENV);
    let events = json!([
        {"user_id": 42, "event_type": "login", "event_id": "a", "event_at": "2026-11-27T10:00:00Z"},
        {"user_id": 42, "event_type": "login", "event_id": "b", "event_at": "2026-11-27T10:00:00Z"},
        {"user_id": 42, "event_type": "login", "event_id": "a", "event_at": "2026-11-27T10:00:00Z"}
    ]);
    let (status, body) = s.post(&events).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["stored"].as_u64(), body["duplicate"].as_u64()),
        (Some(2), Some(1)),
        "{body}"
    );
    let (status, feed) = s.get("/v1/users/42/events").await;
    assert_eq!(status, 200, "{feed}");
    let ids: Vec<&str> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "both events of one instant are kept: {feed}");
    // The items are DynamoDB's, read back without tracklake's server.
    let stored = table
        .query(tracklake_table::Query::recent("42"))
        .await
        .unwrap();
    assert_eq!(stored.events.len(), 2);
    // No in-process delivery, so no lag gate; deletion is not offered yet.
    let (status, _) = s.get("/v1/status").await;
    assert_eq!(status, 200);
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/users/42/events", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    s.stop();
    assert!(!data.join("table").exists(), "no embedded table was made");
}

/// A missing table stops `serve` with a message that names it.
#[tokio::test]
async fn serve_names_a_missing_dynamodb_table() {
    if !Moto::available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let toml = format!(
        "[aws]\ndynamodb_table = \"nowhere\"\nendpoint = \"{}\"\n",
        moto.endpoint
    );
    std::fs::write(data.with_extension("toml"), toml).unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(data.with_extension("toml"))
        .arg("--data-dir")
        .arg(&data)
        .envs(AWS_TEST_ENV)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DynamoDB table nowhere"), "{stderr}");
}

/// `[aws] read_stream`: tracklake reads the table's stream and delivers to
/// a lake on S3 itself; killed mid-way and restarted, every event is in the
/// bucket exactly once.
#[tokio::test]
async fn the_stream_reaches_the_s3_lake_exactly_once_across_a_kill() {
    if !Moto::available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    moto.create_bucket("stream-lake").await;
    let config = moto.sdk_config().await;
    DynamoTable::connect(&config, "streamed")
        .create(Layout::Tracklake)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let toml = format!(
        "[aws]\ndynamodb_table = \"streamed\"\nread_stream = true\nendpoint = \"{0}\"\n\
         [lake]\nurl = \"s3://stream-lake/lake/\"\n[lake.s3]\nendpoint = \"{0}\"\nallow_http = true\n\
         [delivery]\nbuffer_interval_secs = 1\n[ingest]\nevent_types = [\"login\"]\n",
        moto.endpoint
    );
    let batch = |from: usize| {
        serde_json::Value::Array(
            (from..from + 40)
                .map(|i| json!({"user_id": i % 7, "event_type": "login", "event_id": format!("s{i}")}))
                .collect(),
        )
    };
    let lake_counts = || async { moto.delta_ids("stream-lake", "lake/events/").await };
    let wait_for = |n: usize| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let counts = lake_counts().await;
            if counts.len() >= n {
                return counts;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n} in the lake",
                counts.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    };

    let s = Server::start_with_env(&data, &toml, &AWS_TEST_ENV);
    assert_eq!(s.post(&batch(0)).await.0, 200);
    wait_for(40).await;
    // The second batch is in DynamoDB when the process dies, mid-read or
    // mid-delivery.
    assert_eq!(s.post(&batch(40)).await.0, 200);
    s.kill();
    let s = Server::start_with_env(&data, &toml, &AWS_TEST_ENV);
    assert_eq!(s.post(&batch(80)).await.0, 200);
    wait_for(120).await;
    s.stop();
    let counts = lake_counts().await;
    assert_eq!(counts.len(), 120);
    assert!(counts.values().all(|n| *n == 1), "doubled: {counts:?}");
}

/// A table shaped like the article's (`user_id` N, `event_at` S): found
/// from its keys, it passes the same suite, reads the items the article's
/// own code wrote, and refuses a user id that is not a number.
#[tokio::test]
async fn an_article_shaped_table_works_too() {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    if !Moto::available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    let config = moto.sdk_config().await;
    DynamoTable::connect(&config, "exampro-events")
        .create(Layout::Article)
        .await
        .unwrap();
    let mut table = DynamoTable::connect(&config, "exampro-events");
    table.check().await.unwrap();
    assert_eq!(table.layout(), Layout::Article);
    tracklake_table::suite::run_all(&table, "").await;

    aws_sdk_dynamodb::Client::new(&config)
        .put_item()
        .table_name("exampro-events")
        .item("user_id", N("42".into()))
        .item("event_at", S("2019-06-29T16:46:23Z".into()))
        .item("event_id", N("1561826783".into()))
        .item("event_type", S("login".into()))
        .item(
            "user_agent",
            S("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_3)".into()),
        )
        .item("ip_address", S("11.174.250.238".into()))
        .send()
        .await
        .unwrap();
    let page = table
        .query(tracklake_table::Query::recent("42"))
        .await
        .unwrap();
    assert_eq!(page.events.len(), 1);
    let written = &page.events[0];
    assert_eq!(written.event_id, "1561826783");
    assert_eq!(written.event_type, "login");
    assert_eq!(written.ip_address, "11.174.250.238".parse().ok());

    let mut alice = written.clone();
    alice.user_id = tracklake_event::UserId::Text("alice".into());
    let refused = table.put(vec![alice]).await.unwrap_err();
    assert!(
        refused.to_string().contains("keys users by number"),
        "{refused}"
    );
}
