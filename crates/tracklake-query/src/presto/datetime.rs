//! Presto/Trino date and time functions as Athena users write them.
//!
//! Timestamps keep their zone: a literal `from_iso8601_timestamp('…+02:00')`
//! is a timestamp in `+02:00`, `at_timezone` changes the zone a value is
//! shown and formatted in, and `date_format`, `date_add` and `date` work in
//! the value's own zone, as in Athena. Timestamps are microseconds.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, NaiveDateTime, Offset, TimeZone};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use std::sync::Arc;

use super::Arg;

pub type Micros = Option<i64>;

pub fn timestamp_type(zone: &str) -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(zone.into()))
}

/// The zone of a timestamp type; a timestamp without one is read as UTC
/// (Athena's session zone).
pub fn zone_of(data_type: &DataType) -> Result<Tz> {
    match data_type {
        DataType::Timestamp(_, Some(zone)) => zone
            .parse::<Tz>()
            .map_err(|e| DataFusionError::Execution(format!("time zone {zone:?}: {e}"))),
        _ => Ok("+00:00".parse::<Tz>()?),
    }
}

/// A timestamp or date argument as microseconds since the epoch.
pub fn micros(arg: &Arg) -> Result<(Vec<Micros>, Tz)> {
    let data_type = arg.array.data_type();
    let zone = zone_of(data_type)?;
    let target = match data_type {
        DataType::Timestamp(_, z) => DataType::Timestamp(TimeUnit::Microsecond, z.clone()),
        DataType::Date32 | DataType::Date64 => DataType::Timestamp(TimeUnit::Microsecond, None),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = cast(&arg.array, &DataType::Utf8)?;
            let text = datafusion::common::cast::as_string_array(&text)?;
            let values = text
                .iter()
                .map(|s| {
                    s.map(parse_iso8601)
                        .transpose()
                        .map(|t| t.map(|t| t.timestamp_micros()))
                })
                .collect::<Result<_>>()?;
            return Ok((values, zone));
        }
        other => return exec_err!("expected a timestamp or date, got {other}"),
    };
    let array = cast(&arg.array, &target)?;
    let array = datafusion::common::cast::as_timestamp_microsecond_array(&array)?;
    Ok((array.iter().collect(), zone))
}

pub fn timestamps(values: Vec<Micros>, zone: &str) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone(zone))
}

fn local(micros: i64, zone: &Tz) -> Result<DateTime<Tz>> {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.with_timezone(zone))
        .ok_or_else(|| DataFusionError::Execution(format!("timestamp {micros} µs out of range")))
}

/// ISO 8601 as Trino reads it: a date, or a date and time with an optional
/// offset (none means UTC).
pub fn parse_iso8601(text: &str) -> Result<DateTime<chrono::FixedOffset>> {
    let text = text.trim();
    let utc = chrono::FixedOffset::east_opt(0).expect("zero offset");
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t);
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Ok(t);
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(utc.from_utc_datetime(&t));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight")));
    }
    exec_err!("Invalid format: \"{text}\" is not an ISO 8601 timestamp")
}

/// The zone a constant ISO 8601 text carries, for the result type.
pub fn literal_offset(value: Option<&ScalarValue>) -> String {
    let text = match value {
        Some(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
        ) => s,
        _ => return "UTC".into(),
    };
    match parse_iso8601(text) {
        Ok(t) if t.offset().local_minus_utc() != 0 => t.offset().to_string(),
        _ => "UTC".into(),
    }
}

pub fn from_iso8601_timestamp(text: &Arg, zone: &str) -> Result<ArrayRef> {
    let values = text
        .strings()?
        .iter()
        .map(|s| {
            s.map(parse_iso8601)
                .transpose()
                .map(|t| t.map(|t| t.timestamp_micros()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(timestamps(values, zone))
}

pub fn from_iso8601_date(text: &Arg) -> Result<ArrayRef> {
    let days = text
        .strings()?
        .iter()
        .map(|s| {
            s.map(|s| {
                NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .map(days_since_epoch)
                    .map_err(|_| {
                        DataFusionError::Execution(format!(
                            "Invalid format: \"{s}\" is not an ISO 8601 date"
                        ))
                    })
            })
            .transpose()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Date32Array::from(days)))
}

fn days_since_epoch(day: NaiveDate) -> i32 {
    (day - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

#[cfg(test)]
fn date_of_days(days: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + Duration::days(i64::from(days))
}

/// `to_iso8601`: `2026-11-20T10:00:00.000Z`, `…+02:00`, or a date.
pub fn to_iso8601(value: &Arg) -> Result<ArrayRef> {
    if matches!(value.array.data_type(), DataType::Date32 | DataType::Date64) {
        return Ok(cast(&value.array, &DataType::Utf8)?);
    }
    let has_zone = matches!(value.array.data_type(), DataType::Timestamp(_, Some(_)));
    let (values, zone) = micros(value)?;
    let out = values
        .into_iter()
        .map(|m| {
            m.map(|m| {
                let t = local(m, &zone)?;
                let base = t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string();
                Ok(match (has_zone, t.offset().fix().local_minus_utc()) {
                    (false, _) => base,
                    (true, 0) => format!("{base}Z"),
                    (true, _) => format!("{base}{}", t.format("%:z")),
                })
            })
            .transpose()
        })
        .collect::<Result<StringArray>>()?;
    Ok(Arc::new(out))
}

/// MySQL-style format specifiers (Presto's `date_format`/`date_parse`) as chrono's.
pub fn chrono_format(mysql: &str) -> Result<String> {
    let mut out = String::new();
    let mut chars = mysql.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let spec = match chars.next() {
            Some('a') => "%a",
            Some('b') => "%b",
            Some('c') => "%-m",
            Some('d') => "%d",
            Some('e') => "%-d",
            Some('f') => "%6f",
            Some('H') => "%H",
            Some('h' | 'I') => "%I",
            Some('i') => "%M",
            Some('j') => "%j",
            Some('k') => "%-H",
            Some('l') => "%-I",
            Some('M') => "%B",
            Some('m') => "%m",
            Some('p') => "%p",
            Some('r') => "%I:%M:%S %p",
            Some('S' | 's') => "%S",
            Some('T') => "%H:%M:%S",
            Some('v') => "%V",
            Some('W') => "%A",
            Some('Y') => "%Y",
            Some('y') => "%y",
            Some('%') => "%%",
            Some(other) => return plan_err!("date format specifier %{other} is not supported"),
            None => return plan_err!("date format ends with a lone %"),
        };
        out.push_str(spec);
    }
    Ok(out)
}

pub fn date_format(value: &Arg, format: &Arg) -> Result<ArrayRef> {
    let (values, zone) = micros(value)?;
    let formats = format.strings()?;
    let out = values
        .into_iter()
        .zip(formats.iter())
        .map(|(m, f)| match (m, f) {
            (Some(m), Some(f)) => {
                let t = local(m, &zone)?;
                Ok(Some(t.format(&chrono_format(f)?).to_string()))
            }
            _ => Ok(None),
        })
        .collect::<Result<StringArray>>()?;
    Ok(Arc::new(out))
}

pub fn date_parse(text: &Arg, format: &Arg) -> Result<ArrayRef> {
    let texts = text.strings()?;
    let formats = format.strings()?;
    let out = texts
        .iter()
        .zip(formats.iter())
        .map(|(s, f)| match (s, f) {
            (Some(s), Some(f)) => {
                let chrono = chrono_format(f)?;
                let t = NaiveDateTime::parse_from_str(s, &chrono)
                    .or_else(|_| {
                        NaiveDate::parse_from_str(s, &chrono)
                            .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight"))
                    })
                    .map_err(|e| {
                        DataFusionError::Execution(format!("date_parse({s:?}, {f:?}): {e}"))
                    })?;
                Ok(Some(t.and_utc().timestamp_micros()))
            }
            _ => Ok(None),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(TimestampMicrosecondArray::from(out)))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Micros(i64),
    Months(u32),
}

fn unit(name: &str) -> Result<Unit> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "millisecond" => Unit::Micros(1_000),
        "second" => Unit::Micros(1_000_000),
        "minute" => Unit::Micros(60_000_000),
        "hour" => Unit::Micros(3_600_000_000),
        "day" => Unit::Micros(86_400_000_000),
        "week" => Unit::Micros(7 * 86_400_000_000),
        "month" => Unit::Months(1),
        "quarter" => Unit::Months(3),
        "year" => Unit::Months(12),
        other => return exec_err!("'{other}' is not a valid time unit (millisecond … year)"),
    })
}

/// Adds `n` units in the value's own zone: days keep the wall-clock time
/// across daylight-saving changes, months clamp to the month's last day.
fn add(t: DateTime<Tz>, unit: Unit, n: i64) -> Result<DateTime<Tz>> {
    let overflow = || DataFusionError::Execution("date_add overflows".into());
    let local = t.naive_local();
    let moved = match unit {
        Unit::Micros(step) if step < 86_400_000_000 => {
            return Ok(t + Duration::microseconds(n.checked_mul(step).ok_or_else(overflow)?));
        }
        Unit::Micros(step) => local + Duration::days(n * (step / 86_400_000_000)),
        Unit::Months(step) => {
            let months = n.checked_mul(i64::from(step)).ok_or_else(overflow)?;
            let months_abs =
                Months::new(u32::try_from(months.unsigned_abs()).map_err(|_| overflow())?);
            if months >= 0 {
                local.checked_add_months(months_abs)
            } else {
                local.checked_sub_months(months_abs)
            }
            .ok_or_else(overflow)?
        }
    };
    t.timezone()
        .from_local_datetime(&moved)
        .earliest()
        .ok_or_else(overflow)
}

pub fn date_add(unit_name: &Arg, n: &Arg, value: &Arg) -> Result<ArrayRef> {
    let units = unit_name.strings()?;
    let counts = n.int64s()?;
    let is_date = matches!(value.array.data_type(), DataType::Date32 | DataType::Date64);
    let (values, zone) = micros(value)?;
    let moved = (0..values.len())
        .map(
            |i| match (units.is_valid(i), counts.is_valid(i), values[i]) {
                (true, true, Some(m)) => {
                    let t = add(local(m, &zone)?, unit(units.value(i))?, counts.value(i))?;
                    Ok(Some(t.timestamp_micros()))
                }
                _ => Ok(None),
            },
        )
        .collect::<Result<Vec<_>>>()?;
    if is_date {
        let days: Date32Array = moved
            .iter()
            .map(|m| m.map(|m| (m.div_euclid(86_400_000_000)) as i32))
            .collect();
        return Ok(Arc::new(days));
    }
    let zone_name = match value.array.data_type() {
        DataType::Timestamp(_, Some(z)) => z.to_string(),
        _ => return Ok(Arc::new(TimestampMicrosecondArray::from(moved))),
    };
    Ok(timestamps(moved, &zone_name))
}

/// Whole units from `a` to `b`, truncated toward zero, as Trino counts them.
pub fn date_diff(unit_name: &Arg, a: &Arg, b: &Arg) -> Result<ArrayRef> {
    let units = unit_name.strings()?;
    let (from, zone_a) = micros(a)?;
    let (to, zone_b) = micros(b)?;
    let out = (0..from.len())
        .map(|i| match (units.is_valid(i), from[i], to[i]) {
            (true, Some(x), Some(y)) => Ok(Some(match unit(units.value(i))? {
                Unit::Micros(step) => (y - x) / step,
                Unit::Months(step) => {
                    months_between(local(x, &zone_a)?, local(y, &zone_b)?) / i64::from(step)
                }
            })),
            _ => Ok(None),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Int64Array::from(out)))
}

fn months_between(a: DateTime<Tz>, b: DateTime<Tz>) -> i64 {
    let (a, b) = (a.naive_local(), b.naive_local());
    let mut months =
        i64::from(b.year() - a.year()) * 12 + i64::from(b.month()) - i64::from(a.month());
    let rest = |t: NaiveDateTime| (t.day(), t.time());
    if months > 0 && rest(b) < rest(a) {
        months -= 1;
    } else if months < 0 && rest(b) > rest(a) {
        months += 1;
    }
    months
}

pub fn from_unixtime(seconds: &Arg, zone: &str) -> Result<ArrayRef> {
    let seconds = cast(&seconds.array, &DataType::Float64)?;
    let seconds = datafusion::common::cast::as_float64_array(&seconds)?;
    let values = seconds
        .iter()
        .map(|s| s.map(|s| (s * 1e6).round() as i64))
        .collect();
    Ok(timestamps(values, zone))
}

pub fn to_unixtime(value: &Arg) -> Result<ArrayRef> {
    let (values, _) = micros(value)?;
    let out: Float64Array = values.iter().map(|m| m.map(|m| m as f64 / 1e6)).collect();
    Ok(Arc::new(out))
}

/// The same instants, shown in another zone.
pub fn at_timezone(value: &Arg, zone: &str) -> Result<ArrayRef> {
    zone.parse::<Tz>()?;
    let (values, _) = micros(value)?;
    Ok(timestamps(values, zone))
}

/// `date(x)`: the calendar date of a timestamp in its zone, or of a date text.
pub fn date(value: &Arg) -> Result<ArrayRef> {
    match value.array.data_type() {
        DataType::Date32 => Ok(value.array.clone()),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let texts = value.strings()?;
            let days = texts
                .iter()
                .map(|s| {
                    s.map(|s| parse_iso8601(s).map(|t| days_since_epoch(t.date_naive())))
                        .transpose()
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Arc::new(Date32Array::from(days)))
        }
        _ => {
            let (values, zone) = micros(value)?;
            let days = values
                .into_iter()
                .map(|m| {
                    m.map(|m| local(m, &zone).map(|t| days_since_epoch(t.date_naive())))
                        .transpose()
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Arc::new(Date32Array::from(days)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_formats_become_chrono_formats() {
        assert_eq!(
            chrono_format("%Y-%m-%d %H:%i:%s").unwrap(),
            "%Y-%m-%d %H:%M:%S"
        );
        assert_eq!(chrono_format("%W, %M %e").unwrap(), "%A, %B %-d");
        assert!(chrono_format("%Q").is_err());
    }

    #[test]
    fn months_between_counts_whole_months() {
        let z: Tz = "+00:00".parse().unwrap();
        let t = |s: &str| parse_iso8601(s).unwrap().with_timezone(&z);
        assert_eq!(
            months_between(t("2026-01-31T00:00:00Z"), t("2026-02-28T00:00:00Z")),
            0
        );
        assert_eq!(
            months_between(t("2026-01-15T00:00:00Z"), t("2026-03-15T00:00:00Z")),
            2
        );
        assert_eq!(
            months_between(t("2026-03-15T00:00:00Z"), t("2026-01-16T00:00:00Z")),
            -1
        );
    }

    #[test]
    fn days_round_trip() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        assert_eq!(date_of_days(days_since_epoch(d)), d);
    }
}
