//! Reading a DynamoDB table's stream into tracklake's own delivery, so
//! `tracklake serve` can run the whole pipeline against AWS without the
//! Lambda and Firehose.
//!
//! The reader copies each INSERT's event into a local mirror (an embedded
//! table in the data directory), whose change log the ordinary delivery
//! stage turns into lake files exactly once. Shard positions are saved
//! after the mirror has made the copied events durable; a crash in between
//! makes the next start read those records again, and the mirror, which is
//! idempotent by `(user_id, event_id)`, stores them once. So every insert
//! reaches the lake once.
//!
//! Shards are discovered at every pass (they split over time); a shard is
//! read only after its parent has been read to its end, iterators are
//! renewed from the saved position when they expire, and a closed shard
//! read to its end is marked done.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodbstreams::Client as StreamsClient;
use aws_sdk_dynamodbstreams::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodbstreams::operation::get_records::GetRecordsError;
use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, Shard, ShardIteratorType};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracklake_table::{Error, Table};

/// Where the reader is in one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// Everything up to and including this sequence number is mirrored.
    After(String),
    /// The shard is closed and read to its end.
    Done,
}

pub struct StreamReader {
    dynamodb: aws_sdk_dynamodb::Client,
    streams: StreamsClient,
    table: String,
    mirror: Arc<dyn Table>,
    /// `<data-dir>/stream/positions.json`
    path: PathBuf,
    positions: BTreeMap<String, Position>,
    /// Wait between passes that found nothing new.
    pub idle_wait: Duration,
}

fn unavailable(e: impl std::error::Error) -> Error {
    Error::Unavailable(DisplayErrorContext(e).to_string())
}

impl StreamReader {
    /// A reader of `table`'s stream into `mirror`, resuming from the
    /// positions saved under `data_dir`.
    pub fn open(
        config: &aws_config::SdkConfig,
        table: &str,
        mirror: Arc<dyn Table>,
        data_dir: &std::path::Path,
    ) -> Result<StreamReader, Error> {
        let path = data_dir.join("stream").join("positions.json");
        let positions = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(Error::Decode)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::Task(format!("reading {}: {e}", path.display()))),
        };
        Ok(StreamReader {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            streams: StreamsClient::new(config),
            table: table.to_owned(),
            mirror,
            path,
            positions,
            idle_wait: Duration::from_secs(1),
        })
    }

    /// Reads until `stop` turns true, retrying with backoff on failures.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let wait = match self.pass().await {
                Ok(0) => self.idle_wait,
                Ok(_) => Duration::ZERO,
                Err(error) => {
                    tracing::warn!(%error, "reading the DynamoDB stream failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One pass over every readable shard; returns the events mirrored.
    pub async fn pass(&mut self) -> Result<usize, Error> {
        let stream_arn = self
            .dynamodb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(unavailable)?
            .table
            .and_then(|t| t.latest_stream_arn)
            .ok_or_else(|| {
                Error::Service(format!(
                    "DynamoDB table {} has no stream; enable NEW_IMAGE (deploy/aws/template.yaml does)",
                    self.table
                ))
            })?;
        let shards = self.shards(&stream_arn).await?;
        let known: HashMap<&str, &Shard> = shards
            .iter()
            .filter_map(|s| Some((s.shard_id()?, s)))
            .collect();
        let mut mirrored = 0;
        for shard in &shards {
            let Some(id) = shard.shard_id() else { continue };
            if self.positions.get(id) == Some(&Position::Done) {
                continue;
            }
            // Parents first: a child waits until its parent is read through
            // (a parent no longer listed has aged out of the stream).
            let parent_pending = shard
                .parent_shard_id()
                .filter(|p| known.contains_key(p))
                .is_some_and(|p| self.positions.get(p) != Some(&Position::Done));
            if parent_pending {
                continue;
            }
            mirrored += self.read_shard(&stream_arn, id).await?;
        }
        // Forget shards that left the stream.
        let before = self.positions.len();
        self.positions
            .retain(|id, _| known.contains_key(id.as_str()));
        if self.positions.len() != before {
            self.save()?;
        }
        Ok(mirrored)
    }

    async fn shards(&self, stream_arn: &str) -> Result<Vec<Shard>, Error> {
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let description = self
                .streams
                .describe_stream()
                .stream_arn(stream_arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(unavailable)?
                .stream_description
                .ok_or_else(|| Error::Service("a stream without a description".into()))?;
            shards.extend(description.shards().iter().cloned());
            match description.last_evaluated_shard_id() {
                Some(last) => start = Some(last.to_owned()),
                None => return Ok(shards),
            }
        }
    }

    async fn iterator(&self, stream_arn: &str, shard: &str) -> Result<Option<String>, Error> {
        let request = self
            .streams
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(shard);
        let request = match self.positions.get(shard) {
            Some(Position::After(seq)) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
            _ => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        Ok(request.send().await.map_err(unavailable)?.shard_iterator)
    }

    /// Mirrors a shard's new records; marks it done when it is closed and
    /// read through.
    async fn read_shard(&mut self, stream_arn: &str, shard: &str) -> Result<usize, Error> {
        let mut iterator = self.iterator(stream_arn, shard).await?;
        let mut mirrored = 0;
        while let Some(current) = iterator.take() {
            let out = match self
                .streams
                .get_records()
                .shard_iterator(current)
                .limit(1000)
                .send()
                .await
            {
                Ok(out) => out,
                Err(SdkError::ServiceError(e))
                    if matches!(e.err(), GetRecordsError::ExpiredIteratorException(_)) =>
                {
                    // Iterators last 15 minutes: start again from the position.
                    iterator = self.iterator(stream_arn, shard).await?;
                    continue;
                }
                Err(e) => return Err(unavailable(e)),
            };
            let records = out.records();
            let mut events = Vec::new();
            for record in records {
                if record.event_name() != Some(&OperationType::Insert) {
                    continue;
                }
                let image = record.dynamodb().and_then(|d| d.new_image());
                match image {
                    // The id item written beside each event.
                    Some(image) if image.contains_key("at") && !image.contains_key("event") => {}
                    Some(image) => events.push(crate::dynamo::decode_item(&as_item(image))?),
                    None => tracing::warn!("an INSERT without a new image; skipped"),
                }
            }
            let last = records
                .iter()
                .rev()
                .find_map(|r| r.dynamodb()?.sequence_number());
            if !events.is_empty() {
                mirrored += events.len();
                // Durable in the mirror before the position moves past them.
                self.mirror.put(events).await?;
            }
            if let Some(last) = last {
                self.positions
                    .insert(shard.to_owned(), Position::After(last.to_owned()));
            }
            match out.next_shard_iterator {
                None => {
                    self.positions.insert(shard.to_owned(), Position::Done);
                    self.save()?;
                    break;
                }
                Some(next) if !records.is_empty() => {
                    self.save()?;
                    iterator = Some(next);
                }
                // Caught up with an open shard: the next pass goes on.
                Some(_) => break,
            }
        }
        Ok(mirrored)
    }

    /// Saves the positions atomically (a staged file renamed over the old).
    fn save(&self) -> Result<(), Error> {
        let io = |e: std::io::Error| Error::Task(format!("saving {}: {e}", self.path.display()));
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let staged = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.positions).map_err(Error::Encode)?;
        let mut file = std::fs::File::create(&staged).map_err(io)?;
        std::io::Write::write_all(&mut file, &bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&staged, &self.path).map_err(io)
    }
}

/// A stream image as a table item: the attribute kinds events use.
fn as_item(
    image: &HashMap<String, AttributeValue>,
) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    use aws_sdk_dynamodb::types::AttributeValue as Table;
    image
        .iter()
        .filter_map(|(name, value)| {
            let value = match value {
                AttributeValue::S(v) => Table::S(v.clone()),
                AttributeValue::N(v) => Table::N(v.clone()),
                AttributeValue::Bool(v) => Table::Bool(*v),
                _ => return None,
            };
            Some((name.clone(), value))
        })
        .collect()
}
