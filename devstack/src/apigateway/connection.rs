//! One connection's task: reads the client's frames, writes what is queued
//! for it, enforces the limits, and runs `$disconnect` when it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use protocol::routes;
use tokio::sync::{mpsc, watch};
use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::control::Forced;
use super::routing::{error_kind, spawn_message};
use super::websocket::{self, ServerSocket};
use super::{CLOSE_HANDSHAKE, ConnectionInfo, Disconnect, Outbound, Shared};
use crate::console::StackEvent;

/// Reads the client's frames and writes what is queued for it until the
/// connection ends; returns how it ended. Writing a frame is bounded by the
/// send timeout, and the idle timer, the connection's life limit, shutdown
/// and an overflowed queue are watched while a frame is being written too, so
/// a client that stops reading cannot hold the task.
pub(super) async fn run_connection(
    shared: &Arc<Shared>,
    info: &Arc<ConnectionInfo>,
    mut socket: ServerSocket,
    (outbound_tx, mut outbound_rx): (mpsc::Sender<Outbound>, mpsc::Receiver<Outbound>),
    not_reading: CancellationToken,
    mut forced: watch::Receiver<Option<Forced>>,
) -> Disconnect {
    let limits = shared.config.limits;
    let mut shutdown = shared.shutdown.subscribe();
    let idle = tokio::time::sleep(limits.idle_timeout);
    let life = tokio::time::sleep(limits.max_connection_life);
    tokio::pin!(idle, life);
    let already_down = *shutdown.borrow_and_update();
    if already_down {
        return close(&mut socket, Disconnect::going_away()).await;
    }
    let ending = loop {
        tokio::select! {
            frame = socket.next() => {
                let message = match received(frame, info) {
                    Ok(message) => message,
                    Err(ending) => break ending,
                };
                idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                info.last_active_ms.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
                match message {
                    Message::Text(text) => spawn_message(shared, info, text.to_string(), &outbound_tx),
                    // API Gateway takes no binary frame from a client: it
                    // closes the connection with 1003 (docs: "Binary media
                    // types for WebSocket APIs"); no route is invoked.
                    Message::Binary(_) => break Ending::Close(Disconnect::new(1003, "Unsupported data")),
                    Message::Close(frame) => {
                        drain(&mut socket, tokio::time::Instant::now() + CLOSE_HANDSHAKE).await;
                        return match frame {
                            Some(frame) => Disconnect { status_code: frame.code.into(), reason: frame.reason.to_string() },
                            None => Disconnect::new(1005, "Client-side close frame status not set"),
                        };
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
            Some(outbound) = outbound_rx.recv() => {
                let message = match outbound {
                    Outbound::Frame(message) => message,
                    Outbound::Post(message) => {
                        info.queued_bytes.fetch_sub(message.len(), Ordering::Relaxed);
                        message
                    }
                    Outbound::Close(frame) => {
                        break Ending::Close(Disconnect { status_code: frame.code.into(), reason: frame.reason.to_string() });
                    }
                };
                let ended = ended(idle.as_mut(), life.as_mut(), &mut shutdown, &not_reading, &mut forced);
                if let Err(ending) = send(&mut socket, info, message, limits.send_timeout, ended).await {
                    break ending;
                }
            }
            ended = ended(idle.as_mut(), life.as_mut(), &mut shutdown, &not_reading, &mut forced) => {
                break ended;
            }
        }
    };
    match ending {
        Ending::Abnormal => Disconnect::new(1006, "Connection closed abnormally"),
        // The socket is dropped unclosed: the client sees its connection lost.
        Ending::Dropped => Disconnect::new(1006, "Dropped by the control"),
        Ending::Close(disconnect) => close(&mut socket, disconnect).await,
    }
}

/// How a connection ends other than by the client's close frame.
enum Ending {
    /// The socket is gone: no close frame can be sent (1006).
    Abnormal,
    /// Closed by us with this status, through [`close`].
    Close(Disconnect),
    /// Dropped by the control room: no close frame, no `$disconnect`.
    Dropped,
}

/// The client's next message, or how the connection ends if the stream
/// ended or failed.
fn received(
    frame: Option<Result<Message, WsError>>,
    info: &ConnectionInfo,
) -> Result<Message, Ending> {
    match frame {
        Some(Ok(message)) => Ok(message),
        None
        | Some(Err(
            WsError::ConnectionClosed
            | WsError::AlreadyClosed
            | WsError::Io(_)
            | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
        )) => Err(Ending::Abnormal),
        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
            Err(Ending::Close(Disconnect::new(1009, "Message too big")))
        }
        Some(Err(error)) => {
            debug!(connection_id = %info.id, %error, "connection failed");
            Err(Ending::Close(Disconnect::new(1002, "Protocol error")))
        }
    }
}

/// Writes one queued frame within `send_timeout`, while watching what else
/// ends the connection (`ended`): a client that does not read is closed with
/// 1008.
async fn send(
    socket: &mut ServerSocket,
    info: &ConnectionInfo,
    message: Message,
    send_timeout: Duration,
    ended: impl Future<Output = Ending>,
) -> Result<(), Ending> {
    let deadline = tokio::time::Instant::now() + send_timeout;
    tokio::select! {
        sent = tokio::time::timeout_at(deadline, socket.send(message)) => match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ending::Abnormal),
            Err(_) => {
                warn!(connection_id = %info.id, timeout_ms = send_timeout.as_millis() as u64,
                    "send timed out: closing a connection that does not read (1008)");
                Err(Ending::Close(Disconnect::not_reading("send timed out")))
            }
        },
        ended = ended => Err(ended),
    }
}

/// Waits for whatever ends a connection other than its own socket: the idle
/// timer, the life limit (or the control room reaching either now),
/// shutdown, a post that found its queue full, or the control dropping it.
async fn ended(
    idle: Pin<&mut Sleep>,
    life: Pin<&mut Sleep>,
    shutdown: &mut watch::Receiver<bool>,
    not_reading: &CancellationToken,
    forced: &mut watch::Receiver<Option<Forced>>,
) -> Ending {
    tokio::select! {
        () = idle => Ending::Close(Disconnect::going_away()),
        () = life => Ending::Close(Disconnect::going_away()),
        _ = shutdown.wait_for(|down| *down) => Ending::Close(Disconnect::going_away()),
        () = not_reading.cancelled() => Ending::Close(Disconnect::not_reading("outbound queue full")),
        forced = forced.wait_for(Option::is_some) => match forced.as_deref() {
            Ok(Some(Forced::Drop)) => Ending::Dropped,
            // API Gateway's close at either limit; a closed channel cannot
            // happen while the handle lives, and ends the connection as expired.
            _ => Ending::Close(Disconnect::going_away()),
        },
    }
}

/// Sends the close frame for `disconnect` and ends the connection with
/// [`drain`]. Also after a frame-size error: tungstenite's stream is over
/// then, but the socket still writes, and the client may still be sending the
/// rest of its oversize frame, which `drain` reads.
pub(super) async fn close(socket: &mut ServerSocket, disconnect: Disconnect) -> Disconnect {
    let deadline = tokio::time::Instant::now() + CLOSE_HANDSHAKE;
    let frame = CloseFrame {
        code: CloseCode::from(disconnect.status_code),
        reason: disconnect.reason.clone().into(),
    };
    // `send` returns once the frame is flushed to the socket; bounded, as a
    // client that reads nothing can leave no room for it.
    let _ = tokio::time::timeout_at(deadline, socket.send(Message::Close(Some(frame)))).await;
    drain(socket, deadline).await;
    disconnect
}

/// Ends a connection whose close frame is sent (ours, or tungstenite's reply
/// to the client's): reads the client's frames until its close frame (which
/// also flushes a queued reply), then the lingering close — FIN, and the
/// client's remaining bytes read and discarded — all by `deadline`.
pub(super) async fn drain(socket: &mut ServerSocket, deadline: tokio::time::Instant) {
    let _ = tokio::time::timeout_at(deadline, async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    websocket::linger(socket.get_mut(), deadline).await;
}

/// Removes the connection and runs `$disconnect`.
pub(super) async fn end_connection(
    shared: &Arc<Shared>,
    info: &Arc<ConnectionInfo>,
    disconnect: Disconnect,
    run_disconnect: bool,
) {
    shared.connections.lock().remove(&info.id);
    let lifetime = Utc::now() - info.connected_at;
    info!(
        connection_id = %info.id,
        status_code = disconnect.status_code,
        duration_ms = lifetime.num_milliseconds(),
        "connection closed"
    );
    shared.events.publish(StackEvent::ConnectionClosed {
        connection_id: info.id.clone(),
        status_code: disconnect.status_code,
        reason: disconnect.reason.clone(),
        duration_ms: u64::try_from(lifetime.num_milliseconds()).unwrap_or(0),
    });
    if !run_disconnect || shared.route(routes::DISCONNECT).is_none() {
        return;
    }
    let started = Instant::now();
    let mut event = shared.event(info, routes::DISCONNECT, "DISCONNECT");
    event.request_context.disconnect_status_code = Some(i64::from(disconnect.status_code));
    event.request_context.disconnect_reason = Some(disconnect.reason);
    let outcome = match shared.invoke(&event).await {
        Ok(_) => "ok",
        Err(ref error) => error_kind(error),
    };
    info!(
        connection_id = %info.id,
        route = routes::DISCONNECT,
        outcome,
        latency_ms = started.elapsed().as_millis() as u64,
        "route invoked"
    );
}
