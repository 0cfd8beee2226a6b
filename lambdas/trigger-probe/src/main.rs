use function_bootstrap::{init_logging, required_env, sdk_config};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use trigger_probe::{DELIVERIES_TABLE_ENV, DynamoDeliveries, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let table = required_env(DELIVERIES_TABLE_ENV)?;
    let deliveries = DynamoDeliveries { client: aws_sdk_dynamodb::Client::new(&sdk_config().await), table };
    let deliveries = &deliveries;
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move { handle(deliveries, event.payload).await }))
        .await
}
