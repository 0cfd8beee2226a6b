use aws_config::BehaviorVersion;
use cdc_indexer::{CHECKPOINT_TABLE_ENV, DynamoStore, INDEX_TABLE_ENV, handle};
use lambda_runtime::{Error, run, service_fn};

fn required_env(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set").into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let index_table = required_env(INDEX_TABLE_ENV)?;
    let checkpoint_table = required_env(CHECKPOINT_TABLE_ENV)?;
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), index_table, checkpoint_table);
    let store = &store;
    run(service_fn(move |event| async move { handle(store, event).await })).await
}
