use aws_config::BehaviorVersion;
use lambda_runtime::{Error, run, service_fn};
use shipping_worker::{DynamoEffects, EFFECTS_TABLE_ENV, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let table =
        std::env::var(EFFECTS_TABLE_ENV).map_err(|_| format!("environment variable {EFFECTS_TABLE_ENV} is not set"))?;
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let store = DynamoEffects::new(aws_sdk_dynamodb::Client::new(&config), table);
    let store = &store;
    run(service_fn(move |event| async move { handle(store, event).await })).await
}
