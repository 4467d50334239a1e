//! The delivery loop: the article's DynamoDB Streams → Lambda → Firehose →
//! S3, in-process. It reads the table's change stream in batches, buffers
//! like Firehose (publish at `buffer_size` or `buffer_interval`, whichever
//! comes first), and publishes one file per touched partition.
//!
//! Exactly once: each buffer is published as one range `(from, to]`, one
//! range at a time and in order ([`crate::publish`] says how a range and
//! the stream position become one step).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tracklake_metrics::names;
use tracklake_table::{Change, ChangeLog};

use crate::CompactionConfig;
use crate::buffer::ParquetBuffer;
use crate::encode::Format;
use crate::publish::{Buffered, Publisher};
use crate::{Error, Lake};

/// The change-stream consumer name of the lake, and of its intent.
pub const CONSUMER: &str = "lake";
pub(crate) const INTENT: &str = "lake.intent";

/// The `[stream]` section of the config file: how the change stream is read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Changes read per batch (the article's stream trigger batch, 100).
    pub batch_size: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig { batch_size: 100 }
    }
}

/// The `[delivery]` section of the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Publish when this much is buffered, in MiB of the events' stored
    /// JSON (1–128, like Firehose).
    pub buffer_size_mib: u64,
    /// …or when the oldest buffered event waited this long, in seconds (0–900).
    pub buffer_interval_secs: u64,
    /// Ingest answers 503 while more events than this wait for the lake…
    pub max_lag_events: u64,
    /// …or the oldest of them has waited longer than this, in seconds.
    pub max_lag_secs: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            buffer_size_mib: 64,
            buffer_interval_secs: 10,
            max_lag_events: 5_000_000,
            max_lag_secs: 3600,
        }
    }
}

impl DeliveryConfig {
    pub(crate) fn check(&self) -> Result<(), Error> {
        let bad = |what: &str| Err(Error::Config(what.to_owned()));
        if !(1..=128).contains(&self.buffer_size_mib) {
            return bad("delivery.buffer_size_mib must be from 1 to 128");
        }
        if self.buffer_interval_secs > 900 {
            return bad("delivery.buffer_interval_secs must be from 0 to 900");
        }
        Ok(())
    }
}

/// Progress of the delivery, for health checks and metrics.
#[derive(Debug, Default)]
pub struct Status {
    /// The newest change committed to the lake.
    pub delivered_seq: AtomicU64,
    /// The newest change read from the stream (ahead of `delivered_seq`
    /// while a publish is under way and the next buffer fills).
    pub read_seq: AtomicU64,
    pub records: AtomicU64,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub failed_puts: AtomicU64,
    /// Records that could not be read, written to `errors/`.
    pub failed_records: AtomicU64,
    pub compactions: AtomicU64,
    pub compacted_files: AtomicU64,
    /// When the oldest event read but not yet published was received, in
    /// milliseconds since the epoch; 0 when nothing waits.
    pub oldest_waiting_ms: AtomicI64,
}

/// How far delivery is behind the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    pub events: u64,
    pub seconds: u64,
}

/// A running delivery task.
pub struct Delivery {
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<Result<(), Error>>>>,
    compactor: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    status: Arc<Status>,
    durable: watch::Receiver<u64>,
    config: DeliveryConfig,
}

impl Delivery {
    /// Starts delivery, and compaction when `compaction.enabled`.
    pub fn start(
        table: Arc<dyn ChangeLog>,
        lake: Arc<Lake>,
        stream: StreamConfig,
        config: DeliveryConfig,
        compaction: CompactionConfig,
    ) -> Result<Self, Error> {
        config.check()?;
        if !(1..=10_000).contains(&stream.batch_size) {
            return Err(Error::Config(
                "stream.batch_size must be from 1 to 10000".into(),
            ));
        }
        let (stop, stopping) = watch::channel(false);
        let status = Arc::new(Status::default());
        let compactor = compaction.enabled.then(|| {
            tokio::spawn(crate::compact::run(
                table.clone(),
                lake.clone(),
                compaction,
                status.clone(),
                stopping.clone(),
            ))
        });
        let durable = table.watch_changes();
        let worker = Worker {
            publisher: Arc::new(Publisher {
                table,
                lake,
                batch_size: stream.batch_size,
                stopping: stopping.clone(),
                status: status.clone(),
            }),
            config,
            stopping,
        };
        let config = worker.config.clone();
        let task = tokio::spawn(worker.run());
        Ok(Delivery {
            stop,
            task: std::sync::Mutex::new(Some(task)),
            compactor: std::sync::Mutex::new(compactor),
            status,
            durable,
            config,
        })
    }

    /// Events stored but not yet in the lake, and how long the oldest of
    /// them has waited (from when delivery read it).
    pub fn lag(&self) -> Lag {
        let events = self
            .durable
            .borrow()
            .saturating_sub(self.status.delivered_seq.load(Ordering::Relaxed));
        let oldest = self.status.oldest_waiting_ms.load(Ordering::Relaxed);
        let seconds = if events == 0 || oldest == 0 {
            0
        } else {
            (chrono::Utc::now().timestamp_millis() - oldest).max(0) as u64 / 1000
        };
        Lag { events, seconds }
    }

    /// Counters and gauges, for the status endpoint.
    pub fn status_json(&self) -> serde_json::Value {
        let s = &self.status;
        let lag = self.lag();
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "delivered_seq": n(&s.delivered_seq),
            "read_seq": n(&s.read_seq),
            "lag_events": lag.events,
            "lag_seconds": lag.seconds,
            "records": n(&s.records),
            "files": n(&s.files),
            "bytes": n(&s.bytes),
            "failed_puts": n(&s.failed_puts),
            "failed_records": n(&s.failed_records),
            "compactions": n(&s.compactions),
            "compacted_files": n(&s.compacted_files),
        })
    }

    /// `Err(reason)` when the lag is beyond `max_lag_events` or `max_lag_secs`.
    pub fn check_lag(&self) -> Result<(), String> {
        let lag = self.lag();
        if lag.events > self.config.max_lag_events || lag.seconds > self.config.max_lag_secs {
            Err(format!(
                "delivery to the lake is {} events and {} s behind (limits {} events, {} s); retry shortly",
                lag.events, lag.seconds, self.config.max_lag_events, self.config.max_lag_secs
            ))
        } else {
            Ok(())
        }
    }

    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    /// Publishes everything buffered and stored, then stops. Later calls
    /// return at once.
    pub async fn stop(&self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        let compactor = self.compactor.lock().ok().and_then(|mut t| t.take());
        if let Some(compactor) = compactor {
            let _ = compactor.await;
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        match task {
            Some(task) => task.await.map_err(|e| Error::Task(e.to_string()))?,
            None => Ok(()),
        }
    }
}

/// Reads the change stream into a buffer and hands each full buffer to a
/// publish task, then reads on while it is encoded and written: reading
/// (decoding the change log) and encoding each keep a core busy.
struct Worker {
    publisher: Arc<Publisher>,
    config: DeliveryConfig,
    stopping: watch::Receiver<bool>,
}

/// The publish under way.
type InFlight = Option<tokio::task::JoinHandle<Result<(), Error>>>;

/// What the worker holds of the range it is reading.
enum Filling {
    /// The changes themselves: NDJSON files and a record sink need events.
    Changes(Vec<Change>),
    /// A Parquet lake's files, encoded as the changes are read, and the
    /// erasure generation when the range began.
    Parquet { encoding: Encoding, generation: u64 },
}

/// A Parquet buffer, or the task adding the last batch read to it: the
/// next batch is read from the change log while the last one is encoded.
enum Encoding {
    Idle(ParquetBuffer),
    Busy(tokio::task::JoinHandle<Result<ParquetBuffer, Error>>),
    /// Encoding failed: the range is read again from the change log when
    /// it is published.
    Failed,
}

impl Encoding {
    /// The buffer, once the batch being added is in it; `None` once
    /// encoding failed.
    async fn settle(&mut self) -> Option<&mut ParquetBuffer> {
        if let Encoding::Busy(task) = self {
            match task.await.map_err(|e| Error::Task(e.to_string())) {
                Ok(Ok(buffer)) => *self = Encoding::Idle(buffer),
                Ok(Err(error)) | Err(error) => {
                    tracing::error!(%error, "encoding a delivery's files failed; its range will be read again");
                    *self = Encoding::Failed;
                }
            }
        }
        match self {
            Encoding::Idle(buffer) => Some(buffer),
            Encoding::Busy(_) | Encoding::Failed => None,
        }
    }
}

impl Filling {
    fn empty(lake: &Lake) -> Self {
        if lake.format() == Format::Parquet && lake.sink().is_none() {
            Filling::Parquet {
                encoding: Encoding::Idle(ParquetBuffer::default()),
                generation: lake.suppression.generation(),
            }
        } else {
            Filling::Changes(Vec::new())
        }
    }

    /// Takes in a batch read from the change stream. A Parquet buffer
    /// encodes it on the blocking pool and returns before it is done.
    async fn add(&mut self, lake: &Arc<Lake>, batch: Vec<Change>) {
        match self {
            Filling::Changes(changes) => changes.extend(batch),
            Filling::Parquet { encoding, .. } => {
                let Some(buffer) = encoding.settle().await else {
                    return;
                };
                let mut buffer = std::mem::take(buffer);
                let lake = lake.clone();
                *encoding = Encoding::Busy(tokio::task::spawn_blocking(move || {
                    buffer.append(&lake, &batch)?;
                    Ok(buffer)
                }));
            }
        }
    }

    /// What a publish of `(from, to]` takes: a Parquet buffer's files are
    /// finished here (off the async workers), while the next range fills.
    async fn into_buffered(self, lake: Arc<Lake>, from: u64, to: u64) -> Buffered {
        match self {
            Filling::Changes(changes) => Buffered::Changes(Arc::new(changes)),
            Filling::Parquet {
                mut encoding,
                generation,
            } => {
                let Some(buffer) = encoding.settle().await else {
                    return Buffered::Reread;
                };
                let buffer = std::mem::take(buffer);
                let finished = tokio::task::spawn_blocking(move || buffer.finish(&lake, from, to))
                    .await
                    .map_err(|e| Error::Task(e.to_string()))
                    .and_then(|finished| finished);
                match finished {
                    Ok(encoded) => Buffered::Encoded {
                        encoded,
                        generation,
                    },
                    Err(error) => {
                        tracing::error!(%error, from, to, "finishing a delivery's files failed; reading the range again");
                        Buffered::Reread
                    }
                }
            }
        }
    }
}

impl Worker {
    async fn run(mut self) -> Result<(), Error> {
        let p = self.publisher.clone();
        // The lake may be out of reach at start (S3 down): wait for it.
        let mut backoff = Duration::from_millis(100);
        let committed = loop {
            match p.resume().await {
                Ok(committed) => break committed,
                Err(error) if !*self.stopping.borrow() && !error.is_fatal() => {
                    tracing::error!(%error, "opening the lake for delivery failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(error) => return Err(error),
            }
        };
        p.status.delivered_seq.store(committed, Ordering::Relaxed);
        p.status.read_seq.store(committed, Ordering::Relaxed);
        let mut changes = p.table.watch_changes();
        let limit = self.config.buffer_size_mib * 1024 * 1024;
        let interval = Duration::from_secs(self.config.buffer_interval_secs);
        let mut buffer = Filling::empty(&p.lake);
        let (mut buffered_bytes, mut since) = (0u64, None::<Instant>);
        // When the oldest event in `buffer` was received, in ms.
        let mut buffer_oldest_ms = 0i64;
        // `read`: the newest change read; `handed`: the end of the range
        // last handed to a publish.
        let (mut read, mut handed) = (committed, committed);
        let mut in_flight: InFlight = None;
        loop {
            // Seen before reading: once stopping, a read that comes back
            // empty has seen every event acknowledged before the stop.
            let stopping = *self.stopping.borrow();
            let batch = p.table.read_changes(read, p.batch_size).await?;
            let drained = batch.is_empty();
            if let Some(last) = batch.last() {
                read = last.seq;
                p.status.read_seq.store(read, Ordering::Relaxed);
                metrics::counter!(names::STREAM_BATCHES).increment(1);
                metrics::histogram!(names::STREAM_RECORDS_SIZE).record(batch.len() as f64);
                if since.is_none() {
                    since = Some(Instant::now());
                    buffer_oldest_ms = received_ms(&batch[0]);
                    if in_flight.is_none() {
                        p.status
                            .oldest_waiting_ms
                            .store(buffer_oldest_ms, Ordering::Relaxed);
                    }
                }
                buffered_bytes += batch.iter().map(|c| c.json.len() as u64).sum::<u64>();
                buffer.add(&p.lake, batch).await;
            }
            let full = buffered_bytes >= limit;
            let due = since.map(|s| s + interval);
            let overdue = due.is_some_and(|d| Instant::now() >= d);
            if read > handed && (full || overdue || (stopping && drained)) {
                // One range at a time: the next intent is saved only once
                // the previous range is committed.
                self.finish(&mut in_flight, buffer_oldest_ms).await?;
                let filled = std::mem::replace(&mut buffer, Filling::empty(&p.lake));
                let (publisher, from, to) = (p.clone(), handed, read);
                in_flight = Some(tokio::spawn(async move {
                    let buffered = filled.into_buffered(publisher.lake.clone(), from, to).await;
                    publisher.publish_with_retry(from, to, buffered).await
                }));
                (handed, buffered_bytes, since, buffer_oldest_ms) = (read, 0, None, 0);
                continue;
            }
            if !drained {
                continue;
            }
            if stopping {
                return self.finish(&mut in_flight, 0).await;
            }
            let wake = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.stopping.changed() => {}
                done = published(&mut in_flight) => {
                    in_flight = None;
                    done?;
                    self.oldest_waiting(buffer_oldest_ms);
                }
            }
        }
    }

    /// Waits for the publish under way, if any; then the oldest event
    /// waiting is the buffer's.
    async fn finish(&self, in_flight: &mut InFlight, buffer_oldest_ms: i64) -> Result<(), Error> {
        if in_flight.is_some() {
            published(in_flight).await?;
            *in_flight = None;
        }
        self.oldest_waiting(buffer_oldest_ms);
        Ok(())
    }

    fn oldest_waiting(&self, ms: i64) {
        let status = &self.publisher.status;
        status.oldest_waiting_ms.store(ms, Ordering::Relaxed);
    }
}

/// The outcome of the publish under way; pending while there is none.
async fn published(in_flight: &mut InFlight) -> Result<(), Error> {
    match in_flight {
        Some(task) => task.await.map_err(|e| Error::Task(e.to_string()))?,
        None => std::future::pending().await,
    }
}

/// When a change's event was received, in ms since the epoch (now, if the
/// change cannot be read: publishing it reports why).
fn received_ms(change: &Change) -> i64 {
    #[derive(Deserialize)]
    struct Received {
        received_at: DateTime<Utc>,
    }
    let at = serde_json::from_slice::<Received>(&change.json)
        .map_or_else(|_| Utc::now(), |r| r.received_at);
    at.timestamp_millis().max(1)
}
