//! Runs `tests/golden/*.slt`. Blocks are separated by blank lines:
//!
//! ```text
//! statement ok            statement error <text in the message>
//! <sql>                   <sql>
//!
//! query                   report <name>
//! <sql>                   ----
//! ----                    <expected rows>
//! <expected rows, a|b>
//! ```
//!
//! `${day-N}` is the UTC date N days ago (see `fixture.rs`); `#` starts a comment.

use tracklake_delivery::Format;
use tracklake_query::Reports;

use crate::fixture::{events, substitute};
use crate::{Setup, rows};

async fn run_file(name: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = substitute(&std::fs::read_to_string(&path).unwrap());
    let setup = Setup::new(&events(), Format::Parquet).await;
    let engine = std::sync::Arc::new(setup.engine().await);
    let reports = Reports::new(engine.clone(), setup.dir.path());
    let mut failures = Vec::new();
    let blocks = text
        .split("\n\n")
        .map(|b| {
            b.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|b| !b.trim().is_empty());
    for block in blocks {
        let (head, body) = block.split_once('\n').unwrap_or((&block, ""));
        let (sql, expected) = match body.split_once("----") {
            Some((sql, expected)) => (sql.trim(), Some(expected.trim())),
            None => (body.trim(), None),
        };
        let outcome = if let Some(report) = head.strip_prefix("report ") {
            reports
                .get(report.trim())
                .await
                .map(|r| {
                    let rows: Vec<String> = r
                        .rows
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|row| {
                            row.as_object()
                                .unwrap()
                                .values()
                                .map(|v| match v {
                                    serde_json::Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                })
                                .collect::<Vec<_>>()
                                .join("|")
                        })
                        .collect();
                    rows
                })
                .map_err(|e| e.to_string())
        } else {
            engine
                .run(sql)
                .await
                .map(|a| rows(&a))
                .map_err(|e| e.to_string())
        };
        let wanted: Vec<String> = expected
            .map(|e| {
                e.lines()
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let failure = match (head.trim(), &outcome) {
            ("statement ok", Ok(_)) => None,
            (h, Err(message)) if h.starts_with("statement error") => {
                let needle = h.trim_start_matches("statement error").trim();
                (!message.contains(needle)).then(|| format!("error {message:?} lacks {needle:?}"))
            }
            (h, Ok(got)) if h == "query" || h.starts_with("report ") => (got != &wanted)
                .then(|| format!("got:\n{}\nwanted:\n{}", got.join("\n"), wanted.join("\n"))),
            (h, other) => Some(format!("{h}: unexpected {other:?}")),
        };
        if let Some(failure) = failure {
            failures.push(format!("--- {name}: {head}\n{sql}\n{failure}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[tokio::test]
async fn athena_ddl() {
    run_file("athena.slt").await;
}

#[tokio::test]
async fn presto_functions() {
    run_file("functions.slt").await;
}

#[tokio::test]
async fn built_in_reports() {
    run_file("reports.slt").await;
}

#[tokio::test]
async fn events_table() {
    run_file("events.slt").await;
}
