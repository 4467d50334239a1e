//! `tracklake bench lake-log`: how the Delta log of a lake that has taken
//! many commits opens. Delivery commits every buffer interval (one per
//! minute by default: 1,440 a day), compaction and deletion add their own;
//! a reader must not replay them all. delta-rs writes a checkpoint every
//! 100 commits (`delta.checkpointInterval`), and a reader starts from the
//! newest one.
//!
//! The bench makes `--commits` delivery commits (one small file each, as
//! a lake taking a trickle of events gets), then opens the table cold
//! (a new `Lake`, as a restart or the CLI does) and times its snapshot; then
//! it hides the checkpoints and times the same open replaying every commit.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::NaiveDate;
use tracklake_delivery::{Lake, LakeConfig, NewFile, Operation, Update};

#[derive(clap::Args)]
pub struct Args {
    /// A new directory for the lake.
    #[arg(long, default_value = "bench-lake-log")]
    data_dir: PathBuf,
    /// Delivery commits to make.
    #[arg(long, default_value_t = 5_000)]
    commits: u64,
    /// Cold opens to time of each kind.
    #[arg(long, default_value_t = 5)]
    opens: usize,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.data_dir.exists() {
        bail!(
            "{} exists: give a new directory (the bench makes its own lake)",
            args.data_dir.display()
        );
    }
    if args.commits == 0 || args.opens == 0 {
        bail!("--commits and --opens must be at least 1");
    }
    let config = LakeConfig::default();
    let lake = Lake::open(&config, &args.data_dir)?;
    lake.prepare(1, 0).await?;
    let day = NaiveDate::from_ymd_opt(2026, 1, 1).context("a fixed date")?;
    let started = Instant::now();
    let mut block = Instant::now();
    for seq in 1..=args.commits {
        let path = lake.file_path("dt=2026-01-01", seq, seq);
        lake.commit(Update {
            operation: Operation::Deliver,
            add: vec![NewFile {
                path,
                day,
                size: 4096,
                stats: None,
            }],
            remove: Vec::new(),
            delivered_through: Some(seq),
        })
        .await?;
        if seq % 1000 == 0 {
            println!(
                "commits {}–{seq}: {:.1} ms a commit",
                seq - 999,
                // Seconds per 1,000 commits: milliseconds per commit.
                block.elapsed().as_secs_f64()
            );
            block = Instant::now();
        }
    }
    let committing = started.elapsed();
    println!(
        "{} commits in {:.1} s: {:.1} ms a commit (one file each, checkpoints included)",
        args.commits,
        committing.as_secs_f64(),
        committing.as_secs_f64() * 1000.0 / args.commits as f64
    );

    let with = cold_opens(&config, &args, args.commits).await?;
    let log = args.data_dir.join("lake/events/_delta_log");
    let checkpoints: Vec<PathBuf> = std::fs::read_dir(&log)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    let hidden = args.data_dir.join("hidden-checkpoints");
    std::fs::create_dir_all(&hidden)?;
    let mut moved = 0;
    for path in checkpoints {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name.filter(|n| n.contains("checkpoint")) {
            std::fs::rename(&path, hidden.join(&name))?;
            moved += 1;
        }
    }
    println!(
        "cold open from the newest checkpoint: {} ({moved} checkpoint files)",
        summary(with)
    );
    let without = cold_opens(&config, &args, args.commits).await?;
    println!(
        "cold open replaying all {} commits (checkpoints hidden): {}",
        args.commits,
        summary(without)
    );
    Ok(())
}

/// Times `--opens` cold opens; each must see every commit.
async fn cold_opens(
    config: &LakeConfig,
    args: &Args,
    commits: u64,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(args.opens);
    for _ in 0..args.opens {
        let started = Instant::now();
        let lake = Lake::open(config, &args.data_dir)?;
        let snapshot = lake.snapshot().await?;
        times.push(started.elapsed());
        if snapshot.files.len() as u64 != commits || snapshot.delivered != Some(commits) {
            bail!(
                "the snapshot holds {} files through {:?}, not {commits}",
                snapshot.files.len(),
                snapshot.delivered
            );
        }
    }
    Ok(times)
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    format!(
        "min {:.0} ms, median {:.0} ms, max {:.0} ms over {} opens",
        ms(&times[0]),
        ms(&times[times.len() / 2]),
        ms(&times[times.len() - 1]),
        times.len()
    )
}
