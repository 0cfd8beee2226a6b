use aws_config::BehaviorVersion;
use lambda_runtime::{Error, run, service_fn};
use ledger_relay::{EVENTS_STREAM_ENV, KinesisLog, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let stream =
        std::env::var(EVENTS_STREAM_ENV).map_err(|_| format!("environment variable {EVENTS_STREAM_ENV} is not set"))?;
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let log = KinesisLog::new(aws_sdk_kinesis::Client::new(&config), stream);
    let log = &log;
    run(service_fn(move |event| async move { handle(log, event).await })).await
}
