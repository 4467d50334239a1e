//! Web analytics over the page columns (`path`, `referrer_host`, `utm_*`,
//! `session_id`): visitors and page views per day, top pages, entry and
//! exit pages, referrers, campaigns, sessions, bounce rate, session
//! duration and devices, for a time range (`GET /v1/reports/web`, the
//! dashboard's Web section).
//!
//! A web event is one with a `path` (a page view, or any call made from a
//! page). A visitor is a `user_id` (Segment's and tracklake.js's anonymous
//! id until `identify`). A session is a visitor's run of web events with
//! no gap over 30 minutes and one `session_id` (when the page sends one).
//! Events from bots are left out unless asked for (`bots=include`, or
//! `[analytics] include_bots = true`); how many there were is counted.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;

use super::AnalyticsError;
use super::params::{TimeRange, known};
use crate::{Engine, to_json_rows};

/// Rows in each list (top pages, referrers, …).
pub const TOP: usize = 10;
/// A session ends after this long without an event.
pub const SESSION_GAP_MINUTES: u32 = 30;

/// What a web report covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebSpec {
    #[serde(flatten)]
    pub range: TimeRange,
    /// Whether events from bots count.
    pub include_bots: bool,
}

impl WebSpec {
    /// From `from`, `to` (default: the last 7 days) and `bots`
    /// (`include` or `exclude`; default from the config).
    pub fn parse(
        params: &BTreeMap<String, String>,
        now: DateTime<Utc>,
        include_bots: bool,
    ) -> Result<WebSpec, AnalyticsError> {
        known(params, &["from", "to", "bots"])?;
        let range = TimeRange::parse(
            params.get("from").map(String::as_str),
            params.get("to").map(String::as_str),
            Duration::days(7),
            now,
        )?;
        let include_bots = match params.get("bots").map(|b| b.trim()) {
            None => include_bots,
            Some("include") => true,
            Some("exclude") => false,
            Some(other) => {
                return Err(AnalyticsError::invalid(
                    "bots",
                    format!("{other:?} is neither include nor exclude"),
                ));
            }
        };
        Ok(WebSpec {
            range,
            include_bots,
        })
    }

    /// The web events of the range, as a CTE named `web`, then `sessions`.
    fn ctes(&self) -> String {
        let bots = if self.include_bots {
            ""
        } else {
            " AND NOT device_is_bot"
        };
        let order = "PARTITION BY user_id ORDER BY event_at";
        let first = |column: &str| format!("first_value({column} ORDER BY event_at) AS {column}");
        format!(
            "WITH web AS (\n  SELECT user_id, event_at, event_type, path, referrer_host, utm_source, utm_medium,\n    \
             utm_campaign, session_id, device_type,\n    \
             regexp_replace(regexp_replace(lower(split_part(url, '/', 3)), '^www\\.', ''), ':[0-9]+$', '') AS host\n  \
             FROM events WHERE path IS NOT NULL AND {range}{bots}\n),\n\
             marked AS (\n  SELECT *, CASE WHEN lag(event_at) OVER ({order}) IS NULL\n    \
             OR lag(event_at) OVER ({order}) < event_at - INTERVAL '{SESSION_GAP_MINUTES}' MINUTE\n    \
             OR coalesce(lag(session_id) OVER ({order}), '') <> coalesce(session_id, '')\n    \
             THEN 1 ELSE 0 END AS starts\n  FROM web\n),\n\
             visits AS (\n  SELECT *, sum(starts) OVER ({order} ROWS UNBOUNDED PRECEDING) AS visit FROM marked\n),\n\
             sessions AS (\n  SELECT user_id, visit, min(event_at) AS started, max(event_at) AS ended,\n    \
             sum(CASE WHEN event_type = 'page' THEN 1 ELSE 0 END) AS page_views,\n    \
             first_value(path ORDER BY event_at) AS entry_path, last_value(path ORDER BY event_at) AS exit_path,\n    \
             {host}, {referrer}, {source}, {medium}, {campaign}\n  \
             FROM visits GROUP BY user_id, visit\n)\n",
            range = self.range.sql("event_at"),
            host = first("host"),
            referrer = first("referrer_host"),
            source = first("utm_source"),
            medium = first("utm_medium"),
            campaign = first("utm_campaign"),
        )
    }

    /// Each part of the report and its SQL.
    pub fn queries(&self) -> Vec<(&'static str, String)> {
        let ctes = self.ctes();
        let page = "sum(CASE WHEN event_type = 'page' THEN 1 ELSE 0 END)";
        let parts: [(&str, String); 8] = [
            (
                "summary",
                "SELECT count(DISTINCT user_id) AS visitors, count(*) AS sessions,\n  \
                 coalesce(sum(page_views), 0) AS page_views,\n  \
                 avg(CASE WHEN page_views <= 1 THEN 1.0 ELSE 0.0 END) AS bounce_rate,\n  \
                 avg(CAST(CAST(ended AS BIGINT) - CAST(started AS BIGINT) AS DOUBLE) / 1e6) AS avg_session_seconds\n\
                 FROM sessions"
                    .into(),
            ),
            (
                "per_day",
                format!(
                    "SELECT CAST(event_at AS DATE) AS day, count(DISTINCT user_id) AS visitors, {page} AS page_views\n\
                     FROM web GROUP BY 1 ORDER BY 1"
                ),
            ),
            (
                "top_pages",
                format!(
                    "SELECT path, count(*) AS page_views, count(DISTINCT user_id) AS visitors\n\
                     FROM web WHERE event_type = 'page' GROUP BY path ORDER BY page_views DESC, path LIMIT {TOP}"
                ),
            ),
            (
                "entry_pages",
                format!(
                    "SELECT entry_path AS path, count(*) AS sessions,\n  \
                     avg(CASE WHEN page_views <= 1 THEN 1.0 ELSE 0.0 END) AS bounce_rate\n\
                     FROM sessions GROUP BY 1 ORDER BY sessions DESC, path LIMIT {TOP}"
                ),
            ),
            (
                "exit_pages",
                format!(
                    "SELECT exit_path AS path, count(*) AS sessions\n\
                     FROM sessions GROUP BY 1 ORDER BY sessions DESC, path LIMIT {TOP}"
                ),
            ),
            (
                "referrers",
                format!(
                    "SELECT CASE WHEN referrer_host IS NULL OR referrer_host = host THEN '(direct)'\n  \
                     ELSE referrer_host END AS referrer, count(*) AS sessions, count(DISTINCT user_id) AS visitors\n\
                     FROM sessions GROUP BY 1 ORDER BY sessions DESC, referrer LIMIT {TOP}"
                ),
            ),
            (
                "campaigns",
                format!(
                    "SELECT utm_source, utm_medium, utm_campaign, count(*) AS sessions,\n  \
                     count(DISTINCT user_id) AS visitors\n\
                     FROM sessions WHERE utm_source IS NOT NULL OR utm_medium IS NOT NULL OR utm_campaign IS NOT NULL\n\
                     GROUP BY 1, 2, 3 ORDER BY sessions DESC, 1, 2, 3 LIMIT {TOP}"
                ),
            ),
            (
                "devices",
                format!(
                    "SELECT device_type, count(DISTINCT user_id) AS visitors, {page} AS page_views\n\
                     FROM web GROUP BY 1 ORDER BY visitors DESC, device_type LIMIT {TOP}"
                ),
            ),
        ];
        let mut queries: Vec<(&'static str, String)> = parts
            .into_iter()
            .map(|(name, select)| (name, format!("{ctes}{select}")))
            .collect();
        // Bots are counted whether or not the rest includes them: over the
        // events, not the web CTE.
        queries.push((
            "bots",
            format!(
                "SELECT coalesce(device_bot, 'crawler') AS kind, coalesce(device_browser, 'unknown') AS name,\n  \
                 count(*) AS events\n\
                 FROM events WHERE device_is_bot AND {}\n\
                 GROUP BY 1, 2 ORDER BY events DESC, kind, name LIMIT {TOP}",
                self.range.sql("event_at")
            ),
        ));
        queries
    }
}

/// The report: each part's rows, and the SQL that made them.
#[derive(Debug, Clone, Serialize)]
pub struct WebReport {
    #[serde(flatten)]
    pub spec: WebSpec,
    /// Visitors, sessions, page views, bounce rate, average session length.
    pub summary: Value,
    /// `per_day`, `top_pages`, `entry_pages`, `exit_pages`, `referrers`,
    /// `campaigns`, `devices`, `bots` (the bots are counted whether or not
    /// the rest includes them).
    #[serde(flatten)]
    pub parts: BTreeMap<&'static str, Value>,
    pub sql: BTreeMap<&'static str, String>,
    pub elapsed_ms: f64,
}

pub async fn run(engine: &Engine, spec: &WebSpec) -> Result<WebReport, AnalyticsError> {
    let started = std::time::Instant::now();
    let mut parts = BTreeMap::new();
    let mut sql = BTreeMap::new();
    let mut summary = Value::Null;
    for (name, text) in spec.queries() {
        let answer = engine.run(&text).await?;
        let rows = to_json_rows(&answer)
            .map_err(|e| crate::Error::Engine(e.to_string()))?
            .get_mut("rows")
            .map(Value::take)
            .unwrap_or_default();
        match name {
            "summary" => summary = rows.get(0).cloned().unwrap_or_default(),
            _ => {
                parts.insert(name, rows);
            }
        }
        sql.insert(name, text);
    }
    Ok(WebReport {
        spec: spec.clone(),
        summary,
        parts,
        sql,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bots_are_left_out_unless_asked_for() {
        let now = Utc::now();
        let default = WebSpec::parse(&params(&[]), now, false).unwrap();
        assert!(!default.include_bots);
        assert_eq!(default.range.to - default.range.from, Duration::days(7));
        let sql = default.queries();
        assert!(sql[0].1.contains("AND NOT device_is_bot"));
        let with = WebSpec::parse(&params(&[("bots", "include")]), now, false).unwrap();
        assert!(!with.queries()[0].1.contains("device_is_bot"));
        assert!(
            WebSpec::parse(&params(&[]), now, true)
                .unwrap()
                .include_bots
        );
        let error = WebSpec::parse(&params(&[("bots", "yes")]), now, false).unwrap_err();
        assert!(error.to_string().starts_with("bots:"), "{error}");
        let error = WebSpec::parse(&params(&[("form", "2026-11-01")]), now, false).unwrap_err();
        assert!(error.to_string().contains("unknown parameter"), "{error}");
    }
}
