//! `tracklake recent` and `tracklake logins`: the article's
//! `Tracker::Get.recent_activity` and `Tracker::Get.logins`.

use serde_json::Value;

use super::{Api, Target, print_table};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// The user id.
    #[arg(long)]
    user: String,
    /// Only these event types (repeatable).
    #[arg(long = "type")]
    types: Vec<String>,
    /// How many matching events.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// `newest` or `oldest` first.
    #[arg(long, default_value = "newest")]
    order: String,
    /// Only events at or after this time (ISO 8601).
    #[arg(long)]
    from: Option<String>,
    /// Only events at or before this time (ISO 8601).
    #[arg(long)]
    to: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct LoginArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long)]
    user: String,
    #[arg(long, default_value_t = 10)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

impl From<LoginArgs> for Args {
    fn from(a: LoginArgs) -> Self {
        Args {
            target: a.target,
            user: a.user,
            types: vec!["login".into()],
            limit: a.limit,
            order: "newest".into(),
            from: None,
            to: None,
            json: a.json,
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let api = Api::new(&args.target)?;
    let mut query = vec![("limit", args.limit.to_string()), ("order", args.order)];
    query.extend(args.types.into_iter().map(|t| ("type", t)));
    query.extend(args.from.map(|t| ("from", t)));
    query.extend(args.to.map(|t| ("to", t)));
    let path = format!("/v1/users/{}/events", encode_segment(&args.user));
    let body = api.get(&path, &query).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let events = body["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        println!("no events for user {}", args.user);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let d = &e["device"];
            vec![
                text(&e["event_at"]),
                text(&e["event_type"]),
                text(&e["ip_address"]),
                text(&d["type"]),
                joined(&d["browser"], &d["browser_version"]),
                joined(&d["os"], &d["os_version"]),
            ]
        })
        .collect();
    print_table(&["TIME", "TYPE", "IP", "DEVICE", "BROWSER", "OS"], &rows);
    if body["next_cursor"].is_string() {
        println!("(more: raise --limit or use the API's cursor)");
    }
    Ok(())
}

/// "desktop, Chrome 130.0 on Windows 10".
pub fn describe_device(d: &Value) -> String {
    let mut s = text(&d["type"]);
    let browser = joined(&d["browser"], &d["browser_version"]);
    if browser != "-" {
        s += &format!(", {browser}");
    }
    let os = joined(&d["os"], &d["os_version"]);
    if os != "-" {
        s += &format!(" on {os}");
    }
    s
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn joined(name: &Value, version: &Value) -> String {
    match (name.as_str(), version.as_str()) {
        (Some(n), Some(v)) => format!("{n} {v}"),
        (Some(n), None) => n.to_owned(),
        _ => "-".into(),
    }
}

/// Percent-encodes a user id for a URL path segment.
pub fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
