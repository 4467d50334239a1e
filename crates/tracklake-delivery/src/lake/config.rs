//! `[lake]` and `[lake.s3]` of the config file.

use serde::{Deserialize, Serialize};

use crate::encode::Format;

/// The `[lake]` section of the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    /// A directory (or `file://` URL), or `s3://bucket/prefix/`; empty
    /// means `<data_dir>/lake`.
    pub url: String,
    pub format: Format,
    /// gzip NDJSON files (`.json.gz`).
    pub gzip: bool,
    pub layout: Layout,
    /// Files a commit removed (compaction sources, files rewritten to
    /// erase a user) stay readable this long for queries that started
    /// before, then vacuum deletes them, in seconds.
    pub retention_secs: u64,
    pub s3: S3Config,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            url: String::new(),
            format: Format::default(),
            gzip: false,
            layout: Layout::default(),
            retention_secs: 3600,
            s3: S3Config::default(),
        }
    }
}

/// `[lake.s3]`: where and how to reach S3 or an S3-compatible store.
/// Credentials come from the standard AWS environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), else
/// from the shared files (`~/.aws/credentials` and `~/.aws/config`, profile
/// `AWS_PROFILE`), else from the instance / container role.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:9000` for an S3-compatible store; default AWS.
    pub endpoint: Option<String>,
    /// Default: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's region,
    /// else `us-east-1`.
    pub region: Option<String>,
    /// Allow plain-HTTP endpoints (local stores and emulators).
    pub allow_http: bool,
    /// `bucket.host/key` addressing instead of path style (`host/bucket/key`).
    pub virtual_hosted_style: bool,
    /// Encrypt every lake file with this KMS key (SSE-KMS), as the article's
    /// bucket was.
    pub sse_kms_key_id: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `events/dt=YYYY-MM-DD/` (Hive-style, what Athena/Trino/Spark/DuckDB partition on).
    #[default]
    Hive,
    /// `events/YYYY/MM/DD/HH/`, Firehose's default prefix.
    Firehose,
}
