use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::json;

use crate::{ApiError, App};

/// Alive: the process answers and can go on. After a disk error stopped
/// the table it cannot: 503 while it exits to be restarted (`serve`), so
/// that a probe that sees it first restarts it too.
pub async fn live(State(app): State<Arc<App>>) -> Result<impl IntoResponse, ApiError> {
    if app.table.is_healthy() {
        Ok(Json(json!({"status": "ok"})))
    } else {
        Err(ApiError::unavailable(
            "failed",
            tracklake_table::Error::Failed.to_string(),
            1,
        ))
    }
}

/// Ready: started, not shutting down, the table can write and no disk is
/// under its watermark; the reason otherwise.
pub async fn ready(State(app): State<Arc<App>>) -> Result<impl IntoResponse, ApiError> {
    match app.not_ready() {
        None => Ok(Json(json!({"status": "ready"}))),
        Some(reason) => Err(ApiError::unavailable("not_ready", reason, 1)),
    }
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {}", uri.path()),
    )
}

pub async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take this method", uri.path()),
    )
}

/// Counters and gauges of every stage.
pub async fn status(State(app): State<Arc<App>>) -> impl IntoResponse {
    let pipeline = app.pipeline.as_ref().map(|p| p.status());
    let engine = app.table.stats();
    Json(json!({
        "ready": app.is_ready(),
        "table": {
            "healthy": app.table.is_healthy(),
            "last_seq": engine["last_seq"].clone(),
            "engine": engine,
        },
        "delivery": pipeline,
    }))
}
