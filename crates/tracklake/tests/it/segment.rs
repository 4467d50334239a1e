//! The official Segment Python library, unmodified, sends to tracklake.

use std::process::Command;

use crate::harness::{Server, have, runs};

const SCRIPT: &str = r#"
import sys
import segment.analytics as analytics
analytics.write_key = "test-write-key"
analytics.host = sys.argv[1]
analytics.sync_mode = True
failures = []
analytics.on_error = lambda error, batch: failures.append(str(error))
ctx = {"ip": "203.0.113.9", "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}
analytics.track("seg-user-1", "Signed Up", {"plan": "pro"}, context=ctx)
analytics.identify("seg-user-1", {"email": "ada@example.com"}, context=ctx)
analytics.page("seg-user-1", "Docs", "Home", context=ctx)
analytics.flush()
if failures:
    print("\n".join(failures))
    sys.exit(3)
"#;

fn segment_library_available() -> bool {
    let present = runs("python3", &["-c", "import segment.analytics"]);
    have(
        "the Segment Python library",
        present,
        "pip install segment-analytics-python",
    )
}

#[tokio::test]
async fn the_segment_python_library_sends_to_tracklake() {
    if !segment_library_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), "");
    let out = Command::new("python3")
        .args(["-c", SCRIPT, &s.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "segment client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, page) = s.get("/v1/users/seg-user-1/events?order=oldest").await;
    assert_eq!(status, 200);
    let events = page["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 3, "{page}");
    for t in ["signed-up", "identify", "page"] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    let signed_up = events
        .iter()
        .find(|e| e["event_type"] == "signed-up")
        .unwrap();
    assert_eq!(signed_up["properties"]["event"], "Signed Up");
    assert_eq!(signed_up["properties"]["plan"], "pro");
    assert_eq!(signed_up["ip_address"], "203.0.113.9");
    assert_eq!(signed_up["device"]["browser"], "Chrome");
    let identify = events
        .iter()
        .find(|e| e["event_type"] == "identify")
        .unwrap();
    assert_eq!(identify["properties"]["traits"]["email"], "ada@example.com");
}
