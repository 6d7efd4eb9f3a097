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
//!
//! Who may call it, as on AWS: requests to a loopback name (`127.0.0.1`,
//! `localhost`, `[::1]`), signed with SigV4 for `lambda` in the stack's
//! Region with the credentials devstack gives the function, with the
//! `Content-Type` the SDK sends (`application/octet-stream` or
//! `application/json`): anything else gets Lambda's 403 (or 415
//! `UnsupportedMediaTypeException`) before its body is looked at, so a web
//! page's cross-site `text/plain` POST cannot forge a continuation. The body
//! is read within [`BODY_READ_TIMEOUT`]; queued events are bounded in count
//! ([`MAX_QUEUED_EVENTS`]) and bytes ([`MAX_QUEUED_BYTES`]), over either
//! an `Event` invocation gets 429 `TooManyRequestsException` naming it; the
//! listener holds at most [`MAX_CONNECTIONS`] sockets.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::lambda::invoke::{Invoke, InvokeError};
use crate::listener::{BodyError, ListenerLimits, read_body};
use crate::sigv4::{Refusal, SECRET_ACCESS_KEY, Scope, check_host, verify};
use queue::Queued;
pub use queue::{AsyncCounts, MAX_QUEUED_BYTES, MAX_QUEUED_EVENTS};

/// Largest event an asynchronous invocation may carry (AWS: 256 KB).
pub const MAX_ASYNC_PAYLOAD: usize = 256 * 1024;
/// Largest event a synchronous invocation may carry (AWS: 6 MB).
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
/// How long a request's body may take to arrive.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Sockets the Invoke API's listener holds at most (16 function processes
/// keep a few pooled connections each).
pub const MAX_CONNECTIONS: usize = 1_024;
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

struct Shared {
    function: String,
    /// The stack's Region: requests must be signed for it.
    region: String,
    /// The listener's stop signal; never sent: the stack aborts the server
    /// once [`LambdaApi::drain`] is done (queued events may still invoke).
    shutdown: watch::Sender<bool>,
    invoke: Arc<dyn Invoke>,
    /// Swapped by watch mode when the event invoke config is edited; each
    /// event keeps the rules it was queued under.
    delivery: parking_lot::Mutex<AsyncDelivery>,
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
    pub fn new(
        function: &str,
        region: &str,
        invoke: Arc<dyn Invoke>,
        delivery: AsyncDelivery,
    ) -> Self {
        LambdaApi {
            shared: Arc::new(Shared {
                function: function.to_string(),
                region: region.to_string(),
                shutdown: watch::channel(false).0,
                invoke,
                delivery: parking_lot::Mutex::new(delivery),
                counts: Arc::new(AsyncCounts::default()),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Applies an edited event invoke config to events queued from now,
    /// as a deployment does (watch mode).
    pub fn swap_retries(&self, max_retries: u32, max_event_age: Duration) {
        let mut delivery = self.shared.delivery.lock();
        delivery.max_retries = max_retries;
        delivery.max_event_age = max_event_age;
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

    /// Serves at most [`MAX_CONNECTIONS`] sockets, each with the
    /// listener's header-read timeout, until the task is aborted; events
    /// already queued keep being delivered until [`LambdaApi::drain`].
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        let limits = ListenerLimits {
            max_connections: MAX_CONNECTIONS,
            ..ListenerLimits::default()
        };
        let shutdown = self.shared.shutdown.subscribe();
        crate::listener::serve(listener, self.router(), limits, shutdown).await
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

/// Lambda's answer to a request that is not let in.
fn refused(refusal: &Refusal) -> Response {
    let (kind, message) = refusal.error();
    error(StatusCode::FORBIDDEN, kind, &message)
}

/// The content types the SDK sends an `Invoke` with.
fn accepted_content_type(headers: &HeaderMap) -> bool {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/octet-stream")
        || essence.eq_ignore_ascii_case("application/json")
}

async fn invocations(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    if let Err(refusal) = check_host(headers) {
        warn!(?refusal, "Invoke API request refused");
        return refused(&refusal);
    }
    if !headers.contains_key(header::AUTHORIZATION) {
        warn!("Invoke API request refused: unsigned");
        return refused(&Refusal::Unsigned);
    }
    if !accepted_content_type(headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaTypeException",
            "The content type of the Invoke request body is not JSON: \
             send application/octet-stream or application/json",
        );
    }
    let body = match read_body(body, MAX_SYNC_PAYLOAD + 1, BODY_READ_TIMEOUT).await {
        Ok(body) => body,
        Err(BodyError::TooLarge(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                &format!(
                    "the request body is more than the {MAX_SYNC_PAYLOAD} bytes an invocation may carry"
                ),
            );
        }
        Err(problem) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "InvalidRequestContentException",
                &problem.to_string(),
            );
        }
    };
    let scope = Scope {
        region: shared.region.clone(),
        service: "lambda",
    };
    if let Err(refusal) = verify(&parts, &body, &scope, SECRET_ACCESS_KEY, SystemTime::now()) {
        warn!(?refusal, "Invoke API request refused");
        return refused(&refusal);
    }
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
    // Checked to be JSON, then handed on as sent.
    let event = if body.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        match serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            Ok(_) => body.clone(),
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
            let delivery = *shared.delivery.lock();
            let deliveries = delivery.deliveries.max(1);
            let mut places = Vec::with_capacity(deliveries);
            for _ in 0..deliveries {
                match Queued::reserve(&shared.counts, body.len()) {
                    Ok(place) => places.push(place),
                    Err(bound) => {
                        warn!(function = %shared.function, %bound, "asynchronous invocation refused with 429");
                        return error(
                            StatusCode::TOO_MANY_REQUESTS,
                            "TooManyRequestsException",
                            &bound,
                        );
                    }
                }
            }
            shared.counts.queued.fetch_add(1, Ordering::SeqCst);
            for place in places {
                shared
                    .tasks
                    .spawn(deliver(shared.clone(), event.clone(), delivery, place));
            }
            StatusCode::ACCEPTED.into_response()
        }
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        "RequestResponse" => match shared.invoke.invoke_json(event).await {
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
async fn deliver(shared: Arc<Shared>, event: Bytes, delivery: AsyncDelivery, _place: Queued) {
    let queued = Instant::now();
    let mut retries = 0u32;
    loop {
        if queued.elapsed() > delivery.max_event_age {
            warn!(function = %shared.function, age = ?queued.elapsed(), "asynchronous event dropped: older than its maximum age");
            break;
        }
        match shared.invoke.invoke_json(event.clone()).await {
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

#[path = "invoke_api/queue.rs"]
mod queue;
#[cfg(test)]
#[path = "invoke_api/tests.rs"]
mod tests;
