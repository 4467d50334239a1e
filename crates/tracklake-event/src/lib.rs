//! The event model of tracklake: what an event is, the rules an incoming event
//! must pass (the article's `Tracker::Entity`), and the user-agent enrichment
//! that turns `user_agent` into `device` once, at ingest, as [`web`] turns
//! page properties into [`Web`] fields.

mod device;
mod model;
mod privacy;
mod validate;
mod web;

pub use device::{BOT_KINDS, Device, DeviceDetector};
pub use model::{Event, UserId};
pub use privacy::{IpMode, Privacy, PrivacyConfig};
pub use validate::{DEFAULT_TYPE_PATTERN, Rejection, RequestContext, Rules, Validator};
pub use web::Web;

/// Errors raised while building the event stage (never for a bad event:
/// those are [`Rejection`]s).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("loading the user-agent regexes: {0}")]
    LoadUaRegexes(String),
    #[error("ingest.required names {0:?}, which is not an event field")]
    UnknownRequiredField(String),
    #[error("compiling the event type pattern {pattern:?}: {source}")]
    CompilePattern {
        pattern: String,
        source: regex::Error,
    },
}
