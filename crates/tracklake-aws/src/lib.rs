//! tracklake on AWS: the table on DynamoDB ([`DynamoTable`]), the Lambda
//! handler of the article's pipeline ([`lambda::Forwarder`], binary
//! `tracklake-lambda`), the stream reader that lets `tracklake serve` deliver
//! from DynamoDB itself ([`StreamReader`]), and the SDK configuration they
//! share (docs/AWS.md).

pub mod dynamo;
pub mod firehose;
pub mod lambda;
pub mod streams;

pub use dynamo::{DynamoTable, Layout};
pub use firehose::FirehoseSink;
pub use streams::StreamReader;

pub use aws_sdk_firehose::config::Credentials;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use serde::{Deserialize, Serialize};

/// Where to reach AWS. Unset fields come from the standard environment
/// (`AWS_REGION`, `AWS_ENDPOINT_URL`, the shared config files, the role).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsSettings {
    /// e.g. `http://127.0.0.1:5000` for an emulator; default: AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// The SDK configuration over rustls with ring; credentials from the
/// standard chain unless given.
pub async fn sdk_config(
    settings: &AwsSettings,
    credentials: Option<Credentials>,
) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = &settings.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    loader.load().await
}
