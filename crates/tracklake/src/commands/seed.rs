//! `tracklake seed`: the article's `rake track:put:login`, generalised — N
//! users × M events of the given types over the last D days, sent through
//! the HTTP API in batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::fake_data::{event, user_agents};
use super::{Api, Target, describe_error};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// How many users (ids count up from --first-user).
    #[arg(long, default_value_t = 1)]
    users: u64,
    #[arg(long, default_value_t = 1)]
    first_user: u64,
    /// Spread events over this many days before now.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Events per user (the rake task made 50).
    #[arg(long, default_value_t = 50)]
    events_per_user: u64,
    /// Event types to draw from, comma-separated.
    #[arg(long, default_value = "login", value_delimiter = ',')]
    types: Vec<String>,
    /// Events per request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

#[derive(Default)]
struct Tally {
    stored: u64,
    duplicate: u64,
    rejected: u64,
    reasons: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.batch == 0 || args.concurrency == 0 || args.types.is_empty() {
        bail!("--batch, --concurrency and --types must not be empty or zero");
    }
    let api = Api::new(&args.target)?;
    let total = args.users * args.events_per_user;
    let progress = ProgressBar::new(total).with_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} events  {per_sec}  eta {eta}",
    )?);
    let agents = user_agents();
    let now = chrono::Utc::now();
    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks: JoinSet<anyhow::Result<Tally>> = JoinSet::new();
    let mut tally = Tally::default();
    let mut batch = Vec::with_capacity(args.batch);
    let mut rng = rand::rng();
    let users = (args.first_user..args.first_user + args.users).map(|u| u.to_string());
    for user in users {
        for _ in 0..args.events_per_user {
            let kind = &args.types[rand::RngExt::random_range(&mut rng, 0..args.types.len())];
            batch.push(event(&mut rng, &agents, &user, kind, args.days, now));
            if batch.len() == args.batch {
                let permit = slots.clone().acquire_owned().await?;
                let (api, body, progress) =
                    (api.clone(), std::mem::take(&mut batch), progress.clone());
                tasks.spawn(async move {
                    let result = send(&api, body, &progress).await;
                    drop(permit);
                    result
                });
            }
            while let Some(done) = tasks.try_join_next() {
                merge(&mut tally, done??);
            }
        }
    }
    if !batch.is_empty() {
        merge(&mut tally, send(&api, batch, &progress).await?);
    }
    while let Some(done) = tasks.join_next().await {
        merge(&mut tally, done??);
    }
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeded {total} events for {} users over {} days in {secs:.1} s ({:.0} events/s): {} stored, {} duplicate, {} rejected",
        args.users,
        args.days,
        total as f64 / secs.max(1e-9),
        tally.stored,
        tally.duplicate,
        tally.rejected
    );
    for reason in tally.reasons.iter().take(5) {
        println!("  rejected: {reason}");
    }
    Ok(())
}

fn merge(into: &mut Tally, from: Tally) {
    into.stored += from.stored;
    into.duplicate += from.duplicate;
    into.rejected += from.rejected;
    if into.reasons.len() < 5 {
        into.reasons.extend(from.reasons);
    }
}

/// Sends one batch, retrying when the server is busy or unreachable: the
/// events carry their own ids, so a retry never stores anything twice.
async fn send(api: &Api, events: Vec<Value>, progress: &ProgressBar) -> anyhow::Result<Tally> {
    let count = events.len() as u64;
    let body = Value::Array(events);
    let mut attempt = 0;
    let (status, answer) = loop {
        attempt += 1;
        match api.post("/v1/events", &body).await {
            Ok((503, _)) | Err(_) if attempt < 5 => {
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await
            }
            Ok(answer) => break answer,
            Err(e) => return Err(e),
        }
    };
    if status != 200 {
        bail!(
            "the server refused a batch: {}",
            describe_error(status, &answer)
        );
    }
    progress.inc(count);
    let mut tally = Tally {
        stored: answer["stored"].as_u64().unwrap_or(0),
        duplicate: answer["duplicate"].as_u64().unwrap_or(0),
        rejected: answer["rejected"].as_u64().unwrap_or(0),
        reasons: Vec::new(),
    };
    if let Some(results) = answer["results"].as_array() {
        tally.reasons = results
            .iter()
            .filter(|r| r["status"] == "rejected")
            .take(5)
            .map(|r| format!("{}: {}", r["error"]["code"], r["error"]["message"]))
            .collect();
    }
    Ok(tally)
}
