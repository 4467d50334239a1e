//! Metrics, alarms and the dashboard, against the real binary: /metrics
//! read by an independent Prometheus-text parser, an alarm that fires and
//! clears with a webhook listening, and the page in headless Chromium.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{BIN, Server, browse, chromium, dom_text};

const CONFIG: &str = "[ingest]\nevent_types = [\"login\", \"material-view\", \"page\"]\n\
     [metrics]\ninterval_secs = 1\n[delivery]\nbuffer_interval_secs = 1\n";

fn counter(samples: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    samples
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_count_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), CONFIG);
    let batch: Vec<Value> = (0..25)
        .map(|i| json!({"user_id": i, "event_type": "login", "event_id": format!("m{i}")}))
        .collect();
    assert_eq!(s.post(&Value::Array(batch.clone())).await.0, 200);
    assert_eq!(s.post(&Value::Array(batch[..5].to_vec())).await.0, 200); // duplicates
    assert_eq!(
        s.post(&json!({"user_id": 1, "event_type": "signup"}))
            .await
            .0,
        400
    );
    let text = s.text("/metrics").await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert_eq!(
        counter(&scrape, "tracklake_events_received_total", None),
        31.0
    );
    assert_eq!(
        counter(&scrape, "tracklake_events_stored_total", None),
        25.0
    );
    assert_eq!(
        counter(&scrape, "tracklake_events_duplicate_total", None),
        5.0
    );
    assert_eq!(
        counter(
            &scrape,
            "tracklake_events_rejected_total",
            Some(("reason", "not_allowed"))
        ),
        1.0
    );
    assert_eq!(
        counter(
            &scrape,
            "tracklake_http_requests_total",
            Some(("status", "400"))
        ),
        1.0
    );
    assert!(counter(&scrape, "process_resident_memory_bytes", None) > 1e6);

    // The history has per-interval increases; they add up to what was sent.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, history) = s
        .get("/v1/metrics/history?names=tracklake_events_stored_total")
        .await;
    assert_eq!(status, 200, "{history}");
    let stored: f64 = history["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .sum();
    assert_eq!(stored, 25.0, "{history}");
    let (status, body) = s.get("/v1/metrics/history?from=yesterday").await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("from"))
    );
}

/// A webhook that records what it is sent.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// The lake made unwritable: failed uploads raise the alarm, the webhook
/// hears it; writable again, the alarm clears and the webhook hears that.
#[tokio::test]
async fn an_alarm_fires_and_clears_and_the_webhook_hears_both() {
    let (url, received) = webhook().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!(
        "{CONFIG}[alarms]\ndefaults = false\nwebhook = \"{url}\"\n[[alarms.rules]]\nname = \"lake_unwritable\"\n\
         metric = \"tracklake_delivery_failed_put_count_total\"\nstatistic = \"sum\"\ncomparison = \">\"\n\
         threshold = 0\nperiod_secs = 1\nevaluation_periods = 1\nmissing_data = \"not_breaching\"\n"
    );
    let s = Server::start(&data, &config);
    // A file where the lake's `events` directory must go: every upload fails.
    let _ = std::fs::remove_dir_all(data.join("lake/events"));
    std::fs::write(data.join("lake/events"), b"not a directory").unwrap();
    assert_eq!(
        s.post(&json!({"user_id": 1, "event_type": "login"}))
            .await
            .0,
        201
    );
    let states = || -> Vec<String> {
        received
            .lock()
            .unwrap()
            .iter()
            .map(|t| t["new_state"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !states().contains(&"ALARM".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "no ALARM notification: {:?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, alarms) = s.get("/v1/alarms").await;
    assert_eq!(alarms["alarms"][0]["state"], "ALARM", "{alarms}");
    std::fs::remove_file(data.join("lake/events")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while states().last().map(String::as_str) != Some("OK") {
        assert!(
            Instant::now() < deadline,
            "no OK after the lake came back: {:?}",
            states()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let alarm_at = states().iter().position(|s| s == "ALARM").unwrap();
    assert!(states()[alarm_at..].contains(&"OK".to_owned()));
    assert_eq!(
        received.lock().unwrap()[alarm_at]["alarm"],
        "lake_unwritable"
    );
}

/// The page in headless Chromium: every chart drew data, the user lookup
/// shows activity, and nothing was logged to the console.
#[tokio::test]
async fn the_dashboard_draws_every_chart_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), CONFIG);
    let seeded = Command::new(BIN)
        .args([
            "seed",
            "--users",
            "20",
            "--events-per-user",
            "30",
            "--days",
            "7",
            "--types",
            "login,material-view",
            "--url",
            &s.url,
        ])
        .output()
        .unwrap();
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    assert_eq!(
        s.post(&json!({"user_id": 1, "event_type": "signup"}))
            .await
            .0,
        400
    );
    // Page views from two visitors and a headless browser, for the Web section.
    let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    let headless = chrome.replace("Chrome/", "HeadlessChrome/");
    for (user, path, agent) in [
        ("visitor-1", "/", chrome),
        ("visitor-1", "/pricing", chrome),
        ("visitor-2", "/?utm_source=news", chrome),
        ("crawler", "/", headless.as_str()),
    ] {
        let view = json!({"user_id": user, "event_type": "page", "user_agent": agent,
            "properties": {"url": format!("https://example.com{path}"), "referrer": "https://news.example/"}});
        assert_eq!(s.post(&view).await.0, 201);
    }
    tokio::time::sleep(Duration::from_secs(4)).await; // a few history samples

    let page = format!("{}/?user=1", s.url);
    let browse = |extra: &[&str]| {
        let mut args = vec!["--window-size=1280,2600"];
        args.extend_from_slice(extra);
        browse(chromium, &page, &args)
    };
    let (dom, log) = browse(&["--dump-dom"]);
    let check = dom_text(&dom, "selfcheck").expect("the page wrote its self-check");
    let check: Value = serde_json::from_str(&check)
        .unwrap_or_else(|e| panic!("self-check is not JSON ({e}): {check}"));
    assert_eq!(check["errors"], json!([]), "{check}");
    for chart in [
        "incoming",
        "stored",
        "streamed",
        "delivered",
        "rejected",
        "failures",
        "lag",
        "latency",
        "logins",
        "types",
        "dau",
        "devices",
        "os",
        "browsers",
        "funnel",
        "retention",
        "web-days",
        "web-top_pages",
        "web-entry_pages",
        "web-referrers",
        "web-campaigns",
        "web-devices",
        "web-bots",
    ] {
        assert!(
            check["drawn"][chart].as_u64().unwrap_or(0) > 0,
            "chart {chart} drew nothing: {check}"
        );
    }
    for table in ["sharing", "scraping", "alarms", "flagged"] {
        assert!(check["drawn"][table].is_u64(), "{table} missing: {check}");
    }
    assert!(check["lookup"].as_u64().unwrap_or(0) > 0, "{check}");
    // The Web section: the headless browser left out of the visitors, but
    // counted.
    assert_eq!(check["web"]["visitors"], 2, "{check}");
    assert_eq!(check["web"]["page_views"], 3, "{check}");
    assert_eq!(check["web"]["bot_events"], 1, "{check}");
    // Every y axis is wide enough for its labels, and large numbers are
    // written short (they were clipped to "0,000").
    assert_eq!(check["label_of_1200000"], "1.2M");
    let axes = check["y_axes"].as_object().unwrap();
    assert!(axes.len() >= 10, "{check}");
    for (chart, axis) in axes {
        assert!(
            axis["widest"].as_i64().unwrap() <= axis["label_room"].as_i64().unwrap(),
            "{chart}'s y labels are clipped: {axis}"
        );
    }
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "the console was not quiet: {console:?}");

    // Screenshots at a laptop's width and a phone's, for a person to look at.
    for (name, size) in [
        ("dashboard.png", "1280,2600"),
        ("dashboard-phone.png", "390,5200"),
    ] {
        let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = std::fs::remove_file(&shot);
        browse(&[
            &format!("--screenshot={}", shot.display()),
            &format!("--window-size={size}"),
        ]);
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "no screenshot at {}", shot.display());
    }
}
