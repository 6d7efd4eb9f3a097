//! `devstack check`, run as a process against the local stack: it passes
//! when the direct endpoint refuses keyless clients (and, given the key,
//! lets it in, never printing it), and fails when it does not (here: the
//! edge given as the "direct" endpoint).

use std::process::Output;
use std::time::Duration;

use anyhow::{Context, ensure};
use devstack::tools::deploy_check::names;
use e2e::Stack;
use e2e::check::{self, describe};

const CHECK_TIMEOUT: Duration = Duration::from_secs(180);

const ALL_CHECKS: [&str; 7] = [
    names::HANDSHAKE,
    names::PING,
    names::BROADCAST,
    names::ROUND_TRIP,
    names::CLOSE,
    names::DIRECT_WITHOUT_KEY,
    names::DIRECT_WRONG_KEY,
];

async fn run_check(args: &[&str]) -> anyhow::Result<Output> {
    run_check_with_env(args, &[]).await
}

async fn run_check_with_env(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
    check::run(args, env, CHECK_TIMEOUT).await
}

/// Neither stdout nor stderr holds the key (stdout must have run: a PASS
/// line or a JSON document, so an empty output cannot pass for "not printed").
fn ensure_key_not_printed(output: &Output, key: &str) -> anyhow::Result<()> {
    ensure!(
        key.len() >= 20,
        "the stack's key is only {} characters long",
        key.len()
    );
    ensure!(
        !output.stdout.is_empty(),
        "check printed nothing:\n{}",
        describe(output)
    );
    for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        ensure!(!text.contains(key), "check printed the API key on {stream}");
    }
    Ok(())
}

#[tokio::test]
async fn check_passes_against_the_local_stack() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(
        async {
            // Given the key with the option; `direct-with-key` shows it was used.
            let key = stack.api_key();
            let output = run_check(&[
                stack.edge(),
                "--direct",
                stack.api(),
                "--messages",
                "20",
                "--api-key",
                key,
            ])
            .await?;
            let text = String::from_utf8_lossy(&output.stdout).to_string();
            ensure!(
                output.status.success(),
                "check failed:\n{}",
                describe(&output)
            );
            for name in ALL_CHECKS.iter().chain([&names::DIRECT_WITH_KEY]) {
                ensure!(
                    text.lines().any(
                        |l| l.starts_with("PASS") && l.split_whitespace().nth(1) == Some(*name)
                    ),
                    "no PASS line for {name}:\n{text}"
                );
            }
            ensure!(!text.contains("FAIL"), "{text}");
            ensure_key_not_printed(&output, key)?;

            // Given the key in the environment, with JSON output.
            let output = run_check_with_env(
                &[
                    stack.edge(),
                    "--direct",
                    stack.api(),
                    "--messages",
                    "5",
                    "--json",
                ],
                &[("DEVSTACK_API_KEY", key)],
            )
            .await?;
            ensure!(
                output.status.success(),
                "check --json failed:\n{}",
                describe(&output)
            );
            ensure_key_not_printed(&output, key)?;
            let document: serde_json::Value =
                serde_json::from_slice(&output.stdout).with_context(|| {
                    format!(
                        "--json printed no single JSON document:\n{}",
                        describe(&output)
                    )
                })?;
            ensure!(document["ok"] == serde_json::json!(true), "{document:#}");
            let checks = document["checks"].as_array().context("no checks array")?;
            let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
            let expected: Vec<&str> = ALL_CHECKS
                .iter()
                .copied()
                .chain([names::DIRECT_WITH_KEY])
                .collect();
            ensure!(names == expected, "checks {names:?}");
            ensure!(checks.iter().all(|c| c["status"] == "pass"), "{document:#}");
            let round_trip = checks
                .iter()
                .find(|c| c["name"] == names::ROUND_TRIP)
                .context("round-trip")?;
            for figure in ["p50Ms", "p95Ms", "p99Ms"] {
                ensure!(
                    round_trip["figures"][figure]
                        .as_f64()
                        .is_some_and(|v| v > 0.0),
                    "{figure} missing: {round_trip}"
                );
            }
            Ok(())
        }
        .await,
    )
}

#[tokio::test]
async fn check_fails_when_the_direct_endpoint_accepts_keyless_clients() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.explain(async {
        // The edge adds the key itself, so as a "direct" endpoint it lets
        // keyless clients in: exactly what check must catch.
        let output = run_check(&[stack.edge(), "--direct", stack.edge(), "--messages", "3"]).await?;
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        ensure!(!output.status.success(), "check passed although the direct endpoint accepts anyone:\n{text}");
        for name in [names::DIRECT_WITHOUT_KEY, names::DIRECT_WRONG_KEY] {
            ensure!(
                text.lines().any(|l| l.starts_with("FAIL") && l.split_whitespace().nth(1) == Some(name)),
                "no FAIL line for {name}:\n{}",
                describe(&output)
            );
        }
        ensure!(
            text.lines().any(|l| l.starts_with("PASS") && l.split_whitespace().nth(1) == Some(names::PING)),
            "the checks through the edge should still pass:\n{text}"
        );

        let output = run_check(&[stack.edge(), "--direct", stack.edge(), "--messages", "3", "--json"]).await?;
        ensure!(!output.status.success());
        let document: serde_json::Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("--json printed no single JSON document:\n{}", describe(&output)))?;
        ensure!(document["ok"] == serde_json::json!(false), "{document:#}");
        ensure!(document["failed"] == serde_json::json!(2), "{document:#}");
        Ok(())
    }.await)
}

#[tokio::test]
async fn check_explains_a_malformed_url_and_a_closed_port() -> anyhow::Result<()> {
    let output = run_check(&[
        "https://d111.cloudfront.net",
        "--direct",
        "ws://127.0.0.1:9/prod",
        "--timeout",
        "2",
    ])
    .await?;
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    ensure!(!output.status.success(), "{}", describe(&output));
    ensure!(
        text.contains("malformed URL") && text.contains("use wss://"),
        "{}",
        describe(&output)
    );
    ensure!(
        text.contains("TCP connection to 127.0.0.1 port 9 failed"),
        "{}",
        describe(&output)
    );
    Ok(())
}
