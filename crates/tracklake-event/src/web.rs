//! Page and session fields, taken from an event's `properties` once, at
//! ingest, so SQL can group by them as columns (`url`, `path`,
//! `referrer_host`, `utm_source`, `utm_medium`, `utm_campaign`,
//! `session_id`) instead of extracting JSON on every query.
//!
//! Where they are looked for, first found wins:
//!
//! | column | from |
//! |---|---|
//! | `url` | `properties.page.url`, else `properties.url` |
//! | `path` | `properties.page.path`, else `properties.path`, else the path of `url` |
//! | `referrer_host` | the host of `properties.page.referrer`, else of `properties.referrer`, lower case, without `www.` |
//! | `utm_*` | `properties.campaign.source` / `.medium` / `.name`, else `properties.utm_*`, else the `utm_*` parameters of `url` |
//! | `session_id` | `properties.session_id`, else `properties.sessionId` (text or number) |
//!
//! Segment's calls and tracklake.js put `context.page`, `context.campaign`
//! and `context.sessionId` there (a page call's properties are the page).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where in a web page an event happened, and in which visit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Web {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

impl Web {
    /// The column names, in the order the lake holds them.
    pub const COLUMNS: [&'static str; 7] = [
        "url",
        "path",
        "referrer_host",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "session_id",
    ];

    /// True when the event had none of the fields (a server-side event).
    pub fn is_empty(&self) -> bool {
        self == &Web::default()
    }

    /// The fields of an event with these `properties`.
    pub fn of(properties: &Map<String, Value>) -> Web {
        let page = properties.get("page").and_then(Value::as_object);
        let in_page = |key: &str| {
            page.and_then(|p| text(p.get(key)))
                .or_else(|| text(properties.get(key)))
        };
        let url = in_page("url");
        let parsed = url.as_deref().and_then(|u| url::Url::parse(u).ok());
        let path = in_page("path").or_else(|| {
            parsed
                .as_ref()
                .filter(|u| u.has_host())
                .map(|u| u.path().to_owned())
        });
        let referrer_host = in_page("referrer").and_then(|r| host_of(&r));
        let campaign = properties.get("campaign").and_then(Value::as_object);
        let utm = |name: &str, in_campaign: &str| {
            campaign
                .and_then(|c| text(c.get(in_campaign)))
                .or_else(|| text(properties.get(name)))
                .or_else(|| {
                    parsed.as_ref().and_then(|u| {
                        u.query_pairs()
                            .find(|(k, v)| k == name && !v.is_empty())
                            .map(|(_, v)| v.into_owned())
                    })
                })
        };
        Web {
            utm_source: utm("utm_source", "source"),
            utm_medium: utm("utm_medium", "medium"),
            utm_campaign: utm("utm_campaign", "name"),
            session_id: id(properties.get("session_id"))
                .or_else(|| id(properties.get("sessionId"))),
            url,
            path,
            referrer_host,
        }
    }
}

/// A non-empty string.
fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A non-empty string, or a number as its text.
fn id(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::Number(n)) => Some(n.to_string()),
        other => text(other),
    }
}

/// `https://www.Example.com/a` → `example.com`; nothing for a URL with no
/// host (an empty referrer, `android-app://` without one).
fn host_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?.to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn web(properties: Value) -> Web {
        Web::of(properties.as_object().unwrap())
    }

    #[test]
    fn a_track_call_with_segments_context() {
        let w = web(json!({
            "plan": "pro",
            "page": {"url": "https://shop.example/pricing?utm_source=ignored",
                     "path": "/pricing", "referrer": "https://www.Google.com/search?q=x"},
            "campaign": {"source": "news", "medium": "email", "name": "launch"},
            "session_id": "s-1"
        }));
        assert_eq!(
            w.url.as_deref(),
            Some("https://shop.example/pricing?utm_source=ignored")
        );
        assert_eq!(w.path.as_deref(), Some("/pricing"));
        assert_eq!(w.referrer_host.as_deref(), Some("google.com"));
        assert_eq!(w.utm_source.as_deref(), Some("news"));
        assert_eq!(w.utm_medium.as_deref(), Some("email"));
        assert_eq!(w.utm_campaign.as_deref(), Some("launch"));
        assert_eq!(w.session_id.as_deref(), Some("s-1"));
    }

    #[test]
    fn a_page_calls_properties_are_the_page_and_utm_comes_from_the_url() {
        let w = web(json!({
            "url": "https://example.com/blog/a?utm_source=hn&utm_campaign=&utm_medium=social",
            "referrer": "", "sessionId": 1733000000
        }));
        assert_eq!(w.path.as_deref(), Some("/blog/a"));
        assert_eq!(w.referrer_host, None);
        assert_eq!(w.utm_source.as_deref(), Some("hn"));
        assert_eq!(w.utm_medium.as_deref(), Some("social"));
        assert_eq!(w.utm_campaign, None, "an empty parameter is no campaign");
        assert_eq!(w.session_id.as_deref(), Some("1733000000"));
    }

    #[test]
    fn server_side_events_have_none() {
        assert!(web(json!({"material_id": 7})).is_empty());
        // Not a URL: kept as sent, but no path or host is made up.
        let w = web(json!({"url": "not a url", "referrer": "nowhere", "page": "home"}));
        assert_eq!(w.url.as_deref(), Some("not a url"));
        assert_eq!((w.path, w.referrer_host), (None, None));
    }
}
