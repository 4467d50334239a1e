//! Metric values sampled every `interval_secs` (a minute by default) and
//! kept for `retention_hours` (24), in memory and in
//! `<data-dir>/metrics/history.jsonl`, so charts and alarms have history
//! without Prometheus and across restarts. The file is rewritten to the
//! retained window whenever it holds twice that, so it stays bounded.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::text::{Kind, Sample, metric_name};

/// `[metrics]` in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    pub interval_secs: u64,
    pub retention_hours: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            interval_secs: 60,
            retention_hours: 24,
        }
    }
}

/// One sampled line of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    /// Unix seconds.
    pub at: i64,
    pub values: BTreeMap<String, f64>,
}

pub struct History {
    config: HistoryConfig,
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    points: VecDeque<Point>,
    kinds: BTreeMap<String, Kind>,
    lines_in_file: usize,
}

impl History {
    /// Opens the history in `dir`, reading what the file retains.
    pub fn open(dir: PathBuf, config: HistoryConfig) -> std::io::Result<History> {
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("history.jsonl");
        let mut points = VecDeque::new();
        let mut kinds = BTreeMap::new();
        let mut lines = 0;
        if let Ok(file) = std::fs::File::open(&path) {
            for line in std::io::BufReader::new(file).lines() {
                lines += 1;
                // A line cut short by a crash is skipped, not fatal.
                match serde_json::from_str::<Stored>(&line?) {
                    Ok(stored) => {
                        kinds.extend(stored.kinds);
                        points.push_back(stored.point);
                    }
                    Err(e) => tracing::warn!(error = %e, "skipping a damaged metrics history line"),
                }
            }
        }
        let history = History {
            config,
            path,
            inner: Mutex::new(Inner {
                points,
                kinds,
                lines_in_file: lines,
            }),
        };
        history.trim(chrono::Utc::now().timestamp());
        Ok(history)
    }

    pub fn interval_secs(&self) -> u64 {
        self.config.interval_secs.max(1)
    }

    fn retention_secs(&self) -> i64 {
        (self.config.retention_hours.max(1) * 3600) as i64
    }

    fn trim(&self, now: i64) {
        let mut inner = self.inner.lock().expect("history lock");
        let oldest = now - self.retention_secs();
        while inner.points.front().is_some_and(|p| p.at < oldest) {
            inner.points.pop_front();
        }
    }

    /// Adds a reading taken at `at` (Unix seconds) and appends it to the file.
    pub fn record(&self, at: i64, sample: Sample) -> std::io::Result<()> {
        self.trim(at);
        let mut inner = self.inner.lock().expect("history lock");
        let new_kinds: BTreeMap<String, Kind> = sample
            .kinds
            .iter()
            .filter(|(k, _)| !inner.kinds.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        inner.kinds.extend(new_kinds.clone());
        let point = Point {
            at,
            values: sample.values,
        };
        let retained = inner.points.len() + 1;
        if inner.lines_in_file + 1 > 2 * retained.max(16) {
            // Rewrite with what is retained: every kind goes on the first line.
            let kinds = inner.kinds.clone();
            let staged = self.path.with_extension("jsonl.tmp");
            let mut out = std::io::BufWriter::new(std::fs::File::create(&staged)?);
            for (i, p) in inner
                .points
                .iter()
                .chain(std::iter::once(&point))
                .enumerate()
            {
                let stored = Stored {
                    point: p.clone(),
                    kinds: if i == 0 {
                        kinds.clone()
                    } else {
                        BTreeMap::new()
                    },
                };
                serde_json::to_writer(&mut out, &stored)?;
                out.write_all(b"\n")?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&staged, &self.path)?;
            inner.lines_in_file = retained;
        } else {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let stored = Stored {
                point: point.clone(),
                kinds: new_kinds,
            };
            let mut line = serde_json::to_vec(&stored)?;
            line.push(b'\n');
            file.write_all(&line)?;
            inner.lines_in_file += 1;
        }
        inner.points.push_back(point);
        Ok(())
    }

    /// Per-interval values of the series of `names` (a metric name matches
    /// all its labelled series) between `from` and `to` (Unix seconds): a
    /// counter's increase over each interval, a gauge's value.
    pub fn series(&self, names: &[String], from: i64, to: i64) -> Vec<Series> {
        let inner = self.inner.lock().expect("history lock");
        let wanted = |series: &str| {
            names.is_empty()
                || names
                    .iter()
                    .any(|n| n == series || n == metric_name(series))
        };
        let mut out: BTreeMap<String, Series> = BTreeMap::new();
        let mut previous: Option<&Point> = None;
        for point in &inner.points {
            if point.at > to {
                break;
            }
            for (series, value) in &point.values {
                if !wanted(series) {
                    continue;
                }
                let kind = inner.kinds.get(series).copied().unwrap_or(Kind::Gauge);
                let value = match kind {
                    Kind::Gauge => Some(*value),
                    // Against the previous reading: a series new since then,
                    // or one a restart reset, counted up from zero. The very
                    // first reading has nothing to compare with.
                    Kind::Counter => previous.map(|p| match p.values.get(series) {
                        Some(before) if value >= before => value - before,
                        _ => *value,
                    }),
                };
                if let (Some(value), true) = (value, point.at >= from) {
                    out.entry(series.clone())
                        .or_insert_with(|| Series {
                            name: series.clone(),
                            kind,
                            points: Vec::new(),
                        })
                        .points
                        .push((point.at, value));
                }
            }
            previous = Some(point);
        }
        out.into_values().collect()
    }

    /// `GET /v1/metrics/history`.
    pub fn to_json(&self, names: &[String], from: i64, to: i64) -> Value {
        let series: Vec<Value> = self
            .series(names, from, to)
            .into_iter()
            .map(|s| json!({"name": s.name, "kind": s.kind, "points": s.points}))
            .collect();
        json!({"interval_secs": self.interval_secs(), "from": from, "to": to, "series": series})
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    point: Point,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    kinds: BTreeMap<String, Kind>,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub kind: Kind,
    pub points: Vec<(i64, f64)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn sample(received: f64, lag: f64) -> Sample {
        parse(&format!(
            "# TYPE tracklake_events_received_total counter\ntracklake_events_received_total {received}\n\
             # TYPE tracklake_delivery_lag_events gauge\ntracklake_delivery_lag_events {lag}\n"
        ))
    }

    #[test]
    fn counters_become_increases_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = HistoryConfig::default();
        let now = chrono::Utc::now().timestamp();
        {
            let h = History::open(dir.path().into(), config.clone()).unwrap();
            h.record(now - 120, sample(10.0, 5.0)).unwrap();
            h.record(now - 60, sample(25.0, 7.0)).unwrap();
        }
        let h = History::open(dir.path().into(), config).unwrap();
        h.record(now, sample(3.0, 1.0)).unwrap(); // restarted: the counter reset
        let s = h.series(&["tracklake_events_received_total".into()], 0, now);
        assert_eq!(s[0].points, vec![(now - 60, 15.0), (now, 3.0)]);
        let s = h.series(&["tracklake_delivery_lag_events".into()], now - 90, now);
        assert_eq!(s[0].points, vec![(now - 60, 7.0), (now, 1.0)]);
    }

    #[test]
    fn old_points_are_dropped_and_the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let config = HistoryConfig {
            interval_secs: 60,
            retention_hours: 1,
        };
        let h = History::open(dir.path().into(), config.clone()).unwrap();
        let now = chrono::Utc::now().timestamp();
        for i in 0..600 {
            h.record(now - 36_000 + i * 60, sample(i as f64, 0.0))
                .unwrap();
        }
        let lines = std::fs::read_to_string(dir.path().join("history.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert!(lines <= 2 * 61 + 1, "{lines} lines");
        let reopened = History::open(dir.path().into(), config).unwrap();
        let points = &reopened.series(&[], 0, now)[0].points;
        assert!(points.len() <= 61 && points.len() >= 50, "{}", points.len());
    }
}
