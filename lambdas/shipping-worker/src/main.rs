use function_bootstrap::{init_logging, required_env, sdk_config};
use lambda_runtime::{Error, run, service_fn};
use shipping_worker::{DynamoEffects, EFFECTS_TABLE_ENV, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let table = required_env(EFFECTS_TABLE_ENV)?;
    let store = DynamoEffects::new(aws_sdk_dynamodb::Client::new(&sdk_config().await), table);
    let store = &store;
    run(service_fn(move |event| async move { handle(store, event).await })).await
}
