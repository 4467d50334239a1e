//! The rules an incoming event must pass: the article's `Tracker::Entity`
//! validations, made configurable, with errors that name the field and rule.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Device, DeviceDetector, Error, Event, UserId, Web};

/// Event types allowed when the config lists none.
pub const DEFAULT_TYPE_PATTERN: &str = "^[a-z][a-z0-9_.:-]{0,63}$";

/// Validation limits, the `[ingest]` section of the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Allowed event types; when absent, any name matching
    /// [`DEFAULT_TYPE_PATTERN`] is allowed.
    pub event_types: Option<Vec<String>>,
    /// Fields that must be present after request defaults are applied, beyond
    /// `user_id` and `event_type` (which always are): any of `event_id`,
    /// `event_at`, `user_agent`, `ip_address`, `properties`.
    pub required: Vec<String>,
    /// How far in the future `event_at` may be, in seconds.
    pub max_future_skew_secs: u64,
    pub max_user_id_bytes: usize,
    pub max_event_id_bytes: usize,
    pub max_user_agent_bytes: usize,
    pub max_event_bytes: usize,
    pub max_properties_depth: usize,
    pub max_batch_events: usize,
    pub max_request_bytes: usize,
    /// Distinct user agents kept parsed in memory.
    pub user_agent_cache: usize,
    /// Top-level `properties` dropped before storing (`privacy.drop_properties`).
    #[serde(skip)]
    pub drop_properties: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            event_types: None,
            required: Vec::new(),
            max_future_skew_secs: 600,
            max_user_id_bytes: 128,
            max_event_id_bytes: 128,
            max_user_agent_bytes: 1024,
            max_event_bytes: 32 * 1024,
            max_properties_depth: 8,
            max_batch_events: 500,
            max_request_bytes: 1024 * 1024,
            user_agent_cache: 10_000,
            drop_properties: Vec::new(),
        }
    }
}

/// Why an event was refused: a stable `code`, the `field` at fault and a
/// sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl Rejection {
    pub fn new(code: &str, field: Option<&str>, message: impl Into<String>) -> Self {
        Rejection {
            code: code.into(),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// What the HTTP request says, used when the event leaves a field out — the
/// article's `request.remote_ip` and `request.user_agent`.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub ip_address: Option<IpAddr>,
    pub user_agent: Option<String>,
}

const KNOWN_FIELDS: [&str; 7] = [
    "event_id",
    "user_id",
    "event_type",
    "event_at",
    "user_agent",
    "ip_address",
    "properties",
];

/// Turns raw JSON events into [`Event`]s or [`Rejection`]s.
pub struct Validator {
    rules: Rules,
    type_pattern: Regex,
    devices: Arc<DeviceDetector>,
}

impl Validator {
    pub fn new(rules: Rules) -> Result<Self, Error> {
        let devices = Arc::new(DeviceDetector::new(rules.user_agent_cache)?);
        Self::with_devices(rules, devices)
    }

    /// A validator sharing an already built detector (compiling its regexes
    /// takes a noticeable moment).
    pub fn with_devices(rules: Rules, devices: Arc<DeviceDetector>) -> Result<Self, Error> {
        let type_pattern =
            Regex::new(DEFAULT_TYPE_PATTERN).map_err(|source| Error::CompilePattern {
                pattern: DEFAULT_TYPE_PATTERN.into(),
                source,
            })?;
        if let Some(field) = rules
            .required
            .iter()
            .find(|f| !KNOWN_FIELDS.contains(&f.as_str()))
        {
            return Err(Error::UnknownRequiredField(field.clone()));
        }
        Ok(Validator {
            rules,
            type_pattern,
            devices,
        })
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn devices(&self) -> &DeviceDetector {
        &self.devices
    }

    /// Validates one event given as JSON text.
    pub fn validate_json(
        &self,
        json: &str,
        ctx: &RequestContext,
        now: DateTime<Utc>,
    ) -> Result<Event, Rejection> {
        if json.len() > self.rules.max_event_bytes {
            return Err(Rejection::new(
                "too_large",
                None,
                format!(
                    "an event may be at most {} bytes; this one is {}",
                    self.rules.max_event_bytes,
                    json.len()
                ),
            ));
        }
        match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(map)) => self.validate(map, ctx, now),
            Ok(_) => Err(Rejection::new(
                "invalid_type",
                None,
                "an event must be a JSON object",
            )),
            Err(e) => Err(Rejection::new("invalid_json", None, e.to_string())),
        }
    }

    /// Validates one event object; `now` is the server's receive time.
    pub fn validate(
        &self,
        mut map: Map<String, Value>,
        ctx: &RequestContext,
        now: DateTime<Utc>,
    ) -> Result<Event, Rejection> {
        if let Some(unknown) = map.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
            return Err(Rejection::new(
                "unknown_field",
                Some(unknown),
                format!(
                    "unknown field; an event has {}, and free-form data goes in properties",
                    KNOWN_FIELDS.join(", ")
                ),
            ));
        }
        // `null` means "not given", as in most JSON APIs.
        map.retain(|_, v| !v.is_null());
        let r = &self.rules;

        let user_id = match map.remove("user_id") {
            None => return Err(required("user_id")),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => UserId::Int(i),
                None => {
                    return Err(Rejection::new(
                        "invalid_type",
                        Some("user_id"),
                        "user_id must be an integer or a string",
                    ));
                }
            },
            Some(Value::String(s)) => {
                text_field("user_id", &s, r.max_user_id_bytes)?;
                UserId::Text(s)
            }
            Some(_) => {
                return Err(Rejection::new(
                    "invalid_type",
                    Some("user_id"),
                    "user_id must be an integer or a string",
                ));
            }
        };

        let event_type = match map.remove("event_type") {
            None => return Err(required("event_type")),
            Some(Value::String(s)) => s,
            Some(_) => {
                return Err(Rejection::new(
                    "invalid_type",
                    Some("event_type"),
                    "event_type must be a string",
                ));
            }
        };
        self.check_event_type(&event_type)?;

        let event_id = match map.remove("event_id") {
            None => None,
            Some(Value::String(s)) => {
                text_field("event_id", &s, r.max_event_id_bytes)?;
                Some(s)
            }
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            Some(_) => {
                return Err(Rejection::new(
                    "invalid_type",
                    Some("event_id"),
                    "event_id must be a string or an integer",
                ));
            }
        };

        let event_at = match map.remove("event_at") {
            None => None,
            Some(Value::String(s)) => Some(parse_time(&s)?),
            Some(_) => {
                return Err(Rejection::new(
                    "invalid_type",
                    Some("event_at"),
                    "event_at must be an ISO 8601 string",
                ));
            }
        };
        if let Some(at) = event_at {
            let skew = chrono::Duration::seconds(r.max_future_skew_secs as i64);
            if at > now + skew {
                return Err(Rejection::new(
                    "in_future",
                    Some("event_at"),
                    format!(
                        "event_at {} is more than {} s ahead of the server clock ({})",
                        at.to_rfc3339(),
                        r.max_future_skew_secs,
                        now.to_rfc3339()
                    ),
                ));
            }
        }

        let user_agent = match map.remove("user_agent") {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                return Err(Rejection::new(
                    "invalid_type",
                    Some("user_agent"),
                    "user_agent must be a string",
                ));
            }
        };
        let ip_address = match map.remove("ip_address") {
            None => None,
            Some(Value::String(s)) => Some(s.trim().parse::<IpAddr>().map_err(|_| {
                Rejection::new(
                    "invalid_format",
                    Some("ip_address"),
                    format!("{s:?} is not an IPv4 or IPv6 address"),
                )
            })?),
            Some(_) => {
                return Err(Rejection::new(
                    "invalid_type",
                    Some("ip_address"),
                    "ip_address must be a string",
                ));
            }
        };
        let properties = match map.remove("properties") {
            None => None,
            Some(Value::Object(p)) => {
                let depth = depth_of_map(&p);
                if depth > r.max_properties_depth {
                    return Err(Rejection::new(
                        "too_deep",
                        Some("properties"),
                        format!(
                            "properties nest {depth} levels deep; at most {} are allowed",
                            r.max_properties_depth
                        ),
                    ));
                }
                Some(p)
            }
            Some(_) => {
                return Err(Rejection::new(
                    "invalid_type",
                    Some("properties"),
                    "properties must be a JSON object",
                ));
            }
        };

        let given = |f: &str| match f {
            "event_id" => event_id.is_some(),
            "event_at" => event_at.is_some(),
            "properties" => properties.is_some(),
            _ => true, // user_agent and ip_address are checked after defaults
        };
        if let Some(missing) = r.required.iter().find(|f| !given(f)) {
            return Err(required(missing));
        }

        let user_agent = user_agent
            .or_else(|| ctx.user_agent.clone())
            .filter(|s| !s.is_empty());
        let ip_address = ip_address.or(ctx.ip_address);
        if let Some(ua) = &user_agent
            && ua.len() > r.max_user_agent_bytes
        {
            return Err(Rejection::new(
                "too_long",
                Some("user_agent"),
                format!(
                    "user_agent may be at most {} bytes; this one is {}",
                    r.max_user_agent_bytes,
                    ua.len()
                ),
            ));
        }
        for (field, present) in [
            ("user_agent", user_agent.is_some()),
            ("ip_address", ip_address.is_some()),
        ] {
            if !present && r.required.iter().any(|f| f == field) {
                return Err(required(field));
            }
        }

        let device = match &user_agent {
            Some(ua) => (*self.devices.detect(ua)).clone(),
            None => Device::unknown(),
        };
        let received_at = now.trunc_subsecs(6);
        let mut properties = properties.unwrap_or_default();
        properties.retain(|k, _| !r.drop_properties.contains(k));
        Ok(Event {
            server_assigned_id: event_id.is_none(),
            event_id: event_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            user_id,
            event_type,
            event_at: event_at.unwrap_or(received_at),
            received_at,
            user_agent,
            ip_address,
            web: Web::of(&properties),
            properties,
            device,
        })
    }

    fn check_event_type(&self, event_type: &str) -> Result<(), Rejection> {
        match &self.rules.event_types {
            Some(allowed) if !allowed.iter().any(|t| t == event_type) => Err(Rejection::new(
                "not_allowed",
                Some("event_type"),
                format!(
                    "event type {event_type:?} is not allowed; allowed: {}",
                    allowed.join(", ")
                ),
            )),
            None if !self.type_pattern.is_match(event_type) => Err(Rejection::new(
                "invalid_format",
                Some("event_type"),
                format!("event type {event_type:?} must match {DEFAULT_TYPE_PATTERN}"),
            )),
            _ => Ok(()),
        }
    }
}

fn required(field: &str) -> Rejection {
    Rejection::new("required", Some(field), format!("{field} is required"))
}

/// Ids become parts of storage keys and file names: no control characters,
/// not empty, bounded.
fn text_field(field: &str, value: &str, max_bytes: usize) -> Result<(), Rejection> {
    if value.is_empty() {
        return Err(Rejection::new(
            "required",
            Some(field),
            format!("{field} must not be empty"),
        ));
    }
    if value.len() > max_bytes {
        return Err(Rejection::new(
            "too_long",
            Some(field),
            format!(
                "{field} may be at most {max_bytes} bytes; this one is {}",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Rejection::new(
            "invalid_format",
            Some(field),
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

/// ISO 8601 / RFC 3339 with an offset (`Z` or `±hh:mm`), kept to the
/// microsecond. A time without an offset is refused: its zone is unknowable.
fn parse_time(s: &str) -> Result<DateTime<Utc>, Rejection> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
        .map_err(|e| {
            Rejection::new(
                "invalid_format",
                Some("event_at"),
                format!("{s:?} is not an ISO 8601 time with an offset, such as 2019-06-29T16:46:23Z ({e})"),
            )
        })
}

fn depth_of_map(map: &Map<String, Value>) -> usize {
    1 + map.values().map(depth_of).max().unwrap_or(0)
}

fn depth_of(value: &Value) -> usize {
    match value {
        Value::Object(m) => depth_of_map(m),
        Value::Array(a) => 1 + a.iter().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
