//! `devstack check --conformance`, run as a process against the local stack
//! (sign-in on, as the dev stack has it; a stage bucket small enough that the
//! flood row does not depend on the machine's speed): every row of the parity table
//! passes — the frame and message limits, 403 without the key, route
//! selection and `$default`, stage throttling, `@connections` (410 for an
//! unknown id; GET, POST, DELETE), the idle and 2-hour closes through the
//! control, the authorizer's 401 and 403. A stack that breaks a behaviour
//! fails its row and the command (here: a stage without throttling, and —
//! run as against a deployment with `--slow` — idle connections closed
//! long before the documented 10 minutes).

use std::process::Output;
use std::time::Duration;

use anyhow::{Context, ensure};
use e2e::check::{self, describe};
use e2e::{Stack, StackConfig};

const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

/// Every row's id, as `--json` names them.
const ROWS: [&str; 13] = [
    "frame-limit",
    "message-limit",
    "binary-frame",
    "no-api-key",
    "route-selection",
    "default-route",
    "stage-throttling",
    "unknown-connection",
    "connections-api",
    "idle-timeout",
    "max-connection-life",
    "sign-in-no-token",
    "sign-in-bad-token",
];

async fn conformance(stack: &Stack, extra: &[&str]) -> anyhow::Result<Output> {
    let ready = stack.ready_file().to_string_lossy().into_owned();
    let mut args = vec!["--conformance", "--ready-file", ready.as_str()];
    args.extend_from_slice(extra);
    check::run(&args, &[], CHECK_TIMEOUT).await
}

#[tokio::test]
async fn every_row_of_the_parity_table_passes_against_the_local_stack() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackConfig::new().sign_in().tight_stage_throttling()).await?;
    let output = conformance(&stack, &["--json"]).await?;
    stack.explain(
        async {
            ensure!(output.status.success(), "{}", describe(&output));
            let document: serde_json::Value =
                serde_json::from_slice(&output.stdout).with_context(|| describe(&output))?;
            ensure!(
                document["ok"] == true && document["target"] == "local",
                "{document:#}"
            );
            let rows = document["rows"].as_array().context("rows")?;
            let seen: Vec<&str> = rows
                .iter()
                .filter_map(|row| row["outcome"]["name"].as_str())
                .collect();
            ensure!(seen == ROWS, "rows {seen:?}");
            for row in rows {
                ensure!(row["outcome"]["status"] == "pass", "{row:#}");
                ensure!(
                    row["reference"]
                        .as_str()
                        .is_some_and(|url| url.starts_with("https://docs.aws.amazon.com/")),
                    "{row:#}"
                );
            }
            // The table as printed: a Markdown row per behaviour, the summary last.
            let output = conformance(&stack, &[]).await?;
            ensure!(output.status.success(), "{}", describe(&output));
            let text = String::from_utf8_lossy(&output.stdout);
            ensure!(
                text.lines()
                    .filter(|l| l.starts_with("| ") && l.contains("| PASS: "))
                    .count()
                    == ROWS.len(),
                "{text}"
            );
            let summary = format!(
                "{n} behaviours: {n} passed, 0 failed, 0 not run",
                n = ROWS.len()
            );
            ensure!(text.contains(&summary), "{text}");
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn a_stage_that_never_throttles_fails_its_row_and_the_command() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackConfig::new().generous_throttling()).await?;
    let output = conformance(&stack, &["--json", "--flood", "50"]).await?;
    stack.explain(
        async {
            ensure!(!output.status.success(), "{}", describe(&output));
            let document: serde_json::Value =
                serde_json::from_slice(&output.stdout).with_context(|| describe(&output))?;
            let rows = document["rows"].as_array().context("rows")?;
            let status = |id: &str| {
                rows.iter()
                    .find(|row| row["outcome"]["name"] == id)
                    .map(|row| {
                        row["outcome"]["status"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned()
                    })
            };
            ensure!(
                status("stage-throttling").as_deref() == Some("fail"),
                "{document:#}"
            );
            ensure!(
                status("frame-limit").as_deref() == Some("pass"),
                "{document:#}"
            );
            // Sign-in is off on this stack: its rows are not run, not failed.
            ensure!(
                status("sign-in-no-token").as_deref() == Some("skip"),
                "{document:#}"
            );
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn with_slow_the_time_rows_wait_and_fail_a_stage_that_closes_idle_clients_early()
-> anyhow::Result<()> {
    // Run as against a deployment (no ready file): the idle and 2-hour rows
    // wait for the close; this stack closes idle connections after 2 s. The
    // flood row runs first: a small stage keeps it from filling the
    // function's queue, which would refuse the idle row's handshake.
    let config = StackConfig::new()
        .idle_timeout_secs(2)
        .tight_stage_throttling();
    let stack = Stack::start_with(config).await?;
    let args = [
        "--conformance",
        "--slow",
        "--json",
        stack.edge(),
        "--direct",
        stack.api(),
    ];
    let output = check::run(&args, &[], CHECK_TIMEOUT).await?;
    stack.explain(
        async {
            ensure!(!output.status.success(), "{}", describe(&output));
            let document: serde_json::Value =
                serde_json::from_slice(&output.stdout).with_context(|| describe(&output))?;
            ensure!(document["target"] == "deployed", "{document:#}");
            let outcome = |id: &str| {
                document["rows"]
                    .as_array()
                    .and_then(|rows| rows.iter().find(|row| row["outcome"]["name"] == id))
                    .map(|row| row["outcome"].clone())
                    .unwrap_or_default()
            };
            for id in ["idle-timeout", "max-connection-life"] {
                let row = outcome(id);
                ensure!(
                    row["status"] == "fail"
                        && row["detail"]
                            .as_str()
                            .is_some_and(|d| d.contains("before the documented")),
                    "{id}: {row:#}"
                );
            }
            // @connections is not run against a deployment.
            ensure!(
                outcome("unknown-connection")["status"] == "skip",
                "{document:#}"
            );
            ensure!(
                outcome("route-selection")["status"] == "pass",
                "{document:#}"
            );
            Ok(())
        }
        .await,
    )
}
