//! The delivery loop: the article's DynamoDB Streams → Lambda → Firehose →
//! S3, in-process. It reads the table's change stream in batches, buffers
//! like Firehose (publish at `buffer_size` or `buffer_interval`, whichever
//! comes first), and publishes one file per touched partition.
//!
//! Exactly once: before publishing the changes `(from, to]` it durably
//! records the intent `to`; file names derive from `(from, to]`; after the
//! files are published it commits the checkpoint `to` and trims the change
//! log. A crash before the commit is finished at the next start by
//! publishing exactly `(from, to]` again — the same names, so files are
//! replaced, never doubled.

use std::collections::{BTreeMap, HashMap, HashSet};
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
use crate::encode::{self, Format};
use crate::row::Row;
use crate::{Error, Lake};

/// The change-stream consumer name of the lake, and of its intent.
pub const CONSUMER: &str = "lake";
const INTENT: &str = "lake.intent";

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

/// Publishes buffers, one at a time and in order.
struct Publisher {
    table: Arc<dyn ChangeLog>,
    lake: Arc<Lake>,
    batch_size: usize,
    stopping: watch::Receiver<bool>,
    status: Arc<Status>,
}

/// The publish under way.
type InFlight = Option<tokio::task::JoinHandle<Result<(), Error>>>;

impl Worker {
    async fn run(mut self) -> Result<(), Error> {
        let p = self.publisher.clone();
        let mut committed = p.table.checkpoint(CONSUMER).await?.unwrap_or(0);
        if let Some(intent) = p.table.checkpoint(INTENT).await?.filter(|i| *i > committed) {
            tracing::info!(
                from = committed,
                to = intent,
                "finishing an interrupted delivery"
            );
            let changes = p.read_through(committed, intent).await?;
            p.publish(committed, intent, Arc::new(changes)).await?;
            committed = intent;
        }
        p.status.delivered_seq.store(committed, Ordering::Relaxed);
        p.status.read_seq.store(committed, Ordering::Relaxed);
        let mut changes = p.table.watch_changes();
        let limit = self.config.buffer_size_mib * 1024 * 1024;
        let interval = Duration::from_secs(self.config.buffer_interval_secs);
        let (mut buffer, mut buffered_bytes, mut since) = (Vec::new(), 0u64, None::<Instant>);
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
                for change in batch {
                    buffered_bytes += change.json.len() as u64;
                    buffer.push(change);
                }
            }
            let full = buffered_bytes >= limit;
            let due = since.map(|s| s + interval);
            let overdue = due.is_some_and(|d| Instant::now() >= d);
            if read > handed && (full || overdue || (stopping && drained)) {
                // One range at a time: the next intent is saved only once
                // the previous range is committed.
                self.finish(&mut in_flight, buffer_oldest_ms).await?;
                let events = Arc::new(std::mem::take(&mut buffer));
                let (publisher, from, to) = (p.clone(), handed, read);
                in_flight = Some(tokio::spawn(async move {
                    publisher.publish_with_retry(from, to, events).await
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

impl Publisher {
    /// Publishes `(from, to]`, retrying until it is published, or the
    /// process stops (and the next start finishes it from the intent).
    async fn publish_with_retry(
        &self,
        from: u64,
        to: u64,
        events: Arc<Vec<Change>>,
    ) -> Result<(), Error> {
        let mut backoff = Duration::from_millis(100);
        while let Err(error) = self.publish(from, to, events.clone()).await {
            if *self.stopping.borrow() {
                return Err(error);
            }
            tracing::error!(%error, "delivery to the lake failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        Ok(())
    }

    /// Changes `(after, through]`.
    async fn read_through(&self, after: u64, through: u64) -> Result<Vec<Change>, Error> {
        let mut changes = Vec::new();
        let mut read = after;
        while read < through {
            let batch = self.table.read_changes(read, self.batch_size).await?;
            let Some(last) = batch.last() else { break };
            read = last.seq;
            changes.extend(batch.into_iter().filter(|c| c.seq <= through));
        }
        Ok(changes)
    }

    /// Publishes changes `(from, to]` (`changes`, less those of users being
    /// erased) and commits the checkpoint `to`.
    async fn publish(&self, from: u64, to: u64, changes: Arc<Vec<Change>>) -> Result<(), Error> {
        // An erasure waits for this guard before it cleans the lake: what
        // is published under it was filtered, or is cleaned after.
        let _publishing = self.lake.suppression.publishing().await;
        let erased = Arc::new(self.lake.suppression.erased(&changes));
        self.table.save_checkpoint(INTENT, to).await?;
        let published = match self.lake.sink() {
            Some(sink) => {
                let events = changes
                    .iter()
                    .filter(|c| !erased.contains(&c.seq))
                    .map(|c| self.lake.event_of(c))
                    .collect::<Result<Vec<_>, _>>()?;
                let oldest = events.iter().map(|e| e.received_at).min();
                let refused = sink
                    .send(events.iter().collect())
                    .await
                    .map_err(Error::Sink)?;
                self.status
                    .failed_puts
                    .fetch_add(refused, Ordering::Relaxed);
                Published {
                    failed_puts: refused,
                    oldest,
                    ..Published::default()
                }
            }
            None => self.write_files(from, to, &changes, erased.clone()).await?,
        };
        let records = changes.len() - erased.len() - published.failed_records;
        self.table.save_checkpoint(CONSUMER, to).await?;
        self.table.trim_changes(to).await?;
        self.lake.suppression.delivered_through(to);
        let s = &self.status;
        s.delivered_seq.store(to, Ordering::Relaxed);
        s.records.fetch_add(records as u64, Ordering::Relaxed);
        s.failed_records
            .fetch_add(published.failed_records as u64, Ordering::Relaxed);
        s.files.fetch_add(published.files as u64, Ordering::Relaxed);
        s.bytes.fetch_add(published.bytes, Ordering::Relaxed);
        // How long the oldest event of this delivery waited since it was
        // acknowledged: the worst ack → published delay of these files.
        let wait_ms = published
            .oldest
            .map_or(0, |t| (chrono::Utc::now() - t).num_milliseconds().max(0));
        // The article's metric filters read these two fields from JSON logs.
        tracing::info!(
            records_size = records,
            failed_put_count = published.failed_puts,
            wait_ms,
            files = published.files,
            bytes = published.bytes,
            first_seq = from + 1,
            last_seq = to,
            "delivered to the lake"
        );
        Ok(())
    }

    /// Writes one file per partition for changes `(from, to]`, less the
    /// `erased`.
    async fn write_files(
        &self,
        from: u64,
        to: u64,
        changes: &Arc<Vec<Change>>,
        erased: Arc<HashSet<u64>>,
    ) -> Result<Published, Error> {
        // Encoding is CPU work: off the async workers.
        let (lake, all) = (self.lake.clone(), changes.clone());
        let encoded = tokio::task::spawn_blocking(move || {
            let kept: Vec<&Change> = all.iter().filter(|c| !erased.contains(&c.seq)).collect();
            encode_partitions(&lake, &kept, from, to)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        let mut published = Published {
            files: encoded.files.len(),
            oldest: encoded.oldest,
            failed_records: encoded.failed,
            ..Published::default()
        };
        for (path, body) in encoded.files {
            published.bytes += body.len() as u64;
            published.failed_puts += self.put_with_retry(&path, body).await?;
        }
        Ok(published)
    }

    /// Retries a failed PUT with backoff until it succeeds; nothing is
    /// dropped. While stopping it gives up after a few tries and leaves the
    /// intent for the next start. Returns how many tries failed.
    async fn put_with_retry(
        &self,
        path: &object_store::path::Path,
        body: bytes::Bytes,
    ) -> Result<u64, Error> {
        let mut failures = 0u64;
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.lake.publish(path, body.clone()).await {
                Ok(()) => return Ok(failures),
                Err(error) => {
                    failures += 1;
                    self.status.failed_puts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, path = %path, failures, "publishing a lake file failed; retrying");
                    if *self.stopping.borrow() && failures >= 5 {
                        return Err(error);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// What publishing one range did.
#[derive(Default)]
struct Published {
    /// PUTs that failed and were retried (or records Firehose refused).
    failed_puts: u64,
    bytes: u64,
    files: usize,
    /// When the oldest event was received.
    oldest: Option<DateTime<Utc>>,
    /// Records that could not be read, written to `errors/`.
    failed_records: usize,
}

/// Files named after `(from, to]`, with their contents.
type Files = Vec<(object_store::path::Path, bytes::Bytes)>;

/// What encoding `(from, to]` made.
pub(crate) struct Encoded {
    pub files: Files,
    /// When the oldest event was received.
    pub oldest: Option<DateTime<Utc>>,
    /// Records that could not be read, written to `errors/` instead.
    pub failed: usize,
}

/// One file per partition touched by `(from, to]`, named after that range;
/// records that cannot be read go to `errors/` with the reason.
pub(crate) fn encode_partitions(
    lake: &Lake,
    changes: &[&Change],
    from: u64,
    to: u64,
) -> Result<Encoded, Error> {
    let mut failures = Vec::new();
    let oldest;
    let mut files: Files = match lake.format() {
        Format::Parquet => {
            let rows = decode_rows(lake, changes, &mut failures);
            oldest = rows.iter().map(|r| r.received_at).min();
            by_partition(lake, rows, |r| r.event_at)
                .into_iter()
                .map(|(partition, group)| {
                    let body = encode::parquet(&group)?;
                    Ok((lake.file_path(&partition, from + 1, to), body.into()))
                })
                .collect::<Result<_, Error>>()?
        }
        Format::Ndjson => {
            let mut events = Vec::with_capacity(changes.len());
            for change in changes {
                match lake.event_of(change) {
                    Ok(event) => events.push(event),
                    Err(error) => failures.push((*change, error.to_string())),
                }
            }
            oldest = events.iter().map(|e| e.received_at).min();
            by_partition(lake, events.iter().collect(), |e| e.event_at)
                .into_iter()
                .map(|(partition, group)| {
                    let body = encode::ndjson(&group, lake.gzip())?;
                    Ok((lake.file_path(&partition, from + 1, to), body.into()))
                })
                .collect::<Result<_, Error>>()?
        }
    };
    if !failures.is_empty() {
        tracing::error!(
            records = failures.len(),
            first_seq = failures[0].0.seq,
            reason = %failures[0].1,
            "records that cannot be read go to the lake's errors/"
        );
        files.push((
            lake.error_path(from + 1, to),
            error_lines(&failures)?.into(),
        ));
    }
    Ok(Encoded {
        files,
        oldest,
        failed: failures.len(),
    })
}

/// One JSON object per failed record: its sequence number, why it failed,
/// and the record as stored.
fn error_lines(failures: &[(&Change, String)]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for (change, reason) in failures {
        let line = serde_json::json!({
            "seq": change.seq,
            "error": reason,
            "record": String::from_utf8_lossy(&change.json),
        });
        serde_json::to_writer(&mut out, &line).map_err(Error::EncodeJson)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The lake rows of `changes`, privacy applied; a change that cannot be
/// read goes to `failures`. Decoding is half of the encoding work, so the
/// second half is decoded on a second thread.
fn decode_rows<'a>(
    lake: &Lake,
    changes: &[&'a Change],
    failures: &mut Vec<(&'a Change, String)>,
) -> Vec<Row<'a>> {
    let decode = |part: &[&'a Change]| {
        let (mut rows, mut failed) = (Vec::with_capacity(part.len()), Vec::new());
        for &change in part {
            match Row::decode(&change.json) {
                Ok(mut row) => {
                    row.ip_address = row.ip_address.map(|ip| lake.privacy().address(ip));
                    rows.push(row);
                }
                Err(error) => failed.push((change, error.to_string())),
            }
        }
        (rows, failed)
    };
    let (first, second) = changes.split_at(changes.len() / 2);
    let ((mut rows, failed), (more, more_failed)) = std::thread::scope(|scope| {
        let helper = scope.spawn(|| decode(second));
        let first = decode(first);
        // A panic in the helper is a bug: let it surface as one.
        (
            first,
            helper
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    rows.extend(more);
    failures.extend(failed);
    failures.extend(more_failed);
    rows
}

/// Groups items by the lake partition of their time, keeping their order.
fn by_partition<T>(
    lake: &Lake,
    items: Vec<T>,
    at: impl Fn(&T) -> DateTime<Utc>,
) -> BTreeMap<String, Vec<T>> {
    // Partitions are whole hours or days: name each hour once, not each item.
    let mut names: HashMap<i64, String> = HashMap::new();
    let mut partitions: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for item in items {
        let time = at(&item);
        let name = names
            .entry(time.timestamp().div_euclid(3600))
            .or_insert_with(|| lake.partition(time));
        match partitions.get_mut(name.as_str()) {
            Some(group) => group.push(item),
            None => {
                partitions.insert(name.clone(), vec![item]);
            }
        }
    }
    partitions
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
