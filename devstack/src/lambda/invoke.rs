//! How the API layer calls the function: one event in, one response out.
//!
//! A trait so the gateway is tested without processes, and the Lambda pool
//! is the one implementation the stack uses.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Bytes;
use serde_json::Value;

/// Why an invocation produced no response, as Lambda reports it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// The function returned an error (`/invocation/{id}/error`).
    #[error("function error {error_type}: {message}")]
    Function { error_type: String, message: String },
    /// The function process exited during the invocation.
    #[error("function process exited during the invocation ({0})")]
    Crashed(String),
    /// The invocation ran past the function's timeout; the process was replaced.
    #[error("invocation timed out after {0:?}")]
    Timeout(Duration),
    /// No function process could be started.
    #[error("function unavailable: {0}")]
    Unavailable(String),
    /// Lambda's throttling error (HTTP 429, `TooManyRequestsException`).
    #[error("TooManyRequestsException: Rate Exceeded. ({0})")]
    Throttled(Limit),
}

/// Why an invocation was throttled: as AWS would, or only here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limit {
    /// As on AWS (reason `ConcurrentInvocationLimitExceeded`): the executions
    /// AWS would be running at once reached the account's concurrency.
    #[error("{at_once} executions at once: the account's concurrency")]
    Concurrency { at_once: usize },
    /// Only here: so many invocations already wait for the machine's few
    /// function processes that the local stack takes no more. AWS would not
    /// throttle this one.
    #[error(
        "the local stack's bound, not AWS's: {waiting} invocations already wait for a function process"
    )]
    LocalWaiting { waiting: usize },
}

pub type InvokeFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, InvokeError>> + Send + 'a>>;

/// Invokes the function synchronously (RequestResponse) with an event.
pub trait Invoke: Send + Sync + 'static {
    /// With the event as JSON text, written once by whoever built it (the
    /// API layer from its typed event, the Invoke API from the request
    /// body) and handed to the function as it is.
    fn invoke_json(&self, event: Bytes) -> InvokeFuture<'_>;

    /// With the event as a value.
    fn invoke(&self, event: Value) -> InvokeFuture<'_> {
        match serde_json::to_vec(&event) {
            Ok(json) => self.invoke_json(Bytes::from(json)),
            Err(error) => Box::pin(async move {
                Err(InvokeError::Unavailable(format!(
                    "event not serializable: {error}"
                )))
            }),
        }
    }
}
