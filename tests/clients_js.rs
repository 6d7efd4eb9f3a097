//! The JavaScript client library (`clients/js`): its unit tests under node's
//! test runner (fake socket and clock), and its behaviour against the real
//! local stack with a shortened idle limit (`clients/js/test/stack.test.js`:
//! keepalive past the idle limit, reconnect after the 1001 with the queue
//! flushed, give-up on a refused handshake). Needs Node.js >= 20.

use std::path::Path;
use std::time::Duration;

use e2e::browser;
use e2e::{Stack, StackConfig};

/// The idle limit the stack plays in this test (AWS: 600 s).
const IDLE_SECS: u64 = 2;

async fn node_test(file: &Path, env: &[(&str, String)]) -> anyhow::Result<String> {
    // Node 20's global WebSocket is behind this flag (on by default from 22).
    browser::run_node_only_tests(
        file,
        &["--experimental-websocket"],
        env,
        Duration::from_secs(120),
    )
    .await
}

fn client_tests() -> std::path::PathBuf {
    e2e::stack::workspace_root().join("clients/js/test")
}

#[tokio::test]
async fn the_js_clients_unit_tests_pass() -> anyhow::Result<()> {
    let output = node_test(&client_tests().join("client.test.js"), &[]).await?;
    println!("{output}");
    Ok(())
}

#[tokio::test]
async fn the_js_client_survives_the_stacks_idle_limit() -> anyhow::Result<()> {
    let stack = Stack::start_with(StackConfig::new().idle_timeout_secs(IDLE_SECS)).await?;
    let endpoints = stack.endpoints().clone();
    let env = [
        ("EDGE_URL", endpoints.edge.clone()),
        ("API_URL", endpoints.api.clone()),
        ("IDLE_SECS", IDLE_SECS.to_string()),
    ];
    let result = node_test(&client_tests().join("stack.test.js"), &env).await;
    println!("{}", stack.explain(result)?);
    Ok(())
}
