//! Alarms like CloudWatch's: a metric, a statistic over a period, a
//! comparison with a threshold, how many periods must breach, and what
//! missing data means. States are OK, ALARM and INSUFFICIENT_DATA; every
//! transition is logged as a JSON line and POSTed to the webhook (retried).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::history::History;
use crate::names;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    Sum,
    Average,
    Maximum,
    Minimum,
    SampleCount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    #[serde(rename = ">")]
    Greater,
    #[serde(rename = ">=")]
    GreaterOrEqual,
    #[serde(rename = "<")]
    Less,
    #[serde(rename = "<=")]
    LessOrEqual,
}

/// CloudWatch's `TreatMissingData`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingData {
    /// Periods without data are not evaluated; none at all is INSUFFICIENT_DATA.
    #[default]
    Missing,
    Breaching,
    NotBreaching,
    /// Keep the current state.
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Ok,
    Alarm,
    InsufficientData,
}

/// One `[[alarms.rules]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmRule {
    pub name: String,
    /// A metric name (all its labelled series are added up) or one series.
    pub metric: String,
    pub statistic: Statistic,
    pub comparison: Comparison,
    pub threshold: f64,
    pub period_secs: u64,
    pub evaluation_periods: usize,
    #[serde(default)]
    pub missing_data: MissingData,
    #[serde(default)]
    pub description: String,
}

/// `[alarms]` in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmsConfig {
    /// The four built-in rules (delivery failing, delivery lagging,
    /// rejected events spiking, users flagged for abnormal behaviour).
    pub defaults: bool,
    pub rules: Vec<AlarmRule>,
    /// Every transition is POSTed here as JSON.
    pub webhook: Option<String>,
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        AlarmsConfig {
            defaults: true,
            rules: Vec::new(),
            webhook: None,
        }
    }
}

fn default_rules() -> Vec<AlarmRule> {
    let rule =
        |name: &str, metric: &str, statistic, threshold, periods, missing, description: &str| {
            AlarmRule {
                name: name.into(),
                metric: metric.into(),
                statistic,
                comparison: Comparison::Greater,
                threshold,
                period_secs: 60,
                evaluation_periods: periods,
                missing_data: missing,
                description: description.into(),
            }
        };
    vec![
        rule(
            "delivery_failing",
            names::DELIVERY_FAILED_PUTS,
            Statistic::Sum,
            0.0,
            3,
            MissingData::NotBreaching,
            "lake uploads failed in each of the last 3 minutes",
        ),
        rule(
            "delivery_lagging",
            names::DELIVERY_LAG_SECONDS,
            Statistic::Maximum,
            300.0,
            5,
            MissingData::Missing,
            "events waited more than 5 minutes for the lake, 5 minutes running",
        ),
        rule(
            "rejected_spike",
            names::EVENTS_REJECTED,
            Statistic::Sum,
            1000.0,
            1,
            MissingData::NotBreaching,
            "more than 1000 events rejected in a minute",
        ),
        rule(
            "abnormal_users",
            names::FLAGGED_USERS,
            Statistic::Maximum,
            0.0,
            1,
            MissingData::NotBreaching,
            "the abnormal-behaviour check flagged users (GET /v1/reports/abnormal lists them)",
        ),
        rule(
            "disk_low",
            names::DISK_REFUSING,
            Statistic::Maximum,
            0.0,
            1,
            MissingData::NotBreaching,
            "a filesystem tracklake writes to fell under server.min_free_mib: events are refused until space is freed",
        ),
    ]
}

#[derive(Debug, Clone, Serialize)]
struct Status {
    #[serde(flatten)]
    rule: AlarmRule,
    state: State,
    reason: String,
    since: DateTime<Utc>,
    /// The statistic of each evaluated period, oldest first.
    values: Vec<Option<f64>>,
}

pub struct Alarms {
    statuses: Mutex<Vec<Status>>,
    webhook: Option<String>,
    http: reqwest::Client,
}

impl Alarms {
    pub fn new(config: &AlarmsConfig) -> Result<Alarms, String> {
        let mut rules = if config.defaults {
            default_rules()
        } else {
            Vec::new()
        };
        for rule in &config.rules {
            if rule.period_secs == 0 || rule.evaluation_periods == 0 {
                return Err(format!(
                    "alarm {}: period_secs and evaluation_periods must be at least 1",
                    rule.name
                ));
            }
            rules.retain(|r| r.name != rule.name);
            rules.push(rule.clone());
        }
        let now = Utc::now();
        Ok(Alarms {
            statuses: Mutex::new(
                rules
                    .into_iter()
                    .map(|rule| Status {
                        rule,
                        state: State::InsufficientData,
                        reason: "not evaluated yet".into(),
                        since: now,
                        values: Vec::new(),
                    })
                    .collect(),
            ),
            webhook: config.webhook.clone(),
            http: reqwest::Client::new(),
        })
    }

    /// Evaluates every rule over `history` at `now`; returns the transitions.
    pub fn evaluate(&self, history: &History, now: i64) -> Vec<Value> {
        let mut transitions = Vec::new();
        let mut statuses = self.statuses.lock().expect("alarms lock");
        for status in statuses.iter_mut() {
            let rule = &status.rule;
            let period = rule.period_secs as i64;
            let from = now - period * rule.evaluation_periods as i64;
            let series = history.series(std::slice::from_ref(&rule.metric), from + 1, now);
            // Each period's statistic over the (summed) series' values.
            let values: Vec<Option<f64>> = (0..rule.evaluation_periods)
                .map(|i| {
                    let (start, end) = (from + i as i64 * period, from + (i as i64 + 1) * period);
                    let mut by_time: BTreeMap<i64, f64> = BTreeMap::new();
                    for s in &series {
                        for (at, v) in s.points.iter().filter(|(at, _)| *at > start && *at <= end) {
                            *by_time.entry(*at).or_default() += v;
                        }
                    }
                    statistic(rule.statistic, by_time.values().copied().collect())
                })
                .collect();
            let breaching: Vec<Option<bool>> = values
                .iter()
                .map(|v| match (v, rule.missing_data) {
                    (Some(v), _) => Some(compare(rule.comparison, *v, rule.threshold)),
                    (None, MissingData::Breaching) => Some(true),
                    (None, MissingData::NotBreaching) => Some(false),
                    (None, _) => None,
                })
                .collect();
            let evaluated: Vec<bool> = breaching.iter().flatten().copied().collect();
            let next = if evaluated.is_empty() {
                if rule.missing_data == MissingData::Ignore {
                    status.state
                } else {
                    State::InsufficientData
                }
            } else if evaluated.len() == rule.evaluation_periods && evaluated.iter().all(|b| *b) {
                // Every period breached (CloudWatch's M out of N, with M = N).
                State::Alarm
            } else {
                State::Ok
            };
            status.values = values.clone();
            if next != status.state {
                let shown: Vec<String> = values
                    .iter()
                    .map(|v| v.map_or("no data".into(), |v| v.to_string()))
                    .collect();
                let reason = format!(
                    "{} of {} in the last {} periods of {} s: [{}]; alarm when {} {}",
                    serde_json::to_value(rule.statistic)
                        .unwrap_or_default()
                        .as_str()
                        .unwrap_or("?"),
                    rule.metric,
                    rule.evaluation_periods,
                    rule.period_secs,
                    shown.join(", "),
                    serde_json::to_value(rule.comparison)
                        .unwrap_or_default()
                        .as_str()
                        .unwrap_or("?"),
                    rule.threshold
                );
                let at = DateTime::from_timestamp(now, 0).unwrap_or_else(Utc::now);
                let event = json!({
                    "alarm": rule.name,
                    "old_state": status.state,
                    "new_state": next,
                    "reason": reason,
                    "at": at,
                    "metric": rule.metric,
                    "threshold": rule.threshold,
                });
                let (old_name, new_name) = (state_name(status.state), state_name(next));
                if next == State::Alarm {
                    tracing::warn!(alarm = %rule.name, old_state = old_name, new_state = new_name, reason = %reason, "alarm state changed");
                } else {
                    tracing::info!(alarm = %rule.name, old_state = old_name, new_state = new_name, reason = %reason, "alarm state changed");
                }
                status.state = next;
                status.reason = reason;
                status.since = at;
                transitions.push(event);
            }
        }
        transitions
    }

    /// POSTs a transition to the webhook, retrying with backoff.
    pub async fn notify(&self, transition: Value) {
        let Some(url) = &self.webhook else { return };
        for attempt in 0..5u32 {
            match self
                .http
                .post(url)
                .json(&transition)
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => tracing::warn!(
                    status = r.status().as_u16(),
                    attempt,
                    "alarm webhook refused the notification"
                ),
                Err(e) => tracing::warn!(error = %e, attempt, "alarm webhook unreachable"),
            }
            tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
        }
        tracing::error!(alarm = %transition["alarm"], "alarm notification dropped after 5 attempts");
    }

    /// `GET /v1/alarms`.
    pub fn to_json(&self) -> Value {
        let statuses = self.statuses.lock().expect("alarms lock");
        json!({ "alarms": *statuses })
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Ok => "OK",
        State::Alarm => "ALARM",
        State::InsufficientData => "INSUFFICIENT_DATA",
    }
}

fn statistic(statistic: Statistic, values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    Some(match statistic {
        Statistic::Sum => values.iter().sum(),
        Statistic::Average => values.iter().sum::<f64>() / n,
        Statistic::Maximum => values.iter().copied().fold(f64::MIN, f64::max),
        Statistic::Minimum => values.iter().copied().fold(f64::MAX, f64::min),
        Statistic::SampleCount => n,
    })
}

fn compare(comparison: Comparison, value: f64, threshold: f64) -> bool {
    match comparison {
        Comparison::Greater => value > threshold,
        Comparison::GreaterOrEqual => value >= threshold,
        Comparison::Less => value < threshold,
        Comparison::LessOrEqual => value <= threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HistoryConfig, parse};

    fn rule(periods: usize, missing: MissingData) -> AlarmsConfig {
        AlarmsConfig {
            defaults: false,
            rules: vec![AlarmRule {
                name: "failing".into(),
                metric: "failed_total".into(),
                statistic: Statistic::Sum,
                comparison: Comparison::Greater,
                threshold: 0.0,
                period_secs: 60,
                evaluation_periods: periods,
                missing_data: missing,
                description: String::new(),
            }],
            webhook: None,
        }
    }

    fn record(h: &History, at: i64, failed: u64) {
        h.record(
            at,
            parse(&format!(
                "# TYPE failed_total counter\nfailed_total{{stage=\"lake\"}} {failed}\n"
            )),
        )
        .unwrap();
    }

    #[test]
    fn alarm_then_ok_as_the_counter_moves() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path().into(), HistoryConfig::default()).unwrap();
        let alarms = Alarms::new(&rule(2, MissingData::Missing)).unwrap();
        let t0 = Utc::now().timestamp() - 1000;
        record(&h, t0, 0);
        assert!(
            alarms.evaluate(&h, t0).is_empty(),
            "no data: stays INSUFFICIENT_DATA"
        );
        record(&h, t0 + 60, 0);
        let t = alarms.evaluate(&h, t0 + 60);
        assert_eq!(t[0]["new_state"], "OK");
        record(&h, t0 + 120, 4);
        assert!(
            alarms.evaluate(&h, t0 + 120).is_empty(),
            "one breaching period of two"
        );
        record(&h, t0 + 180, 9);
        let t = alarms.evaluate(&h, t0 + 180);
        assert_eq!(
            (t[0]["old_state"].as_str(), t[0]["new_state"].as_str()),
            (Some("OK"), Some("ALARM"))
        );
        record(&h, t0 + 240, 9);
        let t = alarms.evaluate(&h, t0 + 240);
        assert_eq!(t[0]["new_state"], "OK");
        assert_eq!(alarms.to_json()["alarms"][0]["state"], "OK");
    }

    #[test]
    fn missing_data_rules() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path().into(), HistoryConfig::default()).unwrap();
        let now = Utc::now().timestamp();
        let breaching = Alarms::new(&rule(1, MissingData::Breaching)).unwrap();
        assert_eq!(breaching.evaluate(&h, now)[0]["new_state"], "ALARM");
        let not = Alarms::new(&rule(1, MissingData::NotBreaching)).unwrap();
        assert_eq!(not.evaluate(&h, now)[0]["new_state"], "OK");
        let ignore = Alarms::new(&rule(1, MissingData::Ignore)).unwrap();
        assert!(ignore.evaluate(&h, now).is_empty());
        assert!(Alarms::new(&rule(0, MissingData::Missing)).is_err());
    }
}
