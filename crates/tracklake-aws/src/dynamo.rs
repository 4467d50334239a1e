//! The table on DynamoDB (or anything that speaks its API), behaving like
//! the embedded one: the same shared behaviour suite runs against both.
//!
//! Items of a user (partition key `user_id`, the id's text form):
//! - event: sort key `<event_at, RFC 3339 with microseconds>#<event_id>`,
//!   with `event_id`, `event_type`, `event_at` and `event` (the stored
//!   event's JSON, which the Lambda forwards as is);
//! - id:    sort key `id#<event_id>`, with `at` (the event item's sort key).
//!
//! Both are written in one transaction, each conditional on not existing,
//! so a put is idempotent by `(user_id, event_id)` whatever its time, and
//! two events of one user at the same instant do not overwrite each other
//! (the article's `(user_id, event_at)` key would). Event sort keys start
//! with a digit and id keys with `i`, so time ranges never meet id items.
//! Reads page through DynamoDB until `limit` *matching* items are found
//! (DynamoDB applies `Limit` before the filter).
//!
//! A table shaped like the article's (partition key `user_id` N, sort key
//! `event_at` S) works too, found from its key schema: user ids must then be
//! integers, the sort key is the event time alone, and an event whose
//! instant is already taken by another of the user's events is stored a
//! microsecond later in the key (its `event` attribute keeps the true time),
//! so neither overwrites the other. Items the article's own code wrote
//! (without `event`) are read from their attributes.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, KeySchemaElement, KeyType,
    Put, ScalarAttributeType, StreamSpecification, StreamViewType, TransactWriteItem, WriteRequest,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{StreamExt, TryStreamExt};
use tracklake_event::Event;
use tracklake_table::{BoxFuture, Deleted, Error, Order, Page, PutOutcome, Query, Table};

pub use items::Layout;
pub(crate) use items::decode as decode_item;
use items::{ID_PREFIX, Item, decode, s, text, time_key};

mod items;

/// Puts in flight at once for one batch.
const CONCURRENT_PUTS: usize = 16;

pub struct DynamoTable {
    client: Client,
    name: String,
    layout: Layout,
}

fn unavailable(e: impl std::error::Error) -> Error {
    Error::Unavailable(DisplayErrorContext(e).to_string())
}

impl DynamoTable {
    /// A client for `name` with DynamoDB's customary ten tries per call
    /// (throttling and internal errors are retried with backoff).
    pub fn connect(config: &aws_config::SdkConfig, name: impl Into<String>) -> Self {
        let retries = aws_config::retry::RetryConfig::standard().with_max_attempts(10);
        let config = aws_sdk_dynamodb::config::Builder::from(config)
            .retry_config(retries)
            .build();
        DynamoTable {
            client: Client::from_conf(config),
            name: name.into(),
            layout: Layout::Tracklake,
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Fails with a message naming the table unless it exists and is keyed
    /// as tracklake's (or the article's) table; takes the layout it finds.
    pub async fn check(&mut self) -> Result<(), Error> {
        let table = self
            .client
            .describe_table()
            .table_name(&self.name)
            .send()
            .await
            .map_err(|e| {
                Error::Unavailable(format!(
                    "DynamoDB table {}: {}",
                    self.name,
                    DisplayErrorContext(e)
                ))
            })?
            .table
            .ok_or_else(|| {
                Error::Service(format!("DynamoDB table {} is not described", self.name))
            })?;
        let keys: Vec<&str> = table
            .key_schema()
            .iter()
            .map(|k| k.attribute_name())
            .collect();
        let user_is_number = table.attribute_definitions().iter().any(|a| {
            a.attribute_name() == "user_id" && a.attribute_type() == &ScalarAttributeType::N
        });
        self.layout = match keys.as_slice() {
            ["user_id", "sk"] if !user_is_number => Layout::Tracklake,
            ["user_id", "event_at"] if user_is_number => Layout::Article,
            _ => {
                return Err(Error::Service(format!(
                    "DynamoDB table {} is keyed by {keys:?}; tracklake needs (user_id S, sk S) as in \
                     deploy/aws/template.yaml, or the article's (user_id N, event_at S)",
                    self.name
                )));
            }
        };
        Ok(())
    }

    /// Creates the table with tracklake's keys and a `NEW_IMAGE` stream, as
    /// deploy/aws/template.yaml does (for a first run against an emulator
    /// or DynamoDB Local).
    pub async fn create(&mut self, layout: Layout) -> Result<(), Error> {
        self.layout = layout;
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| Error::Service(e.to_string()))
        };
        let attribute = |name: &str, kind| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .map_err(|e| Error::Service(e.to_string()))
        };
        self.client
            .create_table()
            .table_name(&self.name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("user_id", KeyType::Hash)?)
            .key_schema(key(layout.sort(), KeyType::Range)?)
            .attribute_definitions(attribute(
                "user_id",
                match layout {
                    Layout::Tracklake => ScalarAttributeType::S,
                    Layout::Article => ScalarAttributeType::N,
                },
            )?)
            .attribute_definitions(attribute(layout.sort(), ScalarAttributeType::S)?)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewImage)
                    .build()
                    .map_err(|e| Error::Service(e.to_string()))?,
            )
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn put_one(&self, event: Event) -> Result<PutOutcome, Error> {
        let user = event.user_id.as_key();
        let Some(user_key) = self.layout.user(&user) else {
            return Err(Error::Service(format!(
                "DynamoDB table {} keys users by number (the article's layout); user id {user:?} is not one",
                self.name
            )));
        };
        let json = serde_json::to_string(&event).map_err(Error::Encode)?;
        let sort = self.layout.sort();
        // On the article's layout an instant holds one event: the next free
        // microsecond is taken instead (the true time stays in `event`).
        for nudge in 0..1000 {
            let key = self.layout.event_key(&event, nudge);
            let mut event_item: Item = [
                ("user_id", user_key.clone()),
                ("event_id", s(&event.event_id)),
                ("event_type", s(&event.event_type)),
                ("event_at", s(time_key(event.event_at))),
                ("event", s(&json)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            event_item.insert(sort.to_owned(), s(&key));
            let id_item: Item = [
                ("user_id", user_key.clone()),
                (sort, s(format!("{ID_PREFIX}{}", event.event_id))),
                ("at", s(&key)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let put = |item: Item| -> Result<TransactWriteItem, Error> {
                let put = Put::builder()
                    .table_name(&self.name)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(user_id)")
                    .build()
                    .map_err(|e| Error::Service(e.to_string()))?;
                Ok(TransactWriteItem::builder().put(put).build())
            };
            let written = self
                .client
                .transact_write_items()
                .transact_items(put(event_item)?)
                .transact_items(put(id_item)?)
                .send()
                .await;
            let (event_taken, id_taken) = match written {
                Ok(_) => return Ok(PutOutcome::Stored(event)),
                Err(SdkError::ServiceError(e)) => match e.err() {
                    TransactWriteItemsError::TransactionCanceledException(c) => {
                        let failed = |i: usize| {
                            c.cancellation_reasons()
                                .get(i)
                                .is_some_and(|r| r.code() == Some("ConditionalCheckFailed"))
                        };
                        (failed(0), failed(1))
                    }
                    _ => return Err(unavailable(SdkError::ServiceError(e))),
                },
                Err(e) => return Err(unavailable(e)),
            };
            if id_taken {
                return match self.stored(&user_key, &event.event_id).await? {
                    Some(stored) => Ok(PutOutcome::Duplicate(stored)),
                    None => Err(Error::Service(format!(
                        "event {} of user {user} exists in part only",
                        event.event_id
                    ))),
                };
            }
            if !event_taken || self.layout == Layout::Tracklake {
                return Err(Error::Service(format!(
                    "DynamoDB refused event {} of user {user} without saying why",
                    event.event_id
                )));
            }
        }
        Err(Error::Service(format!(
            "user {user} has 1,000 events at {}; no free instant is left",
            event.event_at
        )))
    }

    /// The stored event with this id, if any.
    async fn stored(&self, user: &AttributeValue, event_id: &str) -> Result<Option<Event>, Error> {
        let Some(id) = self.get(user, &format!("{ID_PREFIX}{event_id}")).await? else {
            return Ok(None);
        };
        match self.get(user, text(&id, "at")?).await? {
            Some(item) => Ok(Some(decode(&item)?)),
            None => Ok(None),
        }
    }

    async fn get(&self, user: &AttributeValue, sk: &str) -> Result<Option<Item>, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key("user_id", user.clone())
            .key(self.layout.sort(), s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    async fn scan(&self, q: Query) -> Result<Page, Error> {
        let Some(user) = self.layout.user(&q.user_id) else {
            return Ok(Page {
                events: Vec::new(),
                next_cursor: None,
            });
        };
        // Tracklake's keys are `<time>#<id>`: '$' sorts right after '#'.
        // ':' sorts right after every digit, so id items stay out.
        let (after_lo, after_hi) = match self.layout {
            Layout::Tracklake => ("#", "$"),
            Layout::Article => ("", ""),
        };
        let lo = q
            .from
            .map_or("0".to_owned(), |t| format!("{}{after_lo}", time_key(t)));
        let hi =
            q.to.map_or(":".to_owned(), |t| format!("{}{after_hi}", time_key(t)));
        let mut start: Option<Item> = match &q.cursor {
            None => None,
            Some(cursor) => {
                let sk = URL_SAFE_NO_PAD
                    .decode(cursor)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|sk| sk.starts_with(|c: char| c.is_ascii_digit()))
                    .ok_or(Error::BadCursor)?;
                Some(
                    [
                        ("user_id".to_owned(), user.clone()),
                        (self.layout.sort().to_owned(), s(sk)),
                    ]
                    .into_iter()
                    .collect(),
                )
            }
        };
        let limit = q.limit.clamp(1, tracklake_table::MAX_LIMIT);
        let mut page = Page {
            events: Vec::new(),
            next_cursor: None,
        };
        if lo > hi {
            return Ok(page);
        }
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression("user_id = :u AND #k BETWEEN :lo AND :hi")
                .expression_attribute_names("#k", self.layout.sort())
                .expression_attribute_values(":u", user.clone())
                .expression_attribute_values(":lo", s(&lo))
                .expression_attribute_values(":hi", s(&hi))
                .scan_index_forward(q.order == Order::Oldest)
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            if !q.types.is_empty() {
                let names: Vec<String> = (0..q.types.len()).map(|i| format!(":t{i}")).collect();
                request =
                    request.filter_expression(format!("event_type IN ({})", names.join(", ")));
                for (name, kind) in names.iter().zip(&q.types) {
                    request = request.expression_attribute_values(name, s(kind));
                }
            }
            let out = request.send().await.map_err(unavailable)?;
            for item in out.items() {
                page.events.push(decode(item)?);
                if page.events.len() == limit {
                    page.next_cursor =
                        Some(URL_SAFE_NO_PAD.encode(text(item, self.layout.sort())?));
                    return Ok(page);
                }
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(page),
            }
        }
    }

    async fn delete_all(&self, user: &str) -> Result<Deleted, Error> {
        let Some(user) = self.layout.user(user) else {
            return Ok(Deleted::default());
        };
        let mut keys: Vec<Item> = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression("user_id = :u")
                .expression_attribute_values(":u", user.clone())
                .projection_expression("user_id, #k")
                .expression_attribute_names("#k", self.layout.sort())
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            keys.extend(out.items().iter().cloned());
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        let events = keys
            .iter()
            .filter(|k| text(k, self.layout.sort()).is_ok_and(|key| !key.starts_with(ID_PREFIX)))
            .count() as u64;
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|key| {
                    let delete = DeleteRequest::builder()
                        .set_key(Some(key.clone()))
                        .build()
                        .map_err(|e| Error::Service(e.to_string()))?;
                    Ok(WriteRequest::builder().delete_request(delete).build())
                })
                .collect::<Result<_, Error>>()?;
            let mut backoff = Duration::from_millis(50);
            while !requests.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.name, requests)
                    .send()
                    .await
                    .map_err(unavailable)?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.name))
                    .unwrap_or_default();
                if !requests.is_empty() {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // DynamoDB's own stream carries the removals; nothing waits here.
        Ok(Deleted {
            events,
            undelivered: 0,
            through_seq: 0,
        })
    }
}

impl Table for DynamoTable {
    fn put(&self, events: Vec<Event>) -> BoxFuture<'_, Result<Vec<PutOutcome>, Error>> {
        Box::pin(async move {
            // Repeats inside one batch are answered from the first copy.
            let mut first: HashMap<(String, String), usize> = HashMap::new();
            let mut repeat_of: Vec<Option<usize>> = Vec::with_capacity(events.len());
            let mut unique = Vec::new();
            for event in events {
                let key = (event.user_id.as_key(), event.event_id.clone());
                match first.get(&key) {
                    Some(&i) => repeat_of.push(Some(i)),
                    None => {
                        first.insert(key, unique.len());
                        repeat_of.push(None);
                        unique.push(event);
                    }
                }
            }
            // One user's events go in order (so instants taken in a batch
            // are taken in batch order); different users' at once.
            let mut users: HashMap<String, Vec<(usize, Event)>> = HashMap::new();
            for (i, event) in unique.into_iter().enumerate() {
                users
                    .entry(event.user_id.as_key())
                    .or_default()
                    .push((i, event));
            }
            let done: Vec<Vec<(usize, PutOutcome)>> =
                futures_util::stream::iter(users.into_values())
                    .map(|events| async move {
                        let mut out = Vec::with_capacity(events.len());
                        for (i, event) in events {
                            out.push((i, self.put_one(event).await?));
                        }
                        Ok::<_, Error>(out)
                    })
                    .buffer_unordered(CONCURRENT_PUTS)
                    .try_collect()
                    .await?;
            let mut outcomes: Vec<Option<PutOutcome>> = vec![None; first.len()];
            for (i, outcome) in done.into_iter().flatten() {
                outcomes[i] = Some(outcome);
            }
            let outcomes: Vec<PutOutcome> = outcomes.into_iter().flatten().collect();
            let mut next = 0;
            Ok(repeat_of
                .into_iter()
                .map(|repeat| match repeat {
                    Some(i) => match &outcomes[i] {
                        PutOutcome::Stored(e) | PutOutcome::Duplicate(e) => {
                            PutOutcome::Duplicate(e.clone())
                        }
                    },
                    None => {
                        next += 1;
                        outcomes[next - 1].clone()
                    }
                })
                .collect())
        })
    }

    fn query(&self, query: Query) -> BoxFuture<'_, Result<Page, Error>> {
        Box::pin(self.scan(query))
    }

    fn delete_user<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<Deleted, Error>> {
        Box::pin(self.delete_all(user_id))
    }

    fn is_healthy(&self) -> bool {
        true
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::json!({ "engine": "dynamodb", "table": self.name })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}
