use arrival_windows::{DynamoStore, WINDOWS_TABLE_ENV, handle};
use aws_config::BehaviorVersion;
use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let table = std::env::var(WINDOWS_TABLE_ENV)
        .map_err(|_| Error::from(format!("environment variable {WINDOWS_TABLE_ENV} is not set")))?;
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table);
    let store = &store;
    run(service_fn(move |event| async move { handle(store, event).await })).await
}
