use aws_config::BehaviorVersion;
use exactly_once_counter::{APPLIED_TABLE_ENV, DynamoStore, INVOCATIONS_TABLE_ENV, TOTALS_TABLE_ENV, Tables, handle};
use lambda_runtime::{Error, run, service_fn};

fn required_env(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set").into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let tables = Tables {
        totals: required_env(TOTALS_TABLE_ENV)?,
        applied: required_env(APPLIED_TABLE_ENV)?,
        invocations: required_env(INVOCATIONS_TABLE_ENV)?,
    };
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), tables);
    let store = &store;
    run(service_fn(move |event| async move { handle(store, event).await })).await
}
