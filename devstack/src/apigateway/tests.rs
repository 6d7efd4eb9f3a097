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

pub(crate) type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub(crate) type Respond = dyn Fn(&Value) -> Result<Value, InvokeError> + Send + Sync;

/// Records every event and answers with `respond`.
pub(crate) struct FakeFunction {
    events: mpsc::UnboundedSender<Value>,
    respond: Box<Respond>,
}

impl Invoke for FakeFunction {
    fn invoke(&self, event: Value) -> InvokeFuture<'_> {
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
    }
}

pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) gateway: Gateway,
    pub(crate) events: mpsc::UnboundedReceiver<Value>,
    /// What the API layer reported to the console.
    pub(crate) bus: EventBus,
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
    let (events_tx, events) = mpsc::unbounded_channel();
    let function = FakeFunction {
        events: events_tx,
        respond,
    };
    let bus = EventBus::new();
    let gateway = Gateway::new(config, Arc::new(function), bus.clone());
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(gateway.clone().serve(listener, ListenerLimits::default()));
    Running {
        addr,
        gateway,
        events,
        bus,
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

#[tokio::test]
async fn connect_without_the_key_is_refused_without_invoking() {
    let mut running = start().await;
    assert_eq!(refused_status(running.connect(None).await), 403);
    assert_eq!(
        refused_status(running.connect(Some("wrong-key")).await),
        403
    );
    assert!(
        running.events.try_recv().is_err(),
        "the function must not be invoked"
    );
    running.connected().await;
}

#[tokio::test]
async fn connect_without_a_key_requirement_needs_no_key() {
    let mut config = config();
    config.routes[0].api_key_required = false;
    let running = start_with(config, Box::new(ok)).await;
    running.connect(None).await.expect("accepted without a key");
}

#[tokio::test]
async fn unknown_stage_is_forbidden() {
    let running = start().await;
    let url = format!("ws://{}/other", running.addr);
    assert_eq!(refused_status(connect(&url, Some(KEY)).await), 403);
}

#[tokio::test]
async fn connect_non_2xx_or_error_refuses_the_handshake() {
    let respond = |event: &Value| {
        let agent = event["headers"]["user-agent"].as_str().unwrap_or_default();
        let query = &event["queryStringParameters"];
        match query["answer"].as_str() {
            Some("401") => Ok(json!({"statusCode": 401})),
            Some("error") => Err(InvokeError::Function {
                error_type: "Boom".into(),
                message: "failed".into(),
            }),
            _ => Ok(json!({"statusCode": 200, "body": agent})),
        }
    };
    let mut running = start_with(config(), Box::new(respond)).await;
    let url = format!("{}?answer=401", running.url());
    assert_eq!(refused_status(connect(&url, Some(KEY)).await), 401);
    let url = format!("{}?answer=error", running.url());
    assert_eq!(refused_status(connect(&url, Some(KEY)).await), 500);
    // Refused connections are not registered and get no $disconnect.
    assert_eq!(running.gateway.connection_count(), 0);
    let connects = [running.next_event().await, running.next_event().await];
    assert!(
        connects
            .iter()
            .all(|e| e["requestContext"]["eventType"] == "CONNECT")
    );
    // Positive control, and a wait on events instead of a sleep: a client
    // accepted after the refusals connects and leaves; the first $disconnect
    // the function sees is that client's (a refused handshake's would have
    // come before it).
    let (client, id) = running.connected().await;
    drop(client);
    let disconnect = running.next_event_of("DISCONNECT").await;
    assert_eq!(
        disconnect["requestContext"]["connectionId"],
        id.as_str(),
        "no $disconnect for a refused handshake"
    );
}

#[tokio::test]
async fn events_have_api_gateways_shape() {
    let mut running = start().await;
    let url = format!("{}?room=a&room=b&name=x", running.url());
    let mut client = connect(&url, Some(KEY)).await.expect("accepted");

    let raw = running.next_event().await;
    assert!(raw.get("body").is_none() && raw["requestContext"].get("messageId").is_none());
    assert_eq!(
        raw["queryStringParameters"],
        json!({"room": "b", "name": "x"})
    );
    assert_eq!(
        raw["multiValueQueryStringParameters"]["room"],
        json!(["a", "b"])
    );
    let connect: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(raw).expect("a websocket event");
    let ctx = &connect.request_context;
    assert_eq!(ctx.route_key.as_deref(), Some("$connect"));
    assert_eq!(ctx.event_type.as_deref(), Some("CONNECT"));
    assert_eq!(ctx.message_direction.as_deref(), Some("IN"));
    assert_eq!(ctx.stage.as_deref(), Some("prod"));
    assert_eq!(ctx.apiid.as_deref(), Some("localapi01"));
    assert_eq!(ctx.domain_name.as_deref(), Some("127.0.0.1:1"));
    assert_eq!(ctx.identity.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(ctx.identity.user_agent.as_deref(), Some("gateway-test/1.0"));
    assert!(ctx.connected_at > 0 && ctx.request_time_epoch >= ctx.connected_at);
    assert!(
        ctx.request_time
            .as_deref()
            .is_some_and(|t| t.ends_with("+0000"))
    );
    assert!(ctx.request_id.is_some() && ctx.extended_request_id.is_some());
    let id = ctx.connection_id.clone().expect("connection id");
    assert_eq!(id.len(), 16, "{id}");
    assert_eq!(
        connect.headers.get("x-api-key").map(|v| v.as_bytes()),
        Some(KEY.as_bytes())
    );
    assert_eq!(
        connect.headers.get("x-forwarded-for").map(|v| v.as_bytes()),
        Some(&b"127.0.0.1"[..])
    );
    assert!(connect.multi_value_headers.contains_key("host"));

    send_text(&mut client, r#"{"action":"ping"}"#).await;
    let message: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(running.next_event().await).expect("a websocket event");
    let ctx = &message.request_context;
    assert_eq!(ctx.route_key.as_deref(), Some("ping"));
    assert_eq!(ctx.event_type.as_deref(), Some("MESSAGE"));
    assert_eq!(ctx.connection_id.as_deref(), Some(id.as_str()));
    assert_eq!(ctx.connected_at, connect.request_context.connected_at);
    assert!(ctx.message_id.is_some());
    assert_eq!(message.body.as_deref(), Some(r#"{"action":"ping"}"#));
    assert!(!message.is_base64_encoded);
    assert!(message.headers.is_empty());

    client
        .send(Message::binary(vec![0u8, 159, 255]))
        .await
        .expect("send");
    let binary: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(running.next_event().await).expect("a websocket event");
    assert_eq!(
        binary.request_context.route_key.as_deref(),
        Some("$default")
    );
    assert!(binary.is_base64_encoded);
    assert_eq!(binary.body.as_deref(), Some("AJ//"));

    client
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .expect("close");
    let disconnect: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(running.next_event().await).expect("a websocket event");
    let ctx = &disconnect.request_context;
    assert_eq!(ctx.route_key.as_deref(), Some("$disconnect"));
    assert_eq!(ctx.event_type.as_deref(), Some("DISCONNECT"));
    assert_eq!(ctx.connection_id.as_deref(), Some(id.as_str()));
    assert_eq!(ctx.disconnect_status_code, Some(1000));
    assert_eq!(ctx.disconnect_reason.as_deref(), Some("bye"));
}

#[tokio::test]
async fn route_selection_follows_the_expression() {
    let gateway = Gateway::new(
        config(),
        Arc::new(FakeFunction {
            events: mpsc::unbounded_channel().0,
            respond: Box::new(ok),
        }),
        EventBus::new(),
    );
    let select = |body: &str| gateway.shared.select_route(body);
    assert_eq!(
        select(r#"{"action":"sendmessage","data":1}"#).as_deref(),
        Some("sendmessage")
    );
    assert_eq!(select(r#"{"action":"ping"}"#).as_deref(), Some("ping"));
    assert_eq!(select(r#"{"action":"nope"}"#).as_deref(), Some("$default"));
    assert_eq!(select(r#"{"action":7}"#).as_deref(), Some("$default"));
    assert_eq!(select(r#"{"data":1}"#).as_deref(), Some("$default"));
    assert_eq!(select(r#"["ping"]"#).as_deref(), Some("$default"));
    assert_eq!(select("not json").as_deref(), Some("$default"));
    // The special routes are never selected by a message.
    assert_eq!(
        select(r#"{"action":"$connect"}"#).as_deref(),
        Some("$default")
    );

    let mut nested = config();
    nested.route_selection_expression = "$request.body.meta.kind".into();
    nested.routes.retain(|r| r.key != "$default");
    let gateway = Gateway::new(
        nested,
        Arc::new(FakeFunction {
            events: mpsc::unbounded_channel().0,
            respond: Box::new(ok),
        }),
        EventBus::new(),
    );
    assert_eq!(
        gateway
            .shared
            .select_route(r#"{"meta":{"kind":"ping"}}"#)
            .as_deref(),
        Some("ping")
    );
    assert_eq!(gateway.shared.select_route(r#"{"action":"ping"}"#), None);
}

#[tokio::test]
async fn swapped_routing_applies_to_open_connections() {
    let mut running = start().await;
    let (mut client, _) = running.connected().await;
    let route_of = async |running: &mut Running, client: &mut Client, action: &str| {
        send_text(client, &format!(r#"{{"action":"{action}"}}"#)).await;
        running.next_event_of("MESSAGE").await["requestContext"]["routeKey"].clone()
    };
    assert_eq!(
        route_of(&mut running, &mut client, "echo").await,
        "$default"
    );

    let mut deployed = config();
    deployed.routes.retain(|r| r.key != "ping");
    deployed.routes.push(route("echo", false));
    deployed.throttle = Some(Throttle {
        rate_per_sec: 0.001,
        burst: 1,
    });
    running.gateway.swap_routing(&deployed);
    assert_eq!(route_of(&mut running, &mut client, "echo").await, "echo");
    assert_eq!(
        route_of(&mut running, &mut client, "ping").await,
        "$default"
    );
    // The new throttling: echo's bucket held one token.
    send_text(&mut client, r#"{"action":"echo"}"#).await;
    let frame: GatewayFrame =
        serde_json::from_str(&next_text(&mut client).await).expect("a gateway frame");
    assert_eq!(frame.message, GatewayFrame::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_message_with_no_route_gets_forbidden() {
    let mut config = config();
    config.routes.retain(|r| r.key != "$default");
    let mut running = start_with(config, Box::new(ok)).await;
    let (mut client, id) = running.connected().await;
    send_text(&mut client, r#"{"action":"nope"}"#).await;
    let frame: GatewayFrame =
        serde_json::from_str(&next_text(&mut client).await).expect("a gateway frame");
    assert_eq!(frame.message, "Forbidden");
    assert_eq!(frame.connection_id, id);
    send_text(&mut client, r#"{"action":"ping"}"#).await;
    assert_eq!(
        running.next_event().await["requestContext"]["routeKey"],
        "ping"
    );
}

#[tokio::test]
async fn an_invoke_error_sends_the_error_frame_and_keeps_the_connection() {
    let respond = |event: &Value| match event["body"].as_str() {
        Some(body) if body.contains("crash") => Err(InvokeError::Crashed("signal 9".into())),
        Some(body) if body.contains("throttle") => Err(InvokeError::Throttled { queued: 32 }),
        _ => Ok(json!({"statusCode": 200, "body": "not sent to the client"})),
    };
    let mut running = start_with(config(), Box::new(respond)).await;
    let (mut client, id) = running.connected().await;
    send_text(&mut client, r#"{"action":"sendmessage","data":"crash"}"#).await;
    let message_event = running.next_event().await;
    let frame: GatewayFrame =
        serde_json::from_str(&next_text(&mut client).await).expect("a gateway frame");
    assert_eq!(frame.message, GatewayFrame::INTERNAL_SERVER_ERROR);
    assert_eq!(frame.connection_id, id);
    assert_eq!(
        Some(frame.request_id.as_str()),
        message_event["requestContext"]["requestId"].as_str()
    );
    // Lambda's throttling error is an integration failure to API Gateway too.
    send_text(&mut client, r#"{"action":"sendmessage","data":"throttle"}"#).await;
    running.next_event().await;
    let frame: GatewayFrame =
        serde_json::from_str(&next_text(&mut client).await).expect("a gateway frame");
    assert_eq!(frame.message, GatewayFrame::INTERNAL_SERVER_ERROR);

    // Still open; a successful invocation's response body is not sent back.
    let (_, mut bus) = running.bus.subscribe();
    send_text(&mut client, r#"{"action":"ping"}"#).await;
    assert_eq!(
        running.next_event().await["requestContext"]["routeKey"],
        "ping"
    );
    // Once the ping's invocation has returned, a post queued after it is the
    // next frame: a route response would have been queued before it.
    tokio::time::timeout(WAIT, async {
        while let Ok(envelope) = bus.recv().await {
            if matches!(&envelope.event, crate::console::StackEvent::Invocation { route, .. } if route == "ping")
            {
                return;
            }
        }
    })
    .await
    .expect("the ping's invocation returned");
    running
        .management()
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("marker"))
        .send()
        .await
        .expect("post");
    assert_eq!(
        next_message(&mut client).await,
        Message::text("marker"),
        "no frame for a successful route"
    );
}

#[tokio::test]
async fn management_api_works_with_the_aws_sdk() {
    let mut running = start().await;
    let (mut client, id) = running.connected().await;
    let sdk = running.management();

    sdk.post_to_connection()
        .connection_id(&id)
        .data(Blob::new(r#"{"type":"pong"}"#))
        .send()
        .await
        .expect("post to a live connection");
    assert_eq!(next_text(&mut client).await, r#"{"type":"pong"}"#);

    send_text(&mut client, r#"{"action":"ping"}"#).await;
    running.next_event().await;
    let info = sdk
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("get a live connection");
    let identity = info.identity().expect("identity");
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));
    assert_eq!(identity.user_agent(), Some("gateway-test/1.0"));
    let connected_at = info.connected_at().expect("connectedAt");
    let last_active = info.last_active_at().expect("lastActiveAt");
    assert!(last_active >= connected_at);

    sdk.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("delete a live connection");
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Normal));
    let disconnect = running.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["connectionId"], id.as_str());

    let gone = sdk
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("x"))
        .send()
        .await;
    let error = gone.expect_err("the connection is gone");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "{error:?}"
    );
    let gone = sdk
        .get_connection()
        .connection_id("L0SM9cOFvHcCIhw=")
        .send()
        .await;
    assert!(
        gone.expect_err("unknown")
            .as_service_error()
            .is_some_and(|e| e.is_gone_exception())
    );
    let gone = sdk.delete_connection().connection_id(&id).send().await;
    assert!(
        gone.expect_err("deleted")
            .as_service_error()
            .is_some_and(|e| e.is_gone_exception())
    );
}

#[tokio::test]
async fn gone_is_410_with_the_error_type_header() {
    let running = start().await;
    let error = running
        .management()
        .post_to_connection()
        .connection_id("L0SM9cOFvHcCIhw=")
        .data(Blob::new("x"))
        .send()
        .await
        .expect_err("no such connection");
    let response = error.raw_response().expect("an HTTP answer");
    assert_eq!(response.status().as_u16(), 410);
    assert_eq!(
        response.headers().get("x-amzn-errortype"),
        Some("GoneException")
    );
    let body = std::str::from_utf8(response.body().bytes().unwrap_or_default()).unwrap_or("");
    assert!(body.starts_with(r#"{"message":"#), "{body}");
}

#[tokio::test]
async fn oversize_frames_close_with_1009_and_run_disconnect() {
    let mut running = start().await;
    let (mut client, id) = running.connected().await;
    let big = format!(
        r#"{{"action":"sendmessage","data":"{}"}}"#,
        "x".repeat(33 * 1024)
    );
    send_text(&mut client, big).await;
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Size));
    let disconnect = running.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["connectionId"], id.as_str());
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1009);
}

/// The lingering close: a client whose oversize frame is still arriving when
/// the API layer closes, and which reads only later, still gets the 1009
/// close frame — the API layer half-closes and reads the rest of the frame
/// instead of dropping a socket with unread input (which sends an RST that
/// makes the client's kernel discard the close frame it holds unread).
#[tokio::test]
async fn a_client_reading_late_after_an_oversize_frame_still_gets_1009() {
    let mut running = start().await;
    let (mut client, _id) = running.connected().await;
    client
        .send(Message::binary(vec![b'x'; 1024 * 1024]))
        .await
        .expect("the whole frame is sent: the API layer reads what follows its close");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Size));
    ends_cleanly(&mut client).await;
    let disconnect = running.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1009);
}

#[tokio::test]
async fn throttled_messages_get_too_many_requests() {
    let mut config = config();
    config.throttle = Some(Throttle {
        rate_per_sec: 0.001,
        burst: 3,
    });
    let mut running = start_with(config, Box::new(ok)).await;
    // $connect takes a token from its own bucket, not the ping route's.
    let (mut client, _) = running.connected().await;
    for _ in 0..3 {
        send_text(&mut client, r#"{"action":"ping"}"#).await;
        assert_eq!(
            running.next_event().await["requestContext"]["routeKey"],
            "ping"
        );
    }
    send_text(&mut client, r#"{"action":"ping"}"#).await;
    let frame: GatewayFrame =
        serde_json::from_str(&next_text(&mut client).await).expect("a gateway frame");
    assert_eq!(frame.message, GatewayFrame::TOO_MANY_REQUESTS);
    // The console hears of it (before the frame is sent) and of the open connection.
    let seen = running.bus.snapshot();
    assert_eq!(seen.throttled, 1);
    assert_eq!(seen.connections.len(), 1);
    assert!(seen.recent.iter().any(|e| matches!(
        &e.event,
        crate::console::StackEvent::Throttled { route, .. } if route == "ping"
    )));
    // Another route has its own bucket.
    send_text(&mut client, r#"{"action":"sendmessage","data":1}"#).await;
    assert_eq!(
        running.next_event().await["requestContext"]["routeKey"],
        "sendmessage"
    );
}

#[tokio::test]
async fn idle_connections_are_closed_with_going_away() {
    let mut config = config();
    config.limits.idle_timeout = Duration::from_millis(300);
    let mut running = start_with(config, Box::new(ok)).await;
    let (mut client, _) = running.connected().await;
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Away));
    let disconnect = running.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1001);
}

#[tokio::test]
async fn a_dropped_client_runs_disconnect() {
    let mut running = start().await;
    let (client, id) = running.connected().await;
    drop(client);
    let disconnect = running.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["connectionId"], id.as_str());
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1006);
    assert_eq!(running.gateway.connection_count(), 0);
}

#[tokio::test]
async fn shutdown_closes_every_client_and_runs_disconnect() {
    let mut running = start().await;
    let (mut first, _) = running.connected().await;
    let (mut second, _) = running.connected().await;
    let gateway = running.gateway.clone();
    let shutdown = tokio::spawn(async move { gateway.shutdown(WAIT).await });
    assert_eq!(close_code(&mut first).await, Some(CloseCode::Away));
    assert_eq!(close_code(&mut second).await, Some(CloseCode::Away));
    assert!(
        shutdown.await.expect("shutdown task"),
        "every connection finished"
    );
    running.next_event_of("DISCONNECT").await;
    running.next_event_of("DISCONNECT").await;
    assert!(
        running.connect(Some(KEY)).await.is_err(),
        "no new connections after shutdown"
    );
}

#[test]
fn ids_look_like_api_gateways() {
    let id = new_id();
    assert_eq!(id.len(), 16);
    assert!(id.ends_with('='));
    assert_ne!(new_id(), new_id());
}

#[test]
fn connect_status_reads_the_proxy_response() {
    assert_eq!(connect_status(&json!({"statusCode": 200})), StatusCode::OK);
    assert_eq!(
        connect_status(&json!({"statusCode": "403"})),
        StatusCode::FORBIDDEN
    );
    assert_eq!(connect_status(&json!({})), StatusCode::OK);
    assert_eq!(
        connect_status(&json!({"statusCode": 99999})),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        connect_status(&json!({"statusCode": [1]})),
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test]
async fn messages_over_128_kb_close_with_1009_even_in_small_frames() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let mut running = start().await;
    let (mut client, _) = running.connected().await;
    // 160 KB in 16 KB frames: every frame is within 32 KB, the message is not within 128 KB.
    let text = format!(
        r#"{{"action":"sendmessage","data":"{}"}}"#,
        "x".repeat(160 * 1024)
    );
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(16 * 1024).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
        let frame = Frame::message(chunk.to_vec(), opcode, i + 1 == chunks.len());
        if client.send(Message::Frame(frame)).await.is_err() {
            break; // the server may close before the last fragment
        }
    }
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Size));
    let disconnect = running.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1009);
}

#[tokio::test]
async fn connections_end_at_the_maximum_life_even_when_active() {
    let mut config = config();
    config.limits.max_connection_life = Duration::from_millis(600);
    let mut running = start_with(config, Box::new(ok)).await;
    let (mut client, _) = running.connected().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_text(&mut client, r#"{"action":"ping"}"#).await;
    running.next_event_of("MESSAGE").await;
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Away));
    let disconnect = running.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1001);
}

#[tokio::test]
async fn posts_over_128_kb_are_payload_too_large() {
    let mut running = start().await;
    let (_client, id) = running.connected().await;
    let result = running
        .management()
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(vec![b'x'; 128 * 1024 + 1]))
        .send()
        .await;
    let error = result.expect_err("over the limit");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_payload_too_large_exception()),
        "{error:?}"
    );
}
mod slow_reader;
