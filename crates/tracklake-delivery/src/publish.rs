//! Publishing one delivery: the changes `(from, to]` reach the lake and the
//! stream position moves to `to`, exactly once.
//!
//! - A Delta lake (Parquet): the files are put under unique names, then one
//!   commit adds them with the position `to` as the log's application
//!   transaction. A file put before a crash and never committed is in no
//!   version (vacuum deletes it); a commit whose answer was lost is found
//!   in the log before a retry, never made twice.
//! - Plain files (NDJSON): the intent `to` is saved in the table first and
//!   file names derive from `(from, to]`, so a redo after a crash rewrites
//!   the same names.
//! - A record sink (Firehose): the events are sent; the sink writes the lake.
//!
//! Then the table's checkpoint moves to `to` and the change log is trimmed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracklake_table::{Change, ChangeLog};

use crate::lake::{NewFile, Operation, Update};
use crate::partitions::{Encoded, encode_partitions};
use crate::pipeline::{CONSUMER, INTENT, Status};
use crate::{Error, Lake};

/// The table checkpoint holding the id of its change stream: the id its
/// Delta lake is made with, and checked against at every start.
pub const STREAM: &str = "lake.stream";

/// Opens a Delta lake for delivery from `table`: makes its log (converting
/// a lake of an earlier layout), and refuses a lake that holds another
/// data directory's deliveries, since the positions of two change streams
/// mean nothing to each other. Returns the stream position the log holds.
pub async fn claim_lake(table: &dyn ChangeLog, lake: &Lake) -> Result<u64, Error> {
    let committed = table.checkpoint(CONSUMER).await?.unwrap_or(0);
    let ours = table.checkpoint(STREAM).await?;
    let stream = ours.unwrap_or_else(|| uuid::Uuid::now_v7().as_u64_pair().1 | 1);
    let snapshot = lake.prepare(stream, committed).await?;
    let delivered = snapshot.delivered.unwrap_or(0);
    let taken = match (ours, snapshot.stream) {
        (Some(ours), Some(theirs)) => ours != theirs,
        // A table that never delivered, before a log that holds deliveries.
        (None, _) => committed == 0 && delivered > 0,
        // A log made before tables named their stream.
        (Some(_), None) => false,
    };
    if taken {
        return Err(Error::LakeTaken(lake.location.clone()));
    }
    if ours.is_none() {
        let named = snapshot.stream.unwrap_or(stream);
        table.save_checkpoint(STREAM, named).await?;
    }
    Ok(delivered)
}

/// Publishes buffers, one at a time and in order.
pub(crate) struct Publisher {
    pub table: Arc<dyn ChangeLog>,
    pub lake: Arc<Lake>,
    pub batch_size: usize,
    pub stopping: watch::Receiver<bool>,
    pub status: Arc<Status>,
}

/// What a publish takes for its range.
pub(crate) enum Buffered {
    /// The changes as read (NDJSON files, a record sink, a resumed range).
    Changes(Arc<Vec<Change>>),
    /// Parquet files encoded as the changes were read, and the erasure
    /// generation ([`crate::deletion::Suppression::generation`]) when
    /// reading began.
    Encoded { encoded: Encoded, generation: u64 },
    /// Nothing kept: read the range again from the change log.
    Reread,
}

/// What publishing one range did.
#[derive(Default)]
struct Published {
    /// Events published.
    records: usize,
    /// PUTs that failed and were retried (or records Firehose refused).
    failed_puts: u64,
    bytes: u64,
    files: usize,
    /// When the oldest event was received.
    oldest: Option<DateTime<Utc>>,
    /// Records that could not be read, written to `errors/`.
    failed_records: usize,
}

impl Publisher {
    /// The stream position the lake holds, for a start: a Delta lake's log
    /// says (converting a lake of an earlier layout first), the table's
    /// checkpoint moved up to it; otherwise an interrupted plain delivery
    /// is finished from its intent.
    pub async fn resume(&self) -> Result<u64, Error> {
        let committed = self.table.checkpoint(CONSUMER).await?.unwrap_or(0);
        if self.lake.is_delta() && self.lake.sink().is_none() {
            let in_log = claim_lake(&*self.table, &self.lake).await?;
            if in_log < committed {
                tracing::error!(
                    in_log,
                    committed,
                    lake = %self.lake.location,
                    "the lake's log holds less than the table says was delivered (was the lake replaced?); those events are no longer in the change log"
                );
                return Ok(committed);
            }
            if in_log > committed {
                self.table.save_checkpoint(CONSUMER, in_log).await?;
                self.table.trim_changes(in_log).await?;
            }
            return Ok(in_log);
        }
        let intent = self.table.checkpoint(INTENT).await?;
        if let Some(intent) = intent.filter(|i| *i > committed) {
            tracing::info!(
                from = committed,
                to = intent,
                "finishing an interrupted delivery"
            );
            let changes = self.read_through(committed, intent).await?;
            let changes = Buffered::Changes(Arc::new(changes));
            self.publish(committed, intent, &changes, false).await?;
            return Ok(intent);
        }
        Ok(committed)
    }

    /// Publishes `(from, to]`, retrying until it is published, or the
    /// process stops (and the next start finishes it).
    pub async fn publish_with_retry(
        &self,
        from: u64,
        to: u64,
        buffered: Buffered,
    ) -> Result<(), Error> {
        let mut backoff = Duration::from_millis(100);
        let mut retry = false;
        while let Err(error) = self.publish(from, to, &buffered, retry).await {
            if *self.stopping.borrow() {
                return Err(error);
            }
            tracing::error!(%error, "delivery to the lake failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
            retry = true;
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

    /// Publishes changes `(from, to]` (less those of users being erased)
    /// and moves the checkpoint to `to`. `retry`: an earlier try may have
    /// committed already.
    async fn publish(
        &self,
        from: u64,
        to: u64,
        buffered: &Buffered,
        retry: bool,
    ) -> Result<(), Error> {
        // An erasure waits for this guard before it cleans the lake: what
        // is published under it was filtered, or is cleaned after.
        let _publishing = self.lake.suppression.publishing().await;
        let published = match self.lake.sink() {
            Some(sink) => {
                self.table.save_checkpoint(INTENT, to).await?;
                let changes = self.changes(from, to, buffered).await?;
                let erased = self.lake.suppression.erased(&changes);
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
                    records: events.len(),
                    failed_puts: refused,
                    oldest,
                    ..Published::default()
                }
            }
            None if self.lake.is_delta() => {
                let encoded = self.encoded(from, to, buffered).await?;
                if retry && self.lake.snapshot().await?.delivered >= Some(to) {
                    tracing::info!(to, "the lake's log already holds this delivery");
                    Published {
                        records: encoded.records,
                        failed_records: encoded.failed,
                        ..Published::default()
                    }
                } else {
                    self.commit_files(to, encoded).await?
                }
            }
            None => {
                self.table.save_checkpoint(INTENT, to).await?;
                let encoded = self.encoded(from, to, buffered).await?;
                self.put_files(&encoded).await?
            }
        };
        let records = published.records;
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

    /// The changes of `(from, to]`: those buffered, or read again.
    async fn changes(
        &self,
        from: u64,
        to: u64,
        buffered: &Buffered,
    ) -> Result<Arc<Vec<Change>>, Error> {
        match buffered {
            Buffered::Changes(changes) => Ok(changes.clone()),
            _ => Ok(Arc::new(self.read_through(from, to).await?)),
        }
    }

    /// The files of `(from, to]`, less the users being erased. A buffer
    /// encoded while an erasure began may hold that user: it is encoded
    /// again from the change log, which the erasure already cleaned.
    async fn encoded(&self, from: u64, to: u64, buffered: &Buffered) -> Result<Encoded, Error> {
        if let Buffered::Encoded {
            encoded,
            generation,
        } = buffered
        {
            if *generation == self.lake.suppression.generation() {
                return Ok(encoded.clone());
            }
            tracing::info!(
                from,
                to,
                "a user is being erased: encoding this delivery again without them"
            );
        }
        let changes = self.changes(from, to, buffered).await?;
        let erased = self.lake.suppression.erased(&changes);
        // Encoding is CPU work: off the async workers.
        let lake = self.lake.clone();
        tokio::task::spawn_blocking(move || {
            let kept: Vec<&Change> = changes
                .iter()
                .filter(|c| !erased.contains(&c.seq))
                .collect();
            encode_partitions(&lake, &kept, from, to)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// Puts the files of `(from, to]` and commits them with the position
    /// `to` as one version of the Delta log.
    async fn commit_files(&self, to: u64, encoded: Encoded) -> Result<Published, Error> {
        // Vacuum waits until these files are committed.
        let _delivering = self.lake.delivering().await;
        let published = self.put_files(&encoded).await?;
        let add = encoded
            .files
            .into_iter()
            .map(|f| NewFile::parquet(f.path, f.day, &f.body))
            .collect::<Result<Vec<_>, _>>()?;
        self.lake
            .commit(Update {
                operation: Operation::Deliver,
                add,
                remove: Vec::new(),
                delivered_through: Some(to),
            })
            .await?;
        Ok(published)
    }

    /// Puts the encoded files and the `errors/` file of records that
    /// cannot be read.
    async fn put_files(&self, encoded: &Encoded) -> Result<Published, Error> {
        let mut published = Published {
            records: encoded.records,
            files: encoded.files.len(),
            oldest: encoded.oldest,
            failed_records: encoded.failed,
            ..Published::default()
        };
        let errors = encoded.errors.iter().map(|(p, b)| (p, b));
        let files = encoded.files.iter().map(|f| (&f.path, &f.body));
        for (path, body) in files.chain(errors) {
            published.bytes += body.len() as u64;
            published.failed_puts += self.put_with_retry(path, body.clone()).await?;
        }
        published.files += usize::from(encoded.errors.is_some());
        Ok(published)
    }

    /// Retries a failed PUT with backoff until it succeeds; nothing is
    /// dropped. While stopping it gives up after a few tries and leaves the
    /// range for the next start. Returns how many tries failed.
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
