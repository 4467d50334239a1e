//! Reads Prometheus text exposition back into numbers: what the history
//! and the alarms sample. Histogram buckets are left out (their `_sum` and
//! `_count` stay), which keeps the history small.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Only goes up: the history keeps its increase per interval.
    Counter,
    Gauge,
}

/// One reading: series (`name{labels}`) → value, and each series' kind.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    pub values: BTreeMap<String, f64>,
    pub kinds: BTreeMap<String, Kind>,
}

/// The metric name of a series: `a_total{x="y"}` → `a_total`.
pub fn metric_name(series: &str) -> &str {
    series.split('{').next().unwrap_or(series)
}

pub fn parse(text: &str) -> Sample {
    let mut declared: BTreeMap<&str, &str> = BTreeMap::new();
    let mut sample = Sample::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                declared.insert(name, kind.trim());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = metric_name(series);
        if name.ends_with("_bucket") {
            continue;
        }
        let base = name.trim_end_matches("_sum").trim_end_matches("_count");
        let kind = match (declared.get(name), declared.get(base)) {
            (Some(&"counter"), _) => Kind::Counter,
            // A histogram's sum and count only grow.
            (None, Some(&"histogram" | &"summary")) => Kind::Counter,
            _ => Kind::Gauge,
        };
        sample.values.insert(series.to_owned(), value);
        sample.kinds.insert(series.to_owned(), kind);
    }
    sample
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_gauges_and_histogram_totals() {
        let text = "# TYPE a_total counter\na_total{reason=\"x y\"} 3\n# TYPE g gauge\ng 1.5\n\
                    # TYPE h_seconds histogram\nh_seconds_bucket{le=\"0.1\"} 2\nh_seconds_sum 0.3\nh_seconds_count 2\n";
        let s = parse(text);
        assert_eq!(s.values["a_total{reason=\"x y\"}"], 3.0);
        assert_eq!(s.kinds["a_total{reason=\"x y\"}"], Kind::Counter);
        assert_eq!(s.kinds["g"], Kind::Gauge);
        assert_eq!(s.kinds["h_seconds_count"], Kind::Counter);
        assert!(!s.values.keys().any(|k| k.contains("_bucket")));
    }
}
