//! An axum app that records logins and material views without waiting for
//! tracklake: `cargo run -p tracklake-client --example axum_app`, then
//! `curl -X POST 127.0.0.1:3000/login/1` and `curl 127.0.0.1:3000/materials/42?user=1`
//! (with `tracklake serve` running on its default port).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use tracklake_client::{Client, ClientConfig, Event};

fn event(user: i64, kind: &str, headers: &HeaderMap, peer: SocketAddr) -> Event {
    let ua = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Event::new(user, kind)
        .user_agent(ua)
        .ip_address(peer.ip().to_string())
}

async fn login(
    State(tracker): State<Arc<Client>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(user): Path<i64>,
) -> &'static str {
    // Returns at once: the event waits in the client's queue.
    if let Err(e) = tracker.track(event(user, "login", &headers, peer)) {
        eprintln!("not tracked: {e}");
    }
    "welcome\n"
}

#[derive(serde::Deserialize)]
struct Viewer {
    user: i64,
}

async fn material(
    State(tracker): State<Arc<Client>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(viewer): Query<Viewer>,
) -> String {
    let e = event(viewer.user, "material-view", &headers, peer).property("material_id", id);
    if let Err(e) = tracker.track(e) {
        eprintln!("not tracked: {e}");
    }
    format!("material {id}\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("TRACKLAKE_URL").unwrap_or_else(|_| "http://127.0.0.1:7800".into());
    let tracker = Arc::new(Client::new(ClientConfig::new(url))?);
    let app = Router::new()
        .route("/login/{user}", post(login))
        .route("/materials/{id}", get(material))
        .with_state(tracker.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    // Deliver what is queued before exiting.
    if let Ok(tracker) = Arc::try_unwrap(tracker) {
        tracker.shutdown().await;
    }
    Ok(())
}
