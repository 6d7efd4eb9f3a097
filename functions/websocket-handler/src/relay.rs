//! Hands a broadcast's [`Continuation`] to an asynchronous invocation of
//! this same function (Lambda `Invoke`, `InvocationType::Event`).
//!
//! Why asynchronous invocation rather than an SQS queue: it needs no other
//! resource (only `lambda:InvokeFunction` on the function itself), the event
//! is queued by Lambda before `Invoke` returns 202, throttled events are
//! retried by Lambda until their maximum age, and the local stack plays it
//! with its Lambda alone. Its duplicates and retries are what the claims in
//! [`crate::fanout`] absorb.
//!
//! The function's own name comes from `AWS_LAMBDA_FUNCTION_NAME`, which
//! Lambda (and the local stack) sets; the endpoint from the SDK's standard
//! configuration (`AWS_ENDPOINT_URL_LAMBDA` locally).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::error::DisplayErrorContext;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_types::SdkConfig;

use crate::fanout::{Continuation, Relay};
use crate::lazy_client::Lazy;

/// The variable Lambda sets to the function's name.
pub const FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";

/// One `Invoke` call; a slower one is abandoned. The SDK does not retry it:
/// [`crate::fanout::hand_on`] tries again until the invocation must answer
/// (at least [`crate::fanout::HANDOFF_RESERVE`], so two attempts at least),
/// one layer of retries instead of two (a hand-off queued twice is claimed
/// once, so a retry never posts twice).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Invokes the function itself, asynchronously. The Lambda client is built
/// at the first hand-off ([`Lazy`]): most invocations hand nothing on.
#[derive(Debug, Clone)]
pub struct SelfInvoke {
    client: Lazy<aws_sdk_lambda::Client>,
    function: String,
}

impl SelfInvoke {
    pub fn new(sdk: &SdkConfig, function: impl Into<String>) -> Self {
        let sdk = sdk.clone();
        SelfInvoke {
            client: Lazy::new(move || {
                let config = aws_sdk_lambda::config::Builder::from(&sdk)
                    .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
                    .timeout_config(
                        aws_sdk_lambda::config::timeout::TimeoutConfig::builder()
                            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                            .operation_timeout(ATTEMPT_TIMEOUT)
                            .build(),
                    )
                    .build();
                aws_sdk_lambda::Client::from_conf(config)
            }),
            function: function.into(),
        }
    }

    pub fn function(&self) -> &str {
        &self.function
    }
}

#[async_trait]
impl Relay for SelfInvoke {
    async fn hand_off(&self, continuation: &Continuation) -> Result<(), String> {
        let payload = serde_json::to_vec(&continuation.to_event())
            .map_err(|e| format!("continuation does not serialise: {e}"))?;
        let output = self
            .client
            .get()
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| format!("Invoke {}: {}", self.function, DisplayErrorContext(e)))?;
        match output.status_code() {
            202 => Ok(()),
            status => Err(format!(
                "Invoke {} answered {status} instead of 202 (queued)",
                self.function
            )),
        }
    }
}
