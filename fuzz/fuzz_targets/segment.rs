//! A Segment request body (a batch or a single call) mapped and validated
//! as `POST /v1/batch` does: never a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tracklake_event::{RequestContext, Rules, Validator};
use tracklake_server::fuzzing::segment_message;

static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| {
    Validator::new(Rules {
        event_types: None,
        ..Rules::default()
    })
    .expect("rules")
});

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let messages: Vec<Value> = match payload.get("batch").and_then(Value::as_array) {
        Some(batch) => batch.clone(),
        None => vec![payload],
    };
    let ctx = RequestContext::default();
    for message in messages {
        let kind = message["type"].as_str().unwrap_or("track").to_owned();
        if let Ok(fields) = segment_message(&kind, &message) {
            let _ = VALIDATOR.validate(fields, &ctx, chrono::Utc::now());
        }
    }
});
