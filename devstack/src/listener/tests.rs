//! A slowloris client is disconnected at the header-read timeout; over
//! `max_connections` a client gets 429 until a place is free again; the
//! exposure warning names non-loopback addresses only.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const WAIT: Duration = Duration::from_secs(10);

async fn start(limits: ListenerLimits) -> (SocketAddr, watch::Sender<bool>) {
    let (addr, shutdown, _) = start_with_door(limits).await;
    (addr, shutdown)
}

/// [`start`], with a door in this process too.
async fn start_with_door(limits: ListenerLimits) -> (SocketAddr, watch::Sender<bool>, LocalDialer) {
    let router = Router::new().route(
        "/",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    );
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (shutdown, watching) = watch::channel(false);
    let (dialer, door) = local_door();
    tokio::spawn(serve_with_door(
        listener,
        Some(door),
        router,
        limits,
        watching,
    ));
    (addr, shutdown, dialer)
}

/// Sends one keep-alive GET on `stream` and returns the response's head and
/// body as text (reads until the body, which is short, has arrived).
async fn get_on(stream: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    let mut buffer = [0u8; 1024];
    while !String::from_utf8_lossy(&response).contains("\r\n\r\n") {
        let read = tokio::time::timeout(WAIT, stream.read(&mut buffer))
            .await
            .expect("a response within the timeout")
            .expect("read");
        if read == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..read]);
    }
    // The body is a few bytes, sent with the head or just after it.
    if let Ok(Ok(read)) =
        tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await
    {
        response.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn a_client_that_sends_half_a_request_line_is_disconnected() {
    let limits = ListenerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ListenerLimits::default()
    };
    let (addr, _shutdown) = start(limits).await;
    // Positive control: a whole request within the timeout is served.
    let mut control = TcpStream::connect(addr).await.expect("connect");
    assert!(get_on(&mut control).await.starts_with("HTTP/1.1 200"));

    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET / HT").await.expect("write");
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, slow.read_to_end(&mut rest)).await;
    assert!(
        ended.is_ok(),
        "the server kept a half-sent request open for {WAIT:?}"
    );
}

#[tokio::test]
async fn over_max_connections_a_client_gets_429_until_one_closes() {
    let limits = ListenerLimits {
        max_connections: 1,
        ..ListenerLimits::default()
    };
    let (addr, _shutdown) = start(limits).await;
    let mut first = TcpStream::connect(addr).await.expect("connect");
    let answer = get_on(&mut first).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut second = TcpStream::connect(addr).await.expect("connect");
    let answer = get_on(&mut second).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.contains(r#"{"message":"Too Many Requests"}"#),
        "{answer}"
    );

    // Once the first closes, its place is free again (the server notices the
    // close asynchronously: try until it has, within the bound).
    drop(first);
    let served = tokio::time::timeout(WAIT, async {
        loop {
            let mut next = TcpStream::connect(addr).await.expect("connect");
            if get_on(&mut next).await.starts_with("HTTP/1.1 200") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        served.is_ok(),
        "the closed connection's place was not freed"
    );
}

/// A connection over the cap is not counted, so it is held only briefly:
/// one that sends nothing is closed after [`REFUSAL_READ_TIMEOUT`] (1 s),
/// not the full header-read timeout.
#[tokio::test]
async fn a_silent_connection_over_the_cap_is_closed_at_the_refusal_timeout() {
    let limits = ListenerLimits {
        max_connections: 1,
        header_read_timeout: Duration::from_secs(60),
    };
    let (addr, _shutdown) = start(limits).await;
    let mut first = TcpStream::connect(addr).await.expect("connect");
    assert!(get_on(&mut first).await.starts_with("HTTP/1.1 200"));
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    // The bound is far below the 60 s header timeout: ending within it
    // shows the refusal's own timeout applied.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, silent.read_to_end(&mut rest)).await;
    assert!(
        ended.is_ok(),
        "an uncounted connection was held for {WAIT:?}"
    );
}

/// A connection through the door is served as a socket is — with the
/// address its dialer gave, under the header-read timeout — but holds no
/// place among `max_connections`; once the listener stops, dialling fails.
#[tokio::test]
async fn the_door_serves_pipes_beside_the_sockets_it_counts() {
    let limits = ListenerLimits {
        max_connections: 1,
        header_read_timeout: Duration::from_millis(300),
    };
    let (addr, shutdown, dialer) = start_with_door(limits).await;
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    assert!(get_on(&mut socket).await.starts_with("HTTP/1.1 200"));
    let mut over = TcpStream::connect(addr).await.expect("connect");
    assert!(
        get_on(&mut over).await.starts_with("HTTP/1.1 429"),
        "the cap is reached"
    );

    let peer = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 9), 40_000));
    let mut pipe = dialer.dial(peer).await.expect("dial the door");
    let answer = get_on(&mut pipe).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("127.0.0.9"),
        "the dialer's address: {answer}"
    );

    let mut slow = dialer.dial(peer).await.expect("dial the door");
    slow.write_all(b"GET / HT").await.expect("write");
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, slow.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "a half-sent request on a pipe was held");

    shutdown.send_replace(true);
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            match dialer.dial(peer).await {
                Err(error) => return error,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("dialling fails once the listener stopped");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_returns() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind loopback");
    let (shutdown, watching) = watch::channel(false);
    let served = tokio::spawn(serve(
        listener,
        Router::new(),
        ListenerLimits::default(),
        watching,
    ));
    shutdown.send_replace(true);
    let result = tokio::time::timeout(WAIT, served).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
}

#[test]
fn only_non_loopback_addresses_are_warned_about() {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
    assert_eq!(exposure_warning(loopback, "the edge"), None);
    assert_eq!(
        exposure_warning(SocketAddr::from((Ipv6Addr::LOCALHOST, 8080)), "the edge"),
        None
    );
    let open = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8081));
    let warning = exposure_warning(open, "the API layer").expect("a warning");
    assert!(warning.contains("0.0.0.0:8081"), "{warning}");
    assert!(warning.contains("the API layer"), "{warning}");
}

/// Opens `count` connections to `addr` at once; how many the kernel
/// completed within `limit` (nothing accepts them meanwhile).
async fn burst(addr: SocketAddr, count: usize, limit: Duration) -> usize {
    let connects = (0..count).map(|_| tokio::time::timeout(limit, TcpStream::connect(addr)));
    let results = futures_util::future::join_all(connects).await;
    results
        .into_iter()
        .filter(|r| matches!(r, Ok(Ok(_))))
        .count()
}

/// A burst larger than tokio's default accept queue (1,024) is queued while
/// the stack is too busy to accept, instead of losing SYNs (a client then
/// waits for its 1 s retransmission and fails a 1 s connect timeout).
#[tokio::test]
async fn a_burst_of_connections_is_queued_while_nothing_accepts() {
    const BURST: usize = 1_500;
    let listener = bind((Ipv4Addr::LOCALHOST, 0).into()).expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    assert_eq!(burst(addr, BURST, WAIT).await, BURST);

    // Positive control: tokio's own bind queues about 1,024 and the rest
    // wait for SYN retransmissions, so the burst is not complete in 500 ms.
    let default = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind loopback");
    let default_addr = default.local_addr().expect("local addr");
    let completed = burst(default_addr, BURST, Duration::from_millis(500)).await;
    assert!(completed < BURST, "{completed} of {BURST} completed");
    drop((listener, default));
}
