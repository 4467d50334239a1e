//! examples/rails: the article's Tracker module in plain Ruby, run against a
//! live server.

use std::process::Command;

use crate::harness::{ARTICLE_CONFIG, Server, have, runs};

#[tokio::test]
async fn the_rails_tracker_returns_what_the_article_returned() {
    if !have("ruby", runs("ruby", &["--version"]), "apt-get install ruby") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), ARTICLE_CONFIG);
    let test = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/rails/test/tracker_test.rb"
    );
    let out = Command::new("ruby")
        .arg(test)
        .env("TRACKLAKE_URL", &s.url)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("2 runs") && text.contains("0 failures, 0 errors"),
        "{text}"
    );
}
