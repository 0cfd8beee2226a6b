use function_bootstrap::{init_logging, sdk_config};
use lambda_runtime::{Error, run, service_fn};
use stream_joins::dynamo::DynamoStore;
use stream_joins::{Settings, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let settings = Settings::from_lookup(|name| std::env::var(name).ok())?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk_config().await));
    let (store, settings) = (&store, &settings);
    run(service_fn(move |event| async move { handle(store, settings, event).await })).await
}
