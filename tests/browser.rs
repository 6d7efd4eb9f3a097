//! The console in a real browser: the real local stack, and the Playwright
//! tests of `tests/browser/console.test.js` run by node's test runner against
//! it in Debian's Chromium (two pages exchanging a message, ping, invalid
//! JSON, the 1009 close, the live view's counts, a deployed URL; with
//! sign-in on, the 401 without a user and two users signing in by name). Node.js,
//! npm and Chromium are prerequisites: without one this test fails, naming it.

use std::time::Duration;

use e2e::browser::{self, Tools};
use e2e::{Stack, StackConfig};

#[tokio::test]
async fn the_console_works_in_chromium() -> anyhow::Result<()> {
    let tools = Tools::find()?;
    let deps = tokio::task::spawn_blocking({
        let tools = tools.clone();
        move || browser::install_playwright(&tools)
    })
    .await??;
    let stack = Stack::start().await?;
    let signed_in = Stack::start_with(StackConfig::new().sign_in()).await?;
    let endpoints = stack.endpoints().clone();
    let env = vec![
        ("CONSOLE_URL", endpoints.console.clone()),
        (
            "SIGNED_IN_CONSOLE_URL",
            signed_in.endpoints().console.clone(),
        ),
        ("EDGE_URL", endpoints.edge.clone()),
        ("API_URL", endpoints.api.clone()),
        (
            "SCREENSHOT_DIR",
            browser::screenshot_dir()?.display().to_string(),
        ),
    ];
    let test_file = browser::tests_dir().join("console.test.js");
    let result = tokio::task::spawn_blocking(move || {
        browser::run_node_tests(&tools, &deps, &test_file, &env)
    })
    .await?;
    let output = stack.explain(result)?;
    println!("{output}");
    Ok(())
}

/// The client library (`clients/js`) in Chromium against a stack with a
/// 2-second idle limit: `tests/browser/client.test.js` (a message between
/// two clients, the idle close survived with the queue flushed, the keepalive
/// holding, a refused handshake given up).
#[tokio::test]
async fn the_js_client_works_in_chromium() -> anyhow::Result<()> {
    const IDLE_SECS: u64 = 2;
    let tools = Tools::find()?;
    let deps = tokio::task::spawn_blocking({
        let tools = tools.clone();
        move || browser::install_playwright(&tools)
    })
    .await??;
    let stack = Stack::start_with(StackConfig::new().idle_timeout_secs(IDLE_SECS)).await?;
    let endpoints = stack.endpoints().clone();
    let env = vec![
        ("CONSOLE_URL", endpoints.console.clone()),
        ("EDGE_URL", endpoints.edge.clone()),
        ("API_URL", endpoints.api.clone()),
        ("IDLE_SECS", IDLE_SECS.to_string()),
    ];
    let test_file = browser::tests_dir().join("client.test.js");
    let result = tokio::task::spawn_blocking(move || {
        browser::run_node_tests(&tools, &deps, &test_file, &env)
    })
    .await?;
    println!("{}", stack.explain(result)?);
    Ok(())
}

/// The console's frame descriptions under node alone (no browser, no stack):
/// `tests/browser/frames.test.js`, e.g. a `message` frame without `data`
/// is shown as text instead of throwing in the page. Needs Node.js only.
#[tokio::test]
async fn the_consoles_frame_descriptions_hold() -> anyhow::Result<()> {
    let test_file = browser::tests_dir().join("frames.test.js");
    let text = browser::run_node_only_tests(&test_file, &[], &[], Duration::from_secs(60)).await?;
    println!("{text}");
    Ok(())
}
