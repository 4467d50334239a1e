//! Requests as a web page on another origin makes them: CORS preflights,
//! analytics.js's short paths with `text/plain` bodies and the write key in
//! the body, beacons; an origin that is not allowed is refused and nothing
//! of its is stored; read endpoints answer no other origin by default.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::auth::create;
use crate::harness::Server;

const SHOP: &str = "http://shop.example:8080";

/// A POST as a page of `origin` sends it: `text/plain`, no key header.
async fn post_from(s: &Server, origin: &str, path: &str, body: &Value) -> (u16, HeaderMap, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", s.url))
        .header("origin", origin)
        .header("content-type", "text/plain;charset=UTF-8")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn preflight(s: &Server, origin: &str, path: &str) -> (u16, HeaderMap) {
    let response = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}{path}", s.url))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.headers().clone())
}

/// What analytics.js posts to `/v1/p` for `page()`, trimmed.
fn page_message(write_key: &str, anonymous_id: &str) -> Value {
    json!({
        "type": "page", "anonymousId": anonymous_id, "writeKey": write_key,
        "messageId": format!("ajs-next-{anonymous_id}"),
        "timestamp": "2026-12-03T10:00:00.000Z", "sentAt": "2026-12-03T10:00:00.050Z",
        "properties": {"path": "/pricing", "url": "http://shop.example:8080/pricing", "title": "Pricing",
                       "referrer": "https://search.example/"},
        "context": {"page": {"path": "/pricing", "referrer": "https://search.example/"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                    "library": {"name": "analytics.js", "version": "npm:next-1.84.3"}},
        "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
        "integrations": {}
    })
}

#[tokio::test]
async fn a_page_on_an_allowed_origin_sends_and_reads_its_answer() {
    let (write, write_entry) = create("write");
    let (read, read_entry) = create("read");
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[server]\ncors_origins = [\"{SHOP}\"]\n{write_entry}\n{read_entry}\n");
    let s = Server::start(&dir.path().join("data"), &config);

    // The preflight a JSON fetch makes.
    let (status, headers) = preflight(&s, SHOP, "/v1/events").await;
    assert_eq!(status, 204);
    assert_eq!(headers["access-control-allow-origin"], SHOP);
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("content-type")
    );

    // analytics.js: `/v1/p`, text/plain, the write key in the body; the
    // page can read the answer.
    let (status, headers, body) = post_from(&s, SHOP, "/v1/p", &page_message(&write, "a1")).await;
    assert_eq!((status, &body), (200, &json!({"success": true})));
    assert_eq!(headers["access-control-allow-origin"], SHOP);
    // Its batch path, `/v1/b`, with one sentAt for all.
    let batch = json!({"writeKey": write, "sentAt": "2026-12-03T10:00:01.000Z", "batch": [
        {"type": "track", "anonymousId": "a1", "event": "Added To Cart", "messageId": "m-b1",
         "timestamp": "2026-12-03T10:00:00.990Z", "properties": {"sku": "x-1"}},
        {"type": "identify", "anonymousId": "a1", "userId": "u-7", "messageId": "m-b2",
         "timestamp": "2026-12-03T10:00:00.950Z", "traits": {"plan": "pro"}}
    ]});
    let (status, _, body) = post_from(&s, SHOP, "/v1/b", &batch).await;
    assert_eq!(status, 200, "{body}");
    // A wrong key in the body is refused like a wrong header.
    let (status, _, _) = post_from(
        &s,
        SHOP,
        "/v1/t",
        &json!({"writeKey": "nope", "anonymousId": "a1", "event": "x"}),
    )
    .await;
    assert_eq!(status, 401);
    // tracklake's own API as a beacon sends it: text/plain, key in a header.
    let beacon = reqwest::Client::new()
        .post(format!("{}/v1/events", s.url))
        .header("origin", SHOP)
        .header("content-type", "text/plain;charset=UTF-8")
        .header("authorization", format!("Bearer {write}"))
        .body(
            json!({"user_id": "anon:a1", "event_type": "page-hidden", "event_id": "b-1"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(beacon.status().as_u16(), 201);

    // Back through the per-user API, read with a read key from no page.
    let events = reqwest::Client::new()
        .get(format!("{}/v1/users/anon:a1/events?order=oldest", s.url))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let events = events["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["page", "added-to-cart", "page-hidden"],
        "{events:?}"
    );
    let page = &events[0];
    assert_eq!(page["properties"]["path"], "/pricing");
    assert_eq!(page["properties"]["referrer"], "https://search.example/");
    // A page call's properties are the page, not repeated under `page`.
    assert!(page["properties"].get("page").is_none());
    assert_eq!(page["device"]["browser"], "Chrome");
    assert!(
        !page["properties"]
            .as_object()
            .unwrap()
            .contains_key("writeKey")
    );
}

#[tokio::test]
async fn other_origins_are_refused_and_nothing_of_theirs_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[server]\ncors_origins = [\"{SHOP}\"]\n");
    let s = Server::start(&dir.path().join("data"), &config);
    let evil = "http://evil.example";

    let (status, headers) = preflight(&s, evil, "/v1/t").await;
    assert_eq!(status, 403);
    assert!(!headers.contains_key("access-control-allow-origin"));
    // A simple POST or a beacon skips the preflight: the server refuses it.
    let (status, headers, body) = post_from(&s, evil, "/v1/p", &page_message("k", "e1")).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "origin_not_allowed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cors_origins"),
        "{body}"
    );
    // The page may read why (and stop sending).
    assert_eq!(headers["access-control-allow-origin"], evil);
    let (status, _, _) = post_from(
        &s,
        evil,
        "/v1/events",
        &json!({"user_id": "anon:e1", "event_type": "x"}),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(s.all_ids("anon:e1").await, Vec::<String>::new());

    // Read endpoints answer no page of another origin, allowed for writes
    // or not, unless `cors_read_origins` names it.
    for origin in [SHOP, evil] {
        let response = reqwest::Client::new()
            .get(format!("{}/v1/users/anon:e1/events", s.url))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403, "{origin}");
        assert!(
            !response
                .headers()
                .contains_key("access-control-allow-origin")
        );
    }
    // The server's own pages (the dashboard) are not cross-origin.
    let own = s.url.clone();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/query", s.url))
        .header("origin", &own)
        .json(&json!({"sql": "SELECT 1 AS one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[test]
fn a_malformed_origin_in_the_config_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("t.toml");
    std::fs::write(&config, "[server]\ncors_origins = [\"shop.example\"]\n").unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert!(
        said.contains("server.cors_origins") && said.contains("shop.example"),
        "{said}"
    );
}
