//! The `tracklake` command: serve the pipeline, send and read events, seed
//! fake data, and benchmark.

mod commands;
mod config;
mod logging;
mod on_aws;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::{aws, bench, keys, lake, put, query, recent, report, seed, users};

// jemalloc: glibc's malloc showed up as a fifth of the writer thread's time
// under load, and mimalloc kept hundreds of MB it no longer used (its
// transparent huge pages and delayed purges) after a burst of ingest.
// The `system-allocator` feature leaves malloc to the C library, for heap
// profilers that intercept it (heaptrack: docs/BENCHMARKS.md).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start: a background thread returns
/// freed memory to the system within a second (dirty pages) instead of on
/// the next allocation, and few arenas keep fragmentation down on two cores.
#[cfg(not(feature = "system-allocator"))]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:4\0";

/// Threads for blocking work (see `main`).
const MAX_BLOCKING_THREADS: usize = 32;

#[derive(Parser)]
#[command(
    name = "tracklake",
    version,
    about = "Event tracking and analytics in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run tracklake: the HTTP API over the embedded table.
    Serve {
        /// Config file (default: ./tracklake.toml when present).
        #[arg(long, env = "TRACKLAKE_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory (default: ./tracklake-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to listen on (default: 127.0.0.1:7800; port 0 picks a free one).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Listen beyond loopback without API keys (something in front of
        /// tracklake checks access).
        #[arg(long)]
        allow_unauthenticated: bool,
    },
    /// Make API keys.
    #[command(subcommand)]
    Keys(keys::Command),
    /// Send one event to a running tracklake.
    Put(put::Args),
    /// Show a user's recent activity with device details.
    Recent(recent::Args),
    /// Show a user's recent logins (the article's `Tracker::Get.logins`).
    Logins(recent::LoginArgs),
    /// Generate fake events, like the article's `rake track:put:login`.
    Seed(seed::Args),
    /// Run one SQL statement over every event (Athena's dialect).
    Query(query::QueryArgs),
    /// A report: funnel, retention, abnormal, or a named one (logins_per_day, …).
    Report(report::Args),
    /// An interactive SQL shell with history.
    Sql(query::ShellArgs),
    /// Delete a user's events everywhere they are kept.
    #[command(subcommand)]
    Users(users::Command),
    /// Inspect and check the lake.
    #[command(subcommand)]
    Lake(lake::Command),
    /// Run on AWS: the Athena DDL for the lake.
    #[command(subcommand)]
    Aws(aws::Command),
    /// Measure a running tracklake.
    #[command(subcommand)]
    Bench(bench::Command),
}

/// sysexits' `EX_CONFIG`: the config is wrong; starting again will not help
/// (the systemd unit does not restart on it).
const EXIT_CONFIG: u8 = 78;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(tracklake_query::THREAD_STACK_BYTES)
        // Table reads, encoding and file work: each thread keeps its own
        // allocator pages, so the pool is bounded (tokio's default is 512).
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()?;
    runtime.block_on(async move {
        let done = match cli.command {
            Command::Serve {
                config,
                data_dir,
                listen,
                allow_unauthenticated,
            } => return serve(config, data_dir, listen, allow_unauthenticated).await,
            Command::Put(args) => put::run(args).await,
            Command::Recent(args) => recent::run(args).await,
            Command::Logins(args) => recent::run(args.into()).await,
            Command::Seed(args) => seed::run(args).await,
            Command::Keys(cmd) => keys::run(cmd),
            Command::Query(args) => query::query(args).await,
            Command::Sql(args) => query::shell(args).await,
            Command::Report(args) => report::run(args).await,
            Command::Users(cmd) => users::run(cmd).await,
            Command::Lake(cmd) => lake::run(cmd).await,
            Command::Aws(cmd) => aws::run(cmd),
            Command::Bench(cmd) => bench::run(cmd).await,
        };
        done.map(|()| ExitCode::SUCCESS)
    })
}

/// `tracklake serve`, with an exit status a supervisor can act on: 0 when
/// asked to stop, 78 for a config it cannot use, 75 when a disk error
/// stopped the table (start it again), 1 for anything else.
async fn serve(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    allow_unauthenticated: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = config::load(config.as_deref(), data_dir, listen).and_then(|mut config| {
        config.server.allow_unauthenticated |= allow_unauthenticated;
        serve::check_listen(&config).map(|()| config)
    });
    let config = match loaded {
        Ok(config) => config,
        Err(error) => {
            eprintln!("Error: {error:#}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    logging::init(&config.log);
    Ok(match serve::run(config).await? {
        serve::Stopped::Asked => ExitCode::SUCCESS,
        serve::Stopped::TableFailed => ExitCode::from(serve::EXIT_TABLE_FAILED),
    })
}
