//! The query engine over a real lake directory: golden SQL files (statement
//! and expected rows worked out by hand over `fixture.rs`), fresh events from
//! a real table, NDJSON lakes, persistence and limits.

mod analytics;
mod engine;
mod fixture;
mod golden;
mod web;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use tracklake_delivery::{Format, Lake, LakeConfig, NewFile, Operation, Update, encode};
use tracklake_event::Event;
use tracklake_query::{Answer, Engine, QueryConfig};

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub lake: Arc<Lake>,
    pub config: QueryConfig,
}

impl Setup {
    /// A lake holding `events` in `format`, two files per partition, and the
    /// same events as NDJSON under `athena/dt=…/` for `s3://exampro-events/`.
    pub async fn new(events: &[Event], format: Format) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let lake_config = LakeConfig {
            format,
            ..LakeConfig::default()
        };
        let lake = Arc::new(Lake::open(&lake_config, dir.path()).unwrap());
        let mut partitions: BTreeMap<String, Vec<(u64, &Event)>> = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            partitions
                .entry(lake.partition(e.event_at))
                .or_default()
                .push((i as u64 + 1, e));
        }
        if lake.is_delta() {
            lake.prepare(1, 0).await.unwrap();
        }
        let mut added = Vec::new();
        for (partition, rows) in &partitions {
            for half in rows.chunks(rows.len().div_ceil(2)) {
                let (first, last) = (half[0].0, half[half.len() - 1].0);
                let refs: Vec<&Event> = half.iter().map(|(_, e)| *e).collect();
                let body = bytes::Bytes::from(encode(&refs, format, false).unwrap());
                let path = lake.file_path(partition, first, last);
                lake.publish(&path, body.clone()).await.unwrap();
                if lake.is_delta() {
                    let day = tracklake_delivery::partition_day(partition).unwrap();
                    added.push(NewFile::parquet(path, day, &body).unwrap());
                }
            }
            let json_dir = dir.path().join("athena").join(partition);
            std::fs::create_dir_all(&json_dir).unwrap();
            let refs: Vec<&Event> = rows.iter().map(|(_, e)| *e).collect();
            std::fs::write(
                json_dir.join("events.json"),
                encode(&refs, Format::Ndjson, false).unwrap(),
            )
            .unwrap();
        }
        if lake.is_delta() {
            lake.commit(Update {
                operation: Operation::Deliver,
                add: added,
                remove: Vec::new(),
                delivered_through: Some(events.len() as u64),
            })
            .await
            .unwrap();
        }
        let mut config = QueryConfig::default();
        config.locations.insert(
            "s3://exampro-events/".into(),
            dir.path().join("athena").display().to_string(),
        );
        config.locations.insert(
            "s3://tracklake-lake/".into(),
            dir.path().join("lake").display().to_string(),
        );
        Setup { dir, lake, config }
    }

    pub async fn engine(&self) -> Engine {
        Engine::open(&self.config, self.dir.path(), self.lake.clone(), None)
            .await
            .unwrap()
    }
}

/// Rows as `a|b|c` lines, NULL for nulls.
pub fn rows(answer: &Answer) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in &answer.batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}
