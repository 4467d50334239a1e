//! `[privacy]`: the lake and SQL see pseudonyms instead of addresses, the
//! user's own feed keeps them, and dropped properties are stored nowhere.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Server;

async fn sql(s: &Server, sql: &str) -> Value {
    let (status, body) = s.sql(sql).await;
    assert_eq!(status, 200, "{body}");
    body["rows"].clone()
}

#[tokio::test]
async fn addresses_leave_the_table_only_as_pseudonyms() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = "[ingest]\nevent_types = [\"login\"]\n[delivery]\nbuffer_interval_secs = 1\n\
                  [privacy]\nip = \"hash\"\ndrop_properties = [\"email\"]\n";
    let s = Server::start(&data, config);
    let events = json!([
        {"user_id": 1, "event_type": "login", "event_id": "a", "ip_address": "203.0.113.5", "properties": {"email": "x@example.com", "plan": "pro"}},
        {"user_id": 1, "event_type": "login", "event_id": "b", "ip_address": "203.0.113.5"},
        {"user_id": 1, "event_type": "login", "event_id": "c", "ip_address": "203.0.113.6"}
    ]);
    assert_eq!(s.post(&events).await.0, 200);

    // The user's own feed keeps the address; the dropped property is gone.
    let (_, feed) = s.get("/v1/users/1/events?order=asc").await;
    assert_eq!(feed["events"][0]["ip_address"], "203.0.113.5");
    assert_eq!(feed["events"][0]["properties"], json!({"plan": "pro"}));

    let query = "SELECT event_id, ip_address, properties FROM events ORDER BY event_id";
    let check = |rows: &Value| {
        let ips: Vec<&str> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ip_address"].as_str().unwrap())
            .collect();
        assert!(ips.iter().all(|ip| ip.starts_with("fd")), "{rows}");
        assert_eq!(ips[0], ips[1], "the same address, the same pseudonym");
        assert_ne!(ips[0], ips[2]);
        assert!(
            !rows.to_string().contains("x@example.com") && !rows.to_string().contains("203.0.113"),
            "{rows}"
        );
    };
    check(&sql(&s, query).await); // fresh, from the change log
    let deadline = Instant::now() + Duration::from_secs(30);
    while !data.join("lake/events").exists()
        || crate::harness::lake_ids(&data.join("lake")).len() < 3
    {
        assert!(Instant::now() < deadline, "delivery did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check(&sql(&s, query).await); // from the lake's files
    let key = std::fs::read_to_string(data.join("privacy.key")).unwrap();
    assert_eq!(key.trim().len(), 64, "a 256-bit key was made and kept");
}
