//! A WebSocket client for the tests: devstack's client (tokio-tungstenite
//! over loopback, every wait bounded), frames read and written as the
//! `protocol` crate defines them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use devstack::tools::client::{self, Dial, Frame, HandshakeError, Ws};
use futures_util::SinkExt;
use protocol::{ClientFrame, GatewayFrame, ServerFrame};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as RawFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// How long a test waits for any one reply or handshake.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// What a client read from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A frame of the function's protocol.
    Server(ServerFrame),
    /// API Gateway's own error frame (`{"message": "Internal server error", …}`).
    Gateway(GatewayFrame),
    /// A text frame that is neither.
    Text(String),
    Binary(Vec<u8>),
    /// A close frame; the code is `None` when the frame carried none.
    Close(Option<u16>),
    /// The connection ended without a close frame.
    Ended,
}

/// The outcome of a handshake.
#[derive(Debug)]
pub enum Handshake {
    Accepted(Box<Client>),
    /// Refused with this HTTP status.
    Refused(u16),
}

impl Handshake {
    pub fn accepted(self) -> anyhow::Result<Client> {
        match self {
            Handshake::Accepted(client) => Ok(*client),
            Handshake::Refused(status) => bail!("handshake refused with HTTP {status}"),
        }
    }

    pub fn refused(self) -> anyhow::Result<u16> {
        match self {
            Handshake::Refused(status) => Ok(status),
            Handshake::Accepted(_) => bail!("handshake was accepted, expected a refusal"),
        }
    }
}

#[derive(Debug)]
pub struct Client {
    ws: Ws,
    local: SocketAddr,
}

impl Client {
    /// Connects to a `ws://127.x.x.x:port/…` URL; an error if the handshake is refused.
    pub async fn connect(url: &str) -> anyhow::Result<Client> {
        Client::handshake(url, None, None)
            .await?
            .accepted()
            .with_context(|| format!("connecting to {url}"))
    }

    /// Opens a connection from `source` (a loopback address; `None` for the
    /// system's choice), sending `x-api-key` when `api_key` is given.
    pub async fn handshake(
        url: &str,
        api_key: Option<&str>,
        source: Option<IpAddr>,
    ) -> anyhow::Result<Handshake> {
        let dial = Dial {
            source,
            api_key,
            config: None,
        };
        let ws = match client::handshake(url, dial, REPLY_TIMEOUT).await {
            Ok(ws) => ws,
            Err(HandshakeError::Refused { status, .. }) => return Ok(Handshake::Refused(status)),
            Err(error) => return Err(error.into()),
        };
        let local = ws.get_ref().local_addr().context("local address")?;
        Ok(Handshake::Accepted(Box::new(Client { ws, local })))
    }

    /// The client's own address (its source IP as the edge sees it).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub async fn send(&mut self, frame: &ClientFrame) -> anyhow::Result<()> {
        self.send_text(&frame.to_text()).await
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.send_message(Message::text(text)).await
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.send_message(Message::binary(bytes.to_vec())).await
    }

    /// Sends `text` as one message split into frames of at most `frame_size` bytes.
    pub async fn send_fragmented(&mut self, text: &str, frame_size: usize) -> anyhow::Result<()> {
        let bytes = text.as_bytes();
        let chunks: Vec<&[u8]> = bytes.chunks(frame_size.max(1)).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
            let last = i + 1 == chunks.len();
            self.send_message(Message::Frame(RawFrame::message(
                chunk.to_vec(),
                opcode,
                last,
            )))
            .await?;
        }
        Ok(())
    }

    async fn send_message(&mut self, message: Message) -> anyhow::Result<()> {
        tokio::time::timeout(REPLY_TIMEOUT, self.ws.send(message))
            .await
            .map_err(|_| anyhow!("sending timed out after {REPLY_TIMEOUT:?}"))?
            .context("sending a frame")
    }

    /// The next frame, waiting at most [`REPLY_TIMEOUT`].
    pub async fn recv(&mut self) -> anyhow::Result<Incoming> {
        self.recv_within(REPLY_TIMEOUT).await
    }

    /// The next frame, waiting at most `limit`. WebSocket pings and pongs are skipped.
    pub async fn recv_within(&mut self, limit: Duration) -> anyhow::Result<Incoming> {
        Ok(match client::next_frame(&mut self.ws, limit).await? {
            Frame::Text(text) => classify_text(&text),
            Frame::Binary(bytes) => Incoming::Binary(bytes),
            Frame::Close(code) => Incoming::Close(code),
            Frame::Ended => Incoming::Ended,
        })
    }

    /// The next frame, which must be one of the function's.
    pub async fn recv_server(&mut self) -> anyhow::Result<ServerFrame> {
        match self.recv().await? {
            Incoming::Server(frame) => Ok(frame),
            other => bail!("expected a frame of the protocol, got {other:?}"),
        }
    }

    /// Sends `ping` and expects `pong` as the next frame.
    pub async fn ping(&mut self) -> anyhow::Result<()> {
        self.send(&ClientFrame::ping()).await?;
        match self.recv_server().await? {
            ServerFrame::Pong => Ok(()),
            other => bail!("expected pong, got {other:?}"),
        }
    }

    /// Reads until the server closes the connection; its close code.
    pub async fn expect_close(&mut self) -> anyhow::Result<Option<u16>> {
        loop {
            match self.recv().await? {
                Incoming::Close(code) => return Ok(code),
                Incoming::Ended => bail!("the connection ended without a close frame"),
                Incoming::Server(ServerFrame::Message { .. }) => continue,
                other => bail!("expected the server to close the connection, got {other:?}"),
            }
        }
    }

    /// Closes with a close frame and waits for the server's reply.
    pub async fn close(mut self) -> anyhow::Result<()> {
        Ok(client::close(&mut self.ws, REPLY_TIMEOUT).await?)
    }
}

fn classify_text(text: &str) -> Incoming {
    if let Some(frame) = ServerFrame::parse(text) {
        Incoming::Server(frame)
    } else if let Ok(frame) = serde_json::from_str::<GatewayFrame>(text) {
        Incoming::Gateway(frame)
    } else {
        Incoming::Text(text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use protocol::ErrorCode;

    #[test]
    fn text_frames_are_told_apart() {
        assert_eq!(
            classify_text(r#"{"type":"pong"}"#),
            Incoming::Server(ServerFrame::Pong)
        );
        let gateway = r#"{"message":"Internal server error","connectionId":"c1","requestId":"r1"}"#;
        assert!(
            matches!(classify_text(gateway), Incoming::Gateway(g) if g.message == GatewayFrame::INTERNAL_SERVER_ERROR)
        );
        let error = ServerFrame::error(ErrorCode::InvalidJson, "x").to_text();
        assert!(matches!(
            classify_text(&error),
            Incoming::Server(ServerFrame::Error {
                code: ErrorCode::InvalidJson,
                ..
            })
        ));
        assert_eq!(classify_text("hello"), Incoming::Text("hello".into()));
    }

    #[tokio::test]
    async fn a_fragmented_message_arrives_whole_under_a_frame_limit() {
        use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let config = WebSocketConfig::default()
                .max_frame_size(Some(1024))
                .max_message_size(Some(4096));
            let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config))
                .await
                .unwrap();
            match ws.next().await {
                Some(Ok(Message::Text(text))) => text.to_string(),
                other => panic!("expected one text message, got {other:?}"),
            }
        });
        let mut client = Client::connect(&url).await.unwrap();
        let text = "z".repeat(3000);
        client.send_fragmented(&text, 1000).await.unwrap();
        let received = tokio::time::timeout(REPLY_TIMEOUT, server)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(received, text);
    }
}
