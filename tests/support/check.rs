//! `devstack check` as a user runs it: the built binary with the
//! arguments given, none of the key or token a developer's shell may hold,
//! bounded in time; and its output laid out for a failing assertion.

use std::process::Output;
use std::time::Duration;

use anyhow::Context;

use crate::stack::devstack_binary;

/// Runs `devstack check <args>` with `env` set (and `DEVSTACK_API_KEY` /
/// `DEVSTACK_TOKEN` cleared unless `env` sets them) for at most `limit`.
pub async fn run(args: &[&str], env: &[(&str, &str)], limit: Duration) -> anyhow::Result<Output> {
    let mut command = tokio::process::Command::new(devstack_binary()?);
    command
        .arg("check")
        .args(args)
        .env_remove("DEVSTACK_API_KEY")
        .env_remove("DEVSTACK_TOKEN")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    tokio::time::timeout(limit, command.output())
        .await
        .with_context(|| {
            format!(
                "devstack check {} did not finish in {limit:?}",
                args.join(" ")
            )
        })?
        .context("running devstack check")
}

/// The exit status, stdout and stderr of a finished command.
pub fn describe(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
