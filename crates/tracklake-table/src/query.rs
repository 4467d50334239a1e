//! Reading one user's events: the article's `recent_activity` and `logins`,
//! without DynamoDB's trap of applying `Limit` before the filter.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracklake_event::Event;

use crate::Error;
use crate::embedded::Keyspaces;
use crate::keys::{decode_row, time_bytes, user_prefix};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Newest `event_at` first (the article's `scan_index_forward: false`).
    #[default]
    Newest,
    Oldest,
}

/// Which of a user's events to return.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The user id in its text form ([`tracklake_event::UserId::as_key`]).
    pub user_id: String,
    pub order: Order,
    /// How many *matching* events to return, at most [`MAX_LIMIT`].
    pub limit: usize,
    /// Only these event types; empty means all.
    pub types: Vec<String>,
    /// Inclusive bounds on `event_at`, as the article's BETWEEN.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl Query {
    /// The newest [`DEFAULT_LIMIT`] events of a user.
    pub fn recent(user_id: impl Into<String>) -> Self {
        Query {
            user_id: user_id.into(),
            order: Order::Newest,
            limit: DEFAULT_LIMIT,
            types: Vec::new(),
            from: None,
            to: None,
            cursor: None,
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub events: Vec<Event>,
    /// Set when the page is full: pass it back for the next page (which may
    /// turn out empty).
    pub next_cursor: Option<String>,
}

/// Runs a query over the rows, reading each event from the change it
/// points at.
pub(crate) fn scan(ks: &Keyspaces, q: &Query) -> Result<Page, Error> {
    let prefix = user_prefix(&q.user_id);
    let at = |t: DateTime<Utc>| [prefix.as_slice(), &time_bytes(t)].concat();
    let mut lo = match q.from {
        Some(from) => at(from),
        None => prefix.clone(),
    };
    let mut hi = match q
        .to
        .and_then(|to| to.checked_add_signed(chrono::Duration::microseconds(1)))
    {
        Some(after_to) => at(after_to),
        // `user 0x01` sorts after every `user 0x00 …` key.
        None => [&prefix[..prefix.len() - 1], &[1u8]].concat(),
    };
    if let Some(cursor) = &q.cursor {
        let last = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| Error::BadCursor)?;
        if last.len() < 8 {
            return Err(Error::BadCursor);
        }
        let last = [prefix.as_slice(), &last].concat();
        match q.order {
            Order::Newest => hi = hi.min(last),
            // the smallest key after `last`
            Order::Oldest => lo = lo.max([last.as_slice(), &[0]].concat()),
        }
    }
    let limit = q.limit.clamp(1, MAX_LIMIT);
    let mut page = Page {
        events: Vec::with_capacity(limit.min(64)),
        next_cursor: None,
    };
    if lo >= hi {
        return Ok(page);
    }
    let range = ks.rows.range(lo..hi);
    let iter: Box<dyn Iterator<Item = fjall::Guard>> = match q.order {
        Order::Newest => Box::new(range.rev()),
        Order::Oldest => Box::new(range),
    };
    for guard in iter {
        let (key, value) = guard.into_inner().map_err(Error::Read)?;
        let event = ks.log.event(&decode_row(&value)?)?;
        if !q.types.is_empty() && !q.types.contains(&event.event_type) {
            continue;
        }
        page.events.push(event);
        if page.events.len() == limit {
            page.next_cursor = Some(URL_SAFE_NO_PAD.encode(&key[prefix.len()..]));
            break;
        }
    }
    Ok(page)
}
