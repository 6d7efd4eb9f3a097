//! The client against loopback servers that misbehave (no stack needed): a
//! handshake that hangs is abandoned at the connect timeout and retried, the
//! queue's bound holds while no connection opens, and the client gives up.

use std::time::Duration;

use tokio::net::TcpListener;
use websocket_waf_client::{Client, ClientError, Delivery, Event, Options, State};

/// A server that accepts TCP and never answers the handshake.
async fn silent_server() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok((url, task))
}

async fn next_state(client: &mut Client) -> anyhow::Result<(State, String)> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), client.next_event())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the client's events ended"))?;
        if let Event::State { state, detail, .. } = event {
            return Ok((state, detail));
        }
    }
}

#[tokio::test]
async fn a_hanging_handshake_is_retried_then_given_up_and_the_queue_is_bounded()
-> anyhow::Result<()> {
    let (url, _server) = silent_server().await?;
    let mut options = Options::new(&url)?;
    options.connect_timeout = Duration::from_millis(200);
    options.base = Duration::from_millis(10);
    options.max_attempts = Some(3);
    options.queue_limit = 2;
    let mut client = Client::connect(options);
    assert_eq!(client.send(serde_json::json!(1)).await?, Delivery::Queued);
    assert_eq!(client.send(serde_json::json!(2)).await?, Delivery::Queued);
    assert_eq!(
        client.send(serde_json::json!(3)).await,
        Err(ClientError::QueueFull(2))
    );
    let mut seen = Vec::new();
    loop {
        let (state, detail) = next_state(&mut client).await?;
        seen.push(state);
        if state == State::Closed {
            assert!(detail.contains("gave up after 3 attempts"), "{detail}");
            assert!(detail.contains("did not complete within"), "{detail}");
            assert!(detail.contains("2 queued frames dropped"), "{detail}");
            break;
        }
    }
    assert_eq!(
        seen.iter().filter(|s| **s == State::Connecting).count(),
        3,
        "{seen:?}"
    );
    assert_eq!(client.ping().await, Err(ClientError::Closed));
    Ok(())
}

#[tokio::test]
async fn closing_while_reconnecting_ends_at_once() -> anyhow::Result<()> {
    let (url, _server) = silent_server().await?;
    let mut options = Options::new(&url)?;
    options.connect_timeout = Duration::from_secs(60);
    let mut client = Client::connect(options);
    assert_eq!(next_state(&mut client).await?.0, State::Connecting);
    tokio::time::timeout(Duration::from_secs(5), client.close()).await?;
    let (state, detail) = next_state(&mut client).await?;
    assert_eq!(state, State::Closed);
    assert!(detail.contains("closed by the app"), "{detail}");
    Ok(())
}

/// A WebSocket server that sends `frames` to its first client, then closes with `code`.
async fn scripted_server(frames: Vec<String>, code: u16) -> anyhow::Result<String> {
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/", listener.local_addr()?);
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut socket) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        for frame in frames {
            let _ = socket.send(Message::text(frame)).await;
        }
        let close = CloseFrame {
            code: code.into(),
            reason: "scripted".into(),
        };
        let _ = socket.close(Some(close)).await;
    });
    Ok(url)
}

#[tokio::test]
async fn a_message_delivered_twice_reaches_the_app_once_and_a_1000_ends_the_client()
-> anyhow::Result<()> {
    let message = |id: &str| {
        format!(r#"{{"type":"message","id":"{id}","from":"c1","data":"{id}","sentAt":"t"}}"#)
    };
    let frames = vec![
        message("m1"),
        message("m1"),
        r#"{"type":"pong"}"#.into(),
        message("m2"),
    ];
    let url = scripted_server(frames, 1000).await?;
    let mut client = Client::connect(Options::new(&url)?);
    let mut ids = Vec::new();
    let mut pongs = 0;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), client.next_event())
            .await?
            .ok_or_else(|| anyhow::anyhow!("events ended before the close"))?;
        match event {
            Event::Message(protocol::ServerFrame::Message { id, .. }) => ids.push(id),
            Event::Frame(protocol::ServerFrame::Pong) => pongs += 1,
            Event::State {
                state: State::Closed,
                code,
                ..
            } => {
                assert_eq!(code, Some(1000));
                break;
            }
            Event::State {
                state: State::Reconnecting,
                detail,
                ..
            } => panic!("a 1000 must not reconnect: {detail}"),
            _ => {}
        }
    }
    assert_eq!(ids, ["m1", "m2"]);
    assert_eq!(pongs, 1);
    Ok(())
}
