//! The smallest Rust Lambda function: the floor the benchmarks compare
//! `websocket-handler` against (cold start, warm invocation, memory, zip).
//!
//! It answers every event with the API Gateway proxy response shape and does
//! nothing else, so what it costs is the cost of `lambda_runtime` itself.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn handler(_event: LambdaEvent<Value>) -> Result<Value, Error> {
    Ok(json!({ "statusCode": 200, "body": "hello" }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_runtime::Context;

    #[tokio::test]
    async fn answers_with_a_200_proxy_response() {
        let out = handler(LambdaEvent::new(
            json!({"any": "event"}),
            Context::default(),
        ))
        .await;
        let out = out.map_err(|e| e.to_string());
        assert_eq!(out, Ok(json!({ "statusCode": 200, "body": "hello" })));
    }
}
