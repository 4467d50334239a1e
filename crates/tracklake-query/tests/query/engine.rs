//! The engine beyond the golden files: fresh events from a live table,
//! NDJSON lakes, definitions and reports across restarts, and the limits.

use std::sync::Arc;

use tracklake_delivery::{CompactionConfig, Delivery, Format, Lake, LakeConfig};
use tracklake_query::{Engine, QueryConfig, ReportConfig, Reports};
use tracklake_table::{ChangeLog, EmbeddedTable, TableConfig};

use crate::fixture::events;
use crate::{Setup, rows};

async fn count(engine: &Engine, sql: &str) -> String {
    rows(&engine.run(sql).await.unwrap()).join(",")
}

/// Events delivered to the lake and events still only in the table are both
/// in `events`, each once; with `fresh` off only the lake's are.
#[tokio::test]
async fn fresh_events_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let table: Arc<dyn ChangeLog> =
        Arc::new(EmbeddedTable::open(&dir.path().join("table"), &TableConfig::default()).unwrap());
    let lake = Arc::new(Lake::open(&LakeConfig::default(), dir.path()).unwrap());
    let all = events();
    let (delivered, fresh) = all.split_at(50);
    table.put(delivered.to_vec()).await.unwrap();
    let delivery = Delivery::start(
        table.clone(),
        lake.clone(),
        Default::default(),
        Default::default(),
        CompactionConfig {
            enabled: false,
            ..Default::default()
        },
    )
    .unwrap();
    delivery.stop().await.unwrap(); // publishes and commits what it read
    assert!(!lake.snapshot().await.unwrap().files.is_empty());
    table.put(fresh.to_vec()).await.unwrap();

    let config = QueryConfig::default();
    let engine = Engine::open(&config, dir.path(), lake.clone(), Some(table.clone()))
        .await
        .unwrap();
    let sql = "SELECT count(*), count(DISTINCT event_id) FROM events";
    assert_eq!(count(&engine, sql).await, "80|80");

    // A delivery that published the fresh events but crashed before its
    // commit: the file is there, the events still count once.
    let refs: Vec<_> = fresh.iter().collect();
    let body = tracklake_delivery::encode(&refs, Format::Parquet, false).unwrap();
    let in_flight = lake.file_path(&lake.partition(fresh[0].event_at), 51, 80);
    lake.publish(&in_flight, body.into()).await.unwrap();
    assert_eq!(count(&engine, sql).await, "80|80");
    lake.delete(&in_flight).await.unwrap();
    let lake_only = QueryConfig {
        fresh: false,
        ..QueryConfig::default()
    };
    let engine = Engine::open(&lake_only, dir.path(), lake, Some(table))
        .await
        .unwrap();
    assert_eq!(count(&engine, sql).await, "50|50");
}

#[tokio::test]
async fn ndjson_and_gzip_lakes_read_the_same() {
    for gzip in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = LakeConfig {
            format: Format::Ndjson,
            gzip,
            ..LakeConfig::default()
        };
        let lake = Arc::new(Lake::open(&config, dir.path()).unwrap());
        let all = events();
        let refs: Vec<_> = all.iter().collect();
        for (i, e) in refs.iter().enumerate() {
            let body = tracklake_delivery::encode(&[e], Format::Ndjson, gzip).unwrap();
            let seq = i as u64 + 1;
            lake.publish(
                &lake.file_path(&lake.partition(e.event_at), seq, seq),
                body.into(),
            )
            .await
            .unwrap();
        }
        let engine = Engine::open(&QueryConfig::default(), dir.path(), lake, None)
            .await
            .unwrap();
        let sql = "SELECT count(*), count(DISTINCT user_id), count_if(event_type = 'login'), max(json_extract_scalar(properties, '$.plan')) FROM events";
        assert_eq!(count(&engine, sql).await, "80|5|9|pro", "gzip: {gzip}");
    }
}

#[tokio::test]
async fn definitions_survive_a_restart() {
    let setup = Setup::new(&events(), Format::Parquet).await;
    {
        let engine = setup.engine().await;
        engine.run("CREATE DATABASE app").await.unwrap();
        engine
            .run("CREATE EXTERNAL TABLE app.raw (user_id STRING) ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION 's3://exampro-events/'")
            .await
            .unwrap();
    }
    let engine = setup.engine().await;
    assert_eq!(count(&engine, "SELECT count(*) FROM app.raw").await, "80");
    engine.run("DROP TABLE app.raw").await.unwrap();
    let engine = setup.engine().await;
    let err = engine
        .run("SELECT count(*) FROM app.raw")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("raw"), "{err}");
    assert_eq!(count(&engine, "SHOW TABLES IN app").await, "");
}

/// A Delta table defined with Athena's DDL reads the log's version; if its
/// log cannot be read at a start, the definition is kept and the table comes
/// back at the next start that finds it.
#[tokio::test]
async fn a_delta_definition_outlives_a_start_without_its_log() {
    let setup = Setup::new(&events(), Format::Parquet).await;
    let table_dir = setup.dir.path().join("lake/events");
    {
        let engine = setup.engine().await;
        let ddl = format!(
            "CREATE EXTERNAL TABLE copy LOCATION '{}/' TBLPROPERTIES ('table_type' = 'DELTA')",
            table_dir.display()
        );
        engine.run(&ddl).await.unwrap();
        assert_eq!(count(&engine, "SELECT count(*) FROM copy").await, "80");
        assert_eq!(
            count(&engine, "SELECT count(DISTINCT dt) FROM copy").await,
            count(&engine, "SELECT count(DISTINCT dt) FROM events").await
        );
    }
    let hidden = setup.dir.path().join("hidden-log");
    std::fs::rename(table_dir.join("_delta_log"), &hidden).unwrap();
    {
        let engine = setup.engine().await;
        assert!(engine.run("SELECT count(*) FROM copy").await.is_err());
        // Another change to the catalog must not drop the kept definition.
        engine.run("CREATE DATABASE other").await.unwrap();
    }
    std::fs::rename(&hidden, table_dir.join("_delta_log")).unwrap();
    let engine = setup.engine().await;
    assert_eq!(count(&engine, "SELECT count(*) FROM copy").await, "80");
}

#[tokio::test]
async fn answers_are_cut_at_max_rows() {
    let mut setup = Setup::new(&events(), Format::Parquet).await;
    setup.config.max_rows = 7;
    let engine = setup.engine().await;
    let answer = engine.run("SELECT event_id FROM events").await.unwrap();
    assert_eq!((answer.rows, answer.truncated), (7, true));
    let answer = engine
        .run("SELECT event_id FROM events LIMIT 3")
        .await
        .unwrap();
    assert_eq!((answer.rows, answer.truncated), (3, false));
}

#[tokio::test]
async fn a_memory_limit_gives_a_clear_error() {
    let mut setup = Setup::new(&events(), Format::Parquet).await;
    setup.config.memory_limit_mib = 0; // the floor: 16 MiB
    let engine = setup.engine().await;
    // A join's build side (two ~100 MB inputs) cannot spill: it must fail, and say why.
    let side = |c: char| {
        format!("(SELECT value AS v, repeat('{c}', 100) AS pad FROM generate_series(1, 1000000))")
    };
    let sql = format!(
        "SELECT count(*) FROM {} a JOIN {} b ON a.v = b.v",
        side('x'),
        side('y')
    );
    let sql = sql.as_str();
    let err = engine.run(sql).await.unwrap_err();
    assert!(
        matches!(err, tracklake_query::Error::Engine(_))
            && err.to_string().contains("query.memory_limit_mib"),
        "{err}"
    );
    // A small query still runs under the same limit.
    assert_eq!(count(&engine, "SELECT count(*) FROM events").await, "80");
}

#[tokio::test]
async fn reports_are_kept_for_their_max_age_and_across_restarts() {
    let mut setup = Setup::new(&events(), Format::Parquet).await;
    setup.config.reports.insert(
        "user_count".into(),
        ReportConfig {
            sql: "SELECT count(DISTINCT user_id) AS users FROM events".into(),
            max_age_secs: 300,
            description: "users".into(),
        },
    );
    setup.config.reports.insert(
        "always_fresh".into(),
        ReportConfig {
            sql: "SELECT now() AS at".into(),
            max_age_secs: 0,
            description: String::new(),
        },
    );
    let reports = Reports::new(Arc::new(setup.engine().await), setup.dir.path());
    let first = reports.get("user_count").await.unwrap();
    assert_eq!(first.rows, serde_json::json!([{"users": 5}]));
    assert_eq!(
        reports.get("user_count").await.unwrap().computed_at,
        first.computed_at
    );
    let a = reports.get("always_fresh").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(reports.get("always_fresh").await.unwrap().computed_at > a.computed_at);
    assert!(reports.get("nope").await.is_err());
    assert!(reports.list()["reports"].as_array().unwrap().len() >= 10);

    let restarted = Reports::new(Arc::new(setup.engine().await), setup.dir.path());
    assert_eq!(
        restarted.get("user_count").await.unwrap().computed_at,
        first.computed_at
    );
}

/// Filters on `dt` and on `event_at` keep other days' files out of the plan.
#[tokio::test]
async fn filters_prune_partitions() {
    use crate::fixture::day;
    let setup = Setup::new(&events(), Format::Parquet).await;
    let engine = setup.engine().await;
    let files = |sql: String| {
        let engine = &engine;
        async move {
            let plan = rows(&engine.run(&format!("EXPLAIN {sql}")).await.unwrap()).join("\n");
            let mut days: Vec<String> = plan
                .split("dt=")
                .skip(1)
                .map(|rest| rest[..10].to_owned())
                .collect();
            days.sort();
            days.dedup();
            days
        }
    };
    let all = files("SELECT count(*) FROM events".into()).await;
    assert_eq!(all.len(), 6, "{all:?}");
    let one = files(format!(
        "SELECT count(*) FROM events WHERE dt = '{}'",
        day(5)
    ))
    .await;
    assert_eq!(one, vec![day(5).to_string()]);
    let recent = files(format!(
        "SELECT count(*) FROM events WHERE event_at >= TIMESTAMP '{} 00:00:00'",
        day(2)
    ))
    .await;
    assert_eq!(recent, vec![day(2).to_string(), day(0).to_string()]);
}

/// A filter naming users keeps out the files whose `user_id` statistics (in
/// the Delta log) rule them out, and answers as a scan of every file does.
#[tokio::test]
async fn filters_on_user_id_prune_files_by_their_statistics() {
    // Sorted by user, so each partition's two files hold separate users.
    let mut sorted = events();
    sorted.sort_by_key(|e| e.user_id.to_string());
    let setup = Setup::new(&sorted, Format::Parquet).await;
    let engine = setup.engine().await;
    let files = |sql: String| {
        let engine = &engine;
        async move {
            let plan = rows(&engine.run(&format!("EXPLAIN {sql}")).await.unwrap()).join("\n");
            plan.matches(".parquet").count()
        }
    };
    let all = files("SELECT count(*) FROM events".into()).await;
    let user = sorted[0].user_id.to_string();
    for filter in [
        format!("user_id = '{user}'"),
        format!("user_id IN ('{user}', '~nobody')"),
    ] {
        let pruned = files(format!("SELECT count(*) FROM events WHERE {filter}")).await;
        assert!(
            0 < pruned && pruned < all,
            "{filter}: {pruned} of {all} files"
        );
        // The same rows as without pruning (a filter the pruner cannot read).
        let unpruned = format!("SELECT count(*) FROM events WHERE concat(user_id, '') = '{user}'");
        assert_eq!(files(unpruned.clone()).await, all);
        let expected = sorted
            .iter()
            .filter(|e| e.user_id.to_string() == user)
            .count();
        assert_eq!(count(&engine, &unpruned).await, expected.to_string());
        assert_eq!(
            count(
                &engine,
                &format!("SELECT count(*) FROM events WHERE {filter}")
            )
            .await,
            expected.to_string()
        );
    }
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM events WHERE user_id = '~nobody'"
        )
        .await,
        "0"
    );
}

/// A lake written by another table (say the table directory was wiped, or
/// the lake was copied in): every file counts, as the table has no claim on it.
#[tokio::test]
async fn a_lake_without_a_checkpoint_is_read_whole() {
    let setup = Setup::new(&events(), Format::Parquet).await;
    let table: Arc<dyn ChangeLog> = Arc::new(
        EmbeddedTable::open(&setup.dir.path().join("table"), &TableConfig::default()).unwrap(),
    );
    let engine = Engine::open(
        &setup.config,
        setup.dir.path(),
        setup.lake.clone(),
        Some(table),
    )
    .await
    .unwrap();
    assert_eq!(count(&engine, "SELECT count(*) FROM events").await, "80");
}

#[tokio::test]
async fn a_long_query_is_cancelled_at_the_timeout() {
    let mut setup = Setup::new(&events(), Format::Parquet).await;
    setup.config.timeout_secs = 1;
    let engine = setup.engine().await;
    let started = std::time::Instant::now();
    let err = engine
        .run("SELECT count(*) FROM generate_series(1, 100000000000)")
        .await
        .unwrap_err();
    assert!(matches!(err, tracklake_query::Error::Timeout(1)), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // The engine still answers.
    assert_eq!(count(&engine, "SELECT count(*) FROM events").await, "80");
}

/// Text crafted to make the SQL parser backtrack (found by fuzzing) is
/// refused as invalid SQL at once instead of holding a core for minutes.
#[tokio::test]
async fn crafted_sql_is_refused_at_once() {
    let setup = Setup::new(&events(), Format::Parquet).await;
    let engine = setup.engine().await;
    for slow in [
        &include_bytes!("../../../tracklake-ddl/src/slow-parse.txt")[..],
        include_bytes!("../../../tracklake-ddl/src/slow-parse-2.txt"),
    ] {
        let started = std::time::Instant::now();
        let refused = engine
            .run(&String::from_utf8_lossy(slow))
            .await
            .unwrap_err();
        assert!(
            matches!(refused, tracklake_query::Error::Invalid(_)),
            "{refused}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
    // The shapes that took sqlparser 0.62 exponential time (vendor/README.md).
    let n = 26;
    for sql in [
        format!("SELECT {}x.# FROM events", "a.".repeat(n)),
        format!("SELECT user_id{} FROM events", ".not-b".repeat(n)),
        format!("SELECT {}c FROM events", "case-".repeat(n)),
        format!("SELECT {}x", "if(current_time(".repeat(n)),
        format!("SELECT 1 FROM {}", "(".repeat(n)),
        format!("SELECT {}x", "POSITION(".repeat(n)),
    ] {
        let started = std::time::Instant::now();
        assert!(engine.run(&sql).await.is_err(), "{sql}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{sql}"
        );
    }
    // Ordinary nesting still parses.
    let nested = format!("SELECT {}1{} AS n", "(".repeat(20), ")".repeat(20));
    assert_eq!(engine.run(&nested).await.unwrap().rows, 1);
}

/// A long chain (`1 + 1 + …`, `a OR b OR …`) nests in the plan as deep as
/// it is long: the engine answers one at its operator limit on a thread
/// with the stack `tracklake serve` gives its threads, and refuses a longer
/// one with a message instead of overflowing that stack.
#[test]
fn long_expressions_do_not_overflow_the_stack() {
    std::thread::Builder::new()
        .stack_size(tracklake_query::THREAD_STACK_BYTES)
        .spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(long_expressions())
        })
        .unwrap()
        .join()
        .unwrap();
}

async fn long_expressions() {
    let setup = Setup::new(&events(), Format::Parquet).await;
    let engine = setup.engine().await;
    let most = tracklake_ddl::MAX_OPERATORS;
    let sum = |n: usize| format!("SELECT 1{} AS n", "+1".repeat(n));
    let answer = engine.run(&sum(most - 2)).await.unwrap(); // and SELECT, AS
    assert_eq!(answer.rows, 1);
    let ors = format!(
        "SELECT count(*) FROM events WHERE {}",
        vec!["event_type = 'x'"; most / 2 - 4].join(" OR ")
    );
    assert_eq!(count(&engine, &ors).await, "0");
    let Err(tracklake_query::Error::Invalid(refused)) = engine.run(&sum(100_000)).await else {
        panic!("a 100,000-term sum is refused");
    };
    assert!(refused.contains("too complex"), "{refused}");
}
