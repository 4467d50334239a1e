//! Rate limits: each API key (or, without keys, each client address) may
//! make `rate_limit_per_second` requests a second with bursts of
//! `rate_limit_burst`; beyond that the answer is `429` with `Retry-After`.
//! Health checks are never limited. Off (0) by default: set it before
//! tracklake faces the internet.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::{ApiError, App, ServerConfig};

pub struct Limiter {
    limiter: DefaultKeyedRateLimiter<String>,
    seen: AtomicU64,
}

impl Limiter {
    /// `None` when rate limiting is off.
    pub fn new(config: &ServerConfig) -> Option<Limiter> {
        let rate = NonZeroU32::new(config.rate_limit_per_second)?;
        let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(rate);
        Some(Limiter {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            seen: AtomicU64::new(0),
        })
    }
}

/// The caller, for limiting: the key when keys are configured (the key
/// check ran first, so it is a real one), else the client's address — an
/// invented Authorization header buys no fresh allowance.
fn caller(app: &App, request: &Request) -> String {
    if !app.config.keys.is_empty()
        && let Some(auth) = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
    {
        return format!("key:{}", crate::auth::hash(auth));
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or("unknown".into(), |c| format!("ip:{}", c.0.ip()))
}

pub async fn check(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(limits) = app.limiter.as_ref() else {
        return next.run(request).await;
    };
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    // Forget idle callers now and then, so the table stays small.
    if limits.seen.fetch_add(1, Ordering::Relaxed) % 10_000 == 0 {
        limits.limiter.retain_recent();
    }
    match limits.limiter.check_key(&caller(&app, &request)) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; retry in {secs} s"),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            response
        }
    }
}
