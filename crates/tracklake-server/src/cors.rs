//! Cross-origin requests from web pages (CORS).
//!
//! The write endpoints (`/v1/events` and Segment's calls) answer the origins
//! of `server.cors_origins`, every origin by default: a write key is public
//! by design (it ships inside every page that sends events), and a page can
//! send a `text/plain` POST or a beacon to any address without asking, so
//! refusing the preflight would protect nothing. Every other endpoint reads
//! or deletes data and answers no other origin unless `server.cors_read_origins`
//! names it.
//!
//! A request from an origin its endpoint does not allow is refused with
//! 403 — not merely left without CORS headers — since a beacon or a simple
//! POST reaches the server whatever the browser then shows the page. A
//! refused write may be read by the page (it says why, and a tracker stops
//! retrying); a refused read may not. A
//! request without `Origin` (an app's server, curl) or from the server's own
//! origin (the dashboard) is not a cross-origin request and is let through,
//! as is one for what holds no data (health checks, `/tracklake.js`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, App};

/// Headers a page may send cross-origin: the body's type and encoding and
/// the key.
const ALLOWED_HEADERS: &str = "content-type, content-encoding, authorization";
/// How long a browser may keep a preflight's answer (Chromium caps it at
/// two hours).
const MAX_AGE_SECS: &str = "7200";

/// An error in `cors_origins` or `cors_read_origins`.
#[derive(Debug, thiserror::Error)]
#[error(
    "server.{setting}: {value:?} is not an origin: write \"*\" or scheme://host[:port], such as \"https://www.example.com\" (no path)"
)]
pub struct BadOrigin {
    pub setting: &'static str,
    pub value: String,
}

/// The origins one group of endpoints answers.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    any: bool,
    /// Normalized: lowercase, no default port.
    listed: Vec<String>,
}

impl Origins {
    /// Parses a setting's list (`"*"` or origins).
    pub fn parse(setting: &'static str, values: &[String]) -> Result<Origins, BadOrigin> {
        let mut origins = Origins::default();
        for value in values {
            if value == "*" {
                origins.any = true;
                continue;
            }
            let normalized = normalize(value).ok_or_else(|| BadOrigin {
                setting,
                value: value.clone(),
            })?;
            origins.listed.push(normalized);
        }
        Ok(origins)
    }

    fn allow(&self, origin: &str) -> bool {
        self.any || normalize(origin).is_some_and(|o| self.listed.contains(&o))
    }
}

/// `scheme://host[:port]` in lowercase without the scheme's default port;
/// None for anything else (a path, a query, no host).
fn normalize(origin: &str) -> Option<String> {
    let uri: Uri = origin.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") {
        return None;
    }
    let authority = uri.authority()?;
    if authority.as_str().contains('@')
        || uri
            .path_and_query()
            .is_some_and(|p| !matches!(p.as_str(), "" | "/"))
        || origin.ends_with('/')
    {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    let default_port = if scheme == "https" { 443 } else { 80 };
    Some(match authority.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Whether the request comes from one of the server's own pages (the
/// dashboard): the browser says so (`Sec-Fetch-Site`, which no script can
/// set; it survives a proxy that rewrites `Host`), or `Origin` names the
/// `Host` the server was reached at.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let value = |name: &str| headers.get(name).and_then(|h| h.to_str().ok());
    if value("sec-fetch-site") == Some("same-origin") {
        return true;
    }
    let Some(host) = value(header::HOST.as_str()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

pub async fn check(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(request).await;
    };
    if same_origin(&origin, request.headers()) || crate::auth::is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let path = request.uri().path();
    let write = crate::routes::segment::is_ingest(path);
    let (origins, methods) = if write {
        (&app.cors.write, "POST, OPTIONS")
    } else {
        (&app.cors.read, "GET, POST, DELETE, OPTIONS")
    };
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if !origins.allow(&origin) {
        let setting = if write {
            "cors_origins"
        } else {
            "cors_read_origins"
        };
        let mut refusal = ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!("{path} does not answer pages from {origin} (server.{setting})"),
        )
        .into_response();
        // A sending page may read why it was refused (and stop retrying);
        // a refused preflight or read shows nothing.
        if write && !preflight {
            allow(refusal.headers_mut(), &origin);
        }
        return refusal;
    }
    let mut response = if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(methods),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE_SECS),
        );
        response
    } else {
        next.run(request).await
    };
    allow(response.headers_mut(), &origin);
    response
}

/// Lets a page of `origin` read the answer.
fn allow(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    // A page may read when to try again.
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after"),
    );
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

/// Both groups' origins, parsed once from the config.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    pub write: Origins,
    pub read: Origins,
}

impl Cors {
    pub fn new(config: &crate::ServerConfig) -> Result<Cors, BadOrigin> {
        Ok(Cors {
            write: Origins::parse("cors_origins", &config.cors_origins)?,
            read: Origins::parse("cors_read_origins", &config.cors_read_origins)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalize() {
        assert_eq!(
            normalize("HTTPS://WWW.Example.com:443").as_deref(),
            Some("https://www.example.com")
        );
        assert_eq!(
            normalize("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        for bad in [
            "www.example.com",
            "https://example.com/",
            "https://example.com/app",
            "ftp://example.com",
            "https://user@example.com",
            "",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }

    #[test]
    fn lists_allow_what_they_name() {
        let list = |v: &[&str]| {
            Origins::parse(
                "cors_origins",
                &v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        let some = list(&["https://app.example.com"]).unwrap();
        assert!(some.allow("https://app.example.com"));
        assert!(some.allow("https://APP.example.com:443"));
        assert!(!some.allow("https://evil.example.com"));
        assert!(!some.allow("http://app.example.com"));
        assert!(list(&["*"]).unwrap().allow("http://anything:1"));
        assert!(!list(&[]).unwrap().allow("https://app.example.com"));
        let e = list(&["app.example.com"]).unwrap_err();
        assert!(e.to_string().contains("cors_origins"), "{e}");
    }

    #[test]
    fn the_server_itself_is_not_cross_origin() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7800"));
        assert!(same_origin("http://127.0.0.1:7800", &headers));
        assert!(!same_origin("http://127.0.0.1:7801", &headers));
        assert!(!same_origin("null", &headers));
        // Behind a proxy that rewrote Host, the browser's word.
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin("https://tracklake.example.com", &headers));
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin("https://tracklake.example.com", &headers));
    }
}
