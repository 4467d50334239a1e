//! `GET /tracklake.js`: the first-party tracker for web pages
//! (`assets/tracklake.js`: page views, sessions, campaigns, batched sends
//! through Segment's batch call). Public like the dashboard's assets: it
//! holds no data, and any site may load it.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const TRACKER: &str = include_str!("../../assets/tracklake.js");

pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
            // Loadable with `crossorigin` (for error reports) from any site.
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        TRACKER,
    )
        .into_response()
}
