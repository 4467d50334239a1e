//! `tracklake serve`: the table, delivery to the lake, SQL and the HTTP API
//! in one process.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tracklake_aws::StreamReader;
use tracklake_delivery::{Deletions, Delivery, Lake, claim_lake};
use tracklake_event::{Privacy, Rules, Validator};
use tracklake_metrics::{Alarms, Exporter, History, Monitor, names};
use tracklake_query::analytics::{Analytics, AnalyticsError, Report};
use tracklake_query::{Engine, Error as QueryError, ReportError, Reports, to_json_rows};
use tracklake_server::disk::Disk;
use tracklake_server::{App, BoxFuture, Deleter, Pipeline, Sql, SqlError};
use tracklake_table::{ChangeLog, EmbeddedTable, Table};

use crate::config::Config;

/// Says at start what the bounded parts of memory may hold (docs/BENCHMARKS.md
/// has what they came to under load).
fn log_memory_budget(config: &Config, embedded: bool) {
    let (table, delivery) = (&config.table, &config.delivery);
    if embedded {
        tracing::info!(
            table_block_cache_mib = table.cache_mib,
            // One per keyspace (rows, ids, meta: the change log is in files);
            // sealed ones wait for a flush while fjall's journals stay
            // under `journal_mib`, and all are flushed 5 s after the last
            // write.
            table_write_buffer_mib_each = table.memtable_mib,
            table_journal_mib = table.journal_mib.max(64),
            // Two buffers (one filling, one publishing), held as LZ4
            // Parquet.
            delivery_buffers_mib_of_events = 2 * delivery.buffer_size_mib,
            user_agent_cache_entries = config.ingest.user_agent_cache,
            query_mib_each = config.query.memory_limit_mib,
            "memory: bounded parts (a query takes its share only while it runs)"
        );
    }
}

/// How long in-flight requests get after a shutdown signal.
const GRACE: Duration = Duration::from_secs(30);

/// How `serve` ended, which decides the exit status a supervisor acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to stop (SIGTERM, Ctrl-C): status 0.
    Asked,
    /// A disk error stopped the table, which only a new start recovers
    /// (from its journal): status [`EXIT_TABLE_FAILED`], for a supervisor
    /// to restart it.
    TableFailed,
}

/// sysexits' `EX_TEMPFAIL`: the failure is temporary, start again.
pub const EXIT_TABLE_FAILED: u8 = 75;

/// Returns once the table has stopped taking writes after a disk error.
async fn table_failed(table: &dyn Table) {
    while table.is_healthy() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A config `serve` refuses to run with: listening beyond loopback with no
/// API keys, unless told something in front checks access.
pub fn check_listen(config: &Config) -> anyhow::Result<()> {
    let listen = config.server.listen;
    if !listen.ip().is_loopback()
        && config.server.keys.is_empty()
        && !config.server.allow_unauthenticated
    {
        anyhow::bail!(
            "refusing to listen on {listen} without API keys: anyone who reaches it could read every event. \
             Make keys with `tracklake keys create --scope write` (for apps) and `--scope read` (for people and dashboards) \
             and add them under [server] keys, or pass --allow-unauthenticated if something in front of tracklake checks access"
        );
    }
    Ok(())
}

pub async fn run(config: Config) -> anyhow::Result<Stopped> {
    check_listen(&config)?;
    raise_open_files(config.server.max_connections);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let (table, embedded, reader) = open_table(&config).await?;
    let privacy = Privacy::new(&config.privacy, &config.data_dir).map_err(anyhow::Error::msg)?;
    let lake = Lake::open(&config.lake, &config.data_dir)
        .context("opening the lake")?
        .with_privacy(privacy);
    let lake = match &config.aws.firehose_stream {
        Some(stream) => lake.with_sink(crate::on_aws::firehose_sink(&config.aws, stream).await),
        None => lake,
    };
    let lake = Arc::new(lake);
    let lake_location = lake.location.clone();
    let mut watched = vec![("data", config.data_dir.clone())];
    watched.extend(lake.local_dir.clone().map(|dir| ("lake", dir)));
    let disk = Arc::new(Disk::new(watched, config.server.min_free_mib));
    disk.check();
    // A lake that holds another data directory's deliveries is refused at
    // once, not by a delivery that cannot start. An unreachable lake is
    // left to delivery, which waits for it while events are taken.
    if let Some(embedded) = &embedded
        && lake.is_delta()
        && lake.sink().is_none()
    {
        let claim = claim_lake(&**embedded, &lake);
        match tokio::time::timeout(Duration::from_secs(10), claim).await {
            Ok(Err(error)) if error.is_fatal() => return Err(error).context("opening the lake"),
            Ok(Err(error)) => {
                tracing::warn!(%error, "the lake is out of reach; delivery waits for it")
            }
            Err(_) => tracing::warn!("the lake is slow to answer; delivery waits for it"),
            Ok(Ok(_)) => {}
        }
    }
    // On DynamoDB, the table's stream, the Lambda and Firehose deliver.
    let delivery = match &embedded {
        Some(embedded) => Some(Arc::new(
            Delivery::start(
                embedded.clone(),
                lake.clone(),
                config.stream.clone(),
                config.delivery.clone(),
                config.compaction.clone(),
            )
            .context("starting delivery to the lake")?,
        )),
        None => None,
    };
    let rules = Rules {
        drop_properties: config.privacy.drop_properties.clone(),
        ..config.ingest.clone()
    };
    let validator = Validator::new(rules).context("building the event validator")?;
    let tls = tracklake_server::tls_acceptor(&config.server).map_err(anyhow::Error::msg)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("listening on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let pipeline = delivery
        .clone()
        .map(|d| Arc::new(DeliveryView(d)) as Arc<dyn Pipeline>);
    let engine = Arc::new(
        Engine::open(
            &config.query,
            &config.data_dir,
            lake.clone(),
            embedded.clone().map(|t| t as Arc<dyn ChangeLog>),
        )
        .await
        .context("starting the query engine")?,
    );
    let reports = Arc::new(Reports::new(engine.clone(), &config.data_dir));
    // Deletion rewrites lake files tracklake wrote, in the embedded table;
    // with DynamoDB or Firehose in the path it is not offered yet
    // (docs/AWS.md).
    let aws = config.aws.dynamodb_table.is_some() || config.aws.firehose_stream.is_some();
    let deletions = if aws {
        None
    } else {
        Some(Arc::new(
            Deletions::start(
                &config.data_dir,
                table.clone(),
                lake.clone(),
                Box::new({
                    let reports = reports.clone();
                    move || {
                        let reports = reports.clone();
                        tokio::spawn(async move { reports.forget_all().await });
                    }
                }),
            )
            .context("starting deletion jobs")?,
        ))
    };
    let (stop_reader, reader_stopping) = tokio::sync::watch::channel(false);
    let reader = reader.map(|reader| tokio::spawn(reader.run(reader_stopping)));
    let monitor = Arc::new(Monitor {
        exporter: Exporter::install().map_err(anyhow::Error::msg)?,
        history: History::open(config.data_dir.join("metrics"), config.metrics.clone())
            .context("opening the metrics history")?,
        alarms: Alarms::new(&config.alarms).map_err(anyhow::Error::msg)?,
        refresh: {
            let delivery = delivery.clone();
            Box::new(move || {
                if let Some(delivery) = &delivery {
                    record_delivery(delivery)
                }
            })
        },
    });
    let (stop_monitor, monitor_stopping) = tokio::sync::watch::channel(false);
    let monitor_task = tokio::spawn(monitor.clone().run(monitor_stopping));
    let analytics = Arc::new(Analytics::new(engine.clone(), config.analytics.clone()));
    let (stop_checks, checks_stopping) = tokio::sync::watch::channel(false);
    let checks = tokio::spawn(analytics.clone().watch(checks_stopping));
    let sql = Arc::new(SqlView {
        engine,
        reports,
        analytics,
    });
    let app = App::new(
        table.clone(),
        validator,
        config.server.clone(),
        pipeline,
        Some(sql),
        Some(monitor),
    )?;
    if let Some(deletions) = &deletions {
        let _ = app.deleter.set(Arc::new(DeletionView(deletions.clone())));
    }
    let disk_task = disk.clone().watch();
    let _ = app.disk.set(disk);
    app.set_ready(true);

    // One line on stdout that scripts can wait for; logs go to stderr.
    println!("tracklake listening on {scheme}://{addr}");
    std::io::stdout().flush()?;
    tracing::info!(
        %addr,
        data_dir = %config.data_dir.display(),
        lake = %lake_location,
        table = %table.stats(),
        "tracklake serving"
    );
    log_memory_budget(&config, embedded.is_some());

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tracklake_server::serve(listener, app.clone(), tls, async {
        let _ = stop_rx.await;
    }));
    let stopped = tokio::select! {
        () = shutdown_signal() => Stopped::Asked,
        () = table_failed(&*table) => Stopped::TableFailed,
    };
    if stopped == Stopped::TableFailed {
        tracing::error!(
            exit_status = EXIT_TABLE_FAILED,
            "the table stopped taking writes after a disk error (logged above); exiting for a \
             supervisor to start tracklake again, which recovers every acknowledged event from \
             the journal"
        );
    }
    tracing::info!("shutting down: finishing in-flight requests");
    app.set_ready(false);
    let _ = stop_tx.send(());
    match tokio::time::timeout(GRACE, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "server error"),
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("in-flight requests did not finish within {GRACE:?}"),
    }
    // The stream reader stops first: what it mirrored is then delivered.
    let _ = stop_reader.send(true);
    if let Some(reader) = reader {
        let _ = reader.await;
    }
    // A deletion cut short resumes at the next start.
    if let Some(deletions) = &deletions {
        deletions.stop();
    }
    // Publish what is buffered before the table stops.
    if let Some(delivery) = &delivery
        && let Err(e) = delivery.stop().await
    {
        tracing::error!(error = %e, "delivery did not finish; it resumes at the next start");
    }
    let _ = stop_checks.send(true);
    let _ = checks.await;
    disk_task.abort();
    let _ = stop_monitor.send(true);
    let _ = monitor_task.await;
    match table.close().await {
        Ok(()) => {}
        // Nothing more can be flushed: the journal has what was acknowledged.
        Err(tracklake_table::Error::Failed) if stopped == Stopped::TableFailed => {}
        Err(error) => return Err(error).context("flushing the table"),
    }
    tracing::info!("stopped");
    Ok(stopped)
}

/// The table the API writes and reads; the embedded table whose change
/// log delivery and SQL's fresh events read (the table itself, or on
/// DynamoDB with `read_stream`, a local mirror of its stream); and the
/// reader that fills that mirror.
async fn open_table(
    config: &Config,
) -> anyhow::Result<(
    Arc<dyn Table>,
    Option<Arc<EmbeddedTable>>,
    Option<StreamReader>,
)> {
    if let Some(name) = &config.aws.dynamodb_table {
        return crate::on_aws::open_dynamodb(config, name).await;
    }
    let table = open_embedded(config, config.data_dir.join("table"))?;
    Ok((table.clone(), Some(table), None))
}

/// The embedded table in `dir`.
pub(crate) fn open_embedded(config: &Config, dir: PathBuf) -> anyhow::Result<Arc<EmbeddedTable>> {
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    Ok(Arc::new(
        EmbeddedTable::open(&dir, &config.table).with_context(|| {
            format!(
                "opening the table in {} (is another tracklake using this data directory?)",
                dir.display()
            )
        })?,
    ))
}

/// What the API sees of delivery: ingest answers 503 while it lags beyond
/// its limits, instead of letting the table grow without bound.
struct DeliveryView(Arc<Delivery>);

impl Pipeline for DeliveryView {
    fn admit(&self) -> Result<(), String> {
        self.0.check_lag()
    }

    fn status(&self) -> serde_json::Value {
        self.0.status_json()
    }
}

/// Copies delivery's own counters into the metrics, before each sample.
fn record_delivery(delivery: &Delivery) {
    use std::sync::atomic::Ordering::Relaxed;
    let status = delivery.status();
    let lag = delivery.lag();
    metrics::counter!(names::DELIVERY_RECORDS).absolute(status.records.load(Relaxed));
    metrics::counter!(names::DELIVERY_BYTES).absolute(status.bytes.load(Relaxed));
    metrics::counter!(names::DELIVERY_FILES).absolute(status.files.load(Relaxed));
    metrics::counter!(names::DELIVERY_FAILED_PUTS).absolute(status.failed_puts.load(Relaxed));
    metrics::counter!(names::COMPACTIONS).absolute(status.compactions.load(Relaxed));
    metrics::counter!(names::COMPACTED_FILES).absolute(status.compacted_files.load(Relaxed));
    metrics::gauge!(names::DELIVERY_LAG_EVENTS).set(lag.events as f64);
    metrics::gauge!(names::DELIVERY_LAG_SECONDS).set(lag.seconds as f64);
}

/// What the API sees of the query engine and the reports.
struct SqlView {
    engine: Arc<Engine>,
    reports: Arc<Reports>,
    analytics: Arc<Analytics>,
}

fn sql_error(e: QueryError) -> SqlError {
    match e {
        QueryError::Invalid(m) => SqlError::Invalid(m),
        e @ QueryError::Timeout(_) => SqlError::Timeout(e.to_string()),
        e => SqlError::Failed(e.to_string()),
    }
}

impl Sql for SqlView {
    fn query<'a>(&'a self, sql: &'a str) -> BoxFuture<'a, Result<serde_json::Value, SqlError>> {
        Box::pin(async move {
            let answer = self.engine.run(sql).await.map_err(sql_error)?;
            to_json_rows(&answer).map_err(|e| SqlError::Failed(e.to_string()))
        })
    }

    fn reports(&self) -> serde_json::Value {
        self.reports.list()
    }

    fn report<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<serde_json::Value, SqlError>> {
        Box::pin(async move {
            match self.reports.get(name).await {
                Ok(report) => Ok(serde_json::to_value(&*report).expect("a report serializes")),
                Err(ReportError::NotFound(name)) => Err(SqlError::NotFound(format!(
                    "no report named {name:?}; GET /v1/reports lists them"
                ))),
                Err(ReportError::Query { source, .. }) => Err(sql_error(source)),
            }
        })
    }

    fn analytics<'a>(
        &'a self,
        report: &'a str,
        params: BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<serde_json::Value, SqlError>> {
        Box::pin(async move {
            let Some(report) = Report::from_name(report) else {
                return Err(SqlError::NotFound(format!(
                    "no analytics report named {report:?}"
                )));
            };
            self.analytics
                .answer(report, &params)
                .await
                .map_err(|e| match e {
                    AnalyticsError::Invalid { field, message } => SqlError::BadParameter {
                        field: field.to_owned(),
                        message,
                    },
                    AnalyticsError::Query(e) => sql_error(e),
                })
        })
    }
}

/// What the API sees of deletion jobs.
struct DeletionView(Arc<Deletions>);

fn job_json(job: &tracklake_delivery::DeletionJob) -> serde_json::Value {
    serde_json::to_value(job).expect("a deletion job serializes")
}

impl Deleter for DeletionView {
    fn request(&self, user_id: &str) -> Result<serde_json::Value, String> {
        self.0
            .request(user_id)
            .map(|job| job_json(&job))
            .map_err(|e| e.to_string())
    }

    fn job(&self, id: &str) -> Option<serde_json::Value> {
        self.0.get(id).map(|job| job_json(&job))
    }

    fn jobs(&self) -> Vec<serde_json::Value> {
        self.0.list().iter().map(job_json).collect()
    }
}

/// Each connection is a file descriptor, and the usual soft limit (1024)
/// is below `max_connections`: raise it as far as the hard limit allows,
/// and say so when even that is too low.
fn raise_open_files(max_connections: usize) {
    #[cfg(unix)]
    {
        // What the table, the lake and the runtime hold besides connections.
        let wanted = (max_connections as libc::rlim_t).saturating_add(1024);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write `limit`.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return;
            }
            if limit.rlim_cur < wanted {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max.min(wanted),
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        if limit.rlim_cur < wanted {
            tracing::warn!(
                open_files = limit.rlim_cur,
                max_connections,
                "the open-file limit is below server.max_connections + 1024; raise it (ulimit -n) or lower max_connections"
            );
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
