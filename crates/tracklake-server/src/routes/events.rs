//! `POST /v1/events`: one event object, or an array of them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tracklake_event::{Event, Rejection, RequestContext};
use tracklake_table::PutOutcome;

use crate::client::request_context;
use crate::{ApiError, App};

/// Bodies above this are validated on the blocking pool, so that parsing
/// many never-seen user agents cannot stall the async workers.
const INLINE_BODY_BYTES: usize = 8 * 1024;

pub async fn post(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    app.admit()?;
    require_json(&headers)?;
    let body = read_body(body, app.validator.rules().max_request_bytes).await?;
    let ctx = request_context(peer, &headers, &app.config.trusted_proxies);
    let parsed = if body.len() <= INLINE_BODY_BYTES {
        parse_and_validate(&app, &body, &ctx)?
    } else {
        let app = app.clone();
        tokio::task::spawn_blocking(move || parse_and_validate(&app, &body, &ctx))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })??
    };
    match &parsed {
        Parsed::One(one) => crate::count::validated([one.as_ref()]),
        Parsed::Many(items) => crate::count::validated(items),
    }
    match parsed {
        Parsed::One(one) => match *one {
            Err(rejection) => Ok(ApiError::rejected(rejection)),
            Ok(event) => store_one(&app, event).await,
        },
        Parsed::Many(items) => store_batch(&app, items).await,
    }
}

async fn store_one(app: &App, event: Event) -> Result<Response, ApiError> {
    let mut outcomes = app.table.put(vec![event]).await?;
    crate::count::stored(&outcomes);
    Ok(match outcomes.pop() {
        Some(PutOutcome::Stored(e)) => (StatusCode::CREATED, Json(e)).into_response(),
        Some(PutOutcome::Duplicate(e)) => (StatusCode::OK, Json(e)).into_response(),
        None => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the table returned no outcome",
        )
        .into_response(),
    })
}

enum Parsed {
    One(Box<Result<Event, Rejection>>),
    Many(Vec<Result<Event, Rejection>>),
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    // A page's `sendBeacon` and a `fetch` that avoids a CORS preflight send
    // JSON as `text/plain`; the body is read as JSON either way.
    if essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/plain")
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "send events as Content-Type: application/json or text/plain (got {content_type:?})"
            ),
        ))
    }
}

/// Whether reading stopped at the body timeout (`server.body_timeout_secs`).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut error = Some(e);
    while let Some(e) = error {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        error = e.source();
    }
    false
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a request body may be at most {limit} bytes"),
        )),
        Err(e) if timed_out(e.as_ref()) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive within server.body_timeout_secs",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("reading the body: {e}"),
        )),
    }
}

fn parse_and_validate(app: &App, body: &[u8], ctx: &RequestContext) -> Result<Parsed, ApiError> {
    let invalid_json = |e: serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    };
    let now = chrono::Utc::now();
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if !is_array {
        let raw: &RawValue = serde_json::from_slice(body).map_err(invalid_json)?;
        let one = app.validator.validate_json(raw.get(), ctx, now);
        return Ok(Parsed::One(Box::new(one)));
    }
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(invalid_json)?;
    let max = app.validator.rules().max_batch_events;
    if items.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!(
                "a batch may hold at most {max} events; this one has {}",
                items.len()
            ),
        ));
    }
    Ok(Parsed::Many(
        items
            .iter()
            .map(|raw| app.validator.validate_json(raw.get(), ctx, now))
            .collect(),
    ))
}

/// Stores the valid items of a batch; the answer has one result per item,
/// in order, and the rejected ones do not stop the others.
async fn store_batch(
    app: &App,
    items: Vec<Result<Event, Rejection>>,
) -> Result<Response, ApiError> {
    let mut results: Vec<Value> = Vec::with_capacity(items.len());
    let mut accepted = Vec::with_capacity(items.len());
    let mut slots = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Ok(event) => {
                slots.push(results.len());
                results.push(Value::Null);
                accepted.push(event);
            }
            Err(rejection) => results.push(json!({"status": "rejected", "error": rejection})),
        }
    }
    let rejected = results.len() - accepted.len();
    let (mut stored, mut duplicate) = (0, 0);
    if !accepted.is_empty() {
        let outcomes = app.table.put(accepted).await?;
        crate::count::stored(&outcomes);
        for (slot, outcome) in slots.into_iter().zip(outcomes) {
            results[slot] = match outcome {
                PutOutcome::Stored(e) => {
                    stored += 1;
                    json!({"status": "stored", "event_id": e.event_id, "event_at": e.event_at})
                }
                PutOutcome::Duplicate(e) => {
                    duplicate += 1;
                    json!({"status": "duplicate", "event_id": e.event_id, "event_at": e.event_at})
                }
            };
        }
    }
    Ok(Json(json!({
        "stored": stored,
        "duplicate": duplicate,
        "rejected": rejected,
        "results": results,
    }))
    .into_response())
}
