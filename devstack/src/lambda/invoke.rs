//! How the API layer calls the function: one event in, one response out.
//!
//! A trait so the gateway is tested without processes, and the Lambda pool
//! is the one implementation the stack uses.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

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
    /// Lambda's throttling error (HTTP 429, `TooManyRequestsException`,
    /// reason `ConcurrentInvocationLimitExceeded`): every process is busy and
    /// the pool's queue of waiting invocations is full.
    #[error("TooManyRequestsException: Rate Exceeded. ({queued} invocations already waiting)")]
    Throttled { queued: usize },
}

pub type InvokeFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, InvokeError>> + Send + 'a>>;

/// Invokes the function synchronously (RequestResponse) with an event.
pub trait Invoke: Send + Sync + 'static {
    fn invoke(&self, event: Value) -> InvokeFuture<'_>;
}
