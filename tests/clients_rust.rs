//! The Rust client library (`clients/rust`) against the real local stack with
//! a shortened idle limit: messages through the edge, once each; keepalive
//! past the idle limit; reconnect after the stack's 1001 with what was sent
//! meanwhile delivered; a backend's handshake header (x-api-key to the API
//! layer directly); give-up on a refused handshake.

use std::time::Duration;

use e2e::{Stack, StackConfig};
use protocol::ServerFrame;
use websocket_waf_client::{Client, Delivery, Event, Options, State};

const IDLE_SECS: u64 = 2;

/// Waits for the first event `want` accepts, within 15 s.
async fn until<T>(
    client: &mut Client,
    what: &str,
    mut want: impl FnMut(&Event) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .map_err(|_| anyhow::anyhow!("timed out waiting for {what}"))?
            .ok_or_else(|| anyhow::anyhow!("the client ended while waiting for {what}"))?;
        if let Some(found) = want(&event) {
            return Ok(found);
        }
    }
}

fn state_is(want: State) -> impl FnMut(&Event) -> Option<(Option<u16>, String)> {
    move |event| match event {
        Event::State {
            state,
            code,
            detail,
            ..
        } if *state == want => Some((*code, detail.clone())),
        _ => None,
    }
}

fn options(url: &str, keepalive: Duration) -> anyhow::Result<Options> {
    let mut options = Options::new(url)?;
    options.keepalive = keepalive;
    options.base = Duration::from_millis(200);
    Ok(options)
}

#[tokio::test]
async fn the_rust_client_survives_the_stacks_idle_limit() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackConfig::new().idle_timeout_secs(IDLE_SECS)).await?;
    let result = exercise(&stack).await;
    stack.explain(result)
}

async fn exercise(stack: &Stack) -> anyhow::Result<()> {
    let idle = Duration::from_secs(IDLE_SECS);
    let edge = stack.edge().to_string();
    let mut peer = Client::connect(options(&edge, idle / 3)?);
    let mut away = Client::connect(options(&edge, Duration::from_secs(3600))?);
    until(&mut peer, "peer open", state_is(State::Open)).await?;
    until(&mut away, "away open", state_is(State::Open)).await?;

    // A message through the edge reaches the other client once.
    assert_eq!(away.send(serde_json::json!("hello")).await?, Delivery::Sent);
    let data = until(&mut peer, "the message", |event| match event {
        Event::Message(ServerFrame::Message { data, .. }) => Some(data.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(data, serde_json::json!("hello"));

    // Without keepalive the stack closes with 1001; the client comes back by
    // itself and what was sent meanwhile reaches the peer.
    let (code, _) = until(&mut away, "the idle close", state_is(State::Reconnecting)).await?;
    assert_eq!(code, Some(1001));
    assert_eq!(
        away.send(serde_json::json!("while away")).await?,
        Delivery::Queued
    );
    until(&mut away, "reopened", state_is(State::Open)).await?;
    until(&mut peer, "the queued message", |event| match event {
        Event::Message(ServerFrame::Message { data, .. }) if data == "while away" => Some(()),
        Event::State {
            state: State::Reconnecting,
            ..
        } => panic!("the peer's keepalive did not hold"),
        _ => None,
    })
    .await?;

    // The peer pinged its way past 2.5× the idle limit: still its first connection.
    tokio::time::sleep(idle * 2).await;
    peer.ping().await?;
    until(&mut peer, "a pong", |event| match event {
        Event::Frame(ServerFrame::Pong) => Some(()),
        Event::State {
            state: State::Reconnecting,
            ..
        } => panic!("the peer's keepalive did not hold"),
        _ => None,
    })
    .await?;

    // A backend may send what a browser cannot: x-api-key to the API layer.
    let mut direct = options(stack.api(), idle / 3)?;
    direct
        .headers
        .push(("x-api-key".into(), stack.api_key().into()));
    let mut backend = Client::connect(direct);
    until(&mut backend, "the direct connection", state_is(State::Open)).await?;

    // Without the key the API layer refuses (403): backoff, then give-up.
    let mut refused = options(stack.api(), idle)?;
    refused.base = Duration::from_millis(20);
    refused.max_attempts = Some(3);
    let mut stranger = Client::connect(refused);
    let (_, detail) = until(&mut stranger, "the give-up", state_is(State::Closed)).await?;
    assert!(
        detail.contains("gave up after 3 attempts") && detail.contains("403"),
        "{detail}"
    );

    for client in [&peer, &away, &backend] {
        client.close().await;
    }
    Ok(())
}

/// The stack stops (every client gets 1001) and starts again on the same
/// edge address: the client retries with backoff while nothing listens and
/// is back, usable, once the new stack is up.
#[tokio::test]
async fn the_rust_client_finds_a_restarted_stack_again() -> anyhow::Result<()> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = StackConfig::new().edge_addr(addr);
    let mut first = Stack::start_with(config.clone()).await?;
    // Retries at least every second, for as long as the restart takes.
    let mut patient = options(first.edge(), Duration::from_secs(60))?;
    patient.cap = Duration::from_secs(1);
    patient.max_attempts = None;
    let mut survivor = Client::connect(patient);
    first.explain(until(&mut survivor, "open", state_is(State::Open)).await)?;
    let shutdown = first.interrupt();
    drop(first);
    let (code, _) = until(&mut survivor, "the stop", state_is(State::Reconnecting)).await?;
    assert_eq!(code, Some(1001), "{shutdown:?}");

    let second = Stack::start_with(config).await?;
    let result = async {
        until(&mut survivor, "the reconnect", state_is(State::Open)).await?;
        let mut listener = Client::connect(options(second.edge(), Duration::from_secs(60))?);
        until(&mut listener, "open", state_is(State::Open)).await?;
        assert_eq!(
            survivor.send(serde_json::json!("back")).await?,
            Delivery::Sent
        );
        until(&mut listener, "the message", |event| match event {
            Event::Message(ServerFrame::Message { data, .. }) if data == "back" => Some(()),
            _ => None,
        })
        .await
    }
    .await;
    second.explain(result)
}

/// Options for `user`, signed in with a token from the stack's local issuer.
async fn signed_in(stack: &Stack, user: &str) -> anyhow::Result<Options> {
    let mut signed = options(stack.edge(), Duration::from_secs(60))?;
    signed.token = Some(
        stack
            .token(&local_issuer::MintRequest::for_user(user))
            .await?,
    );
    Ok(signed)
}

/// With sign-in on, the client's `token` goes in the query string the
/// stack's authorizer reads: the peer sees the sender's user id; without a
/// token the handshake is refused (401) and the client gives up.
#[tokio::test]
async fn the_rust_client_signs_in_with_its_token() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackConfig::new().sign_in()).await?;
    let result = async {
        let mut alice = Client::connect(signed_in(&stack, "alice").await?);
        until(&mut alice, "alice open", state_is(State::Open)).await?;
        let mut bob = Client::connect(signed_in(&stack, "bob").await?);
        until(&mut bob, "bob open", state_is(State::Open)).await?;
        alice.send(serde_json::json!("hi bob")).await?;
        let user = until(&mut bob, "alice's message", |event| match event {
            Event::Message(ServerFrame::Message { user_id, .. }) => Some(user_id.clone()),
            _ => None,
        })
        .await?;
        assert_eq!(user.as_deref(), Some("alice"));

        let mut anonymous = options(stack.edge(), Duration::from_secs(60))?;
        anonymous.base = Duration::from_millis(20);
        anonymous.max_attempts = Some(2);
        let mut stranger = Client::connect(anonymous);
        let (_, detail) = until(&mut stranger, "the give-up", state_is(State::Closed)).await?;
        assert!(detail.contains("401"), "{detail}");
        anyhow::Ok(())
    }
    .await;
    stack.explain(result)
}
