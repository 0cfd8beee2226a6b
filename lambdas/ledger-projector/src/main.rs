use aws_config::BehaviorVersion;
use lambda_runtime::{Error, run, service_fn};
use ledger_projector::{BALANCES_TABLE_ENV, DynamoBalances, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let table = std::env::var(BALANCES_TABLE_ENV)
        .map_err(|_| format!("environment variable {BALANCES_TABLE_ENV} is not set"))?;
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let balances = DynamoBalances::new(aws_sdk_dynamodb::Client::new(&config), table);
    let balances = &balances;
    run(service_fn(move |event| async move { handle(balances, event).await })).await
}
