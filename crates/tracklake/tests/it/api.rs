//! The HTTP API as a client sees it.

use serde_json::json;

use crate::harness::{ARTICLE_CONFIG, Server};

fn server(config: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), config);
    (dir, server)
}

#[tokio::test]
async fn single_event_is_stored_with_device_details() {
    let (_dir, s) = server(ARTICLE_CONFIG);
    let (status, body) = s
        .post(&json!({
            "user_id": 1, "event_type": "login", "event_at": "2019-06-29T16:46:23Z",
            "ip_address": "11.174.250.238",
            "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_3) AppleWebKit/537.75.14 (KHTML, like Gecko) Version/7.0.3 Safari/7046A194A"
        }))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["event_at"], "2019-06-29T16:46:23Z",
        "client time is honoured"
    );
    assert_eq!(body["device"]["browser"], "Safari");
    assert_eq!(body["device"]["os"], "Mac OS X");
    assert_eq!(body["device"]["type"], "desktop");
    assert!(body["event_id"].as_str().unwrap().len() >= 32);

    let (status, page) = s.get("/v1/users/1/events").await;
    assert_eq!(status, 200);
    assert_eq!(page["events"][0]["event_id"], body["event_id"]);
    assert_eq!(page["events"][0]["ip_address"], "11.174.250.238");
}

#[tokio::test]
async fn batch_keeps_valid_items_and_reports_each() {
    let (_dir, s) = server(ARTICLE_CONFIG);
    let (status, body) = s
        .post(&json!([
            {"user_id": 5, "event_type": "login", "event_id": "e1"},
            {"user_id": 5, "event_type": "logout"},
            {"user_id": 5, "event_type": "material-view", "event_id": "e1"},
            {"user_id": 5, "event_type": "login", "ip_address": "not-an-ip"},
            "not an object",
            {"user_id": 5, "event_type": "material-view", "event_id": "e2"}
        ]))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["stored"].as_u64(),
            body["duplicate"].as_u64(),
            body["rejected"].as_u64()
        ),
        (Some(2), Some(1), Some(3))
    );
    let r = &body["results"];
    assert_eq!(r[0]["status"], "stored");
    assert_eq!(r[1]["status"], "rejected");
    assert_eq!(r[1]["error"]["code"], "not_allowed");
    assert_eq!(r[1]["error"]["field"], "event_type");
    assert_eq!(r[2]["status"], "duplicate");
    assert_eq!(r[3]["error"]["field"], "ip_address");
    assert_eq!(r[4]["error"]["code"], "invalid_type");
    assert_eq!(r[5]["status"], "stored");
    let mut ids = s.all_ids("5").await;
    ids.sort();
    assert_eq!(ids, ["e1", "e2"]);

    // Sending the same single event again answers 200 with the stored one.
    let (status, again) = s
        .post(&json!({"user_id": 5, "event_type": "material-view", "event_id": "e1"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["event_type"], "login", "the first write wins");
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let (_dir, s) = server(ARTICLE_CONFIG);
    let (status, body) = s.post_raw("{\"user_id\": 1,", "application/json").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_json");

    let (status, body) = s
        .post_raw("user_id=1", "application/x-www-form-urlencoded")
        .await;
    assert_eq!(status, 415);
    assert_eq!(body["error"]["code"], "unsupported_media_type");

    let huge = format!(
        "[{}]",
        vec![r#"{"user_id":1,"event_type":"login"}"#; 40_000].join(",")
    );
    assert!(huge.len() > 1024 * 1024);
    let (status, body) = s.post_raw(huge, "application/json").await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "too_large");

    let many: Vec<_> = (0..501)
        .map(|i| json!({"user_id": i, "event_type": "login"}))
        .collect();
    let (status, body) = s.post(&json!(many)).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "too_many_events");

    let (status, body) = s
        .post(&json!({"user_id": 1, "event_type": "login", "event_at": "2999-01-01T00:00:00Z"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        (
            body["error"]["code"].as_str(),
            body["error"]["field"].as_str()
        ),
        (Some("in_future"), Some("event_at"))
    );

    let (status, body) = s.get("/v1/users/1/events?limit=5000").await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("limit"))
    );
    let (status, body) = s.get("/v1/nothing").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/events", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);

    // None of that touched what was stored.
    assert!(s.all_ids("1").await.is_empty());
}

#[tokio::test]
async fn ipv6_and_unicode_round_trip() {
    let (_dir, s) = server(ARTICLE_CONFIG);
    let ua = "Mozilla/5.0 (Linux; Android 14) Браузер/2.0 日本語 ✓";
    let (status, body) = s
        .post(&json!({"user_id": "ユーザー-1", "event_type": "login", "ip_address": "2001:db8::8a2e:370:7334", "user_agent": ua}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, page) = s
        .get("/v1/users/%E3%83%A6%E3%83%BC%E3%82%B6%E3%83%BC-1/events")
        .await;
    let e = &page["events"][0];
    assert_eq!(e["ip_address"], "2001:db8::8a2e:370:7334");
    assert_eq!(e["user_agent"], ua);
    assert_eq!(e["user_id"], "ユーザー-1");
}

#[tokio::test]
async fn limit_with_type_returns_the_newest_matching_events() {
    let (_dir, s) = server(ARTICLE_CONFIG);
    // 15 logins, each followed by 30 material views: DynamoDB's Limit 10
    // plus a filter would return at most one login.
    let mut events = Vec::new();
    for i in 0..15 {
        events.push(json!({"user_id": 9, "event_type": "login", "event_id": format!("login-{i:02}"),
                           "event_at": format!("2026-11-{:02}T08:00:00Z", i + 1), "user_agent": "Mozilla/5.0"}));
        for j in 0..30 {
            events.push(json!({"user_id": 9, "event_type": "material-view",
                               "event_at": format!("2026-11-{:02}T09:{j:02}:00Z", i + 1)}));
        }
    }
    for chunk in events.chunks(500) {
        assert_eq!(s.post(&json!(chunk)).await.0, 200);
    }
    let (status, page) = s
        .get("/v1/users/9/events?limit=10&type=login&fields=event_id,event_type,event_at,ip_address,user_agent")
        .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (5..15).rev().map(|i| format!("login-{i:02}")).collect();
    assert_eq!(ids, want);
    let first = page["events"][0].as_object().unwrap();
    let keys: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "event_id",
            "event_type",
            "event_at",
            "user_agent",
            "ip_address"
        ],
        "projection"
    );

    // Inclusive range: both ends count, as in the article's BETWEEN.
    let (_, page) = s
        .get("/v1/users/9/events?type=login&from=2026-11-03T08:00:00Z&to=2026-11-05T08:00:00Z&order=oldest")
        .await;
    let ids: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["login-02", "login-03", "login-04"]);
}

#[tokio::test]
async fn forwarded_for_only_counts_from_trusted_proxies() {
    let body = json!({"user_id": 1, "event_type": "login"});
    for (config, want) in [
        (ARTICLE_CONFIG.to_owned(), "127.0.0.1"),
        (
            format!("{ARTICLE_CONFIG}[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n"),
            "203.0.113.7",
        ),
    ] {
        let (_dir, s) = server(&config);
        let r = reqwest::Client::new()
            .post(format!("{}/v1/events", s.url))
            .header("x-forwarded-for", "203.0.113.7")
            .header(
                "user-agent",
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(e["ip_address"], want);
        assert_eq!(
            e["device"]["is_bot"], true,
            "the request's agent fills in user_agent"
        );
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let (_dir, s) = server("");
    assert_eq!(s.get("/healthz").await.0, 200);
    assert_eq!(s.get("/readyz").await, (200, json!({"status": "ready"})));
    // Without an event_types list, any well-formed name is allowed.
    assert_eq!(
        s.post(&json!({"user_id": 1, "event_type": "checkout.completed"}))
            .await
            .0,
        201
    );
}
