//! The Lambda service's `Invoke` API on loopback, so the function's own SDK
//! client (`AWS_ENDPOINT_URL_LAMBDA`) can invoke it as it does in AWS —
//! which a broadcast's continuation does, asynchronously.
//!
//! `POST /2015-03-31/functions/{name}/invocations`:
//! - `X-Amz-Invocation-Type: Event`: 202 once the event is queued; it is then
//!   delivered to the pool in its own task, as Lambda's asynchronous queue
//!   does: a function error (error response, crash, timeout) is retried up
//!   to `max_retries` times; a throttled invocation (the pool's queue is
//!   full) or an unavailable pool is retried until the event is older than
//!   `max_event_age` (Lambda retries throttles without counting them against
//!   the retries); then the event is dropped with a warning.
//!   `deliveries` > 1 plays the queue delivering one event more than once
//!   (Lambda documents that it can), for the tests;
//! - `RequestResponse` (the default): the function's response, 200; a
//!   throttled one is 429 `TooManyRequestsException`, as in AWS;
//! - `DryRun`: 204.
//!
//! An unknown function is 404 `ResourceNotFoundException`, an oversized
//! event 413 `RequestTooLargeException`, as in AWS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::lambda::invoke::{Invoke, InvokeError};

/// Largest event an asynchronous invocation may carry (AWS: 256 KB).
pub const MAX_ASYNC_PAYLOAD: usize = 256 * 1024;
/// Largest event a synchronous invocation may carry (AWS: 6 MB).
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
/// The wait before retrying a delivery (AWS waits a minute and more; the
/// local stack is quicker, so tests stay short).
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// How asynchronous events are delivered: the function's event invoke
/// config (`aws:lambda/functionEventInvokeConfig`) in AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncDelivery {
    /// Retries after a function error (AWS: 0–2, default 2).
    pub max_retries: u32,
    /// An event older than this is dropped (AWS: 60 s–6 h, default 6 h).
    pub max_event_age: Duration,
    /// Times each event is delivered (1; 2 plays a duplicate).
    pub deliveries: usize,
}

impl Default for AsyncDelivery {
    fn default() -> Self {
        AsyncDelivery {
            max_retries: 2,
            max_event_age: Duration::from_secs(6 * 60 * 60),
            deliveries: 1,
        }
    }
}

/// Counts of asynchronous events, for logs and tests.
#[derive(Debug, Default)]
pub struct AsyncCounts {
    pub queued: AtomicUsize,
    pub delivered: AtomicUsize,
    pub dropped: AtomicUsize,
}

struct Shared {
    function: String,
    invoke: Arc<dyn Invoke>,
    delivery: AsyncDelivery,
    counts: Arc<AsyncCounts>,
    tasks: TaskTracker,
}

/// The Invoke API of one function.
#[derive(Clone)]
pub struct LambdaApi {
    shared: Arc<Shared>,
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let mut response = (
        status,
        axum::Json(serde_json::json!({ "Type": "User", "message": message })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(kind) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

impl LambdaApi {
    pub fn new(function: &str, invoke: Arc<dyn Invoke>, delivery: AsyncDelivery) -> Self {
        LambdaApi {
            shared: Arc::new(Shared {
                function: function.to_string(),
                invoke,
                delivery,
                counts: Arc::new(AsyncCounts::default()),
                tasks: TaskTracker::new(),
            }),
        }
    }

    pub fn counts(&self) -> Arc<AsyncCounts> {
        self.shared.counts.clone()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/2015-03-31/functions/{name}/invocations",
                post(invocations),
            )
            .with_state(self.shared.clone())
    }

    /// Serves until the listener fails; events already queued keep being
    /// delivered until [`LambdaApi::drain`].
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    /// Waits (at most `grace`) for queued events to be delivered; true if all were.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.shared.tasks.close();
        tokio::time::timeout(grace, self.shared.tasks.wait())
            .await
            .is_ok()
    }
}

/// Whether `name` (a name, `name:$LATEST`, or an ARN) names `function`.
pub fn names_function(name: &str, function: &str) -> bool {
    let name = name.rsplit_once(":function:").map_or(name, |(_, n)| n);
    let name = name.split(':').next().unwrap_or(name);
    name == function
}

async fn invocations(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !names_function(&name, &shared.function) {
        return error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {name}"),
        );
    }
    let kind = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    let limit = if kind == "Event" {
        MAX_ASYNC_PAYLOAD
    } else {
        MAX_SYNC_PAYLOAD
    };
    if body.len() > limit {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            &format!(
                "{} bytes is more than the {limit} an {kind} invocation may carry",
                body.len()
            ),
        );
    }
    let event: Value = if body.is_empty() {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice(&body) {
            Ok(event) => event,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    &format!("Could not parse request body into json: {e}"),
                );
            }
        }
    };
    match kind {
        "Event" => {
            shared.counts.queued.fetch_add(1, Ordering::SeqCst);
            for _ in 0..shared.delivery.deliveries.max(1) {
                shared.tasks.spawn(deliver(shared.clone(), event.clone()));
            }
            StatusCode::ACCEPTED.into_response()
        }
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        "RequestResponse" => match shared.invoke.invoke(event).await {
            Ok(response) => (StatusCode::OK, axum::Json(response)).into_response(),
            Err(throttled @ InvokeError::Throttled { .. }) => error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                &throttled.to_string(),
            ),
            Err(e) => {
                let mut response = (
                    StatusCode::OK,
                    axum::Json(serde_json::json!({"errorMessage": e.to_string()})),
                )
                    .into_response();
                response.headers_mut().insert(
                    "x-amz-function-error",
                    HeaderValue::from_static("Unhandled"),
                );
                response
            }
        },
        other => error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("unknown X-Amz-Invocation-Type {other:?}"),
        ),
    }
}

/// Delivers one asynchronous event with Lambda's retry rules.
async fn deliver(shared: Arc<Shared>, event: Value) {
    let queued = Instant::now();
    let delivery = shared.delivery;
    let mut retries = 0u32;
    loop {
        if queued.elapsed() > delivery.max_event_age {
            warn!(function = %shared.function, age = ?queued.elapsed(), "asynchronous event dropped: older than its maximum age");
            break;
        }
        match shared.invoke.invoke(event.clone()).await {
            Ok(_) => {
                shared.counts.delivered.fetch_add(1, Ordering::SeqCst);
                debug!(function = %shared.function, "asynchronous event delivered");
                return;
            }
            Err(InvokeError::Unavailable(reason)) => {
                debug!(%reason, "function unavailable; the asynchronous event waits");
            }
            Err(throttled @ InvokeError::Throttled { .. }) => {
                debug!(error = %throttled, "function throttled; the asynchronous event waits");
            }
            Err(error) => {
                if retries >= delivery.max_retries {
                    warn!(function = %shared.function, %error, retries, "asynchronous event dropped after a function error");
                    break;
                }
                retries += 1;
                warn!(function = %shared.function, %error, retry = retries, "asynchronous event failed; retrying");
            }
        }
        tokio::time::sleep(RETRY_DELAY).await;
    }
    shared.counts.dropped.fetch_add(1, Ordering::SeqCst);
}

#[cfg(test)]
#[path = "invoke_api/tests.rs"]
mod tests;
