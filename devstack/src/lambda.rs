//! The local Lambda: the Lambda Runtime API (2018-06-01) in front of a pool of
//! real function processes.
//!
//! Every function process gets its own Runtime API endpoint on a loopback port
//! (`AWS_LAMBDA_RUNTIME_API`), so it runs exactly as in a Lambda execution
//! environment: it polls `/runtime/invocation/next` and answers on
//! `/response` or `/error`. A process handles one invocation at a time;
//! concurrent invocations grow the pool up to the function's concurrency and
//! then queue, as Lambda concurrency does. A process that crashes or runs past
//! the timeout fails only its own invocation and is replaced; the pool, and
//! the stack around it, stays up.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::invoke::{Invoke, InvokeError, InvokeFuture};

/// The package and binary of the function the stack runs.
const FUNCTION_PACKAGE: &str = "websocket-handler";
const FUNCTION_BINARY: &str = "websocket-handler";

/// Lambda's limit on the init phase of an execution environment.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a process gets between SIGTERM and SIGKILL when the pool shuts down.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Lambda's limit on a synchronous response payload (6 MB).
const MAX_PAYLOAD_BYTES: usize = 6_291_556;
/// Lines of a process's output kept to explain why it failed to start.
const OUTPUT_TAIL_LINES: usize = 20;
/// Deaths closer together than this make replacements back off.
const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The account id in the function ARN the Runtime API hands out.
const LOCAL_ACCOUNT_ID: &str = "000000000000";
const RUNTIME_API_PREFIX: &str = "/2018-06-01/runtime";

/// How to run the function: what the Pulumi program's `aws:lambda:Function` says.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// The function's executable (the zip's `bootstrap`, built for the host).
    pub binary: PathBuf,
    /// `AWS_LAMBDA_FUNCTION_NAME`, and the prefix of the function's log lines.
    pub name: String,
    /// The function's environment variables. `AWS_REGION` here sets the
    /// region of the function ARN (default `us-east-1`).
    pub env: Vec<(String, String)>,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (not enforced locally).
    pub memory_mb: u32,
    /// The invocation timeout; a process past it is killed and replaced.
    pub timeout: Duration,
    /// The most processes, hence concurrent invocations, at once.
    pub max_concurrency: usize,
}

/// A pool of function processes, each behind its own Runtime API endpoint.
pub struct LambdaPool {
    config: FunctionConfig,
    region: String,
    arn: String,
    me: Weak<LambdaPool>,
    /// One permit per process that may exist: the function's concurrency.
    slots: Arc<Semaphore>,
    /// Processes waiting for an invocation, most recently used last.
    idle: Mutex<VecDeque<Arc<Worker>>>,
    idle_added: Notify,
    workers: Mutex<Workers>,
    closing: CancellationToken,
    /// Supervisors, replacements and invocations: shutdown waits for them.
    tasks: TaskTracker,
    next_worker_id: AtomicU64,
    backoff: Mutex<Backoff>,
}

/// Processes started and not yet exited.
struct Workers {
    closing: bool,
    live: HashMap<u64, Arc<Worker>>,
}

/// How long to wait before replacing a process, so a function that dies as
/// soon as it starts does not make the pool spin.
struct Backoff {
    last_death: Option<Instant>,
    delay: Duration,
}

impl LambdaPool {
    /// Starts one warm function process; the pool grows on demand up to
    /// `max_concurrency`. Fails, naming the cause, when that first process
    /// cannot start (missing binary, init error, exit or timeout during init).
    pub async fn start(mut config: FunctionConfig) -> anyhow::Result<Arc<Self>> {
        // Processes run in the binary's directory (LAMBDA_TASK_ROOT), so a
        // relative path would no longer name it there.
        config.binary = std::path::absolute(&config.binary).with_context(|| {
            format!(
                "resolving the function binary path {}",
                config.binary.display()
            )
        })?;
        if config.max_concurrency == 0 {
            bail!(
                "function {}: max_concurrency must be at least 1",
                config.name
            );
        }
        if !config.binary.is_file() {
            bail!(
                "function binary {} not found (build it with `cargo build -p {FUNCTION_PACKAGE}`)",
                config.binary.display()
            );
        }
        let region = config
            .env
            .iter()
            .find(|(key, _)| key == "AWS_REGION")
            .map_or_else(|| "us-east-1".to_owned(), |(_, value)| value.clone());
        let arn = format!(
            "arn:aws:lambda:{region}:{LOCAL_ACCOUNT_ID}:function:{}",
            config.name
        );
        let slots = Arc::new(Semaphore::new(config.max_concurrency));
        let pool = Arc::new_cyclic(|me| LambdaPool {
            config,
            region,
            arn,
            me: me.clone(),
            slots,
            idle: Mutex::new(VecDeque::new()),
            idle_added: Notify::new(),
            workers: Mutex::new(Workers {
                closing: false,
                live: HashMap::new(),
            }),
            closing: CancellationToken::new(),
            tasks: TaskTracker::new(),
            next_worker_id: AtomicU64::new(1),
            backoff: Mutex::new(Backoff {
                last_death: None,
                delay: Duration::ZERO,
            }),
        });
        let slot = pool
            .slots
            .clone()
            .try_acquire_owned()
            .context("no process slot for the first function process")?;
        match pool.start_worker(slot).await {
            Ok(worker) => {
                info!(
                    function = %pool.config.name,
                    pid = worker.pid,
                    init_ms = worker.init_ms(),
                    max_concurrency = pool.config.max_concurrency,
                    "function ready"
                );
                pool.check_in(worker);
                Ok(pool)
            }
            Err(err) => {
                pool.shutdown().await;
                Err(err.context(format!("starting function {}", pool.config.name)))
            }
        }
    }

    /// Ends every function process (SIGTERM, then SIGKILL after a grace
    /// period) and waits until they and the pool's tasks are gone. Invocations
    /// after this fail with [`InvokeError::Unavailable`].
    pub async fn shutdown(&self) {
        let workers: Vec<Arc<Worker>> = {
            let mut workers = lock(&self.workers);
            workers.closing = true;
            workers.live.values().cloned().collect()
        };
        self.closing.cancel();
        self.slots.close();
        lock(&self.idle).clear();
        for worker in &workers {
            worker.stop(Stop::Terminate);
        }
        self.tasks.close();
        self.tasks.wait().await;
        info!(function = %self.config.name, processes = workers.len(), "function stopped");
    }

    /// The pids of the live function processes.
    pub fn process_ids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = lock(&self.workers)
            .live
            .values()
            .filter(|worker| worker.is_alive())
            .map(|worker| worker.pid)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Runs one invocation on an idle or new process and logs its report.
    async fn run_invocation(&self, event: Bytes) -> Result<Value, InvokeError> {
        let worker = self.check_out().await?;
        let request_id = Uuid::new_v4().to_string();
        let cold = !worker.has_invoked.swap(true, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = worker.invoke(&request_id, event, self.config.timeout).await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let result = match &outcome {
            Ok(_) => "ok",
            Err(InvokeError::Function { .. }) => "function error",
            Err(InvokeError::Crashed(_)) => "crashed",
            Err(InvokeError::Timeout(_)) => "timeout",
            Err(InvokeError::Unavailable(_)) => "unavailable",
        };
        info!(
            function = %self.config.name,
            request_id,
            pid = worker.pid,
            result,
            duration_ms,
            init_duration_ms = cold.then(|| worker.init_ms()),
            max_memory_mb = peak_rss_mib(worker.pid),
            "invoke"
        );
        if matches!(outcome, Ok(_) | Err(InvokeError::Function { .. })) {
            self.check_in(worker);
        }
        let body = outcome?;
        serde_json::from_slice(&body).map_err(|err| InvokeError::Function {
            error_type: "Runtime.InvalidResponse".to_owned(),
            message: format!("the function's response is not JSON: {err}"),
        })
    }

    /// Takes an idle process, or starts one if the concurrency allows, or
    /// waits for one of the two.
    async fn check_out(&self) -> Result<Arc<Worker>, InvokeError> {
        loop {
            let idle_added = self.idle_added.notified();
            tokio::pin!(idle_added);
            idle_added.as_mut().enable();
            if let Some(worker) = self.pop_idle() {
                return Ok(worker);
            }
            tokio::select! {
                biased;
                () = self.closing.cancelled() => return Err(shutting_down()),
                () = &mut idle_added => continue,
                slot = self.slots.clone().acquire_owned() => {
                    let slot = slot.map_err(|_| shutting_down())?;
                    if let Some(worker) = self.pop_idle() {
                        return Ok(worker);
                    }
                    return self
                        .start_worker(slot)
                        .await
                        .map_err(|err| InvokeError::Unavailable(format!("{err:#}")));
                }
            }
        }
    }

    fn pop_idle(&self) -> Option<Arc<Worker>> {
        let mut idle = lock(&self.idle);
        while let Some(worker) = idle.pop_back() {
            if worker.is_alive() {
                return Some(worker);
            }
        }
        None
    }

    /// Makes a process that finished its invocation available again.
    fn check_in(&self, worker: Arc<Worker>) {
        if !worker.is_alive() || self.closing.is_cancelled() {
            return;
        }
        lock(&self.idle).push_back(worker);
        self.idle_added.notify_one();
    }

    /// Spawns a function process behind a new Runtime API endpoint and waits
    /// for its init to finish (its first `/next`). `slot` is held until the
    /// process exits.
    async fn start_worker(&self, slot: OwnedSemaphorePermit) -> anyhow::Result<Arc<Worker>> {
        let spawned = Instant::now();
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding a loopback port for the Runtime API")?;
        let api_addr = listener
            .local_addr()
            .context("reading the Runtime API's port")?;
        let api = Arc::new(RuntimeApi::new(self.arn.clone()));
        serve_runtime_api(listener, Arc::clone(&api));

        let id = self.next_worker_id.fetch_add(1, Ordering::Relaxed);
        let mut command = Command::new(&self.config.binary);
        command
            .env_clear()
            .envs(self.function_env(api_addr, id))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C in the terminal reaches devstack
            // only, which then stops the functions in order.
            .process_group(0);
        if let Some(dir) = self.config.binary.parent().filter(|dir| dir.is_dir()) {
            command.current_dir(dir);
        }
        die_with_parent(&mut command);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                api.close();
                return Err(err).with_context(|| {
                    format!("running function binary {}", self.config.binary.display())
                });
            }
        };
        let Some(pid) = child.id() else {
            api.close();
            bail!("the function process exited before it could be watched");
        };

        let prefix = format!("[{} {pid}]", self.config.name);
        let output_tail = Arc::new(Mutex::new(VecDeque::new()));
        let mut forwarders = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            forwarders.push(tokio::spawn(forward_output(
                stdout,
                prefix.clone(),
                Arc::clone(&output_tail),
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            forwarders.push(tokio::spawn(forward_output(
                stderr,
                prefix,
                Arc::clone(&output_tail),
            )));
        }
        let (exited_tx, exited) = watch::channel(None);
        let (stop_tx, stop_rx) = mpsc::unbounded_channel();
        let worker = Arc::new(Worker {
            id,
            pid,
            api: Arc::clone(&api),
            exited,
            stop: stop_tx,
            init: OnceLock::new(),
            has_invoked: AtomicBool::new(false),
            output_tail,
        });
        self.tasks.spawn(supervise(Supervised {
            child,
            pid,
            stop: stop_rx,
            exited: exited_tx,
            api,
            forwarders,
            slot,
            pool: self.me.clone(),
            worker_id: id,
        }));
        if !self.register(&worker) {
            worker.stop(Stop::Kill);
            bail!("the pool is shutting down");
        }

        match tokio::time::timeout(INIT_TIMEOUT, worker.until_ready()).await {
            Ok(Ok(())) => {
                let _ = worker.init.set(spawned.elapsed());
                debug!(function = %self.config.name, pid, init_ms = worker.init_ms(), runtime_api = %api_addr, "function process started");
                Ok(worker)
            }
            Ok(Err(reason)) => {
                worker.stop(Stop::Kill);
                bail!(
                    "function process {pid} failed during init: {reason}{}",
                    worker.output_summary()
                )
            }
            Err(_) => {
                worker.stop(Stop::Kill);
                bail!(
                    "function process {pid} did not finish init within {INIT_TIMEOUT:?} (it never asked for an event){}",
                    worker.output_summary()
                )
            }
        }
    }

    /// Adds a started process to the live set, unless the pool is closing or
    /// the process already exited.
    fn register(&self, worker: &Arc<Worker>) -> bool {
        let mut workers = lock(&self.workers);
        if workers.closing || !worker.is_alive() {
            return false;
        }
        workers.live.insert(worker.id, Arc::clone(worker));
        true
    }

    /// The environment of a Lambda execution environment, then the
    /// function's own variables; the reserved ones cannot be overridden.
    fn function_env(&self, api_addr: SocketAddr, worker_id: u64) -> Vec<(String, String)> {
        let config = &self.config;
        let mut env: Vec<(String, String)> = Vec::new();
        let path =
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned());
        env.push(("PATH".to_owned(), path));
        env.push(("LANG".to_owned(), "en_US.UTF-8".to_owned()));
        env.push(("TZ".to_owned(), ":UTC".to_owned()));
        env.extend(config.env.iter().cloned());
        let task_root = config
            .binary
            .parent()
            .map(|dir| dir.display().to_string())
            .unwrap_or_default();
        let log_stream = format!(
            "{}/[$LATEST]{:016x}{:016x}",
            chrono::Utc::now().format("%Y/%m/%d"),
            std::process::id(),
            worker_id
        );
        let reserved = [
            ("AWS_LAMBDA_RUNTIME_API", api_addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", config.name.clone()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                config.memory_mb.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", config.name),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", log_stream),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_DEFAULT_REGION", self.region.clone()),
            ("LAMBDA_TASK_ROOT", task_root),
            ("_HANDLER", "bootstrap".to_owned()),
        ];
        env.extend(
            reserved
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value)),
        );
        env
    }

    /// Called by a process's supervisor once it has exited.
    fn on_worker_exit(&self, worker_id: u64, pid: u32, reason: &str) {
        let (live_before, closing) = {
            let mut workers = lock(&self.workers);
            let before = workers.live.len();
            workers.live.remove(&worker_id);
            (before, workers.closing)
        };
        lock(&self.idle).retain(|worker| worker.id != worker_id);
        if closing {
            debug!(function = %self.config.name, pid, reason, "function process stopped");
            return;
        }
        let delay = self.replacement_delay();
        warn!(function = %self.config.name, pid, reason, replace_in_ms = delay.as_millis() as u64, "function process exited; replacing it");
        let pool = self.me.clone();
        let closing = self.closing.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = closing.cancelled() => return,
            }
            let Some(pool) = pool.upgrade() else { return };
            // An invocation may have started a process in the meantime.
            if lock(&pool.workers).live.len() >= live_before {
                return;
            }
            let Ok(slot) = pool.slots.clone().try_acquire_owned() else {
                return;
            };
            match pool.start_worker(slot).await {
                Ok(worker) => {
                    info!(function = %pool.config.name, pid = worker.pid, init_ms = worker.init_ms(), "function process replaced");
                    pool.check_in(worker);
                }
                Err(err) if pool.closing.is_cancelled() => {
                    debug!(function = %pool.config.name, "replacement abandoned: {err:#}");
                }
                Err(err) => {
                    error!(function = %pool.config.name, "could not replace the function process (the next invocation will try again): {err:#}");
                }
            }
        });
    }

    fn replacement_delay(&self) -> Duration {
        let mut backoff = lock(&self.backoff);
        let now = Instant::now();
        backoff.delay = match backoff.last_death {
            Some(last) if now.duration_since(last) < CRASH_LOOP_WINDOW => {
                (backoff.delay * 2).clamp(BACKOFF_FIRST, BACKOFF_MAX)
            }
            _ => Duration::ZERO,
        };
        backoff.last_death = Some(now);
        backoff.delay
    }
}

impl Invoke for LambdaPool {
    fn invoke(&self, event: Value) -> InvokeFuture<'_> {
        Box::pin(async move {
            if self.closing.is_cancelled() {
                return Err(shutting_down());
            }
            let Some(pool) = self.me.upgrade() else {
                return Err(shutting_down());
            };
            let event = serde_json::to_vec(&event).map(Bytes::from).map_err(|err| {
                InvokeError::Unavailable(format!("event not serializable: {err}"))
            })?;
            // Its own task: an invocation runs to its end, and its process
            // returns to the pool, even if the caller stops waiting.
            self.tasks
                .spawn(async move { pool.run_invocation(event).await })
                .await
                .unwrap_or_else(|err| {
                    Err(InvokeError::Unavailable(format!(
                        "invocation task failed: {err}"
                    )))
                })
        })
    }
}

impl Drop for LambdaPool {
    /// A pool dropped without [`LambdaPool::shutdown`] still ends its processes.
    fn drop(&mut self) {
        self.closing.cancel();
        let workers = lock(&self.workers);
        for worker in workers.live.values() {
            worker.stop(Stop::Kill);
        }
    }
}

fn shutting_down() -> InvokeError {
    InvokeError::Unavailable("the function pool is shutting down".to_owned())
}

/// One function process and its Runtime API endpoint.
struct Worker {
    id: u64,
    pid: u32,
    api: Arc<RuntimeApi>,
    /// `Some(reason)` once the process has exited.
    exited: watch::Receiver<Option<String>>,
    stop: mpsc::UnboundedSender<Stop>,
    init: OnceLock<Duration>,
    has_invoked: AtomicBool,
    output_tail: Arc<Mutex<VecDeque<String>>>,
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    /// SIGKILL now (timeout, failed init, dropped pool).
    Kill,
    /// SIGTERM, then SIGKILL after [`STOP_GRACE`] (shutdown).
    Terminate,
}

impl Worker {
    fn is_alive(&self) -> bool {
        self.exited.borrow().is_none()
    }

    fn stop(&self, how: Stop) {
        // The supervisor is gone only once the process has been reaped.
        let _ = self.stop.send(how);
    }

    fn init_ms(&self) -> Option<f64> {
        self.init.get().map(|init| init.as_secs_f64() * 1000.0)
    }

    fn exit_reason(&self) -> String {
        self.exited
            .borrow()
            .clone()
            .unwrap_or_else(|| format!("pid {} closed its Runtime API", self.pid))
    }

    /// Waits for the end of init: the first `/next`, an `/init/error`, or an exit.
    async fn until_ready(&self) -> Result<(), String> {
        let mut init = self.api.init.subscribe();
        let mut exited = self.exited.clone();
        tokio::select! {
            state = init.wait_for(|state| !matches!(state, InitState::Starting)) => match state.as_deref() {
                Ok(InitState::Failed(reason)) => Err(format!("it reported an init error: {reason}")),
                Ok(_) => Ok(()),
                Err(_) => Err("its Runtime API closed".to_owned()),
            },
            _ = exited.wait_for(Option::is_some) => Err(self.exit_reason()),
        }
    }

    /// Hands one event to the process and waits for its answer, its exit or
    /// the timeout, whichever comes first.
    async fn invoke(
        &self,
        request_id: &str,
        event: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, InvokeError> {
        let (reply, answer) = oneshot::channel();
        let invocation = Invocation {
            request_id: request_id.to_owned(),
            deadline_ms: epoch_ms(SystemTime::now() + timeout),
            trace_id: trace_id(),
            event,
            reply,
        };
        if self.api.next.try_send(invocation).is_err() {
            return Err(InvokeError::Crashed(self.exit_reason()));
        }
        let mut exited = self.exited.clone();
        tokio::select! {
            answer = answer => answer.unwrap_or_else(|_| Err(InvokeError::Crashed(self.exit_reason()))),
            _ = exited.wait_for(Option::is_some) => Err(InvokeError::Crashed(self.exit_reason())),
            () = tokio::time::sleep(timeout) => {
                self.stop(Stop::Kill);
                Err(InvokeError::Timeout(timeout))
            }
        }
    }

    /// The last lines the process printed, for an error message.
    fn output_summary(&self) -> String {
        let tail = lock(&self.output_tail);
        if tail.is_empty() {
            return " (it printed nothing)".to_owned();
        }
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        format!("; its last output:\n    {}", lines.join("\n    "))
    }
}

/// What a supervisor owns: the process, and everything released when it exits.
struct Supervised {
    child: Child,
    pid: u32,
    stop: mpsc::UnboundedReceiver<Stop>,
    exited: watch::Sender<Option<String>>,
    api: Arc<RuntimeApi>,
    forwarders: Vec<JoinHandle<()>>,
    slot: OwnedSemaphorePermit,
    pool: Weak<LambdaPool>,
    worker_id: u64,
}

/// Waits for the process to exit, delivering stop requests meanwhile; then
/// fails its invocation, closes its Runtime API, frees its slot and tells
/// the pool, which replaces it.
async fn supervise(mut process: Supervised) {
    let pid = process.pid;
    let mut force_kill_at: Option<tokio::time::Instant> = None;
    let mut stop_open = true;
    let status = loop {
        let force_kill = async {
            match force_kill_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = process.child.wait() => break status,
            stop = process.stop.recv(), if stop_open => match stop {
                Some(Stop::Kill) => signal_group(pid, Signal::Kill),
                Some(Stop::Terminate) => {
                    signal_group(pid, Signal::Term);
                    force_kill_at.get_or_insert(tokio::time::Instant::now() + STOP_GRACE);
                }
                None => {
                    // The worker is gone without stopping its process.
                    stop_open = false;
                    signal_group(pid, Signal::Kill);
                }
            },
            () = force_kill => {
                force_kill_at = None;
                signal_group(pid, Signal::Kill);
            }
        }
    };
    let reason = match status {
        Ok(status) => format!("pid {pid} {}", describe_exit(status)),
        Err(err) => format!("pid {pid} could not be waited on: {err}"),
    };
    // Let the last lines it printed through before reporting the exit.
    for forwarder in process.forwarders {
        let _ = tokio::time::timeout(Duration::from_millis(500), forwarder).await;
    }
    let _ = process.exited.send(Some(reason.clone()));
    process
        .api
        .fail_in_flight(InvokeError::Crashed(reason.clone()));
    process.api.close();
    drop(process.slot);
    if let Some(pool) = process.pool.upgrade() {
        pool.on_worker_exit(process.worker_id, pid, &reason);
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended ({status})"),
    }
}

#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

/// Signals the process group the function runs in (the function and any
/// process it started). Only called before the process is reaped, so the
/// group id cannot have been reused.
fn signal_group(pid: u32, signal: Signal) {
    let signal = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Makes the kernel kill the function process when devstack dies, even by
/// SIGKILL, so no function outlives the stack. The signal fires when the
/// thread that spawned the process ends: processes are spawned from the
/// runtime's threads, which live as long as the stack.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (prctl, getppid), without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before prctl took effect.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// Copies a process's output to devstack's stderr, each line prefixed with
/// the function name and pid, keeping the last lines for error messages.
async fn forward_output(
    stream: impl AsyncRead + Unpin,
    prefix: String,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                let _ = writeln!(std::io::stderr().lock(), "{prefix} {text}");
                let mut tail = lock(&tail);
                if tail.len() == OUTPUT_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(text.to_owned());
            }
        }
    }
}

/// The peak resident memory of a process (`VmHWM`), as Lambda's "Max Memory Used".
fn peak_rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.div_ceil(1024))
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// An X-Ray trace header: `Root=1-{epoch seconds hex}-{96 random bits}`.
fn trace_id() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let root = Uuid::new_v4().simple().to_string();
    let parent = Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{seconds:08x}-{};Parent={};Sampled=0",
        &root[..24],
        &parent[..16]
    )
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// The Runtime API of one process.

/// The Runtime API endpoint of one function process.
struct RuntimeApi {
    arn: String,
    next: mpsc::Sender<Invocation>,
    next_rx: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    in_flight: Mutex<Option<InFlight>>,
    init: watch::Sender<InitState>,
    closed: CancellationToken,
}

/// An event waiting for the process's next `/next`.
struct Invocation {
    request_id: String,
    deadline_ms: u64,
    trace_id: String,
    event: Bytes,
    reply: oneshot::Sender<Result<Bytes, InvokeError>>,
}

/// The event the process is working on.
struct InFlight {
    request_id: String,
    reply: oneshot::Sender<Result<Bytes, InvokeError>>,
}

enum InitState {
    Starting,
    Ready,
    Failed(String),
}

impl RuntimeApi {
    fn new(arn: String) -> Self {
        let (next, next_rx) = mpsc::channel(1);
        RuntimeApi {
            arn,
            next,
            next_rx: tokio::sync::Mutex::new(next_rx),
            in_flight: Mutex::new(None),
            init: watch::Sender::new(InitState::Starting),
            closed: CancellationToken::new(),
        }
    }

    fn close(&self) {
        self.closed.cancel();
    }

    /// Answers the invocation in flight, if its request id is `request_id`.
    fn complete(&self, request_id: &str, result: Result<Bytes, InvokeError>) -> bool {
        let mut in_flight = lock(&self.in_flight);
        match in_flight.take() {
            Some(flight) if flight.request_id == request_id => {
                let _ = flight.reply.send(result);
                true
            }
            other => {
                *in_flight = other;
                false
            }
        }
    }

    fn fail_in_flight(&self, error: InvokeError) {
        if let Some(flight) = lock(&self.in_flight).take() {
            let _ = flight.reply.send(Err(error));
        }
    }
}

/// Serves one process's Runtime API until it is closed.
fn serve_runtime_api(listener: tokio::net::TcpListener, api: Arc<RuntimeApi>) {
    let closed = api.closed.clone();
    let router = Router::new()
        .route(
            &format!("{RUNTIME_API_PREFIX}/invocation/next"),
            get(next_invocation),
        )
        .route(
            &format!("{RUNTIME_API_PREFIX}/invocation/{{request_id}}/response"),
            post(invocation_response),
        )
        .route(
            &format!("{RUNTIME_API_PREFIX}/invocation/{{request_id}}/error"),
            post(invocation_error),
        )
        .route(
            &format!("{RUNTIME_API_PREFIX}/init/error"),
            post(init_error),
        )
        .layer(DefaultBodyLimit::max(MAX_PAYLOAD_BYTES))
        .with_state(api);
    tokio::spawn(async move {
        tokio::select! {
            served = axum::serve(listener, router) => {
                if let Err(err) = served {
                    warn!("Runtime API endpoint failed: {err}");
                }
            }
            () = closed.cancelled() => {}
        }
    });
}

/// `GET /runtime/invocation/next`: blocks until there is an event.
async fn next_invocation(State(api): State<Arc<RuntimeApi>>) -> Response {
    api.init.send_if_modified(|state| {
        let starting = matches!(state, InitState::Starting);
        if starting {
            *state = InitState::Ready;
        }
        starting
    });
    let invocation = tokio::select! {
        invocation = async { api.next_rx.lock().await.recv().await } => invocation,
        () = api.closed.cancelled() => None,
    };
    let Some(invocation) = invocation else {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "the execution environment is shutting down",
        );
    };
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Lambda-Runtime-Aws-Request-Id", &invocation.request_id)
        .header("Lambda-Runtime-Deadline-Ms", invocation.deadline_ms)
        .header("Lambda-Runtime-Invoked-Function-Arn", &api.arn)
        .header("Lambda-Runtime-Trace-Id", &invocation.trace_id)
        .body(axum::body::Body::from(invocation.event));
    match response {
        Ok(response) => {
            let previous = lock(&api.in_flight).replace(InFlight {
                request_id: invocation.request_id,
                reply: invocation.reply,
            });
            if let Some(previous) = previous {
                let _ = previous.reply.send(Err(InvokeError::Function {
                    error_type: "Runtime.Unknown".to_owned(),
                    message: "the runtime asked for the next event without answering this one"
                        .to_owned(),
                }));
            }
            response
        }
        Err(err) => {
            let _ = invocation.reply.send(Err(InvokeError::Unavailable(format!(
                "the event could not be handed to the runtime: {err}"
            ))));
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "bad invocation headers",
            )
        }
    }
}

/// `POST /runtime/invocation/{id}/response`
async fn invocation_response(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(request_id): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(body) => {
            if api.complete(&request_id, Ok(body)) {
                accepted()
            } else {
                unknown_request_id()
            }
        }
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!(
                "Response payload size exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes)."
            );
            let error = InvokeError::Function {
                error_type: "Function.ResponseSizeTooLarge".to_owned(),
                message: message.clone(),
            };
            if !api.complete(&request_id, Err(error)) {
                return unknown_request_id();
            }
            api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &message,
            )
        }
        Err(rejection) => api_error(rejection.status(), "InvalidRequest", &rejection.body_text()),
    }
}

/// `POST /runtime/invocation/{id}/error`
async fn invocation_error(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(request_id): UrlPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = body.unwrap_or_default();
    let (error_type, message) = error_report(&headers, &body);
    if api.complete(
        &request_id,
        Err(InvokeError::Function {
            error_type,
            message,
        }),
    ) {
        accepted()
    } else {
        unknown_request_id()
    }
}

/// `POST /runtime/init/error`
async fn init_error(
    State(api): State<Arc<RuntimeApi>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = body.unwrap_or_default();
    let (error_type, message) = error_report(&headers, &body);
    let reported = api.init.send_if_modified(|state| {
        let starting = matches!(state, InitState::Starting);
        if starting {
            *state = InitState::Failed(format!("{error_type}: {message}"));
        }
        starting
    });
    if reported {
        accepted()
    } else {
        api_error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "init is over: report errors of an invocation on its /error",
        )
    }
}

/// The error type and message of an `/error` report: the body's `errorType`
/// and `errorMessage`, else the `Lambda-Runtime-Function-Error-Type` header.
fn error_report(headers: &HeaderMap, body: &[u8]) -> (String, String) {
    let report: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error_type = report
        .get("errorType")
        .and_then(Value::as_str)
        .or_else(|| {
            headers
                .get("Lambda-Runtime-Function-Error-Type")
                .and_then(|value| value.to_str().ok())
        })
        .unwrap_or("Unhandled")
        .to_owned();
    let message = report
        .get("errorMessage")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    (error_type, message)
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({ "status": "OK" }))).into_response()
}

fn unknown_request_id() -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestID",
        "no invocation with this request id is in flight",
    )
}

fn api_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "errorType": error_type, "errorMessage": message })),
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// Building the function.

/// Builds the host binary of the function with cargo (`$CARGO`, else
/// `cargo`), in the profile devstack itself was built with, and returns its
/// path (`target/<profile>/websocket-handler`).
pub fn build_function_binary() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("devstack's manifest directory has no parent (the workspace root)")?;
    let release = !cfg!(debug_assertions);
    let mut command = std::process::Command::new(&cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["--package", FUNCTION_PACKAGE, "--bin", FUNCTION_BINARY])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if release {
        command.arg("--release");
    }
    let profile = if release { "release" } else { "dev" };
    eprintln!("devstack: building the function ({FUNCTION_PACKAGE}, {profile} profile)…");
    let output = command.output().with_context(|| {
        format!(
            "could not run `{} build` to build the function {FUNCTION_PACKAGE}: is cargo installed and on PATH?",
            cargo.to_string_lossy()
        )
    })?;
    if !output.status.success() {
        bail!(
            "building the function {FUNCTION_PACKAGE} failed ({}); cargo printed the errors above (`cargo build -p {FUNCTION_PACKAGE}` shows them again)",
            output.status
        );
    }
    function_executable(&output.stdout).with_context(|| {
        format!("`cargo build` succeeded but reported no `{FUNCTION_BINARY}` executable")
    })
}

/// The path of the function's executable, from `cargo build --message-format=json`.
fn function_executable(messages: &[u8]) -> Option<PathBuf> {
    messages
        .split(|byte| *byte == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| message["target"]["name"] == FUNCTION_BINARY)
        .filter(|message| {
            message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"))
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    //! The pool's mechanics, with a small Python function speaking the
    //! Runtime API (`tests/fixtures/runtime-api-function.py`: crash, timeout
    //! and init failures on demand). The real
    //! function under this Runtime API is tested in `tests/lambda.rs`.

    use super::*;

    /// Every wait in these tests is bounded by this.
    const WAIT: Duration = Duration::from_secs(30);

    /// A function speaking the Runtime API that crashes, hangs or fails on
    /// demand: it tests the pool, not the function.
    fn script_function() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runtime-api-function.py")
    }

    fn config(max_concurrency: usize, timeout: Duration) -> FunctionConfig {
        FunctionConfig {
            binary: script_function(),
            name: "test-function".to_owned(),
            env: vec![
                ("AWS_REGION".to_owned(), "eu-west-1".to_owned()),
                ("TEST_SETTING".to_owned(), "from the program".to_owned()),
            ],
            memory_mb: 256,
            timeout,
            max_concurrency,
        }
    }

    async fn start(config: FunctionConfig) -> Arc<LambdaPool> {
        tokio::time::timeout(WAIT, LambdaPool::start(config))
            .await
            .expect("the pool started in time")
            .expect("the pool started")
    }

    /// Starts `count` invocations that sleep for a minute, each in its own task.
    fn sleep_in_background(
        pool: &Arc<LambdaPool>,
        count: usize,
    ) -> Vec<tokio::task::JoinHandle<Result<Value, InvokeError>>> {
        (0..count)
            .map(|_| {
                let pool = Arc::clone(pool);
                tokio::spawn(async move {
                    pool.invoke(json!({ "action": "sleep", "seconds": 60 }))
                        .await
                })
            })
            .collect()
    }

    async fn invoke(pool: &LambdaPool, event: Value) -> Result<Value, InvokeError> {
        tokio::time::timeout(WAIT, pool.invoke(event))
            .await
            .expect("the invocation ended in time")
    }

    async fn shutdown(pool: &LambdaPool) {
        tokio::time::timeout(WAIT, pool.shutdown())
            .await
            .expect("the pool shut down in time");
    }

    fn pid_of(response: &Value) -> u32 {
        let pid = response["pid"]
            .as_u64()
            .expect("the response names its pid");
        u32::try_from(pid).expect("a pid fits u32")
    }

    fn process_exists(pid: u32) -> bool {
        // SAFETY: kill with signal 0 only checks that the process exists.
        unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
    }

    fn kill(pid: u32) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        let killed = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        assert_eq!(killed, 0, "kill {pid}");
    }

    /// Polls until `condition` holds, failing the test after [`WAIT`].
    async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn invocation_returns_the_response_with_the_runtime_api_context() {
        let pool = start(config(2, Duration::from_secs(20))).await;
        let before = epoch_ms(SystemTime::now());
        let response = invoke(&pool, json!({ "action": "echo", "n": 1 }))
            .await
            .expect("the function answered");

        assert_eq!(response["event"], json!({ "action": "echo", "n": 1 }));
        let context = &response["context"];
        assert!(Uuid::parse_str(context["requestId"].as_str().unwrap_or_default()).is_ok());
        let deadline = context["deadlineMs"].as_u64().unwrap_or_default();
        assert!(
            deadline >= before + 19_000 && deadline <= before + 21_000 + WAIT.as_millis() as u64
        );
        assert_eq!(
            context["arn"],
            "arn:aws:lambda:eu-west-1:000000000000:function:test-function"
        );
        assert!(
            context["traceId"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Root=1-")
        );

        let env = &response["env"];
        assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "test-function");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
        assert_eq!(
            env["AWS_LAMBDA_LOG_GROUP_NAME"],
            "/aws/lambda/test-function"
        );
        assert!(
            env["AWS_LAMBDA_LOG_STREAM_NAME"]
                .as_str()
                .unwrap_or_default()
                .contains("[$LATEST]")
        );
        assert!(
            env["AWS_LAMBDA_RUNTIME_API"]
                .as_str()
                .unwrap_or_default()
                .starts_with("127.0.0.1:")
        );
        assert_eq!(env["AWS_REGION"], "eu-west-1");
        assert_eq!(env["TEST_SETTING"], "from the program");
        assert_eq!(pool.process_ids(), vec![pid_of(&response)]);

        // A warm process serves the next invocation.
        let again = invoke(&pool, json!({ "action": "echo" }))
            .await
            .expect("second answer");
        assert_eq!(pid_of(&again), pid_of(&response));
        assert_ne!(again["context"]["requestId"], context["requestId"]);
        shutdown(&pool).await;
    }

    #[tokio::test]
    async fn function_error_is_reported_and_the_process_stays() {
        let pool = start(config(1, Duration::from_secs(20))).await;
        let pids = pool.process_ids();
        match invoke(&pool, json!({ "action": "error" })).await {
            Err(InvokeError::Function {
                error_type,
                message,
            }) => {
                assert_eq!(error_type, "TestError");
                assert_eq!(message, "failed on purpose");
            }
            other => panic!("expected a function error, got {other:?}"),
        }
        let response = invoke(&pool, json!({ "action": "echo" }))
            .await
            .expect("answer after the error");
        assert_eq!(vec![pid_of(&response)], pids);
        shutdown(&pool).await;
    }

    #[tokio::test]
    async fn a_response_that_is_not_json_is_a_function_error() {
        let pool = start(config(1, Duration::from_secs(20))).await;
        match invoke(&pool, json!({ "action": "not json" })).await {
            Err(InvokeError::Function { error_type, .. }) => {
                assert_eq!(error_type, "Runtime.InvalidResponse")
            }
            other => panic!("expected a function error, got {other:?}"),
        }
        invoke(&pool, json!({ "action": "echo" }))
            .await
            .expect("answer after the bad response");
        shutdown(&pool).await;
    }

    #[tokio::test]
    async fn a_process_killed_mid_invocation_fails_that_invocation_and_is_replaced() {
        let pool = start(config(1, Duration::from_secs(60))).await;
        let [pid] = pool.process_ids()[..] else {
            panic!("one warm process expected")
        };
        let busy = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                pool.invoke(json!({ "action": "sleep", "seconds": 60 }))
                    .await
            })
        };
        // Let the process take the event before it is killed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        kill(pid);
        let outcome = tokio::time::timeout(WAIT, busy)
            .await
            .expect("the invocation ended in time")
            .expect("the invocation task ran");
        match outcome {
            Err(InvokeError::Crashed(reason)) => {
                assert!(reason.contains(&format!("pid {pid}")), "{reason}")
            }
            other => panic!("expected a crash, got {other:?}"),
        }
        eventually("the process is replaced", || {
            let pids = pool.process_ids();
            pids.len() == 1 && !pids.contains(&pid)
        })
        .await;
        let response = invoke(&pool, json!({ "action": "echo" }))
            .await
            .expect("answer after the crash");
        assert_ne!(pid_of(&response), pid);
        shutdown(&pool).await;
    }

    #[tokio::test]
    async fn a_function_that_exits_mid_invocation_is_reported_as_crashed() {
        let pool = start(config(1, Duration::from_secs(20))).await;
        match invoke(&pool, json!({ "action": "crash" })).await {
            Err(InvokeError::Crashed(reason)) => {
                assert!(reason.contains("exited with status 3"), "{reason}")
            }
            other => panic!("expected a crash, got {other:?}"),
        }
        invoke(&pool, json!({ "action": "echo" }))
            .await
            .expect("answer after the crash");
        shutdown(&pool).await;
    }

    #[tokio::test]
    async fn an_invocation_past_the_timeout_kills_and_replaces_the_process() {
        let timeout = Duration::from_millis(700);
        let pool = start(config(1, timeout)).await;
        let [pid] = pool.process_ids()[..] else {
            panic!("one warm process expected")
        };
        match invoke(&pool, json!({ "action": "sleep", "seconds": 60 })).await {
            Err(InvokeError::Timeout(after)) => assert_eq!(after, timeout),
            other => panic!("expected a timeout, got {other:?}"),
        }
        eventually("the timed-out process is gone", || !process_exists(pid)).await;
        let response = invoke(&pool, json!({ "action": "echo" }))
            .await
            .expect("answer after the timeout");
        assert_ne!(pid_of(&response), pid);
        eventually("one process is left", || pool.process_ids().len() == 1).await;
        shutdown(&pool).await;
    }

    #[tokio::test]
    async fn an_idle_process_that_dies_is_replaced() {
        let pool = start(config(1, Duration::from_secs(20))).await;
        let [pid] = pool.process_ids()[..] else {
            panic!("one warm process expected")
        };
        kill(pid);
        eventually("the idle process is replaced", || {
            let pids = pool.process_ids();
            pids.len() == 1 && !pids.contains(&pid)
        })
        .await;
        let replacement = pool.process_ids();
        let response = invoke(&pool, json!({ "action": "echo" }))
            .await
            .expect("answer after the death");
        assert_eq!(vec![pid_of(&response)], replacement);
        shutdown(&pool).await;
    }

    #[tokio::test]
    async fn concurrent_invocations_use_up_to_max_concurrency_processes_then_queue() {
        let pool = start(config(3, Duration::from_secs(20))).await;
        let started = Instant::now();
        let invocations: Vec<_> = (0..7)
            .map(|_| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move {
                    pool.invoke(json!({ "action": "sleep", "seconds": 0.5 }))
                        .await
                })
            })
            .collect();
        let mut pids = std::collections::BTreeSet::new();
        for invocation in invocations {
            let response = tokio::time::timeout(WAIT, invocation)
                .await
                .expect("the invocation ended in time")
                .expect("the invocation task ran")
                .expect("the function answered");
            pids.insert(pid_of(&response));
        }
        // Seven half-second invocations on three processes take three rounds.
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(pids.len(), 3, "{pids:?}");
        assert_eq!(pool.process_ids(), pids.iter().copied().collect::<Vec<_>>());

        shutdown(&pool).await;
        assert!(pool.process_ids().is_empty());
        for pid in pids {
            assert!(!process_exists(pid), "process {pid} outlived the shutdown");
        }
        match invoke(&pool, json!({ "action": "echo" })).await {
            Err(InvokeError::Unavailable(_)) => {}
            other => panic!("expected unavailable after shutdown, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn shutdown_ends_busy_processes_too() {
        let pool = start(config(2, Duration::from_secs(60))).await;
        let busy = sleep_in_background(&pool, 2);
        eventually("two processes run", || pool.process_ids().len() == 2).await;
        let pids = pool.process_ids();
        tokio::time::sleep(Duration::from_millis(300)).await;
        shutdown(&pool).await;
        for pid in pids {
            assert!(!process_exists(pid), "process {pid} outlived the shutdown");
        }
        for invocation in busy {
            let outcome = tokio::time::timeout(WAIT, invocation)
                .await
                .expect("the invocation ended in time")
                .expect("the invocation task ran");
            assert!(outcome.is_err(), "{outcome:?}");
        }
    }

    #[tokio::test]
    async fn dropping_the_pool_kills_its_processes() {
        let pool = start(config(1, Duration::from_secs(20))).await;
        let pids = pool.process_ids();
        drop(pool);
        eventually("the processes are gone", || {
            pids.iter().all(|pid| !process_exists(*pid))
        })
        .await;
    }

    /// Set in the copy of this test binary that plays a devstack to be SIGKILLed.
    const ORPHAN_PARENT: &str = "DEVSTACK_LAMBDA_TEST_ORPHAN_PARENT";

    #[tokio::test]
    async fn function_processes_die_with_a_sigkilled_parent() {
        if std::env::var_os(ORPHAN_PARENT).is_some() {
            // The parent: start two processes, name them, wait to be killed.
            let pool = start(config(2, Duration::from_secs(60))).await;
            let _busy = sleep_in_background(&pool, 2);
            eventually("two processes run", || pool.process_ids().len() == 2).await;
            let pids: Vec<String> = pool.process_ids().iter().map(u32::to_string).collect();
            println!("FUNCTION-PIDS {}", pids.join(" "));
            tokio::time::sleep(WAIT).await;
            return;
        }
        use std::io::BufRead as _;
        let mut parent =
            std::process::Command::new(std::env::current_exe().expect("the test binary's path"))
                .args([
                    "--exact",
                    "lambda::tests::function_processes_die_with_a_sigkilled_parent",
                    "--nocapture",
                ])
                .env(ORPHAN_PARENT, "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the parent");
        let stdout = parent.stdout.take().expect("the parent's stdout");
        let (pids_tx, pids_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(pids) = line.strip_prefix("FUNCTION-PIDS ") {
                    let pids: Vec<u32> =
                        pids.split(' ').filter_map(|pid| pid.parse().ok()).collect();
                    let _ = pids_tx.send(pids);
                }
            }
        });
        let pids = pids_rx
            .recv_timeout(WAIT)
            .expect("the parent named its function processes");
        assert_eq!(pids.len(), 2, "{pids:?}");
        assert!(pids.iter().all(|pid| process_exists(*pid)));
        parent.kill().expect("SIGKILL the parent");
        parent.wait().expect("reap the parent");
        // Orphans are reparented and reaped by init (or a subreaper), so a
        // killed one leaves no process behind, only possibly a brief zombie.
        eventually("the function processes died with their parent", || {
            pids.iter()
                .all(|pid| !process_exists(*pid) || is_zombie(*pid))
        })
        .await;
    }

    fn is_zombie(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    }

    async fn start_error(config: FunctionConfig) -> String {
        match tokio::time::timeout(WAIT, LambdaPool::start(config)).await {
            Ok(Ok(_)) => panic!("the pool should not start"),
            Ok(Err(err)) => format!("{err:#}"),
            Err(_) => panic!("the start did not end in time"),
        }
    }

    #[tokio::test]
    async fn a_relative_binary_path_runs_from_the_task_root() {
        let mut config = config(1, Duration::from_secs(20));
        // Tests run in the package's directory.
        config.binary = PathBuf::from("tests/fixtures/runtime-api-function.py");
        let pool = start(config).await;
        let response = invoke(&pool, json!({ "action": "echo" }))
            .await
            .expect("the function answered");
        assert_eq!(
            response["env"]["LAMBDA_TASK_ROOT"],
            script_function()
                .parent()
                .map(|dir| dir.display().to_string())
                .unwrap_or_default()
        );
        shutdown(&pool).await;
    }

    #[tokio::test]
    async fn a_missing_binary_is_a_clear_start_error() {
        let mut config = config(1, Duration::from_secs(5));
        config.binary = PathBuf::from("/nonexistent/websocket-handler");
        let error = start_error(config).await;
        assert!(error.contains("/nonexistent/websocket-handler"), "{error}");
        assert!(error.contains("not found"), "{error}");
    }

    #[tokio::test]
    async fn an_init_error_is_a_clear_start_error() {
        let mut config = config(1, Duration::from_secs(5));
        config
            .env
            .push(("TEST_INIT".to_owned(), "error".to_owned()));
        let error = start_error(config).await;
        assert!(
            error.contains("Runtime.TestInitError: init failed on purpose"),
            "{error}"
        );
        assert!(error.contains("test-function"), "{error}");
    }

    #[tokio::test]
    async fn an_exit_during_init_is_a_clear_start_error_with_the_output() {
        let mut config = config(1, Duration::from_secs(5));
        config.env.push(("TEST_INIT".to_owned(), "exit".to_owned()));
        let error = start_error(config).await;
        assert!(error.contains("exited with status 7"), "{error}");
        assert!(error.contains("giving up during init"), "{error}");
    }

    #[tokio::test]
    async fn a_function_that_never_asks_for_an_event_fails_init_after_lambdas_limit() {
        let mut config = config(1, Duration::from_secs(5));
        config.env.push(("TEST_INIT".to_owned(), "hang".to_owned()));
        let started = Instant::now();
        let error = start_error(config).await;
        assert!(started.elapsed() >= INIT_TIMEOUT, "{:?}", started.elapsed());
        assert!(error.contains("did not finish init"), "{error}");
        assert!(error.contains("function starting"), "{error}");
    }

    #[test]
    fn the_executable_is_read_from_cargo_messages() {
        let messages = br#"{"reason":"compiler-artifact","target":{"name":"protocol","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"websocket-handler","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"websocket-handler","kind":["bin"]},"executable":"/w/target/debug/websocket-handler"}
{"reason":"build-finished","success":true}
"#;
        assert_eq!(
            function_executable(messages),
            Some(PathBuf::from("/w/target/debug/websocket-handler"))
        );
        assert_eq!(
            function_executable(b"{\"reason\":\"build-finished\"}\nnot json\n"),
            None
        );
    }

    #[test]
    fn error_reports_prefer_the_body_then_the_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Lambda-Runtime-Function-Error-Type",
            "Unhandled".parse().expect("header value"),
        );
        assert_eq!(
            error_report(&headers, br#"{"errorType":"Oops","errorMessage":"bad"}"#),
            ("Oops".to_owned(), "bad".to_owned())
        );
        assert_eq!(
            error_report(&headers, b"garbage"),
            ("Unhandled".to_owned(), String::new())
        );
        assert_eq!(
            error_report(&HeaderMap::new(), b""),
            ("Unhandled".to_owned(), String::new())
        );
    }
}
