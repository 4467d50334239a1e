//! Funnels, retention and abnormal behaviour against the real binary: over
//! events sent through the API (ties in time, events outside the range, a
//! user deleted meanwhile), with the answers worked out by hand; errors that
//! name the parameter; `tracklake report` giving the API's answer; the
//! periodic check feeding its metric.

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::deletion::wait_done;
use crate::harness::{BIN, Server, stdout_of};

const CONFIG: &str = "[analytics]\ncheck_interval_secs = 1\n";

fn at(t0: DateTime<Utc>, minutes: i64) -> String {
    (t0 + chrono::Duration::minutes(minutes)).to_rfc3339()
}

fn ev(user: &str, kind: &str, when: String, ip: &str) -> Value {
    json!({"user_id": user, "event_type": kind, "event_at": when, "ip_address": ip})
}

fn users(answer: &Value) -> Vec<u64> {
    answer["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["users"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn reports_over_the_api_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_dir = data.to_str().unwrap().to_owned();
    let s = Server::start(&data, CONFIG);
    // An hour-aligned start three hours ago; the range is [t0, t0 + 2h].
    let now = Utc::now();
    let t0 = DateTime::from_timestamp(now.timestamp() / 3600 * 3600 - 3 * 3600, 0).unwrap();
    let ip = "203.0.113.9";
    let events = vec![
        // u1 and u4 go a → b → c; u4 is deleted later.
        ev("u1", "a", at(t0, 1), ip),
        ev("u1", "b", at(t0, 2), ip),
        ev("u1", "c", at(t0, 3), ip),
        ev("u4", "a", at(t0, 5), ip),
        ev("u4", "b", at(t0, 50), ip),
        ev("u4", "c", at(t0, 61), ip),
        // u2: a and b at the same instant is not a sequence.
        ev("u2", "a", at(t0, 10), ip),
        ev("u2", "b", at(t0, 10), ip),
        // u3: b comes too late (within = 1h).
        ev("u3", "a", at(t0, 0), ip),
        ev("u3", "b", at(t0, 61), ip),
        // u5: b before a.
        ev("u5", "b", at(t0, 20), ip),
        ev("u5", "a", at(t0, 21), ip),
        // u6: its a is before the range.
        ev("u6", "a", at(t0, -1), ip),
        ev("u6", "b", at(t0, 2), ip),
        ev("u6", "c", at(t0, 3), ip),
        // u7 logs in from three networks within five minutes.
        ev("u7", "login", at(t0, 30), "198.51.100.1"),
        ev("u7", "login", at(t0, 32), "192.0.2.1"),
        ev("u7", "login", at(t0, 34), "2001:db8::1"),
    ];
    assert_eq!(s.post(&Value::Array(events)).await.0, 200);
    let (from, to) = (at(t0, 0), at(t0, 120));
    let query = format!(
        "/v1/reports/funnel?steps=a,b,c&within=1h&from={}&to={}",
        urlencode(&from),
        urlencode(&to)
    );
    let (status, funnel) = s.get(&query).await;
    assert_eq!(status, 200, "{funnel}");
    assert_eq!(users(&funnel), [5, 2, 2], "{funnel}");
    // u1: 1 min and 1 min; u4: 45 min and 11 min; medians of two.
    assert_eq!(funnel["steps"][1]["median_secs_from_previous"], 1380.0);
    assert_eq!(funnel["steps"][2]["median_secs_from_previous"], 360.0);
    assert_eq!(funnel["steps"][2]["conversion"], 0.4);
    assert!(funnel["sql"].as_str().unwrap().starts_with("WITH e AS"));
    // The SQL it carries gives the same counts through POST /v1/query.
    let (_, rows) = s.sql(funnel["sql"].as_str().unwrap()).await;
    let counts: Vec<u64> = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["users"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [5, 2, 2], "{rows}");

    // The CLI prints the same (JSON) answer.
    let cli = funnel_cli(
        &from,
        &to,
        &["--format", "json", "--data-dir", &data_dir, "--url", &s.url],
    );
    let cli: Value = serde_json::from_str(&cli).unwrap();
    assert_eq!(users(&cli), [5, 2, 2]);
    let table = funnel_cli(&from, &to, &["--data-dir", &data_dir, "--url", &s.url]);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["3", "c", "2", "40.0%", "6.0", "min"]),
        "{table}"
    );

    // Retention by day: the cohort of logins is u7, back the same day.
    let (status, retention) = s
        .get(&format!(
            "/v1/reports/retention?cohort=login&period=day&from={}&to={}",
            urlencode(&from),
            urlencode(&to)
        ))
        .await;
    assert_eq!(status, 200, "{retention}");
    let day = t0.date_naive().to_string();
    assert_eq!(
        retention["cohorts"][0]["cohort"],
        day.as_str(),
        "{retention}"
    );
    assert_eq!(retention["cohorts"][0]["users"], 1);
    assert_eq!(retention["cohorts"][0]["returned"][0], 1);

    // Abnormal behaviour: u7, with the evidence and a link to the activity.
    let (status, abnormal) = s
        .get(&format!("/v1/reports/abnormal?from={}", urlencode(&from)))
        .await;
    assert_eq!(status, 200, "{abnormal}");
    let sharing = &abnormal["account_sharing"];
    assert_eq!(sharing["flagged"], 1, "{abnormal}");
    assert_eq!(sharing["users"][0]["user_id"], "u7");
    assert_eq!(sharing["users"][0]["networks"], 3);
    assert_eq!(sharing["users"][0]["events"].as_array().unwrap().len(), 3);
    assert_eq!(sharing["users"][0]["activity"], "/v1/users/u7/events");
    let (status, activity) = s.get("/v1/users/u7/events").await;
    assert_eq!(
        (status, activity["events"].as_array().unwrap().len()),
        (200, 3)
    );
    // The periodic check sets the metric the abnormal_users alarm watches.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = s.text("/metrics").await;
        if metrics.contains("tracklake_flagged_users{kind=\"account_sharing\"} 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no flagged-users metric: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, alarms) = s.get("/v1/alarms").await;
    assert!(
        alarms["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "abnormal_users"),
        "{alarms}"
    );

    // Deleting u4 takes them out of the funnel.
    let location = s.delete_user("u4").await;
    wait_done(&s, &location).await;
    let (_, funnel) = s.get(&query).await;
    assert_eq!(users(&funnel), [4, 1, 1], "{funnel}");

    // Bad parameters: 400 naming the field.
    for (path, field) in [
        ("/v1/reports/funnel", "steps"),
        ("/v1/reports/funnel?steps=a&within=soon", "within"),
        ("/v1/reports/funnel?steps=a&breakdown=password", "breakdown"),
        ("/v1/reports/funnel?steps=a&step=b", "parameters"),
        ("/v1/reports/retention?cohort=login&period=month", "period"),
        ("/v1/reports/abnormal?from=2026-12-02&to=2026-12-01", "from"),
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{path}: {body}"
        );
        assert_eq!(body["error"]["code"], "invalid_parameter");
    }
    let out = Command::new(BIN)
        .args([
            "report",
            "retention",
            "--period",
            "month",
            "--data-dir",
            &data_dir,
            "--url",
            &s.url,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cohort"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.stop();

    // With no server, the CLI opens the data directory itself.
    let local = funnel_cli(&from, &to, &["--format", "json", "--data-dir", &data_dir]);
    let local: Value = serde_json::from_str(&local).unwrap();
    assert_eq!(users(&local), [4, 1, 1]);
}

/// `tracklake report funnel` for steps a, b, c within an hour.
fn funnel_cli(from: &str, to: &str, more: &[&str]) -> String {
    stdout_of(
        Command::new(BIN)
            .args(["report", "funnel", "--steps", "a,b,c", "--within", "1h"])
            .args(["--from", from, "--to", to])
            .args(more),
    )
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}
