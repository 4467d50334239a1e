//! `POST /v1/query` (`{"sql": "…"}` → rows with column types) and the
//! cached reports, `GET /v1/reports` and `GET /v1/reports/{name}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::{ApiError, App, Sql, SqlError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    sql: String,
}

pub(crate) fn engine(app: &App) -> Result<&Arc<dyn Sql>, ApiError> {
    app.sql.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "SQL is not enabled on this server",
        )
    })
}

impl From<SqlError> for ApiError {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Invalid(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_sql", m).field("sql")
            }
            SqlError::BadParameter { field, message } => ApiError::bad_parameter(&field, message),
            SqlError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            SqlError::Timeout(m) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", m),
            SqlError::Failed(m) => {
                tracing::error!(error = %m, "query failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "query_failed", m)
            }
        }
    }
}

pub async fn query(
    State(app): State<Arc<App>>,
    body: Result<Json<QueryBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "invalid_body",
            format!("{} — send {{\"sql\": \"SELECT …\"}}", e.body_text()),
        )
    })?;
    if body.sql.trim().is_empty() {
        return Err(ApiError::bad_parameter("sql", "sql is empty"));
    }
    Ok(Json(engine(&app)?.query(&body.sql).await?).into_response())
}

pub async fn reports(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    Ok(Json(engine(&app)?.reports()).into_response())
}

pub async fn report(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(engine(&app)?.report(&name).await?).into_response())
}
