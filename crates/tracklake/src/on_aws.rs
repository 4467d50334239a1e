//! `serve` on the managed services: events in DynamoDB, its stream read
//! back here, or delivery through Kinesis Firehose (docs/AWS.md).

use std::sync::Arc;

use anyhow::Context;
use tracklake_aws::{DynamoTable, FirehoseSink, StreamReader};
use tracklake_delivery::RecordSink;
use tracklake_table::{EmbeddedTable, Table};

use crate::config::{AwsConfig, Config};
use crate::serve::open_embedded;

/// What `[aws] endpoint` and `region` say, for the SDK.
fn settings(aws: &AwsConfig) -> tracklake_aws::AwsSettings {
    tracklake_aws::AwsSettings {
        endpoint: aws.endpoint.clone(),
        region: aws.region.clone(),
    }
}

/// Delivery to the Firehose stream `stream` instead of lake files.
pub async fn firehose_sink(aws: &AwsConfig, stream: &str) -> Arc<dyn RecordSink> {
    let sdk = tracklake_aws::sdk_config(&settings(aws), None).await;
    let firehose = aws_sdk_firehose::Client::new(&sdk);
    Arc::new(FirehoseSink::new(firehose, stream.to_owned()))
}

/// The DynamoDB table `name`; with `read_stream`, a local mirror of its
/// stream and the reader that fills it.
pub async fn open_dynamodb(
    config: &Config,
    name: &str,
) -> anyhow::Result<(
    Arc<dyn Table>,
    Option<Arc<EmbeddedTable>>,
    Option<StreamReader>,
)> {
    let sdk = tracklake_aws::sdk_config(&settings(&config.aws), None).await;
    let mut table = DynamoTable::connect(&sdk, name.to_owned());
    table
        .check()
        .await
        .context("opening the DynamoDB table ([aws] dynamodb_table)")?;
    if !config.aws.read_stream {
        return Ok((Arc::new(table), None, None));
    }
    let mirror = open_embedded(config, config.data_dir.join("stream").join("mirror"))?;
    let reader = StreamReader::open(&sdk, name, mirror.clone(), &config.data_dir)
        .context("opening the stream reader")?;
    Ok((Arc::new(table), Some(mirror), Some(reader)))
}
