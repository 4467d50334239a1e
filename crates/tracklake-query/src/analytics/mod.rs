//! Product analytics over `events`: funnels, retention, and abnormal
//! behaviour (account sharing, scraping), as the article meant it; and
//! web analytics ([`web`]).
//!
//! Each report reads only the columns it needs, in one scan of the lake
//! (and the fresh events), a thread per partition of the scan, and reduces
//! the rows per user in Rust. Each also writes its definition as one SQL
//! statement (`sql()` of its spec) that runs unchanged in Athena and in
//! tracklake's engine; the tests check that both give the answer a brute
//! force gives (docs/ANALYTICS.md).

pub mod abnormal;
pub mod funnel;
mod params;
pub mod retention;
mod scan;
pub(crate) mod sorted_agg;
pub mod web;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
pub use params::{TimeRange, parse_duration};

use crate::Engine;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// A parameter is wrong (400): which one, and the rule it broke.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The scan failed or ran past `query.timeout_secs`.
    #[error(transparent)]
    Query(#[from] crate::Error),
}

impl AnalyticsError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> AnalyticsError {
        AnalyticsError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// The reports, by the name the API and the CLI give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Funnel,
    Retention,
    Abnormal,
    Web,
}

impl Report {
    pub const ALL: [(Report, &'static str); 4] = [
        (Report::Funnel, "funnel"),
        (Report::Retention, "retention"),
        (Report::Abnormal, "abnormal"),
        (Report::Web, "web"),
    ];

    /// The report the API and the CLI call `name`.
    pub fn from_name(name: &str) -> Option<Report> {
        Report::ALL
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(r, _)| r)
    }
}

/// The reports over one engine, with the thresholds of `[analytics]`.
pub struct Analytics {
    engine: Arc<Engine>,
    config: abnormal::AbnormalConfig,
}

impl Analytics {
    pub fn new(engine: Arc<Engine>, config: abnormal::AbnormalConfig) -> Analytics {
        Analytics { engine, config }
    }

    pub async fn funnel(
        &self,
        spec: &funnel::FunnelSpec,
    ) -> Result<funnel::Funnel, AnalyticsError> {
        funnel::run(&self.engine, spec).await
    }

    pub async fn retention(
        &self,
        spec: &retention::RetentionSpec,
    ) -> Result<retention::Retention, AnalyticsError> {
        retention::run(&self.engine, spec).await
    }

    /// A report from its parameters (as the API's query string gives
    /// them), as JSON.
    pub async fn answer(
        &self,
        report: Report,
        params: &BTreeMap<String, String>,
    ) -> Result<serde_json::Value, AnalyticsError> {
        let now = Utc::now();
        let json = |v: Result<serde_json::Value, serde_json::Error>| {
            v.map_err(|e| AnalyticsError::Query(crate::Error::Engine(e.to_string())))
        };
        match report {
            Report::Funnel => {
                let spec = funnel::FunnelSpec::parse(params, now)?;
                json(serde_json::to_value(self.funnel(&spec).await?))
            }
            Report::Retention => {
                let spec = retention::RetentionSpec::parse(params, now)?;
                json(serde_json::to_value(self.retention(&spec).await?))
            }
            Report::Abnormal => {
                params::known(params, &["from", "to"])?;
                let range = TimeRange::parse(
                    params.get("from").map(String::as_str),
                    params.get("to").map(String::as_str),
                    self.check_window(),
                    now,
                )?;
                json(serde_json::to_value(self.abnormal(&range).await?))
            }
            Report::Web => {
                let spec = web::WebSpec::parse(params, now, self.config.include_bots)?;
                json(serde_json::to_value(web::run(&self.engine, &spec).await?))
            }
        }
    }

    /// What an abnormal-behaviour check covers: the last `check_hours`.
    fn check_window(&self) -> chrono::Duration {
        chrono::Duration::hours(i64::try_from(self.config.check_hours).unwrap_or(24))
    }

    /// Checks for abnormal behaviour every `check_interval_secs` (over the
    /// last `check_hours`) until `stop` turns true, keeping the counts in
    /// `tracklake_flagged_users{kind}` for the `abnormal_users` alarm, and
    /// logging the users newly flagged.
    pub async fn watch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        if self.config.check_interval_secs == 0 {
            return;
        }
        let every = std::time::Duration::from_secs(self.config.check_interval_secs);
        let mut known: std::collections::BTreeSet<(String, &'static str)> = Default::default();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            let to = Utc::now();
            let range = TimeRange {
                from: to - self.check_window(),
                to,
            };
            let answer = match self.abnormal(&range).await {
                Ok(answer) => answer,
                Err(error) => {
                    tracing::warn!(%error, "the abnormal-behaviour check failed; it runs again later");
                    continue;
                }
            };
            let flagged: Vec<(String, &'static str)> = answer
                .account_sharing
                .users
                .iter()
                .map(|u| (u.user_id.clone(), "account_sharing"))
                .chain(
                    answer
                        .scraping
                        .users
                        .iter()
                        .map(|u| (u.user_id.clone(), "scraping")),
                )
                .collect();
            for (kind, count) in [
                ("account_sharing", answer.account_sharing.flagged),
                ("scraping", answer.scraping.flagged),
            ] {
                metrics::gauge!(tracklake_metrics::names::FLAGGED_USERS, "kind" => kind)
                    .set(count as f64);
            }
            let new: Vec<&(String, &str)> =
                flagged.iter().filter(|f| !known.contains(*f)).collect();
            if !new.is_empty() {
                tracing::warn!(
                    account_sharing = answer.account_sharing.flagged,
                    scraping = answer.scraping.flagged,
                    newly_flagged = ?new.iter().take(10).collect::<Vec<_>>(),
                    "users flagged for abnormal behaviour (GET /v1/reports/abnormal has the evidence)"
                );
            }
            known = flagged.into_iter().collect();
        }
    }

    pub async fn abnormal(&self, range: &TimeRange) -> Result<abnormal::Abnormal, AnalyticsError> {
        abnormal::run(&self.engine, &self.config, range).await
    }
}
