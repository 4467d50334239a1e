//! What the article's Ruby Lambda did, done correctly: keep the INSERT
//! records of a DynamoDB stream batch, turn each new image into one JSON
//! line (newline-terminated, as Athena's JSON SerDe needs), send them with
//! `PutRecordBatch` in calls of at most 500 records and 4 MiB, resend only
//! the entries Firehose refused, with backoff, and report what still failed
//! as partial batch failures, so Lambda retries those records instead of
//! dropping them. It logs the article's `{"records_size": N}` and
//! `{"failed_put_count": N}` as top-level numbers, in CloudWatch's Embedded
//! Metric Format.

use std::time::Duration;

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_firehose::Client;

use crate::firehose::{MAX_RECORD_BYTES, Putter};

pub struct Forwarder {
    putter: Putter,
    /// The Lambda function's name, the metrics' dimension.
    function: String,
}

impl Forwarder {
    pub fn new(firehose: Client, stream: String, function: String) -> Self {
        Forwarder {
            putter: Putter::new(firehose, stream),
            function,
        }
    }

    /// Tries per record, and the first wait between them (doubling).
    pub fn with_retries(mut self, attempts: u32, first_backoff: Duration) -> Self {
        self.putter.attempts = attempts.max(1);
        self.putter.first_backoff = first_backoff;
        self
    }

    /// Forwards one batch; the answer names the records that could not be
    /// delivered.
    pub async fn forward(&self, event: &Event) -> DynamoDbEventResponse {
        let mut failed: Vec<Option<String>> = Vec::new();
        let (mut seqs, mut lines) = (Vec::new(), Vec::new());
        for record in event.records.iter().filter(|r| r.event_name == "INSERT") {
            let image = &record.change.new_image;
            // The id item tracklake writes beside each event is no event.
            if image.contains_key("at") && !image.contains_key("event") {
                continue;
            }
            let seq = record.change.sequence_number.clone();
            match line_of(&record.change.new_image) {
                Ok(bytes) if bytes.len() <= MAX_RECORD_BYTES => {
                    seqs.push(seq);
                    lines.push(bytes);
                }
                Ok(bytes) => {
                    tracing::error!(sequence_number = ?seq, bytes = bytes.len(), "a record over Firehose's 1,000 KiB limit");
                    failed.push(seq);
                }
                Err(error) => {
                    tracing::error!(sequence_number = ?seq, %error, "a new image that is not an event");
                    failed.push(seq);
                }
            }
        }
        let (left, failed_puts) = self.putter.put(&lines).await;
        let put = lines.len() - left.len();
        failed.extend(left.into_iter().map(|i| seqs[i].clone()));
        // Lambda retries from the earliest failed record: report in order.
        failed.sort_by_key(|seq| seq.as_deref().map(|s| (s.len(), s.to_owned())));
        // Lambda sends stdout to CloudWatch Logs, where the metric filters
        // and EMF read this line.
        println!(
            "{}",
            log_line(
                &self.function,
                event.records.len(),
                put,
                failed_puts,
                chrono::Utc::now()
            )
        );
        let mut response = DynamoDbEventResponse::default();
        for item_identifier in failed {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = item_identifier;
            response.batch_item_failures.push(failure);
        }
        response
    }
}

/// The line of a new image: the stored event's JSON when the item carries
/// it (tracklake's own table, attribute `event`), else the item's
/// attributes as JSON (a table shaped like the article's).
fn line_of(image: &serde_dynamo::Item) -> Result<Vec<u8>, String> {
    let mut line = match image.get("event") {
        Some(serde_dynamo::AttributeValue::S(json)) => json.clone().into_bytes(),
        _ => {
            let value: serde_json::Value =
                serde_dynamo::from_item(image.clone()).map_err(|e| e.to_string())?;
            if !value.is_object() || value.as_object().is_some_and(|o| o.is_empty()) {
                return Err("an empty image".into());
            }
            serde_json::to_vec(&value).map_err(|e| e.to_string())?
        }
    };
    line.push(b'\n');
    Ok(line)
}

/// One log line: the article's two fields as top-level numbers, and the
/// same figures as CloudWatch metrics in Embedded Metric Format.
fn log_line(
    function: &str,
    records_size: usize,
    put: usize,
    failed_put_count: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    serde_json::json!({
        "_aws": {
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "Tracklake",
                "Dimensions": [["Function"]],
                "Metrics": [
                    {"Name": "RecordsPut", "Unit": "Count"},
                    {"Name": "FailedPuts", "Unit": "Count"}
                ]
            }]
        },
        "Function": function,
        "RecordsPut": put,
        "FailedPuts": failed_put_count,
        "records_size": records_size,
        "failed_put_count": failed_put_count,
    })
}

#[cfg(test)]
mod tests;
