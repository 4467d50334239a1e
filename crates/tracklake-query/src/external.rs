//! Tables made by `CREATE EXTERNAL TABLE`: the files found (recursively, as
//! Athena does) under a location, read with the declared columns.
//!
//! JSON lines (`.json`, `.json.gz`, or any other name) are read the way the
//! OpenX JSON SerDe reads them: keys match columns case-insensitively, and a
//! value that does not fit the declared type is NULL rather than an error.
//! Parquet files (`.parquet`) are read by column name and cast the same way.
//! `key=value` directories give the partition columns. Files whose names
//! start with `_` or `.` (markers, staged uploads) are skipped, like Hive.
//!
//! A Delta Lake table (`TBLPROPERTIES ('table_type' = 'DELTA')`, Athena's
//! DDL for one) takes its columns and partitions from its log when it is
//! defined, and each scan reads the files of the log's newest version,
//! with their partition values from the log.
//!
//! Every scan reads what the location holds then, so new files need no
//! `MSCK REPAIR`. These tables are for Athena statements brought along; the
//! built-in `events` table is the fast path (pruned, streamed Parquet).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::{MemTable, TableType};
use datafusion::logical_expr::Expr;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::physical_plan::ExecutionPlan;
use futures_util::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use tracklake_delivery::{DeltaReader, Lake};

use tracklake_ddl::TableDef;

use crate::Error;

pub struct ExternalTable {
    def: TableDef,
    store: Arc<dyn ObjectStore>,
    /// The log of a Delta table.
    delta: Option<DeltaReader>,
}

impl std::fmt::Debug for ExternalTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalTable")
            .field("location", &self.def.location)
            .finish()
    }
}

impl ExternalTable {
    /// Opens the location with the lake's S3 settings (endpoint, region, …);
    /// a Delta table's columns are read from its log.
    pub async fn open(mut def: TableDef, lake: &Lake) -> Result<ExternalTable, Error> {
        let location_error = |e: tracklake_delivery::Error| {
            Error::Invalid(format!("LOCATION '{}': {e}", def.location))
        };
        if def.delta {
            let reader =
                DeltaReader::open(&def.location, lake.s3_config()).map_err(location_error)?;
            let version = reader.version().await.map_err(location_error)?;
            for field in version.schema.fields() {
                let column = (field.name().to_lowercase(), field.data_type().clone());
                match version.partition_columns.contains(field.name()) {
                    true => def.partitions.push(column),
                    false => def.columns.push(column),
                }
            }
            return Ok(ExternalTable {
                def,
                store: reader.store(),
                delta: Some(reader),
            });
        }
        let store = tracklake_delivery::lake_store(&def.location, lake.s3_config())
            .map_err(location_error)?;
        Ok(ExternalTable {
            def,
            store,
            delta: None,
        })
    }

    async fn read_all(&self) -> Result<Vec<RecordBatch>> {
        if let Some(reader) = &self.delta {
            return self.read_version(reader).await;
        }
        let mut files: Vec<_> = self.store.list(None).try_collect().await?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        let mut batches = Vec::new();
        for file in files {
            let path = file.location.as_ref();
            let name = path.rsplit('/').next().unwrap_or(path);
            // Hive skips hidden files and directories (`_delta_log/` too).
            if path.split('/').any(|part| part.starts_with(['_', '.'])) {
                continue;
            }
            let bytes = self.store.get(&file.location).await?.bytes().await?;
            let read = if name.ends_with(".parquet") {
                self.parquet(bytes)
            } else {
                self.json_lines(&bytes, name.ends_with(".gz"))
            };
            let batch =
                read.map_err(|e| DataFusionError::Execution(format!("reading {path}: {e}")))?;
            // Partition values from the `key=value` directories.
            let value = |name: &str| {
                path.split('/')
                    .filter_map(|segment| segment.split_once('='))
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                    .map(|(_, value)| value.to_owned())
            };
            batches.push(self.with_partitions(batch, value)?);
        }
        Ok(batches)
    }

    /// The files of the Delta log's newest version.
    async fn read_version(&self, reader: &DeltaReader) -> Result<Vec<RecordBatch>> {
        let version = reader
            .version()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut batches = Vec::with_capacity(version.files.len());
        for (path, partitions) in &version.files {
            let bytes = self.store.get(path).await?.bytes().await?;
            let batch = self
                .parquet(bytes)
                .map_err(|e| DataFusionError::Execution(format!("reading {path}: {e}")))?;
            let value = |name: &str| {
                partitions
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                    .and_then(|(_, value)| value.clone())
            };
            batches.push(self.with_partitions(batch, value)?);
        }
        Ok(batches)
    }

    fn cast(&self, array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
        let safe = CastOptions {
            safe: true,
            ..Default::default()
        };
        Ok(cast_with_options(array, to, &safe)?)
    }

    fn json_lines(&self, bytes: &[u8], gzip: bool) -> Result<RecordBatch> {
        let mut text = Vec::new();
        if gzip {
            flate2::read::GzDecoder::new(bytes).read_to_end(&mut text)?;
        } else {
            text.extend_from_slice(bytes);
        }
        let keys: Vec<String> = self
            .def
            .columns
            .iter()
            .map(|(name, _)| {
                self.def
                    .mapping
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| name.clone())
                    .to_lowercase()
            })
            .collect();
        let mut values: Vec<Vec<Option<String>>> = vec![Vec::new(); keys.len()];
        for line in text.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(line)
                    .map_err(|e| DataFusionError::Execution(format!("malformed JSON line: {e}")))?;
            let object: BTreeMap<String, serde_json::Value> = object
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect();
            for (i, key) in keys.iter().enumerate() {
                values[i].push(match object.get(key) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                });
            }
        }
        let columns = self
            .def
            .columns
            .iter()
            .zip(values)
            .map(|((_, t), v)| self.cast(&(Arc::new(StringArray::from(v)) as ArrayRef), t))
            .collect::<Result<Vec<_>>>()?;
        self.file_batch(columns)
    }

    fn parquet(&self, bytes: bytes::Bytes) -> Result<RecordBatch> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
        let file_batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        let Some(first) = file_batches.first() else {
            return self.file_batch(
                self.def
                    .columns
                    .iter()
                    .map(|(_, t)| new_null_array(t, 0))
                    .collect(),
            );
        };
        let batch = datafusion::arrow::compute::concat_batches(&first.schema(), &file_batches)?;
        let columns = self
            .def
            .columns
            .iter()
            .map(|(name, t)| {
                let key = self.def.mapping.get(name).unwrap_or(name);
                let found = batch
                    .schema()
                    .fields()
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(key));
                match found {
                    Some(i) => self.cast(batch.column(i), t),
                    None => Ok(new_null_array(t, batch.num_rows())),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        self.file_batch(columns)
    }

    /// The declared columns of one file, without the partitions yet.
    fn file_batch(&self, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
        let fields: Vec<Field> = self
            .def
            .columns
            .iter()
            .map(|(n, t)| Field::new(n, t.clone(), true))
            .collect();
        let rows = columns.first().map_or(0, |c| c.len());
        let options =
            datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &options,
        )?)
    }

    /// Adds the partition columns, each with `value(name)` in every row.
    fn with_partitions(
        &self,
        batch: RecordBatch,
        value: impl Fn(&str) -> Option<String>,
    ) -> Result<RecordBatch> {
        let mut columns = batch.columns().to_vec();
        for (name, t) in &self.def.partitions {
            let value = value(name);
            let text: ArrayRef = Arc::new(StringArray::from(vec![value; batch.num_rows()]));
            columns.push(self.cast(&text, t)?);
        }
        let options = datafusion::arrow::array::RecordBatchOptions::new()
            .with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            self.def.schema(),
            columns,
            &options,
        )?)
    }
}

#[async_trait]
impl TableProvider for ExternalTable {
    fn schema(&self) -> SchemaRef {
        self.def.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batches = self.read_all().await?;
        MemTable::try_new(self.def.schema(), vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}
