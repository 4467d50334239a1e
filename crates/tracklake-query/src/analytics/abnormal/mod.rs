//! Abnormal behaviour, as the article meant it: account sharing
//! ([`sharing`]) and scraping ([`scraping`]), each flagged user with the
//! evidence and a link to their activity. `serve` checks every
//! `check_interval_secs` and keeps the counts in `tracklake_flagged_users`,
//! which the `abnormal_users` alarm watches.

pub mod scraping;
pub mod sharing;

use std::net::IpAddr;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use self::scraping::{Count, Population, ScrapingConfig, ScrapingUser};
use self::sharing::{SharingConfig, SharingUser};
use super::params::{TimeRange, quote};
use super::scan;
use super::{AnalyticsError, funnel::median_micros};
use crate::Engine;

/// At most this many flagged users of each kind are listed (the most
/// suspect first); `flagged` counts them all.
pub const MAX_LISTED: usize = 100;
/// Evidence events listed per user.
const MAX_EVENTS: usize = 20;

/// `[analytics]` in the config file: the thresholds, and how often `serve`
/// checks them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbnormalConfig {
    pub sharing: SharingConfig,
    pub scraping: ScrapingConfig,
    /// `serve` runs the check this often (0: never; the report still
    /// answers on request).
    pub check_interval_secs: u64,
    /// Each check covers this many hours back from now.
    pub check_hours: u64,
    /// Whether the web report counts events from bots (it always says how
    /// many there were); `bots=include` asks for them in one report.
    pub include_bots: bool,
}

impl Default for AbnormalConfig {
    fn default() -> Self {
        AbnormalConfig {
            sharing: SharingConfig::default(),
            scraping: ScrapingConfig::default(),
            check_interval_secs: 300,
            check_hours: 24,
            include_bots: false,
        }
    }
}

impl AbnormalConfig {
    /// The settings make sense, or what is wrong with them.
    pub fn check(&self) -> Result<(), String> {
        self.sharing.check()?;
        self.scraping.check()?;
        if self.check_hours == 0 {
            return Err("analytics.check_hours must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SharingAnswer {
    #[serde(flatten)]
    pub config: SharingConfig,
    pub flagged: usize,
    pub users: Vec<SharingUser>,
    pub sql: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScrapingAnswer {
    #[serde(flatten)]
    pub config: ScrapingConfig,
    pub population: Population,
    pub flagged: usize,
    pub users: Vec<ScrapingUser>,
    pub sql: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Abnormal {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub account_sharing: SharingAnswer,
    pub scraping: ScrapingAnswer,
    pub elapsed_ms: f64,
}

/// One event, as evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    pub event_at: DateTime<Utc>,
    pub event_type: String,
    pub ip_address: Option<String>,
    pub device: String,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Ev {
    at: i64,
    ip: Option<IpAddr>,
    device: u32,
    kind: u32,
}

/// A user's events with what evidence needs; devices and event types
/// numbered within the user (a user has few).
#[derive(Default)]
pub(super) struct UserEvents {
    events: Vec<Ev>,
    devices: Vec<Box<str>>,
    kinds: Vec<Box<str>>,
}

fn number(list: &mut Vec<Box<str>>, value: &str) -> u32 {
    match list.iter().position(|v| &**v == value) {
        Some(i) => i as u32,
        None => {
            list.push(value.into());
            (list.len() - 1) as u32
        }
    }
}

impl UserEvents {
    fn rows(&self, range: std::ops::Range<usize>) -> Vec<EventRow> {
        self.events[range]
            .iter()
            .take(MAX_EVENTS)
            .map(|e| EventRow {
                event_at: time(e.at),
                event_type: self.kinds[e.kind as usize].to_string(),
                ip_address: e.ip.map(|ip| ip.to_string()),
                device: self.devices[e.device as usize].to_string(),
            })
            .collect()
    }
}

/// A row per user, their events as `(at, type, address, device)`:
/// [`user_events`] reads them.
fn events_sql(filter: &str) -> String {
    format!(
        "SELECT user_id, array_agg(struct(CAST(event_at AS BIGINT), event_type, ip_address, \
         concat_ws('/', device_type, device_os, device_browser))) AS events \
         FROM events WHERE {filter} GROUP BY user_id"
    )
}

/// Row `user` of a batch of [`events_sql`], sorted by time.
fn user_events(lists: &scan::StructLists, user: usize) -> Result<UserEvents, AnalyticsError> {
    let (at, kinds) = (lists.ints(0)?, lists.texts(1)?);
    let (ips, devices) = (lists.texts(2)?, lists.texts(3)?);
    let mut out = UserEvents::default();
    for i in lists.range(user) {
        let device = number(&mut out.devices, devices.get(i).unwrap_or(""));
        let kind = number(&mut out.kinds, kinds.get(i).unwrap_or(""));
        out.events.push(Ev {
            at: at.value(i),
            ip: ips.get(i).and_then(|ip| ip.parse().ok()),
            device,
            kind,
        });
    }
    out.events
        .sort_unstable_by_key(|e| (e.at, e.ip, e.device, e.kind));
    Ok(out)
}

/// Keeps the [`MAX_LISTED`] highest scores (then user ids in order);
/// returns how many there were.
fn most_suspect<T>(flagged: &mut Vec<T>, key: impl Fn(&T) -> (f64, &String)) -> usize {
    flagged.sort_by(|a, b| {
        let (a, b) = (key(a), key(b));
        b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1))
    });
    let count = flagged.len();
    flagged.truncate(MAX_LISTED);
    count
}

pub(super) fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// Where a user's activity is: the API's feed of their events.
pub(super) fn activity_link(user_id: &str) -> String {
    let encoded: String = user_id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/v1/users/{encoded}/events")
}

pub(crate) async fn run(
    engine: &Engine,
    config: &AbnormalConfig,
    range: &TimeRange,
) -> Result<Abnormal, AnalyticsError> {
    let started = Instant::now();
    let sharing = sharing_answer(engine, &config.sharing, range).await?;
    let scraping = scraping_answer(engine, &config.scraping, range).await?;
    Ok(Abnormal {
        from: range.from,
        to: range.to,
        account_sharing: sharing,
        scraping,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

async fn sharing_answer(
    engine: &Engine,
    config: &SharingConfig,
    range: &TimeRange,
) -> Result<SharingAnswer, AnalyticsError> {
    let sql = events_sql(&range.sql("event_at"));
    let scoring = config.clone();
    let tallies = scan::per_partition(
        engine,
        &sql,
        move |batch, flagged: &mut Vec<SharingUser>| {
            let (ids, lists) = (scan::texts(batch, 0)?, scan::struct_lists(batch, 1)?);
            for user in 0..batch.num_rows() {
                let Some(id) = ids.get(user) else { continue };
                let events = user_events(&lists, user)?;
                flagged.extend(sharing::score(&scoring, id, &events));
            }
            Ok(())
        },
    )
    .await?;
    let mut flagged: Vec<SharingUser> = tallies.into_iter().flatten().collect();
    let count = most_suspect(&mut flagged, |u| (u.score, &u.user_id));
    Ok(SharingAnswer {
        config: config.clone(),
        flagged: count,
        users: flagged,
        sql: config.sql(range),
    })
}

/// A user's views: (user, views, distinct materials, (peak minute, its views)).
type ViewTally = (String, u64, u64, (i64, u64));

async fn scraping_answer(
    engine: &Engine,
    config: &ScrapingConfig,
    range: &TimeRange,
) -> Result<ScrapingAnswer, AnalyticsError> {
    let sql = config.scan_sql(range);
    let tallies = scan::per_partition(engine, &sql, |batch, users: &mut Vec<ViewTally>| {
        let (ids, materials) = (scan::texts(batch, 0)?, scan::ints(batch, 1)?);
        let at = scan::int_lists(batch, 2)?;
        let mut minutes = Vec::new();
        for user in 0..batch.num_rows() {
            let Some(id) = ids.get(user) else { continue };
            minutes.clear();
            minutes.extend(at.row(user).iter().map(|t| t.div_euclid(60_000_000)));
            let (views, peak) = scraping::peak(&mut minutes);
            let materials = u64::try_from(materials.value(user)).unwrap_or(0);
            users.push((id.to_owned(), views, materials, peak));
        }
        Ok(())
    })
    .await?;
    let users: Vec<ViewTally> = tallies.into_iter().flatten().collect();
    let median = |mut values: Vec<i64>| median_micros(&mut values).unwrap_or(0.0);
    let population = Population {
        users: users.len() as u64,
        median_views: median(users.iter().map(|r| r.1 as i64).collect()),
        median_materials: median(users.iter().map(|r| r.2 as i64).collect()),
    };
    let mut flagged: Vec<ScrapingUser> = users
        .iter()
        .filter_map(|(user, views, materials, peak)| {
            scraping::score(config, &population, user, *views, *materials, *peak)
        })
        .collect();
    let count = most_suspect(&mut flagged, |u| (u.score, &u.user_id));
    add_scraping_evidence(engine, config, range, &mut flagged).await?;
    Ok(ScrapingAnswer {
        config: config.clone(),
        population,
        flagged: count,
        users: flagged,
        sql: config.sql(range),
    })
}

/// Values and how many events had each, most first.
fn counts(mut values: Vec<String>) -> Vec<Count> {
    values.sort();
    let mut counts: Vec<Count> = values
        .chunk_by(|a, b| a == b)
        .map(|run| Count {
            value: run[0].clone(),
            events: run.len() as u64,
        })
        .collect();
    counts.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.value.cmp(&b.value)));
    counts.truncate(MAX_EVENTS);
    counts
}

/// The addresses, devices and peak-minute views of the flagged users: one
/// more scan, of their views only.
async fn add_scraping_evidence(
    engine: &Engine,
    config: &ScrapingConfig,
    range: &TimeRange,
    flagged: &mut [ScrapingUser],
) -> Result<(), AnalyticsError> {
    if flagged.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = flagged.iter().map(|u| quote(&u.user_id)).collect();
    let sql = events_sql(&format!(
        "user_id IN ({}) AND event_type = {} AND {}",
        ids.join(", "),
        quote(&config.event_type),
        range.sql("event_at")
    ));
    let tallies = scan::per_partition(
        engine,
        &sql,
        |batch, users: &mut Vec<(String, UserEvents)>| {
            let (ids, lists) = (scan::texts(batch, 0)?, scan::struct_lists(batch, 1)?);
            for user in 0..batch.num_rows() {
                if let Some(id) = ids.get(user) {
                    users.push((id.to_owned(), user_events(&lists, user)?));
                }
            }
            Ok(())
        },
    )
    .await?;
    let mut by_user: HashMap<String, UserEvents> = tallies.into_iter().flatten().collect();
    for flagged in flagged.iter_mut() {
        let Some(user) = by_user.remove(&flagged.user_id) else {
            continue;
        };
        let ips = user
            .events
            .iter()
            .filter_map(|e| e.ip)
            .map(|ip| ip.to_string());
        flagged.ip_addresses = counts(ips.collect());
        let devices = user
            .events
            .iter()
            .map(|e| user.devices[e.device as usize].to_string());
        flagged.devices = counts(devices.collect());
        let minute = flagged.peak_minute.timestamp_micros();
        let start = user.events.partition_point(|e| e.at < minute);
        let end = user.events.partition_point(|e| e.at < minute + 60_000_000);
        flagged.events = user.rows(start..end);
    }
    Ok(())
}
