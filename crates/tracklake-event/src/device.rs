//! User-agent enrichment: the article ran DeviceDetector on every read; we
//! parse once at ingest so SQL can group by device.
//!
//! Two maintained parsers split the work: `ua-parser` (the uap-core regexes)
//! names the browser, OS and device model; `woothee` gives the coarse
//! category (pc / smartphone / crawler …) that uap-core lacks. Results are kept
//! in a bounded cache, since a real site sees few distinct agents.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;

mod bots;
pub use bots::KINDS as BOT_KINDS;

/// What the user agent says about the device, browser and OS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// `desktop`, `smartphone`, `tablet`, `mobile` (feature phone), `tv`,
    /// `bot`, or `unknown`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub is_bot: bool,
    /// What kind of bot: `ai`, `search`, `monitor` (uptime checks),
    /// `headless` (a browser driven by a program) or `crawler` (any other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<String>,
}

impl Device {
    /// The device of an event that came without a user agent.
    pub fn unknown() -> Self {
        Device {
            kind: "unknown".into(),
            ..Device::default()
        }
    }
}

/// The uap-core regexes (Apache-2.0, see `data/uap-core-LICENSE`), converted
/// from the YAML that ua-parser ships so that no YAML parser is needed.
const UAP_REGEXES: &str = include_str!("../data/uap-regexes.json");

/// Parses user agents into [`Device`]s, with a bounded cache in front.
pub struct DeviceDetector {
    uap: ua_parser::Extractor<'static>,
    woothee: woothee::parser::Parser,
    cache: quick_cache::sync::Cache<Box<str>, Arc<Device>>,
}

impl DeviceDetector {
    /// Compiles the regexes (about a second in a debug build, less in
    /// release); `cache_entries` bounds the cache of parsed agents.
    pub fn new(cache_entries: usize) -> Result<Self, Error> {
        let regexes: ua_parser::Regexes<'static> =
            serde_json::from_str(UAP_REGEXES).map_err(|e| Error::LoadUaRegexes(e.to_string()))?;
        let uap = ua_parser::Extractor::try_from(regexes)
            .map_err(|e| Error::LoadUaRegexes(e.to_string()))?;
        Ok(DeviceDetector {
            uap,
            woothee: woothee::parser::Parser::new(),
            cache: quick_cache::sync::Cache::new(cache_entries.max(1)),
        })
    }

    /// The device for `user_agent`, from the cache when it was seen before.
    pub fn detect(&self, user_agent: &str) -> Arc<Device> {
        if let Some(hit) = self.cache.get(user_agent) {
            return hit;
        }
        let device = Arc::new(self.parse(user_agent));
        self.cache.insert(user_agent.into(), device.clone());
        device
    }

    /// Parses without the cache (benchmarks use this to measure misses).
    pub fn parse(&self, user_agent: &str) -> Device {
        let (ua, os, dev) = self.uap.extract(user_agent);
        let category = self
            .woothee
            .parse(user_agent)
            .map(|r| r.category)
            .unwrap_or("UNKNOWN");

        let browser = ua.filter(|u| u.family != "Other");
        let os = os.filter(|o| o.os != "Other");
        let dev = dev.filter(|d| d.device != "Other");
        let known = bots::known(user_agent);
        let is_bot = known.is_some()
            || category == "crawler"
            || dev.as_ref().is_some_and(|d| d.device == "Spider");
        let kind = if is_bot {
            "bot"
        } else if is_tablet(user_agent, dev.as_ref().map(|d| d.device.as_ref())) {
            "tablet"
        } else {
            match category {
                "pc" => "desktop",
                "smartphone" => "smartphone",
                "mobilephone" => "mobile",
                "appliance" => "tv",
                // woothee misses odd desktop strings ("Windows NT x.y"): a
                // desktop OS with no named device is a desktop.
                _ if os.as_ref().is_some_and(|o| is_desktop_os(&o.os)) && dev.is_none() => {
                    "desktop"
                }
                _ => "unknown",
            }
        };
        let (browser_version, browser) = match known {
            // A named bot is its own browser (its version, if any, is the
            // bot's, not the engine it embeds).
            Some((name, _)) => (None, Some(name.to_owned())),
            None => (
                browser.as_ref().and_then(|b| version(&[b.major, b.minor])),
                browser.map(|b| b.family.into_owned()),
            ),
        };
        Device {
            kind: kind.into(),
            os_version: os.as_ref().and_then(|o| {
                version(&[o.major.as_deref(), o.minor.as_deref(), o.patch.as_deref()])
            }),
            os: os.map(|o| o.os.into_owned()),
            browser_version,
            browser,
            brand: dev
                .as_ref()
                .and_then(|d| d.brand.as_deref().map(str::to_owned)),
            model: dev.and_then(|d| d.model.map(|m| m.into_owned())),
            is_bot,
            bot: is_bot.then(|| known.map_or("crawler", |(_, kind)| kind).to_owned()),
        }
    }
}

/// uap-core names iPads and Kindles as devices; Android without "Mobile" is
/// a tablet by Google's own convention.
fn is_tablet(user_agent: &str, device: Option<&str>) -> bool {
    matches!(device, Some("iPad") | Some("Kindle"))
        || user_agent.contains("iPad")
        || user_agent.contains("Tablet")
        || (user_agent.contains("Android") && !user_agent.contains("Mobile"))
}

fn is_desktop_os(os: &str) -> bool {
    matches!(
        os,
        "Windows" | "Mac OS X" | "Linux" | "Ubuntu" | "Fedora" | "Debian" | "Chrome OS" | "FreeBSD"
    )
}

/// Joins the version parts that are present: `["10", "9", None]` → `10.9`.
fn version(parts: &[Option<&str>]) -> Option<String> {
    let present: Vec<&str> = parts
        .iter()
        .map_while(|p| p.filter(|s| !s.is_empty()))
        .collect();
    (!present.is_empty()).then(|| present.join("."))
}

#[cfg(test)]
mod tests;
