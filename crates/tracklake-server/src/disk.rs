//! Free space on the filesystems tracklake writes to: the data directory
//! and a lake on local disk. Below `server.min_free_mib` on either, writes
//! are refused (503 with `Retry-After`, naming the path) before one could
//! meet a full disk halfway; once space returns they are taken again, with
//! no restart. Measured every half second, off the request path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tracklake_metrics::names;

use crate::ApiError;

/// How often free space is measured.
pub const EVERY: Duration = Duration::from_millis(500);

/// A filesystem under its watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Low {
    /// `data` or `lake`.
    pub what: &'static str,
    pub path: PathBuf,
    pub free_bytes: u64,
    pub min_free_bytes: u64,
}

impl std::fmt::Display for Low {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.what {
            "lake" => "the lake",
            _ => "the data directory",
        };
        write!(
            f,
            "{what} {} has {} MiB free, under server.min_free_mib ({}): events are refused until space is freed",
            self.path.display(),
            self.free_bytes >> 20,
            self.min_free_bytes >> 20
        )
    }
}

pub struct Disk {
    /// What each path is (`data`, `lake`) and the path.
    paths: Vec<(&'static str, PathBuf)>,
    min_free_bytes: u64,
    low: RwLock<Option<Low>>,
}

impl Disk {
    pub fn new(paths: Vec<(&'static str, PathBuf)>, min_free_mib: u64) -> Disk {
        Disk {
            paths,
            min_free_bytes: min_free_mib.saturating_mul(1 << 20),
            low: RwLock::new(None),
        }
    }

    /// Measures every path now and keeps what it found: the first under
    /// the watermark, if any. A path that cannot be measured (not made
    /// yet) does not count.
    pub fn check(&self) -> Option<Low> {
        let mut found = None;
        for (what, path) in &self.paths {
            let Some(free) = free_bytes(path) else {
                continue;
            };
            metrics::gauge!(names::DISK_FREE_BYTES, "path" => *what).set(free as f64);
            if free < self.min_free_bytes && found.is_none() {
                found = Some(Low {
                    what,
                    path: path.clone(),
                    free_bytes: free,
                    min_free_bytes: self.min_free_bytes,
                });
            }
        }
        metrics::gauge!(names::DISK_REFUSING).set(if found.is_some() { 1.0 } else { 0.0 });
        let mut low = self.low.write().unwrap_or_else(|e| e.into_inner());
        match (&*low, &found) {
            (None, Some(now)) => {
                tracing::error!(path = %now.path.display(), free_mib = now.free_bytes >> 20, "{now}")
            }
            (Some(was), None) => {
                tracing::warn!(path = %was.path.display(), "free space is back over server.min_free_mib: taking events again")
            }
            _ => {}
        }
        *low = found.clone();
        found
    }

    /// The filesystem under its watermark at the last measurement.
    pub fn low(&self) -> Option<Low> {
        self.low.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// 503 with `Retry-After` while a filesystem is under its watermark.
    pub fn admit(&self) -> Result<(), ApiError> {
        match self.low() {
            None => Ok(()),
            Some(low) => Err(ApiError::unavailable("disk_full", low.to_string(), 5)),
        }
    }

    /// Measures every [`EVERY`] on a blocking thread, for as long as the
    /// runtime runs.
    pub fn watch(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let disk = self.clone();
                if tokio::task::spawn_blocking(move || disk.check())
                    .await
                    .is_err()
                {
                    tracing::error!("measuring free disk space panicked");
                }
            }
        })
    }
}

/// Bytes an unprivileged writer may still use on `path`'s filesystem.
fn free_bytes(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn a_watermark_over_the_free_space_refuses_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        let roomy = Disk::new(vec![("data", dir.path().to_owned())], 1);
        assert_eq!(roomy.check(), None);
        assert!(roomy.admit().is_ok());

        let over = (free >> 20) + 1024;
        let full = Disk::new(
            vec![
                ("data", dir.path().join("not made yet")),
                ("lake", dir.path().to_owned()),
            ],
            over,
        );
        let low = full.check().expect("under the watermark");
        assert_eq!((low.what, low.path.as_path()), ("lake", dir.path()));
        let refused = full.admit().unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after, Some(5));
        assert!(
            refused.message.contains(&dir.path().display().to_string())
                && refused.message.contains("server.min_free_mib"),
            "{}",
            refused.message
        );
    }
}
