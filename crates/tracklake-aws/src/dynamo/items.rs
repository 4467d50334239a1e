//! A user's items in the table: keys made from events, and events read
//! back from items (tracklake's own, or those the article's code wrote).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use tracklake_event::Event;
use tracklake_table::Error;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) const ID_PREFIX: &str = "id#";
/// How a table keys its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `user_id` S, `sk` S = `<time>#<event_id>` (deploy/aws/template.yaml).
    Tracklake,
    /// The article's: `user_id` N, `event_at` S = `<time>`.
    Article,
}

impl Layout {
    /// The sort key's attribute.
    pub(super) fn sort(self) -> &'static str {
        match self {
            Layout::Tracklake => "sk",
            Layout::Article => "event_at",
        }
    }

    /// A user id as the partition key; `None` when this layout cannot hold it.
    pub(super) fn user(self, user: &str) -> Option<AttributeValue> {
        match self {
            Layout::Tracklake => Some(s(user)),
            Layout::Article => user
                .parse::<i64>()
                .ok()
                .map(|n| AttributeValue::N(n.to_string())),
        }
    }

    /// An event's sort key, `nudge` microseconds after its time.
    pub(super) fn event_key(self, event: &Event, nudge: i64) -> String {
        match self {
            Layout::Tracklake => format!("{}#{}", time_key(event.event_at), event.event_id),
            Layout::Article => time_key(event.event_at + chrono::Duration::microseconds(nudge)),
        }
    }
}

pub(super) fn time_key(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn text<'a>(item: &'a Item, name: &str) -> Result<&'a str, Error> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(Error::Service(format!(
            "an item without the text attribute {name}"
        ))),
    }
}

/// The event an item holds: its `event` JSON, or (written by the
/// article's own code) its attributes.
pub(crate) fn decode(item: &Item) -> Result<Event, Error> {
    match item.get("event") {
        Some(AttributeValue::S(json)) => serde_json::from_str(json).map_err(Error::Decode),
        _ => decode_article(item),
    }
}

/// An item the article's own code wrote: `user_id` N, `event_at`,
/// `event_id`, `event_type`, `user_agent`, `ip_address`.
fn decode_article(item: &Item) -> Result<Event, Error> {
    let bad = |what: &str| Error::Service(format!("an item without a usable {what}"));
    let number_or_text = |name: &str| match item.get(name) {
        Some(AttributeValue::N(n)) | Some(AttributeValue::S(n)) => Some(n.clone()),
        _ => None,
    };
    let user = number_or_text("user_id").ok_or_else(|| bad("user_id"))?;
    let event_at: DateTime<Utc> = DateTime::parse_from_rfc3339(text(item, "event_at")?)
        .map_err(|_| bad("event_at"))?
        .with_timezone(&Utc);
    Ok(Event {
        event_id: number_or_text("event_id").ok_or_else(|| bad("event_id"))?,
        user_id: user
            .parse()
            .map(tracklake_event::UserId::Int)
            .unwrap_or(tracklake_event::UserId::Text(user)),
        event_type: text(item, "event_type")?.to_owned(),
        event_at,
        received_at: event_at,
        user_agent: text(item, "user_agent").ok().map(str::to_owned),
        ip_address: text(item, "ip_address").ok().and_then(|ip| ip.parse().ok()),
        properties: Default::default(),
        device: tracklake_event::Device::unknown(),
        web: Default::default(),
        server_assigned_id: false,
    })
}
