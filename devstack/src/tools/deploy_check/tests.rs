//! The checker's pieces against loopback servers: URL validation, each way
//! of failing to connect, the report's lines and JSON.

use super::*;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

const LIMIT: Duration = Duration::from_secs(5);

#[test]
fn urls_are_validated_before_connecting() {
    let edge = Endpoint::parse("wss://d111111abcdef8.cloudfront.net").unwrap();
    assert_eq!(
        (edge.tls, edge.host.as_str(), edge.port),
        (true, "d111111abcdef8.cloudfront.net", 443)
    );
    let local = Endpoint::parse(" ws://127.0.0.1:8081/prod ").unwrap();
    assert_eq!(
        (
            local.tls,
            local.host.as_str(),
            local.port,
            local.url.as_str()
        ),
        (false, "127.0.0.1", 8081, "ws://127.0.0.1:8081/prod")
    );
    let v6 = Endpoint::parse("ws://[::1]:9000/").unwrap();
    assert_eq!((v6.host.as_str(), v6.port), ("::1", 9000));

    let reason = |url: &str| match Endpoint::parse(url) {
        Err(ConnectError::MalformedUrl { reason, .. }) => reason,
        other => panic!("{url}: expected a malformed URL, got {other:?}"),
    };
    assert!(reason("https://d111.cloudfront.net").contains("use wss://"));
    assert!(reason("http://127.0.0.1:8080").contains("use ws://"));
    assert!(reason("ftp://host/").contains("unsupported scheme"));
    assert!(reason("d111.cloudfront.net").contains("missing scheme"));
    assert!(reason("wss://user:pw@host/").contains("credentials"));
    assert!(!reason("wss://exa mple.com/").is_empty());
    assert!(!reason("").is_empty());
}

#[test]
fn each_connection_failure_has_its_own_message() {
    let messages = [
        ConnectError::MalformedUrl {
            url: "x".into(),
            reason: "missing scheme".into(),
        }
        .to_string(),
        ConnectError::Dns {
            host: "nowhere.invalid".into(),
            detail: "not found".into(),
        }
        .to_string(),
        ConnectError::Tcp {
            host: "127.0.0.1".into(),
            port: 1,
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        }
        .to_string(),
        ConnectError::Tls {
            host: "h".into(),
            detail: "bad certificate".into(),
        }
        .to_string(),
        ConnectError::Timeout {
            step: Step::Tls,
            after: Duration::from_secs(3),
        }
        .to_string(),
        ConnectError::Refused { status: 403 }.to_string(),
    ];
    let starts: Vec<&str> = messages
        .iter()
        .map(|m| m.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        starts,
        ["malformed", "DNS", "TCP", "TLS", "timed", "handshake"]
    );
    assert_eq!(messages[4], "timed out after 3s during the TLS handshake");
    assert_eq!(messages[5], "handshake refused with HTTP 403");
}

#[test]
fn http_refusals_keep_their_status() {
    let response = tungstenite::http::Response::builder()
        .status(403)
        .body(None)
        .unwrap();
    let error = classify_handshake_error(tungstenite::Error::Http(Box::new(response)));
    assert!(
        matches!(error, ConnectError::Refused { status: 403 }),
        "{error:?}"
    );
    let error = classify_handshake_error(tungstenite::Error::ConnectionClosed);
    assert!(matches!(error, ConnectError::Handshake(_)), "{error:?}");
}

fn sample_report() -> Report {
    Report {
        distribution: "wss://d1.cloudfront.net".into(),
        direct: "wss://a.execute-api.eu-west-1.amazonaws.com/prod".into(),
        checks: vec![
            Outcome::pass(names::PING, "pong in 1.5 ms")
                .figure("roundTripMs", Duration::from_micros(1500)),
            Outcome::fail(
                names::DIRECT_WITHOUT_KEY,
                "the direct endpoint ACCEPTED a client without a key",
            ),
            Outcome::skip(names::CLOSE, "no connection"),
        ],
    }
}

#[test]
fn lines_say_pass_fail_or_skip() {
    let report = sample_report();
    let lines: Vec<String> = report.checks.iter().map(Outcome::line).collect();
    assert!(lines[0].starts_with("PASS  ping "), "{}", lines[0]);
    assert!(lines[0].ends_with("pong in 1.5 ms"));
    assert!(lines[1].starts_with("FAIL  direct-without-key "));
    assert!(lines[2].starts_with("SKIP  close "));
    assert!(!report.ok());
    let summary = report.summary();
    assert!(
        summary.starts_with("3 checks: 1 passed, 1 failed, 1 skipped;"),
        "{summary}"
    );
    assert!(summary.contains("direct endpoint"), "{summary}");
}

#[test]
fn the_json_report_is_one_parseable_document() {
    let report = sample_report();
    let document: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(document["ok"], json!(false));
    assert_eq!(
        (
            document["passed"].clone(),
            document["failed"].clone(),
            document["skipped"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    assert_eq!(document["checks"][0]["name"], json!("ping"));
    assert_eq!(document["checks"][0]["status"], json!("pass"));
    assert_eq!(document["checks"][0]["figures"]["roundTripMs"], json!(1.5));
    assert_eq!(document["checks"][1]["status"], json!("fail"));
    assert!(document["checks"][2].get("figures").is_none());
}

#[test]
fn a_report_passes_only_when_every_check_passed() {
    let mut report = sample_report();
    report.checks.retain(|c| c.status == Status::Pass);
    assert!(report.ok());
    assert!(report.summary().contains("refuses clients that skip it"));
    report.checks.clear();
    assert!(!report.ok(), "a report with no checks proves nothing");
}

async fn listener() -> (TcpListener, Endpoint, Endpoint) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ws = Endpoint::parse(&format!("ws://127.0.0.1:{port}/prod")).unwrap();
    let wss = Endpoint::parse(&format!("wss://127.0.0.1:{port}/prod")).unwrap();
    (listener, ws, wss)
}

#[tokio::test]
async fn a_refused_handshake_reports_its_status() {
    let (listener, endpoint, _) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let refuse = |_: &Request, _: Response| -> Result<Response, ErrorResponse> {
            let mut response = ErrorResponse::new(Some("Forbidden".into()));
            *response.status_mut() = StatusCode::FORBIDDEN;
            Err(response)
        };
        let _ = tokio_tungstenite::accept_hdr_async(stream, refuse).await;
    });
    let result = Connector::new(LIMIT)
        .connect(&endpoint, Some("wrong"))
        .await;
    assert!(
        matches!(result, Err(ConnectError::Refused { status: 403 })),
        "{:?}",
        result.err()
    );
    tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn an_accepted_handshake_sends_the_key_and_times_each_step() {
    let (listener, endpoint, _) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut seen = (None, None);
        let record = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
            let header = |name| {
                request
                    .headers()
                    .get(name)
                    .map(|v: &HeaderValue| v.as_bytes().to_vec())
            };
            seen = (header(API_KEY_HEADER), header(USER_AGENT_HEADER.as_str()));
            Ok(response)
        };
        let ws = tokio_tungstenite::accept_hdr_async(stream, record)
            .await
            .unwrap();
        drop(ws);
        seen
    });
    let connected = Connector::new(LIMIT)
        .connect(&endpoint, Some("k3y"))
        .await
        .unwrap();
    assert!(connected.timings.tls.is_none());
    assert!(connected.timings.total() >= connected.timings.upgrade);
    let (key, agent) = tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(key.as_deref(), Some(&b"k3y"[..]));
    let agent =
        String::from_utf8(agent.expect("no User-Agent: WAF's common rule set would block it"))
            .unwrap();
    assert!(agent.starts_with("devstack-check/"), "{agent}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_in_the_upgrade() {
    let (listener, endpoint, _) = listener().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = [0u8; 1024];
        // Read the request, answer nothing, hold the connection open.
        let _ = stream.read(&mut buffer).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    });
    let result = Connector::new(Duration::from_millis(300))
        .connect(&endpoint, None)
        .await;
    assert!(
        matches!(
            result,
            Err(ConnectError::Timeout {
                step: Step::Upgrade,
                ..
            })
        ),
        "{:?}",
        result.err()
    );
    server.abort();
}

#[tokio::test]
async fn a_server_that_does_not_speak_tls_is_a_tls_failure() {
    let (listener, _, endpoint) = listener().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        let _ = stream.shutdown().await;
    });
    let result = Connector::new(LIMIT).connect(&endpoint, None).await;
    match result {
        Err(ConnectError::Tls { host, .. }) => assert_eq!(host, "127.0.0.1"),
        other => panic!("expected a TLS failure, got {:?}", other.err()),
    }
    tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
}

/// A loopback wss:// server with a self-signed certificate for
/// `localhost`: accepts one WebSocket, answers one text frame with "ok".
async fn tls_server() -> (
    Endpoint,
    rustls::pki_types::CertificateDer<'static>,
    tokio::task::JoinHandle<()>,
) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(stream).await else {
                continue;
            };
            let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                continue;
            };
            if let Some(Ok(Message::Text(_))) = ws.next().await {
                let _ = ws.send(Message::text("ok")).await;
            }
        }
    });
    let endpoint = Endpoint::parse(&format!("wss://localhost:{port}/prod")).unwrap();
    (endpoint, cert, server)
}

#[tokio::test]
async fn a_wss_handshake_is_encrypted_and_verified() {
    let (endpoint, cert, server) = tls_server().await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut connected = Connector::with_roots(LIMIT, roots)
        .connect(&endpoint, None)
        .await
        .unwrap();
    assert!(
        connected.timings.tls.is_some(),
        "wss:// must time a TLS step"
    );
    connected.ws.send(Message::text("hello")).await.unwrap();
    let reply = tokio::time::timeout(LIMIT, connected.ws.next())
        .await
        .unwrap();
    assert!(
        matches!(reply, Some(Ok(Message::Text(ref t))) if t.as_str() == "ok"),
        "{reply:?}"
    );

    // Not signed by a CA it trusts: a TLS failure, not a handshake one.
    match Connector::new(LIMIT).connect(&endpoint, None).await {
        Err(ConnectError::Tls { host, detail }) => {
            assert_eq!(host, "localhost");
            assert!(detail.contains("certificate"), "{detail}");
        }
        other => panic!("expected a TLS failure, got {:?}", other.err()),
    }
    server.abort();
}

#[tokio::test]
async fn a_closed_port_is_a_tcp_failure() {
    let (listener, endpoint, _) = listener().await;
    drop(listener);
    let result = Connector::new(LIMIT).connect(&endpoint, None).await;
    assert!(
        matches!(result, Err(ConnectError::Tcp { port, .. }) if port == endpoint.port),
        "{:?}",
        result.err()
    );
}

fn args(url: Option<&str>, direct: Option<&str>) -> CheckArgs {
    CheckArgs {
        url: url.map(String::from),
        direct: direct.map(String::from),
        messages: 3,
        json: true,
        timeout: 1,
        api_key: None,
        token: None,
        token_parameter: "token".into(),
        issuer: crate::issuer::DEFAULT_URL.into(),
        conformance: false,
        ready_file: None,
        slow: false,
        flood: 2000,
    }
}

#[test]
fn a_ready_file_fills_what_the_command_line_leaves_out() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("ready.json");
    let mut endpoints = Endpoints::example();
    endpoints.issuer = Some("http://127.0.0.1:6".into());
    std::fs::write(&path, serde_json::to_string(&endpoints).expect("JSON")).expect("written");

    let mut filled = args(None, None);
    filled.ready_file = Some(path.clone());
    let read = filled.resolve().expect("a readable ready file");
    assert_eq!(read.as_ref().map(|e| e.stage.as_str()), Some("prod"));
    assert_eq!(
        (filled.url(), filled.direct()),
        ("ws://127.0.0.1:1/", "ws://127.0.0.1:2/prod")
    );
    assert_eq!(filled.api_key.as_deref(), Some("k"));
    assert_eq!(filled.issuer, "http://127.0.0.1:6");

    // What the command line gives wins.
    let mut given = args(Some("ws://127.0.0.1:9/"), None);
    given.api_key = Some("mine".into());
    given.ready_file = Some(path);
    given.resolve().expect("a readable ready file");
    assert_eq!(
        (given.url(), given.direct()),
        ("ws://127.0.0.1:9/", "ws://127.0.0.1:2/prod")
    );
    assert_eq!(given.api_key.as_deref(), Some("mine"));

    // Without one nothing changes; a missing one is named.
    let mut plain = args(Some("wss://d1.cloudfront.net"), Some("wss://x/prod"));
    assert!(plain.resolve().expect("no ready file").is_none());
    let mut missing = args(None, None);
    missing.ready_file = Some(dir.path().join("absent.json"));
    let error = missing.resolve().expect_err("no such file");
    assert!(
        error.contains("absent.json") && error.contains("--ready-file"),
        "{error}"
    );
}

#[tokio::test]
async fn a_malformed_url_fails_every_check_that_needs_it_without_connecting() {
    let args = args(Some("https://d1.cloudfront.net"), Some("not a url"));
    let mut seen = Vec::new();
    let report = tokio::time::timeout(LIMIT, check(&args, |o| seen.push(o.name)))
        .await
        .unwrap();
    assert_eq!(
        seen,
        report.checks.iter().map(|c| c.name).collect::<Vec<_>>()
    );
    let statuses: Vec<(&str, Status)> = report.checks.iter().map(|c| (c.name, c.status)).collect();
    assert_eq!(
        statuses,
        [
            (names::HANDSHAKE, Status::Fail),
            (names::PING, Status::Skip),
            (names::BROADCAST, Status::Skip),
            (names::ROUND_TRIP, Status::Skip),
            (names::CLOSE, Status::Skip),
            (names::DIRECT_WITHOUT_KEY, Status::Fail),
            (names::DIRECT_WRONG_KEY, Status::Fail),
        ]
    );
    assert!(
        report.checks[0].detail.starts_with("malformed URL"),
        "{}",
        report.checks[0].detail
    );
    assert!(!report.ok());
}

/// A loopback address that swallows connection attempts: a listener that
/// never accepts, its accept queue filled, so the kernel drops further SYNs
/// and a connect hangs (as on a network that black-holes an address family).
async fn black_hole() -> (
    std::net::SocketAddr,
    tokio::net::TcpListener,
    Vec<TcpStream>,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the queue: connects complete until it is full, then hang.
    let mut held = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            _ => break,
        }
    }
    (addr, listener, held)
}

#[tokio::test]
async fn every_resolved_address_is_tried_with_its_own_timeout() {
    let limit = Duration::from_millis(500);
    let (dark, _listener, _held) = black_hole().await;
    // Positive control: the black hole really swallows a connect.
    let swallowed = tokio::time::timeout(limit, TcpStream::connect(dark)).await;
    assert!(swallowed.is_err(), "the black hole answered: {swallowed:?}");

    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live = server.local_addr().unwrap();
    let closed = {
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        gone.local_addr().unwrap()
    };
    let stream = connect_any(&[dark, closed, live], limit)
        .await
        .expect("the third address answers");
    assert_eq!(stream.peer_addr().unwrap(), live);

    // Every address failing: each is named with its own failure.
    let failures = connect_any(&[dark, closed], limit)
        .await
        .expect_err("none answers");
    assert_eq!(failures.len(), 2);
    assert!(failures[0].1.is_none(), "the black hole timed out");
    assert!(failures[1].1.is_some(), "the closed port was refused");
}

#[test]
fn the_token_goes_in_the_query_string_of_the_url_sent_only() {
    let edge = Endpoint::parse("wss://d1.cloudfront.net/?room=a").unwrap();
    let signed_in = edge.with_query("token", "a.b.c");
    assert_eq!(signed_in.url, "wss://d1.cloudfront.net/?room=a&token=a.b.c");
    assert_eq!(
        (signed_in.host.as_str(), signed_in.port),
        ("d1.cloudfront.net", 443)
    );
    assert_eq!(edge.url, "wss://d1.cloudfront.net/?room=a");
}
