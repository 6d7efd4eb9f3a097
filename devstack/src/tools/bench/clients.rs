//! The local-stack half's clients: WebSocket connections from many loopback
//! addresses, the echo floor, broadcast fan-out and sustained messages.

use super::*;
use crate::tools::client::{self, Dial, Ws, next_text, source_address};

/// How long a client waits for the server's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(4);

/// A client's TCP connect from `source` plus the WebSocket handshake.
pub(super) async fn connect(addr: SocketAddr, path: &str, source: Ipv4Addr) -> anyhow::Result<Ws> {
    let dial = Dial {
        source: Some(source.into()),
        config: Some(super::load::client_config()),
        ..Dial::default()
    };
    Ok(client::handshake(&format!("ws://{addr}{path}"), dial, STEP_TIMEOUT).await?)
}

/// A clean close, best effort: the figures do not depend on it.
pub(super) async fn close(mut ws: Ws) {
    let _ = client::close(&mut ws, CLOSE_TIMEOUT).await;
}

/// Handshake times of `n` sequential connections (each closed after).
pub(super) async fn handshakes(
    addr: SocketAddr,
    path: &str,
    n: usize,
) -> anyhow::Result<Option<Percentiles>> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let ws = connect(addr, path, source_address(i)).await?;
        samples.push(started.elapsed());
        close(ws).await;
    }
    Ok(Percentiles::of(&samples))
}

pub(super) fn is_pong(text: &str) -> Option<()> {
    matches!(
        serde_json::from_str::<ServerFrame>(text),
        Ok(ServerFrame::Pong)
    )
    .then_some(())
}

/// One ping → pong through the stack.
pub(super) async fn ping(ws: &mut Ws) -> anyhow::Result<Duration> {
    let started = Instant::now();
    ws.send(Message::text(ClientFrame::ping().to_text()))
        .await
        .context("sending a ping")?;
    next_text(ws, STEP_TIMEOUT, is_pong).await?;
    Ok(started.elapsed())
}

/// Ping → pong times of `n` pings on one connection, after one ping to warm it.
pub(super) async fn round_trips(
    addr: SocketAddr,
    path: &str,
    n: usize,
) -> anyhow::Result<Option<Percentiles>> {
    let mut ws = connect(addr, path, source_address(0)).await?;
    ping(&mut ws).await?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        samples.push(ping(&mut ws).await?);
    }
    close(ws).await;
    Ok(Percentiles::of(&samples))
}

/// One frame echoed by the floor server.
pub(super) async fn echo(ws: &mut Ws, frame: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    ws.send(Message::text(frame))
        .await
        .context("sending a frame")?;
    next_text(ws, STEP_TIMEOUT, |t| (t == frame).then_some(())).await?;
    Ok(started.elapsed())
}

/// The floor: a plain tokio-tungstenite server echoing text frames, on its
/// own thread and runtime. Like any server (the stack runs in its own
/// process) it is woken across threads; sharing the clients' runtime would
/// let an echo skip that wake-up and make the floor lower than any real
/// server can go.
pub(super) fn echo_server() -> anyhow::Result<ThreadServer> {
    ThreadServer::start("echo floor", |listener, stopped| async move {
        tokio::select! {
            _ = stopped => {}
            _ = serve_echo(listener) => {}
        }
    })
}

pub(super) async fn serve_echo(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                if message.is_close() {
                    return;
                }
                if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Opens `n` connections, at most 32 handshakes at a time.
pub(super) async fn connect_many(
    addr: SocketAddr,
    path: &str,
    n: usize,
    first_source: usize,
) -> anyhow::Result<Vec<Ws>> {
    futures_util::stream::iter(0..n)
        .map(|i| connect(addr, path, source_address(first_source + i)))
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Time from the sender's `sendmessage` until each of `receivers` other
/// connections has the message frame; the slowest receiver counts.
pub(super) async fn broadcast(
    addr: SocketAddr,
    path: &str,
    receivers: usize,
) -> anyhow::Result<Duration> {
    let clients = connect_many(addr, path, receivers, 0).await?;
    let mut sender = connect(addr, path, source_address(receivers)).await?;
    let tag = format!("bench-broadcast-{receivers}-{}", uuid::Uuid::new_v4());
    let expected = Value::String(tag.clone());
    let (go, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = Vec::with_capacity(receivers);
    for mut ws in clients {
        let expected = expected.clone();
        let mut ready = go.subscribe();
        tasks.push(tokio::spawn(async move {
            let _ = ready.recv().await;
            let got = next_text(&mut ws, STEP_TIMEOUT, |t| {
                match serde_json::from_str::<ServerFrame>(t) {
                    Ok(ServerFrame::Message { data, .. }) if data == expected => {
                        Some(Instant::now())
                    }
                    _ => None,
                }
            })
            .await;
            close(ws).await;
            got
        }));
    }
    let started = Instant::now();
    let _ = go.send(());
    sender
        .send(Message::text(ClientFrame::send_message(expected).to_text()))
        .await
        .context("sending the broadcast")?;
    let recipients = next_text(&mut sender, STEP_TIMEOUT, |t| {
        match serde_json::from_str::<ServerFrame>(t) {
            Ok(ServerFrame::Sent { recipients }) => Some(recipients),
            _ => None,
        }
    })
    .await?;
    let mut last = started;
    for task in tasks {
        let received = task.await.context("a receiver task failed")??;
        last = last.max(received);
    }
    close(sender).await;
    if recipients < receivers {
        bail!("the function reported {recipients} recipients for {receivers} connected receivers");
    }
    Ok(last - started)
}

/// `clients` connections each sending `messages` pings back to back;
/// returns pongs per second over the whole run.
pub(super) async fn sustained(
    addr: SocketAddr,
    path: &str,
    clients: usize,
    messages: usize,
) -> anyhow::Result<f64> {
    let sockets = connect_many(addr, path, clients, 0).await?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for mut ws in sockets {
        tasks.push(tokio::spawn(async move {
            for _ in 0..messages {
                ping(&mut ws).await?;
            }
            close(ws).await;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a client task failed")??;
    }
    let elapsed = started.elapsed();
    Ok((clients * messages) as f64 / elapsed.as_secs_f64())
}
