//! The probes the checker runs over an open connection: ping round trips, a
//! broadcast between two clients, a clean close; and the refusal the direct
//! endpoint must give.

use super::*;
use crate::tools::client::{self, CloseError, NextTextError};

/// Why a probe over an open connection failed; each names what it was
/// waiting for, so the report says which step broke.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("sending failed: {0}")]
    Send(tungstenite::Error),
    #[error("sending timed out after {}s", .0.as_secs())]
    SendTimeout(Duration),
    #[error("connection failed while waiting for {what}: {source}")]
    Connection {
        what: String,
        source: tungstenite::Error,
    },
    #[error("connection ended while waiting for {what}")]
    Ended { what: String },
    #[error("error frame while waiting for {what}: {code:?}: {message}")]
    ErrorFrame {
        what: String,
        code: protocol::ErrorCode,
        message: String,
    },
    #[error("API Gateway answered \"{message}\" while waiting for {what}")]
    Gateway { what: String, message: String },
    #[error("unexpected frame while waiting for {what} ({bytes} bytes)")]
    UnexpectedFrame { what: String, bytes: usize },
    #[error("server closed the connection{} while waiting for {what}", .code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    Closed { what: String, code: Option<u16> },
    #[error("unexpected binary frame while waiting for {what}")]
    Binary { what: String },
    #[error("no {what} within {}s", .limit.as_secs())]
    Timeout { what: String, limit: Duration },
    #[error(transparent)]
    Close(#[from] CloseError),
}

/// One ping → pong; the time from sending the ping to reading the pong.
pub(super) async fn round_trip(ws: &mut Ws, limit: Duration) -> Result<Duration, ProbeError> {
    let started = Instant::now();
    send(ws, &ClientFrame::ping(), limit).await?;
    wait_for(ws, limit, "pong", |frame| {
        matches!(frame, ServerFrame::Pong).then_some(())
    })
    .await?;
    Ok(started.elapsed())
}

pub(super) async fn round_trips(ws: &mut Ws, messages: u32, limit: Duration) -> Outcome {
    let mut samples = Vec::with_capacity(messages as usize);
    for done in 0..messages {
        match round_trip(ws, limit).await {
            Ok(took) => samples.push(took),
            Err(error) => {
                return Outcome::fail(
                    names::ROUND_TRIP,
                    format!("after {done} of {messages} round trips: {error}"),
                );
            }
        }
    }
    match Percentiles::of(&samples) {
        Some(p) => Outcome::pass(
            names::ROUND_TRIP,
            format!(
                "{} pings: p50 {}, p95 {}, p99 {} (max {})",
                p.samples,
                ms(p.p50),
                ms(p.p95),
                ms(p.p99),
                ms(p.max)
            ),
        )
        .figure("p50Ms", p.p50)
        .figure("p95Ms", p.p95)
        .figure("p99Ms", p.p99)
        .figure("maxMs", p.max),
        None => Outcome::fail(names::ROUND_TRIP, "no round trip was measured"),
    }
}

/// `sendmessage` from `sender` must reach `receiver`, and the sender must be
/// told it reached at least one connection.
pub(super) async fn broadcast(sender: &mut Ws, receiver: &mut Ws, limit: Duration) -> Outcome {
    // A value no other client sends, so messages from other users of a live
    // deployment are told apart from ours.
    let nonce = json!({ "devstackCheck": uuid::Uuid::new_v4().to_string() });
    let started = Instant::now();
    if let Err(error) = send(sender, &ClientFrame::send_message(nonce.clone()), limit).await {
        return Outcome::fail(names::BROADCAST, error.to_string());
    }
    let received = wait_for(
        receiver,
        limit,
        "the message on the second client",
        |frame| match frame {
            ServerFrame::Message { data, from, .. } if *data == nonce => Some(from.clone()),
            _ => None,
        },
    )
    .await;
    let delivered = started.elapsed();
    let from = match received {
        Ok(from) => from,
        Err(error) => return Outcome::fail(names::BROADCAST, format!("second client: {error}")),
    };
    if from.is_empty() {
        return Outcome::fail(
            names::BROADCAST,
            "the message reached the second client without its sender's id",
        );
    }
    let recipients = wait_for(
        sender,
        limit,
        "\"sent\" on the sender",
        |frame| match frame {
            ServerFrame::Sent { recipients } => Some(*recipients),
            _ => None,
        },
    )
    .await;
    match recipients {
        Ok(0) => Outcome::fail(
            names::BROADCAST,
            "the second client got the message, but the sender was told it reached 0 connections",
        ),
        Ok(n) => Outcome::pass(
            names::BROADCAST,
            format!(
                "the second client received it in {}; the sender reached {n} connection(s)",
                ms(delivered)
            ),
        )
        .figure("deliveryMs", delivered),
        Err(error) => Outcome::fail(names::BROADCAST, format!("sender: {error}")),
    }
}

/// Closes with a close frame and waits for the server's.
pub(super) async fn close(mut ws: Ws, limit: Duration) -> Result<(), ProbeError> {
    Ok(client::close(&mut ws, limit).await?)
}

/// The direct endpoint must refuse the handshake with 403.
pub(super) async fn expect_refusal(
    connector: &Connector,
    endpoint: &Endpoint,
    name: &'static str,
    key: Option<&str>,
) -> Outcome {
    let without = if key.is_some() {
        "with a wrong key"
    } else {
        "without a key"
    };
    match connector.connect(endpoint, key).await {
        Err(ConnectError::Refused { status: 403 }) => {
            Outcome::pass(name, format!("refused {without} with HTTP 403"))
        }
        Err(ConnectError::Refused { status }) => Outcome::fail(
            name,
            format!("refused {without} with HTTP {status}, but API Gateway refuses with 403"),
        ),
        Err(error) => Outcome::fail(name, format!("direct endpoint: {error}")),
        Ok(connected) => {
            let _ = close(connected.ws, Duration::from_secs(2)).await;
            Outcome::fail(
                name,
                format!(
                    "the direct endpoint ACCEPTED a client {without}: traffic can skip CloudFront and WAF \
                     (does $connect require the API key?)"
                ),
            )
        }
    }
}

/// With sign-in on, a handshake through the distribution without a token
/// is refused by API Gateway with 401 (the authorizer is not invoked).
pub(super) async fn expect_sign_in_refusal(connector: &Connector, edge: &Endpoint) -> Outcome {
    let name = names::SIGN_IN_WITHOUT_TOKEN;
    match connector.connect(edge, None).await {
        Err(ConnectError::Refused { status: 401 }) => {
            Outcome::pass(name, "refused without a token with HTTP 401")
        }
        Err(ConnectError::Refused { status }) => Outcome::fail(
            name,
            format!("refused without a token with HTTP {status}, but API Gateway refuses with 401"),
        ),
        Err(error) => Outcome::fail(name, format!("through the distribution: {error}")),
        Ok(connected) => {
            let _ = close(connected.ws, Duration::from_secs(2)).await;
            Outcome::fail(
                name,
                "a client WITHOUT a token connected: sign-in is off on $connect (config signIn)",
            )
        }
    }
}

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(super) async fn send(
    ws: &mut Ws,
    frame: &ClientFrame,
    limit: Duration,
) -> Result<(), ProbeError> {
    match tokio::time::timeout(limit, ws.send(Message::text(frame.to_text()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(ProbeError::Send(error)),
        Err(_) => Err(ProbeError::SendTimeout(limit)),
    }
}

/// Reads frames until `pick` accepts one. Messages broadcast by other clients
/// are skipped; an error frame, an API Gateway error or the end of the
/// connection fails.
pub(super) async fn wait_for<T>(
    ws: &mut Ws,
    limit: Duration,
    what: &str,
    mut pick: impl FnMut(&ServerFrame) -> Option<T>,
) -> Result<T, ProbeError> {
    let what = what.to_string();
    let picked = client::next_text(ws, limit, |text| {
        let Some(frame) = ServerFrame::parse(text) else {
            return Some(Err(match serde_json::from_str::<GatewayFrame>(text) {
                Ok(gateway) => ProbeError::Gateway {
                    what: what.clone(),
                    message: gateway.message,
                },
                Err(_) => ProbeError::UnexpectedFrame {
                    what: what.clone(),
                    bytes: text.len(),
                },
            }));
        };
        if let Some(found) = pick(&frame) {
            return Some(Ok(found));
        }
        match frame {
            ServerFrame::Error { code, message } => Some(Err(ProbeError::ErrorFrame {
                what: what.clone(),
                code,
                message,
            })),
            _ => None,
        }
    })
    .await;
    match picked {
        Ok(result) => result,
        Err(NextTextError::Connection(source)) => Err(ProbeError::Connection { what, source }),
        Err(NextTextError::Ended) => Err(ProbeError::Ended { what }),
        Err(NextTextError::Closed { code }) => Err(ProbeError::Closed { what, code }),
        Err(NextTextError::Binary) => Err(ProbeError::Binary { what }),
        Err(NextTextError::Timeout(limit)) => Err(ProbeError::Timeout { what, limit }),
    }
}

/// With the stack's key the direct endpoint must accept the handshake.
/// Neither outcome quotes the key.
pub(super) async fn expect_acceptance(
    connector: &Connector,
    endpoint: &Endpoint,
    key: &str,
) -> Outcome {
    let name = names::DIRECT_WITH_KEY;
    match connector.connect(endpoint, Some(key)).await {
        Ok(connected) => {
            let _ = close(connected.ws, Duration::from_secs(2)).await;
            Outcome::pass(name, "accepted with the API key")
        }
        Err(ConnectError::Refused { status }) => Outcome::fail(
            name,
            format!(
                "refused the given API key with HTTP {status}: is --direct the API's stage URL, \
                 and the key this stack's?"
            ),
        ),
        Err(error) => Outcome::fail(name, format!("direct endpoint: {error}")),
    }
}
