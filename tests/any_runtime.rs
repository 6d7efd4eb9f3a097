//! Any runtime: the AWS sample's Python handler (`bench/python-handler/app.py`,
//! the benchmark's Python row) runs under `devstack up --function-cmd` with
//! AWS's own runtime interface client, awslambdaric, as on Lambda's Python
//! runtime — the same Runtime API, environment, freeze and limits as the Rust
//! function. A WebSocket client connects through the edge and gets the
//! sample's answers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use e2e::stack::workspace_root;
use e2e::{Client, Incoming, Stack, StackConfig};
use local_process::PythonVenv;
use protocol::{ClientFrame, ServerFrame};

/// awslambdaric installed as the bench installs it (the same venv, under the
/// same lock, the version pinned in `bench/python-handler/requirements.txt`):
/// the venv's interpreter.
fn awslambdaric_python() -> anyhow::Result<PathBuf> {
    let requirements = workspace_root().join("bench/python-handler/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let requirements_arg = requirements.display().to_string();
    let venv = PythonVenv::new(
        e2e::browser::target_dir()?
            .join("bench")
            .join("python-venv"),
        &["-r", &requirements_arg],
        &wanted,
    );
    venv.ensure(|dir| eprintln!("installing awslambdaric into {} (first run)", dir.display()))?;
    Ok(venv.python())
}

/// A process's arguments, from `/proc` (empty once it has gone).
fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_aws_samples_python_handler_runs_under_awslambdaric() -> anyhow::Result<()> {
    let python = tokio::task::spawn_blocking(awslambdaric_python).await??;
    let command = format!("'{}' -m awslambdaric app.handler", python.display());
    let stack = Stack::start_with(
        StackConfig::new()
            .function_cmd(&command, workspace_root().join("bench/python-handler"))
            .max_concurrency(1),
    )
    .await?;
    stack.explain(
        async {
            // The sample answers a ping by posting {"type":"pong"} through @connections.
            let mut client = Client::connect(stack.edge()).await?;
            client.ping().await?;
            // Its function process is awslambdaric, not the Rust binary.
            let runtime = stack
                .processes()
                .into_iter()
                .any(|process| cmdline(process.pid).iter().any(|arg| arg == "awslambdaric"));
            ensure!(runtime, "no function process runs `-m awslambdaric`");
            // Any other route: the sample logs the event and returns it as the
            // route's body, which API Gateway does not send (no route response):
            // the client gets nothing, the stack's log has the sample's print.
            let nonce = uuid::Uuid::new_v4().to_string();
            client
                .send(&ClientFrame::send_message(serde_json::json!(nonce)))
                .await?;
            stack
                .wait_for_log(&nonce, 1, Duration::from_secs(15))
                .await
                .context("the sample's print of the sendmessage event")?;
            match client.recv_within(Duration::from_millis(500)).await {
                Err(_) => {}
                Ok(frame) => bail!("the sample's sendmessage got a frame: {frame:?}"),
            }
            // A second client reaches it through the same warm process.
            let mut other = Client::connect(stack.edge()).await?;
            other.ping().await?;
            client.send(&ClientFrame::ping()).await?;
            match client.recv().await? {
                Incoming::Server(ServerFrame::Pong) => {}
                other => bail!("expected pong again, got {other:?}"),
            }
            client.close().await?;
            other.close().await
        }
        .await,
    )
}
