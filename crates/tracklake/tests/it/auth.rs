//! API keys against the real binary: every endpoint without a key, with a
//! wrong one and with one of the wrong scope; the Segment Basic form; the
//! refusal to listen beyond loopback without keys.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{BIN, Server};

/// `tracklake keys create`: the key on stdout, its config entry on stderr.
pub(crate) fn create(scope: &str) -> (String, String) {
    let out = Command::new(BIN)
        .args(["keys", "create", "--scope", scope, "--name", scope])
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let entry = stderr[stderr.find("[[server.keys]]").unwrap()..]
        .split("\n\n")
        .next()
        .unwrap()
        .to_owned();
    (key, entry)
}

async fn call(s: &Server, method: &str, path: &str, auth: Option<String>) -> u16 {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", s.url);
    let mut request = match method {
        "POST" if path == "/v1/query" => client.post(url).json(&json!({"sql": "SELECT 1"})),
        "POST" if path == "/v1/track" => client
            .post(url)
            .json(&json!({"userId": "1", "event": "login"})),
        "POST" => client
            .post(url)
            .json(&json!({"user_id": 1, "event_type": "login"})),
        "DELETE" => client.delete(url),
        _ => client.get(url),
    };
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn every_endpoint_asks_for_a_key_of_the_right_scope() {
    let (write, write_entry) = create("write");
    let (read, read_entry) = create("read");
    let (admin, admin_entry) = create("admin");
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[ingest]\nevent_types = [\"login\"]\n{write_entry}\n{read_entry}\n{admin_entry}\n"
    );
    let s = Server::start(&dir.path().join("data"), &config);
    let bearer = |k: &str| Some(format!("Bearer {k}"));
    let endpoints = [
        ("POST", "/v1/events", "write"),
        ("POST", "/v1/track", "write"),
        ("GET", "/v1/users/1/events", "read"),
        ("GET", "/v1/users/nobody-at-all/events", "read"),
        ("POST", "/v1/query", "read"),
        ("GET", "/v1/reports", "read"),
        ("GET", "/v1/reports/logins_per_day", "read"),
        ("GET", "/v1/status", "read"),
        ("GET", "/metrics", "read"),
        ("GET", "/v1/metrics/history", "read"),
        ("GET", "/v1/alarms", "read"),
        ("DELETE", "/v1/users/nobody-at-all/events", "admin"),
        ("GET", "/v1/deletions", "admin"),
    ];
    for (method, path, scope) in endpoints {
        let what = format!("{method} {path}");
        assert_eq!(
            call(&s, method, path, None).await,
            401,
            "{what} without a key"
        );
        assert_eq!(
            call(&s, method, path, bearer("tlk_wrong")).await,
            401,
            "{what} with a wrong key"
        );
        assert_eq!(
            call(&s, method, path, Some("Basic !!".into())).await,
            401,
            "{what} with a garbled header"
        );
        let (right, wrong) = match scope {
            "write" => (&write, &read),
            "admin" => (&admin, &read),
            _ => (&read, &write),
        };
        assert_eq!(
            call(&s, method, path, bearer(wrong)).await,
            403,
            "{what} with a key of the wrong scope"
        );
        for key in [right, &admin] {
            let status = call(&s, method, path, bearer(key)).await;
            assert!(
                (200..300).contains(&status),
                "{what} with the right key: {status}"
            );
        }
    }
    for open in ["/healthz", "/readyz", "/", "/assets/dashboard.js"] {
        assert_eq!(
            call(&s, "GET", open, None).await,
            200,
            "{open} needs no key"
        );
    }
    // Segment's libraries send the write key as Basic auth's user name.
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{write}:"));
    assert_eq!(
        call(&s, "POST", "/v1/track", Some(format!("Basic {basic}"))).await,
        200
    );

    // The CLI sends --key (or TRACKLAKE_KEY).
    let put = |key: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["put", "--user", "7", "--type", "login", "--url", &s.url])
            .env_remove("TRACKLAKE_KEY");
        if let Some(key) = key {
            cmd.args(["--key", key]);
        }
        cmd.output().unwrap()
    };
    let refused = put(None);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("401"));
    assert!(put(Some(&write)).status.success());
}

#[test]
fn serving_beyond_loopback_needs_keys_or_an_explicit_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    // A config it cannot run with: status 78, not retried by systemd.
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(
        text.contains("without API keys") && text.contains("tracklake keys create"),
        "{text}"
    );

    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--allow-unauthenticated",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("tracklake listening on http://0.0.0.0:"),
        "{line}"
    );
    assert!(Instant::now() < deadline);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Over the rate, 429 with Retry-After; health checks are never limited.
#[tokio::test]
async fn callers_over_the_rate_limit_are_told_when_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[server]\nrate_limit_per_second = 2\nrate_limit_burst = 5\n";
    let s = Server::start(&dir.path().join("data"), config);
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..12 {
        let r = client
            .get(format!("{}/v1/status", s.url))
            .header("authorization", "Bearer invented")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    assert!(retry_after.is_some_and(|v| v.parse::<u64>().unwrap() >= 1));
    for _ in 0..10 {
        assert_eq!(
            client
                .get(format!("{}/healthz", s.url))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        call(&s, "GET", "/v1/status", None).await,
        200,
        "allowance refills"
    );
}

/// A body that stops arriving is cut off with 408; others are still served.
#[tokio::test]
async fn a_slow_body_times_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("data"),
        "[server]\nbody_timeout_secs = 1\n",
    );
    let addr = s.url.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user_id\":")
        .await
        .unwrap();
    assert_eq!(
        call(&s, "GET", "/healthz", None).await,
        200,
        "others are served meanwhile"
    );
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// Connections over `max_connections` are closed at once; headers that
/// trickle in are cut off at `header_timeout_secs`; others are served.
#[tokio::test]
async fn idle_and_slow_connections_cannot_take_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let config = "[server]\nmax_connections = 20\nheader_timeout_secs = 1\n";
    let s = Server::start(&dir.path().join("data"), config);
    let addr = s.url.trim_start_matches("http://").to_owned();
    // Fill every slot with idle connections; the next is closed unanswered.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "over the cap: closed without an answer");
    // The idle ones sent no headers: the header deadline closes them, and
    // the server answers again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for conn in &mut idle {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    drop(idle);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(call(&s, "GET", "/healthz", None).await, 200);
    let text = s.text("/metrics").await;
    assert!(
        text.contains("tracklake_http_connections_refused_total 1"),
        "{text}"
    );
}

/// HTTPS from a certificate and key in PEM files.
#[tokio::test]
async fn tls_from_pem_files() {
    if !crate::harness::have(
        "openssl and curl",
        crate::harness::runs("openssl", &["version"])
            && crate::harness::runs("curl", &["--version"]),
        "apt-get install openssl curl",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let config = format!(
        "[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let s = Server::start(&dir.path().join("data"), &config);
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&cert)
        .arg(format!(
            "{}/healthz",
            s.url.replace("127.0.0.1", "localhost")
        ))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"ok\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP to the TLS port gets no answer.
    let plain = Command::new("curl")
        .args(["-s", "-m", "5"])
        .arg(format!("{}/healthz", s.url.replace("https", "http")))
        .output()
        .unwrap();
    assert!(!plain.status.success());
}
