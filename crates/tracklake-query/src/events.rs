//! The `events` table: every event in the lake, plus (by default) the
//! accepted events the delivery has not yet published, each counted once.
//!
//! One consistent snapshot per scan. A Delta lake (Parquet): one version of
//! the log — its files, and the stream position `C` they hold — and the
//! change log after `C` (the fresh events). Compaction, erasure and vacuum
//! never touch a file a recent version reads, so a scan of a version never
//! fails for them. If the change log was trimmed past `C` while the
//! snapshot was taken (a delivery committed meanwhile), it is taken again.
//!
//! A plain lake (NDJSON): the table's checkpoint `C`, the change log after
//! `C` (up to `H`), and every live file except those whose change range
//! meets `(C, H]` (an unfinished delivery's, whose events are among the
//! fresh ones); files a finished compaction covers are skipped.

use std::io::Read;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::NaiveDate;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use object_store::ObjectMeta;
use tracklake_delivery::{CONSUMER, Format, Lake, SCHEMA};
use tracklake_event::Event;
use tracklake_table::ChangeLog;

use crate::prune::{DateRange, Users};

/// Where the lake's object store is registered in the session.
pub const LAKE_URL: &str = "tracklake://lake/";

/// The lake's columns and the `dt` partition (the event's UTC date).
pub static EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields: Vec<Field> = LAKE_COLUMNS
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(dt_field());
    Arc::new(Schema::new(fields))
});

/// The lake's columns as the engine reads them: text as string views
/// (`Utf8View`), which the Parquet reader fills without copying each value
/// and which group, hash and compare faster (values of up to 12 bytes, such
/// as most user ids, sit inside the view). The files themselves hold plain
/// strings.
static LAKE_COLUMNS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(
        SCHEMA
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ))
});

fn dt_field() -> Field {
    Field::new("dt", DataType::Utf8, false)
}

/// Fresh events are turned into Arrow in batches of this many rows.
const FRESH_BATCH_ROWS: usize = 64 * 1024;
/// Change-log records read per call while taking a snapshot.
const READ_CHUNK: usize = 10_000;

pub struct EventsTable {
    lake: Arc<Lake>,
    /// The live table, when fresh (undelivered) events are to be included.
    table: Option<Arc<dyn ChangeLog>>,
}

impl std::fmt::Debug for EventsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsTable")
            .field("lake", &self.lake.location)
            .field("fresh", &self.table.is_some())
            .finish()
    }
}

/// The files and fresh events one scan reads.
struct Snapshot {
    files: Vec<(ObjectMeta, NaiveDate)>,
    fresh: Vec<Event>,
}

impl EventsTable {
    pub fn new(lake: Arc<Lake>, table: Option<Arc<dyn ChangeLog>>) -> Self {
        EventsTable { lake, table }
    }

    async fn snapshot(&self, range: DateRange, users: &Users) -> Result<Snapshot> {
        if self.lake.is_delta() {
            return self.delta_snapshot(range, users).await;
        }
        let Some(table) = &self.table else {
            return Ok(Snapshot {
                files: self.files(None, range).await?,
                fresh: Vec::new(),
            });
        };
        for _ in 0..10 {
            let committed = checkpoint(table.as_ref()).await?;
            let (fresh, after) = self.fresh_after(table.as_ref(), committed, range).await?;
            if checkpoint(table.as_ref()).await? == committed {
                let unpublished = (after > committed).then_some((committed + 1, after));
                return Ok(Snapshot {
                    files: self.files(unpublished, range).await?,
                    fresh,
                });
            }
        }
        Err(DataFusionError::Execution(
            "the lake kept changing while the query started; try again".into(),
        ))
    }

    /// A version of the Delta log and the fresh events after it. Files
    /// outside `range`, or whose `user_id` statistics rule out the `users`
    /// asked for, are left out.
    async fn delta_snapshot(&self, range: DateRange, users: &Users) -> Result<Snapshot> {
        for _ in 0..10 {
            let version = self.lake.snapshot().await.map_err(external)?;
            let delivered = version.delivered.unwrap_or(0);
            let files = version
                .files
                .iter()
                .filter(|f| range.contains(f.day))
                .filter(|f| users.may_be_in(f.stats.as_ref().and_then(|s| s.text_range("user_id"))))
                .map(|f| (f.meta(), f.day))
                .collect();
            let Some(table) = &self.table else {
                return Ok(Snapshot {
                    files,
                    fresh: Vec::new(),
                });
            };
            let (fresh, _) = self.fresh_after(table.as_ref(), delivered, range).await?;
            // Trimming follows the checkpoint: at or below `delivered`,
            // nothing this read needed was trimmed.
            if checkpoint(table.as_ref()).await? <= delivered {
                return Ok(Snapshot { files, fresh });
            }
        }
        Err(DataFusionError::Execution(
            "the lake kept changing while the query started; try again".into(),
        ))
    }

    /// The events of the change log after `after`, in `range`, and the
    /// newest change read.
    async fn fresh_after(
        &self,
        table: &dyn ChangeLog,
        mut after: u64,
        range: DateRange,
    ) -> Result<(Vec<Event>, u64)> {
        let mut fresh = Vec::new();
        loop {
            let changes = table
                .read_changes(after, READ_CHUNK)
                .await
                .map_err(external)?;
            let Some(last) = changes.last() else { break };
            after = last.seq;
            for change in &changes {
                let event = self.lake.event_of(change).map_err(external)?;
                if range.contains(event.event_at.date_naive()) {
                    fresh.push(event);
                }
            }
        }
        Ok((fresh, after))
    }

    /// Live lake files in `range`, except those holding changes of the
    /// `unpublished` range (read from the change log instead).
    async fn files(
        &self,
        unpublished: Option<(u64, u64)>,
        range: DateRange,
    ) -> Result<Vec<(ObjectMeta, NaiveDate)>> {
        let files = self.lake.live_files().await.map_err(external)?;
        let overlaps =
            |first: u64, last: u64| unpublished.is_some_and(|(lo, hi)| first <= hi && last >= lo);
        Ok(files
            .into_iter()
            .filter_map(|meta| {
                let name = tracklake_delivery::FileName::parse(&meta.location)?;
                let day = tracklake_delivery::partition_day(&name.partition)?;
                (!overlaps(name.first, name.last) && range.contains(day)).then_some((meta, day))
            })
            .collect())
    }

    async fn parquet_scan(
        &self,
        state: &dyn Session,
        files: Vec<(ObjectMeta, NaiveDate)>,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let groups = state.config().target_partitions().max(1);
        let mut file_groups = vec![Vec::new(); groups.min(files.len()).max(1)];
        let count = file_groups.len();
        for (i, (meta, day)) in files.into_iter().enumerate() {
            let dt = ScalarValue::Utf8(Some(day.to_string()));
            file_groups[i % count]
                .push(PartitionedFile::from(meta).with_partition_values(vec![dt]));
        }
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let schema = TableSchema::builder(LAKE_COLUMNS.clone())
            .with_table_partition_cols(vec![Arc::new(dt_field())])
            .build();
        let config = FileScanConfigBuilder::new(
            ObjectStoreUrl::parse(LAKE_URL)?,
            format.file_source(schema),
        )
        .with_file_groups(file_groups.into_iter().map(FileGroup::new).collect())
        .with_projection_indices(projection.cloned())?
        .with_limit(limit)
        .build();
        format.create_physical_plan(state, config).await
    }

    /// NDJSON files are decoded as events, exactly as they were written.
    async fn ndjson_batches(
        &self,
        files: Vec<(ObjectMeta, NaiveDate)>,
    ) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        for (meta, day) in files {
            let bytes = self.lake.read(&meta.location).await.map_err(external)?;
            let gzip = meta.location.as_ref().ends_with(".gz");
            let events = decode_ndjson(&bytes, gzip).map_err(|e| {
                DataFusionError::Execution(format!("reading {}: {e}", meta.location))
            })?;
            batches.extend(event_batches(&events, Some(day))?);
        }
        Ok(batches)
    }
}

async fn checkpoint(table: &dyn ChangeLog) -> Result<u64> {
    Ok(table
        .checkpoint(CONSUMER)
        .await
        .map_err(external)?
        .unwrap_or(0))
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn decode_ndjson(bytes: &[u8], gzip: bool) -> std::io::Result<Vec<Event>> {
    let mut text = Vec::new();
    if gzip {
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut text)?;
    } else {
        text.extend_from_slice(bytes);
    }
    text.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| serde_json::from_slice(line).map_err(std::io::Error::other))
        .collect()
}

/// Events as batches of [`EVENTS_SCHEMA`]; `dt` is the event's UTC date
/// unless the file's partition says otherwise.
fn event_batches(events: &[Event], day: Option<NaiveDate>) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    for chunk in events.chunks(FRESH_BATCH_ROWS) {
        let refs: Vec<&Event> = chunk.iter().collect();
        let batch = tracklake_delivery::record_batch(&refs).map_err(external)?;
        let dt: StringArray = chunk
            .iter()
            .map(|e| Some(day.unwrap_or(e.event_at.date_naive()).to_string()))
            .collect();
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .zip(LAKE_COLUMNS.fields())
            .map(|(column, field)| cast(column, field.data_type()))
            .collect::<std::result::Result<_, _>>()?;
        columns.push(Arc::new(dt));
        batches.push(RecordBatch::try_new(EVENTS_SCHEMA.clone(), columns)?);
    }
    Ok(batches)
}

#[async_trait]
impl TableProvider for EventsTable {
    fn schema(&self) -> SchemaRef {
        EVENTS_SCHEMA.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Used for pruning only; the filters are still applied above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let range = DateRange::from_filters(filters);
        let users = Users::from_filters(filters);
        let snapshot = self.snapshot(range, &users).await?;
        let mut memory = event_batches(&snapshot.fresh, None)?;
        let mut plans: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !snapshot.files.is_empty() {
            match self.lake.format() {
                Format::Parquet => plans.push(
                    self.parquet_scan(state, snapshot.files, projection, limit)
                        .await?,
                ),
                Format::Ndjson => memory.extend(self.ndjson_batches(snapshot.files).await?),
            }
        }
        if !memory.is_empty() {
            let table = MemTable::try_new(EVENTS_SCHEMA.clone(), vec![memory])?;
            plans.push(table.scan(state, projection, &[], limit).await?);
        }
        if plans.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(EVENTS_SCHEMA.project(p)?),
                None => EVENTS_SCHEMA.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        UnionExec::try_new(plans)
    }
}
