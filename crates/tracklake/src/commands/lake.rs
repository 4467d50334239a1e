//! `tracklake lake ls` and `tracklake lake verify`: what is in the lake, and
//! whether every stored event is there exactly once.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, bail};
use tracklake_delivery::{CONSUMER, Lake, read_lake};
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
    }
}

async fn ls(args: Args) -> anyhow::Result<()> {
    let config = config::load(args.config.as_deref(), args.data_dir, None)?;
    let lake = Lake::open(&config.lake, &config.data_dir)?;
    let files = read_lake(&lake).await?;
    let mut partitions: BTreeMap<String, (usize, usize, u64)> = BTreeMap::new();
    for f in &files {
        let p = partitions.entry(f.partition()).or_default();
        p.0 += 1;
        p.1 += f.events.len();
        p.2 += f.bytes;
    }
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
    println!("lake at {}", lake.location);
    print_table(&["PARTITION", "FILES", "ROWS", "BYTES"], &rows);
    let (rows, bytes): (usize, u64) = partitions
        .values()
        .fold((0, 0), |a, p| (a.0 + p.1, a.1 + p.2));
    println!(
        "{} partitions, {} files, {rows} rows, {bytes} bytes",
        partitions.len(),
        files.len()
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
