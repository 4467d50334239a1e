//! The Parquet lake as a Delta Lake table (the `deltalake` crates): the log
//! under `events/_delta_log/` says which files make up each version. Every
//! change — a delivery, a compaction, an erasure, a migration — is one
//! commit; a delivery's commit carries the change-stream position as an
//! application transaction, so the files and the position are one atomic
//! step. Readers take a snapshot (a version's file list) and never see a
//! half-made change.
//!
//! One writer: commits in this process are serialised by a lock, and
//! Delta's put-if-absent commit files (a hard link locally, a conditional
//! PUT on S3) make a second writer's commit fail rather than overwrite.
//! A second tracklake on the same data directory cannot start (the table
//! is locked); two data directories must not share one lake URL.

use std::collections::HashMap;

use chrono::{NaiveDate, Utc};
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{
    Action, Add, CommitInfo, DataType, MetadataExt, Remove, StructField, StructType, Transaction,
};
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake_core::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableError};
use futures_util::TryStreamExt;
use object_store::path::Path;

use super::layout::{PARTITION_COLUMN, TABLE_DIR};
use super::place::Place;
use super::stats::{FileStats, STATS_COLUMNS};
use super::{LakeFile, Operation, Snapshot, TableVersion, Update};
use crate::Error;
use crate::encode::SCHEMA;

/// The application id of tracklake's delivery in the log's `txn` actions.
pub const APP_ID: &str = "tracklake-delivery";

/// The table property naming the change stream (one data directory's
/// table) whose deliveries the table holds.
pub const STREAM_PROPERTY: &str = "tracklake.stream";

/// One Delta table and the lock its commits take.
pub(crate) struct DeltaLog {
    log_store: LogStoreRef,
    /// Where the table is in the store its files are read from: `events`
    /// in the lake's, nothing in the table's own.
    prefix: String,
    /// The table as last loaded; commits hold the lock while they run.
    table: tokio::sync::Mutex<Option<DeltaTable>>,
}

impl DeltaLog {
    /// The table at `table`; the paths of its files are given under `prefix`.
    pub fn new(table: &Place, prefix: &str) -> Self {
        let log_store = default_logstore(
            table.here.clone(),
            table.root.clone(),
            &table.url,
            &StorageConfig::default(),
        );
        DeltaLog {
            log_store,
            prefix: prefix.to_owned(),
            table: tokio::sync::Mutex::new(None),
        }
    }

    /// The newest version; `None` when there is no table yet.
    pub async fn snapshot(&self) -> Result<Option<Snapshot>, Error> {
        let mut guard = self.table.lock().await;
        let Some(table) = self.refresh(&mut guard).await? else {
            return Ok(None);
        };
        snapshot_of(table, &self.log_store, &self.prefix)
            .await
            .map(Some)
    }

    /// The newest version's schema, partition columns and files, for a
    /// table of any shape; `None` when there is no table.
    pub async fn table_version(&self) -> Result<Option<TableVersion>, Error> {
        let mut guard = self.table.lock().await;
        let Some(table) = self.refresh(&mut guard).await? else {
            return Ok(None);
        };
        let state = table.snapshot().map_err(delta("reading the Delta log"))?;
        let files = state
            .log_data()
            .iter()
            .map(|view| {
                (
                    self.path_of(&view.object_store_path()),
                    view.partition_values_map(),
                )
            })
            .collect();
        Ok(Some(TableVersion {
            version: state.version(),
            schema: state.snapshot().arrow_schema(),
            partition_columns: state.metadata().partition_columns().to_vec(),
            files,
        }))
    }

    fn path_of(&self, relative: &Path) -> Path {
        Path::from(format!("{}/{relative}", self.prefix))
    }

    /// Loads the newest version into `slot`; `None` when there is no table.
    async fn refresh<'a>(
        &self,
        slot: &'a mut Option<DeltaTable>,
    ) -> Result<Option<&'a DeltaTable>, Error> {
        match slot {
            Some(table) => table
                .update_incremental(None)
                .await
                .map_err(delta("reading the Delta log"))?,
            None => {
                // Asked first: loading a missing log logs an error.
                let exists = self.log_store.is_delta_table_location().await;
                if !exists.map_err(delta("looking for the Delta log"))? {
                    return Ok(None);
                }
                let mut table = DeltaTable::new(self.log_store.clone());
                match table.load().await {
                    Ok(()) => *slot = Some(table),
                    Err(DeltaTableError::NotATable(_)) => return Ok(None),
                    Err(e) => return Err(delta("opening the Delta log")(e)),
                }
            }
        }
        Ok(slot.as_ref())
    }

    /// Creates the table for the change stream `stream`, holding `files`
    /// from the start (a migration) and the stream position `delivered`,
    /// in one commit.
    pub async fn create(
        &self,
        files: Vec<super::NewFile>,
        stream: u64,
        delivered: u64,
        retention_secs: u64,
    ) -> Result<(), Error> {
        let mut guard = self.table.lock().await;
        let mut builder = DeltaTable::new(self.log_store.clone())
            .create()
            .with_save_mode(SaveMode::ErrorIfExists)
            .with_table_name("events")
            .with_comment("tracklake events, partitioned by their UTC date")
            .with_partition_columns([PARTITION_COLUMN])
            .with_configuration_property(
                deltalake_core::TableProperty::DataSkippingStatsColumns,
                Some(STATS_COLUMNS.join(",")),
            )
            .with_configuration_property(
                deltalake_core::TableProperty::DeletedFileRetentionDuration,
                Some(format!("interval {retention_secs} seconds")),
            )
            // tracklake's own property, beside Delta's.
            .with_raise_if_key_not_exists(false)
            .with_configuration([(STREAM_PROPERTY, Some(stream.to_string()))])
            .with_actions(files.into_iter().map(add_action))
            .with_commit_properties(
                CommitProperties::default().with_application_transaction(transaction(delivered)),
            );
        for field in SCHEMA.fields() {
            let kind = delta_type(field.data_type());
            builder = builder.with_column(field.name(), kind, field.is_nullable(), None);
        }
        builder = builder.with_column(PARTITION_COLUMN, DataType::STRING, false, None);
        let table = builder.await.map_err(delta("creating the Delta table"))?;
        *guard = Some(table);
        Ok(())
    }

    /// Commits `update` as one version; returns it.
    pub async fn commit(&self, update: Update) -> Result<u64, Error> {
        let mut guard = self.table.lock().await;
        let table = self
            .refresh(&mut guard)
            .await?
            .ok_or_else(|| Error::Lake("the lake has no Delta log yet".into()))?;
        let state = table.snapshot().map_err(delta("reading the Delta log"))?;
        let now = Utc::now().timestamp_millis();
        let data_change = update.operation != Operation::Compact;
        let mut actions: Vec<Action> = Vec::new();
        // A table made by an earlier tracklake gains the columns added
        // since, in the commit of the first files that hold them.
        if let Some(metadata) = added_columns(state)? {
            tracing::info!(
                version = state.version() + 1,
                "adding the lake's new columns to the Delta table's schema"
            );
            actions.push(metadata);
        }
        for file in update.remove {
            actions.push(Action::Remove(Remove {
                path: table_path(&file.path)?,
                data_change,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(partition_values(file.day)),
                size: Some(file.size as i64),
                ..Default::default()
            }));
        }
        for file in update.add {
            let mut add = add_action(file);
            if let Action::Add(a) = &mut add {
                a.data_change = data_change;
            }
            actions.push(add);
        }
        let operation = match update.operation {
            Operation::Deliver => DeltaOperation::StreamingUpdate {
                output_mode: OutputMode::Append,
                query_id: APP_ID.into(),
                epoch_id: update.delivered_through.unwrap_or(0) as i64,
            },
            Operation::Compact => DeltaOperation::Optimize {
                predicate: None,
                target_size: 0,
            },
            // The user's id stays out of the log: it would outlive the erasure.
            Operation::Erase => DeltaOperation::Delete { predicate: None },
        };
        let mut properties = CommitProperties::default();
        if let Some(through) = update.delivered_through {
            properties = properties.with_application_transaction(transaction(through));
        }
        let committed = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(state), self.log_store.clone(), operation)
            .await
            .map_err(delta("committing to the Delta log"))?;
        Ok(committed.version())
    }

    /// Deletes files removed longer than `retention_secs` ago, and files
    /// no version holds (left by a write cut short) as old; returns how many.
    pub async fn vacuum(&self, retention_secs: u64) -> Result<usize, Error> {
        let mut guard = self.table.lock().await;
        let Some(table) = self.refresh(&mut guard).await? else {
            return Ok(0);
        };
        let (table, metrics) = table
            .clone()
            .vacuum()
            .with_retention_period(chrono::Duration::seconds(retention_secs as i64))
            .with_enforce_retention_duration(false)
            .with_mode(deltalake_core::operations::vacuum::VacuumMode::Full)
            .await
            .map_err(delta("vacuuming the lake"))?;
        *guard = Some(table);
        Ok(metrics.files_deleted.len())
    }

    /// The newest `limit` commits, newest first, with their versions.
    pub async fn history(&self, limit: usize) -> Result<Vec<(u64, CommitInfo)>, Error> {
        let mut guard = self.table.lock().await;
        let Some(table) = self.refresh(&mut guard).await? else {
            return Ok(Vec::new());
        };
        let newest = table.version().unwrap_or(0);
        let commits: Vec<CommitInfo> = table
            .history(Some(limit))
            .try_collect()
            .await
            .map_err(delta("reading the Delta history"))?;
        // Newest first, one commit a version.
        Ok(commits
            .into_iter()
            .enumerate()
            .map(|(i, c)| (newest.saturating_sub(i as u64), c))
            .collect())
    }
}

/// The files and stream position of the table's current version.
async fn snapshot_of(
    table: &DeltaTable,
    log_store: &LogStoreRef,
    prefix: &str,
) -> Result<Snapshot, Error> {
    let state = table.snapshot().map_err(delta("reading the Delta log"))?;
    let mut files = Vec::with_capacity(state.log_data().num_files());
    for view in state.log_data().iter() {
        let relative = view.object_store_path();
        let day = view
            .partition_values_map()
            .get(PARTITION_COLUMN)
            .cloned()
            .flatten()
            .and_then(|d| d.parse::<NaiveDate>().ok())
            .ok_or_else(|| Error::Lake(format!("{relative} has no dt partition value")))?;
        let stats = view.stats().as_deref().and_then(FileStats::parse);
        files.push(LakeFile {
            path: Path::from(format!("{prefix}/{relative}")),
            day,
            size: view.size().max(0) as u64,
            stats,
        });
    }
    let delivered = state
        .transaction_version(log_store.as_ref(), APP_ID)
        .await
        .map_err(delta("reading the stream position"))?
        .map(|v| v.max(0) as u64);
    let stream = state
        .table_config()
        .unknown_properties
        .get(STREAM_PROPERTY)
        .and_then(|s| s.parse().ok());
    Ok(Snapshot {
        version: Some(state.version()),
        files,
        delivered,
        stream,
    })
}

/// The Delta type of a lake column.
fn delta_type(arrow: &arrow_schema::DataType) -> DataType {
    match arrow {
        arrow_schema::DataType::Boolean => DataType::BOOLEAN,
        arrow_schema::DataType::Timestamp(..) => DataType::TIMESTAMP,
        _ => DataType::STRING,
    }
}

/// The table's metadata with the lake's columns it lacks added after its
/// own (nullable: older files read them as null); nothing when it has
/// them all.
fn added_columns(
    state: &deltalake_core::table::state::DeltaTableState,
) -> Result<Option<Action>, Error> {
    let schema = state.schema();
    let missing: Vec<StructField> = SCHEMA
        .fields()
        .iter()
        .filter(|f| schema.field(f.name()).is_none())
        .map(|f| StructField::nullable(f.name(), delta_type(f.data_type())))
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let merged = StructType::try_new(schema.fields().cloned().chain(missing))
        .map_err(|e| delta("adding columns to the schema")(e.into()))?;
    let metadata = state
        .metadata()
        .clone()
        .with_schema(&merged)
        .map_err(|e| delta("adding columns to the schema")(e.into()))?;
    Ok(Some(Action::Metadata(metadata)))
}

fn transaction(delivered: u64) -> Transaction {
    Transaction::new(APP_ID, delivered as i64)
}

fn partition_values(day: NaiveDate) -> HashMap<String, Option<String>> {
    HashMap::from([(PARTITION_COLUMN.to_owned(), Some(day.to_string()))])
}

fn add_action(file: super::NewFile) -> Action {
    Action::Add(Add {
        path: file
            .path
            .as_ref()
            .strip_prefix(&format!("{TABLE_DIR}/"))
            .unwrap_or(file.path.as_ref())
            .to_owned(),
        partition_values: partition_values(file.day),
        size: file.size as i64,
        modification_time: Utc::now().timestamp_millis(),
        data_change: true,
        stats: file.stats,
        ..Default::default()
    })
}

/// A path under `events/` as the log writes it (relative to the table).
fn table_path(path: &Path) -> Result<String, Error> {
    path.as_ref()
        .strip_prefix(&format!("{TABLE_DIR}/"))
        .map(str::to_owned)
        .ok_or_else(|| Error::Lake(format!("{path} is not in the table")))
}

fn delta(action: &'static str) -> impl Fn(DeltaTableError) -> Error {
    move |source| Error::Delta {
        action,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::{Lake, LakeConfig, NewFile};

    /// A table made by an earlier tracklake (the first 16 columns) gains the
    /// newer ones, nullable and after its own, with its next commit; a file
    /// written then reads them as null.
    #[tokio::test]
    async fn a_table_made_before_newer_columns_gains_them_with_its_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig::default(), dir.path()).unwrap();
        let log = lake.delta.as_ref().unwrap();
        let mut old = DeltaTable::new(log.log_store.clone())
            .create()
            .with_partition_columns([PARTITION_COLUMN]);
        for field in SCHEMA.fields().iter().take(16) {
            old = old.with_column(
                field.name(),
                delta_type(field.data_type()),
                field.is_nullable(),
                None,
            );
        }
        old.with_column(PARTITION_COLUMN, DataType::STRING, false, None)
            .await
            .unwrap();
        let columns = |v: &TableVersion| -> Vec<String> {
            v.schema.fields().iter().map(|f| f.name().clone()).collect()
        };
        let before = log.table_version().await.unwrap().unwrap();
        assert_eq!(columns(&before).len(), 17);

        let e = crate::tests::event("old", 27);
        let batch = crate::record_batch(&[&e]).unwrap();
        let batch = batch.project(&(0..16).collect::<Vec<_>>()).unwrap();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        let body = bytes::Bytes::from(writer.into_inner().unwrap());
        let day = e.event_at.date_naive();
        let path = lake.file_path(&lake.partition(e.event_at), 1, 1);
        lake.publish(&path, body.clone()).await.unwrap();
        lake.commit(super::super::Update {
            operation: Operation::Deliver,
            add: vec![NewFile::parquet(path.clone(), day, &body).unwrap()],
            remove: Vec::new(),
            delivered_through: Some(1),
        })
        .await
        .unwrap();

        let after = log.table_version().await.unwrap().unwrap();
        let mut expected = columns(&before);
        expected.extend(SCHEMA.fields().iter().skip(16).map(|f| f.name().clone()));
        assert_eq!(columns(&after), expected);
        assert!(expected.iter().any(|c| c == "session_id"));
        assert_eq!(after.partition_columns, [PARTITION_COLUMN]);
        for field in after.schema.fields().iter().skip(17) {
            assert!(field.is_nullable(), "{field:?}");
        }
        // A later commit changes the schema no more.
        lake.commit(super::super::Update {
            operation: Operation::Deliver,
            add: Vec::new(),
            remove: Vec::new(),
            delivered_through: Some(2),
        })
        .await
        .unwrap();
        let later = log.table_version().await.unwrap().unwrap();
        assert_eq!(columns(&later), expected);

        let read = lake.read(&path).await.unwrap();
        let batches: Vec<_> = crate::rewrite::parquet_batches(read, None)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(batches[0].schema(), SCHEMA.clone());
        assert_eq!(batches[0].column_by_name("url").unwrap().null_count(), 1);
    }
}
