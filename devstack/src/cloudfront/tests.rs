//! Tests of the edge in front of a real API layer with a fake function.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use super::*;
use crate::apigateway::tests::{
    KEY, Running, close_code, config, connect, ends_cleanly, next_text, ok, refused_status,
    send_text, start, start_with,
};
use crate::lambda::invoke::InvokeError;

fn waf(limit: u64) -> RateRuleConfig {
    RateRuleConfig {
        name: "dev-rate-limit".into(),
        limit,
        window: Duration::from_secs(300),
    }
}

/// An edge in front of `gateway`, with the stack key [`KEY`], reaching it
/// through its door in this process as the stack's edge does.
async fn edge_for(gateway: &Running, limit: u64) -> String {
    edge_reporting_to(gateway, limit, EventBus::new()).await
}

/// [`edge_for`], reporting to `events`.
async fn edge_reporting_to(gateway: &Running, limit: u64, events: EventBus) -> String {
    let (edge, url) = serve_edge(format!("ws://{}/prod", gateway.addr), limit, events).await;
    edge.reach_origin_through(gateway.door.clone());
    url
}

/// An edge with the stack key [`KEY`] in front of `origin`, served on a
/// free loopback port: the edge (to swap its rule) and its URL.
async fn serve_edge(origin: String, limit: u64, events: EventBus) -> (Edge, String) {
    let edge = Edge::new(
        EdgeConfig {
            origin,
            origin_api_key_header: "x-api-key".into(),
            api_key: KEY.into(),
            waf: waf(limit),
        },
        events,
    )
    .expect("valid edge config");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(
        edge.clone()
            .serve(listener, crate::listener::ListenerLimits::default()),
    );
    (edge, format!("ws://{addr}/"))
}

#[test]
fn the_rate_rule_counts_per_ip_within_the_window() {
    let mut rule = RateRule::new(2, Duration::from_secs(60));
    let (a, b) = (
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
    );
    let t0 = Instant::now();
    assert!(rule.allow(a, t0));
    assert!(rule.allow(a, t0 + Duration::from_secs(1)));
    assert!(
        !rule.allow(a, t0 + Duration::from_secs(2)),
        "third in the window is blocked"
    );
    assert!(
        rule.allow(b, t0 + Duration::from_secs(2)),
        "another client has its own count"
    );
    assert!(!rule.allow(a, t0 + Duration::from_secs(59)));
    assert!(
        rule.allow(a, t0 + Duration::from_secs(60)),
        "the first request left the window"
    );
}

#[tokio::test]
async fn the_edge_replaces_the_client_key_and_adds_forwarding_headers() {
    let mut gateway = start().await;
    let edge = edge_for(&gateway, 100).await;
    // The client's own x-api-key (right or wrong) never reaches the origin.
    let _client = connect(&edge, Some("client-supplied"))
        .await
        .expect("accepted through the edge");
    let event = gateway.next_event_of("CONNECT").await;
    let headers = &event["headers"];
    assert_eq!(headers["x-api-key"], KEY);
    assert_eq!(event["multiValueHeaders"]["x-api-key"], json!([KEY]));
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1, 127.0.0.1");
    assert!(
        headers["via"]
            .as_str()
            .is_some_and(|v| v.ends_with(".cloudfront.net (CloudFront)")),
        "{headers}"
    );
    assert!(headers["x-amz-cf-id"].is_string());
    assert_eq!(headers["user-agent"], "gateway-test/1.0");
}

#[tokio::test]
async fn frames_are_relayed_both_ways() {
    let mut gateway = start().await;
    let edge = edge_for(&gateway, 100).await;
    let mut client = connect(&edge, None)
        .await
        .expect("accepted through the edge");
    let id = gateway.next_event_of("CONNECT").await["requestContext"]["connectionId"]
        .as_str()
        .expect("connection id")
        .to_string();
    send_text(&mut client, r#"{"action":"ping"}"#).await;
    let event = gateway.next_event_of("MESSAGE").await;
    assert_eq!(event["body"], r#"{"action":"ping"}"#);
    gateway
        .management()
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(r#"{"type":"pong"}"#))
        .send()
        .await
        .expect("post");
    assert_eq!(next_text(&mut client).await, r#"{"type":"pong"}"#);
    client
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        }))
        .await
        .expect("close");
    let disconnect = gateway.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1000);
    assert_eq!(disconnect["requestContext"]["disconnectReason"], "done");
}

#[tokio::test]
async fn the_waf_rule_blocks_handshakes_after_the_limit() {
    let mut gateway = start().await;
    let events = EventBus::new();
    let edge = edge_reporting_to(&gateway, 3, events.clone()).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&edge, None).await.expect("under the limit"));
        gateway.next_event_of("CONNECT").await;
    }
    assert_eq!(refused_status(connect(&edge, None).await), 403);
    // The console hears of the block (before the 403 is sent).
    let blocks: Vec<StackEvent> = events
        .snapshot()
        .recent
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        blocks,
        [StackEvent::WafBlocked {
            rule: "dev-rate-limit".into(),
            client_ip: "127.0.0.1".into()
        }]
    );
    // Positive control, and a wait on events instead of a sleep: a client
    // that goes to the API directly after the block is the next $connect
    // the function sees (the blocked one's would have come before it).
    let direct = format!("ws://{}/prod?probe=direct", gateway.addr);
    let _direct = connect(&direct, Some(KEY)).await.expect("direct handshake");
    let next = gateway.next_event_of("CONNECT").await;
    assert_eq!(
        next["queryStringParameters"]["probe"], "direct",
        "a blocked handshake never reaches the API"
    );
}

#[tokio::test]
async fn a_swapped_rate_rule_applies_to_the_next_handshake() {
    let mut gateway = start().await;
    let (edge, url) = serve_edge(format!("ws://{}/prod", gateway.addr), 1, EventBus::new()).await;

    let first = connect(&url, None).await.expect("under the limit");
    gateway.next_event_of("CONNECT").await;
    assert_eq!(refused_status(connect(&url, None).await), 403);
    edge.swap_rate_rule(&waf(2));
    let second = connect(&url, None).await.expect("under the raised limit");
    gateway.next_event_of("CONNECT").await;
    assert_eq!(
        refused_status(connect(&url, None).await),
        403,
        "the two counted requests reach the new limit"
    );
    drop((first, second));
}

#[tokio::test]
async fn origin_refusals_reach_the_client_with_their_status() {
    let respond = |event: &Value| match event["queryStringParameters"]["answer"].as_str() {
        Some("401") => Ok(json!({"statusCode": 401})),
        Some("error") => Err(InvokeError::Crashed("exit 1".into())),
        _ => Ok(json!({"statusCode": 200})),
    };
    let gateway = start_with(config(), Box::new(respond)).await;
    let edge = edge_for(&gateway, 100).await;
    assert_eq!(
        refused_status(connect(&format!("{edge}?answer=401"), None).await),
        401
    );
    assert_eq!(
        refused_status(connect(&format!("{edge}?answer=error"), None).await),
        500
    );

    // An edge holding the wrong key is refused by the API layer: 403.
    let mut wrong = config();
    wrong.api_keys = vec!["another-key".into()];
    let gateway = start_with(wrong, Box::new(ok)).await;
    let edge = edge_for(&gateway, 100).await;
    assert_eq!(refused_status(connect(&edge, None).await), 403);
}

#[tokio::test]
async fn oversize_messages_close_with_1009_through_the_edge() {
    let mut gateway = start().await;
    let edge = edge_for(&gateway, 100).await;
    let mut client = connect(&edge, None).await.expect("accepted");
    gateway.next_event_of("CONNECT").await;
    let big = format!(
        r#"{{"action":"sendmessage","data":"{}"}}"#,
        "x".repeat(40 * 1024)
    );
    send_text(&mut client, big).await;
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Size));
    let disconnect = gateway.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1009);
}

/// The lingering close through the edge: the API layer's 1009 reaches a
/// client that is still sending its oversize frame and reads only later —
/// the edge passes the origin's end on as a half-close and keeps relaying
/// (or discarding) the client's bytes rather than dropping both sockets.
#[tokio::test]
async fn a_client_reading_late_after_an_oversize_frame_gets_1009_through_the_edge() {
    let mut gateway = start().await;
    let edge = edge_for(&gateway, 100).await;
    let mut client = connect(&edge, None).await.expect("accepted");
    gateway.next_event_of("CONNECT").await;
    client
        .send(Message::binary(vec![b'x'; 1024 * 1024]))
        .await
        .expect("the whole frame is sent: edge and API layer read what follows the close");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Size));
    ends_cleanly(&mut client).await;
    let disconnect = gateway.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1009);
}

/// An origin that answers the handshake, sends a 1009 close frame on the
/// client's first frame and then resets the connection (zero linger) — the
/// worst an origin can do to a close frame on its way to the client.
async fn resetting_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let config = WebSocketConfig::default().max_frame_size(Some(1024));
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
                else {
                    return;
                };
                let _ = ws.next().await;
                let close = CloseFrame {
                    code: CloseCode::Size,
                    reason: "".into(),
                };
                let _ = ws.send(Message::Close(Some(close))).await;
                let _ = ws.get_ref().set_zero_linger();
            });
        }
    });
    addr
}

/// The edge's half of the lingering close: when the origin resets the
/// connection right after its close frame, the edge still passes the close
/// frame on, then ends the client's connection with a FIN while reading the
/// rest of what the client sends — no reset reaches the client.
#[tokio::test]
async fn an_origin_reset_after_its_close_frame_reaches_the_client_as_close_and_fin() {
    let origin = format!("ws://{}/prod", resetting_origin().await);
    let (_edge, url) = serve_edge(origin, 100, EventBus::new()).await;
    let mut client = connect(&url, None).await.expect("accepted");
    client
        .send(Message::binary(vec![b'x'; 1024 * 1024]))
        .await
        .expect("the whole frame is sent: the edge reads what follows the origin's end");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Size));
    ends_cleanly(&mut client).await;
}

/// Through the door the edge never opens a socket to the origin: with the
/// origin's address pointing at a port nothing listens on, a handshake
/// still reaches the API layer (over TCP it is 502), which sees it come
/// from 127.0.0.1 and an ephemeral port, as from a socket.
#[tokio::test]
async fn through_the_door_the_origin_is_reached_without_a_socket() {
    let mut gateway = start().await;
    let nothing = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let dead = nothing.local_addr().expect("its address");
    drop(nothing);
    let (edge, url) = serve_edge(format!("ws://{dead}/prod"), 100, EventBus::new()).await;
    assert_eq!(
        refused_status(connect(&url, None).await),
        502,
        "over TCP the origin is unreachable"
    );
    edge.reach_origin_through(gateway.door.clone());
    let mut client = connect(&url, None)
        .await
        .expect("accepted through the door");
    let event = gateway.next_event_of("CONNECT").await;
    assert_eq!(event["headers"]["x-forwarded-for"], "127.0.0.1, 127.0.0.1");
    let port: u16 = event["headers"]["x-forwarded-port"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    assert!(EPHEMERAL_PORTS.contains(&port), "{port}");
    send_text(&mut client, r#"{"action":"ping"}"#).await;
    assert_eq!(
        gateway.next_event_of("MESSAGE").await["body"],
        r#"{"action":"ping"}"#
    );
}

#[tokio::test]
async fn a_door_whose_listener_stopped_refuses_and_the_edge_answers_502() {
    let (dialer, door) = crate::listener::local_door();
    drop(door);
    let refused = dialer
        .dial(SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000)))
        .await
        .expect_err("no listener behind the door");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let (edge, url) = serve_edge("ws://127.0.0.1:9/prod".into(), 100, EventBus::new()).await;
    edge.reach_origin_through(dialer);
    assert_eq!(refused_status(connect(&url, None).await), 502);
}

#[tokio::test]
async fn gateway_shutdown_reaches_clients_of_the_edge() {
    let mut gateway = start().await;
    let edge = edge_for(&gateway, 100).await;
    let mut client = connect(&edge, None).await.expect("accepted");
    gateway.next_event_of("CONNECT").await;
    let shutdown = {
        let gateway = gateway.gateway.clone();
        tokio::spawn(async move { gateway.shutdown(Duration::from_secs(10)).await })
    };
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Away));
    assert!(shutdown.await.expect("shutdown task"));
    gateway.next_event_of("DISCONNECT").await;
}

#[tokio::test]
async fn plain_http_gets_upgrade_required() {
    let gateway = start().await;
    let edge = edge_for(&gateway, 100).await;
    let addr = edge.trim_start_matches("ws://").trim_end_matches('/');
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .expect("write");
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response),
    )
    .await
    .expect("response within the timeout")
    .expect("read");
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
}

#[tokio::test]
async fn frames_keep_their_boundaries_through_the_edge() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let mut gateway = start().await;
    let edge = edge_for(&gateway, 100).await;
    let mut client = connect(&edge, None).await.expect("accepted");
    gateway.next_event_of("CONNECT").await;
    // A 48 KB message in 16 KB frames is within API Gateway's limits.
    let text = format!(
        r#"{{"action":"sendmessage","data":"{}"}}"#,
        "x".repeat(48 * 1024)
    );
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(16 * 1024).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
        let frame = Frame::message(chunk.to_vec(), opcode, i + 1 == chunks.len());
        client
            .send(Message::Frame(frame))
            .await
            .expect("send a fragment");
    }
    let event = gateway.next_event_of("MESSAGE").await;
    assert_eq!(event["body"].as_str().map(str::len), Some(text.len()));
    assert_eq!(event["requestContext"]["routeKey"], "sendmessage");
}

#[tokio::test]
async fn the_edge_never_forwards_to_the_management_api() {
    let mut gateway = start().await;
    let edge = edge_for(&gateway, 100).await;
    let _client = connect(&format!("ws://{}/prod", gateway.addr), Some(KEY))
        .await
        .expect("handshake");
    let id = gateway.next_event_of("CONNECT").await["requestContext"]["connectionId"]
        .as_str()
        .expect("connection id")
        .to_string();
    for path in [
        format!("@connections/{id}"),
        format!("%40connections/{id}"),
        format!("x/../@connections/{id}"),
    ] {
        // The edge's own refusal, not the origin's (which would refuse the
        // unsigned request with 403 too, after reading it).
        match connect(&format!("{edge}{path}"), None).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 403, "{path}");
                let body = response.body().as_deref().unwrap_or_default();
                assert!(
                    String::from_utf8_lossy(body).contains("not served through this distribution"),
                    "{path}: {}",
                    String::from_utf8_lossy(body)
                );
            }
            other => panic!("{path}: expected the edge's 403, got {other:?}"),
        }
    }
    // Positive control: the edge forwards other handshakes to the API.
    connect(&edge, None)
        .await
        .expect("the edge forwards a handshake");
    gateway.next_event_of("CONNECT").await;
}
