//! A WebSocket client for the tests: tokio-tungstenite over loopback, every
//! wait bounded, frames read and written as the `protocol` crate defines them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientFrame, GatewayFrame, ServerFrame};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message};

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
    ws: WebSocketStream<TcpStream>,
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
        let mut request = url
            .into_client_request()
            .with_context(|| format!("bad URL {url}"))?;
        if let Some(key) = api_key {
            request.headers_mut().insert(
                "x-api-key",
                HeaderValue::from_str(key).context("API key header")?,
            );
        }
        let host = request
            .uri()
            .host()
            .ok_or_else(|| anyhow!("no host in {url}"))?;
        let ip: IpAddr = host
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .with_context(|| {
                format!("the tests only connect to loopback IP addresses, not {host}")
            })?;
        if !ip.is_loopback() {
            bail!("the tests only connect to loopback addresses, not {ip}");
        }
        let port = request.uri().port_u16().unwrap_or(80);
        let socket = if ip.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .context("creating a socket")?;
        if let Some(source) = source {
            socket
                .bind(SocketAddr::new(source, 0))
                .with_context(|| format!("binding to {source}"))?;
        }
        let stream = tokio::time::timeout(REPLY_TIMEOUT, socket.connect(SocketAddr::new(ip, port)))
            .await
            .map_err(|_| anyhow!("TCP connect to {url} timed out"))?
            .with_context(|| format!("TCP connect to {url}"))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let local = stream.local_addr().context("local address")?;
        let handshake = tokio::time::timeout(
            REPLY_TIMEOUT,
            tokio_tungstenite::client_async(request, stream),
        )
        .await
        .map_err(|_| anyhow!("WebSocket handshake with {url} timed out after {REPLY_TIMEOUT:?}"))?;
        match handshake {
            Ok((ws, _response)) => Ok(Handshake::Accepted(Box::new(Client { ws, local }))),
            Err(tungstenite::Error::Http(response)) => {
                Ok(Handshake::Refused(response.status().as_u16()))
            }
            Err(error) => Err(error).with_context(|| format!("WebSocket handshake with {url}")),
        }
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
            self.send_message(Message::Frame(Frame::message(chunk.to_vec(), opcode, last)))
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
        let reading = async {
            loop {
                let message = match self.ws.next().await {
                    None | Some(Err(tungstenite::Error::ConnectionClosed)) => {
                        return Ok(Incoming::Ended);
                    }
                    Some(Err(tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ))) => return Ok(Incoming::Ended),
                    Some(Err(tungstenite::Error::Io(e)))
                        if e.kind() == std::io::ErrorKind::ConnectionReset =>
                    {
                        return Ok(Incoming::Ended);
                    }
                    Some(Err(error)) => return Err(anyhow!(error).context("reading a frame")),
                    Some(Ok(message)) => message,
                };
                return Ok(match message {
                    Message::Text(text) => classify_text(text.as_str()),
                    Message::Binary(bytes) => Incoming::Binary(bytes.to_vec()),
                    Message::Close(frame) => {
                        Incoming::Close(frame.map(|f: CloseFrame| u16::from(f.code)))
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                });
            }
        };
        tokio::time::timeout(limit, reading)
            .await
            .map_err(|_| anyhow!("no frame within {limit:?}"))?
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
        let closing = async {
            self.ws.close(None).await?;
            while let Some(message) = self.ws.next().await {
                message?;
            }
            Ok::<(), tungstenite::Error>(())
        };
        match tokio::time::timeout(REPLY_TIMEOUT, closing).await {
            Ok(Ok(())) | Ok(Err(tungstenite::Error::ConnectionClosed)) => Ok(()),
            Ok(Err(error)) => Err(anyhow!(error).context("closing")),
            Err(_) => bail!("the server did not answer the close frame within {REPLY_TIMEOUT:?}"),
        }
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

    #[tokio::test]
    async fn only_loopback_addresses_are_dialled() {
        let error = Client::handshake("ws://192.0.2.1:80/", None, None)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("loopback"), "{error}");
        let error = Client::handshake("ws://example.com/", None, None)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("loopback"), "{error}");
    }
}
