//! `tracklake bench delivery`: how fast delivery moves the table's change
//! log into lake files, in-process (no HTTP), with the same code and
//! default settings `serve` uses.
//!
//! The table is filled with `tracklake seed`-like events, validated and
//! device-parsed by the ingest validator before the clock starts. Then
//! either delivery drains the whole change log (the default: its capacity),
//! or, with `--while-filling`, delivery runs while the table is being
//! filled as fast as it takes events, and the lag is sampled each second.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use tracklake_delivery::{
    CompactionConfig, Delivery, DeliveryConfig, Format, Lake, LakeConfig, StreamConfig,
};
use tracklake_event::{DeviceDetector, Event, Rules, Validator};
use tracklake_table::{ChangeLog, EmbeddedTable, Table, TableConfig};

use super::bench::process_memory;
use super::fake_data::{user_agents, validated_event};

#[derive(clap::Args)]
pub struct Args {
    /// A new directory for the table and the lake.
    #[arg(long, default_value = "bench-delivery-data")]
    data_dir: PathBuf,
    /// Events to deliver.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Distinct users.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Lake file format.
    #[arg(long, value_enum, default_value = "parquet")]
    format: FormatArg,
    /// gzip NDJSON files.
    #[arg(long)]
    gzip: bool,
    /// Run delivery while the table is filled, instead of after.
    #[arg(long)]
    while_filling: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Parquet,
    Ndjson,
}

/// Events put per table write, as `bench ingest` sends them.
const BATCH: usize = 500;

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.data_dir.exists() && args.data_dir.read_dir()?.next().is_some() {
        anyhow::bail!(
            "{} is not empty: give a new directory (the benchmark fills it)",
            args.data_dir.display()
        );
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let table = Arc::new(
        EmbeddedTable::open(&args.data_dir.join("table"), &TableConfig::default())
            .context("opening the table")?,
    );
    let lake_config = LakeConfig {
        format: match args.format {
            FormatArg::Parquet => Format::Parquet,
            FormatArg::Ndjson => Format::Ndjson,
        },
        gzip: args.gzip,
        ..LakeConfig::default()
    };
    let lake = Arc::new(Lake::open(&lake_config, &args.data_dir)?);
    eprintln!("making {} events…", args.events);
    let batches = make_events(&args)?;

    let start_delivery = || {
        Delivery::start(
            table.clone() as Arc<dyn ChangeLog>,
            lake.clone(),
            StreamConfig::default(),
            DeliveryConfig::default(),
            // Compaction would rewrite what delivery just wrote: this
            // measures delivery alone.
            CompactionConfig {
                enabled: false,
                ..CompactionConfig::default()
            },
        )
    };
    // The clock starts with delivery.
    let (delivery, started, cpu_before) = if args.while_filling {
        let started = Instant::now();
        let delivery = Arc::new(start_delivery()?);
        let sampler = tokio::spawn(sample_lag(delivery.clone(), started));
        let filled = fill(&table, batches).await?;
        eprintln!(
            "filled: {} events/s into the table",
            rate(args.events, filled)
        );
        sampler.abort();
        (delivery, started, None)
    } else {
        let filled = fill(&table, batches).await?;
        eprintln!(
            "filled the table: {} events/s; delivering…",
            rate(args.events, filled)
        );
        let started = Instant::now();
        let cpu = tracklake_metrics::cpu_seconds();
        (Arc::new(start_delivery()?), started, cpu)
    };
    // Stopping publishes everything stored, then returns.
    delivery.stop().await?;
    let took = started.elapsed();
    let cpu = cpu_before.zip(tracklake_metrics::cpu_seconds());
    let status = delivery.status();
    let records = status.records.load(Ordering::Relaxed);
    let bytes = status.bytes.load(Ordering::Relaxed);
    anyhow::ensure!(
        records == args.events,
        "delivered {records} of {} events",
        args.events
    );
    // CPU time says how much work an event takes whatever else the
    // machine runs; wall time alone swings with the neighbours.
    let cpu = cpu.map_or(String::new(), |(before, after)| {
        format!(
            ", CPU {:.1} s ({:.1} µs/event)",
            after - before,
            (after - before) * 1e6 / records as f64
        )
    });
    // The process's memory includes every event made up front.
    println!(
        "delivered {records} events in {:.1} s: {} events/s{cpu}, {} files, {:.1} bytes/event; {}",
        took.as_secs_f64(),
        rate(records, took),
        status.files.load(Ordering::Relaxed),
        bytes as f64 / records as f64,
        process_memory(std::process::id())
    );
    table.close().await?;
    Ok(())
}

/// All the events, validated, in table-write batches.
fn make_events(args: &Args) -> anyhow::Result<Vec<Vec<Event>>> {
    let validator =
        Validator::with_devices(Rules::default(), Arc::new(DeviceDetector::new(100_000)?))?;
    let agents = user_agents();
    let now = Utc::now();
    let mut rng = rand::rng();
    let mut batches = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    for _ in 0..args.events {
        let e = validated_event(&mut rng, &validator, &agents, args.users, now)?;
        batch.push(e);
        if batch.len() == BATCH {
            batches.push(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    Ok(batches)
}

/// Puts every batch, four writes in flight (the table groups concurrent
/// writes into one fsync, as it does for concurrent requests).
async fn fill(table: &Arc<EmbeddedTable>, batches: Vec<Vec<Event>>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut writers = Vec::new();
    let queue = Arc::new(std::sync::Mutex::new(batches));
    for _ in 0..4 {
        let (table, queue) = (table.clone(), queue.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().expect("queue lock").pop();
                let Some(batch) = next else { break };
                table.put(batch).await?;
            }
            anyhow::Ok(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    Ok(started.elapsed())
}

async fn sample_lag(delivery: Arc<Delivery>, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        // Not the lag in seconds: the events were made (and stamped
        // received) before the clock started.
        let status = delivery.status();
        eprintln!(
            "{:>5.1} s: delivered {:>9}, behind {:>9} events",
            started.elapsed().as_secs_f64(),
            status.records.load(Ordering::Relaxed),
            delivery.lag().events,
        );
    }
}

fn rate(events: u64, took: Duration) -> u64 {
    (events as f64 / took.as_secs_f64().max(1e-9)) as u64
}
