//! `tracklake aws athena-ddl`: the `CREATE DATABASE` and `CREATE EXTERNAL
//! TABLE` that let Athena (or tracklake's own SQL) read the lake as
//! written. A Parquet lake tracklake writes is a Delta Lake table: Athena's
//! Delta DDL names its location and nothing else (columns, partitions and
//! files come from the log). Plain files — JSON lines, or what Firehose
//! writes when it delivers (Hive `dt=` or Firehose `YYYY/MM/DD/HH`
//! prefixes) — get their columns and partition projection, so no partition
//! is ever added by hand or by a crawler.

use std::path::PathBuf;

use anyhow::bail;
use tracklake_ddl::athena_type;
use tracklake_delivery::{Format, LakeConfig, Layout, SCHEMA, TABLE_DIR, partition_template};

use crate::config::{self, AwsConfig};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the Athena DDL for the lake as configured.
    AthenaDdl(DdlArgs),
}

#[derive(clap::Args)]
pub struct DdlArgs {
    /// Config file (default: ./tracklake.toml when present).
    #[arg(long, env = "TRACKLAKE_CONFIG")]
    config: Option<PathBuf>,
    /// The lake's S3 location (default: the config's lake.url).
    #[arg(long)]
    location: Option<String>,
    #[arg(long, default_value = "tracklake")]
    database: String,
    #[arg(long, default_value = "events")]
    table: String,
    /// The first day partition projection covers (YYYY-MM-DD; JSON lines).
    #[arg(long, default_value = "2020-01-01")]
    since: chrono::NaiveDate,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    let Command::AthenaDdl(args) = command;
    let config = config::load(args.config.as_deref(), None, None)?;
    let location = match args.location.as_deref().unwrap_or(&config.lake.url) {
        url if url.starts_with("s3://") => url.to_owned(),
        _ => bail!(
            "the lake is not on S3 (lake.url = {:?}); Athena reads S3: pass --location s3://bucket/prefix/",
            config.lake.url
        ),
    };
    let name_ok =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok(&args.database) || !name_ok(&args.table) {
        bail!("database and table names may hold letters, digits and underscores only");
    }
    print!(
        "{}",
        athena_ddl(
            &config.lake,
            tracklake_writes_the_lake(&config.aws),
            &location,
            &args.database,
            &args.table,
            args.since
        )
    );
    Ok(())
}

/// Whether tracklake writes the lake's files itself; otherwise Firehose
/// does (the stack's, behind DynamoDB's stream, or `firehose_stream`).
fn tracklake_writes_the_lake(aws: &AwsConfig) -> bool {
    aws.firehose_stream.is_none() && (aws.dynamodb_table.is_none() || aws.read_stream)
}

/// The statements, each ending with `;`. `own_files`: tracklake writes the
/// lake (no Firehose in between), so a Parquet lake is a Delta table.
pub fn athena_ddl(
    lake: &LakeConfig,
    own_files: bool,
    location: &str,
    database: &str,
    table: &str,
    since: chrono::NaiveDate,
) -> String {
    let events = format!("{}/{TABLE_DIR}/", location.trim_end_matches('/'));
    if lake.format == Format::Parquet && own_files {
        return format!(
            "CREATE DATABASE IF NOT EXISTS {database};\n\n\
             CREATE EXTERNAL TABLE IF NOT EXISTS {database}.{table}\n\
             LOCATION '{events}'\n\
             TBLPROPERTIES ('table_type' = 'DELTA');\n"
        );
    }
    let columns: Vec<String> = match lake.format {
        Format::Parquet => SCHEMA
            .fields()
            .iter()
            .map(|f| format!("  {} {}", f.name(), athena_type(f.data_type())))
            .collect(),
        // The field names and shapes of an NDJSON line (the stored event).
        Format::Ndjson => [
            "event_id string",
            "user_id string",
            "event_type string",
            "event_at string",
            "received_at string",
            "user_agent string",
            "ip_address string",
            "properties map<string,string>",
            "device struct<type:string,os:string,os_version:string,browser:string,browser_version:string,brand:string,model:string,is_bot:boolean,bot:string>",
            "web struct<url:string,path:string,referrer_host:string,utm_source:string,utm_medium:string,utm_campaign:string,session_id:string>",
        ]
        .iter()
        .map(|c| format!("  {c}"))
        .collect(),
    };
    let storage = match lake.format {
        Format::Parquet => "STORED AS PARQUET",
        Format::Ndjson => {
            "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\n\
             WITH SERDEPROPERTIES ('ignore.malformed.json' = 'false')"
        }
    };
    let (partition, format) = partition_template(lake.layout);
    let (first, unit) = match lake.layout {
        Layout::Hive => (since.to_string(), "DAYS"),
        Layout::Firehose => (format!("{}/00", since.format("%Y/%m/%d")), "HOURS"),
    };
    let projection = format!(
        "  'projection.dt.format' = '{format}',\n  'projection.dt.range' = '{first},NOW',\n  \
         'projection.dt.interval' = '1',\n  'projection.dt.interval.unit' = '{unit}'"
    );
    format!(
        "CREATE DATABASE IF NOT EXISTS {database};\n\n\
         CREATE EXTERNAL TABLE IF NOT EXISTS {database}.{table} (\n{columns}\n)\n\
         PARTITIONED BY (dt string)\n\
         {storage}\n\
         LOCATION '{events}'\n\
         TBLPROPERTIES (\n  'projection.enabled' = 'true',\n  'projection.dt.type' = 'date',\n{projection},\n  \
         'storage.location.template' = '{events}{partition}/'\n);\n",
        columns = columns.join(",\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parquet_lake_is_a_delta_table_to_athena() {
        let ddl = athena_ddl(
            &LakeConfig::default(),
            true,
            "s3://bucket/lake/",
            "tracklake",
            "events",
            chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        );
        assert_eq!(
            ddl,
            "CREATE DATABASE IF NOT EXISTS tracklake;\n\n\
             CREATE EXTERNAL TABLE IF NOT EXISTS tracklake.events\n\
             LOCATION 's3://bucket/lake/events/'\n\
             TBLPROPERTIES ('table_type' = 'DELTA');\n"
        );
        // Both statements parse in the Hive dialect, as Athena's DDL does.
        for statement in ddl.split(";\n").filter(|s| !s.trim().is_empty()) {
            assert!(tracklake_ddl::parse(statement).is_some(), "{statement}");
        }
    }

    #[test]
    fn firehose_writes_the_lake_unless_tracklake_delivers() {
        let aws = |table: Option<&str>, read_stream, firehose: Option<&str>| AwsConfig {
            dynamodb_table: table.map(str::to_owned),
            read_stream,
            firehose_stream: firehose.map(str::to_owned),
            ..AwsConfig::default()
        };
        assert!(tracklake_writes_the_lake(&aws(None, false, None)));
        assert!(tracklake_writes_the_lake(&aws(Some("t"), true, None)));
        assert!(!tracklake_writes_the_lake(&aws(Some("t"), false, None)));
        assert!(!tracklake_writes_the_lake(&aws(None, false, Some("f"))));
    }

    #[test]
    fn parquet_written_by_firehose_is_projected_by_day() {
        let ddl = athena_ddl(
            &LakeConfig::default(),
            false,
            "s3://bucket/lake/",
            "tracklake",
            "events",
            chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        );
        assert!(ddl.contains(
            "CREATE EXTERNAL TABLE IF NOT EXISTS tracklake.events (\n  event_id string,"
        ));
        assert!(ddl.contains("  event_at timestamp,"));
        assert!(ddl.contains("STORED AS PARQUET\nLOCATION 's3://bucket/lake/events/'"));
        assert!(ddl.contains("'projection.dt.range' = '2024-01-01,NOW'"));
        assert!(ddl.contains("'storage.location.template' = 's3://bucket/lake/events/dt=${dt}/'"));
        for statement in ddl.split(";\n").filter(|s| !s.trim().is_empty()) {
            assert!(tracklake_ddl::parse(statement).is_some(), "{statement}");
        }
    }

    #[test]
    fn json_firehose_ddl_uses_hour_prefixes() {
        let lake = LakeConfig {
            format: Format::Ndjson,
            layout: Layout::Firehose,
            ..Default::default()
        };
        let ddl = athena_ddl(
            &lake,
            true,
            "s3://bucket",
            "db",
            "t",
            chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        );
        assert!(ddl.contains("ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'"));
        assert!(ddl.contains("'projection.dt.format' = 'yyyy/MM/dd/HH'"));
        assert!(ddl.contains("'storage.location.template' = 's3://bucket/events/${dt}/'"));
        for statement in ddl.split(";\n").filter(|s| !s.trim().is_empty()) {
            assert!(tracklake_ddl::parse(statement).is_some(), "{statement}");
        }
    }
}
