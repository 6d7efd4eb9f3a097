//! A function process that dies during an invocation is reported as Lambda
//! and API Gateway report it: that client gets API Gateway's "Internal server
//! error" frame, the process is replaced, and the next message works.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use e2e::process::signal;
use e2e::{Client, Incoming, Stack, StackConfig};
use protocol::{ClientFrame, GatewayFrame};
use rustix::process::Signal;

#[tokio::test]
async fn a_killed_function_process_fails_that_message_and_the_next_one_works() -> anyhow::Result<()>
{
    // One function process: the message sent while it is stopped must wait
    // for it, whatever the pool was doing when the signal landed.
    let stack = Stack::start_with(StackConfig::new().max_concurrency(1)).await?;
    stack.explain(async {
        let mut client = Client::connect(stack.edge()).await?;
        client.ping().await.context("warm-up ping")?;
        // The pong reaches the client a moment before the function returns
        // its invocation's response; let every process go back to waiting
        // for its next event, so the next one is handed to a stopped process
        // rather than to a new one.
        tokio::time::sleep(Duration::from_secs(1)).await;

        let pids = stack.function_pids();
        ensure!(!pids.is_empty(), "no websocket-handler process among devstack's children: {:?}", stack.processes());
        // Stopped, the processes cannot answer: the next invocation is handed
        // to one of them and is still in flight when they are killed.
        for &pid in &pids {
            signal(pid, Signal::STOP).with_context(|| format!("SIGSTOP {pid}"))?;
        }
        client.send(&ClientFrame::ping()).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for &pid in &pids {
            signal(pid, Signal::KILL).with_context(|| format!("SIGKILL {pid}"))?;
        }

        match client.recv().await.context("after the function process was killed")? {
            Incoming::Gateway(frame) => {
                ensure!(
                    frame.message == GatewayFrame::INTERNAL_SERVER_ERROR,
                    "expected API Gateway's {:?}, got {:?}",
                    GatewayFrame::INTERNAL_SERVER_ERROR,
                    frame.message
                );
                ensure!(!frame.connection_id.is_empty() && !frame.request_id.is_empty(), "incomplete frame {frame:?}");
            }
            other => bail!("expected API Gateway's error frame, got {other:?} (stopped and killed {pids:?})"),
        }

        client.ping().await.context("the message after the crash")?;
        let now = stack.function_pids();
        ensure!(!now.is_empty(), "no function process was started to replace the killed ones");
        ensure!(now.iter().all(|pid| !pids.contains(pid)), "killed processes still listed: {now:?} (killed {pids:?})");
        client.close().await
    }.await)
}
