//! `tracklake lake ls`, `verify`, `history` and `migrate`: what is in the
//! lake, whether every stored event is there exactly once, its commits, and
//! converting a lake of an earlier tracklake into a Delta table.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, bail};
use tracklake_delivery::{CONSUMER, Lake, claim_lake, read_lake};
use tracklake_table::{ChangeLog, EmbeddedTable, Table};

use super::print_table;
use crate::config;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Partitions, files, rows and bytes of the lake.
    Ls(Args),
    /// Check that every event in the table is in the lake exactly once
    /// (run it while tracklake is stopped: it opens the table itself).
    Verify(Args),
    /// The commits of the Delta log, newest first.
    History {
        #[command(flatten)]
        args: Args,
        /// How many commits.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Convert a Parquet lake of an earlier tracklake into a Delta table
    /// (`serve` does it at start; run it while tracklake is stopped).
    Migrate(Args),
}

#[derive(clap::Args)]
pub struct Args {
    /// Config file (default: ./tracklake.toml when present).
    #[arg(long, env = "TRACKLAKE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default: ./tracklake-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Ls(args) => ls(args).await,
        Command::Verify(args) => verify(args).await,
        Command::History { args, limit } => history(args, limit).await,
        Command::Migrate(args) => migrate(args).await,
    }
}

/// Partition → (files, rows, bytes): from the Delta log's statistics, or by
/// reading the files of a plain lake.
async fn partitions(lake: &Lake) -> anyhow::Result<BTreeMap<String, (usize, usize, u64)>> {
    let mut partitions: BTreeMap<String, (usize, usize, u64)> = BTreeMap::new();
    if lake.is_delta() {
        let snapshot = lake.snapshot().await?;
        for f in &snapshot.files {
            let p = partitions.entry(format!("dt={}", f.day)).or_default();
            p.0 += 1;
            p.1 += f.rows().unwrap_or(0) as usize;
            p.2 += f.size;
        }
        return Ok(partitions);
    }
    for f in read_lake(lake).await? {
        let p = partitions.entry(f.partition()).or_default();
        p.0 += 1;
        p.1 += f.events.len();
        p.2 += f.bytes;
    }
    Ok(partitions)
}

async fn ls(args: Args) -> anyhow::Result<()> {
    let config = config::load(args.config.as_deref(), args.data_dir, None)?;
    let lake = Lake::open(&config.lake, &config.data_dir)?;
    let partitions = partitions(&lake).await?;
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|(name, (files, rows, bytes))| {
            vec![
                name.clone(),
                files.to_string(),
                rows.to_string(),
                bytes.to_string(),
            ]
        })
        .collect();
    match lake.is_delta() {
        true => {
            let snapshot = lake.snapshot().await?;
            let version = snapshot
                .version
                .map_or("none yet".into(), |v| v.to_string());
            let delivered = snapshot.delivered.unwrap_or(0);
            println!(
                "lake at {} (Delta table, version {version}, changes through {delivered})",
                lake.location
            );
        }
        false => println!("lake at {} (plain NDJSON files)", lake.location),
    }
    print_table(&["PARTITION", "FILES", "ROWS", "BYTES"], &rows);
    let (files, rows, bytes) = partitions
        .values()
        .fold((0, 0, 0), |a, p| (a.0 + p.0, a.1 + p.1, a.2 + p.2));
    println!(
        "{} partitions, {files} files, {rows} rows, {bytes} bytes",
        partitions.len()
    );
    Ok(())
}

async fn history(args: Args, limit: usize) -> anyhow::Result<()> {
    let config = config::load(args.config.as_deref(), args.data_dir, None)?;
    let lake = Lake::open(&config.lake, &config.data_dir)?;
    anyhow::ensure!(
        lake.is_delta(),
        "an NDJSON lake is plain files: it has no history"
    );
    let rows: Vec<Vec<String>> = lake
        .history(limit)
        .await?
        .into_iter()
        .map(|c| {
            let details: Vec<String> = c
                .details
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "clientVersion" | "engineInfo"))
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                    )
                })
                .collect();
            vec![
                c.version.to_string(),
                c.at.map_or_else(String::new, |t| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                }),
                c.operation,
                details.join(" "),
            ]
        })
        .collect();
    println!("lake at {}", lake.location);
    print_table(&["VERSION", "TIME", "OPERATION", "DETAILS"], &rows);
    Ok(())
}

async fn migrate(args: Args) -> anyhow::Result<()> {
    let config = config::load(args.config.as_deref(), args.data_dir, None)?;
    let lake = Lake::open(&config.lake, &config.data_dir)?;
    anyhow::ensure!(
        lake.is_delta(),
        "an NDJSON lake stays plain files: nothing to convert"
    );
    let table_dir = config.data_dir.join("table");
    let position = match table_dir.exists() {
        true => {
            let table = EmbeddedTable::open(&table_dir, &config.table).with_context(|| {
                format!("opening {} (stop tracklake first)", table_dir.display())
            })?;
            let position = claim_lake(&table, &lake).await;
            table.close().await?;
            position?
        }
        // A lake without its table: every file was delivered. No data
        // directory delivers to it afterwards (its positions would mean
        // nothing to another table's stream).
        false => {
            let delivered = lake
                .files()
                .await?
                .iter()
                .filter_map(|f| tracklake_delivery::range_of(&f.location))
                .map(|(_, last)| last)
                .max()
                .unwrap_or(0);
            lake.prepare(0, delivered).await?;
            delivered
        }
    };
    let snapshot = lake.snapshot().await?;
    println!(
        "lake at {} is a Delta table: version {}, {} files, changes through {position}",
        lake.location,
        snapshot.version.unwrap_or(0),
        snapshot.files.len()
    );
    Ok(())
}

async fn verify(args: Args) -> anyhow::Result<()> {
    let config = config::load(args.config.as_deref(), args.data_dir, None)?;
    let table_dir = config.data_dir.join("table");
    anyhow::ensure!(table_dir.exists(), "no table at {}", table_dir.display());
    let table = EmbeddedTable::open(&table_dir, &config.table).with_context(|| {
        format!(
            "opening {} (stop tracklake first: verify reads the table itself)",
            table_dir.display()
        )
    })?;
    let delivered = table.checkpoint(CONSUMER).await?.unwrap_or(0);
    let stored = table.stored_ids()?;
    let lake = Lake::open(&config.lake, &config.data_dir)?;
    let mut in_lake: HashMap<(String, String), usize> = HashMap::new();
    for file in read_lake(&lake).await? {
        for id in file.events {
            *in_lake.entry(id).or_default() += 1;
        }
    }
    let (mut missing, mut doubled, mut pending, mut once) =
        (Vec::new(), Vec::new(), 0usize, 0usize);
    for (user, id, seq) in stored {
        let n = in_lake.remove(&(user.clone(), id.clone())).unwrap_or(0);
        match (seq <= delivered, n) {
            (_, n) if n > 1 => doubled.push(format!("user {user} event {id} ({n} times)")),
            (true, 0) => missing.push(format!("user {user} event {id}")),
            (false, 0) => pending += 1,
            _ => once += 1,
        }
    }
    doubled.extend(
        in_lake
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|((u, id), n)| format!("user {u} event {id} ({n} times, no longer in the table)")),
    );
    println!(
        "{once} events in the lake exactly once, {} missing, {} doubled, {pending} not yet delivered (after change {delivered})",
        missing.len(),
        doubled.len()
    );
    for line in missing.iter().take(10) {
        println!("  missing: {line}");
    }
    for line in doubled.iter().take(10) {
        println!("  doubled: {line}");
    }
    table.close().await?;
    if !missing.is_empty() || !doubled.is_empty() {
        bail!("the lake does not hold every delivered event exactly once");
    }
    Ok(())
}
