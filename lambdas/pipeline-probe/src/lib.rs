//! A probe function: it answers with what it was sent and what it can see of its environment, so a
//! test can tell that the code it built is the code that ran, where it ran.

use lambda_runtime::{Error, LambdaEvent};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Serialize, PartialEq)]
pub struct ProbeReply {
    pub echo: Value,
    pub function_name: String,
    /// Set by `labs up` on every function; its presence proves the deployed configuration.
    pub labs_example: Option<String>,
}

pub async fn handle(event: LambdaEvent<Value>) -> Result<ProbeReply, Error> {
    let (payload, context) = event.into_parts();
    if payload.get("fail").and_then(Value::as_bool) == Some(true) {
        return Err("the caller asked this probe to fail".into());
    }
    Ok(ProbeReply {
        echo: payload,
        function_name: context.env_config.function_name.clone(),
        labs_example: std::env::var("LABS_EXAMPLE").ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_runtime::Context;
    use serde_json::json;

    #[tokio::test]
    async fn echoes_the_payload() {
        let reply = handle(LambdaEvent::new(json!({"hello": 1}), Context::default())).await.unwrap();
        assert_eq!(reply.echo, json!({"hello": 1}));
    }

    #[tokio::test]
    async fn fails_when_asked() {
        let err = handle(LambdaEvent::new(json!({"fail": true}), Context::default())).await;
        assert!(err.is_err());
    }
}
