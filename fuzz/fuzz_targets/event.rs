//! One event as JSON text through the validator: never a panic, and an
//! accepted event survives the table's JSON round trip unchanged.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tracklake_event::{Event, RequestContext, Rules, Validator};

static VALIDATOR: LazyLock<Validator> =
    LazyLock::new(|| Validator::new(Rules::default()).expect("default rules"));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ctx = RequestContext {
        ip_address: Some("203.0.113.7".parse().unwrap()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
    };
    let now = chrono::Utc::now();
    if let Ok(event) = VALIDATOR.validate_json(text, &ctx, now) {
        let key = event.user_id.as_key();
        assert!(!key.is_empty() && !key.chars().any(char::is_control), "{key:?}");
        let stored = serde_json::to_vec(&event).expect("an accepted event serializes");
        let back: Event = serde_json::from_slice(&stored).expect("and reads back");
        // Whether the server made the id is not stored.
        let expected = Event {
            server_assigned_id: false,
            ..event
        };
        assert_eq!(back, expected);
    }
});
