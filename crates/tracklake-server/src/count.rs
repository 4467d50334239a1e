//! The ingest counters: what arrived, what was rejected and why, what was
//! stored, what was a duplicate, and what came from bots (names in `tracklake_metrics::names`).

use tracklake_event::{Event, Rejection};
use tracklake_metrics::names;
use tracklake_table::PutOutcome;

/// After validation: every item received, and each rejection by its code.
pub fn validated<'a>(items: impl IntoIterator<Item = &'a Result<Event, Rejection>>) {
    let mut received = 0;
    for item in items {
        received += 1;
        match item {
            Err(r) => rejected(r),
            Ok(e) if e.device.is_bot => {
                let kind = e.device.bot.clone().unwrap_or_else(|| "crawler".into());
                metrics::counter!(names::BOT_EVENTS, "kind" => kind).increment(1);
            }
            Ok(_) => {}
        }
    }
    metrics::counter!(names::EVENTS_RECEIVED).increment(received);
}

pub fn rejected(r: &Rejection) {
    metrics::counter!(names::EVENTS_REJECTED, "reason" => r.code.clone()).increment(1);
}

/// After the table answered.
pub fn stored(outcomes: &[PutOutcome]) {
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, PutOutcome::Stored(_)))
        .count() as u64;
    metrics::counter!(names::EVENTS_STORED).increment(stored);
    metrics::counter!(names::EVENTS_DUPLICATE).increment(outcomes.len() as u64 - stored);
}
