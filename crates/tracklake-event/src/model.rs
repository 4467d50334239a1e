//! The stored event: the article's DynamoDB item plus `received_at`,
//! `properties` and the parsed `device`.

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Device, Web};

/// A user id as the application sent it. The article uses integers; strings
/// work too. Both compare by their text, so `42` and `"42"` are one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserId {
    Int(i64),
    Text(String),
}

impl UserId {
    /// The text form used in keys and URLs.
    pub fn as_key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserId::Int(n) => write!(f, "{n}"),
            UserId::Text(s) => f.write_str(s),
        }
    }
}

/// An accepted event, as stored in the table and delivered to the lake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Client-supplied idempotency key, or a server-made UUIDv7.
    pub event_id: String,
    pub user_id: UserId,
    pub event_type: String,
    /// When it happened, by the client's clock (microsecond precision, UTC).
    pub event_at: DateTime<Utc>,
    /// When the server accepted it.
    pub received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<IpAddr>,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
    pub device: Device,
    /// Page and session fields from `properties` (none for events that
    /// came from no web page).
    #[serde(default, skip_serializing_if = "Web::is_empty")]
    pub web: Web,
    /// True when the server made `event_id` (a fresh UUIDv7 no client can
    /// know yet), so storing it needs no duplicate check. Not stored.
    #[serde(skip)]
    pub server_assigned_id: bool,
}

impl Event {
    /// The names a client may ask for in a projection (`fields=`).
    pub const FIELDS: [&'static str; 10] = [
        "event_id",
        "user_id",
        "event_type",
        "event_at",
        "received_at",
        "user_agent",
        "ip_address",
        "properties",
        "device",
        "web",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_and_text_ids_share_a_key() {
        assert_eq!(UserId::Int(42).as_key(), UserId::Text("42".into()).as_key());
    }

    #[test]
    fn user_id_keeps_its_json_type() {
        let n: UserId = serde_json::from_str("7").unwrap();
        let s: UserId = serde_json::from_str("\"u-7\"").unwrap();
        assert_eq!(n, UserId::Int(7));
        assert_eq!(s, UserId::Text("u-7".into()));
        assert_eq!(serde_json::to_string(&n).unwrap(), "7");
    }
}
