//! Funnels: how many users went through steps `a`, `b`, `c`, … in order.
//!
//! A user counts at step k when some events e1 < e2 < … < ek of theirs
//! (strictly later each: events at the same microsecond are not a
//! sequence), ei of the type of step i, all lie in `[from, to]` and
//! ek − e1 ≤ `within`. For one first event e1, taking at each step the
//! earliest event that qualifies reaches as far as any choice can, so a
//! user's depth is the best over their step-1 events of that greedy chain.
//! The chain that decides is the earliest e1 that reaches the user's depth:
//! its times give the medians between steps, and its e1 the user's group in
//! a breakdown (the first-touch value, so groups add up to the total).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use self::chain::{Counts, Ev, best_chain};
use super::AnalyticsError;
use super::params::{self, TimeRange, quote};
use super::scan;
use crate::Engine;

mod chain;

pub(crate) use self::chain::median_micros;

pub const MAX_STEPS: usize = 10;

/// The lake's text columns a funnel can be broken down by; a JSON property
/// is `properties.<key>`.
pub const BREAKDOWN_COLUMNS: [&str; 8] = [
    "device_type",
    "device_os",
    "device_os_version",
    "device_browser",
    "device_browser_version",
    "device_brand",
    "device_model",
    "ip_address",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Breakdown {
    Column(String),
    Property(String),
}

impl Breakdown {
    pub fn parse(text: &str) -> Result<Breakdown, AnalyticsError> {
        let text = text.trim();
        if let Some(key) = text.strip_prefix("properties.") {
            let plain = !key.is_empty()
                && key.len() <= 64
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !plain {
                return Err(AnalyticsError::invalid(
                    "breakdown",
                    format!("{key:?}: a property key of letters, digits, _ and - (at most 64)"),
                ));
            }
            return Ok(Breakdown::Property(key.to_owned()));
        }
        if BREAKDOWN_COLUMNS.contains(&text) {
            return Ok(Breakdown::Column(text.to_owned()));
        }
        Err(AnalyticsError::invalid(
            "breakdown",
            format!(
                "{text:?} is not a column a funnel can be broken down by: {} or properties.<key>",
                BREAKDOWN_COLUMNS.join(", ")
            ),
        ))
    }

    pub fn name(&self) -> String {
        match self {
            Breakdown::Column(c) => c.clone(),
            Breakdown::Property(key) => format!("properties.{key}"),
        }
    }

    fn sql(&self) -> String {
        match self {
            Breakdown::Column(c) => c.clone(),
            Breakdown::Property(key) => {
                format!(
                    "json_extract_scalar(properties, {})",
                    quote(&format!("$.{key}"))
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunnelSpec {
    pub steps: Vec<String>,
    pub within: Duration,
    pub range: TimeRange,
    pub breakdown: Option<Breakdown>,
}

impl FunnelSpec {
    /// From `steps`, `within` (default 1d), `from`, `to` (default: the
    /// last 30 days) and `breakdown`; any other key is refused.
    pub fn parse(
        params: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<FunnelSpec, AnalyticsError> {
        params::known(params, &["steps", "within", "from", "to", "breakdown"])?;
        let steps = params.get("steps").ok_or_else(|| {
            AnalyticsError::invalid(
                "steps",
                "required: the event types of the steps in order (steps=login,material-view)",
            )
        })?;
        let steps = params::event_types("steps", steps, MAX_STEPS)?;
        let within = match params.get("within") {
            Some(text) => params::parse_duration("within", text)?,
            None => Duration::days(1),
        };
        let range = TimeRange::parse(
            params.get("from").map(String::as_str),
            params.get("to").map(String::as_str),
            Duration::days(30),
            now,
        )?;
        let breakdown = params
            .get("breakdown")
            .map(|b| Breakdown::parse(b))
            .transpose()?;
        Ok(FunnelSpec {
            steps,
            within,
            range,
            breakdown,
        })
    }

    /// The distinct event types, in the order of their first step.
    fn kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = Vec::new();
        for step in &self.steps {
            if !kinds.contains(&step.as_str()) {
                kinds.push(step);
            }
        }
        kinds
    }

    fn in_list(&self) -> String {
        self.kinds()
            .iter()
            .map(|k| quote(k))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The step counts as one SQL statement (Athena and tracklake): the
    /// greedy chain from every step-1 event, a join per step.
    pub fn sql(&self) -> String {
        let within = self.within.num_seconds();
        let mut sql = format!(
            "WITH e AS (\n  SELECT user_id, event_type, event_at FROM events\n  WHERE event_type IN ({}) AND {}\n),\n\
             s1 AS (SELECT user_id, event_at AS t1, event_at AS t FROM e WHERE event_type = {})",
            self.in_list(),
            self.range.sql("event_at"),
            quote(&self.steps[0])
        );
        for (i, step) in self.steps.iter().enumerate().skip(1) {
            sql.push_str(&format!(
                ",\ns{n} AS (\n  SELECT s.user_id, s.t1, min(e.event_at) AS t\n  FROM s{i} s JOIN e ON e.user_id = s.user_id AND e.event_type = {step}\n    \
                 AND e.event_at > s.t AND e.event_at <= s.t1 + INTERVAL '{within}' SECOND\n  GROUP BY s.user_id, s.t1\n)",
                n = i + 1,
                step = quote(step),
            ));
        }
        let selects: Vec<String> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                format!(
                    "SELECT {n} AS step, {} AS event_type, count(DISTINCT user_id) AS users FROM s{n}",
                    quote(step),
                    n = i + 1
                )
            })
            .collect();
        sql.push_str(&format!(
            "\n{}\nORDER BY step",
            selects.join("\nUNION ALL ")
        ));
        sql
    }

    /// A row per user: their events in range, each `at * 16 + kind` (so
    /// they sort by time, then step type), in that order
    /// ([`super::sorted_agg`]); with a breakdown, `(packed, value)` pairs
    /// in any order.
    fn scan_sql(&self) -> String {
        let kinds: String = self
            .kinds()
            .iter()
            .enumerate()
            .map(|(i, k)| format!(" WHEN {} THEN {i}", quote(k)))
            .collect();
        let packed = format!("CAST(event_at AS BIGINT) * 16 + CASE event_type{kinds} END");
        let agg = match &self.breakdown {
            Some(b) => format!("array_agg(struct({packed}, {}))", b.sql()),
            None => format!("{}({packed})", super::sorted_agg::NAME),
        };
        format!(
            "SELECT {agg} AS events FROM events WHERE event_type IN ({}) AND {} GROUP BY arrow_cast(user_id, 'Utf8View')",
            self.in_list(),
            self.range.sql("event_at")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub event_type: String,
    pub users: u64,
    /// Of the users at step 1.
    pub conversion: f64,
    /// The median, over the users at this step, of the time from the
    /// previous step (none for step 1).
    pub median_secs_from_previous: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// The breakdown column's value at the user's first step (null when the
    /// event had none).
    pub value: Option<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakdownAnswer {
    pub column: String,
    /// Most users at step 1 first.
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Funnel {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub within_secs: i64,
    pub steps: Vec<Step>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<BreakdownAnswer>,
    /// The step counts in SQL, for Athena or `POST /v1/query`.
    pub sql: String,
    pub elapsed_ms: f64,
}

/// What one partition of the scan adds up.
#[derive(Default)]
struct Tally {
    total: Counts,
    groups: HashMap<Option<String>, Counts>,
}

pub(crate) async fn run(engine: &Engine, spec: &FunnelSpec) -> Result<Funnel, AnalyticsError> {
    let started = Instant::now();
    let all_kinds = spec.kinds();
    let kinds: Vec<u8> = spec
        .steps
        .iter()
        .map(|s| all_kinds.iter().position(|k| k == s).unwrap_or(0) as u8)
        .collect();
    let (n_kinds, steps) = (all_kinds.len(), spec.steps.len());
    let within = spec.within.num_microseconds().unwrap_or(i64::MAX);
    let with_breakdown = spec.breakdown.is_some();
    let tallies = scan::per_partition(engine, &spec.scan_sql(), move |batch, tally: &mut Tally| {
        let mut events: Vec<Ev> = Vec::new();
        let mut times = vec![Vec::new(); n_kinds];
        let mut add = |events: &mut Vec<Ev>, tally: &mut Tally| {
            events.sort_unstable();
            if let Some(chain) = best_chain(events, &kinds, within, &mut times) {
                tally.total.add(&chain, steps);
                if with_breakdown {
                    let group = tally
                        .groups
                        .entry(chain.value.map(str::to_owned))
                        .or_default();
                    group.add(&chain, steps);
                }
            }
        };
        if with_breakdown {
            let lists = scan::struct_lists(batch, 0)?;
            let (packed, values) = (lists.ints(0)?, lists.texts(1)?);
            for user in 0..batch.num_rows() {
                events.clear();
                for i in lists.range(user) {
                    let (at, kind) = Ev::unpack(packed.value(i));
                    events.push(Ev {
                        at,
                        kind,
                        value: values.get(i),
                    });
                }
                add(&mut events, tally);
            }
        } else {
            let lists = scan::int_lists(batch, 0)?;
            for user in 0..batch.num_rows() {
                events.clear();
                events.extend(lists.row(user).iter().map(|&p| {
                    let (at, kind) = Ev::unpack(p);
                    Ev {
                        at,
                        kind,
                        value: None,
                    }
                }));
                add(&mut events, tally);
            }
        }
        Ok(())
    })
    .await?;
    let mut total = Counts::default();
    let mut groups: HashMap<Option<String>, Counts> = HashMap::new();
    for tally in tallies {
        total.merge(tally.total);
        for (value, counts) in tally.groups {
            groups.entry(value).or_default().merge(counts);
        }
    }
    let breakdown = spec.breakdown.as_ref().map(|b| {
        let mut groups: Vec<Group> = groups
            .into_iter()
            .map(|(value, counts)| Group {
                value,
                steps: counts.steps(&spec.steps),
            })
            .collect();
        groups.sort_by(|a, b| match b.steps[0].users.cmp(&a.steps[0].users) {
            Ordering::Equal => a.value.cmp(&b.value),
            other => other,
        });
        BreakdownAnswer {
            column: b.name(),
            groups,
        }
    });
    Ok(Funnel {
        from: spec.range.from,
        to: spec.range.to,
        within_secs: spec.within.num_seconds(),
        steps: total.steps(&spec.steps),
        breakdown,
        sql: spec.sql(),
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}
