//! A client that completes the handshake and then never reads: sending to it
//! is bounded (queue and send timeout), it is closed with 1008 and its
//! `$disconnect` runs, posts to it fail with 410, the connection's other
//! limits still apply, and other clients are served meanwhile.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// A post the kernel buffers cannot hide for long: 120 KB.
const POST_BYTES: usize = 120 * 1024;
/// Enough posts to fill the server's send buffer (at most 4 MiB on Linux)
/// and a tiny receive buffer many times over.
const POSTS: usize = 100;

/// Connects with a 4 KiB receive buffer, completes the handshake, reads the
/// 101 answer and nothing after it. Returns the socket (kept open) and the
/// connection id.
async fn non_reader(running: &mut Running) -> (tokio::net::TcpStream, String) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let mut stream = socket.connect(running.addr).await.expect("connect");
    let request = format!(
        "GET /prod HTTP/1.1\r\nhost: {}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\
         x-api-key: {KEY}\r\n\r\n",
        running.addr
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("the answer within the timeout")
            .expect("read");
        assert_eq!(read, 1, "the server closed during the handshake");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    let event = running.next_event_of("CONNECT").await;
    let id = event["requestContext"]["connectionId"]
        .as_str()
        .expect("connection id")
        .to_string();
    (stream, id)
}

/// Posts `POST_BYTES` to `id` up to `POSTS` times, stopping at the first
/// refusal; returns how many were accepted and whether one was 410.
async fn flood(running: &Running, id: &str) -> (usize, bool) {
    let management = running.management();
    for accepted in 0..POSTS {
        let result = management
            .post_to_connection()
            .connection_id(id)
            .data(Blob::new(vec![b'x'; POST_BYTES]))
            .send()
            .await;
        if let Err(error) = result {
            let gone = error
                .as_service_error()
                .is_some_and(|e| e.is_gone_exception());
            return (accepted, gone);
        }
    }
    (POSTS, false)
}

async fn expect_gone(running: &Running, id: &str) {
    let error = running
        .management()
        .post_to_connection()
        .connection_id(id)
        .data(Blob::new("late"))
        .send()
        .await
        .expect_err("the connection is gone");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "{error:?}"
    );
}

/// The test config with these send limits.
fn limits(send_timeout: Duration, outbound_queue: usize) -> GatewayConfig {
    let mut config = config();
    config.limits.send_timeout = send_timeout;
    config.limits.outbound_queue = outbound_queue;
    config
}

/// A reading client still gets what is posted to it.
async fn reader_still_served(running: &Running, reader: &mut Client, reader_id: &str, text: &str) {
    running
        .management()
        .post_to_connection()
        .connection_id(reader_id)
        .data(Blob::new(text))
        .send()
        .await
        .expect("a post to a reading client");
    assert_eq!(next_message(reader).await, Message::text(text));
}

/// The next `$disconnect` is `id`'s, with this close code; its reason.
async fn disconnected(running: &mut Running, id: &str, code: u16) -> Value {
    let disconnect = running.next_event_of("DISCONNECT").await;
    let context = &disconnect["requestContext"];
    assert_eq!(context["connectionId"], id);
    assert_eq!(context["disconnectStatusCode"], code);
    context["disconnectReason"].clone()
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_at_the_send_timeout() {
    let config = limits(Duration::from_millis(500), 100_000);
    let mut running = start_with(config, Box::new(ok)).await;
    let (mut reader, reader_id) = running.connected().await;
    let (_stuck, stuck_id) = non_reader(&mut running).await;
    let (accepted, _) = flood(&running, &stuck_id).await;
    assert!(accepted > 0, "posts to an open connection are accepted");
    let reason = disconnected(&mut running, &stuck_id, 1008).await;
    assert_eq!(reason, "Client not reading: send timed out");
    expect_gone(&running, &stuck_id).await;
    // The reading client was never affected.
    reader_still_served(&running, &mut reader, &reader_id, "still here").await;
}

#[tokio::test]
async fn a_full_queue_fails_the_post_with_410_and_closes_the_connection() {
    let config = limits(Duration::from_secs(600), 2);
    let mut running = start_with(config, Box::new(ok)).await;
    let (mut reader, reader_id) = running.connected().await;
    let (_stuck, stuck_id) = non_reader(&mut running).await;
    let (accepted, gone) = flood(&running, &stuck_id).await;
    assert!(
        gone,
        "a post beyond the queue is 410 (after {accepted} accepted)"
    );
    // While the stuck connection closes, another client's posts go through.
    reader_still_served(&running, &mut reader, &reader_id, "unaffected").await;
    let reason = disconnected(&mut running, &stuck_id, 1008).await;
    assert_eq!(reason, "Client not reading: outbound queue full");
    expect_gone(&running, &stuck_id).await;
}

/// The queue is bounded in bytes too: with room for 100,000 frames, a slow
/// reader of large frames is closed once its posts reach the byte bound
/// (here 1 MB beside what the kernel's buffers take), not after 100,000.
#[tokio::test]
async fn a_slow_reader_of_large_frames_is_closed_at_the_byte_bound() {
    let mut config = limits(Duration::from_secs(600), 100_000);
    config.limits.outbound_queue_bytes = 1024 * 1024;
    let mut running = start_with(config, Box::new(ok)).await;
    let (mut reader, reader_id) = running.connected().await;
    let (_stuck, stuck_id) = non_reader(&mut running).await;
    let (accepted, gone) = flood(&running, &stuck_id).await;
    // What the kernel buffers (at most ~4 MiB) was written out of the queue.
    let most = (4 * 1024 * 1024 + 1024 * 1024) / POST_BYTES + 1;
    assert!(
        gone && accepted <= most,
        "a post beyond the byte bound is 410 (after {accepted} accepted, at most {most})"
    );
    reader_still_served(&running, &mut reader, &reader_id, "unaffected").await;
    let reason = disconnected(&mut running, &stuck_id, 1008).await;
    assert_eq!(reason, "Client not reading: outbound queue full");
}

#[tokio::test]
async fn the_life_limit_is_watched_while_a_send_is_stuck() {
    let mut config = limits(Duration::from_secs(600), 100_000);
    config.limits.max_connection_life = Duration::from_secs(3);
    let mut running = start_with(config, Box::new(ok)).await;
    let (_stuck, stuck_id) = non_reader(&mut running).await;
    flood(&running, &stuck_id).await;
    disconnected(&mut running, &stuck_id, 1001).await;
}

#[tokio::test]
async fn shutdown_is_watched_while_a_send_is_stuck() {
    let config = limits(Duration::from_secs(600), 100_000);
    let mut running = start_with(config, Box::new(ok)).await;
    let (_stuck, stuck_id) = non_reader(&mut running).await;
    flood(&running, &stuck_id).await;
    assert!(
        running.gateway.shutdown(WAIT).await,
        "every connection finished within the shutdown's wait"
    );
    let disconnect = running.next_event_of("DISCONNECT").await;
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1001);
}
