//! One event as a lake row. Delivery decodes the change log's JSON straight
//! into rows whose text borrows from that JSON (whenever a string has no
//! escapes) and keeps `properties` as the JSON text it was stored as: no
//! owned [`Event`] is built per change only to be copied into Arrow
//! columns and dropped, which was most of delivery's work.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{Deserializer, Visitor};
use serde_json::value::RawValue;
use tracklake_event::Event;

use crate::Error;

/// The lake's columns of one event (see [`crate::SCHEMA`]).
#[derive(Debug, Deserialize)]
pub struct Row<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    /// In its text form, whether the event had a number or a string.
    #[serde(borrow, deserialize_with = "user_key")]
    pub user_id: Cow<'a, str>,
    #[serde(borrow)]
    pub event_type: Cow<'a, str>,
    pub event_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(default)]
    pub ip_address: Option<IpAddr>,
    /// The JSON object, as text.
    #[serde(borrow, default = "empty_object", deserialize_with = "json_text")]
    pub properties: Cow<'a, str>,
    #[serde(borrow)]
    pub device: DeviceRow<'a>,
    /// Absent in events stored before tracklake kept it, and in events
    /// from no web page.
    #[serde(borrow, default)]
    pub web: WebRow<'a>,
}

/// The device columns of a row.
#[derive(Debug, Deserialize)]
pub struct DeviceRow<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub os: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub os_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub browser: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub browser_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub brand: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub model: Option<Cow<'a, str>>,
    pub is_bot: bool,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub bot: Option<Cow<'a, str>>,
}

/// The page and session columns of a row (see [`tracklake_event::Web`]).
#[derive(Debug, Default, Deserialize)]
pub struct WebRow<'a> {
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub url: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub path: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub referrer_host: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub utm_source: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub utm_medium: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub utm_campaign: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "optional_text")]
    pub session_id: Option<Cow<'a, str>>,
}

impl WebRow<'_> {
    /// The columns in [`tracklake_event::Web::COLUMNS`] order.
    pub fn values(&self) -> [Option<&str>; 7] {
        [
            self.url.as_deref(),
            self.path.as_deref(),
            self.referrer_host.as_deref(),
            self.utm_source.as_deref(),
            self.utm_medium.as_deref(),
            self.utm_campaign.as_deref(),
            self.session_id.as_deref(),
        ]
    }
}

impl<'a> Row<'a> {
    /// The row of a stored event's JSON (a change's new image).
    pub fn decode(json: &'a [u8]) -> Result<Self, Error> {
        serde_json::from_slice(json).map_err(Error::DecodeChange)
    }

    /// The row of an event in memory.
    pub fn from_event(e: &'a Event) -> Result<Self, Error> {
        let d = &e.device;
        let text = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
        Ok(Row {
            event_id: Cow::Borrowed(&e.event_id),
            user_id: Cow::Owned(e.user_id.as_key()),
            event_type: Cow::Borrowed(&e.event_type),
            event_at: e.event_at,
            received_at: e.received_at,
            user_agent: text(&e.user_agent),
            ip_address: e.ip_address,
            properties: Cow::Owned(
                serde_json::to_string(&e.properties).map_err(Error::EncodeJson)?,
            ),
            device: DeviceRow {
                kind: Cow::Borrowed(&d.kind),
                os: text(&d.os),
                os_version: text(&d.os_version),
                browser: text(&d.browser),
                browser_version: text(&d.browser_version),
                brand: text(&d.brand),
                model: text(&d.model),
                is_bot: d.is_bot,
                bot: text(&d.bot),
            },
            web: {
                let w = &e.web;
                WebRow {
                    url: text(&w.url),
                    path: text(&w.path),
                    referrer_host: text(&w.referrer_host),
                    utm_source: text(&w.utm_source),
                    utm_medium: text(&w.utm_medium),
                    utm_campaign: text(&w.utm_campaign),
                    session_id: text(&w.session_id),
                }
            },
        })
    }
}

fn empty_object() -> Cow<'static, str> {
    Cow::Borrowed("{}")
}

/// A string, borrowed unless it had escapes. (`#[serde(borrow)]` borrows a
/// `Cow` only when it is the field's whole type, not inside an `Option`.)
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

fn optional_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(Option::<Text<'de>>::deserialize(d)?.map(|t| t.0))
}

fn json_text<'de, D: Deserializer<'de>>(d: D) -> Result<Cow<'de, str>, D::Error> {
    let raw: &'de RawValue = Deserialize::deserialize(d)?;
    Ok(Cow::Borrowed(raw.get()))
}

/// A user id, number or string, as its text (like `UserId::as_key`).
fn user_key<'de, D: Deserializer<'de>>(d: D) -> Result<Cow<'de, str>, D::Error> {
    struct Key;
    impl<'de> Visitor<'de> for Key {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a user id (an integer or a string)")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_owned()))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_string()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_string()))
        }
    }
    d.deserialize_any(Key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracklake_event::{Device, UserId};

    fn event(user_id: UserId) -> Event {
        let at = DateTime::from_timestamp_micros(1_561_826_783_123_456).unwrap();
        let properties = serde_json::json!({"b": [1, 2.5, null], "a": "x\"y", "é": {}});
        Event {
            event_id: "e-\"1\"".into(),
            user_id,
            event_type: "login".into(),
            event_at: at,
            received_at: at,
            user_agent: Some("Mozilla/5.0 \\o/".into()),
            ip_address: Some("203.0.113.9".parse().unwrap()),
            properties: properties.as_object().unwrap().clone(),
            device: Device {
                kind: "desktop".into(),
                os: Some("Linux".into()),
                browser_version: Some("120".into()),
                ..Device::default()
            },
            web: tracklake_event::Web {
                path: Some("/a\\b".into()),
                session_id: Some("s-1".into()),
                ..Default::default()
            },
            server_assigned_id: false,
        }
    }

    /// Decoding the stored JSON gives the same columns as the event itself:
    /// escapes, number ids, key order of `properties`, absent options.
    #[test]
    fn decoded_rows_equal_rows_of_the_event() {
        for user in [UserId::Int(-42), UserId::Text("u-7".into())] {
            let e = event(user);
            let json = serde_json::to_vec(&e).unwrap();
            let decoded = Row::decode(&json).unwrap();
            let direct = Row::from_event(&e).unwrap();
            assert_eq!(format!("{decoded:?}"), format!("{direct:?}"));
            assert_eq!(decoded.user_id, e.user_id.as_key());
            assert!(matches!(decoded.event_type, Cow::Borrowed(_)));
        }
    }

    #[test]
    fn damaged_json_is_an_error() {
        assert!(Row::decode(br#"{"event_id": 1}"#).is_err());
        assert!(Row::decode(b"not json").is_err());
    }
}
