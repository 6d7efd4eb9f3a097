//! The benchmark's load mode: thousands of connections held open through
//! the local stack, then one broadcast to all of them.
//!
//! `--load N` opens N connections in all: one sender and N − 1 receivers, so
//! 10,000 fit the stack's default `--max-connections` (10,000 WebSockets).
//! A handshake refused with 429 — the account's 500 new connections a
//! second, which the stack plays by default — is tried again after a pause,
//! so opening 10,000 takes about 20 s, as it would on AWS.
//!
//! Reports the handshake rate the stack sustains while they open, the stack
//! process's memory per open connection, the time until the sender's `sent`
//! and until the last receiver has the message (with how many never got it
//! or got it twice). Clients connect from addresses spread over
//! 127.0.0.0/8 ([`source_address`]), as CloudFront sees many viewers; the generator raises its
//! own open-file limit first and fails with the numbers if it cannot hold
//! the connections. Every loop is bounded in count and every wait in time.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientFrame, ServerFrame};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::stack::open_files;
use crate::tools::client::{self, Dial, Ws, source_address};

/// Options of the load mode.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Connections to hold open for the load row, the sender among them (0: no load row).
    #[arg(long, default_value_t = 0)]
    pub load: usize,
    /// Handshakes in flight at once while they open.
    #[arg(long, default_value_t = 64)]
    pub load_handshakes: usize,
    /// Longest wait for the broadcast to reach everyone, in seconds.
    #[arg(long, default_value_t = 120)]
    pub load_timeout: u64,
    /// Where the load clients connect: through the edge (as viewers do), or
    /// straight to the API layer with the key. Either way a connection
    /// costs the stack one file descriptor (the edge reaches the API layer
    /// through a pipe in the process).
    #[arg(long, value_enum, default_value_t = Via::Edge)]
    pub load_via: Via,
}

/// The way in for the load clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    Edge,
    Api,
}

/// Where the load clients connect, and the key the API layer wants.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub api_key: Option<String>,
}

/// One load run's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadFigures {
    /// Connections open, the sender among them.
    pub connections: usize,
    /// The way the clients came in.
    pub via: Via,
    /// Connections opened per second (all handshakes, `--load-handshakes` at once).
    pub handshakes_per_sec: f64,
    /// Handshakes answered 429 (the account's new-connection rate) and tried again.
    pub refused_429: usize,
    /// The stack process's resident memory per open connection, in bytes.
    pub stack_bytes_per_connection: Option<f64>,
    /// `sendmessage` → the sender's `sent` frame.
    pub sent_after: Duration,
    /// `recipients` in that `sent` frame.
    pub sent_recipients: usize,
    /// `sendmessage` → the last receiver has the message.
    pub all_have_it: Option<Duration>,
    pub missed: usize,
    pub twice: usize,
}

/// Step timeout for one handshake or one frame.
const STEP: Duration = Duration::from_secs(60);
/// How long receivers keep listening for a second copy after the last first copy.
const SETTLE: Duration = Duration::from_millis(500);
/// The pause before a handshake refused with 429 is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long one client keeps trying a handshake refused with 429.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// A client's small buffers: the frames here are a few hundred bytes, and
/// tungstenite's default 128 KiB read buffer per client would make the
/// generator, not the stack, the memory cost. Every client row of the bench
/// uses them (both columns of `--peers`).
pub(super) fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// One client's handshake; one refused with 429 (a rate, not a fault) is
/// tried again every [`RETRY_PAUSE`] for at most [`RETRY_FOR`], counted in `refused`.
async fn connect(target: &Target, source: Ipv4Addr, refused: &AtomicUsize) -> anyhow::Result<Ws> {
    let url = format!("ws://{}{}", target.addr, target.path);
    let give_up = Instant::now() + RETRY_FOR;
    loop {
        let dial = Dial {
            source: Some(source.into()),
            api_key: target.api_key.as_deref(),
            config: Some(client_config()),
        };
        match client::handshake(&url, dial, STEP).await {
            Err(client::HandshakeError::Refused { status: 429, .. })
                if Instant::now() < give_up =>
            {
                refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => {
                return other.with_context(|| {
                    format!("the handshake from {source} (429s are tried again for {RETRY_FOR:?})")
                });
            }
        }
    }
}

/// Opens `args.load` connections to `target`, measures, broadcasts once from
/// one of them to all the others, and closes them. `stack_pid` is the local stack's
/// process, for its memory.
pub async fn measure(
    target: &Target,
    stack_pid: Option<u32>,
    args: &LoadArgs,
) -> anyhow::Result<LoadFigures> {
    let n = args.load;
    if n < 2 {
        bail!("--load needs at least 2 connections (a sender and a receiver), got {n}");
    }
    let limit = open_files::raise(open_files::WANTED);
    eprintln!("bench: load generator {}", limit.describe());
    if let Some(now) = limit.now
        && now < n as u64 + 256
    {
        bail!(
            "the load generator may open {now} files, too few for {n} connections; raise the limit (`ulimit -n`)"
        );
    }
    let rss_before = stack_pid.and_then(|pid| local_process::rss_bytes(pid).ok());
    let started = Instant::now();
    let refused = AtomicUsize::new(0);
    let mut clients: Vec<Ws> = futures_util::stream::iter(0..n)
        .map(|i| connect(target, source_address(i), &refused))
        .buffer_unordered(args.load_handshakes.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let opened = started.elapsed();
    // Let the stack settle (its $connect invocations have all answered).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = stack_pid.and_then(|pid| local_process::rss_bytes(pid).ok());
    eprintln!("bench: {n} connections open after {opened:?}");
    let mut sender = clients.pop().context("no sender connection")?;
    let tag = Value::String(format!("load-{n}-{}", uuid::Uuid::new_v4()));

    let received = Arc::new(AtomicUsize::new(0));
    let all_in = Arc::new(tokio::sync::Notify::new());
    let (stop, _) = tokio::sync::watch::channel(false);
    let timeout = Duration::from_secs(args.load_timeout);
    let sent_at = Instant::now();
    // Everyone but the sender.
    let expected = n - 1;
    let mut receivers = Vec::with_capacity(expected);
    for ws in clients {
        receivers.push(tokio::spawn(receive(
            ws,
            tag.clone(),
            received.clone(),
            all_in.clone(),
            expected,
            stop.subscribe(),
            sent_at + timeout,
        )));
    }
    sender
        .send(Message::text(ClientFrame::send_message(tag).to_text()))
        .await
        .context("sending the broadcast")?;
    let sent_recipients = tokio::time::timeout(timeout, async {
        while let Some(message) = sender.next().await {
            let message = message.context("reading the sender's socket")?;
            if let Ok(text) = message.to_text()
                && let Ok(ServerFrame::Sent { recipients }) = serde_json::from_str(text)
            {
                return Ok(recipients);
            }
        }
        bail!("the sender's connection closed before `sent`")
    })
    .await
    .context("no `sent` frame in time")??;
    let sent_after = sent_at.elapsed();
    let everyone = tokio::time::timeout(timeout, async {
        while received.load(Ordering::SeqCst) < expected {
            all_in.notified().await;
        }
    })
    .await
    .is_ok();
    tokio::time::sleep(SETTLE).await;
    let _ = stop.send(true);
    let (mut last, mut missed, mut twice) = (None::<Instant>, 0, 0);
    for receiver in receivers {
        let (first, copies) = receiver.await.context("a receiver task failed")?;
        match first {
            Some(at) => last = Some(last.map_or(at, |l| l.max(at))),
            None => missed += 1,
        }
        twice += usize::from(copies > 1);
    }
    drop(sender);
    let per_connection = rss_before
        .zip(rss_after)
        .map(|(b, a)| a.saturating_sub(b) as f64 / n as f64);
    Ok(LoadFigures {
        connections: n,
        via: args.load_via,
        handshakes_per_sec: n as f64 / opened.as_secs_f64().max(1e-9),
        refused_429: refused.into_inner(),
        stack_bytes_per_connection: per_connection,
        sent_after,
        sent_recipients,
        all_have_it: (everyone && missed == 0)
            .then(|| last.map(|l| l - sent_at))
            .flatten(),
        missed,
        twice,
    })
}

/// One receiver: when its first copy of `tag` arrived, and how many copies
/// arrived before `stop`.
async fn receive(
    mut ws: Ws,
    tag: Value,
    received: Arc<AtomicUsize>,
    all_in: Arc<tokio::sync::Notify>,
    n: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
    deadline: Instant,
) -> (Option<Instant>, usize) {
    let (mut first, mut copies) = (None, 0usize);
    let deadline = tokio::time::Instant::from_std(deadline + SETTLE * 4);
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(deadline) => break,
            message = ws.next() => message,
        };
        let Some(Ok(message)) = message else { break };
        let Ok(text) = message.to_text() else {
            continue;
        };
        if let Ok(ServerFrame::Message { data, .. }) = serde_json::from_str(text)
            && data == tag
        {
            copies += 1;
            if first.is_none() {
                first = Some(Instant::now());
                if received.fetch_add(1, Ordering::SeqCst) + 1 >= n {
                    all_in.notify_one();
                }
            }
        }
    }
    (first, copies)
}

/// The load figures as table rows: label, value.
pub fn rows(figures: &LoadFigures) -> Vec<(String, String)> {
    let n = figures.connections;
    let others = n.saturating_sub(1);
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let via = match figures.via {
        Via::Edge => "through the edge",
        Via::Api => "straight to the API layer, with the key",
    };
    let mut rows = vec![
        ("Load clients connect".to_string(), via.to_string()),
        (
            format!("Handshakes while opening {n} connections (429s tried again)"),
            format!(
                "{:.0} /s ({} refused with 429)",
                figures.handshakes_per_sec, figures.refused_429
            ),
        ),
        (
            "Local stack memory per open connection".to_string(),
            figures
                .stack_bytes_per_connection
                .map_or("—".into(), |b| format!("{:.1} kB", b / 1000.0)),
        ),
        (
            format!("Broadcast across {n} connections: sender's `sent`"),
            format!(
                "{} ({} recipients)",
                ms(figures.sent_after),
                figures.sent_recipients
            ),
        ),
        (
            format!("Broadcast across {n} connections: until the last of {others} has it"),
            figures.all_have_it.map_or("—".into(), ms),
        ),
        (
            format!("Broadcast across {n} connections: posts per second (until the last)"),
            figures.all_have_it.map_or("—".into(), |d| {
                format!("{:.0} /s", others as f64 / d.as_secs_f64().max(1e-9))
            }),
        ),
        (
            format!("Broadcast across {n} connections: missed / reached twice"),
            format!("{} / {}", figures.missed, figures.twice),
        ),
    ];
    rows.retain(|(_, v)| !v.is_empty());
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_name_every_figure() {
        let figures = LoadFigures {
            connections: 10_001,
            via: Via::Api,
            handshakes_per_sec: 812.0,
            refused_429: 7,
            stack_bytes_per_connection: Some(21_500.0),
            sent_after: Duration::from_millis(900),
            sent_recipients: 10_000,
            all_have_it: Some(Duration::from_millis(1_250)),
            missed: 0,
            twice: 0,
        };
        let rows = rows(&figures);
        let text = format!("{rows:?}");
        for expected in [
            "812 /s (7 refused with 429)",
            "until the last of 10000 has it",
            "21.5 kB",
            "900.0 ms",
            "1250.0 ms",
            "8000 /s",
            "0 / 0",
            "straight to the API layer",
        ] {
            assert!(text.contains(expected), "{expected} not in {text}");
        }
    }
}
