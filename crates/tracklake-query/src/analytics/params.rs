//! The parameters every report shares: a time range and durations, parsed
//! with errors that name the parameter and the rule, and written as SQL.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use serde::Serialize;

use super::AnalyticsError;

/// `[from, to]`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl TimeRange {
    /// `from` and `to` as RFC 3339 times or `YYYY-MM-DD` dates (a `from`
    /// date is its first microsecond, a `to` date its last). A missing
    /// `to` is `now`; a missing `from` is `default` before `to`.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        default: Duration,
        now: DateTime<Utc>,
    ) -> Result<TimeRange, AnalyticsError> {
        let to = match to {
            Some(text) => instant("to", text, true)?,
            None => now,
        };
        let from = match from {
            Some(text) => instant("from", text, false)?,
            None => to - default,
        };
        if from > to {
            return Err(AnalyticsError::invalid(
                "from",
                format!("from ({from}) is after to ({to})"),
            ));
        }
        Ok(TimeRange { from, to })
    }

    pub fn from_micros(&self) -> i64 {
        self.from.timestamp_micros()
    }

    pub fn to_micros(&self) -> i64 {
        self.to.timestamp_micros()
    }

    /// `event_at >= TIMESTAMP '…' AND event_at <= TIMESTAMP '…'`.
    pub fn sql(&self, column: &str) -> String {
        format!(
            "{column} >= {} AND {column} <= {}",
            timestamp(self.from),
            timestamp(self.to)
        )
    }
}

/// A timestamp literal both Athena and DataFusion read as UTC.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    format!("TIMESTAMP '{}'", at.format("%Y-%m-%d %H:%M:%S%.6f"))
}

fn instant(
    field: &'static str,
    text: &str,
    end_of_day: bool,
) -> Result<DateTime<Utc>, AnalyticsError> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let time = if end_of_day {
            NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).expect("a valid time")
        } else {
            NaiveTime::MIN
        };
        return Ok(day.and_time(time).and_utc());
    }
    Err(AnalyticsError::invalid(
        field,
        format!(
            "{text:?} is not a time: give RFC 3339 (2026-11-30T08:00:00Z) or a date (2026-11-30)"
        ),
    ))
}

/// `90s`, `30m`, `2h`, `14d`, `1w`, or a number of seconds.
pub fn parse_duration(field: &'static str, text: &str) -> Result<Duration, AnalyticsError> {
    let text = text.trim();
    let bad = || {
        AnalyticsError::invalid(
            field,
            format!(
                "{text:?} is not a duration: give a positive number with s, m, h, d or w (30m, 2h, 14d)"
            ),
        )
    };
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    if n <= 0 || n > 3650 * 86_400 / seconds {
        return Err(AnalyticsError::invalid(
            field,
            format!("{text:?} must be more than 0 and at most 10 years"),
        ));
    }
    Ok(Duration::seconds(n * seconds))
}

/// Refuses a parameter the report does not take (a typo would otherwise
/// be ignored silently).
pub(crate) fn known(
    params: &std::collections::BTreeMap<String, String>,
    allowed: &[&str],
) -> Result<(), AnalyticsError> {
    match params.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(AnalyticsError::Invalid {
            field: "parameters",
            message: format!(
                "unknown parameter {key:?}: this report takes {}",
                allowed.join(", ")
            ),
        }),
        None => Ok(()),
    }
}

/// A text as an SQL string literal.
pub(crate) fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Event type names: present, not too many, each of sane length.
pub(crate) fn event_types(
    field: &'static str,
    text: &str,
    max: usize,
) -> Result<Vec<String>, AnalyticsError> {
    let names: Vec<String> = text.split(',').map(|s| s.trim().to_owned()).collect();
    if names.iter().any(String::is_empty) {
        return Err(AnalyticsError::invalid(
            field,
            "give event types separated by commas, none empty (login,material-view)",
        ));
    }
    if names.len() > max {
        return Err(AnalyticsError::invalid(
            field,
            format!("at most {max} event types, got {}", names.len()),
        ));
    }
    if let Some(long) = names.iter().find(|n| n.len() > 128) {
        return Err(AnalyticsError::invalid(
            field,
            format!(
                "{:?}… is longer than an event type can be (128 bytes)",
                long.chars().take(32).collect::<String>()
            ),
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let now = "2026-12-03T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let r = TimeRange::parse(None, None, Duration::days(7), now).unwrap();
        assert_eq!(r.to, now);
        assert_eq!(r.from, now - Duration::days(7));
        let r = TimeRange::parse(
            Some("2026-11-01"),
            Some("2026-11-30"),
            Duration::days(7),
            now,
        )
        .unwrap();
        assert_eq!(r.from.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(
            r.to_micros() + 1,
            "2026-12-01T00:00:00Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
                .timestamp_micros()
        );
        assert_eq!(
            r.sql("event_at"),
            "event_at >= TIMESTAMP '2026-11-01 00:00:00.000000' AND event_at <= TIMESTAMP '2026-11-30 23:59:59.999999'"
        );
        let e = TimeRange::parse(
            Some("2026-12-02"),
            Some("2026-12-01"),
            Duration::days(7),
            now,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("from: "), "{e}");
        let e = TimeRange::parse(Some("yesterday"), None, Duration::days(7), now).unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("within", "2h").unwrap(), Duration::hours(2));
        assert_eq!(
            parse_duration("within", "90").unwrap(),
            Duration::seconds(90)
        );
        assert_eq!(parse_duration("within", "14d").unwrap(), Duration::days(14));
        assert_eq!(parse_duration("within", "1w").unwrap(), Duration::days(7));
        for bad in ["", "0s", "-1h", "2 hours", "h", "99999w"] {
            let e = parse_duration("within", bad).unwrap_err();
            assert!(e.to_string().starts_with("within: "), "{bad}: {e}");
        }
    }

    #[test]
    fn quoting_and_types() {
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(event_types("steps", "a, b", 3).unwrap(), ["a", "b"]);
        assert!(event_types("steps", "a,,b", 3).is_err());
        assert!(event_types("steps", "a,b,c,d", 3).is_err());
        // Cut where a character ends, not at a byte.
        let long = "é".repeat(100);
        let e = event_types("steps", &long, 3).unwrap_err();
        assert!(e.to_string().contains(&"é".repeat(32)), "{e}");
    }
}
