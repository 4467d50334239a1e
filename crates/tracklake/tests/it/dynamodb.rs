//! The table on DynamoDB (the AWS emulator on loopback) passes the same
//! behaviour suite as the embedded table.

use tracklake_aws::{AwsSettings, Credentials, DynamoTable};

use crate::harness::{Moto, free_port};

#[tokio::test]
async fn dynamodb_table_behaves_as_every_table_must() {
    if !Moto::available() {
        return;
    }
    let moto = Moto::start(free_port()).await;
    let settings = AwsSettings {
        endpoint: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
    };
    let credentials = Credentials::new("testing", "testing", None, None, "test");
    let config = tracklake_aws::sdk_config(&settings, Some(credentials)).await;
    let table = DynamoTable::new(aws_sdk_dynamodb::Client::new(&config), "tracklake-events");
    table.create().await.unwrap();
    tracklake_table::suite::run_all(&table, "u-").await;
}
