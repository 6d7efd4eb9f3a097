//! Broadcast at scale: 2,000 connections and one `sendmessage` whose fan-out
//! takes several invocations (the stack config caps an invocation at 250
//! posts, so the sender's invocation hands the rest to a chain of
//! asynchronous invocations), with the local Lambda delivering every
//! asynchronous event twice, as Lambda's queue may. Every other connection
//! gets the message exactly once, the sender never, and the sender's `sent`
//! comes from its own invocation, before the rest is done.

use std::time::Duration;

use anyhow::{Context, ensure};
use e2e::crowd::{copies_of, open, raise_open_files};
use e2e::{Stack, StackConfig};
use protocol::{ClientFrame, ServerFrame};
use serde_json::json;

const CONNECTIONS: usize = 2000;
const PER_INVOCATION: usize = 250;
/// Bound on the broadcast reaching everyone.
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long receivers keep listening for a second copy after the last first copy.
const SETTLE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_to_2000_connections_reaches_each_exactly_once() -> anyhow::Result<()> {
    raise_open_files(CONNECTIONS)?;
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
                let mut clients = open(&edge, None, CONNECTIONS).await?;
                let mut sender = clients.pop().context("no sender")?;
                let tag = json!({"scale": uuid::Uuid::new_v4().to_string()});
                sender.send(&ClientFrame::send_message(tag.clone())).await?;
                let reached_first = match sender.recv_server().await? {
                    ServerFrame::Sent { recipients, .. } => recipients,
                    other => anyhow::bail!("the sender got {other:?} instead of `sent`"),
                };
                let others = CONNECTIONS - 1;
                let copies = copies_of(clients, &tag, BROADCAST_TIMEOUT, SETTLE).await?;
                let missed = copies.iter().filter(|&&c| c == 0).count();
                let twice = copies.iter().filter(|&&c| c > 1).count();
                ensure!(
                    missed == 0 && twice == 0,
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
