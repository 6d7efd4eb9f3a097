//! What the browser tests need besides the stack: Node.js and npm to run
//! `tests/browser/` (playwright-core, installed with `npm ci` into
//! `target/browser-tests/`), and Debian's Chromium for playwright-core to
//! drive. Each is looked for up front, and a missing one is named with how
//! to install it: these tests fail rather than skip.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use local_process::Signal;

use crate::process;
use crate::stack::workspace_root;

/// The Chromium the tests drive unless `CHROMIUM` names another.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// Node's test runner with `--test-timeout` and global `fetch`.
const MIN_NODE_MAJOR: u32 = 20;
/// Bound on `npm ci` (a first install downloads playwright-core, ~10 MB).
const NPM_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Bound on the whole browser test run.
const NODE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The programs the browser tests run.
#[derive(Debug, Clone)]
pub struct Tools {
    pub node: PathBuf,
    pub npm: PathBuf,
    pub chromium: PathBuf,
}

impl Tools {
    /// Finds node (≥ 20), npm and Chromium; the error names each one missing.
    pub fn find() -> anyhow::Result<Tools> {
        let mut missing = Vec::new();
        let node = match find_in_path("node") {
            Some(node) => match node_major(&node) {
                Ok(major) if major >= MIN_NODE_MAJOR => Some(node),
                Ok(major) => {
                    missing.push(format!(
                        "Node.js {MIN_NODE_MAJOR} or newer ({} is version {major})",
                        node.display()
                    ));
                    None
                }
                Err(error) => {
                    missing.push(format!("a working node ({error:#})"));
                    None
                }
            },
            None => {
                missing.push("node (Node.js 20 or newer: apt-get install nodejs)".to_string());
                None
            }
        };
        let npm = find_in_path("npm");
        if npm.is_none() {
            missing.push("npm (apt-get install npm)".to_string());
        }
        let chromium = std::env::var_os("CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM));
        if !is_executable(&chromium) {
            missing.push(format!(
                "Chromium at {} (Debian: apt-get install chromium; or set CHROMIUM to a Chromium or Chrome binary)",
                chromium.display()
            ));
        }
        match (node, npm) {
            (Some(node), Some(npm)) if missing.is_empty() => Ok(Tools {
                node,
                npm,
                chromium,
            }),
            _ => bail!(
                "the browser tests cannot run; missing: {}. .ci/run installs them.",
                missing.join("; ")
            ),
        }
    }
}

/// Node.js (≥ 20) alone, for tests that need no browser; the error says
/// what is missing.
pub fn find_node() -> anyhow::Result<PathBuf> {
    let node = find_in_path("node").ok_or_else(|| {
        anyhow::anyhow!("node (Node.js 20 or newer: apt-get install nodejs) is missing")
    })?;
    let major = node_major(&node)?;
    if major < MIN_NODE_MAJOR {
        bail!(
            "Node.js {MIN_NODE_MAJOR} or newer is needed ({} is version {major})",
            node.display()
        );
    }
    Ok(node)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn node_major(node: &Path) -> anyhow::Result<u32> {
    let output = Command::new(node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} --version", node.display()))?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    version
        .strip_prefix('v')
        .and_then(|v| v.split('.').next())
        .and_then(|major| major.parse().ok())
        .ok_or_else(|| anyhow!("{} --version printed {version:?}", node.display()))
}

/// `tests/browser/`: the Playwright tests and their package files.
pub fn tests_dir() -> PathBuf {
    workspace_root().join("tests/browser")
}

/// The cargo target directory this test binary runs from (`…/target`).
pub fn target_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    // target/<profile>/deps/<test binary>
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("{} is not in a cargo target directory", exe.display()))
}

/// Installs `tests/browser/package-lock.json` with `npm ci` into
/// `target/browser-tests/`, unless the same lock is installed there already.
/// Returns that folder (its `node_modules` holds playwright-core).
///
/// Tests run side by side, in one binary and across binaries, and two
/// `npm ci` in one folder tear each other's `node_modules` down (ENOTEMPTY):
/// an exclusive lock on `target/browser-tests.lock` lets one install while
/// the others wait, then find it installed.
pub fn install_playwright(tools: &Tools) -> anyhow::Result<PathBuf> {
    let source = tests_dir();
    let target = target_dir()?;
    let deps = target.join("browser-tests");
    let lock_path = target.join("browser-tests.lock");
    let guard =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    guard
        .lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let lock = std::fs::read(source.join("package-lock.json"))
        .with_context(|| format!("reading {}", source.join("package-lock.json").display()))?;
    let installed = deps
        .join("node_modules/playwright-core/package.json")
        .is_file()
        && std::fs::read(deps.join("package-lock.json")).is_ok_and(|old| old == lock);
    if installed {
        return Ok(deps);
    }
    std::fs::create_dir_all(&deps).with_context(|| format!("creating {}", deps.display()))?;
    std::fs::copy(source.join("package.json"), deps.join("package.json"))
        .context("copying package.json")?;
    std::fs::write(deps.join("package-lock.json"), &lock).context("copying package-lock.json")?;
    let mut command = Command::new(&tools.npm);
    // playwright-core has no install script; none may download a browser.
    command
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&deps);
    let (status, output) = run_bounded(command, &deps.join("npm-ci.log"), NPM_TIMEOUT)?;
    if !status {
        // A half-installed folder must not pass for an installed one next time.
        let _ = std::fs::remove_file(deps.join("package-lock.json"));
        bail!(
            "npm ci in {} failed (is the npm registry reachable?):\n{output}",
            deps.display()
        );
    }
    Ok(deps)
}

/// Where the screenshots go: `docs/images/` with `UPDATE_SCREENSHOTS=1`,
/// else `target/browser-tests/screenshots/`.
pub fn screenshot_dir() -> anyhow::Result<PathBuf> {
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        Ok(workspace_root().join("docs/images"))
    } else {
        Ok(target_dir()?.join("browser-tests/screenshots"))
    }
}

/// `node --test` on one file of tests that need Node.js only (no browser),
/// with `flags` before it and `env` set, for at most `limit`: its report, or
/// an error holding it.
pub async fn run_node_only_tests(
    file: &Path,
    flags: &[&str],
    env: &[(&str, String)],
    limit: Duration,
) -> anyhow::Result<String> {
    let node = find_node()?;
    let run = tokio::process::Command::new(node)
        .args(flags)
        .args(["--test", "--test-reporter=spec"])
        .arg(file)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true)
        .output();
    let output = crate::within(limit, &format!("node --test {}", file.display()), run).await??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    anyhow::ensure!(
        output.status.success(),
        "{} failed:\n{text}",
        file.display()
    );
    Ok(text)
}

pub fn run_node_tests(
    tools: &Tools,
    deps: &Path,
    test_file: &Path,
    env: &[(&str, String)],
) -> anyhow::Result<String> {
    let mut command = Command::new(&tools.node);
    command
        .args(["--test", "--test-reporter=spec", "--test-timeout=120000"])
        .arg(test_file)
        .env("BROWSER_DEPS", deps)
        .env("CHROMIUM", &tools.chromium)
        .current_dir(workspace_root());
    for (name, value) in env {
        command.env(name, value);
    }
    let (ok, output) = run_bounded(command, &deps.join("node-test.log"), NODE_TIMEOUT)?;
    if ok {
        Ok(output)
    } else {
        bail!("the browser tests failed:\n{output}")
    }
}

/// Runs `command` in its own process group (so a browser it starts goes
/// with it), output to `log`, for at most `limit`. Returns whether it
/// succeeded, and its output.
fn run_bounded(
    mut command: Command,
    log: &Path,
    limit: Duration,
) -> anyhow::Result<(bool, String)> {
    let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone().context("opening the log")?)
        .stderr(file);
    let what = format!("{command:?}");
    let mut child = process::spawn_guarded(command).with_context(|| format!("starting {what}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for a child process")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Whatever it started (a browser) ends with it.
    let _ = process::signal_group(child.id(), Signal::KILL);
    let _ = child.wait();
    let output = std::fs::read_to_string(log).unwrap_or_default();
    match status {
        Some(status) => Ok((status.success(), output)),
        None => bail!("{what} did not finish within {limit:?}; its output:\n{output}"),
    }
}
