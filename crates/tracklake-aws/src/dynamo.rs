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
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use tracklake_event::Event;
use tracklake_table::{BoxFuture, Deleted, Error, Order, Page, PutOutcome, Query, Table};

type Item = HashMap<String, AttributeValue>;

const ID_PREFIX: &str = "id#";
/// Puts in flight at once for one batch.
const CONCURRENT_PUTS: usize = 16;

pub struct DynamoTable {
    client: Client,
    name: String,
}

fn unavailable(e: impl std::error::Error) -> Error {
    Error::Unavailable(DisplayErrorContext(e).to_string())
}

fn time_key(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn text<'a>(item: &'a Item, name: &str) -> Result<&'a str, Error> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(Error::Service(format!(
            "an item without the text attribute {name}"
        ))),
    }
}

fn decode(item: &Item) -> Result<Event, Error> {
    serde_json::from_str(text(item, "event")?).map_err(Error::Decode)
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
        }
    }

    /// Fails with a message naming the table unless it exists and is keyed
    /// as tracklake keys it.
    pub async fn check(&self) -> Result<(), Error> {
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
        if keys != ["user_id", "sk"] {
            return Err(Error::Service(format!(
                "DynamoDB table {} is keyed by {keys:?}; tracklake needs (user_id, sk) as in deploy/aws/template.yaml",
                self.name
            )));
        }
        Ok(())
    }

    /// Creates the table with tracklake's keys and a `NEW_IMAGE` stream, as
    /// deploy/aws/template.yaml does (for a first run against an emulator
    /// or DynamoDB Local).
    pub async fn create(&self) -> Result<(), Error> {
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| Error::Service(e.to_string()))
        };
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| Error::Service(e.to_string()))
        };
        self.client
            .create_table()
            .table_name(&self.name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("user_id", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .attribute_definitions(attribute("user_id")?)
            .attribute_definitions(attribute("sk")?)
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
        let json = serde_json::to_string(&event).map_err(Error::Encode)?;
        let user = event.user_id.as_key();
        let sk = format!("{}#{}", time_key(event.event_at), event.event_id);
        let event_item: Item = [
            ("user_id", s(&user)),
            ("sk", s(&sk)),
            ("event_id", s(&event.event_id)),
            ("event_type", s(&event.event_type)),
            ("event_at", s(time_key(event.event_at))),
            ("event", s(json)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let id_item: Item = [
            ("user_id", s(&user)),
            ("sk", s(format!("{ID_PREFIX}{}", event.event_id))),
            ("at", s(&sk)),
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
        match written {
            Ok(_) => Ok(PutOutcome::Stored(event)),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), TransactWriteItemsError::TransactionCanceledException(c)
                    if c.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed"))) =>
            {
                match self.stored(&user, &event.event_id).await? {
                    Some(stored) => Ok(PutOutcome::Duplicate(stored)),
                    None => Err(Error::Service(format!(
                        "event {} of user {user} exists in part only",
                        event.event_id
                    ))),
                }
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The stored event with this id, if any.
    async fn stored(&self, user: &str, event_id: &str) -> Result<Option<Event>, Error> {
        let Some(id) = self.get(user, &format!("{ID_PREFIX}{event_id}")).await? else {
            return Ok(None);
        };
        match self.get(user, text(&id, "at")?).await? {
            Some(item) => Ok(Some(decode(&item)?)),
            None => Ok(None),
        }
    }

    async fn get(&self, user: &str, sk: &str) -> Result<Option<Item>, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key("user_id", s(user))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    async fn scan(&self, q: Query) -> Result<Page, Error> {
        let lo = q
            .from
            .map_or("0".to_owned(), |t| format!("{}#", time_key(t)));
        // '$' sorts right after '#'; ':' right after every digit.
        let hi = q.to.map_or(":".to_owned(), |t| format!("{}$", time_key(t)));
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
                        ("user_id".to_owned(), s(&q.user_id)),
                        ("sk".to_owned(), s(sk)),
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
                .key_condition_expression("user_id = :u AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":u", s(&q.user_id))
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
                    page.next_cursor = Some(URL_SAFE_NO_PAD.encode(text(item, "sk")?));
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
        let mut keys: Vec<Item> = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression("user_id = :u")
                .expression_attribute_values(":u", s(user))
                .projection_expression("user_id, sk")
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
            .filter(|k| text(k, "sk").is_ok_and(|sk| !sk.starts_with(ID_PREFIX)))
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
            let outcomes: Vec<PutOutcome> = futures_util::stream::iter(unique)
                .map(|event| self.put_one(event))
                .buffered(CONCURRENT_PUTS)
                .try_collect()
                .await?;
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
