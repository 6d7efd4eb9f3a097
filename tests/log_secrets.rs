//! No log level leaks the API key or a payload: the real function, at
//! `AWS_LAMBDA_LOG_LEVEL=TRACE`, serves a real `$connect` carrying the key and
//! a `sendmessage`, and neither appears in anything it prints (stdout and
//! stderr, which devstack copies into its log behind `[<function> <pid>]`).

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use e2e::{Client, Stack, StackConfig};
use protocol::{ClientFrame, ServerFrame};
use serde_json::{Value, json};

#[tokio::test]
async fn the_function_at_trace_logs_neither_the_key_nor_a_message() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackConfig::new().env("AWS_LAMBDA_LOG_LEVEL", "TRACE")).await?;
    let function = stack.topology()?.function.name;
    let text = format!("payload-{}", uuid::Uuid::new_v4().simple());
    stack.explain(
        async {
            // One client straight to the API layer with the key, one through
            // the edge, which adds the key as CloudFront's origin header does.
            let mut alice = Client::handshake(stack.api(), Some(stack.api_key()), None)
                .await?
                .accepted()
                .context("alice, with the key")?;
            let mut bob = Client::connect(stack.edge()).await.context("bob")?;
            alice
                .send(&ClientFrame::send_message(json!({ "text": text })))
                .await?;
            match bob.recv_server().await? {
                ServerFrame::Message { data, .. } => {
                    ensure!(data["text"] == json!(text), "bob got {data}")
                }
                other => bail!("bob expected the message, got {other:?}"),
            }
            match alice.recv_server().await? {
                ServerFrame::Sent { recipients: 1 } => {}
                other => bail!("alice expected sent 1, got {other:?}"),
            }
            alice.close().await?;
            bob.close().await
        }
        .await,
    )?;

    // The function's lines reach the log a moment after its invocations:
    // wait for the `$disconnect`s (positive control: the function's own
    // DEBUG lines, which show the level reached it).
    let prefix = format!("[{function} ");
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let lines: Vec<String> = stack
            .log()
            .lines()
            .filter(|line| line.starts_with(&prefix))
            .map(str::to_string)
            .collect();
        let disconnects = lines
            .iter()
            .filter(|line| line.contains("\"$disconnect\"") && line.contains("handled"))
            .count();
        if disconnects >= 2 || Instant::now() >= deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let levels: Vec<String> = lines
        .iter()
        .filter_map(|line| line.split_once("] ").map(|(_, json)| json))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .filter_map(|line| line["level"].as_str().map(str::to_string))
        .collect();
    ensure!(
        levels.iter().any(|level| level == "DEBUG"),
        "the function logged nothing at DEBUG: did AWS_LAMBDA_LOG_LEVEL=TRACE reach it?\n{}",
        lines.join("\n")
    );
    ensure!(
        lines
            .iter()
            .filter(|line| line.contains("\"$disconnect\""))
            .count()
            >= 2,
        "the function's log is incomplete:\n{}",
        lines.join("\n")
    );
    for line in &lines {
        ensure!(
            !line.contains(stack.api_key()),
            "the function logged the API key: {line}"
        );
        ensure!(
            !line.contains(&text),
            "the function logged a message: {line}"
        );
    }
    Ok(())
}
