//! `tracklake put`: the article's `Tracker::Put.event`, from the shell.

use anyhow::bail;
use serde_json::{Map, Value, json};

use super::{Api, Target, describe_error, user_id_json};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// The user id (an integer or text).
    #[arg(long)]
    user: String,
    /// The event type, such as `login`.
    #[arg(long = "type")]
    event_type: String,
    /// When it happened (ISO 8601 with offset); default now.
    #[arg(long)]
    at: Option<String>,
    /// Client IP address; default the address this command connects from.
    #[arg(long)]
    ip: Option<String>,
    /// User agent; default this command's own.
    #[arg(long)]
    user_agent: Option<String>,
    /// Idempotency key; default a server-made UUID.
    #[arg(long)]
    id: Option<String>,
    /// A property, `key=value` (value read as JSON when it parses, else text); repeatable.
    #[arg(long = "prop", value_parser = parse_property)]
    properties: Vec<(String, Value)>,
}

fn parse_property(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s.split_once('=').ok_or("expected key=value")?;
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::from(v));
    Ok((k.to_owned(), value))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let api = Api::new(&args.target)?;
    let mut event = json!({"user_id": user_id_json(&args.user), "event_type": args.event_type});
    for (key, value) in [
        ("event_at", args.at),
        ("ip_address", args.ip),
        ("user_agent", args.user_agent),
        ("event_id", args.id),
    ] {
        if let Some(v) = value {
            event[key] = Value::from(v);
        }
    }
    if !args.properties.is_empty() {
        event["properties"] = Value::Object(args.properties.into_iter().collect::<Map<_, _>>());
    }
    let (status, body) = api.post("/v1/events", &event).await?;
    if status >= 400 {
        bail!("{}", describe_error(status, &body));
    }
    let verb = if status == 201 {
        "stored"
    } else {
        "already stored"
    };
    println!(
        "{verb} {} for user {} at {} ({})",
        body["event_id"].as_str().unwrap_or("?"),
        body["user_id"],
        body["event_at"].as_str().unwrap_or("?"),
        super::recent::describe_device(&body["device"]),
    );
    Ok(())
}
