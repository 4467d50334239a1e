//! Named reports: SQL whose answer is kept for `max_age` (five minutes by
//! default, the article's dashboard cache) and recomputed on demand when
//! older. Answers are saved under `<data-dir>/reports/`, so a restart serves
//! them without recomputing while they are fresh.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::{Engine, Error, to_json_rows};

fn five_minutes() -> u64 {
    300
}

/// `[query.reports.<name>]` in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    pub sql: String,
    #[serde(default = "five_minutes")]
    pub max_age_secs: u64,
    #[serde(default)]
    pub description: String,
}

/// A computed report, as served and as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub name: String,
    pub description: String,
    pub sql: String,
    pub computed_at: DateTime<Utc>,
    pub max_age_secs: u64,
    pub columns: Value,
    pub rows: Value,
    pub row_count: usize,
    pub truncated: bool,
    pub elapsed_ms: f64,
}

/// The built-in reports. Days are UTC dates; "the last 7 days" is today
/// and the six days before it.
fn built_in() -> BTreeMap<String, ReportConfig> {
    let report = |description: &str, sql: &str| ReportConfig {
        sql: sql.trim().to_owned(),
        max_age_secs: five_minutes(),
        description: description.to_owned(),
    };
    BTreeMap::from([
        ("logins_per_day".into(), report(
            "Logins per day for the last 7 days (the article's goal query)",
            "SELECT CAST(event_at AS DATE) AS day, count(*) AS logins
             FROM events
             WHERE event_type = 'login' AND event_at >= CAST(current_date - INTERVAL '6' DAY AS TIMESTAMP)
             GROUP BY 1 ORDER BY 1",
        )),
        ("events_per_type_per_day".into(), report(
            "Events per type per day for the last 7 days",
            "SELECT CAST(event_at AS DATE) AS day, event_type, count(*) AS events
             FROM events
             WHERE event_at >= CAST(current_date - INTERVAL '6' DAY AS TIMESTAMP)
             GROUP BY 1, 2 ORDER BY 1, 2",
        )),
        ("daily_active_users".into(), report(
            "Distinct users with any event, per day, for the last 30 days",
            "SELECT CAST(event_at AS DATE) AS day, count(DISTINCT user_id) AS users
             FROM events
             WHERE event_at >= CAST(current_date - INTERVAL '29' DAY AS TIMESTAMP)
             GROUP BY 1 ORDER BY 1",
        )),
        ("device_types".into(), report(
            "Events and users per device type for the last 7 days",
            "SELECT device_type, count(*) AS events, count(DISTINCT user_id) AS users
             FROM events
             WHERE event_at >= CAST(current_date - INTERVAL '6' DAY AS TIMESTAMP)
             GROUP BY 1 ORDER BY events DESC, device_type",
        )),
        ("device_os".into(), report(
            "Events and users per operating system for the last 7 days",
            "SELECT coalesce(device_os, 'Other') AS os, count(*) AS events, count(DISTINCT user_id) AS users
             FROM events
             WHERE event_at >= CAST(current_date - INTERVAL '6' DAY AS TIMESTAMP)
             GROUP BY 1 ORDER BY events DESC, os",
        )),
        ("device_browsers".into(), report(
            "Events and users per browser for the last 7 days",
            "SELECT coalesce(device_browser, 'Other') AS browser, count(*) AS events, count(DISTINCT user_id) AS users
             FROM events
             WHERE event_at >= CAST(current_date - INTERVAL '6' DAY AS TIMESTAMP)
             GROUP BY 1 ORDER BY events DESC, browser",
        )),
        ("account_sharing".into(), report(
            "Possible account sharing: users seen from more than 3 IP addresses or 3 devices in one day (last 7 days)",
            "SELECT CAST(event_at AS DATE) AS day, user_id,
                    count(DISTINCT ip_address) AS ip_addresses,
                    count(DISTINCT concat_ws('/', device_type, device_os, device_browser)) AS devices
             FROM events
             WHERE event_at >= CAST(current_date - INTERVAL '6' DAY AS TIMESTAMP)
             GROUP BY 1, 2
             HAVING count(DISTINCT ip_address) > 3
                 OR count(DISTINCT concat_ws('/', device_type, device_os, device_browser)) > 3
             ORDER BY ip_addresses DESC, devices DESC, day, user_id",
        )),
        ("possible_scraping".into(), report(
            "Possible scraping: users whose material-view count in the last 24 hours is at least 10 times the median user's (and at least 50)",
            "WITH per_user AS (
                 SELECT user_id, count(*) AS views
                 FROM events
                 WHERE event_type = 'material-view' AND event_at >= now() - INTERVAL '1' DAY
                 GROUP BY user_id
             ), typical AS (SELECT median(views) AS median_views FROM per_user)
             SELECT user_id, views, median_views,
                    round(CAST(views AS DOUBLE) / median_views, 1) AS times_median
             FROM per_user CROSS JOIN typical
             WHERE views >= 50 AND views >= 10 * median_views
             ORDER BY views DESC, user_id",
        )),
    ])
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no report named {0:?}")]
    NotFound(String),
    #[error("report {name}: {source}")]
    Query { name: String, source: Error },
}

pub struct Reports {
    engine: Arc<Engine>,
    dir: PathBuf,
    defs: BTreeMap<String, ReportConfig>,
    /// One slot per report: holding its lock while computing means a burst
    /// of requests for a stale report computes it once.
    slots: BTreeMap<String, Mutex<Option<Arc<Report>>>>,
}

impl Reports {
    pub fn new(engine: Arc<Engine>, data_dir: &std::path::Path) -> Reports {
        let mut defs = built_in();
        defs.extend(engine.config().reports.clone());
        let slots = defs
            .keys()
            .map(|name| (name.clone(), Mutex::new(None)))
            .collect();
        Reports {
            engine,
            dir: data_dir.join("reports"),
            defs,
            slots,
        }
    }

    /// The reports' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.defs.keys().map(String::as_str)
    }

    /// A report's SQL.
    pub fn sql(&self, name: &str) -> Option<&str> {
        self.defs.get(name).map(|d| d.sql.as_str())
    }

    /// Every report's name, description, SQL and max age.
    pub fn list(&self) -> Value {
        let reports: Vec<Value> = self
            .defs
            .iter()
            .map(|(name, def)| {
                serde_json::json!({
                    "name": name,
                    "description": def.description,
                    "max_age_secs": def.max_age_secs,
                    "sql": def.sql,
                })
            })
            .collect();
        serde_json::json!({ "reports": reports })
    }

    /// The report, computed now if what is kept is older than its max age.
    pub async fn get(&self, name: &str) -> Result<Arc<Report>, ReportError> {
        let (Some(def), Some(slot)) = (self.defs.get(name), self.slots.get(name)) else {
            return Err(ReportError::NotFound(name.to_owned()));
        };
        let mut kept = slot.lock().await;
        if kept.is_none() {
            *kept = self.load(name, def).map(Arc::new);
        }
        let fresh = |r: &Report| {
            let age = Utc::now().signed_duration_since(r.computed_at);
            age.num_milliseconds() >= 0 && (age.num_milliseconds() as u64) < def.max_age_secs * 1000
        };
        if let Some(report) = kept.as_ref().filter(|r| fresh(r)) {
            return Ok(report.clone());
        }
        let query_error = |source| ReportError::Query {
            name: name.to_owned(),
            source,
        };
        let computed_at = Utc::now();
        let answer = self.engine.run(&def.sql).await.map_err(query_error)?;
        let json = to_json_rows(&answer).map_err(|e| query_error(Error::Engine(e.to_string())))?;
        let report = Arc::new(Report {
            name: name.to_owned(),
            description: def.description.clone(),
            sql: def.sql.clone(),
            computed_at,
            max_age_secs: def.max_age_secs,
            columns: json["columns"].clone(),
            rows: json["rows"].clone(),
            row_count: answer.rows,
            truncated: answer.truncated,
            elapsed_ms: json["elapsed_ms"].as_f64().unwrap_or_default(),
        });
        if let Err(e) = self.save(&report) {
            tracing::warn!(report = name, error = %e, "could not keep the report on disk; serving it from memory");
        }
        *kept = Some(report.clone());
        Ok(report)
    }

    /// Drops every kept answer, in memory and on disk, so that the next
    /// request computes afresh (after a user's events were deleted, a kept
    /// answer could still name them).
    pub async fn forget_all(&self) {
        for slot in self.slots.values() {
            *slot.lock().await = None;
        }
        remove_saved(&self.dir);
    }

    /// A saved answer, if it was computed from the same SQL.
    fn load(&self, name: &str, def: &ReportConfig) -> Option<Report> {
        let bytes = std::fs::read(self.dir.join(format!("{name}.json"))).ok()?;
        let report: Report = serde_json::from_slice(&bytes).ok()?;
        (report.sql == def.sql).then_some(report)
    }

    fn save(&self, report: &Report) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{}.json", report.name));
        let staged = path.with_extension("json.tmp");
        std::fs::write(
            &staged,
            serde_json::to_vec(report).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(staged, path)
    }
}

/// Removes the answers saved in `<data_dir>/reports`.
pub fn forget_saved(data_dir: &std::path::Path) {
    remove_saved(&data_dir.join("reports"));
}

fn remove_saved(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|e| e == "json")
            && let Err(error) = std::fs::remove_file(entry.path())
        {
            tracing::warn!(path = %entry.path().display(), %error, "could not remove a saved report");
        }
    }
}
