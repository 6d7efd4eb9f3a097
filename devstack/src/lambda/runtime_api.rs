//! The Lambda Runtime API (2018-06-01) of one function process: `/next`
//! hands it an event, `/response` and `/error` answer it, `/init/error`
//! reports a failed init.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;
use uuid::Uuid;

use super::invoke::InvokeError;
use super::{MAX_PAYLOAD_BYTES, RUNTIME_API_PREFIX};

pub(super) fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// An X-Ray trace header: `Root=1-{epoch seconds hex}-{96 random bits}`.
pub(super) fn trace_id() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let root = Uuid::new_v4().simple().to_string();
    let parent = Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{seconds:08x}-{};Parent={};Sampled=0",
        &root[..24],
        &parent[..16]
    )
}

/// The Runtime API endpoint of one function process.
pub(super) struct RuntimeApi {
    pub(super) arn: String,
    pub(super) next: mpsc::Sender<Invocation>,
    pub(super) next_rx: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    pub(super) in_flight: Mutex<Option<InFlight>>,
    pub(super) init: watch::Sender<InitState>,
    pub(super) closed: CancellationToken,
    /// `/next` requests the process has made: the pool freezes a process
    /// only once it asks for its next event, as Lambda does.
    pub(super) next_calls: watch::Sender<u64>,
}

/// An event waiting for the process's next `/next`.
pub(super) struct Invocation {
    pub(super) request_id: String,
    pub(super) deadline_ms: u64,
    pub(super) trace_id: String,
    pub(super) event: Bytes,
    pub(super) reply: oneshot::Sender<Result<Bytes, InvokeError>>,
}

/// The event the process is working on.
pub(super) struct InFlight {
    pub(super) request_id: String,
    pub(super) reply: oneshot::Sender<Result<Bytes, InvokeError>>,
}

pub(super) enum InitState {
    Starting,
    Ready,
    Failed(String),
}

impl RuntimeApi {
    pub(super) fn new(arn: String) -> Self {
        let (next, next_rx) = mpsc::channel(1);
        RuntimeApi {
            arn,
            next,
            next_rx: tokio::sync::Mutex::new(next_rx),
            in_flight: Mutex::new(None),
            init: watch::Sender::new(InitState::Starting),
            closed: CancellationToken::new(),
            next_calls: watch::Sender::new(0),
        }
    }

    pub(super) fn close(&self) {
        self.closed.cancel();
    }

    /// Answers the invocation in flight, if its request id is `request_id`.
    pub(super) fn complete(&self, request_id: &str, result: Result<Bytes, InvokeError>) -> bool {
        let mut in_flight = self.in_flight.lock();
        match in_flight.take() {
            Some(flight) if flight.request_id == request_id => {
                let _ = flight.reply.send(result);
                true
            }
            other => {
                *in_flight = other;
                false
            }
        }
    }

    pub(super) fn fail_in_flight(&self, error: InvokeError) {
        if let Some(flight) = self.in_flight.lock().take() {
            let _ = flight.reply.send(Err(error));
        }
    }
}

/// Serves one process's Runtime API until it is closed.
pub(super) fn serve_runtime_api(listener: tokio::net::TcpListener, api: Arc<RuntimeApi>) {
    let closed = api.closed.clone();
    let router = Router::new()
        .route(
            &format!("{RUNTIME_API_PREFIX}/invocation/next"),
            get(next_invocation),
        )
        .route(
            &format!("{RUNTIME_API_PREFIX}/invocation/{{request_id}}/response"),
            post(invocation_response),
        )
        .route(
            &format!("{RUNTIME_API_PREFIX}/invocation/{{request_id}}/error"),
            post(invocation_error),
        )
        .route(
            &format!("{RUNTIME_API_PREFIX}/init/error"),
            post(init_error),
        )
        .layer(DefaultBodyLimit::max(MAX_PAYLOAD_BYTES))
        .with_state(api);
    tokio::spawn(async move {
        tokio::select! {
            served = axum::serve(listener, router) => {
                if let Err(err) = served {
                    warn!("Runtime API endpoint failed: {err}");
                }
            }
            () = closed.cancelled() => {}
        }
    });
}

/// `GET /runtime/invocation/next`: blocks until there is an event.
pub(super) async fn next_invocation(State(api): State<Arc<RuntimeApi>>) -> Response {
    api.next_calls.send_modify(|calls| *calls += 1);
    api.init.send_if_modified(|state| {
        let starting = matches!(state, InitState::Starting);
        if starting {
            *state = InitState::Ready;
        }
        starting
    });
    let invocation = tokio::select! {
        invocation = async { api.next_rx.lock().await.recv().await } => invocation,
        () = api.closed.cancelled() => None,
    };
    let Some(invocation) = invocation else {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "the execution environment is shutting down",
        );
    };
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Lambda-Runtime-Aws-Request-Id", &invocation.request_id)
        .header("Lambda-Runtime-Deadline-Ms", invocation.deadline_ms)
        .header("Lambda-Runtime-Invoked-Function-Arn", &api.arn)
        .header("Lambda-Runtime-Trace-Id", &invocation.trace_id)
        .body(axum::body::Body::from(invocation.event));
    match response {
        Ok(response) => {
            let previous = api.in_flight.lock().replace(InFlight {
                request_id: invocation.request_id,
                reply: invocation.reply,
            });
            if let Some(previous) = previous {
                let _ = previous.reply.send(Err(InvokeError::Function {
                    error_type: "Runtime.Unknown".to_owned(),
                    message: "the runtime asked for the next event without answering this one"
                        .to_owned(),
                }));
            }
            response
        }
        Err(err) => {
            let _ = invocation.reply.send(Err(InvokeError::Unavailable(format!(
                "the event could not be handed to the runtime: {err}"
            ))));
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "bad invocation headers",
            )
        }
    }
}

/// `POST /runtime/invocation/{id}/response`
pub(super) async fn invocation_response(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(request_id): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(body) => {
            if api.complete(&request_id, Ok(body)) {
                accepted()
            } else {
                unknown_request_id()
            }
        }
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!(
                "Response payload size exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes)."
            );
            let error = InvokeError::Function {
                error_type: "Function.ResponseSizeTooLarge".to_owned(),
                message: message.clone(),
            };
            if !api.complete(&request_id, Err(error)) {
                return unknown_request_id();
            }
            api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &message,
            )
        }
        Err(rejection) => api_error(rejection.status(), "InvalidRequest", &rejection.body_text()),
    }
}

/// `POST /runtime/invocation/{id}/error`
pub(super) async fn invocation_error(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(request_id): UrlPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = body.unwrap_or_default();
    let (error_type, message) = error_report(&headers, &body);
    if api.complete(
        &request_id,
        Err(InvokeError::Function {
            error_type,
            message,
        }),
    ) {
        accepted()
    } else {
        unknown_request_id()
    }
}

/// `POST /runtime/init/error`
pub(super) async fn init_error(
    State(api): State<Arc<RuntimeApi>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = body.unwrap_or_default();
    let (error_type, message) = error_report(&headers, &body);
    let reported = api.init.send_if_modified(|state| {
        let starting = matches!(state, InitState::Starting);
        if starting {
            *state = InitState::Failed(format!("{error_type}: {message}"));
        }
        starting
    });
    if reported {
        accepted()
    } else {
        api_error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "init is over: report errors of an invocation on its /error",
        )
    }
}

/// The error type and message of an `/error` report: the body's `errorType`
/// and `errorMessage`, else the `Lambda-Runtime-Function-Error-Type` header.
pub(super) fn error_report(headers: &HeaderMap, body: &[u8]) -> (String, String) {
    let report: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error_type = report
        .get("errorType")
        .and_then(Value::as_str)
        .or_else(|| {
            headers
                .get("Lambda-Runtime-Function-Error-Type")
                .and_then(|value| value.to_str().ok())
        })
        .unwrap_or("Unhandled")
        .to_owned();
    let message = report
        .get("errorMessage")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    (error_type, message)
}

pub(super) fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({ "status": "OK" }))).into_response()
}

pub(super) fn unknown_request_id() -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestID",
        "no invocation with this request id is in flight",
    )
}

pub(super) fn api_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "errorType": error_type, "errorMessage": message })),
    )
        .into_response()
}
