//! Any Delta Lake table, read-only: what tracklake's SQL reads for
//! `CREATE EXTERNAL TABLE … TBLPROPERTIES ('table_type' = 'DELTA')`, as
//! Athena does. Its columns, partitions and files come from its log, so a
//! reader sees one version whole, never a compaction's sources beside its
//! result.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use object_store::ObjectStore;
use object_store::path::Path;

use super::config::S3Config;
use super::delta::DeltaLog;
use super::place::{Missing, Place};
use crate::Error;

/// One version of a Delta table.
#[derive(Debug, Clone)]
pub struct TableVersion {
    pub version: u64,
    /// Every column, the partition columns among them.
    pub schema: SchemaRef,
    pub partition_columns: Vec<String>,
    /// Each data file (relative to the table) and its partition values.
    pub files: Vec<(Path, HashMap<String, Option<String>>)>,
}

/// A Delta table at a location of its own.
pub struct DeltaReader {
    store: Arc<dyn ObjectStore>,
    log: DeltaLog,
    location: String,
}

impl DeltaReader {
    /// The table at `url` (a directory, `file://` or `s3://` URL), reached
    /// with `s3`'s settings. Nothing is read until [`DeltaReader::version`].
    pub fn open(url: &str, s3: &S3Config) -> Result<DeltaReader, Error> {
        let place = Place::open(url, s3, std::path::Path::new("."), Missing::Refuse)?;
        Ok(DeltaReader {
            log: DeltaLog::new(&place, ""),
            store: place.here,
            location: place.shown,
        })
    }

    /// The store the table's files are read from, rooted at the table.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The newest version; an error when the location holds no Delta log.
    pub async fn version(&self) -> Result<TableVersion, Error> {
        self.log.table_version().await?.ok_or_else(|| {
            Error::Lake(format!(
                "{} has no Delta log (_delta_log/): it is not a Delta table",
                self.location
            ))
        })
    }
}
