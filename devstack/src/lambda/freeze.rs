//! Lambda's freeze, and the control room's kill: what the pool does to a
//! function process around an invocation besides handing it the event.
//!
//! Between invocations Lambda freezes the execution environment: work a
//! handler leaves running after it returns (an un-awaited post, a timer)
//! does not run until the next invocation thaws it. The local pool plays
//! that with SIGSTOP when a process goes back to the idle set and SIGCONT
//! when it is handed the next event, signalling the process group (the
//! function and anything it started). `devstack up --no-freeze` turns it off.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use local_process::Signal;
use tracing::info;

use super::LambdaPool;
use super::worker::{Stop, Worker};

/// How often a kill armed by the control looks for its event being taken.
const HANDOFF_POLL: Duration = Duration::from_millis(1);
/// How long a process that answered may take to ask for its next event
/// before it is frozen anyway (a runtime asks at once).
const NEXT_WAIT: Duration = Duration::from_secs(1);

impl Worker {
    /// Stops the process until [`Worker::thaw`]; idempotent.
    pub(super) fn freeze(&self) {
        if !self.frozen.swap(true, Ordering::AcqRel) {
            self.freezes.fetch_add(1, Ordering::Relaxed);
            let _ = local_process::signal_group(self.pid, Signal::STOP);
        }
    }

    /// Resumes a frozen process; nothing for one that is not frozen.
    pub(super) fn thaw(&self) {
        if self.frozen.swap(false, Ordering::AcqRel) {
            let _ = local_process::signal_group(self.pid, Signal::CONT);
        }
    }
}

impl LambdaPool {
    /// Whether idle processes are frozen (`devstack up` turns it on unless
    /// `--no-freeze`; the pools the benchmarks start directly leave it off).
    pub fn set_freeze(&self, on: bool) {
        self.freeze.store(on, Ordering::Relaxed);
    }

    pub(super) fn freezes(&self) -> bool {
        self.freeze.load(Ordering::Relaxed)
    }

    /// Returns a process that answered its invocation to the idle set. With
    /// the freeze on, that waits (off the caller's path) until the process
    /// has asked for its next event — the `/next` after the one counted in
    /// `asked` — so it is frozen waiting for an event, as Lambda freezes it.
    pub(super) fn check_in_after(&self, worker: Arc<Worker>, asked: u64) {
        if !self.freezes() {
            return self.check_in(worker);
        }
        let pool = self.me.clone();
        self.tasks.spawn(async move {
            let mut calls = worker.api.next_calls.subscribe();
            let _ = tokio::time::timeout(NEXT_WAIT, calls.wait_for(|n| *n > asked)).await;
            if let Some(pool) = pool.upgrade() {
                pool.check_in(worker);
            }
        });
    }

    /// The fault plan the pool consults for kills (the control room's).
    pub fn set_fault_plan(&self, plan: Arc<crate::control::FaultPlan>) {
        let _ = self.faults.set(plan);
    }

    /// If the control armed a kill, kills `worker`'s process with `request_id`'s
    /// event in hand, and returns true. The process is stopped first (it
    /// is, when frozen) so it cannot act on the event: the event is handed
    /// over (its `/next` answered), then the process is killed, as when a
    /// function crashes at the start of an invocation.
    pub(super) fn kill_if_armed(&self, worker: &Arc<Worker>, request_id: &str) -> bool {
        if !self.faults.get().is_some_and(|plan| plan.take_kill()) {
            return false;
        }
        worker.freeze();
        let worker = Arc::clone(worker);
        let request_id = request_id.to_owned();
        let limit = worker.timeout;
        self.tasks.spawn(async move {
            let taken = async {
                loop {
                    let in_flight = worker
                        .api
                        .in_flight
                        .lock()
                        .as_ref()
                        .is_some_and(|flight| flight.request_id == request_id);
                    if in_flight || !worker.is_alive() {
                        return;
                    }
                    tokio::time::sleep(HANDOFF_POLL).await;
                }
            };
            // A process stopped before it asked for the event never takes
            // it: killed at the timeout, the invocation fails all the same.
            let _ = tokio::time::timeout(limit, taken).await;
            info!(
                pid = worker.pid,
                request_id, "function process killed mid-invocation (control fault)"
            );
            worker.stop(Stop::Kill);
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::super::invoke::Invoke;
    use super::super::{FunctionConfig, LambdaPool};
    use super::*;
    use crate::console::EventBus;

    const WAIT: Duration = Duration::from_secs(30);

    /// The pool tests' Python function speaking the Runtime API.
    fn config() -> FunctionConfig {
        FunctionConfig {
            binary: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/runtime-api-function.py"),
            name: "test-function".to_owned(),
            env: vec![("AWS_REGION".to_owned(), "eu-west-1".to_owned())],
            memory_mb: 128,
            timeout: Duration::from_secs(10),
            max_concurrency: 1,
        }
    }

    /// The process state letter of `/proc/<pid>/stat` (`T`: stopped).
    fn state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(") ")?.1.chars().next()
    }

    async fn state_becomes(pid: u32, wanted: char) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            if state(pid) == Some(wanted) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// A pool of one process with the freeze on.
    async fn frozen_pool() -> Arc<LambdaPool> {
        let pool = tokio::time::timeout(WAIT, LambdaPool::start(config(), EventBus::new()))
            .await
            .expect("started in time")
            .expect("started");
        pool.set_freeze(true);
        pool
    }

    #[tokio::test]
    async fn an_idle_process_is_stopped_and_thawed_for_its_next_event() {
        let pool = frozen_pool().await;
        let echo = json!({ "action": "echo", "value": 1 });
        pool.invoke(echo.clone()).await.expect("first invocation");
        let pid = pool.process_ids()[0];
        assert!(
            state_becomes(pid, 'T').await,
            "idle process {pid} not stopped: {:?}",
            state(pid)
        );
        pool.invoke(echo.clone())
            .await
            .expect("a frozen process thaws for its event");
        assert_eq!(pool.process_ids(), [pid], "the same process served it");
        pool.set_freeze(false);
        pool.invoke(echo).await.expect("the freeze off");
        assert!(
            !state_becomes_within(pid, 'T', Duration::from_millis(300)).await,
            "stopped with the freeze off"
        );
        pool.shutdown().await;
    }

    /// Invocations queued behind a busy process get it straight from the
    /// one before, as Lambda answers `/next` at once when an event waits:
    /// it is frozen once, when nothing is left to run, not between them.
    #[tokio::test]
    async fn a_process_with_invocations_waiting_is_handed_on_without_a_freeze() {
        let pool = frozen_pool().await;
        let slow = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                pool.invoke(json!({ "action": "sleep", "seconds": 2 }))
                    .await
            })
        };
        // The slow one has the process (none parked) before the rest line up.
        let admitted = |n: usize| pool.in_flight() == n;
        until(|| admitted(1) && pool.idle.lock().parked() == 0).await;
        let queued: Vec<_> = (0..3)
            .map(|value| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move {
                    pool.invoke(json!({ "action": "echo", "value": value }))
                        .await
                })
            })
            .collect();
        until(|| admitted(4)).await;
        slow.await.expect("joined").expect("the slow invocation");
        for invocation in queued {
            invocation
                .await
                .expect("joined")
                .expect("a queued invocation");
        }
        let pid = pool.process_ids()[0];
        assert!(
            state_becomes(pid, 'T').await,
            "idle at the end, not stopped"
        );
        let worker = pool
            .workers
            .lock()
            .live
            .values()
            .next()
            .cloned()
            .expect("a process");
        assert_eq!(pool.process_ids(), [pid], "one process served all four");
        assert_eq!(
            worker.freezes.load(Ordering::Relaxed),
            1,
            "frozen between queued invocations"
        );
        pool.shutdown().await;
    }

    /// Waits, within [`WAIT`], until `done` holds.
    async fn until(done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn state_becomes_within(pid: u32, wanted: char, limit: Duration) -> bool {
        tokio::time::timeout(limit, state_becomes(pid, wanted))
            .await
            .unwrap_or(false)
    }
}
