//! Funnels, retention and abnormal behaviour over random events (many at
//! the same second, some outside the range), each answer against one worked
//! out by brute force from the events, and each report's SQL (what the docs
//! give for Athena) against the same.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use tracklake_delivery::Format;
use tracklake_event::{Device, Event, UserId};
use tracklake_query::Engine;
use tracklake_query::analytics::abnormal::AbnormalConfig;
use tracklake_query::analytics::funnel::{Breakdown, FunnelSpec};
use tracklake_query::analytics::retention::{Period, RetentionSpec};
use tracklake_query::analytics::{Analytics, TimeRange};

use crate::{Setup, rows};

/// xorshift64*: the same events on every run, so a failure repeats.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const TYPES: [&str; 5] = ["a", "b", "c", "login", "material-view"];
const ADDRESSES: [&str; 9] = [
    "203.0.113.1",
    "203.0.113.2",
    "198.51.100.1",
    "198.51.100.9",
    "192.0.2.7",
    "2001:db8:1::1",
    "2001:db8:1::2",
    "2001:db8:2::1",
    "100.64.0.1",
];
const DEVICES: [(&str, Option<&str>, Option<&str>); 4] = [
    ("desktop", Some("Windows"), Some("Chrome")),
    ("smartphone", Some("iOS"), Some("Mobile Safari")),
    ("tablet", Some("Android"), None),
    ("desktop", Some("Mac OS X"), Some("Firefox")),
];

/// Monday 2026-11-02, 00:00 UTC.
fn base() -> DateTime<Utc> {
    "2026-11-02T00:00:00Z".parse().unwrap()
}

fn event(n: usize, user: &str, kind: &str, at: DateTime<Utc>, rng: &mut Rng) -> Event {
    let (dtype, os, browser) = *rng.pick(&DEVICES);
    let properties = match (kind, rng.below(5)) {
        ("material-view", 0) => serde_json::json!({}),
        ("material-view", _) => serde_json::json!({"material_id": rng.below(6) + 1}),
        _ => serde_json::json!({}),
    };
    Event {
        event_id: format!("e{n:05}"),
        user_id: match user.parse::<i64>() {
            Ok(n) => UserId::Int(n),
            Err(_) => UserId::Text(user.into()),
        },
        event_type: kind.into(),
        event_at: at,
        received_at: at,
        user_agent: None,
        ip_address: Some(rng.pick(&ADDRESSES).parse().unwrap()),
        properties: properties.as_object().unwrap().clone(),
        device: Device {
            kind: dtype.into(),
            os: os.map(Into::into),
            browser: browser.map(Into::into),
            ..Device::unknown()
        },
        web: Default::default(),
        server_assigned_id: false,
    }
}

/// Forty users over 14 days: times on a coarse grid (so many tie), and a
/// scraper reading 80 materials in four minutes.
fn random_events(seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for u in 1..=40 {
        let user = if u % 7 == 0 {
            format!("user-{u}")
        } else {
            u.to_string()
        };
        for _ in 0..rng.below(30) {
            let at = base()
                + Duration::days(rng.below(14) as i64)
                + Duration::minutes(rng.below(8) as i64 * 7)
                + Duration::seconds(rng.below(3) as i64 * 30);
            let kind = *rng.pick(&TYPES);
            out.push(event(out.len(), &user, kind, at, &mut rng));
        }
    }
    for i in 0..80 {
        let at = base() + Duration::days(5) + Duration::seconds(i * 3);
        let mut e = event(out.len(), "scraper", "material-view", at, &mut rng);
        e.properties.insert("material_id".into(), (100 + i).into());
        out.push(e);
    }
    out
}

/// Days 2 to 11, the last microsecond included.
fn range() -> TimeRange {
    TimeRange {
        from: base() + Duration::days(2),
        to: base() + Duration::days(11) - Duration::microseconds(1),
    }
}

fn in_range(e: &Event, r: &TimeRange) -> bool {
    e.event_at >= r.from && e.event_at <= r.to
}

fn user_of(e: &Event) -> String {
    match &e.user_id {
        UserId::Int(n) => n.to_string(),
        UserId::Text(t) => t.clone(),
    }
}

fn by_user(events: &[Event]) -> BTreeMap<String, Vec<&Event>> {
    users_in(events, &range())
}

fn users_in<'a>(events: &'a [Event], r: &TimeRange) -> BTreeMap<String, Vec<&'a Event>> {
    let mut users: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for e in events.iter().filter(|e| in_range(e, r)) {
        users.entry(user_of(e)).or_default().push(e);
    }
    for list in users.values_mut() {
        list.sort_by_key(|e| e.event_at);
    }
    users
}

async fn setup(events: &[Event]) -> (Setup, Arc<Engine>, Analytics) {
    let setup = Setup::new(events, Format::Parquet).await;
    let engine = Arc::new(setup.engine().await);
    let analytics = Analytics::new(engine.clone(), AbnormalConfig::default());
    (setup, engine, analytics)
}

/// Every chain from `start` (times of steps 1..), depth-first.
fn chains(
    events: &[&Event],
    steps: &[&str],
    within: Duration,
    chain: &mut Vec<DateTime<Utc>>,
    out: &mut Vec<Vec<DateTime<Utc>>>,
) {
    out.push(chain.clone());
    if chain.len() == steps.len() {
        return;
    }
    let (first, last) = (chain[0], *chain.last().unwrap());
    for e in events {
        if e.event_type == steps[chain.len()] && e.event_at > last && e.event_at - first <= within {
            chain.push(e.event_at);
            chains(events, steps, within, chain, out);
            chain.pop();
        }
    }
}

/// Users per step, the medians between steps, users per step by group.
type BruteFunnel = (
    Vec<u64>,
    Vec<Option<f64>>,
    BTreeMap<Option<String>, Vec<u64>>,
);

/// The funnel by its definition: per user, the deepest chain; the chain
/// that decides is the earliest first event reaching that depth (then the
/// smallest breakdown value), and from it the earliest times.
fn brute_funnel(
    events: &[Event],
    steps: &[&str],
    within: Duration,
    breakdown: bool,
) -> BruteFunnel {
    let mut reached = vec![0u64; steps.len()];
    let mut gaps: Vec<Vec<i64>> = vec![Vec::new(); steps.len()];
    let mut groups: BTreeMap<Option<String>, Vec<u64>> = BTreeMap::new();
    for events in by_user(events).values() {
        let mut starts: Vec<&&Event> = events.iter().filter(|e| e.event_type == steps[0]).collect();
        starts.sort_by_key(|e| (e.event_at, e.device.kind.clone()));
        let mut best: Option<(Vec<DateTime<Utc>>, String)> = None;
        for start in starts {
            let mut all = Vec::new();
            chains(events, steps, within, &mut vec![start.event_at], &mut all);
            let deepest = all.iter().map(Vec::len).max().unwrap();
            let chain = all
                .into_iter()
                .filter(|c| c.len() == deepest)
                .min()
                .unwrap();
            if best.as_ref().is_none_or(|(b, _)| chain.len() > b.len()) {
                best = Some((chain, start.device.kind.clone()));
            }
        }
        let Some((chain, value)) = best else { continue };
        for k in 0..chain.len() {
            reached[k] += 1;
            if k > 0 {
                gaps[k].push((chain[k] - chain[k - 1]).num_microseconds().unwrap());
            }
        }
        if breakdown {
            let group = groups
                .entry(Some(value))
                .or_insert_with(|| vec![0; steps.len()]);
            for g in group.iter_mut().take(chain.len()) {
                *g += 1;
            }
        }
    }
    let medians = gaps
        .into_iter()
        .map(|mut g| {
            g.sort();
            let n = g.len();
            (n > 0).then(|| (g[(n - 1) / 2] + g[n / 2]) as f64 / 2.0 / 1e6)
        })
        .collect();
    (reached, medians, groups)
}

fn funnel_spec(steps: &[&str], within: Duration, breakdown: Option<&str>) -> FunnelSpec {
    FunnelSpec {
        steps: steps.iter().map(|s| (*s).to_owned()).collect(),
        within,
        range: range(),
        breakdown: breakdown.map(|b| Breakdown::parse(b).unwrap()),
    }
}

#[tokio::test]
async fn funnels_match_brute_force_and_their_sql() {
    let events = random_events(7);
    let (_setup, engine, analytics) = setup(&events).await;
    let cases: [(&[&str], Duration); 5] = [
        (&["a", "b", "c"], Duration::hours(1)),
        (&["a", "b"], Duration::minutes(10)),
        (&["a", "a"], Duration::days(1)),
        (
            &["login", "material-view", "material-view"],
            Duration::hours(2),
        ),
        (&["c", "b", "a", "login"], Duration::days(3)),
    ];
    for (steps, within) in cases {
        let spec = funnel_spec(steps, within, None);
        let answer = analytics.funnel(&spec).await.unwrap();
        let (reached, medians, _) = brute_funnel(&events, steps, within, false);
        let users: Vec<u64> = answer.steps.iter().map(|s| s.users).collect();
        assert_eq!(users, reached, "{steps:?} within {within}");
        assert!(
            reached[0] > reached[steps.len() - 1],
            "{steps:?}: the case tests nothing"
        );
        let got: Vec<Option<f64>> = answer
            .steps
            .iter()
            .map(|s| s.median_secs_from_previous)
            .collect();
        assert_eq!(got[1..], medians[1..], "{steps:?}: medians");
        // The SQL the answer carries gives the same counts.
        let sql = rows(&engine.run(&answer.sql).await.unwrap());
        let expected: Vec<String> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}|{s}|{}", i + 1, reached[i]))
            .collect();
        assert_eq!(sql, expected, "{}", answer.sql);
    }
}

#[tokio::test]
async fn a_breakdown_counts_each_user_once_by_their_first_step() {
    let events = random_events(11);
    let (_setup, _engine, analytics) = setup(&events).await;
    let steps = ["a", "b", "c"];
    let spec = funnel_spec(&steps, Duration::hours(6), Some("device_type"));
    let answer = analytics.funnel(&spec).await.unwrap();
    let (reached, _, groups) = brute_funnel(&events, &steps, Duration::hours(6), true);
    let breakdown = answer.breakdown.unwrap();
    assert_eq!(breakdown.column, "device_type");
    let got: BTreeMap<Option<String>, Vec<u64>> = breakdown
        .groups
        .iter()
        .map(|g| (g.value.clone(), g.steps.iter().map(|s| s.users).collect()))
        .collect();
    assert_eq!(got, groups);
    assert!(got.len() > 1);
    let sums: Vec<u64> = (0..3).map(|k| got.values().map(|g| g[k]).sum()).collect();
    assert_eq!(sums, reached);
}

fn period_start(period: Period, at: DateTime<Utc>) -> NaiveDate {
    let day = at.date_naive();
    match period {
        Period::Day => day,
        Period::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
    }
}

fn brute_retention(
    events: &[Event],
    cohort: &str,
    ret: &str,
    period: Period,
    r: &TimeRange,
) -> BTreeMap<NaiveDate, (u64, Vec<u64>)> {
    let step = match period {
        Period::Day => 1,
        Period::Week => 7,
    };
    let last = period_start(period, r.to);
    let mut out: BTreeMap<NaiveDate, (u64, Vec<u64>)> = BTreeMap::new();
    for events in users_in(events, r).values() {
        let Some(first) = events.iter().find(|e| e.event_type == cohort) else {
            continue;
        };
        let p = period_start(period, first.event_at);
        let columns = ((last - p).num_days() / step + 1) as usize;
        let entry = out.entry(p).or_insert_with(|| (0, vec![0; columns]));
        entry.0 += 1;
        let back: BTreeSet<i64> = events
            .iter()
            .filter(|e| e.event_type == ret)
            .map(|e| (period_start(period, e.event_at) - p).num_days() / step)
            .filter(|&n| n >= 0)
            .collect();
        for n in back {
            entry.1[n as usize] += 1;
        }
    }
    out
}

#[tokio::test]
async fn retention_matches_brute_force_and_its_sql() {
    let events = random_events(3);
    let (_setup, engine, analytics) = setup(&events).await;
    // Over 64 days back: the periods of the events are past the first 64.
    let wide = TimeRange {
        from: range().from - Duration::days(80),
        ..range()
    };
    for (cohort, ret, period, range) in [
        ("login", "material-view", Period::Week, range()),
        ("login", "material-view", Period::Day, range()),
        ("a", "a", Period::Day, range()),
        ("b", "c", Period::Week, range()),
        ("login", "material-view", Period::Day, wide),
    ] {
        let spec = RetentionSpec {
            cohort: cohort.into(),
            returning: ret.into(),
            period,
            range,
        };
        let answer = analytics.retention(&spec).await.unwrap();
        let got: BTreeMap<NaiveDate, (u64, Vec<u64>)> = answer
            .cohorts
            .iter()
            .map(|c| (c.cohort, (c.users, c.returned.clone())))
            .collect();
        let expected = brute_retention(&events, cohort, ret, period, &range);
        assert_eq!(got, expected, "{cohort} → {ret} by {period:?}");
        assert!(expected.len() > 1);
        // The SQL's rows are the triangle's non-zero cells.
        let sql = rows(&engine.run(&answer.sql).await.unwrap());
        let cells: Vec<String> = expected
            .iter()
            .flat_map(|(day, (users, back))| {
                back.iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(move |(i, n)| format!("{day}|{users}|{i}|{n}"))
            })
            .collect();
        assert_eq!(sql, cells, "{}", answer.sql);
    }
}

fn network(ip: IpAddr) -> ipnet::IpNet {
    let bits = if ip.is_ipv4() { 24 } else { 48 };
    ipnet::IpNet::new(ip, bits).unwrap().trunc()
}

fn device(e: &Event) -> String {
    [
        Some(e.device.kind.as_str()),
        e.device.os.as_deref(),
        e.device.browser.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("/")
}

#[tokio::test]
async fn abnormal_users_match_brute_force_and_their_sql() {
    let events = random_events(5);
    let (_setup, engine, analytics) = setup(&events).await;
    let config = AbnormalConfig::default();
    let answer = analytics.abnormal(&range()).await.unwrap();

    // Sharing: the most networks and devices in any window from an event.
    let window = Duration::seconds(config.sharing.window_secs as i64);
    let mut expected: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for (user, events) in by_user(&events) {
        let (mut nets, mut devs) = (0, 0);
        for start in &events {
            let inside: Vec<&&Event> = events
                .iter()
                .filter(|e| e.event_at >= start.event_at && e.event_at <= start.event_at + window)
                .collect();
            let n: BTreeSet<_> = inside
                .iter()
                .filter_map(|e| e.ip_address)
                .map(network)
                .collect();
            let d: BTreeSet<_> = inside.iter().map(|e| device(e)).collect();
            nets = nets.max(n.len() as u32);
            devs = devs.max(d.len() as u32);
        }
        if nets >= config.sharing.min_networks || devs >= config.sharing.min_devices {
            expected.insert(user, (nets, devs));
        }
    }
    let got: BTreeMap<String, (u32, u32)> = answer
        .account_sharing
        .users
        .iter()
        .map(|u| (u.user_id.clone(), (u.networks, u.devices)))
        .collect();
    assert_eq!(got, expected);
    assert!(
        !expected.is_empty() && expected.len() < 40,
        "{} flagged",
        expected.len()
    );
    for user in &answer.account_sharing.users {
        assert!(user.score >= 1.0 && !user.events.is_empty());
        assert!(user.activity.starts_with("/v1/users/"));
    }
    let sql = rows(&engine.run(&answer.account_sharing.sql).await.unwrap());
    let from_sql: Vec<String> = expected
        .iter()
        .map(|(u, (n, d))| format!("{u}|{n}|{d}"))
        .collect();
    assert_eq!(sql, from_sql, "{}", answer.account_sharing.sql);

    // Scraping: views, materials and the busiest minute against the medians.
    let scraping = &config.scraping;
    let mut per_user: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for (user, events) in by_user(&events) {
        let views: Vec<&&Event> = events
            .iter()
            .filter(|e| e.event_type == scraping.event_type)
            .collect();
        if views.is_empty() {
            continue;
        }
        let materials: BTreeSet<String> = views
            .iter()
            .filter_map(|e| e.properties.get("material_id"))
            .map(|m| m.to_string())
            .collect();
        let mut minutes: BTreeMap<i64, u64> = BTreeMap::new();
        for v in &views {
            *minutes
                .entry(v.event_at.timestamp().div_euclid(60))
                .or_default() += 1;
        }
        let peak = *minutes.values().max().unwrap();
        per_user.insert(user, (views.len() as u64, materials.len() as u64, peak));
    }
    let median = |mut v: Vec<u64>| {
        v.sort();
        (v[(v.len() - 1) / 2] + v[v.len() / 2]) as f64 / 2.0
    };
    let median_views = median(per_user.values().map(|p| p.0).collect());
    let median_materials = median(per_user.values().map(|p| p.1).collect());
    assert_eq!(answer.scraping.population.median_views, median_views);
    assert_eq!(
        answer.scraping.population.median_materials,
        median_materials
    );
    let flagged: BTreeMap<String, (u64, u64, u64)> = per_user
        .into_iter()
        .filter(|(_, (views, materials, peak))| {
            let heavy = *views >= scraping.min_views
                && (*views as f64 >= scraping.times_median * median_views
                    || *materials as f64 >= scraping.times_median * median_materials);
            heavy || *peak >= scraping.max_per_minute
        })
        .collect();
    assert_eq!(flagged.keys().collect::<Vec<_>>(), ["scraper"]);
    let got: BTreeMap<String, (u64, u64, u64)> = answer
        .scraping
        .users
        .iter()
        .map(|u| (u.user_id.clone(), (u.views, u.materials, u.peak_per_minute)))
        .collect();
    assert_eq!(got, flagged);
    let scraper = &answer.scraping.users[0];
    assert_eq!(scraper.reasons, ["views", "materials"]);
    assert_eq!(
        scraper.ip_addresses.iter().map(|c| c.events).sum::<u64>(),
        80
    );
    assert_eq!(
        scraper.events.len(),
        20,
        "the peak minute's views, at most 20"
    );
    let sql = rows(&engine.run(&answer.scraping.sql).await.unwrap());
    assert_eq!(sql.len(), 1);
    assert!(sql[0].starts_with("scraper|80|80|20|"), "{sql:?}");
}

#[tokio::test]
async fn bad_parameters_name_the_field() {
    let (_setup, _engine, analytics) = setup(&random_events(1)).await;
    use tracklake_query::analytics::{AnalyticsError, Report};
    for (report, params, field) in [
        (Report::Funnel, vec![], "steps"),
        (Report::Funnel, vec![("steps", "a,,b")], "steps"),
        (
            Report::Funnel,
            vec![("steps", "a,b"), ("within", "soon")],
            "within",
        ),
        (
            Report::Funnel,
            vec![("steps", "a"), ("breakdown", "password")],
            "breakdown",
        ),
        (
            Report::Funnel,
            vec![("steps", "a"), ("from", "2026-12-02"), ("to", "2026-12-01")],
            "from",
        ),
        (
            Report::Funnel,
            vec![("steps", "a"), ("cohort", "x")],
            "parameters",
        ),
        (Report::Retention, vec![], "cohort"),
        (
            Report::Retention,
            vec![("cohort", "login"), ("period", "month")],
            "period",
        ),
        (Report::Abnormal, vec![("to", "later")], "to"),
    ] {
        let params: BTreeMap<String, String> = params
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        match analytics.answer(report, &params).await {
            Err(AnalyticsError::Invalid { field: f, message }) => {
                assert_eq!(f, field, "{params:?}: {message}")
            }
            other => panic!("{params:?}: {other:?}"),
        }
    }
}
