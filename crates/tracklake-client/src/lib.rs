//! A tracklake client for tokio applications. The article warned that
//! tracking calls block requests; here [`Client::track`] only puts the event
//! on a bounded in-memory queue and returns. A background task sends batches
//! (by count or by time), gzip-compressed, retrying with exponential backoff
//! and jitter on network errors, 5xx and 429 (honouring `Retry-After`). Each
//! event gets its `event_id` when it is tracked, so a retry never stores it
//! twice. Every event that is given up on is counted by reason.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tracklake_client::Error> {
//! use tracklake_client::{Client, ClientConfig, Event};
//! let client = Client::new(ClientConfig::new("http://127.0.0.1:7800"))?;
//! client.track(Event::new(42, "login").user_agent("Mozilla/5.0 …").ip_address("203.0.113.9"))?;
//! client.shutdown().await; // delivers what is queued
//! # Ok(()) }
//! ```

mod event;
mod sender;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use event::Event;

/// What to do when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// `track` refuses the new event (counted in [`Stats::dropped_queue_full`]).
    DropNewest,
    /// `track` refuses too, but [`Client::track_wait`] waits for room.
    Wait,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL of tracklake, such as `http://127.0.0.1:7800`.
    pub url: String,
    /// Events per request (tracklake accepts up to 500).
    pub batch_size: usize,
    /// Send a partial batch after this long.
    pub flush_interval: Duration,
    /// Events that may wait in memory.
    pub queue_capacity: usize,
    pub overflow: Overflow,
    /// Attempts per batch before its events are given up (counted).
    pub max_attempts: u32,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    pub gzip: bool,
    pub request_timeout: Duration,
    /// A `write` API key, when the server asks for one.
    pub api_key: Option<String>,
}

impl ClientConfig {
    pub fn new(url: impl Into<String>) -> Self {
        ClientConfig {
            url: url.into(),
            batch_size: 100,
            flush_interval: Duration::from_secs(1),
            queue_capacity: 10_000,
            overflow: Overflow::DropNewest,
            max_attempts: 10,
            max_backoff: Duration::from_secs(30),
            gzip: true,
            request_timeout: Duration::from_secs(10),
            api_key: None,
        }
    }
}

/// Counters; every event is in exactly one of `sent`, a `dropped_*`, or
/// still queued.
#[derive(Debug, Default)]
pub struct Stats {
    pub queued: AtomicU64,
    /// Stored (or already stored: duplicates) by the server.
    pub sent: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    /// Refused by the server's validation (logged with the reason).
    pub dropped_rejected: AtomicU64,
    /// Given up after `max_attempts` or a non-retryable answer.
    pub dropped_failed: AtomicU64,
    /// Requests sent again after a failure.
    pub retries: AtomicU64,
}

impl Stats {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full.load(Ordering::Relaxed)
            + self.dropped_rejected.load(Ordering::Relaxed)
            + self.dropped_failed.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the queue is full ({0} events); the event was dropped and counted")]
    QueueFull(usize),
    #[error("the client is shut down")]
    Closed,
}

pub(crate) enum Command {
    Track(Box<Event>),
    Flush(oneshot::Sender<()>),
}

/// The client; cheap to share behind an `Arc`.
pub struct Client {
    commands: mpsc::Sender<Command>,
    stats: Arc<Stats>,
    capacity: usize,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Client {
    /// Starts the background sender; call inside a tokio runtime.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()?;
        let capacity = config.queue_capacity.max(1);
        let (commands, queue) = mpsc::channel(capacity);
        let stats = Arc::new(Stats::default());
        let sender = sender::Sender::new(config, http, stats.clone());
        let task = tokio::spawn(sender.run(queue));
        Ok(Client {
            commands,
            stats,
            capacity,
            task: std::sync::Mutex::new(Some(task)),
        })
    }

    /// Queues an event and returns at once. A full queue drops the event
    /// (counted) and says so.
    pub fn track(&self, event: Event) -> Result<(), Error> {
        // Counted before it can be sent, so the gauge never runs below zero.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let refused = match self.commands.try_send(Command::Track(Box::new(event))) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                Error::QueueFull(self.capacity)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Error::Closed,
        };
        self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        Err(refused)
    }

    /// Queues an event, waiting for room when the queue is full (the
    /// [`Overflow::Wait`] policy).
    pub async fn track_wait(&self, event: Event) -> Result<(), Error> {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let sent = self.commands.send(Command::Track(Box::new(event))).await;
        if sent.is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Returns once everything tracked before it was sent or given up.
    pub async fn flush(&self) -> Result<(), Error> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Flush(done))
            .await
            .map_err(|_| Error::Closed)?;
        wait.await.map_err(|_| Error::Closed)
    }

    /// Delivers what is queued, then stops the background task.
    pub async fn shutdown(self) {
        let _ = self.flush().await;
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        drop(self);
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Still holding the task means shutdown() was not called.
        let unsent = self.stats.queued.load(Ordering::Relaxed);
        if unsent > 0 && self.task.lock().map(|t| t.is_some()).unwrap_or(false) {
            tracing::warn!(
                unsent,
                "tracklake client dropped without shutdown(); queued events may be lost"
            );
        }
    }
}
