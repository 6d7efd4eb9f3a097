//! Broadcast at scale: 2,000 connections and one `sendmessage` whose fan-out
//! takes several invocations (the stack config caps an invocation at 250
//! posts, so the sender's invocation hands the rest to a chain of
//! asynchronous invocations), with the local Lambda delivering every
//! asynchronous event twice, as Lambda's queue may. Every other connection
//! gets the message exactly once, the sender never, and the sender's `sent`
//! comes from its own invocation, before the rest is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use devstack::tools::client::source_address;
use e2e::{Client, Incoming, Stack, StackConfig};
use futures_util::StreamExt;
use protocol::{ClientFrame, ServerFrame};
use serde_json::json;

const CONNECTIONS: usize = 2000;
const PER_INVOCATION: usize = 250;
/// Handshakes in flight at once.
const OPENING: usize = 32;
/// Bound on the broadcast reaching everyone.
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long receivers keep listening for a second copy after the last first copy.
const SETTLE: Duration = Duration::from_secs(2);

/// The test process holds 2,000 sockets: more than a default soft limit of
/// 1,024. Raised the way the stack raises its own.
fn raise_open_files() -> anyhow::Result<()> {
    let limit = devstack::stack::open_files::raise(CONNECTIONS as u64 + 512);
    ensure!(
        limit.now.is_none_or(|n| n >= CONNECTIONS as u64 + 256),
        "the open-file limit is too low for {CONNECTIONS} connections (`ulimit -n`): {}",
        limit.describe()
    );
    Ok(())
}

/// Counts the copies of the frame whose data is `tag` until `stop`.
async fn receive(
    mut client: Client,
    tag: serde_json::Value,
    first_copies: Arc<AtomicUsize>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<usize> {
    let mut copies = 0;
    let deadline = Instant::now() + BROADCAST_TIMEOUT + SETTLE * 2;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::select! {
            _ = stop.changed() => break,
            frame = client.recv_within(left) => frame,
        };
        match frame {
            Ok(Incoming::Server(ServerFrame::Message { data, .. })) if data == tag => {
                copies += 1;
                if copies == 1 {
                    first_copies.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(other) => anyhow::bail!("unexpected {other:?}"),
            Err(_) if Instant::now() >= deadline => break,
            Err(error) => return Err(error),
        }
    }
    Ok(copies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_to_2000_connections_reaches_each_exactly_once() -> anyhow::Result<()> {
    raise_open_files()?;
    let stack = Stack::start_with(
        StackConfig::new()
            .generous_throttling()
            // 2,000 clients open in a few seconds: over AWS's 500 new
            // connections/s, as a deployment with a raised quota would.
            .account_connect_limit(100_000)
            .set("fanoutPerInvocation", PER_INVOCATION as u64)
            .duplicate_async_events(),
    )
    .await?;
    let edge = stack.edge().to_string();
    stack
        .explain(
            async {
                let mut clients: Vec<Client> = futures_util::stream::iter(0..CONNECTIONS)
                    .map(|i| {
                        let edge = edge.clone();
                        async move {
                            Client::handshake(&edge, None, Some(source_address(i).into()))
                                .await?
                                .accepted()
                        }
                    })
                    .buffer_unordered(OPENING)
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<anyhow::Result<_>>()?;
                let mut sender = clients.pop().context("no sender")?;
                let tag = json!({"scale": uuid::Uuid::new_v4().to_string()});
                let first_copies = Arc::new(AtomicUsize::new(0));
                let (stop, _) = tokio::sync::watch::channel(false);
                let receivers: Vec<_> = clients
                    .into_iter()
                    .map(|client| {
                        tokio::spawn(receive(
                            client,
                            tag.clone(),
                            first_copies.clone(),
                            stop.subscribe(),
                        ))
                    })
                    .collect();
                sender.send(&ClientFrame::send_message(tag.clone())).await?;
                let reached_first = match sender.recv_server().await? {
                    ServerFrame::Sent { recipients, .. } => recipients,
                    other => anyhow::bail!("the sender got {other:?} instead of `sent`"),
                };
                let others = CONNECTIONS - 1;
                let everyone = tokio::time::timeout(BROADCAST_TIMEOUT, async {
                    while first_copies.load(Ordering::SeqCst) < others {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
                .await;
                tokio::time::sleep(SETTLE).await;
                let _ = stop.send(true);
                let mut copies = Vec::with_capacity(others);
                for receiver in receivers {
                    copies.push(receiver.await.context("a receiver task failed")??);
                }
                let missed = copies.iter().filter(|&&c| c == 0).count();
                let twice = copies.iter().filter(|&&c| c > 1).count();
                ensure!(
                    missed == 0 && twice == 0 && everyone.is_ok(),
                    "of {others} receivers {missed} never got the message and {twice} got it more than once"
                );
                ensure!(
                    reached_first <= PER_INVOCATION,
                    "the sender's invocation reports {reached_first} recipients, more than its cap of {PER_INVOCATION}: the fan-out did not continue in other invocations"
                );
                // Nothing more for the sender: its own message never comes back.
                ensure!(
                    sender
                        .recv_within(Duration::from_millis(200))
                        .await
                        .is_err(),
                    "the sender received something after `sent`"
                );
                anyhow::Ok(())
            }
            .await,
        )
}
