//! `GET /v1/users/{user_id}/events`: the article's `recent_activity` and
//! `logins`, with filters that apply before the limit.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tracklake_event::Event;
use tracklake_table::{Order, Query};

use crate::{ApiError, App};

const MAX_LIMIT: usize = 1000;

pub async fn events(
    State(app): State<Arc<App>>,
    Path(user_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (query, fields) = parse_query(user_id, raw.as_deref().unwrap_or(""))?;
    let started = Instant::now();
    let page = app.table.query(query.clone()).await?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut response = match fields {
        // Serialized straight from the events unless a projection asks
        // for a subset.
        None => Json(PageBody {
            user_id: &query.user_id,
            events: &page.events,
            next_cursor: page.next_cursor.as_deref(),
        })
        .into_response(),
        Some(fields) => Json(PageBody {
            user_id: &query.user_id,
            events: page
                .events
                .iter()
                .map(|e| project(e, &fields))
                .collect::<Vec<_>>(),
            next_cursor: page.next_cursor.as_deref(),
        })
        .into_response(),
    };
    // Time spent in the table, so load tests can tell server from network.
    if let Ok(v) = HeaderValue::from_str(&format!("table;dur={elapsed_ms:.3}")) {
        response.headers_mut().insert("server-timing", v);
    }
    Ok(response)
}

#[derive(Serialize)]
struct PageBody<'a, E: Serialize> {
    user_id: &'a str,
    events: E,
    next_cursor: Option<&'a str>,
}

/// A user id from a path: what validation lets into the table.
pub(crate) fn check_user_id(user_id: &str) -> Result<(), ApiError> {
    if user_id.is_empty() || user_id.chars().any(char::is_control) {
        return Err(ApiError::bad_parameter(
            "user_id",
            "user_id must be non-empty text without control characters",
        ));
    }
    Ok(())
}

/// Parses `limit, order, type, from, to, fields, cursor`; `type` and
/// `fields` may repeat or hold comma-separated lists.
pub(crate) fn parse_query(
    user_id: String,
    raw: &str,
) -> Result<(Query, Option<Vec<String>>), ApiError> {
    check_user_id(&user_id)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw).map_err(|e| {
        ApiError::bad_parameter("query", format!("the query string is malformed: {e}"))
    })?;
    let mut q = Query::recent(user_id);
    let mut fields: Option<Vec<String>> = None;
    for (key, value) in pairs {
        match key.as_str() {
            "limit" => {
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_parameter(
                            "limit",
                            format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                        )
                    })?;
            }
            "order" => {
                q.order = match value.as_str() {
                    "newest" | "desc" => Order::Newest,
                    "oldest" | "asc" => Order::Oldest,
                    _ => {
                        return Err(ApiError::bad_parameter(
                            "order",
                            "order must be newest or oldest",
                        ));
                    }
                }
            }
            "type" => q.types.extend(list(&value)),
            "from" => q.from = Some(time("from", &value)?),
            "to" => q.to = Some(time("to", &value)?),
            "cursor" => q.cursor = Some(value),
            "fields" => {
                let wanted = fields.get_or_insert_with(Vec::new);
                for f in list(&value) {
                    if !Event::FIELDS.contains(&f.as_str()) {
                        return Err(ApiError::bad_parameter(
                            "fields",
                            format!(
                                "unknown field {f:?}; fields are {}",
                                Event::FIELDS.join(", ")
                            ),
                        ));
                    }
                    wanted.push(f);
                }
            }
            other => {
                return Err(ApiError::bad_parameter(
                    other,
                    "unknown parameter; use limit, order, type, from, to, fields, cursor",
                ));
            }
        }
    }
    if let (Some(from), Some(to)) = (q.from, q.to)
        && from > to
    {
        return Err(ApiError::bad_parameter("from", "from is after to"));
    }
    Ok((q, fields))
}

fn list(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn time(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_parameter(
                field,
                format!(
                    "{field} must be an ISO 8601 time with an offset, such as 2019-06-29T16:46:23Z"
                ),
            )
        })
}

/// The article's `projection_expression`: only the asked-for fields.
fn project(event: &Event, fields: &[String]) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.retain(|k, _| fields.iter().any(|f| f == k));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_article_queries() {
        let (q, fields) = parse_query(
            "1".into(),
            "limit=10&type=login&fields=ip_address,event_type,event_at,user_agent",
        )
        .unwrap();
        assert_eq!(
            (q.limit, q.types.as_slice(), q.order),
            (10, ["login".to_string()].as_slice(), Order::Newest)
        );
        assert_eq!(fields.unwrap().len(), 4);
        let (q, _) = parse_query("1".into(), "type=login&type=material-view&order=oldest&from=2019-06-23T00:00:00Z&to=2019-06-30T00:00:00%2B02:00").unwrap();
        assert_eq!(q.types.len(), 2);
        assert_eq!(q.to.unwrap().to_rfc3339(), "2019-06-29T22:00:00+00:00");
    }

    #[test]
    fn bad_parameters_name_themselves() {
        for (raw, field) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=ten", "limit"),
            ("order=up", "order"),
            ("from=yesterday", "from"),
            ("fields=password", "fields"),
            ("types=login", "types"),
            ("from=2020-01-02T00:00:00Z&to=2020-01-01T00:00:00Z", "from"),
        ] {
            let err = parse_query("1".into(), raw).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{raw}");
        }
    }
}
