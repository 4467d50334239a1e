//! `tracklake bench`: load generators against a running tracklake, for the
//! whole-system figures in docs/BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use rand::RngExt;
use serde_json::Value;
use tokio::task::JoinSet;

use super::fake_data::{event, user_agents};
use super::{Api, Target};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Durable ingest over HTTP: N connections sending batches of B events.
    Ingest(IngestArgs),
    /// Latency of reading a user's recent events.
    Recent(RecentArgs),
    /// The built-in reports over a lake of 10 million seed events.
    Query(super::bench_query::Args),
    /// A funnel and a retention over the same lake of 10 million events.
    Analytics(super::bench_analytics::Args),
    /// Delivery from the table's change log into lake files, in-process.
    Delivery(super::bench_delivery::Args),
    /// Opening the lake's Delta log after many commits, with and without
    /// its checkpoints.
    LakeLog(super::bench_lake::Args),
}

#[derive(clap::Args)]
pub struct IngestArgs {
    #[command(flatten)]
    target: Target,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Events per request; 1 sends a single event object.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Run this long, in seconds…
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// …or until this many events were sent.
    #[arg(long)]
    events: Option<u64>,
    /// Spread events over this many user ids.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Give every event a never-seen user agent (the worst case for the
    /// user-agent cache).
    #[arg(long)]
    unique_agents: bool,
    /// The server's process id, to report its memory (Linux).
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(clap::Args)]
pub struct RecentArgs {
    #[command(flatten)]
    target: Target,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests to send in all.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Query random user ids from 1 to this.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Ingest(args) => ingest(args).await,
        Command::Recent(args) => recent(args).await,
        Command::Query(args) => super::bench_query::run(args).await,
        Command::Analytics(args) => super::bench_analytics::run(args).await,
        Command::Delivery(args) => super::bench_delivery::run(args).await,
        Command::LakeLog(args) => super::bench_lake::run(args).await,
    }
}

/// Request bodies built before the clock starts, so the generator measures
/// the server, not JSON encoding. Events carry no `event_id`, so resending
/// a body stores new events; users are dealt round-robin, so every user
/// gets the same share.
fn bodies(args: &IngestArgs, count: usize) -> Vec<bytes::Bytes> {
    let mut rng = rand::rng();
    let agents = user_agents();
    let now = chrono::Utc::now();
    let users = args.users.max(1);
    (0..count)
        .map(|b| {
            let events: Vec<Value> = (0..args.batch)
                .map(|i| {
                    let user = ((b * args.batch + i) as u64 % users + 1).to_string();
                    let kind = if rng.random_bool(0.3) { "login" } else { "material-view" };
                    let mut e = event(&mut rng, &agents, &user, kind, 7, now);
                    if let Some(map) = e.as_object_mut() {
                        map.remove("event_id");
                        if args.unique_agents {
                            let build: u32 = rng.random();
                            map.insert(
                                "user_agent".into(),
                                format!("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.{build}.0 Safari/537.36").into(),
                            );
                        }
                    }
                    e
                })
                .collect();
            let body = if args.batch == 1 { events[0].clone() } else { Value::Array(events) };
            bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
        })
        .collect()
}

async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.connections == 0 {
        bail!("--batch and --connections must be at least 1");
    }
    let api = Api::new(&args.target)?;
    // With unique agents every body is used once; otherwise a pool that
    // covers every user once is reused.
    let pool = if args.unique_agents {
        4096
    } else {
        (args.users as usize).div_ceil(args.batch).clamp(64, 1024)
    };
    eprintln!("building {pool} request bodies of {} events…", args.batch);
    let bodies = Arc::new(bodies(&args, pool));
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let budget = args.events.map(|e| e.div_ceil(args.batch as u64));
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for c in 0..args.connections {
        let (api, bodies, sent) = (api.clone(), bodies.clone(), sent.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let (mut events, mut errors) = (0u64, 0u64);
            let mut i = c;
            loop {
                let n = sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if budget.is_some_and(|b| n >= b)
                    || (budget.is_none() && Instant::now() >= deadline)
                {
                    break;
                }
                let t = Instant::now();
                let response = api
                    .http()
                    .post(api.url("/v1/events"))
                    .header("content-type", "application/json")
                    .body(bodies[i % bodies.len()].clone())
                    .send()
                    .await;
                i += args.connections;
                match response {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed());
                        events += args.batch as u64;
                    }
                    _ => errors += 1,
                }
            }
            (latencies, events, errors)
        });
    }
    let mut latencies = Vec::new();
    let (mut events, mut errors) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (l, e, x) = done?;
        latencies.extend(l);
        events += e;
        errors += x;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingest: {} connections, batch {}{}: {events} events in {secs:.1} s = {:.0} events/s, {:.0} requests/s, {errors} failed requests",
        args.connections,
        args.batch,
        if args.unique_agents {
            ", unique agents"
        } else {
            ""
        },
        events as f64 / secs,
        latencies.len() as f64 / secs,
    );
    println!(
        "request latency (client side): {}",
        percentiles(&mut latencies)
    );
    if let Some(pid) = args.pid {
        println!("server memory: {}", process_memory(pid));
    }
    Ok(())
}

async fn recent(args: RecentArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.target)?;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections.max(1) {
        let (api, next) = (api.clone(), next.clone());
        let (requests, users, limit) = (args.requests, args.users.max(1), args.limit);
        tasks.spawn(async move {
            let (mut client, mut server, mut rows) = (Vec::new(), Vec::new(), 0usize);
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                let user = rand::random_range(1..=users);
                let t = Instant::now();
                let Ok(r) = api
                    .http()
                    .get(api.url(&format!("/v1/users/{user}/events?limit={limit}")))
                    .send()
                    .await
                else {
                    continue;
                };
                if let Some(ms) = r
                    .headers()
                    .get("server-timing")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split("dur=").nth(1))
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    server.push(Duration::from_secs_f64(ms / 1000.0));
                }
                let body: Value = r.json().await.unwrap_or(Value::Null);
                client.push(t.elapsed());
                rows += body["events"].as_array().map_or(0, Vec::len);
            }
            (client, server, rows)
        });
    }
    let (mut client, mut server, mut rows) = (Vec::new(), Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        let (c, s, r) = done?;
        client.extend(c);
        server.extend(s);
        rows += r;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "recent: {} requests over {} users, limit {}, {} connections: {:.0} requests/s, {:.1} rows per answer",
        client.len(),
        args.users,
        args.limit,
        args.connections,
        client.len() as f64 / secs,
        rows as f64 / client.len().max(1) as f64
    );
    println!("server side (table): {}", percentiles(&mut server));
    println!("client side (HTTP):  {}", percentiles(&mut client));
    Ok(())
}

fn percentiles(samples: &mut [Duration]) -> String {
    if samples.is_empty() {
        return "no samples".into();
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    format!(
        "p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0)
    )
}

/// Current and peak resident memory of a process, from /proc.
pub(super) fn process_memory(pid: u32) -> String {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return format!("cannot read /proc/{pid}/status");
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    format!("RSS {} (peak {})", field("VmRSS:"), field("VmHWM:"))
}
