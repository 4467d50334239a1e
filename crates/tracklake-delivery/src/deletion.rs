//! Per-user deletion: a user's events leave the table, the change log,
//! the delivery buffers and every lake file.
//!
//! A job runs in three steps, each safe to redo after a crash:
//! 1. the table drops the user's rows and undelivered changes (one durable
//!    batch), which gives `through`, the newest change it covered;
//! 2. delivery is told to leave out the user's changes up to `through` it
//!    still buffers, and the job waits for any publish already under way;
//! 3. every lake file holding the user's rows is rewritten without them. In
//!    a Delta lake (Parquet) one commit replaces them all: readers see the
//!    user gone from every file at once, and the old files are deleted by
//!    vacuum `lake.retention_secs` later. In a plain (NDJSON) lake each file
//!    is rewritten as the next version of its name and the old one deleted.
//!
//! Nothing waits for the buffer interval, so a job takes one pass over the
//! lake: reading the `user_id` column of every file whose statistics do
//! not rule the user out, rewriting those that hold the user. Jobs are
//! kept in `<data-dir>/deletions/<id>.json`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracklake_table::{Change, Table};

use crate::Error;
use crate::lake::{
    FileName, Lake, NewFile, Operation, Update, partition_of, range_of, split_covered,
};
use crate::rewrite::{filter_ndjson, filter_parquet, rows_of_user};
use crate::row::Row;

/// Where a deletion job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    DeletingFromTable,
    CleaningLake,
    Done,
}

/// One request to delete a user's events, as `GET /v1/deletions/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletionJob {
    pub id: String,
    pub user_id: String,
    pub state: JobState,
    pub requested_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Events removed from the table.
    pub table_events: u64,
    /// Lake files looked at / to look at, and rewritten.
    pub lake_files_scanned: u64,
    pub lake_files_total: u64,
    pub lake_files_rewritten: u64,
    /// Rows removed from lake files.
    pub lake_events: u64,
    /// The last failure; the job retries with backoff until it succeeds.
    pub last_error: Option<String>,
}

/// Users being deleted, for delivery to leave out of what it publishes.
#[derive(Default)]
pub struct Suppression {
    /// user key → the newest change of theirs that must not be published
    users: Mutex<HashMap<String, u64>>,
    /// Held while delivery publishes a batch.
    publishing: tokio::sync::Mutex<()>,
    /// Erasures begun so far: a buffer encoded while this moved on may
    /// hold a user it had to leave out.
    generation: std::sync::atomic::AtomicU64,
}

impl Suppression {
    pub(crate) async fn publishing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.publishing.lock().await
    }

    /// The sequence numbers among `changes` that must not be published.
    pub(crate) fn erased(&self, changes: &[Change]) -> HashSet<u64> {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if users.is_empty() {
            return HashSet::new();
        }
        changes
            .iter()
            .filter(|c| {
                // A change that cannot be read is left to publishing,
                // which reports it.
                Row::decode(&c.json).is_ok_and(|row| {
                    users
                        .get(row.user_id.as_ref())
                        .is_some_and(|through| c.seq <= *through)
                })
            })
            .map(|c| c.seq)
            .collect()
    }

    /// How many erasures have begun.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Delivery committed everything up to `seq`: entries it covers are done.
    pub(crate) fn delivered_through(&self, seq: u64) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.retain(|_, through| *through > seq);
    }

    fn add(&self, user: &str, through: u64) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let entry = users.entry(user.to_owned()).or_default();
        *entry = (*entry).max(through);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The deletion jobs of one data directory and the task that runs them.
pub struct Deletions {
    dir: PathBuf,
    jobs: Arc<Mutex<BTreeMap<String, DeletionJob>>>,
    queue: mpsc::UnboundedSender<String>,
    worker: tokio::task::JoinHandle<()>,
}

impl Deletions {
    /// Loads the jobs in `<data_dir>/deletions`, resumes unfinished ones,
    /// and runs new ones as they come; `after_each` runs when a job is done
    /// (to drop cached answers that may hold the user).
    pub fn start(
        data_dir: &std::path::Path,
        table: Arc<dyn Table>,
        lake: Arc<Lake>,
        after_each: Box<dyn Fn() + Send + Sync>,
    ) -> Result<Deletions, Error> {
        let dir = data_dir.join("deletions");
        std::fs::create_dir_all(&dir).map_err(|source| Error::CreateLake {
            path: dir.display().to_string(),
            source,
        })?;
        let mut jobs = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::Task(e.to_string()))? {
            let path = entry.map_err(|e| Error::Task(e.to_string()))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let bytes = std::fs::read(&path).map_err(|e| Error::Task(e.to_string()))?;
                let job: DeletionJob = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Task(format!("reading the deletion job {}: {e}", path.display()))
                })?;
                jobs.insert(job.id.clone(), job);
            }
        }
        let (queue, queued) = mpsc::unbounded_channel();
        // Oldest first: ids are UUIDv7, which sort by creation time.
        for job in jobs.values().filter(|j| j.state != JobState::Done) {
            let _ = queue.send(job.id.clone());
        }
        let jobs = Arc::new(Mutex::new(jobs));
        let runner = Runner {
            dir: dir.clone(),
            jobs: jobs.clone(),
            table,
            lake,
            after_each,
        };
        let worker = tokio::spawn(runner.run(queued));
        Ok(Deletions {
            dir,
            jobs,
            queue,
            worker,
        })
    }

    /// Queues the deletion of every event of `user_id` (its text form) and
    /// returns the job. The job is on disk before this returns.
    pub fn request(&self, user_id: &str) -> Result<DeletionJob, Error> {
        let job = DeletionJob {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.to_owned(),
            state: JobState::Queued,
            requested_at: Utc::now(),
            finished_at: None,
            table_events: 0,
            lake_files_scanned: 0,
            lake_files_total: 0,
            lake_files_rewritten: 0,
            lake_events: 0,
            last_error: None,
        };
        save(&self.dir, &job)?;
        lock(&self.jobs).insert(job.id.clone(), job.clone());
        self.queue
            .send(job.id.clone())
            .map_err(|_| Error::Task("the deletion task has stopped".into()))?;
        Ok(job)
    }

    pub fn get(&self, id: &str) -> Option<DeletionJob> {
        lock(&self.jobs).get(id).cloned()
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<DeletionJob> {
        lock(&self.jobs).values().cloned().collect()
    }

    /// Stops the task; an unfinished job resumes at the next start.
    pub fn stop(&self) {
        self.worker.abort();
    }
}

fn lock(
    jobs: &Mutex<BTreeMap<String, DeletionJob>>,
) -> std::sync::MutexGuard<'_, BTreeMap<String, DeletionJob>> {
    jobs.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes a job's file atomically.
fn save(dir: &std::path::Path, job: &DeletionJob) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::Task(format!("saving deletion job {}: {e}", job.id));
    let path = dir.join(format!("{}.json", job.id));
    let staged = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(job).map_err(Error::EncodeJson)?;
    let mut file = std::fs::File::create(&staged).map_err(io)?;
    std::io::Write::write_all(&mut file, &bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&staged, &path).map_err(io)
}

struct Runner {
    dir: PathBuf,
    jobs: Arc<Mutex<BTreeMap<String, DeletionJob>>>,
    table: Arc<dyn Table>,
    lake: Arc<Lake>,
    after_each: Box<dyn Fn() + Send + Sync>,
}

impl Runner {
    async fn run(self, mut queued: mpsc::UnboundedReceiver<String>) {
        while let Some(id) = queued.recv().await {
            let mut backoff = Duration::from_millis(200);
            loop {
                let Some(job) = lock(&self.jobs).get(&id).cloned() else {
                    break;
                };
                match self.execute(job).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::error!(job = %id, %error, "deletion failed; retrying");
                        self.update(&id, |j| j.last_error = Some(error.to_string()));
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                }
            }
            (self.after_each)();
        }
    }

    /// Changes a job in memory and on disk.
    fn update(&self, id: &str, change: impl FnOnce(&mut DeletionJob)) -> DeletionJob {
        let job = {
            let mut jobs = lock(&self.jobs);
            let Some(job) = jobs.get_mut(id) else {
                unreachable!("deletion jobs are never removed")
            };
            change(job);
            job.clone()
        };
        if let Err(error) = save(&self.dir, &job) {
            tracing::warn!(job = id, %error, "could not save the deletion job's progress");
        }
        job
    }

    async fn execute(&self, job: DeletionJob) -> Result<(), Error> {
        let (id, user) = (job.id.as_str(), job.user_id.as_str());
        tracing::info!(job = id, "deleting a user's events");
        self.update(id, |j| j.state = JobState::DeletingFromTable);
        let deleted = self.table.delete_user(user).await?;
        self.lake.suppression.add(user, deleted.through_seq);
        // A publish that began before the line above may hold the user's
        // events; once it is over, anything published later leaves them out.
        drop(self.lake.suppression.publishing().await);
        self.update(id, |j| {
            j.table_events += deleted.events;
            j.state = JobState::CleaningLake;
        });
        let _rewriting = self.lake.rewriting().await;
        if self.lake.is_delta() {
            self.clean_delta(id, user).await?;
        } else {
            self.clean_plain(id, user).await?;
        }
        let job = self.update(id, |j| {
            j.state = JobState::Done;
            j.finished_at = Some(Utc::now());
            j.last_error = None;
        });
        tracing::info!(
            job = id,
            table_events = job.table_events,
            lake_files_rewritten = job.lake_files_rewritten,
            lake_events = job.lake_events,
            "deletion done"
        );
        Ok(())
    }

    /// Rewrites the files of a Delta lake that hold `user`, and commits the
    /// new files in place of the old in one version.
    async fn clean_delta(&self, id: &str, user: &str) -> Result<(), Error> {
        let files = self.lake.snapshot().await?.files;
        self.update(id, |j| {
            j.lake_files_total = files.len() as u64;
            j.lake_files_scanned = 0;
        });
        let mut update = Update {
            operation: Operation::Erase,
            add: Vec::new(),
            remove: Vec::new(),
            delivered_through: None,
        };
        for file in files {
            let outside = file
                .stats
                .as_ref()
                .and_then(|s| s.text_range("user_id"))
                .is_some_and(|(min, max)| user < min || user > max);
            let erased = match outside {
                true => None,
                false => self.without_user(&file.path, user).await?,
            };
            let held = erased.as_ref().map_or(0, |e| e.0);
            if let Some((_, rows, body)) = erased {
                if rows > 0 {
                    let (first, last) = range_of(&file.path).unwrap_or((0, 0));
                    let partition = partition_of(&file.path).unwrap_or_default().to_owned();
                    let path = self.lake.file_path(&partition, first, last);
                    let body = bytes::Bytes::from(body);
                    update
                        .add
                        .push(NewFile::parquet(path.clone(), file.day, &body)?);
                    self.lake.publish(&path, body).await?;
                }
                update.remove.push(file);
            }
            self.update(id, |j| {
                j.lake_files_scanned += 1;
                if held > 0 {
                    j.lake_files_rewritten += 1;
                    j.lake_events += held as u64;
                }
            });
        }
        if !update.remove.is_empty() {
            self.lake.commit(update).await?;
        }
        Ok(())
    }

    /// Rewrites the files of a plain lake that hold `user`, one by one.
    async fn clean_plain(&self, id: &str, user: &str) -> Result<(), Error> {
        // Superseded files (an old version, a compaction's sources) are
        // leftovers of a swap cut short: delete them rather than clean them.
        let (files, superseded) = split_covered(self.lake.files().await?);
        for file in superseded {
            self.lake.delete(&file.location).await?;
        }
        self.update(id, |j| {
            j.lake_files_total = files.len() as u64;
            j.lake_files_scanned = 0;
        });
        for file in files {
            let erased = self.clean_file(&file.location, user).await?;
            self.update(id, |j| {
                j.lake_files_scanned += 1;
                if erased > 0 {
                    j.lake_files_rewritten += 1;
                    j.lake_events += erased as u64;
                }
            });
        }
        Ok(())
    }

    /// `path` without `user`'s rows: how many it held, how many are left
    /// and the rewritten file; `None` when it holds none.
    async fn without_user(
        &self,
        path: &object_store::path::Path,
        user: &str,
    ) -> Result<Option<(usize, usize, Vec<u8>)>, Error> {
        let data = self.lake.read(path).await?;
        let (p, owner) = (path.as_ref().to_owned(), user.to_owned());
        tokio::task::spawn_blocking(move || -> Result<_, Error> {
            let held = rows_of_user(&p, data.clone(), &owner)?;
            if held == 0 {
                return Ok(None);
            }
            let keep = |row_user: &str, _: &str| row_user != owner;
            let (body, rows) = if p.ends_with(".parquet") {
                filter_parquet(vec![data], keep)?
            } else {
                filter_ndjson(vec![data], p.ends_with(".gz"), keep)?
            };
            Ok(Some((held, rows, body)))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// Rewrites one plain file without `user`'s rows as the next version of
    /// its name; returns how many it held.
    async fn clean_file(
        &self,
        path: &object_store::path::Path,
        user: &str,
    ) -> Result<usize, Error> {
        let Some(name) = FileName::parse(path) else {
            return Ok(0); // not a file delivery wrote
        };
        let Some((held, _, body)) = self.without_user(path, user).await? else {
            return Ok(0);
        };
        let next = FileName {
            version: name.version + 1,
            ..name
        };
        self.lake.publish(&next.path(), body.into()).await?;
        self.lake.delete(path).await?;
        Ok(held)
    }
}

#[cfg(test)]
mod tests;
