//! One function process: starting it behind its own Runtime API endpoint,
//! its Lambda environment, waiting for its init, and handing it an event.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use tokio::process::{Child, Command};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};
use tracing::debug;

use super::invoke::InvokeError;
use super::process::{Supervised, forward_outputs, supervise};
use super::runtime_api::{
    InitState, Invocation, RuntimeApi, epoch_ms, serve_runtime_api, trace_id,
};
use super::swap::FunctionVersion;
use super::{FunctionConfig, INIT_TIMEOUT, LambdaPool};
use crate::console::StackEvent;

/// One function process and its Runtime API endpoint.
pub(super) struct Worker {
    pub(super) id: u64,
    pub(super) pid: u32,
    pub(super) api: Arc<RuntimeApi>,
    /// `Some(reason)` once the process has exited.
    pub(super) exited: watch::Receiver<Option<String>>,
    pub(super) stop: mpsc::UnboundedSender<Stop>,
    pub(super) init: OnceLock<Duration>,
    pub(super) has_invoked: AtomicBool,
    pub(super) output_tail: Arc<Mutex<VecDeque<String>>>,
    /// The [`FunctionVersion`] it runs, and that version's timeout.
    pub(super) version: u64,
    pub(super) timeout: Duration,
    /// Stopped because a newer version serves: not replaced when it exits.
    pub(super) retired: AtomicBool,
    /// SIGSTOPped between invocations ([`super::freeze`]).
    pub(super) frozen: AtomicBool,
    /// How many times it was frozen.
    pub(super) freezes: AtomicU64,
    /// Its `/proc/<pid>/status`, read after every invocation.
    status: Option<local_process::ProcStatus>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Stop {
    /// SIGKILL now (timeout, failed init, dropped pool).
    Kill,
    /// SIGTERM, then SIGKILL after [`STOP_GRACE`] (shutdown).
    Terminate,
}

impl Worker {
    pub(super) fn is_alive(&self) -> bool {
        self.exited.borrow().is_none()
    }

    /// Stops a process of an old version (SIGTERM, then SIGKILL).
    pub(super) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        self.stop(Stop::Terminate);
    }

    pub(super) fn stop(&self, how: Stop) {
        // The supervisor is gone only once the process has been reaped.
        let _ = self.stop.send(how);
    }

    /// Its peak resident memory (`VmHWM`) in MiB, as Lambda's "Max Memory Used".
    pub(super) fn peak_rss_mib(&self) -> Option<u64> {
        let bytes = self.status.as_ref()?.peak_rss_bytes().ok()?;
        Some(bytes.div_ceil(1024 * 1024))
    }

    pub(super) fn init_ms(&self) -> Option<f64> {
        self.init.get().map(|init| init.as_secs_f64() * 1000.0)
    }

    pub(super) fn exit_reason(&self) -> String {
        self.exited
            .borrow()
            .clone()
            .unwrap_or_else(|| format!("pid {} closed its Runtime API", self.pid))
    }

    /// Waits for the end of init: the first `/next`, an `/init/error`, or an exit.
    pub(super) async fn until_ready(&self) -> Result<(), InitFailure> {
        let mut init = self.api.init.subscribe();
        let mut exited = self.exited.clone();
        tokio::select! {
            state = init.wait_for(|state| !matches!(state, InitState::Starting)) => match state.as_deref() {
                Ok(InitState::Failed(reason)) => Err(InitFailure::Reported(reason.clone())),
                Ok(_) => Ok(()),
                Err(_) => Err(InitFailure::RuntimeApiClosed),
            },
            _ = exited.wait_for(Option::is_some) => Err(InitFailure::Exited(self.exit_reason())),
        }
    }

    /// Hands one event to the process and waits for its answer, its exit or
    /// the timeout, whichever comes first.
    pub(super) async fn invoke(
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
    pub(super) fn output_summary(&self) -> String {
        let tail = self.output_tail.lock();
        if tail.is_empty() {
            return " (it printed nothing)".to_owned();
        }
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        format!("; its last output:\n    {}", lines.join("\n    "))
    }
}

/// Why a function process could not be started: the `Display` of each is the
/// whole message, and the io errors are kept as sources for `{:#}`.
#[derive(Debug, thiserror::Error)]
pub(super) enum StartError {
    #[error("binding a loopback port for the Runtime API")]
    BindRuntimeApi(#[source] std::io::Error),
    #[error("reading the Runtime API's port")]
    RuntimeApiPort(#[source] std::io::Error),
    #[error("running function binary {}", binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the function process exited before it could be watched")]
    ExitedBeforeWatched,
    #[error("the pool is shutting down")]
    ShuttingDown,
    #[error("function process {pid} failed during init: {reason}{output}")]
    InitFailed {
        pid: u32,
        reason: InitFailure,
        /// [`Worker::output_summary`].
        output: String,
    },
    #[error(
        "function process {pid} did not finish init within {timeout:?} (it never asked for an event){output}"
    )]
    InitTimeout {
        pid: u32,
        timeout: Duration,
        /// [`Worker::output_summary`].
        output: String,
    },
}

/// How a function process's init ended other than with its first `/next`.
#[derive(Debug, thiserror::Error)]
pub(super) enum InitFailure {
    #[error("it reported an init error: {0}")]
    Reported(String),
    #[error("its Runtime API closed")]
    RuntimeApiClosed,
    /// [`Worker::exit_reason`].
    #[error("{0}")]
    Exited(String),
}

impl LambdaPool {
    /// Spawns a function process behind a new Runtime API endpoint and waits
    /// for its init to finish (its first `/next`). `slot` is held until the
    /// process exits.
    pub(super) async fn start_worker(
        &self,
        slot: OwnedSemaphorePermit,
    ) -> anyhow::Result<Arc<Worker>> {
        self.start_worker_of(self.current_version(), slot)
            .await
            .map_err(anyhow::Error::from)
    }

    /// [`LambdaPool::start_worker`] with a given version's configuration.
    pub(super) async fn start_worker_of(
        &self,
        version: Arc<FunctionVersion>,
        slot: OwnedSemaphorePermit,
    ) -> Result<Arc<Worker>, StartError> {
        let spawned = Instant::now();
        let (api, api_addr) = self.open_runtime_api().await?;
        let id = self.next_worker_id.fetch_add(1, Ordering::Relaxed);
        let (child, pid) = match self.spawn_function(&version.config, api_addr, id) {
            Ok(process) => process,
            Err(err) => {
                api.close();
                return Err(err);
            }
        };
        let worker = self.supervise_worker(&version, child, pid, api, id, slot)?;
        self.wait_for_init(worker, spawned, api_addr).await
    }

    /// A Runtime API endpoint on a fresh loopback port, already serving.
    async fn open_runtime_api(&self) -> Result<(Arc<RuntimeApi>, SocketAddr), StartError> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(StartError::BindRuntimeApi)?;
        let api_addr = listener.local_addr().map_err(StartError::RuntimeApiPort)?;
        let api = Arc::new(RuntimeApi::new(self.arn.clone()));
        serve_runtime_api(listener, Arc::clone(&api));
        Ok((api, api_addr))
    }

    /// Spawns the function binary with its Lambda environment, in its own
    /// process group, dying with devstack; returns the child and its pid.
    fn spawn_function(
        &self,
        config: &FunctionConfig,
        api_addr: SocketAddr,
        worker_id: u64,
    ) -> Result<(Child, u32), StartError> {
        let mut command = Command::new(&config.binary);
        command
            .env_clear()
            .envs(self.function_env(config, api_addr, worker_id))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C in the terminal reaches devstack
            // only, which then stops the functions in order.
            .process_group(0);
        if let Some(dir) = config.binary.parent().filter(|dir| dir.is_dir()) {
            command.current_dir(dir);
        }
        // No function outlives the stack, even a SIGKILLed one: processes are
        // spawned from the runtime's threads, which live as long as the stack.
        local_process::die_with_parent(command.as_std_mut());
        let child = command.spawn().map_err(|source| StartError::Spawn {
            binary: config.binary.clone(),
            source,
        })?;
        let pid = child.id().ok_or(StartError::ExitedBeforeWatched)?;
        Ok((child, pid))
    }

    /// Hands the process to its supervisor (output forwarding, stop
    /// requests, reaping) and registers it with the pool.
    fn supervise_worker(
        &self,
        version: &FunctionVersion,
        mut child: Child,
        pid: u32,
        api: Arc<RuntimeApi>,
        id: u64,
        slot: OwnedSemaphorePermit,
    ) -> Result<Arc<Worker>, StartError> {
        let prefix = format!("[{} {pid}]", self.config.name);
        let (output_tail, forwarders) = forward_outputs(&mut child, prefix);
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
            version: version.number,
            timeout: version.config.timeout,
            retired: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            freezes: AtomicU64::new(0),
            status: local_process::ProcStatus::open(pid)
                .inspect_err(|error| debug!(pid, %error, "no memory figures for this process"))
                .ok(),
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
            return Err(StartError::ShuttingDown);
        }
        Ok(worker)
    }

    /// Waits up to [`INIT_TIMEOUT`] for the process's init; a process that
    /// fails it or does not finish in time is killed.
    async fn wait_for_init(
        &self,
        worker: Arc<Worker>,
        spawned: Instant,
        api_addr: SocketAddr,
    ) -> Result<Arc<Worker>, StartError> {
        let pid = worker.pid;
        match tokio::time::timeout(INIT_TIMEOUT, worker.until_ready()).await {
            Ok(Ok(())) => {
                let _ = worker.init.set(spawned.elapsed());
                debug!(function = %self.config.name, pid, init_ms = worker.init_ms(), runtime_api = %api_addr, "function process started");
                self.events.publish(StackEvent::ProcessStarted {
                    pid,
                    init_ms: spawned.elapsed().as_millis() as u64,
                });
                Ok(worker)
            }
            Ok(Err(reason)) => {
                worker.stop(Stop::Kill);
                Err(StartError::InitFailed {
                    pid,
                    reason,
                    output: worker.output_summary(),
                })
            }
            Err(_) => {
                worker.stop(Stop::Kill);
                Err(StartError::InitTimeout {
                    pid,
                    timeout: INIT_TIMEOUT,
                    output: worker.output_summary(),
                })
            }
        }
    }

    /// The environment of a Lambda execution environment, then the
    /// function's own variables; the reserved ones cannot be overridden.
    pub(super) fn function_env(
        &self,
        config: &FunctionConfig,
        api_addr: SocketAddr,
        worker_id: u64,
    ) -> Vec<(String, String)> {
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
            ("AWS_LAMBDA_FUNCTION_NAME", self.config.name.clone()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                config.memory_mb.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.config.name),
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
}
