//! The lake as a Delta table for readers outside tracklake: Python's
//! `deltalake` and Polars count every acknowledged event exactly once,
//! right after compaction and right after a deletion; and tracklake's own
//! SQL never fails while compaction, deletion and vacuum change the lake.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{BIN, FAST_LAKE_CONFIG, Server, have, lake_files, lake_ids, runs, stdout_of};

/// One-second delivery and compaction, and vacuum two seconds after a
/// file is removed (queries take milliseconds), so every kind of commit
/// happens while a test watches.
const CHURN_CONFIG: &str = "[ingest]\nevent_types = [\"login\", \"material-view\"]\n\
     [delivery]\nbuffer_interval_secs = 1\n[compaction]\ninterval_secs = 1\n\
     [lake]\nretention_secs = 2\n";

/// Rows and distinct event ids per reader, and the users it saw.
const COUNT: &str = r#"
import json, sys
import deltalake, polars as pl
path = sys.argv[1]
table = deltalake.DeltaTable(path).to_pyarrow_table(columns=["event_id", "user_id"])
ids = table.column("event_id").to_pylist()
frame = pl.read_delta(path)
print(json.dumps({
    "deltalake": [len(ids), len(set(ids))],
    "polars": [frame.height, frame["event_id"].n_unique()],
    "users": sorted(set(table.column("user_id").to_pylist())),
}))
"#;

fn read_outside(lake: &std::path::Path) -> Value {
    let out = stdout_of(
        Command::new("python3")
            .args(["-c", COUNT])
            .arg(lake.join("events")),
    );
    serde_json::from_str(&out).unwrap()
}

/// `n` events of `user`, ids `<user>-<batch>-<i>`, over five days.
fn events(user: &str, batch: usize, n: usize) -> Value {
    let now = chrono::Utc::now();
    Value::Array(
        (0..n)
            .map(|i| {
                let at = now - chrono::Duration::days((i % 5) as i64);
                json!({"user_id": user, "event_type": "login",
                       "event_id": format!("{user}-{batch}-{i}"), "event_at": at.to_rfc3339()})
            })
            .collect(),
    )
}

async fn status_of(s: &Server) -> Value {
    s.get("/v1/status").await.1
}

#[tokio::test]
async fn python_deltalake_and_polars_count_each_event_once() {
    let present = runs("python3", &["-c", "import deltalake, polars"]);
    if !have(
        "Python deltalake and polars",
        present,
        "pip install deltalake polars",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lake = data.join("lake");
    // The default retention: a Python reader takes seconds to start and
    // read a version, longer than CHURN_CONFIG's two seconds keep its files
    // (docs/LAKE.md: the retention is what keeps older readers working).
    let s = Server::start(&data, FAST_LAKE_CONFIG);
    // Several deliveries, so compaction has small files to merge.
    for batch in 0..4 {
        for user in ["ann", "ben", "cat"] {
            assert_eq!(s.post(&events(user, batch, 10)).await.0, 200);
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while lake_ids(&lake).len() < 120 || status_of(&s).await["delivery"]["compactions"] == 0 {
        assert!(Instant::now() < deadline, "{}", status_of(&s).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = read_outside(&lake);
    assert_eq!(seen["deltalake"], json!([120, 120]), "{seen}");
    assert_eq!(seen["polars"], json!([120, 120]), "{seen}");

    let location = s.delete_user("ben").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get(&location).await.1["state"] != "done" {
        assert!(Instant::now() < deadline, "the deletion did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = read_outside(&lake);
    assert_eq!(seen["deltalake"], json!([80, 80]), "{seen}");
    assert_eq!(seen["polars"], json!([80, 80]), "{seen}");
    assert_eq!(seen["users"], json!(["ann", "cat"]), "{seen}");

    // The CLI reads the same log.
    let text = stdout_of(
        Command::new(BIN)
            .args(["lake", "history", "--limit", "1000", "--data-dir"])
            .arg(&data),
    );
    for operation in ["CREATE TABLE", "STREAMING UPDATE", "OPTIMIZE", "DELETE"] {
        assert!(text.contains(operation), "no {operation} in\n{text}");
    }
}

/// Queries run back to back while deliveries, compactions, a deletion and
/// vacuum change the lake: every one answers, and the events nobody
/// deleted are each counted once — by the built-in `events` and by an
/// outside reader's view, the table Athena's Delta DDL defines.
#[tokio::test]
async fn no_query_fails_while_the_lake_changes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, CHURN_CONFIG);
    // The log is made when delivery starts.
    let ddl = format!(
        "CREATE EXTERNAL TABLE lake_events LOCATION '{}/' TBLPROPERTIES ('table_type' = 'DELTA')",
        data.join("lake").join("events").display()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, answer) = s.sql(&ddl).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut deletion = None;
    let started = Instant::now();
    let mut batch = 0;
    let mut queries = 0;
    while started.elapsed() < Duration::from_secs(14) {
        // A batch every 1.3 s: each its own delivery, so compaction has
        // small files to merge.
        if batch < 8 && started.elapsed() >= Duration::from_millis(1300) * batch as u32 {
            for user in ["ann", "ben", "cat"] {
                assert_eq!(s.post(&events(user, batch, 25)).await.0, 200);
            }
            batch += 1;
        }
        if batch == 4 && deletion.is_none() {
            deletion = Some(s.delete_user("ben").await);
        }
        let (status, answer) = s
            .sql("SELECT count(*) AS n FROM events WHERE user_id <> 'ben'")
            .await;
        assert_eq!(status, 200, "query {queries} failed: {answer}");
        let n = answer["rows"][0]["n"].as_u64().unwrap();
        // Whatever the moment, no event of ann or cat is counted twice.
        assert!(n <= batch as u64 * 50, "{n} after {batch} batches");
        let (status, answer) = s
            .sql("SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM lake_events WHERE user_id <> 'ben'")
            .await;
        assert_eq!(
            status, 200,
            "query {queries} of the Delta table failed: {answer}"
        );
        let row = &answer["rows"][0];
        assert_eq!(row["n"], row["ids"], "an event counted twice: {answer}");
        queries += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status_of(&s).await;
    assert!(
        status["delivery"]["compactions"].as_u64() > Some(0),
        "{status}"
    );
    let (_, job) = s.get(deletion.as_deref().unwrap()).await;
    assert_eq!(job["state"], "done", "{job}");
    // ben's first four batches were deleted; his later four are kept.
    let (_, answer) = s
        .sql("SELECT count_if(user_id <> 'ben') AS others, count_if(user_id = 'ben') AS ben FROM events")
        .await;
    assert_eq!(answer["rows"][0]["others"], 8 * 50, "{answer}");
    assert_eq!(answer["rows"][0]["ben"], 4 * 25, "{answer}");
    assert!(queries > 20, "only {queries} queries ran");
    // The outside view holds the same once delivery has caught up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, answer) = s
            .sql(
                "SELECT count_if(user_id <> 'ben') AS others, count_if(user_id = 'ben') AS ben, \
                  count(DISTINCT dt) AS days FROM lake_events",
            )
            .await;
        if answer["rows"] == json!([{"others": 400, "ben": 100, "days": 5}]) {
            break;
        }
        assert!(Instant::now() < deadline, "{answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// kill -9, 20 times, at moments when compaction, a deletion and vacuum
/// run: after a restart, every acknowledged event of the users kept is in the table's
/// current version once, the deleted user's are in none, every file the
/// log names is there, and the files a kill left half-made are vacuumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_the_lake_is_rewritten_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lake = data.join("lake");
    let mut kept = std::collections::HashSet::new();
    let mut deletions = Vec::new();
    // 20 kills; the last round (odd) deletes, so none of ben's is kept.
    for round in 0..20usize {
        let s = Server::start(&data, CHURN_CONFIG);
        // Separate deliveries, so compaction has small files to merge.
        for batch in 0..3 {
            for user in ["ann", "ben", "cat"] {
                let body = events(user, round * 3 + batch, 20);
                assert_eq!(s.post(&body).await.0, 200);
                if user != "ben" {
                    kept.extend(
                        body.as_array()
                            .unwrap()
                            .iter()
                            .map(|e| e["event_id"].as_str().unwrap().to_owned()),
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        if round % 2 == 1 {
            deletions.push(s.delete_user("ben").await);
        }
        // A different moment each round, spread over 2.5 s: mid-merge,
        // mid-erasure, mid-vacuum.
        let moment = 50 + (round as u64 * 977) % 2500;
        tokio::time::sleep(Duration::from_millis(moment)).await;
        s.kill();
    }

    let s = Server::start(&data, CHURN_CONFIG);
    let deadline = Instant::now() + Duration::from_secs(60);
    for location in &deletions {
        while s.get(location).await.1["state"] != "done" {
            assert!(Instant::now() < deadline, "{}", s.get(location).await.1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    loop {
        let ids = lake_ids(&lake);
        let settled = ids.len() == kept.len() && kept.iter().all(|id| ids.contains_key(id));
        if settled {
            let doubled: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
            assert!(doubled.is_empty(), "doubled in the lake: {doubled:?}");
            break;
        }
        let ben = ids.keys().filter(|id| id.starts_with("ben-")).count();
        assert!(
            Instant::now() < deadline,
            "the lake holds {} ids ({ben} of ben) for {} kept",
            ids.len(),
            kept.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Files no version names (a kill's leftovers, removed files past the
    // retention) go: the directory comes to hold just the current version.
    let on_disk = || parquet_files_under(&lake.join("events"));
    while on_disk() != lake_files(&lake).len() {
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "{} Parquet files on disk, {} in the current version",
            on_disk(),
            lake_files(&lake).len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    s.stop();
}

/// Data files under `dir`, the log's checkpoints (also Parquet) aside.
fn parquet_files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| !path.ends_with("_delta_log"))
        .map(|path| match path.is_dir() {
            true => parquet_files_under(&path),
            false => usize::from(path.extension().is_some_and(|e| e == "parquet")),
        })
        .sum()
}

/// A Delta table as an earlier tracklake made it: the columns before the
/// page fields and `device_bot`, one file of three events today.
const OLD_TABLE: &str = r#"
import sys, datetime, pyarrow as pa, deltalake
text = lambda name, nullable=True: pa.field(name, pa.string(), nullable)
time = lambda name: pa.field(name, pa.timestamp("us", tz="UTC"), False)
schema = pa.schema([
    text("event_id", False), text("user_id", False), text("event_type", False),
    time("event_at"), time("received_at"), text("user_agent"), text("ip_address"),
    text("properties", False), text("device_type", False), text("device_os"),
    text("device_os_version"), text("device_browser"), text("device_browser_version"),
    text("device_brand"), text("device_model"), pa.field("device_is_bot", pa.bool_(), False),
    text("dt", False),
])
now = datetime.datetime.now(datetime.timezone.utc)
rows = [dict(event_id=f"old-{i}", user_id="old", event_type="login", event_at=now, received_at=now,
             user_agent=None, ip_address=None, properties="{}", device_type="unknown", device_os=None,
             device_os_version=None, device_browser=None, device_browser_version=None, device_brand=None,
             device_model=None, device_is_bot=False, dt=now.date().isoformat()) for i in range(3)]
deltalake.write_deltalake(sys.argv[1], pa.Table.from_pylist(rows, schema=schema), partition_by=["dt"])
"#;

/// Each event's id and path, and the table's columns, as outside readers see them.
const PATHS: &str = r#"
import json, sys
import deltalake, polars as pl
table = deltalake.DeltaTable(sys.argv[1])
rows = table.to_pyarrow_table(columns=["event_id", "path"]).to_pylist()
frame = pl.read_delta(sys.argv[1])
print(json.dumps({
    "columns": [f.name for f in table.schema().fields],
    "paths": {r["event_id"]: r["path"] for r in rows},
    "polars_rows": frame.height,
    "polars_null_paths": frame["path"].null_count(),
}))
"#;

/// A lake made before tracklake had the page columns: the next delivery
/// adds them to the table's schema, the files written before read them as
/// null — in tracklake's SQL, in `deltalake` and in Polars — and
/// compaction merges old files with new.
#[tokio::test]
async fn a_lake_made_before_the_page_columns_gains_them() {
    let present = runs("python3", &["-c", "import deltalake, polars, pyarrow"]);
    if !have(
        "Python deltalake, polars and pyarrow",
        present,
        "pip install deltalake polars pyarrow",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let table = data.join("lake").join("events");
    std::fs::create_dir_all(&table).unwrap();
    stdout_of(Command::new("python3").args(["-c", OLD_TABLE]).arg(&table));

    let s = Server::start(&data, FAST_LAKE_CONFIG);
    for (batch, path) in ["/", "/pricing"].into_iter().enumerate() {
        let views: Vec<Value> = (0..3)
            .map(|i| {
                json!({"user_id": "new", "event_type": "login", "event_id": format!("new-{batch}-{i}"),
                       "properties": {"url": format!("https://example.com{path}")}})
            })
            .collect();
        assert_eq!(s.post(&Value::Array(views)).await.0, 200);
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    // Delivered, and compacted into one file with the old one.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lake_ids(&data.join("lake")).len() < 9
        || status_of(&s).await["delivery"]["compactions"] == 0
    {
        assert!(Instant::now() < deadline, "{}", status_of(&s).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, answer) = s
        .sql("SELECT count(*) AS n, count(path) AS with_path, count(DISTINCT event_id) AS ids FROM events")
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"][0], json!({"n": 9, "with_path": 6, "ids": 9}));

    let out = stdout_of(Command::new("python3").args(["-c", PATHS]).arg(&table));
    let seen: Value = serde_json::from_str(&out).unwrap();
    let columns: Vec<&str> = seen["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for column in [
        "url",
        "path",
        "referrer_host",
        "utm_source",
        "session_id",
        "device_bot",
    ] {
        assert!(columns.contains(&column), "{column} not in {columns:?}");
    }
    assert_eq!(seen["paths"]["old-0"], Value::Null, "{seen}");
    assert_eq!(seen["paths"]["new-1-2"], "/pricing", "{seen}");
    assert_eq!(seen["paths"].as_object().unwrap().len(), 9, "{seen}");
    assert_eq!(seen["polars_rows"], 9, "{seen}");
    assert_eq!(seen["polars_null_paths"], 3, "{seen}");
    s.stop();
}
