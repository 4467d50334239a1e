//! A slow disk: every fsync of the table made 250 ms longer (the table's
//! test hook `TRACKLAKE_TEST_FSYNC_DELAY_MS`), under 32 concurrent senders.
//! Answers slow down by about that much and no more, since concurrent
//! requests share each fsync; the server's memory stays bounded; health
//! checks answer at once; nothing times out; and every acknowledged event is
//! stored and delivered once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::harness::{ARTICLE_CONFIG, Server, lake_holds_once};

const DELAY_MS: u64 = 250;
const SENDERS: usize = 32;
const BATCH: usize = 100;

/// Peak resident memory of a process, in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib / 1024
}

#[tokio::test]
async fn a_slow_disk_slows_answers_without_a_cascade() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let config = format!(
        "{ARTICLE_CONFIG}[lake]\nurl = \"{}\"\n[delivery]\nbuffer_interval_secs = 1\n",
        lake.display()
    );
    let server = Arc::new(Server::start_with_env(
        &dir.path().join("data"),
        &config,
        &[("TRACKLAKE_TEST_FSYNC_DELAY_MS", &DELAY_MS.to_string())],
    ));
    // A client that gives up after 10 s, as a cautious app would.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(15);
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let (server, client) = (server.clone(), client.clone());
        let (acked, latencies) = (acked.clone(), latencies.clone());
        senders.push(tokio::spawn(async move {
            let mut round = 0;
            while Instant::now() < until {
                let ids: Vec<String> = (0..BATCH)
                    .map(|i| format!("s{sender}-{round}-{i}"))
                    .collect();
                let batch: Vec<Value> = ids
                    .iter()
                    .map(|id| json!({"user_id": sender, "event_type": "login", "event_id": id}))
                    .collect();
                let started = Instant::now();
                let response = client
                    .post(format!("{}/v1/events", server.url))
                    .json(&batch)
                    .send()
                    .await
                    .expect("an answer within 10 s");
                let status = response.status();
                let body = response.text().await.unwrap();
                assert_eq!(status, 200, "{body}");
                latencies.lock().await.push(started.elapsed());
                acked.lock().await.extend(ids);
                round += 1;
            }
        }));
    }
    // Health checks go on answering while writes wait for the disk.
    let mut slowest_health = Duration::ZERO;
    while Instant::now() < until {
        let started = Instant::now();
        let (status, body) = server.get("/readyz").await;
        assert_eq!(status, 200, "{body}");
        slowest_health = slowest_health.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for sender in senders {
        sender.await.unwrap();
    }

    let mut latencies = std::mem::take(&mut *latencies.lock().await);
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let (p50, max) = (at(0.5), at(1.0));
    let peak = peak_rss_mib(server.pid());
    eprintln!(
        "slow disk: {} requests, p50 {p50:?}, max {max:?}, slowest /readyz {slowest_health:?}, peak RSS {peak} MiB",
        latencies.len()
    );
    // The delay is felt (the hook works) …
    assert!(p50 >= Duration::from_millis(DELAY_MS), "p50 {p50:?}");
    // … shared by the requests waiting together, not queued one by one
    // (32 senders one fsync each would take 8 s) …
    assert!(max < Duration::from_secs(4), "max {max:?}");
    assert!(
        slowest_health < Duration::from_secs(1),
        "{slowest_health:?}"
    );
    // … and what waits is bounded (the queue, the connections).
    assert!(peak < 600, "peak RSS {peak} MiB");

    let acked = std::mem::take(&mut *acked.lock().await);
    lake_holds_once(&lake, &acked, Duration::from_secs(60)).await;
    Arc::into_inner(server).unwrap().stop();
}
