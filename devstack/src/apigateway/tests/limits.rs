//! How connections end: frame and message size, throttling, idle time,
//! maximum life, a dropped client, shutdown.

use super::*;

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
