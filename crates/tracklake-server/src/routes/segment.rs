//! Segment's HTTP Tracking API (`/v1/track`, `identify`, `page`, `screen`,
//! `group`, `alias`, `batch`), so Segment and RudderStack SDKs can send to
//! tracklake by pointing their host at it. Each message becomes one
//! tracklake event:
//!
//! | Segment | tracklake |
//! |---|---|
//! | `track` with `event: "Signed Up"` | `event_type: "signed-up"` (lowercase; other characters → `-`), `properties` plus `event: "Signed Up"` |
//! | `identify` / `group` | `event_type: "identify"` / `"group"`, `properties.traits` (and `properties.group_id`) |
//! | `page` / `screen` | `event_type: "page"` / `"screen"`, `properties` plus `name` |
//! | `alias` | `event_type: "alias"`, `properties.previous_id` |
//! | `userId`, else `anonymousId` | `user_id`, else `"anon:" + anonymousId` |
//! | `messageId`, `timestamp` | `event_id`, `event_at` |
//! | `context.ip`, `context.userAgent` | `ip_address`, `user_agent` |
//! | `context.page`, `campaign`, `screen`, `sessionId` | `properties.page`, `campaign`, `screen`, `session_id` |
//!
//! analytics.js (`@segment/analytics-next`) posts to the short paths
//! `/v1/t`, `/i`, `/p`, `/s`, `/g`, `/a` and `/b` (a batch) as
//! `Content-Type: text/plain`, with its write key in the body's `writeKey`;
//! the body is JSON whatever its declared type. A message's `sentAt` (the
//! sender's clock when it sent) corrects `timestamp` for that clock's skew.
//! With API keys configured, the write key is checked like any key
//! (`auth.rs`), from the `Authorization` header or else from `writeKey`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use serde_json::{Map, Value, json};
use tracklake_event::Rejection;

use crate::client::request_context;
use crate::{ApiError, App};

const MAX_MESSAGE_BYTES: usize = 32 * 1024;
pub(crate) const MAX_BATCH_BYTES: usize = 500 * 1024;
/// The paths under `/v1/` that take Segment messages, and their call: the
/// Tracking API's names and analytics.js's one-letter ones.
pub const PATHS: [(&str, &str); 14] = [
    ("track", "track"),
    ("identify", "identify"),
    ("page", "page"),
    ("screen", "screen"),
    ("group", "group"),
    ("alias", "alias"),
    ("batch", "batch"),
    ("t", "track"),
    ("i", "identify"),
    ("p", "page"),
    ("s", "screen"),
    ("g", "group"),
    ("a", "alias"),
    ("b", "batch"),
];

/// `context` fields kept as properties: `(context's name, property)`.
const CONTEXT_PROPERTIES: [(&str, &str); 4] = [
    ("page", "page"),
    ("campaign", "campaign"),
    ("screen", "screen"),
    ("sessionId", "session_id"),
];

/// The Segment call a path takes, if it takes one.
pub fn call_of(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/v1/")?;
    PATHS
        .iter()
        .find(|(p, _)| *p == rest)
        .map(|(_, call)| *call)
}

/// Whether a path takes events: `/v1/events` or a Segment call.
pub fn is_ingest(path: &str) -> bool {
    path == "/v1/events" || call_of(path).is_some()
}

/// `POST /v1/{call}` for one message, or `/v1/batch`.
pub async fn post(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: MatchedPath,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(call) = call_of(path.as_str()) else {
        return failure(
            StatusCode::NOT_FOUND,
            format!("no Segment call at {}", path.as_str()),
        );
    };
    let is_batch = call == "batch";
    if let Err(refused) = app.admit() {
        return refusal(refused);
    }
    let limit = if is_batch {
        MAX_BATCH_BYTES
    } else {
        MAX_MESSAGE_BYTES
    };
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a {call} request may be at most {limit} bytes"),
            );
        }
    };
    let payload: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return failure(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let messages: Vec<(String, Value)> = if is_batch {
        // What a batch says once for all its messages.
        let shared: Vec<(&str, Value)> = ["context", "sentAt"]
            .into_iter()
            .filter_map(|k| Some((k, payload.get(k)?.clone())))
            .collect();
        match payload.get("batch").and_then(Value::as_array) {
            Some(batch) => batch
                .iter()
                .map(|m| {
                    let mut m = m.clone();
                    if let Some(obj) = m.as_object_mut() {
                        for (key, value) in &shared {
                            obj.entry(*key).or_insert_with(|| value.clone());
                        }
                    }
                    (m["type"].as_str().unwrap_or_default().to_owned(), m)
                })
                .collect(),
            None => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "a batch needs a \"batch\" array".into(),
                );
            }
        }
    } else {
        vec![(call.to_owned(), payload)]
    };
    let ctx = request_context(peer, &headers, &app.config.trusted_proxies);
    let now = chrono::Utc::now();
    let mut events = Vec::new();
    let mut rejected: Vec<Rejection> = Vec::new();
    for (kind, message) in messages {
        let size = message.to_string().len();
        let outcome = if size > MAX_MESSAGE_BYTES {
            Err(Rejection::new(
                "too_large",
                None,
                format!("a message may be at most {MAX_MESSAGE_BYTES} bytes"),
            ))
        } else {
            to_event(&kind, &message, now).and_then(|map| app.validator.validate(map, &ctx, now))
        };
        crate::count::validated([&outcome]);
        match outcome {
            Ok(event) => events.push(event),
            Err(r) => rejected.push(r),
        }
    }
    if !events.is_empty() {
        match app.table.put(events).await {
            Ok(outcomes) => crate::count::stored(&outcomes),
            Err(e) => return refusal(ApiError::from(e)),
        }
    }
    if let Some(first) = rejected.first() {
        let field = first
            .field
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        return failure(
            StatusCode::BAD_REQUEST,
            format!(
                "{} message(s) rejected; first: {}{field}: {}",
                rejected.len(),
                first.code,
                first.message
            ),
        );
    }
    Json(json!({"success": true})).into_response()
}

fn failure(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"success": false, "message": message}))).into_response()
}

/// An API error in Segment's shape, with its `Retry-After` (SDKs back off
/// by it).
fn refusal(error: ApiError) -> Response {
    let mut response = failure(error.status, error.message);
    if let Some(secs) = error.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// One Segment message, received at `now`, as a tracklake event object
/// (validated afterwards).
pub fn to_event(
    kind: &str,
    m: &Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Map<String, Value>, Rejection> {
    let bad = |field: &str, msg: &str| Rejection::new("invalid_format", Some(field), msg);
    let user_id = match (&m["userId"], m["anonymousId"].as_str()) {
        (Value::String(s), _) if !s.is_empty() => Value::from(s.clone()),
        (Value::Number(n), _) => Value::from(n.clone()),
        (_, Some(anon)) if !anon.is_empty() => Value::from(format!("anon:{anon}")),
        _ => {
            return Err(Rejection::new(
                "required",
                Some("userId"),
                "userId or anonymousId is required",
            ));
        }
    };
    let object = |v: &Value| v.as_object().cloned().unwrap_or_default();
    let mut properties = object(&m["properties"]);
    let event_type = match kind {
        "track" => {
            let name = m["event"]
                .as_str()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| bad("event", "a track call needs an event name"))?;
            properties.insert("event".into(), name.into());
            event_type_of(name)
        }
        "identify" => {
            properties.insert("traits".into(), Value::Object(object(&m["traits"])));
            "identify".into()
        }
        "group" => {
            properties.insert("traits".into(), Value::Object(object(&m["traits"])));
            properties.insert("group_id".into(), m["groupId"].clone());
            "group".into()
        }
        "page" | "screen" => {
            if let Some(name) = m["name"].as_str() {
                properties.insert("name".into(), name.into());
            }
            kind.into()
        }
        "alias" => {
            properties.insert("previous_id".into(), m["previousId"].clone());
            "alias".into()
        }
        other => return Err(bad("type", &format!("unknown Segment call {other:?}"))),
    };
    let mut event = Map::new();
    event.insert("user_id".into(), user_id);
    event.insert("event_type".into(), event_type.into());
    event.insert("properties".into(), Value::Object(properties));
    if let Some(id) = m["messageId"].as_str() {
        event.insert("event_id".into(), id.into());
    }
    if let Some(at) = m["timestamp"].as_str() {
        event.insert("event_at".into(), corrected(at, &m["sentAt"], now).into());
    }
    let context = &m["context"];
    // Where in a page it happened, the campaign that brought the visitor
    // and the screen (analytics.js and tracklake.js fill them), and the
    // session (tracklake.js).
    if let Some(Value::Object(properties)) = event.get_mut("properties") {
        for (from, to) in CONTEXT_PROPERTIES {
            // A page call's properties already are the page.
            if to == "page" && kind == "page" {
                continue;
            }
            let value = &context[from];
            let wanted = if to == "session_id" {
                value.is_string()
            } else {
                value.is_object()
            };
            if wanted && !properties.contains_key(to) {
                properties.insert(to.into(), value.clone());
            }
        }
    }
    if let Some(ip) = context["ip"].as_str() {
        event.insert("ip_address".into(), ip.into());
    }
    if let Some(ua) = context["userAgent"].as_str() {
        event.insert("user_agent".into(), ua.into());
    }
    Ok(event)
}

/// `timestamp` as the server's clock would have said it: moved by how far
/// the sender's clock was off when it sent (`now - sentAt`), as Segment
/// does. As sent when `sentAt` is missing or either cannot be read (the
/// validator then judges `timestamp`).
fn corrected(timestamp: &str, sent_at: &Value, now: chrono::DateTime<chrono::Utc>) -> String {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    let skew = sent_at
        .as_str()
        .and_then(parse)
        .map(|sent| now - sent.with_timezone(&chrono::Utc));
    match parse(timestamp)
        .zip(skew)
        .and_then(|(at, skew)| at.with_timezone(&chrono::Utc).checked_add_signed(skew))
    {
        Some(at) => at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => timestamp.to_owned(),
    }
}

/// `"Signed Up"` → `"signed-up"`: lowercase, other characters become `-`,
/// at most 64 characters, starting with a letter.
pub fn event_type_of(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':') {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out = out.trim_matches('-').to_owned();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert_str(0, "e-");
    }
    out.truncate(64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_become_types() {
        assert_eq!(event_type_of("Signed Up"), "signed-up");
        assert_eq!(event_type_of("  Order  Completed!! "), "order-completed");
        assert_eq!(event_type_of("checkout.step:2"), "checkout.step:2");
        assert_eq!(event_type_of("404 Page"), "e-404-page");
        assert_eq!(event_type_of(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn messages_map_onto_events() {
        let m = json!({"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m-1",
                       "timestamp": "2026-11-27T08:00:00.000Z", "properties": {"plan": "pro"},
                       "context": {"ip": "203.0.113.9", "userAgent": "Mozilla/5.0"}});
        let e = to_event("track", &m, chrono::Utc::now()).unwrap();
        assert_eq!(e["event_type"], "signed-up");
        assert_eq!(e["event_id"], "m-1");
        assert_eq!(e["properties"]["event"], "Signed Up");
        assert_eq!(e["properties"]["plan"], "pro");
        assert_eq!(e["ip_address"], "203.0.113.9");
        let e = to_event(
            "identify",
            &json!({"anonymousId": "a-9", "traits": {"email": "x@example.com"}}),
            chrono::Utc::now(),
        )
        .unwrap();
        assert_eq!(
            (e["user_id"].as_str(), e["event_type"].as_str()),
            (Some("anon:a-9"), Some("identify"))
        );
        assert_eq!(e["properties"]["traits"]["email"], "x@example.com");
        let r = to_event("track", &json!({"event": "x"}), chrono::Utc::now()).unwrap_err();
        assert_eq!(r.field.as_deref(), Some("userId"));
    }

    #[test]
    fn a_senders_clock_skew_is_taken_out() {
        let now = "2026-12-03T12:00:10Z".parse().unwrap();
        // The browser's clock is 1 hour behind: it stamped the event 5 s
        // before it sent it, which the server received at 12:00:10.
        let m = json!({"type": "track", "event": "Viewed", "anonymousId": "a", "writeKey": "k",
                       "timestamp": "2026-12-03T11:00:00.000Z", "sentAt": "2026-12-03T11:00:05.000Z",
                       "context": {"page": {"path": "/pricing", "url": "https://example.com/pricing"},
                                   "campaign": {"source": "news", "name": "launch"}}});
        let e = to_event("track", &m, now).unwrap();
        assert_eq!(e["event_at"], "2026-12-03T12:00:05.000Z");
        assert_eq!(e["properties"]["page"]["path"], "/pricing");
        assert_eq!(e["properties"]["campaign"]["source"], "news");
        assert!(
            !e["properties"]
                .as_object()
                .unwrap()
                .contains_key("writeKey")
        );
        // Without sentAt, or unreadable, the timestamp is kept as sent.
        let m = json!({"anonymousId": "a", "timestamp": "2026-12-03T11:00:00Z", "sentAt": "soon"});
        assert_eq!(
            to_event("page", &m, now).unwrap()["event_at"],
            "2026-12-03T11:00:00Z"
        );
    }

    #[test]
    fn short_paths_name_their_calls() {
        assert_eq!(call_of("/v1/t"), Some("track"));
        assert_eq!(call_of("/v1/b"), Some("batch"));
        assert_eq!(call_of("/v1/track"), Some("track"));
        assert_eq!(call_of("/v1/x"), None);
        assert!(is_ingest("/v1/events") && is_ingest("/v1/p"));
        assert!(!is_ingest("/v1/query"));
    }
}
