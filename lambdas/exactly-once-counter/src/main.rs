use exactly_once_counter::{APPLIED_TABLE_ENV, DynamoStore, INVOCATIONS_TABLE_ENV, TOTALS_TABLE_ENV, Tables, handle};
use function_bootstrap::{init_logging, required_env, sdk_config};
use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let tables = Tables {
        totals: required_env(TOTALS_TABLE_ENV)?,
        applied: required_env(APPLIED_TABLE_ENV)?,
        invocations: required_env(INVOCATIONS_TABLE_ENV)?,
    };
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk_config().await), tables);
    let store = &store;
    run(service_fn(move |event| async move { handle(store, event).await })).await
}
