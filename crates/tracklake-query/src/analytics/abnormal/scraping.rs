//! Scraping: one user reading far more, far faster or far more widely than
//! the others. Over the views (`event_type`, `material-view` by default) in
//! the range, per user: the views, the distinct materials (the property
//! `material_property`), and the most views in one UTC minute. The
//! population's medians are over the users with at least one view (the
//! mean of the two middle values for an even count). A user is flagged when
//! they have at least `min_views` views and `times_median` times the
//! median's views or materials, or `max_per_minute` views in a minute.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::EventRow;
use crate::analytics::params::{TimeRange, quote};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapingConfig {
    /// The event that is one read.
    pub event_type: String,
    /// The property naming what was read.
    pub material_property: String,
    pub min_views: u64,
    pub times_median: f64,
    pub max_per_minute: u64,
}

impl Default for ScrapingConfig {
    fn default() -> Self {
        ScrapingConfig {
            event_type: "material-view".into(),
            material_property: "material_id".into(),
            min_views: 50,
            times_median: 10.0,
            max_per_minute: 30,
        }
    }
}

impl ScrapingConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        };
        if !plain(&self.event_type) || !plain(&self.material_property) {
            return Err("analytics.scraping: event_type and material_property are names of letters, digits, _, - and .".into());
        }
        // NaN is refused with the rest.
        if self.times_median.is_nan() || self.times_median < 1.0 || self.max_per_minute == 0 {
            return Err(
                "analytics.scraping: times_median must be at least 1 and max_per_minute at least 1"
                    .into(),
            );
        }
        Ok(())
    }

    fn material_sql(&self) -> String {
        format!(
            "json_extract_scalar(properties, {})",
            quote(&format!("$.{}", self.material_property))
        )
    }

    /// A row per user: their distinct materials and the time of each view.
    pub(super) fn scan_sql(&self, range: &TimeRange) -> String {
        format!(
            "SELECT user_id, count(DISTINCT material) AS materials, array_agg(CAST(event_at AS BIGINT)) AS at \
             FROM (SELECT user_id, event_at, {} AS material FROM events WHERE event_type = {} AND {}) v \
             GROUP BY user_id",
            self.material_sql(),
            quote(&self.event_type),
            range.sql("event_at")
        )
    }

    /// The flagged users in SQL (Athena and tracklake).
    pub fn sql(&self, range: &TimeRange) -> String {
        format!(
            "WITH v AS (\n  SELECT user_id, event_at, {material} AS material\n  FROM events WHERE event_type = {kind} AND {range}\n),\n\
             per_user AS (\n  SELECT user_id, count(*) AS views, count(DISTINCT material) AS materials FROM v GROUP BY user_id\n),\n\
             per_minute AS (\n  SELECT user_id, max(n) AS peak_per_minute FROM (\n    SELECT user_id, date_trunc('minute', event_at) AS minute, count(*) AS n FROM v GROUP BY 1, 2\n  ) m GROUP BY user_id\n),\n\
             ranked AS (\n  SELECT views, materials,\n    row_number() OVER (ORDER BY views) AS rv,\n    row_number() OVER (ORDER BY materials) AS rm,\n    count(*) OVER () AS n\n  FROM per_user\n),\n\
             typical AS (\n  SELECT avg(CASE WHEN rv IN ((n + 1) / 2, (n + 2) / 2) THEN views END) AS median_views,\n    \
             avg(CASE WHEN rm IN ((n + 1) / 2, (n + 2) / 2) THEN materials END) AS median_materials\n  FROM ranked\n)\n\
             SELECT p.user_id, p.views, p.materials, m.peak_per_minute, t.median_views, t.median_materials\n\
             FROM per_user p JOIN per_minute m ON m.user_id = p.user_id CROSS JOIN typical t\n\
             WHERE (p.views >= {min} AND (p.views >= {times} * t.median_views OR (t.median_materials > 0 AND p.materials >= {times} * t.median_materials)))\n   \
             OR m.peak_per_minute >= {rate}\nORDER BY p.user_id",
            material = self.material_sql(),
            kind = quote(&self.event_type),
            range = range.sql("event_at"),
            min = self.min_views,
            times = self.times_median,
            rate = self.max_per_minute,
        )
    }
}

/// The views, and the busiest minute (the first of the busiest) with its
/// views, from the minute of each view.
pub(super) fn peak(minutes: &mut [i64]) -> (u64, (i64, u64)) {
    minutes.sort_unstable();
    let (mut peak, mut peak_minute) = (0u64, 0i64);
    for run in minutes.chunk_by(|a, b| a == b) {
        if run.len() as u64 > peak {
            (peak, peak_minute) = (run.len() as u64, run[0]);
        }
    }
    (minutes.len() as u64, (peak_minute, peak))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Population {
    /// Users with at least one view.
    pub users: u64,
    pub median_views: f64,
    pub median_materials: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScrapingUser {
    pub user_id: String,
    /// At least 1 when flagged: the largest of views and materials against
    /// `times_median` times the median (once past `min_views`), and the peak
    /// minute against `max_per_minute`.
    pub score: f64,
    /// Which rules flagged the user: `views`, `materials`, `rate`.
    pub reasons: Vec<&'static str>,
    pub views: u64,
    pub materials: u64,
    pub peak_per_minute: u64,
    pub peak_minute: DateTime<Utc>,
    /// The evidence: addresses and devices of the views (most used first),
    /// and the views of the peak minute.
    pub ip_addresses: Vec<Count>,
    pub devices: Vec<Count>,
    pub events: Vec<EventRow>,
    pub activity: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    pub value: String,
    pub events: u64,
}

/// The user's scores against the population; `None` when unflagged.
pub(super) fn score(
    config: &ScrapingConfig,
    population: &Population,
    user_id: &str,
    views: u64,
    materials: u64,
    peak: (i64, u64),
) -> Option<ScrapingUser> {
    let mut reasons = Vec::new();
    let mut score: f64 = 0.0;
    let limit = |median: f64| config.times_median * median;
    if views >= config.min_views {
        let (v, m) = (views as f64, materials as f64);
        score = score.max(v / limit(population.median_views));
        if v >= limit(population.median_views) {
            reasons.push("views");
        }
        // No materials at all (the property is never set): no such rule.
        if population.median_materials > 0.0 {
            score = score.max(m / limit(population.median_materials));
            if m >= limit(population.median_materials) {
                reasons.push("materials");
            }
        }
    }
    score = score.max(peak.1 as f64 / config.max_per_minute as f64);
    if peak.1 >= config.max_per_minute {
        reasons.push("rate");
    }
    if reasons.is_empty() {
        return None;
    }
    Some(ScrapingUser {
        user_id: user_id.to_owned(),
        score,
        reasons,
        views,
        materials,
        peak_per_minute: peak.1,
        peak_minute: super::time(peak.0 * 60_000_000),
        ip_addresses: Vec::new(),
        devices: Vec::new(),
        events: Vec::new(),
        activity: super::activity_link(user_id),
    })
}
