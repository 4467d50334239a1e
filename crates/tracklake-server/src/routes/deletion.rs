//! Per-user deletion: `DELETE /v1/users/{user_id}/events` queues a job
//! (202 with its status URL); `GET /v1/deletions/{id}` shows its progress.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::routes::users::check_user_id;
use crate::{ApiError, App, Deleter};

fn deleter(app: &App) -> Result<&Arc<dyn Deleter>, ApiError> {
    app.deleter.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "deletion is not enabled on this server",
        )
    })
}

/// Queues the deletion; the same answer whether or not the user has events,
/// so it reveals nothing about who exists.
pub async fn request(
    State(app): State<Arc<App>>,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    check_user_id(&user_id)?;
    let job = deleter(&app)?
        .request(&user_id)
        .map_err(|message| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message))?;
    let location = format!("/v1/deletions/{}", job["id"].as_str().unwrap_or_default());
    let mut response = (StatusCode::ACCEPTED, Json(job)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

pub async fn job(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match deleter(&app)?.job(&id) {
        Some(job) => Ok(Json(job).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no deletion job {id:?}; GET /v1/deletions lists them"),
        )),
    }
}

pub async fn list(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    Ok(Json(json!({ "deletions": deleter(&app)?.jobs() })).into_response())
}
