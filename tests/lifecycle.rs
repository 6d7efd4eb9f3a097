//! The stack's life: it is configured from the Pulumi stack config (the
//! stage name here), and Ctrl-C shuts it down cleanly: every client gets a
//! close frame and every process it started ends.

use anyhow::{Context, ensure};
use e2e::{Client, Stack, StackConfig, within};
use std::time::Duration;

#[tokio::test]
async fn the_stage_comes_from_the_stack_config() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackConfig::new().set("stageName", "v1")).await?;
    stack.explain(
        async {
            let endpoints = stack.endpoints();
            ensure!(endpoints.stage == "v1", "stage {:?}", endpoints.stage);
            ensure!(endpoints.api.ends_with("/v1"), "api URL {}", endpoints.api);
            ensure!(
                endpoints.management.ends_with("/v1"),
                "management URL {}",
                endpoints.management
            );
            let mut direct = Client::handshake(stack.api(), Some(stack.api_key()), None)
                .await?
                .accepted()?;
            direct.ping().await?;
            direct.close().await?;
            let mut client = Client::connect(stack.edge()).await?;
            client.ping().await?;
            client.close().await?;
            // The banner says what of the program the stack plays, and what
            // only a deployment has.
            let log = stack.log();
            ensure!(
                log.contains("program                      plays ")
                    && log.contains("not played: ")
                    && log.contains("MetricAlarm ×"),
                "the banner does not say which resources are played"
            );
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn ctrl_c_closes_every_client_and_ends_every_process() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let mut client = stack.explain(Client::connect(stack.edge()).await)?;
    stack.explain(client.ping().await)?;
    let before = stack.processes();
    ensure!(
        !stack.function_pids().is_empty(),
        "no function process among the stack's children {before:?}"
    );

    let closed = tokio::spawn(async move { client.expect_close().await });
    let log = stack.log_tail();
    let shutdown = within(
        Duration::from_secs(60),
        "the stack to stop",
        tokio::task::spawn_blocking(move || stack.interrupt()),
    )
    .await?
    .context("stopping the stack")?;
    let code = within(Duration::from_secs(20), "the client's close frame", closed)
        .await?
        .context("client task")?
        .with_context(|| format!("the client got no close frame; the stack's log:\n{log}"))?;
    ensure!(
        shutdown.status.is_some(),
        "the stack did not exit within its stop timeout after Ctrl-C"
    );
    ensure!(
        shutdown.leftovers.is_empty(),
        "processes outlived the stack: {:?} (the stack had {before:?})",
        shutdown.leftovers
    );
    ensure!(code.is_some(), "the close frame carried no code");
    Ok(())
}
