//! The Lambda of deploy/aws/template.yaml: DynamoDB stream batches in,
//! JSON lines out to the Firehose stream named by `DELIVERY_STREAM_NAME`.

use aws_lambda_events::dynamodb::Event;
use lambda_runtime::{LambdaEvent, service_fn};
use tracklake_aws::lambda::Forwarder;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let stream = std::env::var("DELIVERY_STREAM_NAME")
        .map_err(|_| "DELIVERY_STREAM_NAME is not set: the Firehose stream to put records to")?;
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
    let config = tracklake_aws::sdk_config(&Default::default(), None).await;
    let firehose = aws_sdk_firehose::Client::new(&config);
    let forwarder = Forwarder::new(firehose, stream, function);
    let forwarder = &forwarder;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<_, lambda_runtime::Error>(forwarder.forward(&event.payload).await)
    }))
    .await
}
