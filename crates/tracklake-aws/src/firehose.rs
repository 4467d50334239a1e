//! Putting JSON lines to Kinesis Firehose within its limits: calls of at
//! most 500 records and 4 MiB, only the refused entries sent again, with
//! backoff. The Lambda and tracklake's own delivery ([`FirehoseSink`]) both
//! put this way.

use std::time::Duration;

use aws_sdk_firehose::Client;
use aws_sdk_firehose::operation::put_record_batch::PutRecordBatchOutput;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use tracklake_event::Event;
use tracklake_table::BoxFuture;

/// Firehose's limits for one `PutRecordBatch` call and one record.
pub const MAX_CALL_RECORDS: usize = 500;
pub const MAX_CALL_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;

/// Puts lines to one delivery stream.
pub struct Putter {
    pub(crate) client: Client,
    pub(crate) stream: String,
    pub(crate) attempts: u32,
    pub(crate) first_backoff: Duration,
}

impl Putter {
    pub fn new(client: Client, stream: String) -> Self {
        Putter {
            client,
            stream,
            attempts: 5,
            first_backoff: Duration::from_millis(100),
        }
    }

    /// Puts `lines` (each at most [`MAX_RECORD_BYTES`]) in as many calls as
    /// the limits need. Returns the indices still refused after every try,
    /// and how many entries were refused along the way.
    pub async fn put(&self, lines: &[Vec<u8>]) -> (Vec<usize>, usize) {
        let mut failed = Vec::new();
        let mut refused = 0;
        for (offset, call) in calls(lines) {
            let (left, failures) = self.put_call(call).await;
            refused += failures;
            failed.extend(left.into_iter().map(|i| offset + i));
        }
        (failed, refused)
    }

    async fn put_call(&self, lines: &[Vec<u8>]) -> (Vec<usize>, usize) {
        let mut pending: Vec<usize> = (0..lines.len()).collect();
        let mut refused = 0;
        let mut backoff = self.first_backoff;
        for attempt in 1..=self.attempts {
            let records: Vec<Record> = pending
                .iter()
                .filter_map(|&i| {
                    Record::builder()
                        .data(Blob::new(lines[i].clone()))
                        .build()
                        .ok()
                })
                .collect();
            let sent = self
                .client
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
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        (pending, refused)
    }
}

/// Lines grouped into calls within Firehose's per-call limits, each with
/// the index of its first line.
pub(crate) fn calls(lines: &[Vec<u8>]) -> Vec<(usize, &[Vec<u8>])> {
    let mut calls = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        if i > start && (i - start == MAX_CALL_RECORDS || bytes + line.len() > MAX_CALL_BYTES) {
            calls.push((start, &lines[start..i]));
            (start, bytes) = (i, 0);
        }
        bytes += line.len();
    }
    if start < lines.len() {
        calls.push((start, &lines[start..]));
    }
    calls
}

/// Of the entries sent (`sent[i]` is the line of response entry `i`),
/// those Firehose refused.
pub(crate) fn refused_entries(output: &PutRecordBatchOutput, sent: &[usize]) -> Vec<usize> {
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

/// tracklake's delivery into a Firehose stream (`[aws] firehose_stream`)
/// instead of writing lake files itself: one JSON line per event, as the
/// Lambda sends. Refused lines are sent again until accepted (a long
/// outage fails the batch, which delivery then retries whole: at least
/// once, as Firehose itself is).
pub struct FirehoseSink {
    putter: Putter,
}

impl FirehoseSink {
    pub fn new(client: Client, stream: String) -> Self {
        FirehoseSink {
            putter: Putter {
                attempts: 20,
                ..Putter::new(client, stream)
            },
        }
    }
}

impl tracklake_delivery::RecordSink for FirehoseSink {
    fn send<'a>(&'a self, events: Vec<&'a Event>) -> BoxFuture<'a, Result<u64, String>> {
        Box::pin(async move {
            let mut lines = Vec::with_capacity(events.len());
            for event in events {
                let mut line = serde_json::to_vec(event).map_err(|e| e.to_string())?;
                line.push(b'\n');
                if line.len() > MAX_RECORD_BYTES {
                    return Err(format!(
                        "event {} is {} bytes as JSON, over Firehose's 1,000 KiB record limit",
                        event.event_id,
                        line.len()
                    ));
                }
                lines.push(line);
            }
            let (failed, refused) = self.putter.put(&lines).await;
            if failed.is_empty() {
                Ok(refused as u64)
            } else {
                Err(format!(
                    "Firehose stream {} refused {} of {} records after {} tries",
                    self.putter.stream,
                    failed.len(),
                    lines.len(),
                    self.putter.attempts
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests;
