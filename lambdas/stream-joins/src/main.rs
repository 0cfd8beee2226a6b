use aws_config::BehaviorVersion;
use lambda_runtime::{Error, run, service_fn};
use stream_joins::dynamo::DynamoStore;
use stream_joins::{Settings, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_lookup(|name| std::env::var(name).ok())?;
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config));
    let (store, settings) = (&store, &settings);
    run(service_fn(move |event| async move { handle(store, settings, event).await })).await
}
