//! SQL over the lake: Apache DataFusion with the lake registered as
//! `events`, Athena's DDL and Presto/Trino functions, and cached reports.
//!
//! Read-only by construction: statements that would write (INSERT, COPY,
//! CREATE TABLE AS, …) are refused before planning; Athena's DDL only
//! changes table definitions kept in the data directory.

pub mod analytics;
mod athena;
mod events;
mod external;
mod output;
mod presto;
mod prune;
mod reports;
mod utc_intervals;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tracklake_delivery::Lake;
use tracklake_metrics::names;
use tracklake_table::ChangeLog;

pub use output::to_json_rows;
pub use reports::{Report, ReportConfig, ReportError, Reports, forget_saved};

/// The stack a thread running [`Engine::run`] needs. DataFusion walks (and
/// prints, and clones) expressions recursively, so a statement with
/// `tracklake_ddl::MAX_OPERATORS` operators in one chain nests that deep:
/// 16 MiB holds it even in a debug build (about 6 KB a level there), where
/// the 2 MiB threads Rust and tokio start with overflow near 300.
pub const THREAD_STACK_BYTES: usize = 16 << 20;

/// `[query]` in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Include accepted events not yet delivered to the lake (each once).
    pub fresh: bool,
    /// Memory the engine may use for one query, in MiB (beyond it, a query
    /// spills to disk or fails with a clear error).
    pub memory_limit_mib: usize,
    /// A query running longer is cancelled.
    pub timeout_secs: u64,
    /// At most this many rows are returned (the answer says when it was cut).
    pub max_rows: usize,
    /// The database `events` lives in; unqualified names resolve here.
    pub database: String,
    /// `s3://bucket/prefix/` → URL or local path (relative: inside the data
    /// directory), so Athena statements written for S3 run unchanged
    /// against another store or a local lake.
    pub locations: BTreeMap<String, String>,
    /// Named reports added to (or replacing) the built-in ones.
    pub reports: BTreeMap<String, ReportConfig>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            fresh: true,
            memory_limit_mib: 1024,
            timeout_secs: 60,
            max_rows: 10_000,
            database: "default".into(),
            locations: BTreeMap::new(),
            reports: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The statement is wrong: bad SQL, unknown table or column, a write.
    #[error("{0}")]
    Invalid(String),
    #[error("the query ran longer than {0} s and was cancelled (query.timeout_secs)")]
    Timeout(u64),
    #[error("{0}")]
    Engine(String),
    #[error("the query catalog at {path}: {message}")]
    Catalog { path: String, message: String },
}

impl Error {
    /// DataFusion errors from planning are the user's; the rest are ours.
    fn from_datafusion(e: datafusion::error::DataFusionError) -> Error {
        use datafusion::error::DataFusionError as E;
        match e.find_root() {
            E::SQL(..) | E::Plan(_) | E::SchemaError(..) | E::NotImplemented(_) => {
                Error::Invalid(e.find_root().to_string())
            }
            E::ResourcesExhausted(_) => Error::Engine(format!(
                "{} (raise query.memory_limit_mib or narrow the query)",
                e.find_root()
            )),
            _ => Error::Engine(e.to_string()),
        }
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::from_datafusion(e)
    }
}

/// The answer to one statement.
#[derive(Debug)]
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    /// More rows matched than `query.max_rows`.
    pub truncated: bool,
    pub elapsed: Duration,
}

pub struct Engine {
    ctx: SessionContext,
    config: QueryConfig,
    catalog: athena::Catalog,
    /// A plain (NDJSON) lake deletes compacted files at once; a Delta
    /// lake's versions keep theirs until vacuum.
    plain_lake: bool,
}

impl Engine {
    /// An engine over `lake`; with `table`, `events` also holds the events
    /// not yet delivered (when `query.fresh` is on).
    pub async fn open(
        config: &QueryConfig,
        data_dir: &Path,
        lake: Arc<Lake>,
        table: Option<Arc<dyn ChangeLog>>,
    ) -> Result<Engine, Error> {
        let plain_lake = !lake.is_delta();
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(config.memory_limit_mib.max(16) * 1024 * 1024, 1.0)
            .build_arc()?;
        let mut session = SessionConfig::new()
            .set_usize(
                "datafusion.sql_parser.recursion_limit",
                tracklake_ddl::RECURSION_LIMIT,
            )
            .with_information_schema(true)
            .with_default_catalog_and_schema("tracklake", &config.database);
        session.options_mut().execution.parquet.pushdown_filters = true;
        let ctx = SessionContext::new_with_config_rt(session, runtime);
        ctx.register_object_store(
            &url::Url::parse(events::LAKE_URL).expect("url"),
            lake.store(),
        );
        presto::register(&ctx);
        ctx.register_udaf(analytics::sorted_agg::udaf());
        ctx.add_optimizer_rule(Arc::new(utc_intervals::UtcIntervals));
        let table = table.filter(|_| config.fresh);
        // Relative local paths in [query.locations] are inside the data dir.
        let mut config = config.clone();
        for target in config.locations.values_mut() {
            if !target.contains("://") && std::path::Path::new(target.as_str()).is_relative() {
                *target = data_dir.join(&*target).display().to_string();
            }
        }
        let config = &config;
        let catalog = athena::Catalog::open(
            &ctx,
            data_dir.join("query"),
            config,
            lake.clone(),
            Arc::new(events::EventsTable::new(lake, table)),
        )
        .await?;
        Ok(Engine {
            ctx,
            config: config.clone(),
            catalog,
            plain_lake,
        })
    }

    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// Runs one statement: a query, or one of Athena's catalog statements.
    /// Run it on a thread with [`THREAD_STACK_BYTES`] of stack.
    pub async fn run(&self, sql: &str) -> Result<Answer, Error> {
        let started = Instant::now();
        let answer = self.run_timed(sql, started).await;
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(Error::Invalid(_)) => "invalid",
            Err(Error::Timeout(_)) => "timeout",
            Err(_) => "failed",
        };
        metrics::counter!(names::QUERIES, "outcome" => outcome).increment(1);
        metrics::histogram!(names::QUERY_SECONDS).record(started.elapsed().as_secs_f64());
        answer
    }

    async fn run_timed(&self, sql: &str, started: Instant) -> Result<Answer, Error> {
        tracklake_ddl::check_size(sql).map_err(Error::Invalid)?;
        let limit = Duration::from_secs(self.config.timeout_secs.max(1));
        let work = async {
            if let Some(batches) = self.catalog.run(&self.ctx, sql).await? {
                return Ok((batches, false));
            }
            self.select(sql).await
        };
        let (batches, truncated): (Vec<RecordBatch>, bool) = tokio::time::timeout(limit, work)
            .await
            .map_err(|_| Error::Timeout(self.config.timeout_secs))??;
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => Arc::new(datafusion::arrow::datatypes::Schema::empty()),
        };
        Ok(Answer {
            rows: batches.iter().map(|b| b.num_rows()).sum(),
            schema,
            batches,
            truncated,
            elapsed: started.elapsed(),
        })
    }

    /// A read-only query, cut at `max_rows`. In a plain lake, a file that
    /// vanishes mid-query (compaction deletes the files it merged) gives
    /// one retry, which plans over the new listing.
    async fn select(&self, sql: &str) -> Result<(Vec<RecordBatch>, bool), Error> {
        match self.select_once(sql).await {
            Err(e) if self.plain_lake && is_vanished_file(&e) => {
                tracing::debug!(error = %e, "a lake file vanished mid-query; retrying");
                self.select_once(sql).await.map_err(read_only_message)
            }
            other => other.map_err(read_only_message),
        }
    }

    /// Every batch of a read-only query, one stream per partition of its
    /// plan (no `max_rows`): for work that reduces the rows itself
    /// ([`analytics`]), a thread per stream.
    pub(crate) async fn partitions(
        &self,
        sql: &str,
    ) -> Result<Vec<datafusion::execution::SendableRecordBatchStream>, Error> {
        let frame = self.ctx.sql_with_options(sql, read_only()).await?;
        Ok(frame.execute_stream_partitioned().await?)
    }

    async fn select_once(&self, sql: &str) -> datafusion::error::Result<(Vec<RecordBatch>, bool)> {
        let frame = self.ctx.sql_with_options(sql, read_only()).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let mut stream = frame.execute_stream().await?;
        let (mut batches, mut rows) = (Vec::new(), 0);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let room = self.config.max_rows - rows;
            if batch.num_rows() > room {
                batches.push(batch.slice(0, room));
                return Ok((batches, true));
            }
            rows += batch.num_rows();
            batches.push(batch);
        }
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema));
        }
        Ok((batches, false))
    }
}

fn read_only() -> datafusion::execution::context::SQLOptions {
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

fn is_vanished_file(e: &datafusion::error::DataFusionError) -> bool {
    use datafusion::error::DataFusionError as E;
    match e.find_root() {
        E::ObjectStore(err) => matches!(**err, object_store::Error::NotFound { .. }),
        // Parquet reads wrap the store's error in their own.
        other => {
            let text = other.to_string();
            text.contains("not found") && text.contains("events/")
        }
    }
}

/// DataFusion says "DDL not supported"; say what the user can do instead.
fn read_only_message(e: datafusion::error::DataFusionError) -> Error {
    let text = e.to_string();
    if text.contains("not supported")
        && (text.contains("DML") || text.contains("DDL") || text.contains("Statement"))
    {
        return Error::Invalid(format!(
            "{} — queries are read-only: the lake is written only by delivery. Athena's CREATE DATABASE, CREATE EXTERNAL TABLE, DROP TABLE, SHOW, DESCRIBE, MSCK REPAIR TABLE and ALTER TABLE … ADD PARTITION are accepted",
            e.find_root()
        ));
    }
    Error::from_datafusion(e)
}
