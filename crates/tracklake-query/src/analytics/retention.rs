//! Retention: of the users who first did `cohort` in a period, how many did
//! `return` in each period after.
//!
//! The cohort of period P is the users whose first `cohort` event in
//! `[from, to]` falls in P; `returned[n]` counts those with a `return`
//! event in `[from, to]` that falls in period P + n (n = 0 is P itself, so
//! with `return` = `cohort` it is the whole cohort). Periods are UTC days,
//! or weeks from Monday (as `date_trunc('week', …)`). A cohort's list runs
//! to the period holding `to`.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::params::{self, TimeRange, quote};
use datafusion::arrow::array::Array;

use super::AnalyticsError;
use super::scan;
use crate::Engine;

const DAY_MICROS: i64 = 86_400_000_000;
/// Periods one retention may span (ten years by day).
const MAX_PERIODS: i64 = 3660;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
}

impl Period {
    fn parse(text: &str) -> Result<Period, AnalyticsError> {
        match text.trim() {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            other => Err(AnalyticsError::invalid(
                "period",
                format!("{other:?}: give day or week"),
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
        }
    }

    /// The period holding an instant, numbered from the epoch's.
    fn index(self, micros: i64) -> i64 {
        let day = micros.div_euclid(DAY_MICROS);
        match self {
            Period::Day => day,
            // 1970-01-01 was a Thursday: its week began on Monday, day -3.
            Period::Week => (day + 3).div_euclid(7),
        }
    }

    /// The first day of period `index`.
    fn start(self, index: i64) -> NaiveDate {
        let day = match self {
            Period::Day => index,
            Period::Week => index * 7 - 3,
        };
        DateTime::from_timestamp(day * 86_400, 0)
            .unwrap_or_default()
            .date_naive()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetentionSpec {
    pub cohort: String,
    pub returning: String,
    pub period: Period,
    pub range: TimeRange,
}

impl RetentionSpec {
    /// From `cohort`, `return` (default: the cohort's type), `period`
    /// (default week), `from` and `to` (default: the last 8 weeks, or 30
    /// days by day).
    pub fn parse(
        params: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<RetentionSpec, AnalyticsError> {
        params::known(params, &["cohort", "return", "period", "from", "to"])?;
        let one = |field: &'static str, text: &str| -> Result<String, AnalyticsError> {
            Ok(params::event_types(field, text, 1)?.remove(0))
        };
        let cohort = params.get("cohort").ok_or_else(|| {
            AnalyticsError::invalid(
                "cohort",
                "required: the event type that puts a user in a cohort (cohort=login)",
            )
        })?;
        let cohort = one("cohort", cohort)?;
        let returning = match params.get("return") {
            Some(text) => one("return", text)?,
            None => cohort.clone(),
        };
        let period = match params.get("period") {
            Some(text) => Period::parse(text)?,
            None => Period::Week,
        };
        let default = match period {
            Period::Day => chrono::Duration::days(30),
            Period::Week => chrono::Duration::weeks(8),
        };
        let range = TimeRange::parse(
            params.get("from").map(String::as_str),
            params.get("to").map(String::as_str),
            default,
            now,
        )?;
        let spec = RetentionSpec {
            cohort,
            returning,
            period,
            range,
        };
        if spec.periods() > MAX_PERIODS {
            return Err(AnalyticsError::invalid(
                "from",
                format!(
                    "the range holds {} {}s; at most {MAX_PERIODS}",
                    spec.periods(),
                    period.name()
                ),
            ));
        }
        Ok(spec)
    }

    /// The triangle as one SQL statement (Athena and tracklake): a row per
    /// cohort and period offset with at least one returning user.
    pub fn sql(&self) -> String {
        let (unit, range) = (quote(self.period.name()), self.range.sql("event_at"));
        format!(
            "WITH firsts AS (\n  SELECT user_id, date_trunc({unit}, min(event_at)) AS period\n  FROM events WHERE event_type = {cohort} AND {range}\n  GROUP BY user_id\n),\n\
             cohorts AS (SELECT user_id, period, count(*) OVER (PARTITION BY period) AS users FROM firsts),\n\
             returns AS (\n  SELECT DISTINCT user_id, date_trunc({unit}, event_at) AS period\n  FROM events WHERE event_type = {ret} AND {range}\n)\n\
             SELECT CAST(c.period AS DATE) AS cohort, c.users, date_diff({unit}, c.period, r.period) AS period_offset, count(*) AS returned\n\
             FROM cohorts c JOIN returns r ON r.user_id = c.user_id AND r.period >= c.period\n\
             GROUP BY 1, 2, 3\nORDER BY cohort, period_offset",
            cohort = quote(&self.cohort),
            ret = quote(&self.returning),
        )
    }

    /// The periods of the range, numbered from the one holding `from`.
    fn periods(&self) -> i64 {
        let p = self.period;
        p.index(self.range.to_micros()) - p.index(self.range.from_micros()) + 1
    }

    /// A row per user: their first cohort event, and the periods of their
    /// return events as bits (`w0`: periods 0 to 63 of the range, `w1`
    /// the next 64, …), so that the engine's plain aggregates (`min`,
    /// `bit_or`) do all the grouping.
    fn scan_sql(&self) -> String {
        let types = if self.cohort == self.returning {
            quote(&self.cohort)
        } else {
            format!("{}, {}", quote(&self.cohort), quote(&self.returning))
        };
        let p = self.period;
        let start = p.start(p.index(self.range.from_micros()));
        let start = start
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_micros();
        let length = match p {
            Period::Day => DAY_MICROS,
            Period::Week => 7 * DAY_MICROS,
        };
        let words: Vec<String> = (0..(self.periods() + 63) / 64)
            .map(|w| {
                format!(
                    ", bit_or(CAST(1 AS BIGINT) << (p - {lo})) FILTER (WHERE r AND p >= {lo} AND p < {hi}) AS w{w}",
                    lo = w * 64,
                    hi = w * 64 + 64,
                )
            })
            .collect();
        format!(
            "SELECT min(event_at) FILTER (WHERE c) AS first{} \
             FROM (SELECT user_id, event_at, event_type = {c} AS c, event_type = {r} AS r, \
             (CAST(event_at AS BIGINT) - {start}) / {length} AS p \
             FROM events WHERE event_type IN ({types}) AND {}) e GROUP BY arrow_cast(user_id, 'Utf8View')",
            words.concat(),
            self.range.sql("event_at"),
            c = quote(&self.cohort),
            r = quote(&self.returning),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    /// The first day of the period.
    pub cohort: NaiveDate,
    pub users: u64,
    /// `returned[n]`: users of the cohort back in period P + n.
    pub returned: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retention {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub period: Period,
    pub cohort_event: String,
    pub return_event: String,
    pub cohorts: Vec<Cohort>,
    /// The same in SQL, for Athena or `POST /v1/query`.
    pub sql: String,
    pub elapsed_ms: f64,
}

/// One partition's cohorts, by period.
#[derive(Default)]
struct Tally(BTreeMap<i64, Cohort>);

impl Tally {
    fn cohort(&mut self, period: Period, p: i64, columns: usize) -> &mut Cohort {
        self.0.entry(p).or_insert_with(|| Cohort {
            cohort: period.start(p),
            users: 0,
            returned: vec![0; columns],
        })
    }
}

pub(crate) async fn run(
    engine: &Engine,
    spec: &RetentionSpec,
) -> Result<Retention, AnalyticsError> {
    let started = Instant::now();
    let period = spec.period;
    let last = period.index(spec.range.to_micros());
    let first_period = period.index(spec.range.from_micros());
    let tallies = scan::per_partition(engine, &spec.scan_sql(), move |batch, tally: &mut Tally| {
        let first = scan::micros(batch, 0)?;
        let words: Vec<_> = (1..batch.num_columns())
            .map(|i| scan::ints(batch, i))
            .collect::<Result<_, _>>()?;
        let returned = |user: usize, q: i64| match usize::try_from(q / 64)
            .ok()
            .and_then(|w| words.get(w))
        {
            Some(word) => q >= 0 && word.is_valid(user) && (word.value(user) >> (q % 64)) & 1 == 1,
            None => false,
        };
        for user in 0..batch.num_rows() {
            if first.is_null(user) {
                continue;
            }
            let p = period.index(first.value(user));
            let columns = (last - p + 1).max(1) as usize;
            let cohort = tally.cohort(period, p, columns);
            cohort.users += 1;
            for (n, count) in cohort.returned.iter_mut().enumerate() {
                *count += u64::from(returned(user, p - first_period + n as i64));
            }
        }
        Ok(())
    })
    .await?;
    let mut all = Tally::default();
    for tally in tallies {
        for (p, part) in tally.0 {
            let cohort = all.cohort(period, p, part.returned.len());
            cohort.users += part.users;
            for (n, returned) in part.returned.into_iter().enumerate() {
                cohort.returned[n] += returned;
            }
        }
    }
    Ok(Retention {
        from: spec.range.from,
        to: spec.range.to,
        period: spec.period,
        cohort_event: spec.cohort.clone(),
        return_event: spec.returning.clone(),
        cohorts: all.0.into_values().collect(),
        sql: spec.sql(),
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap().timestamp_micros();
        // 2026-11-30 is a Monday.
        let w = Period::Week.index(at("2026-12-03T10:00:00Z"));
        assert_eq!(Period::Week.start(w).to_string(), "2026-11-30");
        assert_eq!(Period::Week.index(at("2026-11-30T00:00:00Z")), w);
        assert_eq!(Period::Week.index(at("2026-11-29T23:59:59Z")), w - 1);
        let d = Period::Day.index(at("2026-12-03T23:59:59Z"));
        assert_eq!(Period::Day.start(d).to_string(), "2026-12-03");
        assert_eq!(Period::Day.index(at("1969-12-31T23:00:00Z")), -1);
        assert_eq!(
            Period::Week.start(Period::Week.index(0)).to_string(),
            "1969-12-29"
        );
    }
}
