//! The events the golden files are worked out over, dated relative to
//! today (UTC) so the built-in "last 7 days" reports have something to show.
//! `${day-N}` in a golden file is the date N days ago.

use chrono::{Duration, NaiveDate, NaiveTime, Utc};
use tracklake_event::{Device, Event, UserId};

/// (user, type, days ago, time, ip, device (type, os, browser), properties, repeat)
type Spec = (
    &'static str,
    &'static str,
    i64,
    &'static str,
    &'static str,
    (&'static str, &'static str, &'static str),
    &'static str,
    usize,
);

const SPECS: &[Spec] = &[
    // user 1: logs in from one desktop, then from five addresses on day-2
    (
        "1",
        "login",
        6,
        "08:00:00",
        "203.0.113.1",
        ("desktop", "Windows", "Chrome"),
        r#"{"plan":"pro"}"#,
        1,
    ),
    (
        "1",
        "material-view",
        6,
        "08:05:00",
        "203.0.113.1",
        ("desktop", "Windows", "Chrome"),
        r#"{"material_id":42,"tags":["a","b"]}"#,
        1,
    ),
    (
        "1",
        "login",
        5,
        "00:15:00",
        "203.0.113.2",
        ("desktop", "Windows", "Chrome"),
        "{}",
        1,
    ),
    (
        "1",
        "login",
        2,
        "09:00:00",
        "203.0.113.3",
        ("desktop", "Windows", "Chrome"),
        "{}",
        1,
    ),
    (
        "1",
        "login",
        2,
        "10:00:00",
        "203.0.113.4",
        ("tablet", "Android", "Chrome Mobile"),
        "{}",
        1,
    ),
    (
        "1",
        "login",
        2,
        "11:00:00",
        "203.0.113.5",
        ("desktop", "Windows", "Chrome"),
        "{}",
        1,
    ),
    (
        "1",
        "login",
        2,
        "12:00:00",
        "203.0.113.6",
        ("desktop", "Windows", "Chrome"),
        "{}",
        1,
    ),
    // user 2: a phone
    (
        "2",
        "login",
        6,
        "23:30:00",
        "198.51.100.7",
        ("smartphone", "iOS", "Mobile Safari"),
        "{}",
        1,
    ),
    (
        "2",
        "material-view",
        5,
        "12:30:00",
        "198.51.100.7",
        ("smartphone", "iOS", "Mobile Safari"),
        r#"{"material_id":7}"#,
        2,
    ),
    (
        "2",
        "material-view",
        0,
        "00:00:02",
        "198.51.100.7",
        ("smartphone", "iOS", "Mobile Safari"),
        r#"{"material_id":9}"#,
        3,
    ),
    // user u-3: a text id, IPv6, and a scraper today
    (
        "u-3",
        "login",
        5,
        "12:00:00",
        "2001:db8::1",
        ("desktop", "Mac OS X", "Firefox"),
        "{}",
        1,
    ),
    (
        "u-3",
        "material-view",
        0,
        "00:00:01",
        "2001:db8::1",
        ("desktop", "Mac OS X", "Firefox"),
        r#"{"material_id":1}"#,
        60,
    ),
    // user 4: older than the reports' windows
    (
        "4",
        "login",
        9,
        "07:00:00",
        "192.0.2.10",
        ("desktop", "Linux", "Firefox"),
        "{}",
        1,
    ),
    (
        "4",
        "material-view",
        0,
        "00:00:03",
        "192.0.2.10",
        ("desktop", "Linux", "Firefox"),
        r#"{"material_id":2}"#,
        4,
    ),
    // a crawler
    (
        "5",
        "material-view",
        3,
        "04:00:00",
        "66.249.66.1",
        ("bot", "", "Googlebot"),
        "{}",
        1,
    ),
];

pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

pub fn day(n: i64) -> NaiveDate {
    today() - Duration::days(n)
}

pub fn events() -> Vec<Event> {
    let mut out = Vec::new();
    for (user, kind, days_ago, time, ip, (dtype, os, browser), props, repeat) in SPECS {
        for i in 0..*repeat {
            let time: NaiveTime = time.parse().unwrap();
            let event_at = (day(*days_ago).and_time(time) + Duration::seconds(i as i64)).and_utc();
            let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            out.push(Event {
                event_id: format!("e{:03}", out.len() + 1),
                user_id: match user.parse::<i64>() {
                    Ok(n) => UserId::Int(n),
                    Err(_) => UserId::Text((*user).into()),
                },
                event_type: (*kind).into(),
                event_at,
                received_at: event_at,
                user_agent: Some(format!("agent of {user}")),
                ip_address: Some(ip.parse().unwrap()),
                properties: serde_json::from_str(props).unwrap(),
                device: Device {
                    kind: (*dtype).into(),
                    os: text(os),
                    browser: text(browser),
                    is_bot: *dtype == "bot",
                    ..Device::unknown()
                },
                web: Default::default(),
                server_assigned_id: false,
            });
        }
    }
    out
}

/// Replaces `${day-N}` with the date N days ago.
pub fn substitute(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${day-") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let end = after.find('}').expect("closed ${day-N}");
        let n: i64 = after[..end].parse().expect("${day-N} with a number");
        out.push_str(&day(n).to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}
