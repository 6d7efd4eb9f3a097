//! Watch mode end to end: the real stack with `devstack up`'s watch on, a
//! client connected through the edge, and files changed under it. A new
//! function version answers on the same connection; a version that cannot
//! run, or an edit the stack cannot take, leaves the old one serving; a
//! program edit applies to the live stage, as a deployment would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use e2e::stack::workspace_root;
use e2e::{Client, Incoming, Stack, StackConfig};
use serde_json::Value;

/// Bound on a swap: the debounce, a copy and a hash of the file, and a new
/// process's init.
const SWAP_TIMEOUT: Duration = Duration::from_secs(30);
const SWAPPED: &str = "function swapped";
const APPLIED: &str = "Pulumi program applied live";
const NOT_APPLIED: &str = "Pulumi program not applied";

/// Writes the fixture function with `version` into `dir/bootstrap` the way
/// a build or a deploy script does: a new file renamed over the old one.
fn write_function(dir: &Path, version: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let fixture = workspace_root().join("tests/fixtures/versioned-function.py");
    let source = std::fs::read_to_string(&fixture)
        .with_context(|| format!("reading {}", fixture.display()))?;
    ensure!(
        source.contains("VERSION = \"1\""),
        "the fixture sets VERSION"
    );
    let source = source.replacen("VERSION = \"1\"", &format!("VERSION = {version:?}"), 1);
    replace_file(&dir.join("bootstrap"), &source)?;
    let path = dir.join("bootstrap");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// Replaces `path` with `contents` through a rename, keeping it executable.
fn replace_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming over {}", path.display()))
}

/// Edits a file in place, as an editor without atomic saves does.
fn edit_file(path: &Path, from: &str, to: &str) -> anyhow::Result<()> {
    edit_file_all(path, &[(from, to)])
}

/// Several replacements in one write.
fn edit_file_all(path: &Path, edits: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    for (from, to) in edits {
        ensure!(text.contains(from), "{} has no {from:?}", path.display());
        text = text.replacen(from, to, 1);
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The fixture's answer to `body`: its `version` and `route` (and the rest).
async fn ask(client: &mut Client, body: &str) -> anyhow::Result<Value> {
    client.send_text(body).await?;
    match client.recv().await? {
        Incoming::Text(text) => {
            let reply: Value = serde_json::from_str(&text).context("the fixture's reply")?;
            ensure!(reply["type"] == "version", "unexpected reply {reply}");
            Ok(reply)
        }
        other => bail!("expected the fixture's reply, got {other:?}"),
    }
}

async fn version_of(client: &mut Client) -> anyhow::Result<String> {
    let reply = ask(client, r#"{"action":"hello"}"#).await?;
    Ok(reply["version"].as_str().unwrap_or_default().to_string())
}

async fn route_of(client: &mut Client, action: &str) -> anyhow::Result<String> {
    let reply = ask(client, &format!(r#"{{"action":"{action}"}}"#)).await?;
    Ok(reply["route"].as_str().unwrap_or_default().to_string())
}

async fn start_with_fixture(config: StackConfig) -> anyhow::Result<(tempfile::TempDir, Stack)> {
    let dir = tempfile::tempdir().context("a directory for the function")?;
    let function = write_function(dir.path(), "1")?;
    let stack = Stack::start_with(config.watch().function_bin(function)).await?;
    Ok((dir, stack))
}

#[tokio::test]
async fn a_replaced_function_answers_on_the_same_connection_and_in_flight_calls_finish_on_the_old()
-> anyhow::Result<()> {
    let (dir, stack) = start_with_fixture(StackConfig::new()).await?;
    stack.explain(
        async {
            let mut client = Client::connect(stack.edge()).await?;
            ensure!(version_of(&mut client).await? == "1");

            // An invocation in flight across the swap finishes on the old version.
            let mut slow = Client::connect(stack.edge()).await?;
            slow.send_text(r#"{"action":"hello","sleep":3}"#).await?;
            stack.wait_for_log("sleeping 3", 1, SWAP_TIMEOUT).await?;
            write_function(dir.path(), "2")?;
            stack.wait_for_log(SWAPPED, 1, SWAP_TIMEOUT).await?;
            ensure!(
                version_of(&mut client).await? == "2",
                "the connected client gets the new version"
            );
            match slow.recv().await? {
                Incoming::Text(text) => ensure!(
                    serde_json::from_str::<Value>(&text)?["version"] == "1",
                    "the in-flight invocation was answered by {text}"
                ),
                other => bail!("expected the slow reply, got {other:?}"),
            }
            ensure!(version_of(&mut slow).await? == "2");

            let log = stack.log();
            let line = log
                .lines()
                .find(|line| line.contains(SWAPPED))
                .context("the swap's log line")?;
            ensure!(line.contains("binary=sha256:"), "{line}");
            let banner = log
                .lines()
                .find(|line| line.trim_start().starts_with("watch "))
                .context("the banner's watch line")?;
            ensure!(banner.contains("on: swaps in"), "{banner}");
            client.close().await?;
            slow.close().await
        }
        .await,
    )
}

#[tokio::test]
async fn a_function_that_cannot_start_leaves_the_old_version_serving() -> anyhow::Result<()> {
    let (dir, stack) = start_with_fixture(StackConfig::new()).await?;
    stack.explain(
        async {
            let mut client = Client::connect(stack.edge()).await?;
            ensure!(version_of(&mut client).await? == "1");

            let path = dir.path().join("bootstrap");
            replace_file(&path, "#!/bin/sh\necho 'broken on purpose' >&2\nexit 3\n")?;
            stack
                .wait_for_log("the running version keeps serving", 1, SWAP_TIMEOUT)
                .await?;
            ensure!(
                version_of(&mut client).await? == "1",
                "the old version serves"
            );
            ensure!(
                stack.log().contains("broken on purpose"),
                "the function's output is shown"
            );

            write_function(dir.path(), "3")?;
            stack.wait_for_log(SWAPPED, 1, SWAP_TIMEOUT).await?;
            ensure!(version_of(&mut client).await? == "3");
            client.close().await
        }
        .await,
    )
}

#[tokio::test]
async fn routes_added_and_removed_in_the_program_apply_to_connected_clients() -> anyhow::Result<()>
{
    let (_dir, stack) = start_with_fixture(StackConfig::new().copy_program()).await?;
    stack.explain(
        async {
            let program = stack.program_dir().join("Pulumi.yaml");
            let mut client = Client::connect(stack.edge()).await?;
            ensure!(route_of(&mut client, "echo").await? == "$default");
            ensure!(route_of(&mut client, "ping").await? == "ping");

            edit_file(
                &program,
                "  pingRoute:\n",
                "  echoRoute:\n    type: aws:apigatewayv2/route:Route\n    properties:\n      \
                 apiId: ${api.id}\n      routeKey: echo\n      target: integrations/${integration.id}\n    \
                 options:\n      version: 7.51.1\n  pingRoute:\n",
            )?;
            stack.wait_for_log(APPLIED, 1, SWAP_TIMEOUT).await?;
            ensure!(
                stack.log().contains("route echo added"),
                "the log names the change"
            );
            ensure!(route_of(&mut client, "echo").await? == "echo");

            // Removing a route: its resource and its deployment trigger go, in one save.
            edit_file_all(
                &program,
                &[
                    (
                        "        ping: ${pingRoute.id} ${pingRoute.target} ${pingRoute.apiKeyRequired}\n",
                        "",
                    ),
                    (
                        "  pingRoute:\n    type: aws:apigatewayv2/route:Route\n    properties:\n      \
                         apiId: ${api.id}\n      routeKey: ping\n      target: integrations/${integration.id}\n    \
                         options:\n      version: 7.51.1\n",
                        "",
                    ),
                ],
            )?;
            stack.wait_for_log(APPLIED, 2, SWAP_TIMEOUT).await?;
            ensure!(route_of(&mut client, "ping").await? == "$default");
            ensure!(route_of(&mut client, "echo").await? == "echo");
            client.close().await
        }
        .await,
    )
}

#[tokio::test]
async fn a_stage_rename_or_an_invalid_edit_is_refused_and_config_edits_apply() -> anyhow::Result<()>
{
    let (_dir, stack) = start_with_fixture(StackConfig::new().copy_program()).await?;
    stack.explain(
        async {
            let topology = stack.topology()?;
            let project = topology.project.clone();
            let stage = stack.endpoints().stage.clone();
            let stack_file = stack.stack_file();
            let mut client = Client::connect(stack.edge()).await?;
            let memory = ask(&mut client, r#"{"action":"ping"}"#).await?["memoryMb"].clone();
            ensure!(
                memory.as_str().and_then(|m| m.parse::<u32>().ok())
                    == Some(topology.function.memory_mb),
                "{memory}"
            );

            // The stage name: refused, with the restart message.
            let config = std::fs::read_to_string(&stack_file)?;
            std::fs::write(&stack_file, format!("{config}  {project}:stageName: v9\n"))?;
            stack.wait_for_log(NOT_APPLIED, 1, SWAP_TIMEOUT).await?;
            let log = stack.log();
            ensure!(
                log.contains(&format!("stage name {stage} → v9"))
                    && log.contains("Restart devstack"),
                "the restart message names the stage"
            );
            ensure!(
                route_of(&mut client, "ping").await? == "ping",
                "still serving"
            );
            let mut direct = Client::handshake(stack.api(), Some(stack.api_key()), None)
                .await?
                .accepted()
                .context("the old stage still answers")?;

            // An edit the offline check refuses: its message, nothing applied.
            std::fs::write(&stack_file, &config)?;
            edit_file(
                &stack.program_dir().join("Pulumi.yaml"),
                "routeKey: ping",
                "routeKay: ping",
            )?;
            stack.wait_for_log(NOT_APPLIED, 2, SWAP_TIMEOUT).await?;
            ensure!(stack.log().contains("routeKay"), "the check's message");
            ensure!(
                route_of(&mut direct, "ping").await? == "ping",
                "still serving"
            );

            // Fixed, with the function's memory changed: applied live, and
            // the connected client's next message runs with the new setting.
            edit_file(
                &stack.program_dir().join("Pulumi.yaml"),
                "routeKay: ping",
                "routeKey: ping",
            )?;
            std::fs::write(
                &stack_file,
                format!("{config}  {project}:functionMemory: 512\n"),
            )?;
            stack.wait_for_log(APPLIED, 1, SWAP_TIMEOUT).await?;
            let reply = ask(&mut client, r#"{"action":"ping"}"#).await?;
            ensure!(reply["memoryMb"] == "512", "{reply}");
            direct.close().await?;
            client.close().await
        }
        .await,
    )
}

/// Copies the workspace's sources (not `target/`, not `.git`) to `to`.
fn copy_workspace(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let (source, destination) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&destination)?;
            copy_workspace(&source, &destination)?;
        } else {
            std::fs::copy(&source, &destination)
                .with_context(|| format!("copying {}", source.display()))?;
        }
    }
    Ok(())
}

/// The real function, built by devstack from a copy of the workspace that
/// shares the tests' target directory (so only the copied workspace crates
/// compile): an edit of its `ping` route is rebuilt and answers on the open
/// connection; then a syntax error fails the build and the edited version
/// keeps serving.
#[tokio::test]
async fn the_real_function_is_rebuilt_on_save_and_a_broken_build_keeps_it_serving()
-> anyhow::Result<()> {
    use protocol::{ClientFrame, ServerFrame};
    /// A dev build of the function from a warm target directory; a cold CI
    /// machine also compiles the copied crates' dependencies' features.
    const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

    let copy = tempfile::tempdir().context("a directory for the workspace copy")?;
    copy_workspace(&workspace_root(), copy.path())?;
    let routes = copy
        .path()
        .join("functions/websocket-handler/src/routes.rs");
    let stack = Stack::start_with(StackConfig::new().watch().workspace(copy.path())).await?;
    stack.explain(
        async {
            let mut client = Client::connect(stack.edge()).await?;
            client.ping().await?;

            edit_file(
                &routes,
                "            &ServerFrame::Pong,\n",
                "            &ServerFrame::Sent { recipients: 42 },\n",
            )?;
            stack.wait_for_log(SWAPPED, 1, BUILD_TIMEOUT).await?;
            let line = stack
                .log()
                .lines()
                .find(|line| line.contains(SWAPPED))
                .map(str::to_string)
                .unwrap_or_default();
            ensure!(
                line.contains("build_ms=") && line.contains("binary=sha256:"),
                "{line}"
            );
            client.send(&ClientFrame::ping()).await?;
            let reply = client.recv_server().await?;
            ensure!(
                reply == ServerFrame::Sent { recipients: 42 },
                "the rebuilt ping answers {reply:?}"
            );

            let text = std::fs::read_to_string(&routes)?;
            std::fs::write(&routes, format!("{text}\nfn broken( {{\n"))?;
            stack
                .wait_for_log("the running version keeps serving", 1, BUILD_TIMEOUT)
                .await?;
            ensure!(
                stack.log().contains("routes.rs"),
                "the compiler's output names the file"
            );
            client.send(&ClientFrame::ping()).await?;
            let reply = client.recv_server().await?;
            ensure!(
                reply == ServerFrame::Sent { recipients: 42 },
                "after the failed build, ping answers {reply:?}"
            );
            client.close().await
        }
        .await,
    )
}
