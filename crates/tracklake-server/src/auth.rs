//! API keys with scopes. `write` sends events (safe to ship inside an app),
//! `read` reads users' events, SQL, reports, metrics and status, `admin`
//! does everything. A key comes as `Authorization: Bearer <key>` or, as
//! Segment's libraries send their write key, `Basic base64(<key>:)`.
//!
//! Keys live in the config as SHA-256 hashes (`tracklake keys create` makes
//! one); a presented key is hashed and compared with every configured hash
//! in constant time. A missing or unknown key is 401 and a key without the
//! scope 403, both before any handler runs, so neither says whether a user
//! exists. With no keys configured every request is let through — which
//! `serve` allows only on a loopback address unless told otherwise.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::{ApiError, App};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Write,
    Read,
    Admin,
}

/// One `[[server.keys]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Who holds it, for logs.
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Hex SHA-256 of the key.
    pub sha256: String,
}

impl ApiKey {
    fn allows(&self, needed: Scope) -> bool {
        self.scopes
            .iter()
            .any(|s| *s == needed || *s == Scope::Admin)
    }
}

/// A new random key (`tlk_` and 43 URL-safe base64 characters, 256 bits)
/// and its config entry.
pub fn new_key(name: &str, scopes: &[Scope]) -> (String, ApiKey) {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system's random number generator works");
    let key = format!(
        "tlk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let entry = ApiKey {
        name: name.to_owned(),
        scopes: scopes.to_vec(),
        sha256: hash(&key),
    };
    (key, entry)
}

pub fn hash(key: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What anyone may fetch, from any site: health checks, the dashboard's
/// page and assets and the web tracker, none of which holds data.
pub(crate) fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/" | "/tracklake.js") || path.starts_with("/assets/")
}

/// The scope a request needs; `None` for what anyone may fetch (health
/// checks, the dashboard's page and assets, which hold no data).
fn needed(method: &Method, path: &str) -> Option<Scope> {
    if is_public(path) {
        return None;
    }
    // Deleting events and reading deletion jobs are for administrators.
    if path.starts_with("/v1/deletions")
        || (method == Method::DELETE && path.starts_with("/v1/users/"))
    {
        return Some(Scope::Admin);
    }
    Some(
        if crate::routes::segment::is_ingest(path) && method == Method::POST {
            Scope::Write
        } else {
            Scope::Read
        },
    )
}

/// The key in the request, from `Bearer` or Segment's `Basic` form.
fn presented(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (kind, rest) = value.split_once(' ')?;
    match kind.to_ascii_lowercase().as_str() {
        "bearer" => Some(rest.trim().to_owned()),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            Some(
                text.split_once(':')
                    .map_or(text.clone(), |(user, _)| user.to_owned()),
            )
        }
        _ => None,
    }
}

fn refuse(status: StatusCode, code: &'static str, message: &str) -> Response {
    let mut response = ApiError::new(status, code, message).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tracklake\""),
        );
    }
    response
}

/// analytics.js sends its write key in the body (`writeKey`) of a Segment
/// call, not in a header: the body is read (as much as a batch may hold,
/// within the body timeout) and handed on as it came.
async fn key_in_body(request: Request, app: &App) -> (Request, Option<String>) {
    #[derive(Deserialize)]
    struct Keyed {
        #[serde(rename = "writeKey")]
        write_key: Option<String>,
    }
    let (parts, body) = request.into_parts();
    let limit = crate::routes::segment::MAX_BATCH_BYTES;
    let within = std::time::Duration::from_secs(app.config.body_timeout_secs.max(1));
    let read = tokio::time::timeout(within, Limited::new(body, limit).collect()).await;
    let Ok(Ok(collected)) = read else {
        // Too large or too slow: no key is found, and the answer is 401.
        return (Request::from_parts(parts, Body::empty()), None);
    };
    let bytes = collected.to_bytes();
    let key = serde_json::from_slice::<Keyed>(&bytes)
        .ok()
        .and_then(|k| k.write_key);
    (Request::from_parts(parts, Body::from(bytes)), key)
}

pub async fn check(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let keys = &app.config.keys;
    let Some(scope) = needed(request.method(), request.uri().path()).filter(|_| !keys.is_empty())
    else {
        return next.run(request).await;
    };
    let (request, key) = match presented(&request) {
        Some(key) => (request, Some(key)),
        None if crate::routes::segment::call_of(request.uri().path()).is_some()
            && !request.headers().contains_key(header::CONTENT_ENCODING) =>
        {
            key_in_body(request, &app).await
        }
        None => (request, None),
    };
    let Some(key) = key else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an API key is required: Authorization: Bearer <key> (analytics.js: its writeKey)",
        );
    };
    let digest = hash(&key);
    // Compare with every key, always, so timing says nothing about which matched.
    let mut found: Option<&ApiKey> = None;
    for candidate in keys {
        if bool::from(candidate.sha256.as_bytes().ct_eq(digest.as_bytes())) {
            found = Some(candidate);
        }
    }
    match found {
        None => refuse(StatusCode::UNAUTHORIZED, "unauthorized", "unknown API key"),
        Some(k) if !k.allows(scope) => refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!(
                "this key lacks the {} scope",
                serde_json::to_value(scope)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("")
            ),
        ),
        Some(_) => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_right_scope() {
        assert_eq!(needed(&Method::POST, "/v1/events"), Some(Scope::Write));
        assert_eq!(needed(&Method::POST, "/v1/batch"), Some(Scope::Write));
        assert_eq!(
            needed(&Method::GET, "/v1/users/1/events"),
            Some(Scope::Read)
        );
        assert_eq!(needed(&Method::POST, "/v1/query"), Some(Scope::Read));
        assert_eq!(
            needed(&Method::DELETE, "/v1/users/1/events"),
            Some(Scope::Admin)
        );
        assert_eq!(needed(&Method::GET, "/v1/deletions/x"), Some(Scope::Admin));
        assert_eq!(needed(&Method::GET, "/metrics"), Some(Scope::Read));
        assert_eq!(needed(&Method::GET, "/healthz"), None);
        assert_eq!(needed(&Method::GET, "/assets/dashboard.js"), None);
        assert_eq!(needed(&Method::GET, "/tracklake.js"), None);
        assert_eq!(needed(&Method::POST, "/v1/b"), Some(Scope::Write));
    }

    #[test]
    fn keys_hash_and_scope() {
        let (key, entry) = new_key("app", &[Scope::Write]);
        assert!(key.starts_with("tlk_") && key.len() == 47, "{key}");
        assert_eq!(entry.sha256, hash(&key));
        assert!(entry.allows(Scope::Write) && !entry.allows(Scope::Read));
        let admin = ApiKey {
            scopes: vec![Scope::Admin],
            ..entry
        };
        assert!(admin.allows(Scope::Read) && admin.allows(Scope::Write));
    }
}
