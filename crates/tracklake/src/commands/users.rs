//! `tracklake users delete ID`: erase a user's events from the table and
//! the lake, locally or through the server that holds the data directory.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tracklake_delivery::{Deletions, JobState};
use tracklake_table::Table;

use super::describe_error;
use super::place::{self, Opened, Where};
use super::recent::encode_segment;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Delete every event of a user from the table, the delivery pipeline
    /// and every lake file (files holding them are rewritten).
    Delete(DeleteArgs),
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// The user id, as the application sends it.
    user_id: String,
    /// Print the job and return at once instead of waiting for it.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    place: Where,
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    let Command::Delete(args) = command;
    if args.user_id.is_empty() || args.user_id.chars().any(char::is_control) {
        bail!("the user id must be non-empty text without control characters");
    }
    let job = match place::open(args.place).await? {
        Opened::Remote(api) => {
            let path = format!("/v1/users/{}/events", encode_segment(&args.user_id));
            let (status, job) = api.delete(&path).await?;
            if status != 202 {
                bail!("{}", describe_error(status, &job));
            }
            if args.no_wait {
                return print_job(&job);
            }
            let status_path = format!("/v1/deletions/{}", job["id"].as_str().unwrap_or_default());
            wait(|| async { api.get(&status_path, &[]).await }).await?
        }
        Opened::Local(local) => {
            // No server runs on this data directory, so nothing else is
            // delivering: the job runs here, to the end.
            let deletions = Deletions::start(
                &local.config.data_dir,
                local.table.clone() as Arc<dyn Table>,
                local.lake.clone(),
                Box::new(|| {}),
            )
            .context("opening the deletion jobs")?;
            let job = deletions.request(&args.user_id)?;
            let done = wait(|| async {
                let job = deletions.get(&job.id).context("the job vanished")?;
                Ok(serde_json::to_value(job)?)
            })
            .await;
            deletions.stop();
            tracklake_query::forget_saved(&local.config.data_dir);
            local.table.close().await?;
            done?
        }
    };
    print_job(&job)
}

/// Polls a job until it is done, showing its progress on stderr.
async fn wait<F, Fut>(mut fetch: F) -> anyhow::Result<Value>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Value>>,
{
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{msg} {pos}/{len} lake files {wide_bar}")
            .expect("a valid template"),
    );
    let done = serde_json::to_value(JobState::Done)?;
    loop {
        let job = fetch().await?;
        if job["state"] == done {
            bar.finish_and_clear();
            return Ok(job);
        }
        bar.set_length(job["lake_files_total"].as_u64().unwrap_or(0));
        bar.set_position(job["lake_files_scanned"].as_u64().unwrap_or(0));
        let mut message = job["state"].as_str().unwrap_or("").replace('_', " ");
        if let Some(error) = job["last_error"].as_str() {
            message = format!("{message} (retrying after: {error})");
        }
        bar.set_message(message);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_job(job: &Value) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(std::io::stdout().lock(), job)?;
    println!();
    Ok(())
}
