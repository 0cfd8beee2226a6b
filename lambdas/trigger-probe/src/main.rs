use aws_config::BehaviorVersion;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use trigger_probe::{DELIVERIES_TABLE_ENV, DynamoDeliveries, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let table = std::env::var(DELIVERIES_TABLE_ENV)
        .map_err(|_| format!("environment variable {DELIVERIES_TABLE_ENV} is not set"))?;
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let deliveries = DynamoDeliveries { client: aws_sdk_dynamodb::Client::new(&config), table };
    let deliveries = &deliveries;
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move { handle(deliveries, event.payload).await }))
        .await
}
