//! The console server: the page and every file it loads, the snapshot, the
//! event stream (first a snapshot, then each event once; a fresh snapshot
//! after falling behind), loopback-only hosts, and a stop that ends streams.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use super::*;

const WAIT: Duration = Duration::from_secs(5);

fn info() -> StackInfo {
    StackInfo {
        stack: "dev".into(),
        project: "websocket-waf".into(),
        region: "eu-west-1".into(),
        edge: "ws://127.0.0.1:8080/".into(),
        api: "ws://127.0.0.1:8081/prod".into(),
        sign_in: None,
    }
}

fn console() -> (Console, EventBus) {
    let bus = EventBus::new();
    (Console::new(info(), bus.clone()), bus)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, "127.0.0.1:8082")
        .body(Body::empty())
        .expect("a valid request")
}

async fn send(console: &Console, request: Request<Body>) -> axum::response::Response {
    tokio::time::timeout(WAIT, console.router().oneshot(request))
        .await
        .expect("the console answers in time")
        .expect("the router is infallible")
}

async fn body_text(response: axum::response::Response) -> String {
    let bytes = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("the body ends in time")
        .expect("the body reads")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

fn content_type(response: &axum::response::Response) -> &str {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The values of `attribute="…"` in `html`.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!("{attribute}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.split('"').next()
        })
        .collect()
}

/// The modules a JS file imports: `from './x.js'`.
fn imports(js: &str) -> Vec<&str> {
    js.match_indices("from './")
        .filter_map(|(at, _)| js[at + "from './".len()..].split('\'').next())
        .collect()
}

#[tokio::test]
async fn the_page_and_every_file_it_loads_are_served() {
    let (console, _) = console();
    let page = send(&console, get("/")).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(content_type(&page), "text/html; charset=utf-8");
    let csp = page
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self' ws: wss:"),
        "the page may fetch nothing but its own files and WebSockets: {csp}"
    );
    let html = body_text(page).await;

    let mut files: Vec<String> = attribute_values(&html, "src")
        .into_iter()
        .chain(attribute_values(&html, "href"))
        .filter(|url| !url.starts_with("data:"))
        .map(str::to_string)
        .collect();
    assert!(files.contains(&"app.js".to_string()), "{files:?}");
    assert!(files.contains(&"style.css".to_string()), "{files:?}");
    let mut checked = Vec::new();
    while let Some(file) = files.pop() {
        if checked.contains(&file) {
            continue;
        }
        assert!(
            !file.contains("//"),
            "{file}: the page loads nothing from elsewhere"
        );
        let response = send(&console, get(&format!("/{file}"))).await;
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        let expected = if file.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(content_type(&response), expected, "{file}");
        let text = body_text(response).await;
        if file.ends_with(".js") {
            files.extend(imports(&text).into_iter().map(str::to_string));
        }
        checked.push(file);
    }
    for module in ["connection.js", "frames.js", "live.js"] {
        assert!(
            checked.iter().any(|f| f == module),
            "{module} is never imported: {checked:?}"
        );
    }
}

#[tokio::test]
async fn unknown_paths_get_404_and_other_methods_405() {
    let (console, _) = console();
    let missing = send(&console, get("/nope.js")).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(body_text(missing).await.contains("The console is at /"));
    let post = Request::post("/snapshot")
        .header(header::HOST, "localhost:8082")
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        send(&console, post).await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn only_loopback_hosts_are_answered() {
    let (console, _) = console();
    for host in [
        "127.0.0.1:8082",
        "localhost:8082",
        "[::1]:8082",
        "127.0.0.5",
    ] {
        let request = Request::get("/snapshot")
            .header(header::HOST, host)
            .body(Body::empty())
            .expect("request");
        assert_eq!(
            send(&console, request).await.status(),
            StatusCode::OK,
            "{host}"
        );
    }
    for host in ["evil.example:8082", "evil.example", "10.0.0.1:8082", ""] {
        let request = Request::get("/snapshot")
            .header(header::HOST, host)
            .body(Body::empty())
            .expect("request");
        let response = send(&console, request).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{host:?}");
        assert!(body_text(response).await.contains("loopback host"));
    }
}

#[tokio::test]
async fn the_snapshot_names_the_stack_and_counts_the_events() {
    let (console, bus) = console();
    bus.publish(StackEvent::ConnectionOpened {
        connection_id: "abc=".into(),
        source_ip: "127.0.0.1".into(),
    });
    bus.publish(StackEvent::Invocation {
        connection_id: "abc=".into(),
        route: "ping".into(),
        outcome: "ok".into(),
        latency_ms: 3,
    });
    let response = send(&console, get("/snapshot")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let json: Value = serde_json::from_str(&body_text(response).await).expect("JSON");
    assert_eq!(json["stack"]["edge"], "ws://127.0.0.1:8080/");
    assert_eq!(json["stack"]["api"], "ws://127.0.0.1:8081/prod");
    assert_eq!(json["seq"], 2);
    assert_eq!(json["invocations"], 1);
    assert_eq!(json["invocationsByRoute"]["ping"]["ok"], 1);
    assert_eq!(json["connections"][0]["connectionId"], "abc=");
    assert_eq!(json["recent"][1]["type"], "invocation");
    assert!(
        json.get("apiKey").is_none() && !json.to_string().contains("apiKey"),
        "the console never shows the key"
    );
}

/// One server-sent event.
#[derive(Debug)]
struct Sse {
    event: String,
    id: String,
    data: Value,
}

/// Reads server-sent events off a response body.
struct SseReader {
    body: Body,
    buffer: String,
}

impl SseReader {
    fn new(response: axum::response::Response) -> Self {
        assert_eq!(content_type(&response), "text/event-stream");
        SseReader {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event with data (keep-alive comments are skipped).
    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|line| line.strip_prefix(&format!("{name}:")))
                        .map(|v| v.trim_start().to_string())
                };
                if let Some(data) = field("data") {
                    return Sse {
                        event: field("event").unwrap_or_default(),
                        id: field("id").unwrap_or_default(),
                        data: serde_json::from_str(&data).expect("the data is JSON"),
                    };
                }
                continue;
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("an event in time")
                .expect("the stream goes on")
                .expect("the stream reads");
            if let Ok(bytes) = frame.into_data() {
                self.buffer
                    .push_str(std::str::from_utf8(&bytes).expect("UTF-8"));
            }
        }
    }
}

fn ping(latency_ms: u64) -> StackEvent {
    StackEvent::Invocation {
        connection_id: "c".into(),
        route: "ping".into(),
        outcome: "ok".into(),
        latency_ms,
    }
}

#[tokio::test]
async fn the_event_stream_starts_with_a_snapshot_then_sends_each_event() {
    let (console, bus) = console();
    bus.publish(ping(1));
    let mut events = SseReader::new(send(&console, get("/events")).await);
    let first = events.next().await;
    assert_eq!(first.event, "snapshot");
    assert_eq!(first.id, "1");
    assert_eq!(first.data["invocations"], 1);
    assert_eq!(first.data["stack"]["edge"], "ws://127.0.0.1:8080/");

    bus.publish(StackEvent::WafBlocked {
        rule: "rate-limit-per-ip".into(),
        client_ip: "127.0.0.7".into(),
    });
    let second = events.next().await;
    assert_eq!(second.event, "stack");
    assert_eq!(second.id, "2");
    assert_eq!(second.data["type"], "wafBlocked");
    assert_eq!(second.data["clientIp"], "127.0.0.7");
}

#[tokio::test]
async fn a_console_that_falls_behind_gets_a_fresh_snapshot_and_no_event_twice() {
    let (console, bus) = console();
    let mut events = SseReader::new(send(&console, get("/events")).await);
    assert_eq!(events.next().await.data["seq"], 0);
    // Nobody reads the stream meanwhile: its receiver overflows.
    let published = 3000;
    for latency in 0..published {
        bus.publish(ping(latency));
    }
    let caught_up = events.next().await;
    assert_eq!(caught_up.event, "snapshot");
    assert_eq!(caught_up.data["seq"], published);
    assert_eq!(caught_up.data["invocations"], published);
    bus.publish(ping(1));
    let next = events.next().await;
    assert_eq!(
        (next.event.as_str(), next.data["seq"].as_u64()),
        ("stack", Some(published + 1)),
        "events the snapshot counted are not sent again"
    );
}

#[tokio::test]
async fn stop_ends_the_event_streams_and_the_server() {
    let (console, _) = console();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(console.clone().serve(listener));

    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("event: snapshot") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buffer))
            .await
            .expect("the snapshot in time")
            .expect("read");
        assert!(n > 0, "the stream ended before its snapshot");
        received.extend_from_slice(&buffer[..n]);
    }

    console.stop();
    tokio::time::timeout(WAIT, server)
        .await
        .expect("the server stops in time")
        .expect("the server task")
        .expect("the server ends without error");
    // The stream ended: the chunked body's end, then the connection closes.
    let rest = tokio::time::timeout(WAIT, async {
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.map(|_| rest)
    })
    .await
    .expect("the connection ends in time")
    .expect("read");
    assert!(
        String::from_utf8_lossy(&rest).ends_with("0\r\n\r\n"),
        "the event stream ended cleanly: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn the_console_listens_on_loopback_only() {
    assert!(check_loopback("127.0.0.1:8082".parse().expect("addr")).is_ok());
    assert!(check_loopback("[::1]:0".parse().expect("addr")).is_ok());
    let error = check_loopback("0.0.0.0:8082".parse().expect("addr"))
        .expect_err("0.0.0.0 is refused")
        .to_string();
    assert!(error.contains("loopback only"), "{error}");
}

fn post_token(content_type: &str, body: &str) -> Request<Body> {
    Request::post("/token")
        .header(header::HOST, "127.0.0.1:8082")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_string()))
        .expect("a valid request")
}

#[tokio::test]
async fn post_token_mints_through_the_local_issuer_for_json_bodies_only() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = crate::issuer::serve(listener, "aud").expect("issuer");
    let mut signed_in = info();
    signed_in.sign_in = Some(super::SignInInfo {
        token_parameter: "token".into(),
        local_issuer: Some(issuer.url().to_string()),
        mints: true,
    });
    let console = Console::new(signed_in, EventBus::new());

    let response = send(
        &console,
        post_token("application/json", r#"{"sub":"alice"}"#),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_str(&body_text(response).await).expect("json");
    assert_eq!(
        answer["token"].as_str().map(|t| t.split('.').count()),
        Some(3)
    );

    // A form or text body (no CORS preflight from another origin) is refused.
    let response = send(&console, post_token("text/plain", r#"{"sub":"alice"}"#)).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let response = send(&console, post_token("application/json", r#"{"user":"x"}"#)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // The snapshot tells the page it may mint, never where the issuer is.
    let snapshot = body_text(send(&console, get("/snapshot")).await).await;
    assert!(snapshot.contains(r#""mints":true"#), "{snapshot}");
    assert!(!snapshot.contains(issuer.url()), "{snapshot}");

    // Without a local issuer there is nothing to mint with.
    let (plain, _) = super::tests::console();
    let response = send(&plain, post_token("application/json", r#"{"sub":"alice"}"#)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
