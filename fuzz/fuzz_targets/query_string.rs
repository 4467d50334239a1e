//! `GET /v1/users/{user_id}/events?…`: the first line is the user id, the
//! rest the raw query string. Never a panic; a bad parameter is an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracklake_server::fuzzing::user_events_query;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (user, raw) = text.split_once('\n').unwrap_or(("1", text));
    let _ = user_events_query(user, raw);
});
