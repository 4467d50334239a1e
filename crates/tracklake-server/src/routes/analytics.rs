//! Product analytics: `GET /v1/reports/funnel`, `/v1/reports/retention`,
//! `/v1/reports/abnormal` and `/v1/reports/web`, their parameters in the query string
//! (docs/ANALYTICS.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};

use super::query::engine;
use crate::{ApiError, App};

type Params = Result<Query<BTreeMap<String, String>>, QueryRejection>;

async fn answer(app: &App, report: &str, params: Params) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_parameter("query", e.body_text()))?;
    Ok(Json(engine(app)?.analytics(report, params).await?).into_response())
}

pub async fn funnel(State(app): State<Arc<App>>, params: Params) -> Result<Response, ApiError> {
    answer(&app, "funnel", params).await
}

pub async fn retention(State(app): State<Arc<App>>, params: Params) -> Result<Response, ApiError> {
    answer(&app, "retention", params).await
}

pub async fn abnormal(State(app): State<Arc<App>>, params: Params) -> Result<Response, ApiError> {
    answer(&app, "abnormal", params).await
}

pub async fn web(State(app): State<Arc<App>>, params: Params) -> Result<Response, ApiError> {
    answer(&app, "web", params).await
}
