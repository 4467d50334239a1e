//! The background task: batches by count or time, gzip, retries.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::{ClientConfig, Command, Event, Stats};

pub(crate) struct Sender {
    config: ClientConfig,
    http: reqwest::Client,
    stats: Arc<Stats>,
    endpoint: String,
}

impl Sender {
    pub fn new(config: ClientConfig, http: reqwest::Client, stats: Arc<Stats>) -> Self {
        let endpoint = format!("{}/v1/events", config.url.trim_end_matches('/'));
        Sender {
            config,
            http,
            stats,
            endpoint,
        }
    }

    pub async fn run(self, mut queue: mpsc::Receiver<Command>) {
        let mut batch: Vec<Event> = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            let command = match deadline {
                Some(at) => tokio::select! {
                    c = queue.recv() => c,
                    _ = tokio::time::sleep_until(at) => {
                        self.send(std::mem::take(&mut batch)).await;
                        deadline = None;
                        continue;
                    }
                },
                None => queue.recv().await,
            };
            match command {
                Some(Command::Track(event)) => {
                    batch.push(*event);
                    deadline.get_or_insert_with(|| Instant::now() + self.config.flush_interval);
                    if batch.len() >= self.config.batch_size.clamp(1, 500) {
                        self.send(std::mem::take(&mut batch)).await;
                        deadline = None;
                    }
                }
                Some(Command::Flush(done)) => {
                    self.send(std::mem::take(&mut batch)).await;
                    deadline = None;
                    let _ = done.send(());
                }
                None => {
                    self.send(batch).await;
                    return;
                }
            }
        }
    }

    /// Sends one batch until it is answered or given up; every event ends
    /// up counted as sent or dropped.
    async fn send(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let n = events.len() as u64;
        let body = match self.encode(&events) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "encoding a batch failed");
                return self.resolve(n, &self.stats.dropped_failed);
            }
        };
        let mut backoff = Duration::from_millis(100);
        for attempt in 1.. {
            let mut request = self
                .http
                .post(&self.endpoint)
                .header("content-type", "application/json")
                .body(body.clone());
            if self.config.gzip {
                request = request.header("content-encoding", "gzip");
            }
            if let Some(key) = &self.config.api_key {
                request = request.bearer_auth(key);
            }
            let wait = match request.send().await {
                Ok(r) if r.status() == StatusCode::OK => {
                    let answer: Value = r.json().await.unwrap_or(Value::Null);
                    return self.accept(n, &answer);
                }
                Ok(r)
                    if r.status() == StatusCode::TOO_MANY_REQUESTS
                        || r.status().is_server_error() =>
                {
                    let retry_after = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    tracing::warn!(status = %r.status(), attempt, "tracklake is busy; retrying");
                    retry_after.unwrap_or(backoff).max(backoff)
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    tracing::error!(%status, body = %text, events = n, "tracklake refused a batch; dropping it");
                    return self.resolve(n, &self.stats.dropped_failed);
                }
                Err(error) => {
                    tracing::warn!(%error, attempt, "cannot reach tracklake; retrying");
                    backoff
                }
            };
            if attempt >= self.config.max_attempts {
                tracing::error!(events = n, attempt, "giving up on a batch");
                return self.resolve(n, &self.stats.dropped_failed);
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let jitter =
                Duration::from_millis(rand::random_range(0..=backoff.as_millis() as u64 / 2));
            tokio::time::sleep(wait + jitter).await;
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    fn encode(&self, events: &[Event]) -> std::io::Result<bytes::Bytes> {
        let array: Vec<&serde_json::Map<String, Value>> = events.iter().map(|e| &e.body).collect();
        let json = serde_json::to_vec(&array)?;
        if !self.config.gzip {
            return Ok(json.into());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&json)?;
        Ok(gz.finish()?.into())
    }

    /// Counts the server's per-item answer.
    fn accept(&self, n: u64, answer: &Value) {
        let count = |k: &str| answer[k].as_u64().unwrap_or(0);
        let rejected = count("rejected");
        self.stats
            .sent
            .fetch_add(count("stored") + count("duplicate"), Ordering::Relaxed);
        self.stats
            .dropped_rejected
            .fetch_add(rejected, Ordering::Relaxed);
        if rejected > 0 {
            let first = answer["results"]
                .as_array()
                .and_then(|r| r.iter().find(|x| x["status"] == "rejected"))
                .map(|x| x["error"].to_string())
                .unwrap_or_default();
            tracing::warn!(rejected, first = %first, "tracklake rejected events");
        }
        self.stats.queued.fetch_sub(n, Ordering::Relaxed);
    }

    fn resolve(&self, n: u64, counter: &AtomicU64) {
        counter.fetch_add(n, Ordering::Relaxed);
        self.stats.queued.fetch_sub(n, Ordering::Relaxed);
    }
}
