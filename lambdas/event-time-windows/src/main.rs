use aws_config::BehaviorVersion;
use event_time_windows::{
    DynamoStore, LATE_TABLE_ENV, Settings, Tables, WATERMARKS_TABLE_ENV, WINDOWS_TABLE_ENV, handle,
};
use lambda_runtime::{Error, run, service_fn};

fn required_env(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set").into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let tables = Tables {
        watermarks: required_env(WATERMARKS_TABLE_ENV)?,
        windows: required_env(WINDOWS_TABLE_ENV)?,
        late: required_env(LATE_TABLE_ENV)?,
    };
    let settings = Settings::from_lookup(|name| std::env::var(name).ok())?;
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), tables);
    let (store, settings) = (&store, &settings);
    run(service_fn(move |event| async move { handle(store, settings, event).await })).await
}
