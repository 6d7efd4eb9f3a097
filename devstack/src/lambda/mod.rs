//! The local Lambda: the Lambda Runtime API (2018-06-01) in front of a pool of
//! real function processes.
//!
//! Every function process gets its own Runtime API endpoint on a loopback port
//! (`AWS_LAMBDA_RUNTIME_API`), so it runs exactly as in a Lambda execution
//! environment: it polls `/runtime/invocation/next` and answers on
//! `/response` or `/error`. A process handles one invocation at a time;
//! concurrent invocations grow the pool up to the function's concurrency and
//! then wait for a process. An invocation fails at once with Lambda's
//! throttling error where Lambda would throttle it: when the executions AWS
//! would be running at once reach the account's concurrency
//! ([`concurrency`]: estimated from arrivals and execution times, not from
//! how many wait here, since AWS would have run each in an environment of
//! its own). The machine's own bound, [`LOCAL_WAITING`] invocations waiting,
//! throttles too and says that it is local. A process that crashes or runs past
//! the timeout fails only its own invocation and is replaced; the pool, and
//! the stack around it, stays up.

mod concurrency;
mod freeze;
mod idle;
pub mod invoke;
pub mod invoke_api;
mod process;
mod runtime_api;
mod swap;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use serde_json::Value;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::console::{EventBus, StackEvent};
use crate::reload::build::{AUTHORIZER_PACKAGE, FUNCTION_PACKAGE};

use concurrency::{ACCOUNT_CONCURRENCY, Arrival, Concurrency};
use idle::Idle;
use invoke::{Invoke, InvokeError, InvokeFuture, Limit};
use swap::FunctionVersion;
use worker::{Stop, Worker};

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
/// Invocations that may wait for a local process: the machine's bound, not
/// AWS's (whose throttling is [`concurrency`]'s). At a few milliseconds each
/// on 16 processes, a full queue drains in seconds; each waiting invocation
/// holds its event and a task.
pub const LOCAL_WAITING: usize = 10_000;
/// The account id in local ARNs (Lambda, API Gateway, DynamoDB).
pub const LOCAL_ACCOUNT_ID: &str = "000000000000";
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
    /// The configuration the pool started with: its name and concurrency
    /// never change; the binary and settings new processes get are `version`'s.
    config: FunctionConfig,
    /// What new processes run; [`LambdaPool::swap`] replaces it.
    version: Mutex<Arc<FunctionVersion>>,
    region: String,
    arn: String,
    me: Weak<LambdaPool>,
    /// One permit per process that may exist: the function's concurrency.
    slots: Arc<Semaphore>,
    /// Invocations running or waiting for a process; bounded by
    /// `max_concurrency + waiting_limit`.
    admitted: Arc<Semaphore>,
    /// [`LOCAL_WAITING`], but for tests.
    waiting_limit: usize,
    /// The executions AWS would be running at once, which Lambda throttles on.
    concurrency: Mutex<Concurrency>,
    /// Processes waiting for an invocation, and invocations waiting for a process.
    idle: Mutex<Idle>,
    /// A process was parked (a swap waits for one to stop).
    idle_added: Notify,
    workers: Mutex<Workers>,
    closing: CancellationToken,
    /// Supervisors, replacements and invocations: shutdown waits for them.
    tasks: TaskTracker,
    next_worker_id: AtomicU64,
    backoff: Mutex<Backoff>,
    /// Where process starts and exits are reported (the console).
    events: EventBus,
    /// Lambda's freeze between invocations ([`freeze`]).
    freeze: AtomicBool,
    /// The control room's fault plan (kills mid-invocation), once set.
    faults: OnceLock<Arc<crate::control::FaultPlan>>,
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

/// `config` with an absolute binary path, or why it cannot run: no
/// concurrency, or no binary there.
fn checked(mut config: FunctionConfig) -> anyhow::Result<FunctionConfig> {
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
            "function {}: binary {} not found (build it with `cargo build -p {FUNCTION_PACKAGE}`, \
             or `-p {AUTHORIZER_PACKAGE}` for the authorizer)",
            config.name,
            config.binary.display()
        );
    }
    Ok(config)
}

impl LambdaPool {
    /// Starts one warm function process; the pool grows on demand up to
    /// `max_concurrency`. Fails, naming the cause, when that first process
    /// cannot start (missing binary, init error, exit or timeout during init).
    pub async fn start(config: FunctionConfig, events: EventBus) -> anyhow::Result<Arc<Self>> {
        Self::launch(LambdaPool::new(checked(config)?, events)).await
    }

    /// Starts `pool`'s first process.
    async fn launch(pool: Arc<Self>) -> anyhow::Result<Arc<Self>> {
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

    /// The pool, with no process yet; its ARN is in the region the
    /// function's environment names (`AWS_REGION`).
    fn new(config: FunctionConfig, events: EventBus) -> Arc<Self> {
        Self::with_limits(config, events, ACCOUNT_CONCURRENCY, LOCAL_WAITING)
    }

    /// A pool throttling at `account_concurrency` executions at once (as AWS
    /// would count them) and at `waiting_limit` invocations waiting here.
    fn with_limits(
        config: FunctionConfig,
        events: EventBus,
        account_concurrency: usize,
        waiting_limit: usize,
    ) -> Arc<Self> {
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
        let admitted = Arc::new(Semaphore::new(config.max_concurrency + waiting_limit));
        let version = Arc::new(FunctionVersion {
            number: 1,
            config: config.clone(),
        });
        Arc::new_cyclic(|me| LambdaPool {
            config,
            version: Mutex::new(version),
            region,
            arn,
            me: me.clone(),
            slots,
            admitted,
            waiting_limit,
            concurrency: Mutex::new(Concurrency::new(account_concurrency)),
            idle: Mutex::new(Idle::default()),
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
            events,
            freeze: AtomicBool::new(false),
            faults: OnceLock::new(),
        })
    }

    /// Ends every function process (SIGTERM, then SIGKILL after a grace
    /// period) and waits until they and the pool's tasks are gone. Invocations
    /// after this fail with [`InvokeError::Unavailable`].
    pub async fn shutdown(&self) {
        let workers: Vec<Arc<Worker>> = {
            let mut workers = self.workers.lock();
            workers.closing = true;
            workers.live.values().cloned().collect()
        };
        self.closing.cancel();
        self.slots.close();
        self.idle.lock().clear();
        for worker in &workers {
            worker.stop(Stop::Terminate);
        }
        self.tasks.close();
        self.tasks.wait().await;
        info!(function = %self.config.name, processes = workers.len(), "function stopped");
    }

    /// The pids of the live function processes.
    pub fn process_ids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .workers
            .lock()
            .live
            .values()
            .filter(|worker| worker.is_alive())
            .map(|worker| worker.pid)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Runs one invocation on an idle or new process and logs its report.
    async fn run_invocation(&self, event: Bytes, arrival: Arrival) -> Result<Value, InvokeError> {
        let worker = self.check_out().await?;
        let request_id = Uuid::new_v4().to_string();
        if !self.kill_if_armed(&worker, &request_id) {
            worker.thaw();
        }
        let cold = !worker.has_invoked.swap(true, Ordering::Relaxed);
        let started = Instant::now();
        let execution = self.concurrency.lock().started(arrival, started);
        let asked = *worker.api.next_calls.borrow();
        let outcome = worker.invoke(&request_id, event, worker.timeout).await;
        let took = started.elapsed();
        self.concurrency.lock().finished(execution, took);
        let duration_ms = took.as_secs_f64() * 1000.0;
        let result = match &outcome {
            Ok(_) => "ok",
            Err(InvokeError::Function { .. }) => "function error",
            Err(InvokeError::Crashed(_)) => "crashed",
            Err(InvokeError::Timeout(_)) => "timeout",
            Err(InvokeError::Unavailable(_)) => "unavailable",
            Err(InvokeError::Throttled { .. }) => "throttled",
        };
        info!(
            function = %self.config.name,
            request_id,
            pid = worker.pid,
            result,
            duration_ms,
            init_duration_ms = cold.then(|| worker.init_ms()),
            max_memory_mb = worker.peak_rss_mib(),
            "invoke"
        );
        if matches!(outcome, Ok(_) | Err(InvokeError::Function { .. })) {
            self.check_in_after(worker, asked);
        }
        let body = outcome?;
        serde_json::from_slice(&body).map_err(|err| InvokeError::Function {
            error_type: "Runtime.InvalidResponse".to_owned(),
            message: format!("the function's response is not JSON: {err}"),
        })
    }

    /// Takes an idle process, or starts one if the concurrency allows, or
    /// waits for one of the two (a process that finishes is handed over).
    async fn check_out(&self) -> Result<Arc<Worker>, InvokeError> {
        loop {
            let mut handed = match self.idle.lock().take_or_wait() {
                Ok(worker) => return Ok(worker),
                Err(waiting) => waiting,
            };
            tokio::select! {
                biased;
                () = self.closing.cancelled() => return Err(shutting_down()),
                worker = &mut handed => match worker {
                    Ok(worker) if worker.is_alive() => return Ok(worker),
                    // Died since, or the pool let go of its waiters: again.
                    _ => continue,
                },
                slot = self.slots.clone().acquire_owned() => {
                    let slot = slot.map_err(|_| shutting_down())?;
                    // Out of the queue; a process handed over meanwhile is taken.
                    handed.close();
                    if let Ok(worker) = handed.try_recv()
                        && worker.is_alive()
                    {
                        return Ok(worker);
                    }
                    if let Some(worker) = self.idle.lock().take() {
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

    /// Makes a process that finished its invocation available again.
    fn check_in(&self, worker: Arc<Worker>) {
        if !worker.is_alive() || self.closing.is_cancelled() {
            return;
        }
        if worker.version != self.current_version().number {
            worker.retire();
            return;
        }
        let mut idle = self.idle.lock();
        let Err(worker) = idle.hand_off(worker) else {
            return;
        };
        if self.freezes() {
            worker.freeze();
        }
        idle.park(worker);
        drop(idle);
        self.idle_added.notify_one();
    }

    /// Adds a started process to the live set, unless the pool is closing or
    /// the process already exited.
    fn register(&self, worker: &Arc<Worker>) -> bool {
        let mut workers = self.workers.lock();
        if workers.closing || !worker.is_alive() {
            return false;
        }
        workers.live.insert(worker.id, Arc::clone(worker));
        true
    }

    /// Called by a process's supervisor once it has exited.
    fn on_worker_exit(&self, worker_id: u64, pid: u32, reason: &str) {
        let (live_before, closing, retired) = {
            let mut workers = self.workers.lock();
            let before = workers.live.len();
            let worker = workers.live.remove(&worker_id);
            let retired = worker.is_some_and(|w| w.retired.load(Ordering::Relaxed));
            (before, workers.closing, retired)
        };
        self.idle.lock().remove(worker_id);
        self.events.publish(StackEvent::ProcessExited {
            pid,
            reason: if closing || retired {
                "stopped"
            } else {
                reason
            }
            .to_string(),
        });
        // A process of an old version is not replaced.
        if closing || retired {
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
            if pool.workers.lock().live.len() >= live_before {
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
        let mut backoff = self.backoff.lock();
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

impl LambdaPool {
    /// Invocations the pool holds now, running or waiting for a process.
    fn in_flight(&self) -> usize {
        let holds = self.config.max_concurrency + self.waiting_limit;
        holds.saturating_sub(self.admitted.available_permits())
    }

    /// A place for an invocation, or Lambda's throttling error at once (it
    /// queues nothing for synchronous calls): first where AWS would throttle,
    /// then where only this machine must.
    fn admit(&self) -> Result<(OwnedSemaphorePermit, Arrival), InvokeError> {
        let in_flight = self.in_flight();
        let now = Instant::now();
        let mut concurrency = self.concurrency.lock();
        if let Err(at_once) = concurrency.check(now, in_flight) {
            drop(concurrency);
            warn!(function = %self.config.name, at_once, "invocation throttled: the account's concurrency is reached");
            return Err(InvokeError::Throttled(Limit::Concurrency { at_once }));
        }
        let Ok(admission) = self.admitted.clone().try_acquire_owned() else {
            drop(concurrency);
            let waiting = self.waiting_limit;
            warn!(function = %self.config.name, waiting, "invocation throttled by the local stack: every process is busy and its bound of waiting invocations is reached (AWS would not throttle this)");
            return Err(InvokeError::Throttled(Limit::LocalWaiting { waiting }));
        };
        Ok((admission, concurrency.arrived(now)))
    }
}

impl Invoke for LambdaPool {
    fn invoke_json(&self, event: Bytes) -> InvokeFuture<'_> {
        Box::pin(async move {
            if self.closing.is_cancelled() {
                return Err(shutting_down());
            }
            let Some(pool) = self.me.upgrade() else {
                return Err(shutting_down());
            };
            let (admission, arrival) = self.admit()?;
            // Its own task: an invocation runs to its end, and its process
            // returns to the pool, even if the caller stops waiting.
            self.tasks
                .spawn(async move {
                    let _admission = admission;
                    pool.run_invocation(event, arrival).await
                })
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
        let workers = self.workers.lock();
        for worker in workers.live.values() {
            worker.stop(Stop::Kill);
        }
    }
}

fn shutting_down() -> InvokeError {
    InvokeError::Unavailable("the function pool is shutting down".to_owned())
}

#[cfg(test)]
mod swap_tests;
#[cfg(test)]
mod tests;
