//! One async function per route.
//!
//! Each route is plain Rust over the [`ConnectionRegistry`] and [`Messenger`]
//! traits and returns the response API Gateway gets. Adding a route means one
//! function here, one arm in [`crate::handler`], one constant in
//! `protocol::routes` and one route block in `Pulumi.yaml`.

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::encodings::Body;
use chrono::{DateTime, SecondsFormat, Utc};
use protocol::{ClientFrame, ErrorCode, ProtocolError, ServerFrame, check_message_data};

use crate::broadcast::broadcast;
use crate::event::WebsocketEvent;
use crate::messenger::{Messenger, PostError, send_frame};
use crate::registry::{Connection, ConnectionRegistry};

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
/// sender how many it reached.
pub async fn send_message(
    registry: &dyn ConnectionRegistry,
    messenger: &dyn Messenger,
    event: &WebsocketEvent,
    frame: &ClientFrame,
) -> ApiGatewayProxyResponse {
    let data = match check_message_data(frame.data.as_ref()) {
        Ok(data) => data,
        Err(error) => return bad_input(registry, messenger, event, &error).await,
    };
    let connections = match registry.list().await {
        Ok(connections) => connections,
        Err(error) => {
            tracing::error!(connection_id = %event.connection_id, %error, "cannot list connections for sendmessage");
            let frame = ServerFrame::error(
                ErrorCode::Internal,
                "the message could not be sent; try again",
            );
            let _ = reply(registry, messenger, &event.connection_id, &frame).await;
            return response(500, "connection registry unavailable");
        }
    };
    let recipients: Vec<String> = connections
        .into_iter()
        .filter(|id| *id != event.connection_id)
        .collect();
    let message = ServerFrame::Message {
        from: event.connection_id.clone(),
        data: data.clone(),
        sent_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    };
    let delivery = broadcast(
        registry,
        messenger,
        &recipients,
        message.to_text().as_bytes(),
    )
    .await;
    tracing::info!(
        connection_id = %event.connection_id,
        recipients = recipients.len(),
        delivered = delivery.delivered,
        gone = delivery.gone,
        failed = delivery.failed,
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
        )
        .await,
    )
}

/// `ping`: answer `pong` to the sender only.
pub async fn ping(
    registry: &dyn ConnectionRegistry,
    messenger: &dyn Messenger,
    event: &WebsocketEvent,
) -> ApiGatewayProxyResponse {
    reply_status(
        reply(
            registry,
            messenger,
            &event.connection_id,
            &ServerFrame::Pong,
        )
        .await,
    )
}

/// Bad input: the sender gets the error frame, the log says what was wrong
/// (the code, never the content), and API Gateway gets a 400.
pub async fn bad_input(
    registry: &dyn ConnectionRegistry,
    messenger: &dyn Messenger,
    event: &WebsocketEvent,
    error: &ProtocolError,
) -> ApiGatewayProxyResponse {
    tracing::warn!(
        connection_id = %event.connection_id,
        route = %event.route_key,
        code = ?error.code,
        "bad input from client"
    );
    let _ = reply(registry, messenger, &event.connection_id, &error.frame()).await;
    response(400, "bad request")
}

/// Sends one frame to one connection; a gone connection is removed from the
/// registry, any failure is logged.
pub async fn reply(
    registry: &dyn ConnectionRegistry,
    messenger: &dyn Messenger,
    connection_id: &str,
    frame: &ServerFrame,
) -> Result<(), PostError> {
    let result = send_frame(messenger, connection_id, frame).await;
    match &result {
        Ok(()) => {}
        Err(PostError::Gone) => {
            tracing::info!(%connection_id, "reply target is gone; removing it");
            if let Err(error) = registry.remove(connection_id).await {
                tracing::warn!(%connection_id, %error, "could not remove a gone connection");
            }
        }
        Err(PostError::Other(error)) => {
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
        Err(PostError::Other(_)) => response(500, "reply could not be posted"),
    }
}
