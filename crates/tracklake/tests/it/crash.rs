//! Durable before acknowledged: restarts and SIGKILL lose nothing that was
//! acknowledged.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::harness::{ARTICLE_CONFIG, BIN, FAST_LAKE_CONFIG, Server, lake_ids};

#[tokio::test]
async fn graceful_restart_keeps_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, ARTICLE_CONFIG);
    let events: Vec<_> = (0..300)
        .map(|i| json!({"user_id": 1, "event_type": "login", "event_id": format!("e{i}")}))
        .collect();
    assert_eq!(s.post(&json!(events)).await.0, 200);
    s.stop();
    let s = Server::start(&data, ARTICLE_CONFIG);
    assert_eq!(s.all_ids("1").await.len(), 300);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _s = Server::start(&data, ARTICLE_CONFIG);
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another tracklake"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acked: Arc<Mutex<Vec<(u32, String)>>> = Arc::default();
    for round in 0..3 {
        let s = Server::start(&data, FAST_LAKE_CONFIG);
        let before = acked.lock().unwrap().len();
        let mut writers = Vec::new();
        for w in 0..4u32 {
            let (url, acked) = (s.url.clone(), acked.clone());
            writers.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                for b in 0.. {
                    let ids: Vec<String> =
                        (0..50).map(|i| format!("r{round}-w{w}-b{b}-{i}")).collect();
                    let body: Vec<_> = ids
                        .iter()
                        .map(|id| json!({"user_id": w, "event_type": "login", "event_id": id}))
                        .collect();
                    let Ok(r) = http
                        .post(format!("{url}/v1/events"))
                        .json(&body)
                        .send()
                        .await
                    else {
                        return;
                    };
                    if r.status() != 200 {
                        return;
                    }
                    let Ok(answer) = r.json::<serde_json::Value>().await else {
                        return;
                    };
                    assert_eq!(answer["stored"], 50, "{answer}");
                    acked
                        .lock()
                        .unwrap()
                        .extend(ids.into_iter().map(|id| (w, id)));
                }
            }));
        }
        // Kill once writes are flowing, at a different moment each round.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < before + 1000 {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: the server acknowledged too little"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(37 * round as u64)).await;
        s.kill();
        for w in writers {
            w.await.unwrap();
        }
        assert!(
            acked.lock().unwrap().len() > before,
            "round {round} acknowledged nothing"
        );
    }

    let s = Server::start(&data, FAST_LAKE_CONFIG);
    let acked = acked.lock().unwrap().clone();
    for w in 0..4u32 {
        let stored = s.all_ids(&w.to_string()).await;
        let unique: HashSet<&String> = stored.iter().collect();
        assert_eq!(
            unique.len(),
            stored.len(),
            "an event is stored twice for user {w}"
        );
        let missing: Vec<&String> = acked
            .iter()
            .filter(|(u, id)| *u == w && !unique.contains(id))
            .map(|(_, id)| id)
            .collect();
        assert!(
            missing.is_empty(),
            "acknowledged but lost after SIGKILL: {} events, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }

    // Delivery ran through the kills too: after a clean stop the lake holds
    // every acknowledged event exactly once.
    s.stop();
    let in_lake = lake_ids(&data.join("lake"));
    let doubled: Vec<_> = in_lake.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "events doubled in the lake: {:?}",
        &doubled[..doubled.len().min(5)]
    );
    let missing = acked
        .iter()
        .filter(|(_, id)| !in_lake.contains_key(id))
        .count();
    assert_eq!(missing, 0, "acknowledged events missing from the lake");
    let out = std::process::Command::new(BIN)
        .args(["lake", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
