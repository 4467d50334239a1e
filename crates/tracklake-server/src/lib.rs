//! tracklake's HTTP API: ingest (`POST /v1/events`), per-user reads
//! (`GET /v1/users/{id}/events`), per-user deletion
//! (`DELETE /v1/users/{id}/events`), SQL and reports (`POST /v1/query`,
//! `GET /v1/reports/{name}`) and health checks, on axum.

mod auth;
mod client;
pub mod cors;
mod count;
pub mod disk;
mod error;
mod limits;
mod listen;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::routing::{get, post};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tracklake_event::Validator;
use tracklake_table::Table;

pub use auth::{ApiKey, Scope, hash as key_hash, new_key};
pub use error::ApiError;

/// The `[server]` section of the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; loopback by default.
    pub listen: SocketAddr,
    /// Proxies whose `X-Forwarded-For` is believed (CIDR blocks). From any
    /// other peer the header is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// API keys (`tracklake keys create`). None: no key is asked for,
    /// which `serve` allows only on a loopback address.
    pub keys: Vec<ApiKey>,
    /// Listen beyond loopback without keys (something in front checks access).
    pub allow_unauthenticated: bool,
    /// Requests a second per API key (or per client address without one);
    /// 0 turns the limit off. Beyond it: 429 with Retry-After.
    pub rate_limit_per_second: u32,
    /// Requests allowed at once above the rate (default: one second's worth).
    pub rate_limit_burst: u32,
    /// A request body must arrive within this long (a slow sender cannot
    /// hold a connection): 408 after it.
    pub body_timeout_secs: u64,
    /// A request's headers must arrive within this long, else the
    /// connection is closed (and a TLS handshake must finish within it).
    pub header_timeout_secs: u64,
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// Headers per request at most (431 beyond).
    pub max_headers: usize,
    /// Serve HTTPS with this PEM certificate chain and PEM private key.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// Events are refused (503, `Retry-After`) while the filesystem of the
    /// data directory or of a local lake has less free than this, so that
    /// no write meets a full disk halfway; taken again once space returns.
    /// 0 turns the check off.
    pub min_free_mib: u64,
    /// Origins whose pages may send events (`/v1/events`, Segment's calls):
    /// `"*"` (the default: write keys are public by design) or a list of
    /// `scheme://host[:port]`. Another origin's request is refused (403).
    pub cors_origins: Vec<String>,
    /// Origins whose pages may use the read and admin endpoints; none by
    /// default.
    pub cors_read_origins: Vec<String>,
}

impl ServerConfig {
    /// Checks what deserializing cannot: the CORS origins' form.
    pub fn check(&self) -> Result<(), cors::BadOrigin> {
        cors::Cors::new(self).map(drop)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7800)),
            trusted_proxies: Vec::new(),
            keys: Vec::new(),
            allow_unauthenticated: false,
            rate_limit_per_second: 0,
            rate_limit_burst: 0,
            body_timeout_secs: 30,
            header_timeout_secs: 10,
            max_connections: 4096,
            max_headers: 64,
            tls_cert: None,
            tls_key: None,
            min_free_mib: 256,
            cors_origins: vec!["*".into()],
            cors_read_origins: Vec::new(),
        }
    }
}

/// The stages behind the table, as the API sees them.
pub trait Pipeline: Send + Sync {
    /// Whether ingest may take more events: `Err(reason)` answers 503 with
    /// `Retry-After` (for example when delivery to the lake lags too far).
    fn admit(&self) -> Result<(), String>;
    /// Counters and gauges of the stages, for `GET /v1/status`.
    fn status(&self) -> serde_json::Value;
}

/// SQL over the lake, as the API sees it (tracklake-query implements it;
/// the server itself does not link the engine).
pub trait Sql: Send + Sync {
    /// `{"columns": [{"name", "type"}], "rows": [{…}], "row_count", "truncated", "elapsed_ms"}`.
    fn query<'a>(&'a self, sql: &'a str) -> BoxFuture<'a, Result<serde_json::Value, SqlError>>;
    /// Every named report's name, description, SQL and max age.
    fn reports(&self) -> serde_json::Value;
    /// One report, no older than its max age.
    fn report<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<serde_json::Value, SqlError>>;
    /// An analytics report (`funnel`, `retention`, `abnormal`, `web`)
    /// from its query parameters.
    fn analytics<'a>(
        &'a self,
        report: &'a str,
        params: std::collections::BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<serde_json::Value, SqlError>>;
}

/// Per-user deletion, as the API sees it (the delivery crate does the work).
pub trait Deleter: Send + Sync {
    /// Queues the deletion of every event of a user; the job as JSON.
    fn request(&self, user_id: &str) -> Result<serde_json::Value, String>;
    /// One job as JSON, if there is one with this id.
    fn job(&self, id: &str) -> Option<serde_json::Value>;
    /// Every job, oldest first.
    fn jobs(&self) -> Vec<serde_json::Value>;
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a statement failed, which decides the HTTP status.
#[derive(Debug)]
pub enum SqlError {
    /// The statement is wrong (400).
    Invalid(String),
    /// A report's parameter is wrong (400): which, and why.
    BadParameter { field: String, message: String },
    /// No such report (404).
    NotFound(String),
    /// It ran past `query.timeout_secs` (504).
    Timeout(String),
    /// The engine failed (500).
    Failed(String),
}

/// What every handler shares.
pub struct App {
    pub table: Arc<dyn Table>,
    pub validator: Validator,
    pub config: ServerConfig,
    pub pipeline: Option<Arc<dyn Pipeline>>,
    pub sql: Option<Arc<dyn Sql>>,
    pub monitor: Option<Arc<tracklake_metrics::Monitor>>,
    /// Set once at start-up, when deletion is available.
    pub deleter: std::sync::OnceLock<Arc<dyn Deleter>>,
    /// Set once at start-up: free space on the filesystems written to.
    pub disk: std::sync::OnceLock<Arc<disk::Disk>>,
    limiter: Option<limits::Limiter>,
    cors: cors::Cors,
    ready: AtomicBool,
}

impl App {
    pub fn new(
        table: Arc<dyn Table>,
        validator: Validator,
        config: ServerConfig,
        pipeline: Option<Arc<dyn Pipeline>>,
        sql: Option<Arc<dyn Sql>>,
        monitor: Option<Arc<tracklake_metrics::Monitor>>,
    ) -> Result<Arc<Self>, cors::BadOrigin> {
        let limiter = limits::Limiter::new(&config);
        let cors = cors::Cors::new(&config)?;
        Ok(Arc::new(App {
            table,
            validator,
            config,
            pipeline,
            sql,
            monitor,
            deleter: std::sync::OnceLock::new(),
            disk: std::sync::OnceLock::new(),
            limiter,
            cors,
            ready: AtomicBool::new(false),
        }))
    }

    /// Ready for traffic: set after start-up, cleared when shutting down.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// Why events cannot be taken now, if they cannot.
    pub fn not_ready(&self) -> Option<String> {
        if !self.ready.load(Ordering::Acquire) {
            return Some("tracklake is starting or stopping".into());
        }
        if !self.table.is_healthy() {
            return Some(tracklake_table::Error::Failed.to_string());
        }
        self.disk
            .get()
            .and_then(|d| d.low())
            .map(|low| low.to_string())
    }

    /// Whether ingest may take events now: 503 with `Retry-After` when not
    /// ready, when a disk is under its watermark, or when the stages behind
    /// the table ask for a pause.
    pub fn admit(&self) -> Result<(), ApiError> {
        if let Some(disk) = self.disk.get() {
            disk.admit()?;
        }
        if let Some(reason) = self.not_ready() {
            return Err(ApiError::unavailable("not_ready", reason, 1));
        }
        if let Some(Err(reason)) = self.pipeline.as_ref().map(|p| p.admit()) {
            tracing::warn!(%reason, "refusing events");
            return Err(ApiError::unavailable("overloaded", reason, 5));
        }
        Ok(())
    }
}

/// All routes of the API.
pub fn router(app: Arc<App>) -> Router {
    let segment = routes::segment::PATHS
        .iter()
        .fold(Router::new(), |r, (path, _)| {
            r.route(&format!("/v1/{path}"), post(routes::segment::post))
        });
    segment
        .route("/v1/events", post(routes::events::post))
        .route(
            "/v1/users/{user_id}/events",
            get(routes::users::events).delete(routes::deletion::request),
        )
        .route("/v1/deletions", get(routes::deletion::list))
        .route("/v1/deletions/{id}", get(routes::deletion::job))
        .route("/v1/query", post(routes::query::query))
        .route("/v1/reports", get(routes::query::reports))
        .route("/v1/reports/funnel", get(routes::analytics::funnel))
        .route("/v1/reports/retention", get(routes::analytics::retention))
        .route("/v1/reports/abnormal", get(routes::analytics::abnormal))
        .route("/v1/reports/web", get(routes::analytics::web))
        .route("/v1/reports/{name}", get(routes::query::report))
        .route("/v1/status", get(routes::health::status))
        .route("/v1/metrics/history", get(routes::monitor::history))
        .route("/v1/alarms", get(routes::monitor::alarms))
        .route("/metrics", get(routes::monitor::metrics))
        .route("/", get(routes::monitor::page))
        .route("/assets/{name}", get(routes::monitor::asset))
        .route("/tracklake.js", get(routes::tracker::script))
        .route("/healthz", get(routes::health::live))
        .route("/readyz", get(routes::health::ready))
        .route_layer(axum::middleware::from_fn(routes::monitor::track))
        .fallback(routes::health::not_found)
        .method_not_allowed_fallback(routes::health::method_not_allowed)
        // Clients may gzip their batches (`Content-Encoding: gzip`); the body
        // limit applies to the decompressed bytes.
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            std::time::Duration::from_secs(app.config.body_timeout_secs.max(1)),
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            limits::check,
        ))
        // A request without the right key goes no further …
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::check,
        ))
        // … but a browser's preflight carries no key: CORS comes first.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            cors::check,
        ))
        .with_state(app)
}

/// Entry points for the fuzz targets under `fuzz/`: the parsing the API does
/// before anything is stored. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use serde_json::{Map, Value};
    use tracklake_event::Rejection;

    /// A Segment message (of call `kind`) as tracklake event fields.
    pub fn segment_message(kind: &str, message: &Value) -> Result<Map<String, Value>, Rejection> {
        crate::routes::segment::to_event(kind, message, chrono::Utc::now())
    }

    /// The query string of `GET /v1/users/{user_id}/events`: `Ok` when taken.
    pub fn user_events_query(user_id: &str, raw: &str) -> Result<(), String> {
        crate::routes::users::parse_query(user_id.to_owned(), raw)
            .map(|_| ())
            .map_err(|e| format!("{}: {}", e.code, e.message))
    }
}

/// The TLS acceptor for `server.tls_cert` / `server.tls_key`, if set;
/// an error names the file at fault.
pub use listen::tls as tls_acceptor;

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = app.config.clone();
    listen::serve(listener, router(app), &config, tls, shutdown).await
}
