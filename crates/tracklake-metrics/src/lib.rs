//! Metrics of every stage, as CloudWatch gave the article: counters, gauges
//! and histograms through the `metrics` facade (the stages record, this
//! crate exposes), Prometheus text at `/metrics`, a per-minute history that
//! survives restarts, and alarms with OK / ALARM / INSUFFICIENT_DATA states.
//!
//! Every name is in [`names`] and documented in `docs/METRICS.md`.

pub mod alarms;
pub mod history;
pub mod names;
mod process;
mod text;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use alarms::{AlarmRule, Alarms, AlarmsConfig};
pub use history::{History, HistoryConfig};
pub use process::cpu_seconds;
pub use text::{Kind, Sample, parse};

/// Latency buckets in seconds: 100 µs to 30 s.
const SECONDS_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 30.0,
];
/// Batch-size buckets, in records.
const SIZE_BUCKETS: [f64; 12] = [
    1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0, 100000.0, 1000000.0,
];

/// The process-wide recorder; what `/metrics` renders.
#[derive(Clone)]
pub struct Exporter {
    handle: PrometheusHandle,
}

impl Exporter {
    /// Installs the recorder (once per process) and describes every metric.
    pub fn install() -> Result<Exporter, String> {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), &SIZE_BUCKETS))
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_events".into()), &SIZE_BUCKETS)
            })
            .map_err(|e| e.to_string())?
            .install_recorder()
            .map_err(|e| format!("installing the metrics recorder: {e}"))?;
        names::describe();
        Ok(Exporter { handle })
    }

    /// Prometheus text exposition, with the process figures read now.
    pub fn render(&self) -> String {
        process::record();
        self.handle.render()
    }
}

/// The exporter, the history and the alarms, sampled together.
pub struct Monitor {
    pub exporter: Exporter,
    pub history: History,
    pub alarms: Alarms,
    /// Copies figures the stages keep themselves into the metrics; runs
    /// before every render, so `/metrics` and the history are current.
    pub refresh: Box<dyn Fn() + Send + Sync>,
}

impl Monitor {
    /// Prometheus text, current.
    pub fn render(&self) -> String {
        (self.refresh)();
        self.exporter.render()
    }

    /// Every `history.interval_secs`: one reading into the history, then
    /// the alarms; transitions go to the webhook without holding up sampling.
    pub async fn run(self: std::sync::Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let every = std::time::Duration::from_secs(self.history.interval_secs());
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.changed() => return,
            }
            let now = chrono::Utc::now().timestamp();
            if let Err(e) = self.history.record(now, parse(&self.render())) {
                tracing::warn!(error = %e, "could not save the metrics history");
            }
            for transition in self.alarms.evaluate(&self.history, now) {
                let me = self.clone();
                tokio::spawn(async move { me.alarms.notify(transition).await });
            }
        }
    }
}
