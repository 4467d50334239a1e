//! The accept loop: HTTP/1.1 with a cap on open connections, a deadline for
//! a request's headers, a bound on their number, and optional TLS from
//! certificate and key files. A connection over the cap is closed at once;
//! one that sends its headers too slowly is closed when the deadline passes.
//! On shutdown no new connection is taken and open ones finish their
//! requests.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::ServerConfig;

/// Builds the TLS acceptor when `tls_cert` and `tls_key` are set.
pub fn tls(config: &ServerConfig) -> Result<Option<TlsAcceptor>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => return Err("set both server.tls_cert and server.tls_key, or neither".into()),
    };
    let read = |path: &Path, what: &str, e: &dyn std::fmt::Display| {
        format!("reading the TLS {what} {}: {e}", path.display())
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read(cert, "certificate", &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read(cert, "certificate", &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read(key, "key", &e))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("the TLS certificate and key do not fit together: {e}"))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(tls))))
}

/// A connection's slot under `max_connections`, counted in the open
/// connections gauge while it lives.
struct OpenConnection {
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(slot: tokio::sync::OwnedSemaphorePermit) -> Self {
        metrics::gauge!(tracklake_metrics::names::HTTP_CONNECTIONS_OPEN).increment(1.0);
        OpenConnection { _slot: slot }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(tracklake_metrics::names::HTTP_CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// Serves `router` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let header_timeout = Duration::from_secs(config.header_timeout_secs.max(1));
    let max_headers = config.max_headers.max(16);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(tracklake_metrics::names::HTTP_CONNECTIONS_REFUSED).increment(1);
            drop(stream);
            continue;
        };
        let service = router
            .clone()
            .map_request(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let service = TowerToHyperService::new(service);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_headers(max_headers);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = OpenConnection::new(slot);
            let _ = stream.set_nodelay(true);
            let result = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        _ => return, // a failed or stalled handshake
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
