//! docs/API.md: every example runs, and answers as the doc shows.

use std::process::Command;

use serde_json::Value;

use crate::harness::{Server, have, runs};

/// Keys whose values must match the doc exactly; other scalars need only
/// the same JSON type (ids and clock times differ from run to run).
const EXACT: [&str; 13] = [
    "success",
    "code",
    "field",
    "status",
    "stored",
    "duplicate",
    "rejected",
    "event_type",
    "type",
    "os",
    "browser",
    "user_id",
    "ip_address",
];

fn examples(doc: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut blocks = doc.split("```").skip(1).step_by(2);
    while let Some(block) = blocks.next() {
        if let Some(cmd) = block.strip_prefix("sh\n") {
            let answer = blocks
                .next()
                .and_then(|b| b.strip_prefix("json\n"))
                .expect("each sh example is followed by its json answer");
            let answer = serde_json::from_str(answer)
                .unwrap_or_else(|e| panic!("doc answer is not JSON ({e}): {answer}"));
            out.push((cmd.to_owned(), answer));
        }
    }
    out
}

fn like(doc: &Value, actual: &Value, key: &str, path: &str) {
    match (doc, actual) {
        (Value::Object(d), Value::Object(a)) => {
            for (k, v) in d {
                let got = a
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} is documented but missing in {actual}"));
                like(v, got, k, &format!("{path}.{k}"));
            }
        }
        (Value::Array(d), Value::Array(a)) => {
            assert_eq!(d.len(), a.len(), "{path}: documented {d:?}, got {a:?}");
            for (i, (dv, av)) in d.iter().zip(a).enumerate() {
                like(dv, av, key, &format!("{path}[{i}]"));
            }
        }
        _ if EXACT.contains(&key) => assert_eq!(doc, actual, "{path}"),
        _ => assert_eq!(
            std::mem::discriminant(doc),
            std::mem::discriminant(actual),
            "{path}: documented {doc}, got {actual}"
        ),
    }
}

#[tokio::test]
async fn docs_examples_run() {
    if !have("curl", runs("curl", &["--version"]), "apt-get install curl") {
        return;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let doc = std::fs::read_to_string(format!("{root}/docs/API.md")).unwrap();
    let config = std::fs::read_to_string(format!("{root}/tracklake.example.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &config);
    let examples = examples(&doc);
    assert!(
        examples.len() >= 5,
        "found only {} examples",
        examples.len()
    );
    for (cmd, answer) in examples {
        let cmd = cmd.replace("http://127.0.0.1:7800", &s.url);
        let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let actual: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{cmd} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        like(&answer, &actual, "", "$");
    }
}
