//! `tracklake bench query`: report queries over a lake of `tracklake seed`
//! events, timed in-process (planning and execution, no HTTP).
//!
//! The lake is made once, directly: seed's fake events, validated and
//! device-parsed by the ingest validator, written as Parquet the way
//! delivery and compaction leave it (one file per day). A later run with the
//! same data directory reuses it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{Duration as Days, Utc};
use tracklake_delivery::{
    Format, Lake, LakeConfig, NewFile, Operation, Update, encode, partition_day,
};
use tracklake_event::{DeviceDetector, Rules, Validator};
use tracklake_query::{Engine, QueryConfig, Reports};

use super::fake_data::{user_agents, validated_event};

/// The bench lake: `bench query` and `bench analytics` share it.
#[derive(clap::Args)]
pub struct LakeArgs {
    /// Where the lake is made (and found on later runs).
    #[arg(long, default_value = "bench-query-data")]
    data_dir: PathBuf,
    /// Events in the lake.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Days they are spread over, ending now.
    #[arg(long, default_value_t = 30)]
    pub(super) days: u32,
    /// Distinct users.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    lake: LakeArgs,
    /// Timed runs per query, after one untimed warm-up.
    #[arg(long, default_value_t = 10)]
    repeat: usize,
    /// Reports to time (default: all built-in reports).
    #[arg(long, value_delimiter = ',')]
    reports: Vec<String>,
    /// Time these statements too (`--sql` again for each).
    #[arg(long)]
    sql: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (lake, engine) = open(&args.lake).await?;
    let count = engine.run("SELECT count(*) FROM events").await?;
    let rows = tracklake_query::to_json_rows(&count)?;
    println!(
        "lake: {} events in {} files",
        rows["rows"][0]["count(*)"],
        lake.snapshot().await?.files.len()
    );
    let reports = Reports::new(engine.clone(), &args.lake.data_dir);
    let names: Vec<String> = if args.reports.is_empty() && args.sql.is_empty() {
        reports.names().map(str::to_owned).collect()
    } else {
        args.reports.clone()
    };
    let mut statements = Vec::new();
    for name in names {
        let sql = reports
            .sql(&name)
            .with_context(|| format!("no report named {name}"))?;
        statements.push((name, sql.to_owned()));
    }
    for (i, sql) in args.sql.iter().enumerate() {
        statements.push((format!("--sql {}", i + 1), sql.clone()));
    }
    println!(
        "{:<26} {:>9} {:>9} {:>9}  rows",
        "report", "min ms", "median", "max"
    );
    for (name, sql) in statements {
        let warm = engine.run(&sql).await?;
        let mut times: Vec<Duration> = Vec::with_capacity(args.repeat);
        for _ in 0..args.repeat.max(1) {
            let started = Instant::now();
            engine.run(&sql).await?;
            times.push(started.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{name:<26} {:>9.1} {:>9.1} {:>9.1}  {}",
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            warm.rows
        );
    }
    Ok(())
}

/// The bench lake (made on the first run) and an engine over it.
pub(super) async fn open(args: &LakeArgs) -> anyhow::Result<(Arc<Lake>, Arc<Engine>)> {
    let lake = Arc::new(Lake::open(&LakeConfig::default(), &args.data_dir)?);
    // A lake of its own, for a stream of no table.
    lake.prepare(1, 0).await?;
    if lake.snapshot().await?.files.is_empty() {
        make_lake(args, &lake).await?;
    } else {
        eprintln!("reusing the lake at {}", lake.location);
    }
    let config = QueryConfig {
        fresh: false,
        ..QueryConfig::default()
    };
    let engine = Arc::new(Engine::open(&config, &args.data_dir, lake.clone(), None).await?);
    Ok((lake, engine))
}

/// Seed-like events, day by day, one Parquet file per day.
async fn make_lake(args: &LakeArgs, lake: &Lake) -> anyhow::Result<()> {
    let started = Instant::now();
    let validator =
        Validator::with_devices(Rules::default(), Arc::new(DeviceDetector::new(100_000)?))?;
    let agents = user_agents();
    let now = Utc::now();
    let per_day = args.events.div_ceil(u64::from(args.days.max(1)));
    let mut seq = 0u64;
    let mut made = 0u64;
    let mut added = Vec::new();
    for day in 0..args.days.max(1) {
        let n = per_day.min(args.events - made);
        let end = now - Days::days(i64::from(day));
        let mut rng = rand::rng();
        let mut by_partition: std::collections::BTreeMap<String, Vec<tracklake_event::Event>> =
            Default::default();
        for _ in 0..n {
            let e = validated_event(&mut rng, &validator, &agents, args.users, end)?;
            by_partition
                .entry(lake.partition(e.event_at))
                .or_default()
                .push(e);
        }
        for (partition, events) in by_partition {
            let len = events.len();
            let body = tokio::task::spawn_blocking(move || {
                encode(&events.iter().collect::<Vec<_>>(), Format::Parquet, false)
            })
            .await??;
            let (first, last) = (seq + 1, seq + len as u64);
            seq = last;
            let (path, body) = (lake.file_path(&partition, first, last), body.into());
            let day = partition_day(&partition).context("a partition names its date")?;
            added.push(NewFile::parquet(path.clone(), day, &body)?);
            lake.publish(&path, body).await?;
        }
        made += n;
        eprintln!(
            "made {made} of {} events ({:.0} s)",
            args.events,
            started.elapsed().as_secs_f64()
        );
    }
    lake.commit(Update {
        operation: Operation::Deliver,
        add: added,
        remove: Vec::new(),
        delivered_through: None,
    })
    .await?;
    Ok(())
}
