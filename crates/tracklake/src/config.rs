//! One TOML file, overridden by `TRACKLAKE_*` environment variables, then by
//! command-line flags. Every default works on a laptop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use tracklake_delivery::{CompactionConfig, DeliveryConfig, LakeConfig, StreamConfig};
use tracklake_event::{PrivacyConfig, Rules};
use tracklake_metrics::{AlarmsConfig, HistoryConfig};
use tracklake_query::QueryConfig;
use tracklake_query::analytics::abnormal::AbnormalConfig;
use tracklake_server::ServerConfig;
use tracklake_table::TableConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the table (and later the lake) live.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub ingest: Rules,
    pub table: TableConfig,
    pub stream: StreamConfig,
    pub delivery: DeliveryConfig,
    pub lake: LakeConfig,
    pub compaction: CompactionConfig,
    pub query: QueryConfig,
    /// Abnormal-behaviour thresholds and checks (docs/ANALYTICS.md).
    pub analytics: AbnormalConfig,
    pub metrics: HistoryConfig,
    pub alarms: AlarmsConfig,
    pub privacy: PrivacyConfig,
    pub aws: AwsConfig,
    pub log: LogConfig,
}

/// `[aws]`: run on the managed services (docs/AWS.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// Keep events in this DynamoDB table (made by deploy/aws/template.yaml)
    /// instead of the embedded one. Its stream, the Lambda and Firehose then
    /// deliver to the lake, so tracklake's own delivery does not run.
    pub dynamodb_table: Option<String>,
    /// With `dynamodb_table`: read its stream and deliver to the lake from
    /// here (exactly once), instead of the stack's Lambda and Firehose.
    pub read_stream: bool,
    /// Deliver to this Kinesis Firehose stream (which writes the lake)
    /// instead of writing lake files; `[lake] url` is then where Firehose
    /// writes, for SQL to read.
    pub firehose_stream: Option<String>,
    /// e.g. `http://127.0.0.1:5000` for an emulator; default: AWS itself.
    pub endpoint: Option<String>,
    /// Default: `AWS_REGION`, then the shared config files.
    pub region: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("tracklake-data"),
            server: ServerConfig::default(),
            ingest: Rules::default(),
            table: TableConfig::default(),
            stream: StreamConfig::default(),
            delivery: DeliveryConfig::default(),
            lake: LakeConfig::default(),
            compaction: CompactionConfig::default(),
            query: QueryConfig::default(),
            analytics: AbnormalConfig::default(),
            metrics: HistoryConfig::default(),
            alarms: AlarmsConfig::default(),
            privacy: PrivacyConfig::default(),
            aws: AwsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `auto` (human on a terminal, JSON lines otherwise), `json` or `text`.
    pub format: String,
    /// A tracing filter such as `info` or `tracklake=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "auto".into(),
            // The Delta kernel logs every snapshot it loads at info,
            // with the whole log segment in one line.
            level: "info,fjall=warn,lsm_tree=warn,buoyant_kernel=warn".into(),
        }
    }
}

/// Variables read by the CLI, the log filter or a test hook of the table
/// (`TRACKLAKE_TEST_FSYNC_DELAY_MS`), not by the config file.
const CLI_VARIABLES: [&str; 4] = ["url", "config", "log", "test_fsync_delay_ms"];

/// Loads the config: defaults, then `file` (or `./tracklake.toml` when it
/// exists), then `TRACKLAKE_*` variables (`__` separates sections:
/// `TRACKLAKE_SERVER__LISTEN`), then the flags.
pub fn load(
    file: Option<&Path>,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
) -> anyhow::Result<Config> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    match file {
        Some(path) => {
            anyhow::ensure!(
                path.exists(),
                "config file {} does not exist",
                path.display()
            );
            figment = figment.merge(Toml::file(path));
        }
        None if Path::new("tracklake.toml").exists() => {
            figment = figment.merge(Toml::file("tracklake.toml"))
        }
        None => {}
    }
    figment = figment.merge(
        Env::prefixed("TRACKLAKE_")
            .split("__")
            .ignore(&CLI_VARIABLES),
    );
    if let Some(dir) = data_dir {
        figment = figment.merge(Serialized::default("data_dir", dir));
    }
    if let Some(listen) = listen {
        figment = figment.merge(Serialized::default("server.listen", listen));
    }
    let config: Config = figment.extract().context("reading the configuration")?;
    config.analytics.check().map_err(anyhow::Error::msg)?;
    config.server.check()?;
    for (_, name) in tracklake_query::analytics::Report::ALL {
        anyhow::ensure!(
            !config.query.reports.contains_key(name),
            "[query.reports.{name}]: {name} is a built-in analytics report (GET /v1/reports/{name}); give yours another name"
        );
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads_and_allows_the_article_types() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tracklake.example.toml");
        let config = load(Some(&example), None, None).unwrap();
        assert_eq!(
            config.ingest.event_types,
            Some(vec!["login".to_string(), "material-view".to_string()])
        );
    }

    #[test]
    fn analytics_thresholds_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "[analytics.sharing]\nmin_networks = 1\n").unwrap();
        let e = load(Some(&file), None, None).unwrap_err();
        assert!(format!("{e:#}").contains("min_networks"), "{e:#}");
        std::fs::write(&file, "[query.reports.funnel]\nsql = \"SELECT 1\"\n").unwrap();
        let e = load(Some(&file), None, None).unwrap_err();
        assert!(
            format!("{e:#}").contains("built-in analytics report"),
            "{e:#}"
        );
        std::fs::write(&file, "[analytics.scraping]\nmin_views = 20\n").unwrap();
        assert_eq!(
            load(Some(&file), None, None)
                .unwrap()
                .analytics
                .scraping
                .min_views,
            20
        );
    }

    #[test]
    fn flags_win_over_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\n[server]\nlisten = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let config = load(Some(&file), Some("/from/flag".into()), None).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(config.server.listen.port(), 1);
    }

    #[test]
    fn typos_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "[ingest]\nevent_type = [\"login\"]\n").unwrap();
        let err = format!("{:#}", load(Some(&file), None, None).unwrap_err());
        assert!(err.contains("event_type"), "{err}");
    }
}
