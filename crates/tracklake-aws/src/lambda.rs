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
use aws_sdk_firehose::operation::put_record_batch::PutRecordBatchOutput;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;

/// Firehose's limits for one `PutRecordBatch` call and one record.
pub const MAX_CALL_RECORDS: usize = 500;
pub const MAX_CALL_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;

pub struct Forwarder {
    firehose: Client,
    stream: String,
    /// The Lambda function's name, the metrics' dimension.
    function: String,
    attempts: u32,
    first_backoff: Duration,
}

/// One stream record to send: its sequence number and its line.
struct Line {
    seq: Option<String>,
    bytes: Vec<u8>,
}

impl Forwarder {
    pub fn new(firehose: Client, stream: String, function: String) -> Self {
        Forwarder {
            firehose,
            stream,
            function,
            attempts: 5,
            first_backoff: Duration::from_millis(100),
        }
    }

    /// Tries per record, and the first wait between them (doubling).
    pub fn with_retries(mut self, attempts: u32, first_backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_backoff = first_backoff;
        self
    }

    /// Forwards one batch; the answer names the records that could not be
    /// delivered.
    pub async fn forward(&self, event: &Event) -> DynamoDbEventResponse {
        let mut failed: Vec<Option<String>> = Vec::new();
        let mut lines = Vec::new();
        for record in event.records.iter().filter(|r| r.event_name == "INSERT") {
            let seq = record.change.sequence_number.clone();
            match line_of(&record.change.new_image) {
                Ok(bytes) if bytes.len() <= MAX_RECORD_BYTES => lines.push(Line { seq, bytes }),
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
        let mut failed_puts = 0;
        let mut put = 0;
        for call in calls(&lines) {
            let (left, failures) = self.put(call).await;
            failed_puts += failures;
            put += call.len() - left.len();
            failed.extend(left);
        }
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

    /// Sends one call's lines, resending refused entries with backoff.
    /// Returns the sequence numbers still undelivered and how many entries
    /// were refused along the way.
    async fn put(&self, lines: &[Line]) -> (Vec<Option<String>>, usize) {
        let mut pending: Vec<usize> = (0..lines.len()).collect();
        let mut refused = 0;
        let mut backoff = self.first_backoff;
        for attempt in 1..=self.attempts {
            let records: Vec<Record> = pending
                .iter()
                .filter_map(|&i| {
                    Record::builder()
                        .data(Blob::new(lines[i].bytes.clone()))
                        .build()
                        .ok()
                })
                .collect();
            let sent = self
                .firehose
                .put_record_batch()
                .delivery_stream_name(&self.stream)
                .set_records(Some(records))
                .send()
                .await;
            match sent {
                Ok(output) => {
                    let again = refused_entries(&output, &pending);
                    refused += again.len();
                    pending = again;
                }
                Err(error) => {
                    refused += pending.len();
                    tracing::warn!(error = %aws_sdk_firehose::error::DisplayErrorContext(&error), attempt, "PutRecordBatch failed");
                }
            }
            if pending.is_empty() {
                break;
            }
            if attempt < self.attempts {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        (
            pending.iter().map(|&i| lines[i].seq.clone()).collect(),
            refused,
        )
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

/// Lines grouped into calls within Firehose's per-call limits.
fn calls(lines: &[Line]) -> Vec<&[Line]> {
    let mut calls = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        if i > start && (i - start == MAX_CALL_RECORDS || bytes + line.bytes.len() > MAX_CALL_BYTES)
        {
            calls.push(&lines[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += line.bytes.len();
    }
    if start < lines.len() {
        calls.push(&lines[start..]);
    }
    calls
}

/// Of the entries sent (`sent[i]` is the line of response entry `i`),
/// those Firehose refused.
fn refused_entries(output: &PutRecordBatchOutput, sent: &[usize]) -> Vec<usize> {
    if output.failed_put_count() == 0 {
        return Vec::new();
    }
    output
        .request_responses()
        .iter()
        .zip(sent)
        .filter(|(entry, _)| entry.error_code().is_some())
        .map(|(_, &i)| i)
        .collect()
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
