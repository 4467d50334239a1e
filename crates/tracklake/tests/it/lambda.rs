//! Kinesis Firehose in the AWS emulator: the Lambda handler, invoked
//! in-process with a recorded DynamoDB stream batch (INSERTs of an event and
//! of its id item, MODIFY, REMOVE, and an item shaped like the article's
//! table), and tracklake's own
//! delivery sending to a Firehose stream.

use std::time::Duration;

use aws_lambda_events::dynamodb::Event;
use aws_sdk_firehose::types::ExtendedS3DestinationConfiguration;
use serde_json::Value;
use tracklake_aws::lambda::Forwarder;

use crate::harness::{Moto, free_port};

const RECORDED: &str = include_str!("fixtures/dynamodb-stream-event.json");

async fn firehose(moto: &Moto) -> aws_sdk_firehose::Client {
    aws_sdk_firehose::Client::new(&moto.sdk_config().await)
}

/// A delivery stream that writes `bucket` under `events/`.
async fn create_stream(moto: &Moto, name: &str, bucket: &str) {
    moto.create_bucket(bucket).await;
    firehose(moto)
        .await
        .create_delivery_stream()
        .delivery_stream_name(name)
        .extended_s3_destination_configuration(
            ExtendedS3DestinationConfiguration::builder()
                .bucket_arn(format!("arn:aws:s3:::{bucket}"))
                .role_arn("arn:aws:iam::123456789012:role/firehose")
                .prefix("events/")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn inserts_become_json_lines_in_firehose() {
    if !Moto::available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    create_stream(&moto, "tracklake-events", "lambda-lake").await;
    let client = firehose(&moto).await;
    let event: Event = serde_json::from_str(RECORDED).unwrap();
    let forwarder = Forwarder::new(client, "tracklake-events".into(), "test".into());
    let answer = forwarder.forward(&event).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");

    let mut lines = Vec::new();
    for key in moto.keys("lambda-lake", "events/").await {
        let body = moto.get("lambda-lake", &key).await;
        assert!(body.ends_with(b"\n"), "every record ends its line");
        lines.extend(
            String::from_utf8(body.to_vec())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    // The two events' INSERTs: not the id item's, the MODIFY or the REMOVE.
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first = lines.iter().find(|l| l["event_id"] == "e1").unwrap();
    assert_eq!(first["ip_address"], "11.174.250.238");
    assert_eq!(first["device"]["os"], "Mac OS X");
    let article = lines.iter().find(|l| l["user_id"] == 9).unwrap();
    assert_eq!(article["event_at"], "2019-06-29T16:46:25Z");
    assert_eq!(article["event_type"], "login");
}

#[tokio::test]
async fn undelivered_records_are_reported_not_dropped() {
    if !Moto::available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    let event: Event = serde_json::from_str(RECORDED).unwrap();
    // No such delivery stream: every put fails, every try.
    let forwarder = Forwarder::new(firehose(&moto).await, "missing".into(), "test".into())
        .with_retries(3, Duration::from_millis(10));
    let answer = forwarder.forward(&event).await;
    let failed: Vec<_> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_deref().unwrap())
        .collect();
    // Only the INSERTs were to be sent; Lambda retries from the first.
    assert_eq!(
        failed,
        ["111000000000000000000001", "444000000000000000000004"]
    );
}

/// `[aws] firehose_stream`: tracklake's own delivery sends each event as
/// one JSON line to Firehose (in the emulator), which writes the bucket.
#[tokio::test]
async fn serve_delivers_through_firehose() {
    if !Moto::available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    create_stream(&moto, "from-serve", "firehose-lake").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let toml = format!(
        "[aws]\nfirehose_stream = \"from-serve\"\nendpoint = \"{}\"\n[delivery]\nbuffer_interval_secs = 1\n",
        moto.endpoint
    );
    let s = crate::harness::Server::start_with_env(&data, &toml, &crate::harness::AWS_TEST_ENV);
    let events: Vec<Value> = (0..30)
        .map(|i| serde_json::json!({"user_id": i % 4, "event_type": "login", "event_id": format!("f{i}")}))
        .collect();
    assert_eq!(s.post(&Value::Array(events)).await.0, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let ids = loop {
        let mut ids = Vec::new();
        for key in moto.keys("firehose-lake", "events/").await {
            let body = moto.get("firehose-lake", &key).await;
            for line in String::from_utf8(body.to_vec()).unwrap().lines() {
                let event: Value = serde_json::from_str(line).unwrap();
                ids.push(event["event_id"].as_str().unwrap().to_owned());
            }
        }
        if ids.len() >= 30 || std::time::Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    s.stop();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((ids.len(), unique.len()), (30, 30), "{ids:?}");
    assert!(
        !data.join("lake/events").exists(),
        "no lake files were written here"
    );
}
