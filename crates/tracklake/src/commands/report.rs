//! `tracklake report NAME …`: an analytics report (`funnel`, `retention`,
//! `abnormal`, `web`; docs/ANALYTICS.md) or a named SQL report
//! (`logins_per_day`, …), from the running server, or with none, from the
//! data directory itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::bail;
use serde_json::Value;
use tracklake_query::Reports;
use tracklake_query::analytics::{Analytics, AnalyticsError, Report};

use super::place::Where;
use super::print_table;
use super::query::{Format, Runner, print};

#[derive(clap::Args)]
pub struct Args {
    /// funnel, retention, abnormal, web, or a named report (`GET /v1/reports`
    /// lists them: logins_per_day, daily_active_users, …).
    name: String,
    /// funnel: the event types of the steps, in order.
    #[arg(long)]
    steps: Option<String>,
    /// funnel: the longest time from the first step to the last (30m, 2h, 14d; default 1d).
    #[arg(long)]
    within: Option<String>,
    /// funnel: group users by this column at their first step (device_type, properties.plan, …).
    #[arg(long)]
    breakdown: Option<String>,
    /// retention: the event that puts a user in a cohort.
    #[arg(long)]
    cohort: Option<String>,
    /// retention: the event that counts as coming back (default: the cohort's).
    #[arg(long = "return")]
    returning: Option<String>,
    /// retention: day or week (default week).
    #[arg(long)]
    period: Option<String>,
    /// Start of the range: RFC 3339 or YYYY-MM-DD.
    #[arg(long)]
    from: Option<String>,
    /// End of the range (default: now).
    #[arg(long)]
    to: Option<String>,
    /// web: `include` or `exclude` the events of bots (default: exclude,
    /// or `[analytics] include_bots`).
    #[arg(long)]
    bots: Option<String>,
    /// table or json.
    #[arg(long, default_value = "table")]
    format: Format,
    #[command(flatten)]
    place: Where,
}

impl Args {
    fn params(&self) -> BTreeMap<String, String> {
        [
            ("steps", &self.steps),
            ("within", &self.within),
            ("breakdown", &self.breakdown),
            ("cohort", &self.cohort),
            ("return", &self.returning),
            ("period", &self.period),
            ("from", &self.from),
            ("to", &self.to),
            ("bots", &self.bots),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v.clone()?)))
        .collect()
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let params = args.params();
    let analytics = Report::from_name(&args.name);
    if analytics.is_none() && !params.is_empty() {
        bail!(
            "{} is a named report and takes no parameters (funnel, retention, abnormal and web do)",
            args.name
        );
    }
    let format = args.format;
    let runner = Runner::open(args.place).await?;
    let answer = fetch(&runner, &args.name, analytics, &params).await;
    runner.close().await?;
    let answer = answer?;
    match (format, analytics) {
        (Format::Json, _) => return print(&answer, Format::Json),
        (_, Some(Report::Funnel)) => print_funnel(&answer),
        (_, Some(Report::Retention)) => print_retention(&answer),
        (_, Some(Report::Abnormal)) => print_abnormal(&answer),
        (_, Some(Report::Web)) => print_web(&answer),
        (format, None) => return print(&answer, format),
    }
    Ok(())
}

async fn fetch(
    runner: &Runner,
    name: &str,
    analytics: Option<Report>,
    params: &BTreeMap<String, String>,
) -> anyhow::Result<Value> {
    match runner {
        Runner::Remote(api) => {
            let query: Vec<(&str, String)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            api.get(&format!("/v1/reports/{name}"), &query).await
        }
        Runner::Local { engine, config, .. } => match analytics {
            Some(report) => {
                let analytics = Analytics::new(engine.clone(), config.analytics.clone());
                match analytics.answer(report, params).await {
                    Ok(answer) => Ok(answer),
                    Err(e @ AnalyticsError::Invalid { .. }) => bail!("{e}"),
                    Err(e) => Err(e.into()),
                }
            }
            None => {
                let reports = Reports::new(Arc::clone(engine), &config.data_dir);
                let report = reports.get(name).await?;
                Ok(serde_json::to_value(&*report)?)
            }
        },
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON array's items as text, joined.
fn joined(items: &Value, separator: &str) -> String {
    let items: Vec<String> = items.as_array().into_iter().flatten().map(text).collect();
    items.join(separator)
}

fn percent(part: &Value, whole: u64) -> String {
    match (part.as_u64(), whole) {
        (Some(_), 0) | (None, _) => "-".into(),
        (Some(p), w) => format!("{:.1}%", 100.0 * p as f64 / w as f64),
    }
}

fn seconds(v: &Value) -> String {
    match v.as_f64() {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{s:.1} s"),
        Some(s) if s < 7200.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

fn funnel_rows(steps: &Value) -> Vec<Vec<String>> {
    let steps = steps.as_array().cloned().unwrap_or_default();
    let first = steps.first().and_then(|s| s["users"].as_u64()).unwrap_or(0);
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            vec![
                (i + 1).to_string(),
                text(&s["event_type"]),
                text(&s["users"]),
                percent(&s["users"], first),
                seconds(&s["median_secs_from_previous"]),
            ]
        })
        .collect()
}

fn print_funnel(answer: &Value) {
    let header = [
        "step",
        "event_type",
        "users",
        "of step 1",
        "median from previous",
    ];
    print_table(&header, &funnel_rows(&answer["steps"]));
    if let Some(groups) = answer["breakdown"]["groups"].as_array() {
        for group in groups {
            println!(
                "\n{} = {}",
                text(&answer["breakdown"]["column"]),
                text(&group["value"])
            );
            print_table(&header, &funnel_rows(&group["steps"]));
        }
    }
    eprintln!(
        "({} to {}, within {} s, {:.1} ms)",
        text(&answer["from"]),
        text(&answer["to"]),
        text(&answer["within_secs"]),
        answer["elapsed_ms"].as_f64().unwrap_or_default()
    );
}

fn print_retention(answer: &Value) {
    let cohorts = answer["cohorts"].as_array().cloned().unwrap_or_default();
    let width = cohorts
        .iter()
        .filter_map(|c| c["returned"].as_array().map(Vec::len))
        .max()
        .unwrap_or(0);
    let period = text(&answer["period"]);
    let mut header = vec!["cohort".to_owned(), "users".to_owned()];
    header.extend((0..width).map(|n| format!("{period} {n}")));
    let rows: Vec<Vec<String>> = cohorts
        .iter()
        .map(|c| {
            let users = c["users"].as_u64().unwrap_or(0);
            let mut row = vec![text(&c["cohort"]), users.to_string()];
            row.extend(
                c["returned"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| format!("{} ({})", text(r), percent(r, users))),
            );
            row
        })
        .collect();
    print_table(
        &header.iter().map(String::as_str).collect::<Vec<_>>(),
        &rows,
    );
    eprintln!(
        "(cohort {}, return {}, {:.1} ms)",
        text(&answer["cohort_event"]),
        text(&answer["return_event"]),
        answer["elapsed_ms"].as_f64().unwrap_or_default()
    );
}

fn print_abnormal(answer: &Value) {
    let sharing = &answer["account_sharing"];
    println!(
        "Account sharing: {} flagged ({}+ networks or {}+ devices within {} s)",
        text(&sharing["flagged"]),
        text(&sharing["min_networks"]),
        text(&sharing["min_devices"]),
        text(&sharing["window_secs"])
    );
    let rows: Vec<Vec<String>> = sharing["users"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            vec![
                text(&u["user_id"]),
                format!("{:.2}", u["score"].as_f64().unwrap_or_default()),
                text(&u["networks"]),
                text(&u["devices"]),
                text(&u["window_start"]),
                joined(&u["ip_addresses"], " "),
            ]
        })
        .collect();
    print_table(
        &[
            "user_id",
            "score",
            "networks",
            "devices",
            "window from",
            "addresses",
        ],
        &rows,
    );
    let scraping = &answer["scraping"];
    println!(
        "\nScraping: {} flagged (median user: {} views, {} materials)",
        text(&scraping["flagged"]),
        text(&scraping["population"]["median_views"]),
        text(&scraping["population"]["median_materials"])
    );
    let rows: Vec<Vec<String>> = scraping["users"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            vec![
                text(&u["user_id"]),
                format!("{:.2}", u["score"].as_f64().unwrap_or_default()),
                joined(&u["reasons"], ","),
                text(&u["views"]),
                text(&u["materials"]),
                text(&u["peak_per_minute"]),
            ]
        })
        .collect();
    print_table(
        &[
            "user_id",
            "score",
            "reasons",
            "views",
            "materials",
            "peak/min",
        ],
        &rows,
    );
    eprintln!("({} to {})", text(&answer["from"]), text(&answer["to"]));
}

fn print_web(answer: &Value) {
    let s = &answer["summary"];
    println!(
        "{} visitors, {} sessions, {} page views; bounce rate {}, average session {}",
        text(&s["visitors"]),
        text(&s["sessions"]),
        text(&s["page_views"]),
        s["bounce_rate"]
            .as_f64()
            .map_or("-".into(), |r| format!("{:.1}%", 100.0 * r)),
        seconds(&s["avg_session_seconds"]),
    );
    for (part, columns) in [
        ("per_day", &["day", "visitors", "page_views"][..]),
        ("top_pages", &["path", "page_views", "visitors"]),
        ("entry_pages", &["path", "sessions", "bounce_rate"]),
        ("exit_pages", &["path", "sessions"]),
        ("referrers", &["referrer", "sessions", "visitors"]),
        (
            "campaigns",
            &["utm_source", "utm_medium", "utm_campaign", "sessions"],
        ),
        ("devices", &["device_type", "visitors", "page_views"]),
        ("bots", &["kind", "name", "events"]),
    ] {
        println!("\n{}", part.replace('_', " "));
        let rows: Vec<Vec<String>> = answer[part]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| columns.iter().map(|c| text(&row[*c])).collect())
            .collect();
        print_table(columns, &rows);
    }
    let bots = if answer["include_bots"] == true {
        "bots included"
    } else {
        "bots left out"
    };
    eprintln!(
        "({} to {}, {bots}, {:.1} ms)",
        text(&answer["from"]),
        text(&answer["to"]),
        answer["elapsed_ms"].as_f64().unwrap_or_default()
    );
}
