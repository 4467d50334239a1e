//! `tracklake bench analytics`: a funnel and a retention over the bench
//! lake of `bench query` (10 million seed events by default), timed
//! in-process: the scan, the per-user reduction, the answer.

use std::time::{Duration, Instant};

use chrono::Utc;
use tracklake_query::analytics::funnel::FunnelSpec;
use tracklake_query::analytics::retention::RetentionSpec;
use tracklake_query::analytics::{Analytics, abnormal::AbnormalConfig};

use super::bench_query::{LakeArgs, open};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    lake: LakeArgs,
    /// Timed runs of each report, after one untimed warm-up.
    #[arg(long, default_value_t = 10)]
    repeat: usize,
    /// The funnel's steps.
    #[arg(long, default_value = "login,material-view,material-view")]
    steps: String,
    /// The funnel's window.
    #[arg(long, default_value = "1d")]
    within: String,
    /// The retention's cohort and return events, by week.
    #[arg(long, default_value = "login")]
    cohort: String,
    #[arg(long, default_value = "material-view")]
    returning: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (_, engine) = open(&args.lake).await?;
    let analytics = Analytics::new(engine, AbnormalConfig::default());
    let now = Utc::now();
    // The whole lake: its days end now.
    let from = (now - chrono::Duration::days(i64::from(args.lake.days.max(1)))).to_rfc3339();
    let params = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let funnel = FunnelSpec::parse(
        &params(&[
            ("steps", &args.steps),
            ("within", &args.within),
            ("from", &from),
        ]),
        now,
    )?;
    let retention = RetentionSpec::parse(
        &params(&[
            ("cohort", &args.cohort),
            ("return", &args.returning),
            ("period", "week"),
            ("from", &from),
        ]),
        now,
    )?;
    println!(
        "{:<10} {:>9} {:>9} {:>9}  answer",
        "report", "min ms", "median", "max"
    );
    let answer = analytics.funnel(&funnel).await?;
    let steps: Vec<String> = answer.steps.iter().map(|s| s.users.to_string()).collect();
    let times = time(args.repeat, || async {
        analytics.funnel(&funnel).await.map(drop)
    })
    .await?;
    print_row(
        "funnel",
        &times,
        &format!("users per step {}", steps.join(" > ")),
    );
    let answer = analytics.retention(&retention).await?;
    let users: u64 = answer.cohorts.iter().map(|c| c.users).sum();
    let times = time(args.repeat, || async {
        analytics.retention(&retention).await.map(drop)
    })
    .await?;
    print_row(
        "retention",
        &times,
        &format!("{} weekly cohorts, {users} users", answer.cohorts.len()),
    );
    Ok(())
}

async fn time<F, Fut, E>(repeat: usize, mut run: F) -> Result<Vec<Duration>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        run().await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times)
}

fn print_row(name: &str, times: &[Duration], answer: &str) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<10} {:>9.1} {:>9.1} {:>9.1}  {answer}",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
}
