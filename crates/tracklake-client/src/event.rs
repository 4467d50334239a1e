//! The event a client tracks; its id and time are fixed when it is tracked.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub struct Event {
    pub(crate) body: Map<String, Value>,
}

impl Event {
    /// An event of `event_type` for `user_id` (an integer or a string), at
    /// the current time, with a fresh UUIDv7 `event_id`.
    pub fn new(user_id: impl Into<Value>, event_type: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("event_id".into(), uuid::Uuid::now_v7().to_string().into());
        body.insert("user_id".into(), user_id.into());
        body.insert("event_type".into(), event_type.into().into());
        body.insert(
            "event_at".into(),
            Utc::now()
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .into(),
        );
        Event { body }
    }

    pub fn event_id(mut self, id: impl Into<String>) -> Self {
        self.body.insert("event_id".into(), id.into().into());
        self
    }

    pub fn at(mut self, at: DateTime<Utc>) -> Self {
        self.body.insert(
            "event_at".into(),
            at.to_rfc3339_opts(SecondsFormat::Micros, true).into(),
        );
        self
    }

    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.body.insert("user_agent".into(), ua.into().into());
        self
    }

    pub fn ip_address(mut self, ip: impl Into<String>) -> Self {
        self.body.insert("ip_address".into(), ip.into().into());
        self
    }

    pub fn property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        let props = self
            .body
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(p) = props {
            p.insert(key.into(), value.into());
        }
        self
    }

    /// The id the server will store this event under.
    pub fn id(&self) -> &str {
        self.body
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}
