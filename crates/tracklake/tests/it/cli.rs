//! The command line as a user types it.

use std::process::Command;

use crate::harness::{ARTICLE_CONFIG, BIN, Server};

fn tracklake(server: &Server, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("TRACKLAKE_URL", &server.url)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn seed_then_read_like_the_article() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), ARTICLE_CONFIG);
    let (ok, out, err) = tracklake(
        &s,
        &[
            "seed",
            "--users",
            "3",
            "--events-per-user",
            "40",
            "--days",
            "7",
            "--types",
            "login,material-view",
            "--batch",
            "25",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("seeded 120 events for 3 users over 7 days"),
        "{out}"
    );
    assert!(out.contains("120 stored, 0 duplicate, 0 rejected"), "{out}");
    let ids = s.all_ids("2").await;
    assert_eq!(ids.len(), 40);

    let (ok, out, err) = tracklake(&s, &["recent", "--user", "2", "--limit", "5"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("BROWSER"),
        "{out}"
    );
    assert_eq!(lines.len(), 1 + 5 + 1, "header, 5 rows, 'more' hint: {out}");

    let (ok, out, _) = tracklake(&s, &["logins", "--user", "2", "--limit", "1000"]);
    assert!(ok);
    assert!(out.lines().skip(1).all(|l| l.contains(" login ")), "{out}");

    // Seeded events stay within the last 7 days, with public addresses.
    let (_, page) = s.get("/v1/users/1/events?limit=1000").await;
    let now = chrono::Utc::now();
    for e in page["events"].as_array().unwrap() {
        let at = chrono::DateTime::parse_from_rfc3339(e["event_at"].as_str().unwrap()).unwrap();
        assert!(at <= now && at > now - chrono::Duration::days(7), "{at}");
        let ip: std::net::Ipv4Addr = e["ip_address"].as_str().unwrap().parse().unwrap();
        assert!(!ip.is_private() && !ip.is_loopback(), "{ip}");
        assert_ne!(e["device"]["type"], "unknown", "{e}");
    }
}

#[tokio::test]
async fn put_reports_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), ARTICLE_CONFIG);
    let (ok, out, err) = tracklake(
        &s,
        &[
            "put",
            "--user",
            "1",
            "--type",
            "material-view",
            "--id",
            "m1",
            "--prop",
            "material_id=42",
            "--user-agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("stored m1 for user 1"), "{out}");
    assert!(
        out.contains("desktop, Firefox 133.0 on Windows 10"),
        "{out}"
    );
    let (ok, out, _) = tracklake(
        &s,
        &[
            "put",
            "--user",
            "1",
            "--type",
            "material-view",
            "--id",
            "m1",
        ],
    );
    assert!(ok);
    assert!(out.starts_with("already stored m1"), "{out}");
    let (_, page) = s.get("/v1/users/1/events").await;
    assert_eq!(page["events"][0]["properties"]["material_id"], 42);

    let (ok, _, err) = tracklake(&s, &["put", "--user", "1", "--type", "logout"]);
    assert!(!ok);
    assert!(err.contains("400 not_allowed (event_type)"), "{err}");
}

#[test]
fn commands_say_when_no_server_is_running() {
    let out = Command::new(BIN)
        .args(["recent", "--user", "1", "--url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is `tracklake serve` running?"), "{err}");
}

/// The README's first command, `cargo run --release -- serve`, needs the
/// workspace's default members to hold one binary, tracklake's (cargo
/// refuses to guess between two).
#[test]
fn cargo_run_at_the_root_picks_the_tracklake_binary() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = crate::harness::stdout_of(Command::new(cargo).current_dir(root).args([
        "metadata",
        "--no-deps",
        "--offline",
        "--format-version",
        "1",
    ]));
    let metadata: serde_json::Value = serde_json::from_str(&out).unwrap();
    let defaults = metadata["workspace_default_members"].as_array().unwrap();
    let binaries: Vec<&str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| defaults.contains(&p["id"]))
        .flat_map(|p| p["targets"].as_array().unwrap())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(binaries, ["tracklake"]);
}
