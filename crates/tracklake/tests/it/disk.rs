//! A full disk: the data directory and the lake each on a small tmpfs of its
//! own (mounting needs root). As either fills past `server.min_free_mib`,
//! events are refused with 503, `Retry-After` and the path; once space is
//! freed they are taken again with no restart, and every acknowledged event
//! is in the table and the lake exactly once. With the watermark off, a
//! write that meets the full disk stops the table: tracklake exits with
//! status 75 for its supervisor, and the next start recovers everything
//! acknowledged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{ARTICLE_CONFIG, Server, have, lake_holds_once, runs, stdout_of};

/// A tmpfs of `mib` MiB on a new directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        stdout_of(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                .arg(dir.path()),
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes free, as `df` sees them.
    fn free(&self) -> u64 {
        let text = stdout_of(
            Command::new("df")
                .args(["--output=avail", "-B1"])
                .arg(self.path()),
        );
        text.lines().nth(1).unwrap().trim().parse().unwrap()
    }

    /// Fills it until `left` bytes are free; the file to remove to undo.
    fn fill_to(&self, left: u64) -> PathBuf {
        let ballast = self.path().join("ballast");
        let take = self.free().saturating_sub(left);
        std::fs::write(&ballast, vec![7u8; take as usize]).unwrap();
        ballast
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Whether this run may mount a tmpfs (root, with `mount`); says what is
/// missing when not.
fn can_mount() -> bool {
    have(
        "root (to mount a small tmpfs)",
        is_root() && runs("mount", &["--version"]),
        "run the tests as root",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Posts event `n` of user `u1`: its status, body and `Retry-After`.
async fn post(server: &Server, n: usize) -> (u16, Value, Option<String>) {
    let event = json!({"user_id": "u1", "event_type": "login", "event_id": format!("e{n}")});
    let response = reqwest::Client::new()
        .post(format!("{}/v1/events", server.url))
        .json(&event)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap_or(Value::Null), retry)
}

/// Posts events from `*next` on until one is answered with `want`
/// (within 10 s), counting those acknowledged in `acked`.
async fn post_until(
    server: &Server,
    next: &mut usize,
    acked: &mut Vec<String>,
    want: u16,
) -> (Value, Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body, retry) = post(server, *next).await;
        if status == 201 {
            acked.push(format!("e{next}"));
        }
        *next += 1;
        if status == want {
            return (body, retry);
        }
        assert!(
            status == 201 || status == 503,
            "unexpected {status}: {body}"
        );
        assert!(
            Instant::now() < deadline,
            "still {status}, not {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn full_disks_refuse_then_resume_without_restart() {
    if !can_mount() {
        return;
    }
    let (data_fs, lake_fs) = (Tmpfs::mount(96), Tmpfs::mount(64));
    let data = data_fs.path().join("data");
    let lake = lake_fs.path().join("lake");
    let config = format!(
        "{ARTICLE_CONFIG}[server]\nmin_free_mib = 24\n[lake]\nurl = \"{}\"\n\
         [delivery]\nbuffer_interval_secs = 1\n",
        lake.display()
    );
    let server = Server::start(&data, &config);
    let (mut next, mut acked) = (0, Vec::new());
    post_until(&server, &mut next, &mut acked, 201).await;

    for (fs, path) in [(&lake_fs, &lake), (&data_fs, &data)] {
        let ballast = fs.fill_to(16 << 20);
        let (body, retry) = post_until(&server, &mut next, &mut acked, 503).await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(body["error"]["code"], "disk_full", "{body}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert_eq!(retry.as_deref(), Some("5"));
        // Segment's calls are refused the same way, Retry-After included.
        let segment = reqwest::Client::new()
            .post(format!("{}/v1/track", server.url))
            .json(&json!({"userId": "u1", "event": "login"}))
            .send()
            .await
            .unwrap();
        assert_eq!(segment.status().as_u16(), 503);
        assert_eq!(segment.headers()["retry-after"], "5");
        let (status, ready) = server.get("/readyz").await;
        assert_eq!(status, 503, "{ready}");
        let metrics = server.text("/metrics").await;
        assert!(
            metrics.contains("tracklake_disk_refusing_writes 1"),
            "{metrics}"
        );

        std::fs::remove_file(ballast).unwrap();
        post_until(&server, &mut next, &mut acked, 201).await;
        assert_eq!(server.get("/readyz").await.0, 200);
    }

    // Every acknowledged event once in the table, and once in the lake
    // when delivery has caught up; no refused one anywhere.
    let mut stored = server.all_ids("u1").await;
    stored.sort();
    acked.sort();
    assert_eq!(stored, acked);
    lake_holds_once(&lake, &acked, Duration::from_secs(30)).await;
    server.stop();
}

/// Posts events `from..from + 200` of `u1`; its status and body, counting
/// the acknowledged ones in `acked`.
async fn post_batch(server: &Server, from: usize, acked: &mut Vec<String>) -> (u16, Value) {
    let ids: Vec<String> = (from..from + 200).map(|n| format!("e{n}")).collect();
    let events: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({"user_id": "u1", "event_type": "login", "event_id": id,
                         "properties": {"pad": "x".repeat(400)}})
        })
        .collect();
    let (status, body) = server.post(&Value::Array(events)).await;
    if status == 200 {
        acked.extend(ids);
    }
    (status, body)
}

#[tokio::test]
async fn a_write_that_meets_a_full_disk_exits_75_and_the_next_start_recovers() {
    if !can_mount() {
        return;
    }
    let data_fs = Tmpfs::mount(64);
    let lake_dir = tempfile::tempdir().unwrap();
    let data = data_fs.path().join("data");
    let lake = lake_dir.path().join("lake");
    let config = format!(
        "{ARTICLE_CONFIG}[server]\nmin_free_mib = 0\n[lake]\nurl = \"{}\"\n\
         [delivery]\nbuffer_interval_secs = 1\n",
        lake.display()
    );
    let server = Server::start(&data, &config);
    let mut acked = Vec::new();
    assert_eq!(post_batch(&server, 0, &mut acked).await.0, 200);
    let ballast = data_fs.fill_to(1 << 20);

    // Nothing stops the writes before the disk does: one meets ENOSPC.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = 200;
    let body = loop {
        let (status, body) = post_batch(&server, next, &mut acked).await;
        match status {
            200 => assert!(Instant::now() < deadline, "the disk never filled"),
            503 => break body,
            other => panic!("unexpected {other}: {body}"),
        }
        next += 200;
    };
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("disk error"), "{body}");
    let status = server.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(75), "{status}");

    // Its supervisor starts it again once there is room.
    std::fs::remove_file(ballast).unwrap();
    let server = Server::start(&data, &config);
    assert_eq!(server.get("/healthz").await.0, 200);
    assert_eq!(server.get("/readyz").await.0, 200);
    // Every acknowledged event is there; the refused batch may be in part
    // (written but not acknowledged), so its client sends it again.
    let mut stored = server.all_ids("u1").await;
    stored.sort();
    stored.retain(|id| id[1..].parse::<usize>().unwrap() < next);
    acked.sort();
    assert_eq!(stored, acked);
    assert_eq!(post_batch(&server, next, &mut acked).await.0, 200);
    let mut stored = server.all_ids("u1").await;
    stored.sort();
    acked.sort();
    assert_eq!(stored, acked);
    lake_holds_once(&lake, &acked, Duration::from_secs(30)).await;
    server.stop();
}
