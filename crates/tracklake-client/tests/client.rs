//! The client against a real tracklake server started in-process on
//! loopback (and, for the busy-server case, a server that answers 429/503).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tracklake_client::{Client, ClientConfig, Error, Event};
use tracklake_event::{Rules, Validator};
use tracklake_server::{App, ServerConfig};
use tracklake_table::{EmbeddedTable, Query, Table};

struct Server {
    _dir: tempfile::TempDir,
    table: Arc<EmbeddedTable>,
}

async fn serve_on(listener: TcpListener) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let table =
        Arc::new(EmbeddedTable::open(&dir.path().join("table"), &Default::default()).unwrap());
    let app = App::new(
        table.clone(),
        Validator::new(Rules::default()).unwrap(),
        ServerConfig::default(),
        None,
        None,
        None,
    )
    .unwrap();
    app.set_ready(true);
    tokio::spawn(tracklake_server::serve(
        listener,
        app,
        None,
        std::future::pending(),
    ));
    Server { _dir: dir, table }
}

async fn stored(table: &EmbeddedTable, user: &str) -> usize {
    table
        .query(Query {
            limit: 1000,
            ..Query::recent(user)
        })
        .await
        .unwrap()
        .events
        .len()
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_everything_once_gzipped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = serve_on(listener).await;
    let client = Client::new(ClientConfig::new(url)).unwrap();
    for i in 0..250 {
        client
            .track(Event::new(7, "login").property("n", i).user_agent(
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            ))
            .unwrap();
    }
    client.shutdown().await;
    assert_eq!(stored(&server.table, "7").await, 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_comes_up_later_gets_every_event_once() {
    let addr = free_addr();
    let mut config = ClientConfig::new(format!("http://{addr}"));
    config.max_attempts = 50;
    config.max_backoff = Duration::from_millis(300);
    config.flush_interval = Duration::from_millis(50);
    let client = Client::new(config).unwrap();
    let ids: Vec<String> = (0..30)
        .map(|i| {
            let e = Event::new("u-1", "login").property("i", i);
            let id = e.id().to_owned();
            client.track(e).unwrap();
            id
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let server = serve_on(TcpListener::bind(addr).await.unwrap()).await;
    client.flush().await.unwrap();
    assert!(
        client.stats().retries.load(Ordering::Relaxed) > 0,
        "the first attempts must have failed"
    );
    assert_eq!(client.stats().sent.load(Ordering::Relaxed), 30);
    let page = server
        .table
        .query(Query {
            limit: 1000,
            ..Query::recent("u-1")
        })
        .await
        .unwrap();
    let mut got: Vec<String> = page.events.into_iter().map(|e| e.event_id).collect();
    got.sort();
    let mut want = ids;
    want.sort();
    assert_eq!(got, want);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_answers_are_retried_after_retry_after() {
    // Answers 429, then 503, each with Retry-After: 1, then accepts.
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    let busy = axum::Router::new().route(
        "/v1/events",
        axum::routing::post(move || {
            let seen = seen.clone();
            async move {
                let status = match seen.fetch_add(1, Ordering::SeqCst) {
                    0 => axum::http::StatusCode::TOO_MANY_REQUESTS,
                    1 => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    _ => axum::http::StatusCode::OK,
                };
                (
                    status,
                    [("retry-after", "1")],
                    r#"{"stored":5,"duplicate":0,"rejected":0,"results":[]}"#,
                )
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, busy).await });
    let client = Client::new(ClientConfig::new(url)).unwrap();
    for _ in 0..5 {
        client.track(Event::new(1, "login")).unwrap();
    }
    let started = Instant::now();
    client.flush().await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After was not honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(client.stats().retries.load(Ordering::Relaxed), 2);
    assert_eq!(client.stats().sent.load(Ordering::Relaxed), 5);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts() {
    let mut config = ClientConfig::new(format!("http://{}", free_addr()));
    config.queue_capacity = 10;
    // One event per request to a dead port: the sender is busy retrying,
    // so the queue fills.
    config.batch_size = 1;
    config.max_attempts = 2;
    config.max_backoff = Duration::from_millis(50);
    let client = Client::new(config).unwrap();
    let mut refused = 0;
    for _ in 0..100 {
        if let Err(Error::QueueFull(10)) = client.track(Event::new(1, "login")) {
            refused += 1;
        }
    }
    assert!(refused > 0);
    let stats = client.stats();
    assert_eq!(stats.dropped_queue_full.load(Ordering::Relaxed), refused);
    client.flush().await.unwrap();
    // Nobody listens: everything accepted is given up after its attempts.
    assert_eq!(stats.dropped_failed.load(Ordering::Relaxed) + refused, 100);
    assert_eq!(stats.sent.load(Ordering::Relaxed), 0);
    assert_eq!(stats.dropped(), 100);
    client.shutdown().await;
}
