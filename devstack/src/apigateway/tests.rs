//! Tests of the API layer with a fake function, real WebSocket clients
//! (tokio-tungstenite) and the real management API client
//! (aws-sdk-apigatewaymanagement) pointed at the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures_util::{SinkExt, StreamExt};
use protocol::GatewayFrame;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::connect::connect_status;
use super::*;
use crate::lambda::invoke::{Invoke, InvokeError, InvokeFuture};

pub(crate) const KEY: &str = "test-api-key-0123456789";
pub(crate) const WAIT: Duration = Duration::from_secs(10);
/// The Region the test gateway serves (its `@connections` signatures are scoped to it).
pub(crate) const REGION: &str = "us-east-1";

pub(crate) type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub(crate) type Respond = dyn Fn(&Value) -> Result<Value, InvokeError> + Send + Sync;

/// Records every event and answers with `respond`.
pub(crate) struct FakeFunction {
    events: mpsc::UnboundedSender<Value>,
    respond: Box<Respond>,
}

impl Invoke for FakeFunction {
    fn invoke_json(&self, event: axum::body::Bytes) -> InvokeFuture<'_> {
        let event: Value = serde_json::from_slice(&event).expect("the event is JSON");
        let result = (self.respond)(&event);
        let _ = self.events.send(event);
        Box::pin(async move { result })
    }
}

pub(crate) fn ok(_: &Value) -> Result<Value, InvokeError> {
    Ok(json!({"statusCode": 200}))
}

fn route(key: &str, api_key_required: bool) -> Route {
    Route {
        key: key.to_string(),
        api_key_required,
    }
}

pub(crate) fn config() -> GatewayConfig {
    GatewayConfig {
        api_id: "localapi01".into(),
        stage: "prod".into(),
        domain_name: "127.0.0.1:1".into(),
        route_selection_expression: "$request.body.action".into(),
        api_key_selection_expression: Some("$request.header.x-api-key".into()),
        routes: vec![
            route("$connect", true),
            route("$disconnect", false),
            route("$default", false),
            route("sendmessage", false),
            route("ping", false),
        ],
        api_keys: vec![KEY.into()],
        throttle: None,
        limits: Limits::default(),
        authorizer: None,
    }
}

pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) gateway: Gateway,
    pub(crate) events: mpsc::UnboundedReceiver<Value>,
    /// What the API layer reported to the console.
    pub(crate) bus: EventBus,
    /// The listener's door in this process, as the stack's edge reaches it.
    pub(crate) door: crate::listener::LocalDialer,
}

impl Running {
    pub(crate) async fn next_event(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an event within the timeout")
            .expect("the fake function is alive")
    }

    pub(crate) async fn next_event_of(&mut self, event_type: &str) -> Value {
        loop {
            let event = self.next_event().await;
            if event["requestContext"]["eventType"] == event_type {
                return event;
            }
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/prod", self.addr)
    }

    async fn connect(&self, key: Option<&str>) -> Result<Client, WsError> {
        connect(&self.url(), key).await
    }

    /// Connects with the key and returns the client and its connection id.
    async fn connected(&mut self) -> (Client, String) {
        let client = self.connect(Some(KEY)).await.expect("handshake accepted");
        let event = self.next_event_of("CONNECT").await;
        let id = event["requestContext"]["connectionId"]
            .as_str()
            .expect("connection id")
            .to_string();
        (client, id)
    }

    pub(crate) fn management(&self) -> aws_sdk_apigatewaymanagement::Client {
        let config = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "test"))
            .endpoint_url(format!("http://{}/prod", self.addr))
            .build();
        aws_sdk_apigatewaymanagement::Client::from_conf(config)
    }
}

pub(crate) async fn start_with(config: GatewayConfig, respond: Box<Respond>) -> Running {
    start_authorized(config, respond, None).await
}

/// The gateway with `authorizer` playing the `$connect` authorizer.
pub(crate) async fn start_authorized(
    config: GatewayConfig,
    respond: Box<Respond>,
    authorizer: Option<Arc<dyn Invoke>>,
) -> Running {
    let (events_tx, events) = mpsc::unbounded_channel();
    let function = FakeFunction {
        events: events_tx,
        respond,
    };
    let bus = EventBus::new();
    let gateway =
        Gateway::with_authorizer(config, REGION, Arc::new(function), authorizer, bus.clone());
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (door, handed) = crate::listener::local_door();
    tokio::spawn(gateway.clone().serve_with_door(
        listener,
        Some(handed),
        ListenerLimits::default(),
    ));
    Running {
        addr,
        gateway,
        events,
        bus,
        door,
    }
}

pub(crate) async fn start() -> Running {
    start_with(config(), Box::new(ok)).await
}

pub(crate) async fn connect(url: &str, key: Option<&str>) -> Result<Client, WsError> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "user-agent",
        "gateway-test/1.0".parse().expect("header value"),
    );
    if let Some(key) = key {
        request
            .headers_mut()
            .insert("x-api-key", key.parse().expect("header value"));
    }
    let (client, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake within the timeout")?;
    Ok(client)
}

pub(crate) fn refused_status(result: Result<Client, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected the handshake to be refused"),
    }
}

pub(crate) async fn next_message(client: &mut Client) -> Message {
    loop {
        let message = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("a frame within the timeout")
            .expect("the connection is open")
            .expect("a valid frame");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

pub(crate) async fn send_text(
    client: &mut Client,
    text: impl Into<tokio_tungstenite::tungstenite::Utf8Bytes>,
) {
    client.send(Message::text(text)).await.expect("send");
}

pub(crate) async fn next_text(client: &mut Client) -> String {
    match next_message(client).await {
        Message::Text(text) => text.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

pub(crate) async fn close_code(client: &mut Client) -> Option<CloseCode> {
    match next_message(client).await {
        Message::Close(frame) => frame.map(|f| f.code),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// After the server's close frame, the connection ends with the server's FIN
/// (the stream simply ends), not with a reset.
pub(crate) async fn ends_cleanly(client: &mut Client) {
    let next = tokio::time::timeout(WAIT, client.next())
        .await
        .expect("the server ends the connection within the timeout");
    assert!(next.is_none(), "expected the stream to end, got {next:?}");
}

mod account;
mod authorizer;
mod connect;
mod control;
mod limits;
mod management;
mod routing;
mod slow_reader;
