//! Hostile clients against the local stack, each refused or bounded with
//! the limit named: a web page's cross-site `text/plain` POST to every
//! local port changes nothing; bodies that never finish arriving are cut
//! at the read timeout (408); a flood of `Event` invocations is answered
//! 202 or 429 naming the queue's bound and the stack keeps serving; a
//! client that stops reading large frames is closed (1008) while another
//! gets every broadcast. Every loop is bounded in count and every wait in
//! time; everything talks to loopback only.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use e2e::{Client, Incoming, Stack, StackConfig, within};
use protocol::{ClientFrame, ServerFrame};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ANSWER: Duration = Duration::from_secs(30);

/// `host:port` of an `http://` or `ws://` URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// Sends raw HTTP/1.1 bytes and returns the whole answer (the request asks
/// the server to close).
async fn raw(authority: &str, request: &[u8]) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(authority).await?;
    stream.write_all(request).await?;
    let mut answer = Vec::new();
    within(ANSWER, "the answer", stream.read_to_end(&mut answer)).await??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The status code of a raw answer.
fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// What a browser sends for `fetch(url, {method: 'POST', mode: 'no-cors',
/// body: text})` from another site: no preflight, `text/plain`.
fn cross_site_post(authority: &str, path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\norigin: http://evil.example\r\n\
         referer: http://evil.example/\r\ncontent-type: text/plain;charset=UTF-8\r\n\
         sec-fetch-mode: no-cors\r\nsec-fetch-site: cross-site\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_cross_site_post_to_each_local_port_changes_nothing() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let mut victim = Client::connect(stack.edge()).await?;
            let endpoints = stack.endpoints().clone();
            let stage = &endpoints.stage;
            let topology = stack.topology()?;
            let forged_frame =
                json!({"type": "message", "from": "attacker", "data": "forged"}).to_string();
            let forged_event = json!({
                "requestContext": {"routeKey": "$disconnect", "eventType": "DISCONNECT",
                                   "connectionId": "L0SM9cOFvHcCIhw=", "stage": stage},
                "continuation": {"data": "forged"}
            })
            .to_string();
            let targets = [
                (
                    authority(&endpoints.edge).to_string(),
                    "/".to_string(),
                    forged_frame.clone(),
                ),
                (
                    authority(&endpoints.api).to_string(),
                    format!("/{stage}"),
                    forged_frame.clone(),
                ),
                (
                    authority(&endpoints.management).to_string(),
                    format!("/{stage}/@connections/L0SM9cOFvHcCIhw%3D"),
                    forged_frame.clone(),
                ),
                (
                    authority(&endpoints.lambda).to_string(),
                    format!(
                        "/2015-03-31/functions/{}/invocations",
                        topology.function.name
                    ),
                    forged_event.clone(),
                ),
                (
                    authority(&endpoints.console).to_string(),
                    "/".to_string(),
                    forged_frame.clone(),
                ),
                // The control room: obeyed, this would close the victim now.
                (
                    authority(&endpoints.control).to_string(),
                    "/expire".to_string(),
                    json!({"limit": "idle"}).to_string(),
                ),
            ];
            for (authority, path, body) in &targets {
                let answer =
                    raw(authority, cross_site_post(authority, path, body).as_bytes()).await?;
                let code = status(&answer);
                ensure!(
                    (400..500).contains(&code),
                    "POST http://{authority}{path} answered {code}, expected a refusal: {answer}"
                );
            }
            // Nothing reached the connected client, and it is still served.
            match victim.recv_within(Duration::from_secs(1)).await {
                Err(_) => {}
                Ok(frame) => bail!("the victim received {frame:?}"),
            }
            victim.ping().await.context("the victim still gets pong")?;
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn bodies_that_never_finish_are_cut_at_the_read_timeout() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let endpoints = stack.endpoints().clone();
            let topology = stack.topology()?;
            let slow = |authority: String, path: String| async move {
                let mut stream = TcpStream::connect(&authority).await?;
                let head = format!(
                    "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\n\
                     authorization: AWS4-HMAC-SHA256 Credential=local/x\r\n\
                     content-length: 1000\r\nconnection: close\r\n\r\n{{\"partial\":"
                );
                stream.write_all(head.as_bytes()).await?;
                let mut answer = Vec::new();
                within(ANSWER, "the 408", stream.read_to_end(&mut answer)).await??;
                anyhow::Ok(String::from_utf8_lossy(&answer).into_owned())
            };
            let management = slow(
                authority(&endpoints.management).to_string(),
                format!("/{}/@connections/L0SM9cOFvHcCIhw%3D", endpoints.stage),
            );
            let lambda = slow(
                authority(&endpoints.lambda).to_string(),
                format!("/2015-03-31/functions/{}/invocations", topology.function.name),
            );
            let (management, lambda) = tokio::join!(management, lambda);
            for (what, answer) in [("@connections", management?), ("Invoke API", lambda?)] {
                ensure!(status(&answer) == 408, "{what}: {answer}");
                ensure!(answer.contains("10s"), "{what}: the timeout is not named: {answer}");
            }
            Ok(())
        }
        .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_event_invocations_is_bounded_and_the_stack_keeps_serving() -> anyhow::Result<()>
{
    const FLOOD: usize = 300;
    let stack = Stack::start().await?;
    stack.explain(
        async {
            let topology = stack.topology()?;
            let config = aws_sdk_lambda::Config::builder()
                .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
                .region(aws_sdk_lambda::config::Region::new(topology.region.clone()))
                .credentials_provider(aws_sdk_lambda::config::Credentials::new(
                    "local", "local", None, None, "hostile",
                ))
                .endpoint_url(stack.endpoints().lambda.clone())
                .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
                .build();
            let sdk = aws_sdk_lambda::Client::from_conf(config);
            // Just under the 256 KB an Event may carry.
            let payload = json!({"flood": "x".repeat(250 * 1024)}).to_string().into_bytes();
            let answers = futures_util::future::join_all((0..FLOOD).map(|_| {
                let sdk = sdk.clone();
                let payload = payload.clone();
                let function = topology.function.name.clone();
                async move {
                    sdk.invoke()
                        .function_name(function)
                        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
                        .payload(aws_sdk_lambda::primitives::Blob::new(payload))
                        .send()
                        .await
                }
            }));
            let answers = within(Duration::from_secs(120), "the flood's answers", answers).await?;
            let (mut queued, mut refused) = (0, 0);
            for answer in answers {
                match answer {
                    Ok(output) if output.status_code() == 202 => queued += 1,
                    Ok(output) => bail!("an Event invocation answered {}", output.status_code()),
                    Err(error) => {
                        let status = error.raw_response().map(|r| r.status().as_u16());
                        let message = format!("{error:?}");
                        ensure!(
                            status == Some(429) && message.contains("bytes") || message.contains("events are already queued"),
                            "an Event invocation failed otherwise than at the queue's bound: {message}"
                        );
                        refused += 1;
                    }
                }
            }
            ensure!(queued + refused == FLOOD);
            ensure!(queued > 0, "no Event invocation was queued");
            // The stack still serves a client.
            let mut client = Client::connect(stack.edge()).await?;
            client.ping().await.context("a ping after the flood")?;
            Ok(())
        }
        .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_large_frames_is_closed_and_others_get_everything()
-> anyhow::Result<()> {
    const BROADCASTS: usize = 200;
    let stack = Stack::start_with(StackConfig::new().generous_throttling()).await?;
    stack.explain(
        async {
            // A client of the API layer (with the key: fewer buffers between
            // it and the stack than through the edge) that completes the
            // handshake with a tiny receive buffer and never reads after it.
            let api = authority(stack.api()).to_string();
            let stage = stack.endpoints().stage.clone();
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_recv_buffer_size(4096)?;
            let mut stuck = socket.connect(api.parse()?).await?;
            let handshake = format!(
                "GET /{stage} HTTP/1.1\r\nhost: {api}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
                 sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\
                 x-api-key: {}\r\n\r\n",
                stack.api_key()
            );
            stuck.write_all(handshake.as_bytes()).await?;
            let mut head = [0u8; 12];
            within(ANSWER, "the 101", stuck.read_exact(&mut head)).await??;
            ensure!(head.starts_with(b"HTTP/1.1 101"), "{:?}", String::from_utf8_lossy(&head));

            let mut sender = Client::connect(stack.edge()).await?;
            let mut reader = Client::connect(stack.edge()).await?;
            let big = "y".repeat(30 * 1024);
            let mut received = 0;
            for n in 0..BROADCASTS {
                sender
                    .send(&ClientFrame::send_message(json!({"n": n, "pad": big})))
                    .await?;
                match sender.recv_server().await? {
                    ServerFrame::Sent { .. } => {}
                    other => bail!("broadcast {n}: expected sent, got {other:?}"),
                }
                while received <= n {
                    match reader.recv().await? {
                        Incoming::Server(ServerFrame::Message { data, .. }) => {
                            ensure!(data["n"] == received, "out of order: {data:?}");
                            received += 1;
                        }
                        other => bail!("the reader got {other:?}"),
                    }
                }
            }
            ensure!(received == BROADCASTS);
            stack
                .wait_for_log("status_code=1008", 1, Duration::from_secs(60))
                .await
                .context("the client that stopped reading is closed with 1008")?;
            drop(stuck);
            Ok(())
        }
        .await,
    )
}
