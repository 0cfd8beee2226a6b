use function_bootstrap::{init_logging, required_env, sdk_config};
use lambda_runtime::{Error, run, service_fn};
use ledger_projector::{BALANCES_TABLE_ENV, DynamoBalances, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let table = required_env(BALANCES_TABLE_ENV)?;
    let balances = DynamoBalances::new(aws_sdk_dynamodb::Client::new(&sdk_config().await), table);
    let balances = &balances;
    run(service_fn(move |event| async move { handle(balances, event).await })).await
}
