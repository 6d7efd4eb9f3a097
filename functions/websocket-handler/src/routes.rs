//! One async function per route.
//!
//! Each route is plain Rust over the [`ConnectionRegistry`] and [`Messenger`]
//! traits and returns the response API Gateway gets, before the
//! invocation's [`Deadline`]. Adding a route means one
//! function here, one arm in [`crate::handler`], one constant in
//! `protocol::routes` and one route block in `Pulumi.yaml`.

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::encodings::Body;
use chrono::{DateTime, SecondsFormat, Utc};
use protocol::{ClientFrame, ErrorCode, ProtocolError, ServerFrame, check_message_data};

use crate::broadcast::POST_TIMEOUT;
use crate::deadline::{Deadline, REPLY_RESERVE, RESPONSE_RESERVE};
use crate::event::WebsocketEvent;
use crate::fanout::{self, Broadcast, Handover, Remainder, Services};
use crate::messenger::{Messenger, PostError, send_frame};
use crate::registry::{Connection, ConnectionRegistry, forget_gone};

/// A response with a short status text (never client content).
pub fn response(status_code: i64, text: &str) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status_code;
    response.body = Some(Body::Text(text.to_string()));
    response
}

pub fn ok() -> ApiGatewayProxyResponse {
    response(200, "ok")
}

/// `$connect`: record the connection. A registry failure refuses the
/// handshake (500), so no client is admitted that broadcasts cannot reach.
pub async fn connect(
    registry: &dyn ConnectionRegistry,
    event: &WebsocketEvent,
) -> ApiGatewayProxyResponse {
    let connected_at = DateTime::<Utc>::from_timestamp_millis(event.connected_at_ms)
        .filter(|t| t.timestamp() > 0)
        .unwrap_or_else(Utc::now);
    let connection = Connection {
        connection_id: event.connection_id.clone(),
        connected_at,
        source_ip: event.source_ip.clone(),
        user_agent: event.user_agent.clone(),
        user_id: event.user_id.clone(),
    };
    match registry.register(&connection).await {
        Ok(()) => ok(),
        Err(error) => {
            tracing::error!(connection_id = %event.connection_id, %error, "refusing the connection: it could not be registered");
            response(500, "connection could not be registered")
        }
    }
}

/// `$disconnect`: forget the connection.
pub async fn disconnect(
    registry: &dyn ConnectionRegistry,
    event: &WebsocketEvent,
) -> ApiGatewayProxyResponse {
    match registry.remove(&event.connection_id).await {
        Ok(()) => ok(),
        Err(error) => {
            tracing::error!(connection_id = %event.connection_id, %error, "could not remove a closed connection");
            response(500, "connection could not be removed")
        }
    }
}

/// `sendmessage`: send `data` to every other connection, then tell the
/// sender how many this invocation reached. The registry is read a page at
/// a time and posted to until the invocation's slice is over ([`fanout`]);
/// the rest of the broadcast is handed to an asynchronous invocation as the
/// slice stops, in time for the reply ([`Limits::schedule`](crate::fanout::Limits::schedule):
/// the drain reserve, [`REPLY_RESERVE`] and [`RESPONSE_RESERVE`] before the
/// deadline). What could not be reached is reported ([`crate::metrics`]).
pub async fn send_message(
    registry: &dyn ConnectionRegistry,
    messenger: &dyn Messenger,
    services: &Services<'_>,
    event: &WebsocketEvent,
    frame: &ClientFrame,
    deadline: Deadline,
) -> ApiGatewayProxyResponse {
    let data = match check_message_data(frame.data.as_ref()) {
        Ok(data) => data,
        Err(error) => return bad_input(registry, messenger, event, &error, deadline).await,
    };
    let message = ServerFrame::Message {
        id: event.message_id.clone(),
        from: event.connection_id.clone(),
        data: data.clone(),
        sent_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        user_id: event.user_id.clone(),
    }
    .to_text();
    let schedule = services
        .limits
        .schedule(deadline, REPLY_RESERVE + RESPONSE_RESERVE);
    let fanout = services.fanout(registry, messenger, schedule.limits);
    let broadcast = Broadcast {
        message_id: &event.message_id,
        sender: &event.connection_id,
        frame: &message,
    };
    let share = fanout::share(
        &fanout,
        services.relay,
        broadcast,
        0,
        0,
        Remainder::everyone(),
        schedule,
    )
    .await;
    services.losses.report(&event.message_id, &share.losses);
    if share.rest == Handover::Unread {
        // The sender hears it now rather than a chain of invocations failing later.
        tracing::error!(connection_id = %event.connection_id, "cannot list connections for sendmessage");
        let frame = ServerFrame::error(
            ErrorCode::Internal,
            "the message could not be sent; try again",
        );
        let _ = reply(registry, messenger, &event.connection_id, &frame, deadline).await;
        return response(500, "connection registry unavailable");
    }
    let delivery = share.slice.delivery;
    tracing::info!(
        connection_id = %event.connection_id,
        message_id = %event.message_id,
        delivered = delivery.delivered,
        gone = delivery.gone,
        failed = delivery.failed,
        unconfirmed = delivery.unconfirmed,
        refused = share.slice.refused.len(),
        pages = share.slice.pages,
        rest = ?share.rest,
        retry = ?share.retry,
        not_reached = share.losses.total(),
        "sendmessage"
    );
    reply_status(
        reply(
            registry,
            messenger,
            &event.connection_id,
            &ServerFrame::Sent {
                recipients: delivery.delivered,
            },
            deadline,
        )
        .await,
    )
}

/// `ping`: answer `pong` to the sender only.
pub async fn ping(
    registry: &dyn ConnectionRegistry,
    messenger: &dyn Messenger,
    event: &WebsocketEvent,
    deadline: Deadline,
) -> ApiGatewayProxyResponse {
    reply_status(
        reply(
            registry,
            messenger,
            &event.connection_id,
            &ServerFrame::Pong,
            deadline,
        )
        .await,
    )
}

/// Bad input: the sender gets the error frame, the log says what was wrong
/// (the code, never the content), and API Gateway gets a 400 whose body
/// names the code.
pub async fn bad_input(
    registry: &dyn ConnectionRegistry,
    messenger: &dyn Messenger,
    event: &WebsocketEvent,
    error: &ProtocolError,
    deadline: Deadline,
) -> ApiGatewayProxyResponse {
    tracing::warn!(
        connection_id = %event.connection_id,
        route = %event.route_key,
        code = ?error.code,
        "bad input from client"
    );
    let _ = reply(
        registry,
        messenger,
        &event.connection_id,
        &error.frame(),
        deadline,
    )
    .await;
    bad_request(error.code)
}

/// A 400 whose body names the error code the sender was sent,
/// e.g. `bad request: invalid_json`.
pub fn bad_request(code: ErrorCode) -> ApiGatewayProxyResponse {
    let name = serde_json::to_value(code)
        .ok()
        .and_then(|name| name.as_str().map(str::to_string))
        .unwrap_or_default();
    response(400, &format!("bad request: {name}"))
}

/// Sends one frame to one connection, giving up [`POST_TIMEOUT`] from now or
/// [`RESPONSE_RESERVE`] before the deadline, whichever comes first; a gone
/// connection is removed from the registry, any failure is logged.
pub async fn reply(
    registry: &dyn ConnectionRegistry,
    messenger: &dyn Messenger,
    connection_id: &str,
    frame: &ServerFrame,
    deadline: Deadline,
) -> Result<(), PostError> {
    let give_up = deadline
        .before(RESPONSE_RESERVE)
        .min(tokio::time::Instant::now() + POST_TIMEOUT);
    let result = tokio::time::timeout_at(give_up, send_frame(messenger, connection_id, frame))
        .await
        .unwrap_or_else(|_| {
            Err(PostError::Other(
                "timed out before the invocation's deadline".into(),
            ))
        });
    match &result {
        Ok(()) => {}
        Err(PostError::Gone) => {
            let forgotten = deadline.within(RESPONSE_RESERVE, forget_gone(registry, connection_id));
            if forgotten.await.is_none() {
                tracing::warn!(%connection_id, "no time left to remove a gone connection");
            }
        }
        Err(
            PostError::Refused(error) | PostError::Unconfirmed(error) | PostError::Other(error),
        ) => {
            tracing::warn!(%connection_id, %error, "reply could not be posted")
        }
    }
    result
}

/// The response for a route whose work ends with a reply: a reply that could
/// not be posted for a reason other than the client leaving is a failure.
fn reply_status(result: Result<(), PostError>) -> ApiGatewayProxyResponse {
    match result {
        Ok(()) | Err(PostError::Gone) => ok(),
        Err(PostError::Refused(_) | PostError::Unconfirmed(_) | PostError::Other(_)) => {
            response(500, "reply could not be posted")
        }
    }
}
