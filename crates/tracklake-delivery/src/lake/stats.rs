//! Per-file statistics for the Delta log, read off a Parquet file's footer:
//! the row count and, for the columns readers filter on, the smallest and
//! largest value and the null count. Engines (tracklake's SQL, Spark,
//! Trino, DuckDB through a snapshot's file list) skip files with them;
//! deletion skips files whose `user_id` range cannot hold the user.

use std::collections::HashMap;

use chrono::DateTime;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// The columns statistics are kept for (`delta.dataSkippingStatsColumns`).
pub const STATS_COLUMNS: [&str; 5] = [
    "event_id",
    "user_id",
    "event_type",
    "event_at",
    "received_at",
];

/// Delta truncates string statistics to this many characters: a longer
/// minimum is cut (still a lower bound); a longer maximum is left out.
const MAX_STRING_STAT: usize = 32;

/// A file's statistics, as the Delta protocol writes them (`stats`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileStats {
    pub num_records: u64,
    #[serde(default)]
    pub min_values: HashMap<String, Value>,
    #[serde(default)]
    pub max_values: HashMap<String, Value>,
    #[serde(default)]
    pub null_count: HashMap<String, u64>,
}

impl FileStats {
    /// The statistics of a Parquet file of the lake's schema.
    pub fn of_parquet(file: &bytes::Bytes) -> Result<FileStats, Error> {
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(file)
            .map_err(Error::Parquet)?;
        Ok(Self::of_metadata(&metadata))
    }

    fn of_metadata(metadata: &ParquetMetaData) -> FileStats {
        let mut stats = FileStats {
            num_records: metadata.file_metadata().num_rows().max(0) as u64,
            ..FileStats::default()
        };
        let schema = metadata.file_metadata().schema_descr();
        for name in STATS_COLUMNS {
            let Some(index) = (0..schema.num_columns()).find(|i| schema.column(*i).name() == name)
            else {
                continue;
            };
            let mut column = ColumnRange::default();
            for group in metadata.row_groups() {
                column.add(group.column(index).statistics());
            }
            if !column.nulls_unknown {
                stats.null_count.insert(name.to_owned(), column.nulls);
            }
            if stats.num_records == 0 || column.unknown {
                continue;
            }
            if let Some(min) = column.min.and_then(|v| v.min_json()) {
                stats.min_values.insert(name.to_owned(), min);
            }
            if let Some(max) = column.max.and_then(|v| v.max_json()) {
                stats.max_values.insert(name.to_owned(), max);
            }
        }
        stats
    }

    /// As the Add action's `stats` text.
    pub fn to_json(&self) -> Result<String, Error> {
        serde_json::to_string(self).map_err(Error::EncodeJson)
    }

    /// Reads an Add action's `stats` text (`None` if it is not ours to read).
    pub fn parse(text: &str) -> Option<FileStats> {
        serde_json::from_str(text).ok()
    }

    /// The smallest and largest value of a string column, when both are known.
    pub fn text_range(&self, column: &str) -> Option<(&str, &str)> {
        let min = self.min_values.get(column)?.as_str()?;
        let max = self.max_values.get(column)?.as_str()?;
        Some((min, max))
    }
}

/// One value of a column statistic.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum StatValue {
    Text(String),
    /// A timestamp in microseconds (UTC).
    Micros(i64),
}

impl StatValue {
    fn min_json(self) -> Option<Value> {
        match self {
            StatValue::Text(s) => Some(Value::from(
                s.chars().take(MAX_STRING_STAT).collect::<String>(),
            )),
            StatValue::Micros(v) => timestamp_json(v),
        }
    }

    fn max_json(self) -> Option<Value> {
        match self {
            StatValue::Text(s) if s.chars().count() > MAX_STRING_STAT => None,
            StatValue::Text(s) => Some(Value::from(s)),
            // Truncated to milliseconds, as Delta writers do; readers allow
            // for the cut microseconds.
            StatValue::Micros(v) => timestamp_json(v),
        }
    }
}

/// Delta's JSON form of a timestamp statistic: ISO 8601, milliseconds, UTC.
fn timestamp_json(micros: i64) -> Option<Value> {
    let at = DateTime::from_timestamp_micros(micros)?;
    Some(Value::from(at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()))
}

/// A column's range over the row groups seen so far.
#[derive(Default)]
struct ColumnRange {
    min: Option<StatValue>,
    max: Option<StatValue>,
    nulls: u64,
    nulls_unknown: bool,
    /// A row group without exact statistics: the range is not known.
    unknown: bool,
}

impl ColumnRange {
    fn add(&mut self, statistics: Option<&Statistics>) {
        let Some(s) = statistics else {
            self.unknown = true;
            self.nulls_unknown = true;
            return;
        };
        match s.null_count_opt() {
            Some(n) => self.nulls += n,
            None => self.nulls_unknown = true,
        }
        let (min, max) = match s {
            Statistics::ByteArray(v) => (
                v.min_opt()
                    .and_then(|b| b.as_utf8().ok())
                    .map(|s| StatValue::Text(s.to_owned())),
                v.max_opt()
                    .and_then(|b| b.as_utf8().ok())
                    .map(|s| StatValue::Text(s.to_owned())),
            ),
            Statistics::Int64(v) => (
                v.min_opt().copied().map(StatValue::Micros),
                v.max_opt().copied().map(StatValue::Micros),
            ),
            _ => (None, None),
        };
        if !s.min_is_exact() || !s.max_is_exact() {
            self.unknown = true;
        }
        // A row group of nulls only has no range; any other missing bound
        // makes the file's range unknown.
        match (min, max) {
            (Some(min), Some(max)) => {
                if self.min.as_ref().is_none_or(|m| min < *m) {
                    self.min = Some(min);
                }
                if self.max.as_ref().is_none_or(|m| max > *m) {
                    self.max = Some(max);
                }
            }
            _ => self.unknown = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_milliseconds_in_utc() {
        assert_eq!(
            timestamp_json(1_764_288_000_123_456),
            Some(Value::from("2025-11-28T00:00:00.123Z"))
        );
    }

    #[test]
    fn long_text_keeps_a_cut_minimum_and_no_maximum() {
        let long = "x".repeat(40);
        assert_eq!(
            StatValue::Text(long.clone()).min_json(),
            Some(Value::from("x".repeat(32)))
        );
        assert_eq!(StatValue::Text(long).max_json(), None);
    }
}
