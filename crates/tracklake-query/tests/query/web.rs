//! The web report over a day of page views worked out by hand: two
//! visitors, four sessions (one split by a 30-minute gap, one by a new
//! `session_id`), a campaign, a referrer that is the site itself, a
//! headless browser, a server-side event and a page view outside the range.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tracklake_delivery::Format;
use tracklake_event::{Device, Event, UserId, Web};
use tracklake_query::analytics::abnormal::AbnormalConfig;
use tracklake_query::analytics::{Analytics, Report};

use crate::Setup;

fn event(n: usize, user: &str, kind: &str, at: &str, device: &str, properties: Value) -> Event {
    let at: DateTime<Utc> = format!("2026-11-10T{at}:00Z").parse().unwrap();
    let properties = properties.as_object().unwrap().clone();
    let bot = device == "bot";
    Event {
        event_id: format!("w{n}"),
        user_id: UserId::Text(user.into()),
        event_type: kind.into(),
        event_at: at,
        received_at: at,
        user_agent: None,
        ip_address: None,
        web: Web::of(&properties),
        properties,
        device: Device {
            kind: device.into(),
            is_bot: bot,
            bot: bot.then(|| "headless".into()),
            browser: Some(if bot { "HeadlessChrome" } else { "Chrome" }.into()),
            ..Device::unknown()
        },
        server_assigned_id: false,
    }
}

fn page(path: &str, referrer: &str) -> Value {
    json!({"url": format!("https://www.example.com{path}"), "path": path, "referrer": referrer})
}

fn events() -> Vec<Event> {
    let mut out = Vec::new();
    let mut add = |user: &str, kind: &str, at: &str, device: &str, properties: Value| {
        out.push(event(out.len(), user, kind, at, device, properties));
    };
    // A: a campaign visit of two pages and a signup, then a visit 2 h later
    // that came from the site's own page (direct).
    let mut landing = page("/", "https://www.Google.com/search?q=x");
    landing["campaign"] = json!({"source": "news", "medium": "email", "name": "launch"});
    add("a", "page", "10:00", "desktop", landing);
    add(
        "a",
        "page",
        "10:05",
        "desktop",
        page("/pricing", "https://example.com/"),
    );
    add(
        "a",
        "signup",
        "10:06",
        "desktop",
        json!({"page": page("/pricing", ""), "plan": "pro"}),
    );
    add(
        "a",
        "page",
        "12:00",
        "desktop",
        page("/blog", "https://example.com:8443/x"),
    );
    add("a", "login", "12:01", "desktop", json!({}));
    // B: two one-page sessions ten minutes apart, told apart by session_id.
    let mut first = page("/", "https://t.co/abc");
    first["session_id"] = "s1".into();
    add("b", "page", "09:00", "smartphone", first);
    let mut second = page("/", "");
    second["session_id"] = "s2".into();
    add("b", "page", "09:10", "smartphone", second);
    // A headless browser, and a page view the day before.
    add("bot", "page", "11:00", "bot", page("/", ""));
    let mut before = event(out.len(), "a", "page", "08:00", "desktop", page("/old", ""));
    before.event_at -= chrono::Duration::days(1);
    out.push(before);
    out
}

async fn report(params: &[(&str, &str)]) -> Value {
    let setup = Setup::new(&events(), Format::Parquet).await;
    let engine = Arc::new(setup.engine().await);
    let analytics = Analytics::new(engine, AbnormalConfig::default());
    let mut all: BTreeMap<String, String> = [("from", "2026-11-10"), ("to", "2026-11-10")]
        .map(|(k, v)| (k.into(), v.into()))
        .into();
    all.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    analytics.answer(Report::Web, &all).await.unwrap()
}

/// `[{a: 1, b: "x"}]` as `["1|x"]`, in the order given.
fn table(rows: &Value, columns: &[&str]) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| match &row[*c] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

#[tokio::test]
async fn the_web_report_of_a_day_worked_out_by_hand() {
    let r = report(&[]).await;
    let s = &r["summary"];
    assert_eq!(s["visitors"], 2, "{r:#}");
    assert_eq!(s["sessions"], 4);
    assert_eq!(s["page_views"], 5);
    assert_eq!(s["bounce_rate"], 0.75);
    assert_eq!(
        s["avg_session_seconds"], 90.0,
        "6 minutes in one of four sessions"
    );
    assert_eq!(
        table(&r["per_day"], &["day", "visitors", "page_views"]),
        ["2026-11-10|2|5"]
    );
    assert_eq!(
        table(&r["top_pages"], &["path", "page_views", "visitors"]),
        ["/|3|2", "/blog|1|1", "/pricing|1|1"]
    );
    assert_eq!(
        table(&r["entry_pages"], &["path", "sessions", "bounce_rate"]),
        ["/|3|0.6666666666666666", "/blog|1|1.0"]
    );
    assert_eq!(
        table(&r["exit_pages"], &["path", "sessions"]),
        ["/|2", "/blog|1", "/pricing|1"]
    );
    assert_eq!(
        table(&r["referrers"], &["referrer", "sessions", "visitors"]),
        ["(direct)|2|2", "google.com|1|1", "t.co|1|1"]
    );
    assert_eq!(
        table(
            &r["campaigns"],
            &["utm_source", "utm_medium", "utm_campaign", "sessions"]
        ),
        ["news|email|launch|1"]
    );
    assert_eq!(
        table(&r["devices"], &["device_type", "visitors", "page_views"]),
        ["desktop|1|3", "smartphone|1|2"]
    );
    // Left out, but counted.
    assert_eq!(
        table(&r["bots"], &["kind", "name", "events"]),
        ["headless|HeadlessChrome|1"]
    );
    assert_eq!(r["include_bots"], false);
    assert!(
        r["sql"]["summary"]
            .as_str()
            .unwrap()
            .contains("NOT device_is_bot")
    );
}

#[tokio::test]
async fn bots_count_when_asked_for() {
    let r = report(&[("bots", "include")]).await;
    assert_eq!(r["summary"]["visitors"], 3, "{r:#}");
    assert_eq!(r["summary"]["sessions"], 5);
    assert_eq!(r["summary"]["page_views"], 6);
    assert_eq!(r["include_bots"], true);
    assert_eq!(
        table(&r["devices"], &["device_type", "visitors"]),
        ["bot|1", "desktop|1", "smartphone|1"]
    );
}
