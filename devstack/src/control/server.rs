//! The control endpoint: `POST /expire`, `/drop`, `/faults/post`,
//! `/faults/route`, `/faults/kill` and `DELETE /faults`, JSON in and out,
//! always on 127.0.0.1, every request signed ([`super`] says why).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::plan::{FaultPlan, PostFault, RouteFault};
use super::{Connections, Limit, SERVICE};
use crate::listener::{BodyError, read_body};
use crate::sigv4::{Refusal, SECRET_ACCESS_KEY, Scope, check_host, verify};

/// The largest control request body.
const MAX_BODY: usize = 16 * 1024;
/// How long a control request's body may take to arrive.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The control endpoint of one stack.
#[derive(Clone)]
pub struct ControlServer {
    shared: Arc<Shared>,
}

struct Shared {
    region: String,
    plan: Arc<FaultPlan>,
    connections: Arc<dyn Connections>,
}

impl ControlServer {
    pub fn new(region: &str, plan: Arc<FaultPlan>, connections: Arc<dyn Connections>) -> Self {
        ControlServer {
            shared: Arc::new(Shared {
                region: region.to_owned(),
                plan,
                connections,
            }),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/expire", post(expire))
            .route("/drop", post(drop_connection))
            .route("/faults/post", post(arm_post))
            .route("/faults/route", post(arm_route))
            .route("/faults/kill", post(arm_kill))
            .route("/faults", delete(clear))
            .fallback(|| async { error(StatusCode::NOT_FOUND, "no such control") })
            .layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                require_signature,
            ))
            .with_state(self.shared.clone())
    }

    /// Serves until the task is aborted (the stack's shutdown).
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

/// Passes on only requests to a loopback name, signed for [`SERVICE`] in
/// the stack's Region; refusals are 403 with the reason.
async fn require_signature(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let refuse = |refusal: Refusal| {
        warn!(
            path = request.uri().path(),
            ?refusal,
            "control request refused"
        );
        error(StatusCode::FORBIDDEN, &refusal.error().1)
    };
    if let Err(refusal) = check_host(request.headers()) {
        return refuse(refusal);
    }
    if !request.headers().contains_key(header::AUTHORIZATION) {
        return refuse(Refusal::Unsigned);
    }
    let (parts, body) = request.into_parts();
    let body = match read_body(body, MAX_BODY, BODY_READ_TIMEOUT).await {
        Ok(body) => body,
        Err(error @ BodyError::TooLarge(_)) => {
            return self::error(StatusCode::PAYLOAD_TOO_LARGE, &error.to_string());
        }
        Err(error) => return self::error(StatusCode::REQUEST_TIMEOUT, &error.to_string()),
    };
    let scope = Scope {
        region: shared.region.clone(),
        service: SERVICE,
    };
    if let Err(refusal) = verify(&parts, &body, &scope, SECRET_ACCESS_KEY, SystemTime::now()) {
        warn!(path = parts.uri.path(), ?refusal, "control request refused");
        return error(StatusCode::FORBIDDEN, &refusal.error().1);
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expire {
    /// One connection; every open connection when absent.
    connection: Option<String>,
    limit: Limit,
}

async fn expire(State(shared): State<Arc<Shared>>, Json(request): Json<Expire>) -> Response {
    let expired = shared
        .connections
        .expire(request.connection.as_deref(), request.limit);
    info!(connection = ?request.connection, limit = ?request.limit, expired, "control: connections expired");
    match (&request.connection, expired) {
        (Some(id), 0) => error(StatusCode::NOT_FOUND, &format!("no open connection {id:?}")),
        _ => Json(json!({ "expired": expired })).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DropRequest {
    connection: String,
}

async fn drop_connection(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<DropRequest>,
) -> Response {
    if !shared
        .connections
        .drop_without_disconnect(&request.connection)
    {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no open connection {:?}", request.connection),
        );
    }
    info!(connection = %request.connection, "control: connection dropped without $disconnect");
    Json(json!({ "dropped": request.connection })).into_response()
}

fn armed(result: Result<(), super::ArmError>, what: Value) -> Response {
    match result {
        Ok(()) => {
            info!(%what, "control: fault armed");
            Json(json!({ "armed": what })).into_response()
        }
        Err(refusal) => error(StatusCode::BAD_REQUEST, &refusal.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmPost {
    connection: String,
    answer: PostFault,
    count: u32,
}

async fn arm_post(State(shared): State<Arc<Shared>>, Json(request): Json<ArmPost>) -> Response {
    let result = shared
        .plan
        .arm_post(&request.connection, request.answer, request.count);
    armed(
        result,
        json!({"connection": request.connection, "answer": request.answer, "count": request.count}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmRoute {
    route: String,
    fault: RouteFault,
    count: u32,
}

async fn arm_route(State(shared): State<Arc<Shared>>, Json(request): Json<ArmRoute>) -> Response {
    let result = shared
        .plan
        .arm_route(&request.route, request.fault, request.count);
    armed(
        result,
        json!({"route": request.route, "fault": request.fault, "count": request.count}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmKill {
    count: u32,
}

async fn arm_kill(State(shared): State<Arc<Shared>>, Json(request): Json<ArmKill>) -> Response {
    armed(
        shared.plan.arm_kill(request.count),
        json!({"kill": request.count}),
    )
}

async fn clear(State(shared): State<Arc<Shared>>) -> Response {
    shared.plan.clear();
    info!("control: every fault disarmed");
    Json(json!({ "cleared": true })).into_response()
}
