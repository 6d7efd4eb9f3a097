//! A function process that dies during an invocation is reported as Lambda
//! and API Gateway report it: that client gets API Gateway's "Internal server
//! error" frame, the process is replaced, and the next message works.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use e2e::process::signal;
use e2e::{Client, Incoming, Stack, StackConfig};
use local_process::Signal;
use protocol::{ClientFrame, GatewayFrame};

/// How long the ping may take to reach the stopped function process.
const HANDOFF: Duration = Duration::from_secs(2);
/// A generous bound on a line reaching devstack's log.
const LOG_WAIT: Duration = Duration::from_secs(30);

/// The pool's per-invocation report lines (`invoke … result=…`).
fn invoke_reports(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains(" invoke ") && line.contains("result="))
        .collect()
}

/// Waits until `ready` holds for devstack's log, at most [`LOG_WAIT`].
async fn wait_for_log(
    stack: &Stack,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + LOG_WAIT;
    while !ready(&stack.log()) {
        ensure!(
            Instant::now() < deadline,
            "no {what} in devstack's log within {LOG_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_killed_function_process_fails_that_message_and_the_next_one_works() -> anyhow::Result<()>
{
    // One function process: the message sent while it is stopped must wait
    // for it, whatever the pool was doing when the signal landed.
    // Not frozen between invocations: the pool's thaw (SIGCONT) would undo
    // the test's SIGSTOP. (`tests/control.rs` kills through the control.)
    let stack = Stack::start_with(StackConfig::new().max_concurrency(1).no_freeze()).await?;
    stack.explain(async {
        let mut client = Client::connect(stack.edge()).await?;
        client.ping().await.context("warm-up ping")?;
        // The pong reaches the client a moment before the function returns
        // its invocation's response: wait for the pool's report of that
        // invocation ($connect, then the ping), so the process is back to
        // waiting for its next event and the next one is handed to it once
        // it is stopped, rather than to a new one.
        wait_for_log(&stack, "the warm-up ping's invoke report", |log| invoke_reports(log).len() >= 2).await?;

        let pids = stack.function_pids();
        ensure!(!pids.is_empty(), "no websocket-handler process among devstack's children: {:?}", stack.processes());
        // Stopped, the processes cannot answer: the next invocation is handed
        // to one of them and is still in flight when they are killed.
        for &pid in &pids {
            signal(pid, Signal::STOP).with_context(|| format!("SIGSTOP {pid}"))?;
        }
        client.send(&ClientFrame::ping()).await?;
        // A generous moment for the ping to be handed to the stopped process;
        // the crash report below proves it was.
        tokio::time::sleep(HANDOFF).await;
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

        // Positive control: the pool reports the invocation as crashed on a
        // killed process, so the frame above is that ping's.
        wait_for_log(&stack, "a crashed invoke report", |log| {
            invoke_reports(log)
                .iter()
                .any(|line| line.contains("crashed") && pids.iter().any(|pid| line.contains(&format!(" pid={pid} "))))
        })
        .await?;

        client.ping().await.context("the message after the crash")?;
        let now = stack.function_pids();
        ensure!(!now.is_empty(), "no function process was started to replace the killed ones");
        ensure!(now.iter().all(|pid| !pids.contains(pid)), "killed processes still listed: {now:?} (killed {pids:?})");
        client.close().await
    }.await)
}
