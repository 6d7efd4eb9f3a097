//! `devstack check --conformance`: one suite of API Gateway's documented
//! WebSocket behaviours, run against the local stack (`--ready-file`) or a
//! deployment (the distribution URL), printed as a parity table — the
//! behaviour, where AWS documents it, the local result and the deployed one
//! (— for the side not run). Every row can fail: a failed row says why and
//! the command exits non-zero.
//!
//! What only the local stack can show is said so in its row: `@connections`
//! needs the deployment's management endpoint and AWS credentials (not
//! run against a deployment), and the idle and 2-hour closes are provoked
//! through the control locally, and waited for against AWS only with
//! `--slow` (10 minutes and 2 hours).

use axum::body::Bytes;
use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as RawFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use super::*;
use crate::control::Limit;
use crate::control::client::ControlClient;
use crate::sigv4::client::SignedClient;
use crate::stack::Endpoints;
use crate::tools::client::{self, Frame};
use protocol::limits::{MAX_FRAME_BYTES, MAX_MESSAGE_BYTES};

mod connections;
mod rows;
mod table;
mod time_limits;

pub use table::{Row, Table};

/// Where AWS documents each behaviour: a short name and the page.
pub mod reference {
    pub type Reference = (&'static str, &'static str);
    pub const QUOTAS: Reference = (
        "WebSocket quotas",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html",
    );
    pub const API_KEY: Reference = (
        "Route request settings for $connect",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-api-develop-routes.html#apigateway-websocket-api-route-request-connect",
    );
    pub const CONNECTIONS: Reference = (
        "@connections commands",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-how-to-call-websocket-api-connections.html",
    );
    pub const THROTTLING: Reference = (
        "Protect your WebSocket APIs",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-api-protect.html",
    );
    pub const ROUTES: Reference = (
        "Route selection expressions",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-api-develop-routes.html#apigateway-websocket-api-route-selection-expressions",
    );
    pub const DEFAULT_ROUTE: Reference = (
        "The $default route",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-routes-integrations.html",
    );
    pub const BINARY: Reference = (
        "Binary media types for WebSocket APIs",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-api-develop-binary-media-types.html",
    );
    pub const AUTHORIZER: Reference = (
        "REQUEST authorizers",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-lambda-auth.html",
    );
}

/// What the suite runs against.
pub struct Target {
    pub connector: Connector,
    /// Through the distribution (or the local edge), signed in when a token is in use.
    pub edge: Endpoint,
    /// The same without a token, for the sign-in rows.
    pub bare_edge: Endpoint,
    /// Whether a sign-in token is in use (sign-in on).
    pub signed_in: bool,
    /// The query-string parameter that carries the token.
    pub token_parameter: String,
    /// The API's own endpoint (`--direct`, or the local API layer).
    pub direct: Result<Endpoint, String>,
    /// The local stack's control and `@connections`; `None` against a deployment.
    pub local: Option<Local>,
    pub limit: Duration,
    /// Wait for the idle and 2-hour closes against a deployment.
    pub slow: bool,
    /// Messages sent at once for the throttling row.
    pub flood: u32,
}

/// The local stack's own APIs, from its ready file.
pub struct Local {
    pub control: ControlClient,
    pub management: SignedClient,
    /// `/<stage>`: the `@connections` path prefix.
    pub stage_path: String,
}

impl Local {
    pub fn new(endpoints: &Endpoints) -> anyhow::Result<Self> {
        Ok(Local {
            control: ControlClient::new(endpoints)?,
            management: SignedClient::new(&endpoints.management, &endpoints.region, "execute-api")?,
            stage_path: format!("/{}", endpoints.stage),
        })
    }
}

/// Runs every row; `on_row` sees each as soon as it is known.
pub async fn run_suite(target: &Target, mut on_row: impl FnMut(&Row)) -> Table {
    let mut table = Table {
        local: target.local.is_some(),
        rows: Vec::new(),
    };
    let mut record = |row: Row| {
        on_row(&row);
        table.rows.push(row);
    };
    record(rows::frame_limit(target).await);
    record(rows::message_limit(target).await);
    record(rows::binary_frame(target).await);
    record(rows::no_api_key(target).await);
    record(rows::route_selection(target).await);
    record(rows::default_route(target).await);
    record(rows::stage_throttling(target).await);
    record(connections::unknown_connection(target).await);
    record(connections::connections_api(target).await);
    let (idle, life) = time_limits::time_limits(target).await;
    record(idle);
    record(life);
    record(rows::sign_in_no_token(target).await);
    record(rows::sign_in_bad_token(target).await);
    table
}

/// Sends `text` as one message in frames of at most `frame` bytes.
async fn send_fragmented(
    ws: &mut Ws,
    text: &str,
    frame: usize,
    limit: Duration,
) -> Result<(), ProbeError> {
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(frame.max(1)).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
        let message = Message::Frame(RawFrame::message(
            chunk.to_vec(),
            opcode,
            i + 1 == chunks.len(),
        ));
        match tokio::time::timeout(limit, ws.send(message)).await {
            Ok(Ok(())) => {}
            // The server may close while the rest is still being sent.
            Ok(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
                return Ok(());
            }
            Ok(Err(tungstenite::Error::Io(_))) => return Ok(()),
            Ok(Err(error)) => return Err(ProbeError::Send(error)),
            Err(_) => return Err(ProbeError::SendTimeout(limit)),
        }
    }
    Ok(())
}

/// How a connection ended, read within `limit` (text frames skipped).
async fn ending(ws: &mut Ws, limit: Duration) -> Result<Option<u16>, String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client::next_frame(ws, left).await {
            Ok(Frame::Close(code)) => return Ok(code),
            Ok(Frame::Ended) => return Err("the connection ended without a close frame".into()),
            Ok(Frame::Text(_) | Frame::Binary(_)) => continue,
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// This client's connection id, as a second client sees it in a broadcast's `from`.
async fn connection_id(
    sender: &mut Ws,
    receiver: &mut Ws,
    limit: Duration,
) -> Result<String, String> {
    let nonce = json!({ "devstackConformance": uuid::Uuid::new_v4().to_string() });
    send(sender, &ClientFrame::send_message(nonce.clone()), limit)
        .await
        .map_err(|e| e.to_string())?;
    let from = wait_for(
        receiver,
        limit,
        "the broadcast on the second client",
        |frame| match frame {
            ServerFrame::Message { data, from, .. } if *data == nonce => Some(from.clone()),
            _ => None,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    wait_for(sender, limit, "\"sent\" on the sender", |frame| {
        matches!(frame, ServerFrame::Sent { .. }).then_some(())
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(from)
}

/// Drains whatever the stream still holds (used after a flood).
async fn drain(ws: &mut Ws, quiet: Duration) {
    while let Ok(Some(Ok(_))) = tokio::time::timeout(quiet, ws.next()).await {}
}
