//! Routing a message: the route selection expression, the event API Gateway
//! builds for the function, and the invocation.

use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::apigw::{
    ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext,
};
use axum::body::Bytes;
use axum::http::HeaderName;
use chrono::Utc;
use protocol::{GatewayFrame, routes};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};

use super::throttle::Throttle;
use super::wire;
use super::{ConnectionHandle, ConnectionInfo, GatewayConfig, Outbound, Route, Shared, new_id};

/// The header API Gateway reads the key from when the API sets no expression.
const DEFAULT_API_KEY_HEADER: &str = "x-api-key";
use crate::console::StackEvent;
use crate::lambda::invoke::{InvokeError, Limit};

/// The key path of a `$request.body.<path>` route selection expression.
pub(super) fn body_selection_path(expression: &str) -> Option<Vec<String>> {
    let path = expression.strip_prefix("$request.body.")?;
    let parts: Vec<String> = path.split('.').map(str::to_string).collect();
    (!parts.iter().any(String::is_empty)).then_some(parts)
}

/// The header of an `$request.header.<name>` API key selection expression.
pub(super) fn api_key_header(expression: Option<&str>) -> Option<HeaderName> {
    let name = match expression {
        Some(expression) => expression.strip_prefix("$request.header.")?,
        None => DEFAULT_API_KEY_HEADER,
    };
    HeaderName::from_bytes(name.as_bytes()).ok()
}

/// What a deployment may change on a live stage: the routes, how they are
/// selected and throttled. Swapped whole ([`super::Gateway::swap_routing`]);
/// each handshake and message reads the current one.
pub(super) struct Routing {
    pub(super) routes: Vec<Route>,
    pub(super) selection_path: Option<Vec<String>>,
    pub(super) key_header: Option<HeaderName>,
    pub(super) throttle: Option<Throttle>,
}

impl Routing {
    pub(super) fn new(config: &GatewayConfig) -> Self {
        let selection_path = body_selection_path(&config.route_selection_expression);
        if selection_path.is_none() {
            warn!(
                expression = %config.route_selection_expression,
                "unsupported route selection expression; every message goes to $default"
            );
        }
        let key_header = api_key_header(config.api_key_selection_expression.as_deref());
        if key_header.is_none() {
            warn!(
                "unsupported API key selection expression; routes that require a key refuse every client"
            );
        }
        Routing {
            routes: config.routes.clone(),
            selection_path,
            key_header,
            throttle: config.throttle,
        }
    }
}

impl Shared {
    pub(super) fn route(&self, route_key: &str) -> Option<Route> {
        self.routing
            .load()
            .routes
            .iter()
            .find(|r| r.key == route_key)
            .cloned()
    }

    /// The route a text message takes: the selected route if declared,
    /// else `$default` if declared, else none (API Gateway answers
    /// "Forbidden").
    pub(super) fn select_route(&self, body: &str) -> Option<String> {
        let routing = self.routing.load();
        let selected = routing.selection_path.as_ref().and_then(|path| {
            let mut value: Value = serde_json::from_str(body).ok()?;
            for key in path {
                value = value.as_object_mut()?.remove(key)?;
            }
            match value {
                Value::String(key) => Some(key),
                _ => None,
            }
        });
        let declared = |key: &str| {
            routing
                .routes
                .iter()
                .find(|r| r.key == key)
                .map(|r| r.key.clone())
                .filter(|k| k != routes::CONNECT && k != routes::DISCONNECT)
        };
        selected
            .as_deref()
            .and_then(declared)
            .or_else(|| declared(routes::DEFAULT))
    }
    /// The event fields every event of a connection shares.
    pub(super) fn event(
        &self,
        info: &ConnectionInfo,
        route_key: &str,
        event_type: &str,
    ) -> ApiGatewayWebsocketProxyRequest {
        let now = Utc::now();
        let mut context = ApiGatewayWebsocketProxyRequestContext::default();
        context.route_key = Some(route_key.to_string());
        context.event_type = Some(event_type.to_string());
        context.message_direction = Some("IN".to_string());
        context.connection_id = Some(info.id.clone());
        context.connected_at = info.connected_at.timestamp_millis();
        context.request_time_epoch = now.timestamp_millis();
        context.request_time = Some(now.format("%d/%b/%Y:%H:%M:%S %z").to_string());
        context.request_id = Some(new_id());
        context.extended_request_id = Some(new_id());
        context.identity.source_ip = Some(info.source_ip.clone());
        context.identity.user_agent = info.user_agent.clone();
        context.domain_name = Some(self.config.domain_name.clone());
        context.stage = Some(self.config.stage.clone());
        context.apiid = Some(self.config.api_id.clone());
        if let Some(identity) = &info.authorizer {
            context.authorizer.fields = identity.clone().into_iter().collect();
        }
        let mut event = ApiGatewayWebsocketProxyRequest::default();
        event.request_context = context;
        event
    }

    pub(super) async fn invoke(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<Value, InvokeError> {
        let started = Instant::now();
        let context = &event.request_context;
        let result = match (
            self.route_fault(context.route_key.as_deref()).await,
            wire::to_wire(event),
        ) {
            (Some(injected), _) => Err(injected),
            (None, Ok(wire)) => self.invoke.invoke_json(Bytes::from(wire)).await,
            (None, Err(error)) => Err(InvokeError::Unavailable(format!(
                "encoding the {} event as JSON: {error}",
                context.route_key.as_deref().unwrap_or("?")
            ))),
        };
        self.events.publish(StackEvent::Invocation {
            connection_id: context.connection_id.clone().unwrap_or_default(),
            route: context.route_key.clone().unwrap_or_default(),
            outcome: match &result {
                // A response with a non-2xx `statusCode` (a `$default` that
                // answered 400) is the function saying no: not `ok`.
                Ok(response) => match super::connect::connect_status(response) {
                    status if status.is_success() => "ok".to_string(),
                    status => format!("answered {}", status.as_u16()),
                },
                Err(error) => error_kind(error).to_string(),
            },
            latency_ms: started.elapsed().as_millis() as u64,
        });
        result
    }

    pub(super) fn connection(&self, connection_id: &str) -> Option<ConnectionHandle> {
        self.connections.lock().get(connection_id).cloned()
    }
}

pub(super) fn error_kind(error: &InvokeError) -> &'static str {
    match error {
        InvokeError::Function { .. } => "function error",
        InvokeError::Crashed(_) => "function process crashed",
        InvokeError::Timeout(_) => "timeout",
        InvokeError::Unavailable(_) => "function unavailable",
        InvokeError::Throttled(Limit::Concurrency { .. }) => {
            "function throttled (TooManyRequestsException)"
        }
        InvokeError::Throttled(Limit::LocalWaiting { .. }) => {
            "function throttled by the local stack (too many invocations waiting; not an AWS limit)"
        }
    }
}

pub(super) fn spawn_message(
    shared: &Arc<Shared>,
    info: &Arc<ConnectionInfo>,
    body: String,
    outbound: &mpsc::Sender<Outbound>,
) {
    let (shared, info, outbound) = (shared.clone(), info.clone(), outbound.clone());
    tokio::spawn(async move { route_message(&shared, &info, body, &outbound).await });
}

/// Routes one message: selects the route, throttles, invokes.
pub(super) async fn route_message(
    shared: &Arc<Shared>,
    info: &Arc<ConnectionInfo>,
    body: String,
    outbound: &mpsc::Sender<Outbound>,
) {
    let started = Instant::now();
    let route = shared.select_route(&body);
    let mut event = shared.event(info, route.as_deref().unwrap_or(routes::DEFAULT), "MESSAGE");
    let request_id = event.request_context.request_id.clone().unwrap_or_default();
    let gateway_frame = |message: &str| {
        Outbound::Frame(Message::text(
            GatewayFrame {
                message: message.to_string(),
                connection_id: info.id.clone(),
                request_id: request_id.clone(),
            }
            .to_text(),
        ))
    };
    let log = |route: &str, outcome: &str| {
        info!(
            connection_id = %info.id,
            route,
            outcome,
            latency_ms = started.elapsed().as_millis() as u64,
            "message routed"
        );
    };
    let Some(route) = route else {
        log("(none)", "no route");
        let _ = outbound.send(gateway_frame("Forbidden")).await;
        return;
    };
    let throttled = if !shared.admit(&route) {
        Some("throttled")
    } else if shared.account.request().is_err() {
        Some("throttled: account request rate reached (--account-rate-limit)")
    } else {
        None
    };
    if let Some(outcome) = throttled {
        log(&route, outcome);
        shared.events.publish(StackEvent::Throttled {
            connection_id: info.id.clone(),
            route: route.clone(),
        });
        let _ = outbound
            .send(gateway_frame(GatewayFrame::TOO_MANY_REQUESTS))
            .await;
        return;
    }
    event.request_context.message_id = Some(new_id());
    event.body = Some(body);
    match shared.invoke(&event).await {
        Ok(_) => log(&route, "ok"),
        Err(error) => {
            log(&route, error_kind(&error));
            let _ = outbound
                .send(gateway_frame(GatewayFrame::INTERNAL_SERVER_ERROR))
                .await;
        }
    }
}
