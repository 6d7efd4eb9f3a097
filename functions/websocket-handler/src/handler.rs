//! The function's entry point: one event in, one response out.
//!
//! Takes the raw event JSON, so even an event that is not an API Gateway
//! WebSocket event gets a response and a warn-level log line, and dispatches
//! on `requestContext.routeKey` to the functions in [`crate::routes`], which
//! answer before the invocation's [`Deadline`]. The one event it refuses
//! outright ([`Unserved`]) is a continuation it cannot trust: the invocation
//! fails, so Lambda counts an error and its on-failure destination keeps the
//! event.

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use protocol::{ErrorCode, ServerFrame, binary_frame, parse_client_frame, routes};
use serde_json::Value;

use crate::deadline::{Deadline, RESPONSE_RESERVE};
use crate::event::{ApiAddress, ReplyTarget, WebsocketEvent};
use crate::fanout::{self, Continuation, Served, Services};
use crate::messenger::{Messengers, send_frame};
use crate::registry::ConnectionRegistry;
use crate::routes::{bad_input, bad_request, response};

/// An event the function refuses to serve: a continuation that does not
/// parse or breaks a bound. The invocation fails with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unserved(pub String);

/// Serves one event, answering before `deadline`: an API Gateway event, or
/// the continuation of a broadcast ([`crate::fanout`]). Never panics,
/// whatever the JSON; only a bad continuation is [`Unserved`].
pub async fn handle(
    raw: Value,
    registry: &dyn ConnectionRegistry,
    messengers: &dyn Messengers,
    services: &Services<'_>,
    deadline: Deadline,
) -> Result<ApiGatewayProxyResponse, Unserved> {
    if let Some(continuation) = Continuation::from_event(&raw) {
        let continuation = continuation.map_err(|error| {
            tracing::error!(%error, "bad continuation event");
            Unserved(error)
        })?;
        return continue_broadcast(continuation, registry, messengers, services, deadline).await;
    }
    Ok(serve_api_event(raw, registry, messengers, services, deadline).await)
}

/// [`handle`] for the event's JSON text, as the runtime hands it over. An
/// API Gateway event with every field the routes need (nearly every event)
/// is read once, straight into its type; anything else — a continuation, an
/// event of another shape, a missing field — takes [`handle`]'s path
/// through a JSON value, which recognises it or explains what is wrong.
/// (Reading every event through a value first cost the function a tenth of
/// its CPU per `$connect`.)
pub async fn handle_json(
    raw: &str,
    registry: &dyn ConnectionRegistry,
    messengers: &dyn Messengers,
    services: &Services<'_>,
    deadline: Deadline,
) -> Result<ApiGatewayProxyResponse, Unserved> {
    if let Some(event) = WebsocketEvent::from_json(raw) {
        return Ok(serve_event(event, registry, messengers, services, deadline).await);
    }
    match serde_json::from_str(raw) {
        Ok(value) => handle(value, registry, messengers, services, deadline).await,
        Err(error) => {
            // The runtime hands over JSON it has already checked: unreachable
            // from Lambda, answered as any event that is not API Gateway's.
            tracing::warn!(%error, "bad event: not JSON");
            Ok(bad_request(ErrorCode::BadRequest))
        }
    }
}

/// An API Gateway event (or anything else that is not a continuation).
async fn serve_api_event(
    raw: Value,
    registry: &dyn ConnectionRegistry,
    messengers: &dyn Messengers,
    services: &Services<'_>,
    deadline: Deadline,
) -> ApiGatewayProxyResponse {
    let reply_target = ReplyTarget::from_raw(&raw);
    let event = match WebsocketEvent::parse(raw) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(%error, "bad event");
            if let Some(target) = reply_target {
                tell_unparsed_sender(&target, messengers, deadline).await;
            }
            return bad_request(ErrorCode::BadRequest);
        }
    };
    serve_event(event, registry, messengers, services, deadline).await
}

/// An API Gateway event whose fields are checked: dispatched on its route.
async fn serve_event(
    event: WebsocketEvent,
    registry: &dyn ConnectionRegistry,
    messengers: &dyn Messengers,
    services: &Services<'_>,
    deadline: Deadline,
) -> ApiGatewayProxyResponse {
    tracing::debug!(
        route = %event.route_key,
        connection_id = %event.connection_id,
        message_id = %event.message_id,
        "event"
    );
    let result = dispatch(&event, registry, messengers, services, deadline).await;
    tracing::info!(
        route = %event.route_key,
        connection_id = %event.connection_id,
        status = result.status_code,
        "handled"
    );
    result
}

async fn dispatch(
    event: &WebsocketEvent,
    registry: &dyn ConnectionRegistry,
    messengers: &dyn Messengers,
    services: &Services<'_>,
    deadline: Deadline,
) -> ApiGatewayProxyResponse {
    match event.route_key.as_str() {
        routes::CONNECT => return crate::routes::connect(registry, event).await,
        routes::DISCONNECT => return crate::routes::disconnect(registry, event).await,
        _ => {}
    }
    // Every other route answers through the management API.
    let messenger = match messengers.for_api(&event.api) {
        Ok(messenger) => messenger,
        Err(error) => {
            tracing::error!(connection_id = %event.connection_id, %error, "cannot reach the management API");
            return response(500, "management API unavailable");
        }
    };
    let messenger = messenger.as_ref();
    if event.is_base64_encoded {
        return bad_input(registry, messenger, event, &binary_frame(), deadline).await;
    }
    let frame = match parse_client_frame(event.body.as_deref().unwrap_or_default()) {
        Ok(frame) => frame,
        Err(error) => return bad_input(registry, messenger, event, &error, deadline).await,
    };
    // API Gateway picked the route from the same `action` (route selection
    // is `$request.body.action`), so the action is the one key to dispatch
    // on: `$default` then serves a known action exactly as its own route would.
    match frame.action.as_str() {
        routes::SEND_MESSAGE => {
            crate::routes::send_message(registry, messenger, services, event, &frame, deadline)
                .await
        }
        routes::PING => crate::routes::ping(registry, messenger, event, deadline).await,
        action => {
            bad_input(
                registry,
                messenger,
                event,
                &protocol::unknown_action(action),
                deadline,
            )
            .await
        }
    }
}

/// A broadcast's continuation: claim it, post a slice, hand on the rest,
/// report what was not reached. [`Unserved`] when no post can be made.
async fn continue_broadcast(
    continuation: Continuation,
    registry: &dyn ConnectionRegistry,
    messengers: &dyn Messengers,
    services: &Services<'_>,
    deadline: Deadline,
) -> Result<ApiGatewayProxyResponse, Unserved> {
    let (message_id, hop) = (continuation.message_id.clone(), continuation.hop);
    // Without a management endpoint nothing can be posted, now or by another
    // hop (a configuration error): the invocation fails, so Lambda counts an
    // error and the dead-letter queue keeps the event to send again once fixed.
    let messenger = messengers
        .for_api(&ApiAddress::default())
        .map_err(|error| {
            tracing::error!(%message_id, hop, %error, "cannot reach the management API");
            Unserved(format!(
                "continuation not served: cannot reach the management API: {error}"
            ))
        })?;
    let schedule = services.limits.schedule(deadline, RESPONSE_RESERVE);
    let fanout = services.fanout(registry, messenger.as_ref(), schedule.limits);
    match fanout::serve(
        &fanout,
        services.claims,
        services.relay,
        continuation,
        schedule,
    )
    .await
    {
        Served::Shared(share) => {
            services.losses.report(&message_id, &share.losses);
            let delivery = share.slice.delivery;
            tracing::info!(%message_id, hop, delivered = delivery.delivered,
                gone = delivery.gone, failed = delivery.failed, unconfirmed = delivery.unconfirmed,
                refused = share.slice.refused.len(), pages = share.slice.pages,
                rest = ?share.rest, retry = ?share.retry, not_reached = share.losses.total(),
                "broadcast continued");
            Ok(response(200, "ok"))
        }
        Served::Duplicate => Ok(response(200, "duplicate")),
        Served::Unclaimed { rest, losses } => {
            services.losses.report(&message_id, &losses);
            tracing::warn!(%message_id, hop, ?rest, "continuation not claimed; handed on again");
            Ok(response(200, "handed on again"))
        }
    }
}

/// An event that did not parse but names its connection: tell the sender,
/// unless it is a `$connect`/`$disconnect` (nothing can be posted to those).
async fn tell_unparsed_sender(
    target: &ReplyTarget,
    messengers: &dyn Messengers,
    deadline: Deadline,
) {
    if matches!(
        target.route_key.as_deref(),
        Some(routes::CONNECT | routes::DISCONNECT)
    ) {
        return;
    }
    let frame = ServerFrame::error(
        ErrorCode::BadRequest,
        "the request could not be read: its requestContext is missing fields or has fields of the wrong type",
    );
    match messengers.for_api(&target.api) {
        Ok(messenger) => {
            let sent = deadline.within(
                RESPONSE_RESERVE,
                send_frame(messenger.as_ref(), &target.connection_id, &frame),
            );
            match sent.await {
                Some(Ok(())) => {}
                Some(Err(error)) => {
                    tracing::warn!(connection_id = %target.connection_id, %error, "could not tell the sender its event was bad")
                }
                None => {
                    tracing::warn!(connection_id = %target.connection_id, "no time left to tell the sender its event was bad")
                }
            }
        }
        Err(error) => {
            tracing::warn!(connection_id = %target.connection_id, %error, "cannot reach the management API")
        }
    }
}

#[cfg(test)]
mod tests;
