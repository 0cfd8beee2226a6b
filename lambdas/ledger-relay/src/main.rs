use function_bootstrap::{init_logging, required_env, sdk_config};
use lambda_runtime::{Error, run, service_fn};
use ledger_relay::{EVENTS_STREAM_ENV, KinesisLog, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let stream = required_env(EVENTS_STREAM_ENV)?;
    let log = KinesisLog::new(aws_sdk_kinesis::Client::new(&sdk_config().await), stream);
    let log = &log;
    run(service_fn(move |event| async move { handle(log, event).await })).await
}
