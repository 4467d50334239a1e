//! Web pages in headless Chromium, served from an origin other than
//! tracklake's: one with `/tracklake.js`, one with Segment's own browser
//! library (`@segment/analytics-next` from npm, unmodified, its settings
//! passed in so nothing is fetched from outside), and one on an origin
//! tracklake does not allow. What they send comes back through the
//! per-user API; the refused origin's events are nowhere.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::{Value, json};

use crate::auth::create;
use crate::harness::{Server, browse, chromium, dom_text, have};

/// Where .ci/run installs the npm package (`web/package.json`).
fn analytics_next() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/web/node_modules/@segment/analytics-next/dist/umd")
}

/// A port of its own for a page: another origin than tracklake's.
async fn origin() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    (listener, origin)
}

/// Serves `page` at `/page.html`, and analytics.js's files at
/// `/analytics-next/bundles/` (where it loads its chunks from).
fn serve_page(listener: tokio::net::TcpListener, page: String) {
    let files = analytics_next();
    let app = Router::new()
        .route("/page.html", get(move || async move { Html(page) }))
        .route(
            "/analytics-next/bundles/{file}",
            get(move |UrlPath(file): UrlPath<String>| async move {
                match std::fs::read(files.join(file.replace('/', ""))) {
                    Ok(body) => ([(header::CONTENT_TYPE, "text/javascript")], body).into_response(),
                    Err(_) => StatusCode::NOT_FOUND.into_response(),
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
}

/// A page that loads /tracklake.js, tracks, navigates as a single-page app
/// does, identifies and tracks again, then writes its anonymous id.
fn tracker_page(tracklake: &str, key: &str) -> String {
    format!(
        r#"<!doctype html><html><head><title>Shop</title>
<script src="{tracklake}/tracklake.js" data-key="{key}"></script></head>
<body><pre id="out"></pre><script>
tracklake.track("Signed Up", {{plan: "pro"}});
history.pushState({{}}, "", "/pricing");
tracklake.identify("web-user-1", {{email: "ada@example.com"}});
tracklake.track("Checkout", {{total: 42}});
tracklake.flush();
setTimeout(() => {{ document.getElementById("out").textContent = tracklake.anonymousId(); }}, 3000);
</script></body></html>"#
    )
}

/// A page with analytics.js 1.84 pointed at tracklake.
fn analytics_next_page(tracklake: &str, key: &str) -> String {
    let api_host = format!("{}/v1", tracklake.trim_start_matches("http://"));
    format!(
        r#"<!doctype html><html><head><title>Docs</title>
<script src="{{ORIGIN}}/analytics-next/bundles/index.js"></script></head>
<body><pre id="out"></pre><script>
const settings = {{integrations: {{"Segment.io": {{apiKey: "{key}", apiHost: "{api_host}", protocol: "http"}}}}}};
const analytics = AnalyticsNext.AnalyticsBrowser.load({{writeKey: "{key}", cdnURL: "{{ORIGIN}}", cdnSettings: settings}});
(async () => {{
  await analytics.page("Docs", "Home");
  await analytics.identify("ajs-user-1", {{plan: "pro"}});
  await analytics.track("Signed Up", {{plan: "pro"}});
  document.getElementById("out").textContent = "sent";
}})().catch((e) => {{ document.getElementById("out").textContent = "failed: " + e; }});
</script></body></html>"#
    )
}

/// The events of `user` once there are `n` (within 20 s).
async fn events_of(s: &Server, read: &str, user: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page: Value = reqwest::Client::new()
            .get(format!("{}/v1/users/{user}/events?order=oldest", s.url))
            .bearer_auth(read)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `POST /v1/query` with the read key.
async fn sql(s: &Server, read: &str, sql: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/query", s.url))
        .bearer_auth(read)
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Their types, sorted: events sent in the same millisecond have no order.
fn types(events: &[Value]) -> Vec<&str> {
    let mut types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    types.sort();
    types
}

/// The first of `events` of this type whose properties have `path`.
fn find<'a>(events: &'a [Value], event_type: &str, path: Option<&str>) -> &'a Value {
    events
        .iter()
        .find(|e| {
            e["event_type"] == event_type && path.is_none_or(|p| e["properties"]["path"] == p)
        })
        .unwrap_or_else(|| panic!("no {event_type} {path:?} in {events:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_on_other_origins_send_through_both_trackers() {
    let Some(chromium) = chromium() else {
        return;
    };
    if !have(
        "@segment/analytics-next from npm",
        analytics_next().join("index.js").exists(),
        "npm install --prefix crates/tracklake/tests/it/web",
    ) {
        return;
    }
    let (write, write_entry) = create("write");
    let (read, read_entry) = create("read");
    // The pages' origins first, for tracklake's config; their pages, which
    // name tracklake's address, once it runs.
    let ((shop_port, shop), (docs_port, docs), (evil_port, evil)) =
        (origin().await, origin().await, origin().await);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[ingest]\nevent_types = [\"page\", \"identify\", \"signed-up\", \"checkout\"]\n\
         [server]\ncors_origins = [\"{shop}\", \"{docs}\"]\n{write_entry}\n{read_entry}\n"
    );
    let s = Server::start(&dir.path().join("data"), &config);
    serve_page(shop_port, tracker_page(&s.url, &write));
    serve_page(
        docs_port,
        analytics_next_page(&s.url, &write).replace("{ORIGIN}", &docs),
    );
    serve_page(evil_port, tracker_page(&s.url, &write));

    // tracklake.js: a page view on load (with its campaign), a track, a
    // page view on navigation, identify, and a track as the known user.
    let (dom, log) = browse(
        chromium,
        &format!("{shop}/page.html?utm_source=news&utm_campaign=launch"),
        &["--dump-dom"],
    );
    let anonymous = dom_text(&dom, "out")
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("no anonymous id: {log}"));
    let anon = events_of(&s, &read, &format!("anon:{anonymous}"), 3).await;
    assert_eq!(types(&anon), ["page", "page", "signed-up"], "{anon:?}");
    let landing = &find(&anon, "page", Some("/page.html"))["properties"];
    // A page call's properties are the page: not repeated under `page`.
    assert!(landing.get("page").is_none(), "{landing}");
    assert_eq!(landing["campaign"]["source"], "news");
    assert_eq!(landing["campaign"]["name"], "launch");
    let session = landing["session_id"].as_str().expect("a session id");
    assert!(
        landing["screen"]["width"].as_u64().unwrap_or(0) > 0,
        "{landing}"
    );
    let pricing = &find(&anon, "page", Some("/pricing"))["properties"];
    assert_eq!(
        pricing["referrer"].as_str().unwrap(),
        format!("{shop}/page.html?utm_source=news&utm_campaign=launch")
    );
    assert_eq!(pricing["session_id"], session);
    // Headless Chromium is a bot: named, flagged, left out of web reports.
    assert_eq!(
        anon[0]["device"]["browser"], "HeadlessChrome",
        "{:?}",
        anon[0]
    );
    assert_eq!(anon[0]["device"]["bot"], "headless", "{:?}", anon[0]);
    let known = events_of(&s, &read, "web-user-1", 2).await;
    assert_eq!(types(&known), ["checkout", "identify"], "{known:?}");
    let identify = find(&known, "identify", None);
    assert_eq!(identify["properties"]["traits"]["email"], "ada@example.com");
    assert_eq!(
        find(&known, "checkout", None)["properties"]["session_id"],
        session
    );

    // The page and session fields are columns in SQL.
    let (status, answer) = sql(
        &s,
        &read,
        &format!(
            "SELECT event_type, url, path, referrer_host, utm_source, utm_medium, utm_campaign, session_id, \
             device_is_bot, device_bot FROM events WHERE user_id = 'anon:{anonymous}' ORDER BY event_at, path"
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{answer}");
    let landing_url = format!("{shop}/page.html?utm_source=news&utm_campaign=launch");
    let page_row = rows
        .iter()
        .find(|r| r["path"] == "/page.html" && r["event_type"] == "page")
        .unwrap();
    assert_eq!(page_row["url"], landing_url.as_str(), "{answer}");
    assert_eq!(page_row["utm_source"], "news");
    assert_eq!(page_row["utm_campaign"], "launch");
    assert_eq!(page_row["utm_medium"], Value::Null);
    assert_eq!(page_row["session_id"], session);
    assert_eq!(
        (&page_row["device_is_bot"], &page_row["device_bot"]),
        (&json!(true), &json!("headless"))
    );
    let pricing_row = rows.iter().find(|r| r["path"] == "/pricing").unwrap();
    assert_eq!(pricing_row["referrer_host"], "127.0.0.1", "{answer}");
    assert_eq!(pricing_row["session_id"], session);
    // The per-user API has them as `web`, also alone (`fields=`).
    let only: Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/users/anon:{anonymous}/events?type=page&fields=event_type,web",
            s.url
        ))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let webs: Vec<&Value> = only["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["web"])
        .collect();
    assert!(
        webs.iter()
            .any(|w| w["path"] == "/pricing" && w["session_id"] == session),
        "{only}"
    );
    assert!(only["events"][0].get("properties").is_none(), "{only}");
    // The web report leaves the headless browser out, counts it, and has
    // the visit when bots are asked for.
    let web = |bots: &'static str| {
        let (url, read) = (s.url.clone(), read.clone());
        async move {
            reqwest::Client::new()
                .get(format!("{url}/v1/reports/web?bots={bots}"))
                .bearer_auth(read)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let without = web("exclude").await;
    assert_eq!(without["summary"]["visitors"], 0, "{without}");
    assert!(
        without["bots"][0]["events"].as_u64().unwrap_or(0) >= 3,
        "{without}"
    );
    let with = web("include").await;
    assert!(
        with["summary"]["page_views"].as_u64().unwrap_or(0) >= 2,
        "{with}"
    );
    let pages: Vec<&str> = with["top_pages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["path"].as_str())
        .collect();
    assert!(
        pages.contains(&"/page.html") && pages.contains(&"/pricing"),
        "{with}"
    );
    assert!(
        with["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["utm_source"] == "news" && c["utm_campaign"] == "launch"),
        "{with}"
    );

    // analytics.js, unmodified.
    let (dom, log) = browse(chromium, &format!("{docs}/page.html"), &["--dump-dom"]);
    assert_eq!(dom_text(&dom, "out").as_deref(), Some("sent"), "{log}");
    let ajs = events_of(&s, &read, "ajs-user-1", 2).await;
    assert_eq!(types(&ajs), ["identify", "signed-up"], "{ajs:?}");
    let signed_up = find(&ajs, "signed-up", None);
    assert_eq!(signed_up["properties"]["plan"], "pro");
    assert_eq!(signed_up["properties"]["page"]["path"], "/page.html");
    assert_eq!(signed_up["device"]["browser"], "HeadlessChrome");
    let (status, answer) = sql(
        &s,
        &read,
        "SELECT event_type, path, url FROM events WHERE user_id = 'ajs-user-1' ORDER BY event_type",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"][0]["event_type"], "identify", "{answer}");
    assert_eq!(answer["rows"][1]["event_type"], "signed-up", "{answer}");
    assert_eq!(answer["rows"][1]["path"], "/page.html", "{answer}");
    assert_eq!(
        answer["rows"][1]["url"],
        format!("{docs}/page.html").as_str(),
        "{answer}"
    );

    // The same page on an origin tracklake does not allow: refused, and
    // the page is told why.
    let (dom, log) = browse(chromium, &format!("{evil}/page.html"), &["--dump-dom"]);
    let anonymous = dom_text(&dom, "out")
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("no anonymous id: {log}"));
    assert!(log.contains("tracklake: 403"), "{log}");
    assert_eq!(
        events_of(&s, &read, &format!("anon:{anonymous}"), 0).await,
        Vec::<Value>::new()
    );
    s.stop();
}
