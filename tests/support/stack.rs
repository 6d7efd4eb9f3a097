//! One running local stack: `devstack up` as a process, for one test.
//!
//! The stack reads its configuration from a Pulumi program directory. With no
//! overrides that is the repository's own `Pulumi.yaml` and `Pulumi.dev.yaml`;
//! with overrides, `Pulumi.yaml` is copied into a temporary directory next to
//! a `Pulumi.e2e.yaml` holding the dev stack's config plus the overrides, so
//! tests also prove the stack is configured from the Pulumi files.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use local_process::Signal;

use crate::process::{self, ProcessInfo};

/// First start on a fresh machine builds the binaries and installs the
/// DynamoDB-compatible server; later starts take seconds.
pub const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the stack may take to shut down after Ctrl-C (SIGINT).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on `cargo build` of the stack and the function (the target
/// directory is shared, so this may wait for other builds' locks).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The stack's URLs and key, as `devstack up --ready-file` writes them.
pub use devstack::stack::Endpoints;
use devstack::tools::launch::{self, Launch};

/// Stack config overrides (`<project>:<key>: value`), on top of the dev stack's.
#[derive(Debug, Clone, Default)]
pub struct StackConfig {
    overrides: BTreeMap<String, serde_yaml_ng::Value>,
    max_concurrency: Option<usize>,
    env: BTreeMap<String, String>,
    async_deliveries: Option<usize>,
    /// `--max-connections`, when set.
    max_connections: Option<usize>,
    /// `--account-rate-limit` and `--account-connect-limit`, when set.
    account_rate_limit: Option<u32>,
    account_connect_limit: Option<u32>,
    /// The edge's address, when a test needs the same one across a restart.
    edge_addr: Option<std::net::SocketAddr>,
    /// `--idle-timeout` in seconds, when set.
    idle_timeout_secs: Option<u64>,
    /// Watch mode on (`devstack up`'s default); the harness turns it off
    /// unless a test asks for it, so nothing on disk changes a running test.
    watch: bool,
    /// Copy the program even without overrides (a test that edits it).
    copy_program: bool,
    /// `--no-freeze`: function processes run between invocations.
    no_freeze: bool,
    function: Function,
    /// Sign-in as the dev stack has it (the authorizer on `$connect`, the
    /// local issuer); off unless a test asks, so clients connect without a
    /// token.
    sign_in: bool,
    /// `--issuer`: a real issuer instead of the local one.
    issuer: Option<String>,
}

/// The config that turns sign-in off (`signIn: off` with no issuer, as
/// the program requires).
const SIGN_IN_OFF: [(&str, &str); 3] = [("signIn", "off"), ("issuer", ""), ("audience", "")];

/// Which function the stack runs.
#[derive(Debug, Clone, Default)]
enum Function {
    /// The `websocket-handler` binary the harness built.
    #[default]
    Built,
    /// Another executable, e.g. a script speaking the Runtime API.
    Binary(PathBuf),
    /// A handler given as a command, run in a directory (`--function-cmd`, `--function-dir`).
    Command(String, PathBuf),
    /// Built by devstack itself from the workspace at this directory (its
    /// `Pulumi.yaml` is the program), into the harness's target directory.
    Workspace(PathBuf),
}

impl StackConfig {
    pub fn new() -> Self {
        StackConfig::default()
    }

    /// Sign-in on, as the dev stack configures it: `$connect` runs the
    /// authorizer, whose tokens come from the stack's local issuer.
    pub fn sign_in(mut self) -> Self {
        self.sign_in = true;
        self
    }

    /// Sign-in on, against `url` as a real issuer (`--issuer`) rather
    /// than the stack's local one.
    pub fn issuer(mut self, url: &str) -> Self {
        self.sign_in = true;
        self.issuer = Some(url.to_string());
        self
    }

    /// The overrides with sign-in turned off unless the test asked for it
    /// (or set the sign-in keys itself).
    fn effective_overrides(&self) -> BTreeMap<String, serde_yaml_ng::Value> {
        let mut overrides = self.overrides.clone();
        if !self.sign_in {
            for (key, value) in SIGN_IN_OFF {
                overrides.entry(key.to_string()).or_insert(value.into());
            }
        }
        overrides
    }

    /// Sets a config key of `Pulumi.yaml`'s `config` block, e.g. `rateLimit`.
    pub fn set(mut self, key: &str, value: impl Into<serde_yaml_ng::Value>) -> Self {
        self.overrides.insert(key.to_string(), value.into());
        self
    }

    /// The most function processes at once (`devstack up --max-concurrency`).
    pub fn max_concurrency(mut self, processes: usize) -> Self {
        self.max_concurrency = Some(processes);
        self
    }

    /// Watch mode on: saves of the function or the program reload the stack.
    pub fn watch(mut self) -> Self {
        self.watch = true;
        self
    }

    /// Runs `path` (`--function-bin`) instead of the built `websocket-handler`.
    pub fn function_bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.function = Function::Binary(path.into());
        self
    }

    /// Runs `command` in `dir` as the function (`--function-cmd`): any runtime.
    pub fn function_cmd(mut self, command: &str, dir: impl Into<PathBuf>) -> Self {
        self.function = Function::Command(command.to_owned(), dir.into());
        self
    }

    /// Runs from a copy of the workspace at `dir`: its `Pulumi.yaml` is the
    /// program and devstack builds its function (sharing the harness's
    /// target directory, so only the copied crates are compiled).
    pub fn workspace(mut self, dir: impl Into<PathBuf>) -> Self {
        self.function = Function::Workspace(dir.into());
        self
    }

    /// A copy of `Pulumi.yaml` and the stack config in the test's own
    /// directory, even with no overrides: for tests that edit the program.
    pub fn copy_program(mut self) -> Self {
        self.copy_program = true;
        self
    }

    /// Sets a variable in `devstack up`'s environment; devstack hands
    /// `AWS_LAMBDA_LOG_LEVEL`, `RUST_LOG` and `RUST_BACKTRACE` on to the function.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_string(), value.to_string());
        self
    }

    /// The local Lambda delivers every asynchronous event twice, as Lambda's
    /// queue may (`devstack up --async-deliveries 2`).
    pub fn duplicate_async_events(mut self) -> Self {
        self.async_deliveries = Some(2);
        self
    }

    /// Open WebSocket connections the edge and the API layer hold at most
    /// (`--max-connections`).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = Some(connections);
        self
    }

    /// The account's request rate (`--account-rate-limit`, AWS: 10,000/s).
    pub fn account_rate_limit(mut self, per_sec: u32) -> Self {
        self.account_rate_limit = Some(per_sec);
        self
    }

    /// The account's new connections per second (`--account-connect-limit`,
    /// AWS: 500/s); a test opening thousands of clients in a few seconds
    /// lifts it, as a deployment would ask AWS for a quota increase.
    pub fn account_connect_limit(mut self, per_sec: u32) -> Self {
        self.account_connect_limit = Some(per_sec);
        self
    }

    /// API Gateway's idle timeout, shortened for a test of reconnect and
    /// keepalive logic (`--idle-timeout`, whole seconds, AWS: 600).
    pub fn idle_timeout_secs(mut self, secs: u64) -> Self {
        self.idle_timeout_secs = Some(secs);
        self
    }

    /// The edge on this address instead of a free port: a test that
    /// restarts the stack and expects clients to find it again.
    pub fn edge_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.edge_addr = Some(addr);
        self
    }

    /// Function processes are not frozen between invocations (`--no-freeze`).
    pub fn no_freeze(mut self) -> Self {
        self.no_freeze = true;
        self
    }

    /// Throttling that lets a test send thousands of messages in seconds.
    pub fn generous_throttling(self) -> Self {
        self.set("stageBurstLimit", 100_000)
            .set("stageRateLimit", 100_000)
            .set("usagePlanBurstLimit", 100_000)
            .set("usagePlanRateLimit", 100_000)
    }

    /// A stage bucket far smaller than what the machine serves (100 at once,
    /// 100 a second): a flood of 2,000 messages gets 429s however slowly a
    /// busy machine reads it, and what the stage admits (at most 100 plus
    /// 100 a second) is little work for the function. With the defaults
    /// (500, 1,000 a second) a machine that takes over half a second to read
    /// the flood admits over 1,000 invocations, which once filled the pool's
    /// old queue (it counted invocations waiting for a local process as
    /// running; it now counts as AWS would, `lambda/concurrency.rs`).
    pub fn tight_stage_throttling(self) -> Self {
        self.set("stageBurstLimit", 100).set("stageRateLimit", 100)
    }
}

/// The workspace root, where `Pulumi.yaml` lives.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// The directory cargo puts this profile's binaries in (`target/debug`):
/// this test binary lives in its `deps/`.
fn binary_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            anyhow!(
                "the test binary {} is not in a cargo target directory",
                exe.display()
            )
        })
}

/// Builds `devstack`, `websocket-handler` and `authorizer` once per test process, with the
/// cargo that runs the tests, into the same target directory and profile.
fn ensure_built() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("building the stack failed: {e}"))
}

/// The `devstack` binary, built if needed.
pub fn devstack_binary() -> anyhow::Result<PathBuf> {
    Ok(ensure_built()?.join("devstack"))
}

fn build() -> anyhow::Result<PathBuf> {
    let bin = binary_dir()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command.args([
        "build",
        "-p",
        "devstack",
        "-p",
        "websocket-handler",
        "-p",
        "authorizer",
    ]);
    if bin.file_name().is_some_and(|n| n == "release") {
        command.arg("--release");
    }
    let log_path = std::env::temp_dir().join(format!("e2e-build-{}.log", std::process::id()));
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    command
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("opening the build log")?)
        .stderr(log);
    let mut child = command
        .spawn()
        .with_context(|| format!("running {cargo:?} build"))?;
    let status = wait_bounded(&mut child, BUILD_TIMEOUT)?;
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    match status {
        Some(status) if status.success() => Ok(bin),
        Some(status) => bail!("cargo build exited with {status}:\n{}", tail(&output, 60)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "cargo build did not finish within {BUILD_TIMEOUT:?}:\n{}",
                tail(&output, 60)
            )
        }
    }
}

/// Waits for `child` to exit for at most `limit`; `None` if it did not.
fn wait_bounded(child: &mut Child, limit: Duration) -> anyhow::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child process")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many warning and error lines a failed test's message quotes.
const PROBLEMS: usize = 40;

/// The first `limit` lines of `text` logged at WARN or ERROR, by devstack
/// (text) or by the function (JSON).
fn problems(text: &str, limit: usize) -> String {
    const MARKS: [&str; 4] = [
        " WARN ",
        " ERROR ",
        r#""level":"WARN""#,
        r#""level":"ERROR""#,
    ];
    text.lines()
        .filter(|line| MARKS.iter().any(|mark| line.contains(mark)))
        .take(limit)
        .collect::<Vec<_>>()
        .join("\n")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How the stack ended when asked to stop with Ctrl-C.
#[derive(Debug)]
pub struct Shutdown {
    /// `None` when it had not exited within [`STOP_TIMEOUT`] (it was killed).
    pub status: Option<ExitStatus>,
    /// Processes the stack started that were still alive after it exited
    /// (they are killed afterwards).
    pub leftovers: Vec<ProcessInfo>,
}

/// The `devstack up` process; dropping it stops the process and everything
/// it started.
struct Running {
    child: Option<Child>,
    log_path: PathBuf,
}

impl Running {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits for the ready file: the endpoints, once the stack accepts connections.
    async fn wait_ready(
        &mut self,
        ready_file: &Path,
        limit: Duration,
    ) -> anyhow::Result<Endpoints> {
        let child = &mut self.child;
        let waited = launch::wait_ready(ready_file, limit, || match child.as_mut() {
            Some(child) => child.try_wait(),
            None => Ok(None),
        })
        .await;
        waited.map_err(|error| anyhow!("{error}; its log:\n{}", tail(&self.log(), 80)))
    }

    /// SIGINT (Ctrl-C), a bounded wait, then SIGKILL for the process and
    /// whatever it started that is still alive.
    fn interrupt(&mut self) -> Shutdown {
        let Some(mut child) = self.child.take() else {
            return Shutdown {
                status: None,
                leftovers: Vec::new(),
            };
        };
        let group = child.id();
        // Function processes may run in process groups of their own: what
        // the stack started is what descends from it now.
        let started: Vec<ProcessInfo> = process::descendants(child.id());
        // A stack that already exited (and was reaped) is not signalled: its
        // pid may name another process by now.
        if matches!(child.try_wait(), Ok(None)) {
            let _ = process::signal(child.id(), Signal::INT);
        }
        let status = wait_bounded(&mut child, STOP_TIMEOUT).ok().flatten();
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Children get a moment to notice their parent is gone.
        let alive = || {
            let mut alive = process::still_alive(&started);
            for member in process::group_members(group) {
                if !alive.iter().any(|p| p.pid == member.pid) {
                    alive.push(member);
                }
            }
            alive
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut leftovers = alive();
        while !leftovers.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            leftovers = alive();
        }
        for process in &leftovers {
            let _ = process::signal(process.pid, Signal::KILL);
        }
        let _ = process::signal_group(group, Signal::KILL);
        Shutdown { status, leftovers }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let shutdown = self.interrupt();
        if !shutdown.leftovers.is_empty() {
            eprintln!(
                "e2e: the stack left processes behind (killed): {:?}",
                shutdown.leftovers
            );
        }
    }
}

/// A running local stack. Dropping it stops the stack.
pub struct Stack {
    // Declared first, so the process stops before its directory is removed.
    running: Running,
    endpoints: Endpoints,
    program_dir: PathBuf,
    stack_name: String,
    /// Holds the ready file, the log and any copied program.
    _dir: tempfile::TempDir,
}

impl Stack {
    /// The stack of the repository's Pulumi program, dev stack.
    pub async fn start() -> anyhow::Result<Stack> {
        Stack::start_with(StackConfig::new()).await
    }

    /// The repository's Pulumi program with the dev stack's config and `config`'s overrides.
    pub async fn start_with(config: StackConfig) -> anyhow::Result<Stack> {
        let bin = ensure_built()?;
        let dir = tempfile::Builder::new()
            .prefix("e2e-stack-")
            .tempdir()
            .context("creating a temporary directory")?;
        let (program_dir, stack_name) = match &config.function {
            Function::Workspace(root) => {
                // The copy's own dev stack, with the test's settings.
                let dev = root.join("Pulumi.dev.yaml");
                let values = stack_config(&dev, &config.effective_overrides())?;
                write_stack_config(&dev, values)?;
                (root.clone(), "dev".to_string())
            }
            _ if config.effective_overrides().is_empty() && !config.copy_program => {
                (workspace_root(), "dev".to_string())
            }
            _ => (write_program(dir.path(), &config)?, "e2e".to_string()),
        };
        let ready_file = dir.path().join("ready.json");
        let log_path = dir.path().join("devstack.log");
        let launch = Launch {
            program_dir: &program_dir,
            stack: &stack_name,
            ready_file: &ready_file,
            log: &log_path,
            edge_addr: config.edge_addr,
        };
        let mut command = launch
            .command(&bin.join("devstack"))
            .context("preparing devstack up")?;
        command.current_dir(workspace_root());
        match &config.function {
            Function::Built => {
                command
                    .arg("--function-bin")
                    .arg(bin.join("websocket-handler"))
                    .arg("--authorizer-bin")
                    .arg(bin.join("authorizer"));
            }
            Function::Binary(path) => {
                command.arg("--function-bin").arg(path);
                command.arg("--authorizer-bin").arg(bin.join("authorizer"));
            }
            Function::Command(handler, dir) => {
                command
                    .args(["--function-cmd", handler])
                    .arg("--function-dir")
                    .arg(dir);
            }
            Function::Workspace(_) => {
                let target = bin.parent().context("the target directory")?;
                command.env("CARGO_TARGET_DIR", target);
            }
        }
        if !config.watch {
            command.arg("--no-watch");
        }
        if config.sign_in {
            // The issuer on a port of its own: tests run side by side.
            command.arg("--issuer-addr").arg("127.0.0.1:0");
        }
        if let Some(issuer) = &config.issuer {
            command.arg("--issuer").arg(issuer);
        }
        if config.no_freeze {
            command.arg("--no-freeze");
        }
        if let Some(processes) = config.max_concurrency {
            command.arg("--max-concurrency").arg(processes.to_string());
        }
        if let Some(deliveries) = config.async_deliveries {
            command
                .arg("--async-deliveries")
                .arg(deliveries.to_string());
        }
        if let Some(connections) = config.max_connections {
            command
                .arg("--max-connections")
                .arg(connections.to_string());
        }
        if let Some(rate) = config.account_rate_limit {
            command.arg("--account-rate-limit").arg(rate.to_string());
        }
        if let Some(secs) = config.idle_timeout_secs {
            command.arg("--idle-timeout").arg(secs.to_string());
        }
        if let Some(rate) = config.account_connect_limit {
            command.arg("--account-connect-limit").arg(rate.to_string());
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        command.envs(&config.env);
        let child = process::spawn_guarded(command).context("starting devstack up")?;
        let mut running = Running {
            child: Some(child),
            log_path,
        };
        // devstack builds the function itself from a workspace copy.
        let limit = match config.function {
            Function::Workspace(_) => BUILD_TIMEOUT,
            _ => START_TIMEOUT,
        };
        let endpoints = running.wait_ready(&ready_file, limit).await?;
        Ok(Stack {
            running,
            endpoints,
            program_dir,
            stack_name,
            _dir: dir,
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The ready file the stack wrote (`devstack up --ready-file`), as
    /// `devstack control` and `devstack check --ready-file` read it.
    pub fn ready_file(&self) -> PathBuf {
        self._dir.path().join("ready.json")
    }

    /// The topology the stack was configured from, read from the same Pulumi files.
    pub fn topology(&self) -> anyhow::Result<pulumi_program::Topology> {
        pulumi_program::load(&self.program_dir, &self.stack_name).with_context(|| {
            format!(
                "loading {} stack {}",
                self.program_dir.display(),
                self.stack_name
            )
        })
    }

    /// The directory holding the `Pulumi.yaml` the stack runs from.
    pub fn program_dir(&self) -> &Path {
        &self.program_dir
    }

    /// The stack config file the stack runs from (`Pulumi.<stack>.yaml`).
    pub fn stack_file(&self) -> PathBuf {
        self.program_dir
            .join(format!("Pulumi.{}.yaml", self.stack_name))
    }

    /// The stack's control room (time and faults on demand), as `devstack control` talks to it.
    pub fn control(&self) -> anyhow::Result<devstack::control::client::ControlClient> {
        devstack::control::client::ControlClient::new(&self.endpoints)
    }

    /// Waits until the log holds `needle` at least `count` times.
    pub async fn wait_for_log(
        &self,
        needle: &str,
        count: usize,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if self.log().matches(needle).count() >= count {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the log did not show {needle:?} {count} time(s) within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `ws://127.0.0.1:P`: the edge, as clients of CloudFront see it.
    pub fn edge(&self) -> &str {
        &self.endpoints.edge
    }

    /// `ws://127.0.0.1:Q/<stage>`: the API layer, which needs the key.
    pub fn api(&self) -> &str {
        &self.endpoints.api
    }

    pub fn api_key(&self) -> &str {
        &self.endpoints.api_key
    }

    /// The devstack process id.
    pub fn pid(&self) -> Option<u32> {
        self.running.pid()
    }

    /// The stack's Region (`aws:region` of its config): `@connections`
    /// requests are signed for it.
    pub fn region(&self) -> String {
        self.topology()
            .map(|topology| topology.region)
            .expect("the stack's program is readable")
    }

    /// A client of the @connections management API, built as the function
    /// builds its own (aws-sdk-apigatewaymanagement, endpoint override).
    pub fn management_client(&self) -> aws_sdk_apigatewaymanagement::Client {
        use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region()))
            .credentials_provider(Credentials::new("local", "local", None, None, "e2e"))
            .endpoint_url(self.endpoints.management.clone())
            .build();
        aws_sdk_apigatewaymanagement::Client::from_conf(config)
    }

    /// Everything the stack printed so far (stdout and stderr).
    pub fn log(&self) -> String {
        self.running.log()
    }

    /// Adds the end of the stack's log to a failed test's error.
    pub fn explain<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        if result.is_err() {
            // Lines about the failure may still be on their way to the log.
            std::thread::sleep(Duration::from_millis(500));
        }
        result.with_context(|| {
            let log = self.log();
            let kept = match self.keep_log(&log) {
                Ok(path) => format!("the whole log is kept at {}", path.display()),
                Err(e) => format!("the log could not be kept: {e:#}"),
            };
            format!(
                "devstack log — {kept}\nits warnings and errors (first {PROBLEMS}):\n{}\n\
                 its last lines:\n{}",
                problems(&log, PROBLEMS),
                tail(&log, 60)
            )
        })
    }

    /// Copies the log of a failed test to `target/e2e-logs/`, where it
    /// outlives the stack's temporary directory.
    fn keep_log(&self, log: &str) -> anyhow::Result<PathBuf> {
        let dir = crate::browser::target_dir()?.join("e2e-logs");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let test = std::thread::current()
            .name()
            .unwrap_or("test")
            .replace("::", "-");
        let path = dir.join(format!("{test}-{}.log", std::process::id()));
        std::fs::write(&path, log).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// The last lines of the stack's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log(), 60)
    }

    /// A token from the stack's local issuer (sign-in on).
    pub async fn token(&self, request: &local_issuer::MintRequest) -> anyhow::Result<String> {
        let issuer = self
            .endpoints
            .issuer
            .as_deref()
            .ok_or_else(|| anyhow!("the stack serves no local issuer (sign-in off?)"))?;
        devstack::issuer::mint(issuer, request).await
    }

    /// The function processes the stack runs now: its child processes
    /// whose executable is `websocket-handler`.
    pub fn function_pids(&self) -> Vec<u32> {
        let Some(pid) = self.pid() else {
            return Vec::new();
        };
        process::children(pid)
            .into_iter()
            .filter(|&child| {
                ProcessInfo::read(child)
                    .and_then(|p| p.exe())
                    .is_some_and(|exe| {
                        exe.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("websocket-handler"))
                    })
            })
            .collect()
    }

    /// Every living process the stack started (function processes, the
    /// authorizer's, …), not the stack itself.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        self.pid().map(process::descendants).unwrap_or_default()
    }

    /// Waits up to `limit` for the stack to exit by itself: its status, or
    /// `None` while it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<Option<ExitStatus>> {
        match self.running.child.as_mut() {
            Some(child) => wait_bounded(child, limit),
            None => Ok(None),
        }
    }

    /// Stops the stack as Ctrl-C would and reports how it ended. Processes
    /// still alive afterwards are killed (and reported).
    pub fn interrupt(&mut self) -> Shutdown {
        self.running.interrupt()
    }
}

/// Copies `Pulumi.yaml` into `dir` and writes `Pulumi.e2e.yaml`: the dev
/// stack's config with `config`'s overrides.
fn write_program(dir: &Path, config: &StackConfig) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let program_path = root.join("Pulumi.yaml");
    let program = std::fs::read_to_string(&program_path)
        .with_context(|| format!("reading {}", program_path.display()))?;
    std::fs::write(dir.join("Pulumi.yaml"), &program).context("copying Pulumi.yaml")?;
    let values = stack_config(&root.join("Pulumi.dev.yaml"), &config.effective_overrides())?;
    write_stack_config(&dir.join("Pulumi.e2e.yaml"), values)?;
    Ok(dir.to_path_buf())
}

/// The config of the stack file at `path` (none when it is missing) with
/// `overrides` under the project's namespace.
fn stack_config(
    path: &Path,
    overrides: &BTreeMap<String, serde_yaml_ng::Value>,
) -> anyhow::Result<serde_yaml_ng::Mapping> {
    let program_path = workspace_root().join("Pulumi.yaml");
    let program = std::fs::read_to_string(&program_path)
        .with_context(|| format!("reading {}", program_path.display()))?;
    let project = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&program)
        .with_context(|| format!("parsing {}", program_path.display()))?
        .get("name")
        .and_then(serde_yaml_ng::Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} has no project name", program_path.display()))?;
    let mut values = match std::fs::read_to_string(path) {
        Ok(text) => serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text)
            .with_context(|| format!("parsing {}", path.display()))?
            .get("config")
            .and_then(serde_yaml_ng::Value::as_mapping)
            .cloned()
            .unwrap_or_default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_yaml_ng::Mapping::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    for (key, value) in overrides {
        values.insert(format!("{project}:{key}").into(), value.clone());
    }
    Ok(values)
}

fn write_stack_config(path: &Path, values: serde_yaml_ng::Mapping) -> anyhow::Result<()> {
    let mut document = serde_yaml_ng::Mapping::new();
    document.insert("config".into(), serde_yaml_ng::Value::Mapping(values));
    let text = serde_yaml_ng::to_string(&document).context("writing the stack config")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_written_under_the_project_namespace_over_the_dev_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = StackConfig::new()
            .set("rateLimit", 10)
            .set("stageName", "v1");
        let program_dir = write_program(dir.path(), &config).unwrap();
        let program = std::fs::read_to_string(program_dir.join("Pulumi.yaml")).unwrap();
        assert_eq!(
            program,
            std::fs::read_to_string(workspace_root().join("Pulumi.yaml")).unwrap()
        );
        let project = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&program).unwrap()["name"]
            .as_str()
            .unwrap()
            .to_string();

        let written: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(program_dir.join("Pulumi.e2e.yaml")).unwrap(),
        )
        .unwrap();
        let config = &written["config"];
        assert_eq!(
            config[format!("{project}:rateLimit").as_str()],
            serde_yaml_ng::Value::from(10)
        );
        assert_eq!(
            config[format!("{project}:stageName").as_str()],
            serde_yaml_ng::Value::from("v1")
        );
        if let Ok(dev) = std::fs::read_to_string(workspace_root().join("Pulumi.dev.yaml")) {
            let dev: serde_yaml_ng::Value = serde_yaml_ng::from_str(&dev).unwrap();
            if let Some(region) = dev["config"].get("aws:region") {
                assert_eq!(
                    &config["aws:region"], region,
                    "the dev stack's settings are kept"
                );
            }
        }
    }
}
