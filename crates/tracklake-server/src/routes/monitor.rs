//! `/metrics` (Prometheus text), `GET /v1/metrics/history`, `GET /v1/alarms`,
//! and the dashboard page at `/` with its assets (embedded in the binary).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracklake_metrics::{Monitor, names};

use crate::{ApiError, App};

fn monitor(app: &App) -> Result<&Arc<Monitor>, ApiError> {
    app.monitor.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "metrics are not enabled on this server",
        )
    })
}

pub async fn metrics(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let text = monitor(&app)?.render();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Comma-separated metric or series names; empty means all.
    names: Option<String>,
    /// Unix seconds or RFC 3339; default: three hours ago.
    from: Option<String>,
    /// Unix seconds or RFC 3339; default: now.
    to: Option<String>,
}

fn instant(field: &str, text: Option<&str>, default: i64) -> Result<i64, ApiError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(default);
    };
    text.parse::<i64>()
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(text).map(|t| t.timestamp()))
        .map_err(|_| {
            ApiError::bad_parameter(
                field,
                format!("{field} must be Unix seconds or an RFC 3339 time"),
            )
        })
}

pub async fn history(
    State(app): State<Arc<App>>,
    params: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_parameter("query", e.body_text()))?;
    let now = chrono::Utc::now().timestamp();
    let from = instant("from", params.from.as_deref(), now - 3 * 3600)?;
    let to = instant("to", params.to.as_deref(), now)?;
    if from > to {
        return Err(ApiError::bad_parameter("from", "from is after to"));
    }
    let names: Vec<String> = params
        .names
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(Json(monitor(&app)?.history.to_json(&names, from, to)).into_response())
}

pub async fn alarms(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    Ok(Json(monitor(&app)?.alarms.to_json()).into_response())
}

/// Counts every routed request by route, method and status, with latency.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(names::HTTP_SECONDS, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(names::HTTP_REQUESTS, "route" => route, "method" => method, "status" => status).increment(1);
    response
}

const PAGE: &str = include_str!("../../assets/dashboard.html");
const SCRIPT: &str = include_str!("../../assets/dashboard.js");
const UPLOT_JS: &str = include_str!("../../assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/uPlot.min.css");

pub async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

pub async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (kind, body) = match name.as_str() {
        "dashboard.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "uPlot.iife.min.js" => ("text/javascript; charset=utf-8", UPLOT_JS),
        "uPlot.min.css" => ("text/css; charset=utf-8", UPLOT_CSS),
        _ => {
            return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such asset")
                .into_response();
        }
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}
