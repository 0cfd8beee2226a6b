use event_time_windows::{
    DynamoStore, LATE_TABLE_ENV, Settings, Tables, WATERMARKS_TABLE_ENV, WINDOWS_TABLE_ENV, handle,
};
use function_bootstrap::{init_logging, required_env, sdk_config};
use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let tables = Tables {
        watermarks: required_env(WATERMARKS_TABLE_ENV)?,
        windows: required_env(WINDOWS_TABLE_ENV)?,
        late: required_env(LATE_TABLE_ENV)?,
    };
    let settings = Settings::from_lookup(|name| std::env::var(name).ok())?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk_config().await), tables);
    let (store, settings) = (&store, &settings);
    run(service_fn(move |event| async move { handle(store, settings, event).await })).await
}
