//! Sends failure records to the on-failure destination: the SQS message body, or the SNS
//! `Message` (spec E7).

use crate::failure::FailureRecord;
use crate::runner::checkpoints::error_text;

#[derive(Debug, Clone)]
pub struct Destinations {
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
}

impl Destinations {
    pub async fn send(&self, arn: &str, record: &FailureRecord) -> Result<(), String> {
        let body = serde_json::to_string(record).map_err(|e| format!("serializing a failure record: {e}"))?;
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", _, "sqs", _, account, name] => {
                let url = self
                    .sqs
                    .get_queue_url()
                    .queue_name(*name)
                    .queue_owner_aws_account_id(*account)
                    .send()
                    .await
                    .map_err(|e| format!("finding queue {arn}: {}", error_text(&e)))?
                    .queue_url
                    .ok_or_else(|| format!("queue {arn} has no URL"))?;
                self.sqs
                    .send_message()
                    .queue_url(url)
                    .message_body(body)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| format!("sending to {arn}: {}", error_text(&e)))
            }
            ["arn", _, "sns", ..] => self
                .sns
                .publish()
                .topic_arn(arn)
                .message(body)
                .send()
                .await
                .map(drop)
                .map_err(|e| format!("publishing to {arn}: {}", error_text(&e))),
            _ => Err(format!("{arn} is not an SQS queue or SNS topic ARN")),
        }
    }
}
