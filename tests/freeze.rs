//! Lambda's freeze: work a handler leaves running after it returns (here a
//! timer that posts to the connection) does not run between invocations,
//! and runs once the next invocation thaws the process, as on AWS. With
//! `--no-freeze` the same post arrives on its own (the positive control).
//! The handler is a Python script given as a command (`--function-cmd`): the
//! freeze is the same for any runtime.

use std::time::Duration;

use anyhow::{bail, ensure};
use e2e::stack::workspace_root;
use e2e::{Client, Incoming, Stack, StackConfig};
use serde_json::Value;

/// How long the test waits for a post that a frozen process must not send
/// (the handler's timer fires 0.3 s after it returns).
const QUIET: Duration = Duration::from_millis(1500);

/// The fixture function (a Python script speaking the Runtime API), given
/// as a command in its directory (`--function-cmd`), as any runtime is.
fn fixture() -> StackConfig {
    StackConfig::new()
        .function_cmd(
            "python3 versioned-function.py",
            workspace_root().join("tests/fixtures"),
        )
        .max_concurrency(1)
}

/// The `type` of the next frame the function posted.
async fn next_type(client: &mut Client, limit: Duration) -> anyhow::Result<String> {
    match client.recv_within(limit).await? {
        Incoming::Text(text) => {
            let frame: Value = serde_json::from_str(&text)?;
            Ok(frame["type"].as_str().unwrap_or_default().to_owned())
        }
        other => bail!("expected a post from the fixture, got {other:?}"),
    }
}

/// Sends a message whose handler leaves a post running 0.3 s after it returns.
async fn leave_work_running(stack: &Stack) -> anyhow::Result<Client> {
    let mut client = Client::connect(stack.edge()).await?;
    client
        .send_text(r#"{"action":"later","after":0.3}"#)
        .await?;
    ensure!(
        next_type(&mut client, Duration::from_secs(15)).await? == "version",
        "the handler's own post"
    );
    Ok(client)
}

#[tokio::test]
async fn work_left_running_after_a_handler_returns_waits_for_the_next_invocation()
-> anyhow::Result<()> {
    let stack = Stack::start_with(fixture()).await?;
    stack.explain(
        async {
            let mut client = leave_work_running(&stack).await?;
            if let Ok(frame) = client.recv_within(QUIET).await {
                bail!("the frozen process posted between invocations: {frame:?}");
            }
            // The next invocation thaws the process: the late post goes out, beside this message's own.
            client.send_text(r#"{"action":"again"}"#).await?;
            let mut seen = vec![
                next_type(&mut client, Duration::from_secs(15)).await?,
                next_type(&mut client, Duration::from_secs(15)).await?,
            ];
            seen.sort();
            ensure!(seen == ["late", "version"], "after the thaw: {seen:?}");
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn without_the_freeze_the_work_runs_between_invocations() -> anyhow::Result<()> {
    let stack = Stack::start_with(fixture().no_freeze()).await?;
    stack.explain(
        async {
            let mut client = leave_work_running(&stack).await?;
            ensure!(
                next_type(&mut client, QUIET).await? == "late",
                "the late post"
            );
            Ok(())
        }
        .await,
    )
}
