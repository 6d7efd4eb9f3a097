//! Supervising a function process: its own process group, death with the
//! parent, stop requests (SIGTERM, then SIGKILL), its output, and its exit.

use std::collections::VecDeque;
use std::io::Write as _;
use std::process::ExitStatus;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use std::time::Duration;

use local_process::Signal;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::task::JoinHandle;

use super::invoke::InvokeError;
use super::runtime_api::RuntimeApi;
use super::worker::Stop;
use super::{LambdaPool, OUTPUT_TAIL_LINES, STOP_GRACE};

/// What a supervisor owns: the process, and everything released when it exits.
pub(super) struct Supervised {
    pub(super) child: Child,
    pub(super) pid: u32,
    pub(super) stop: mpsc::UnboundedReceiver<Stop>,
    pub(super) exited: watch::Sender<Option<String>>,
    pub(super) api: Arc<RuntimeApi>,
    pub(super) forwarders: Vec<JoinHandle<()>>,
    pub(super) slot: OwnedSemaphorePermit,
    pub(super) pool: Weak<LambdaPool>,
    pub(super) worker_id: u64,
}

/// Waits for the process to exit, delivering stop requests meanwhile; then
/// fails its invocation, closes its Runtime API, frees its slot and tells
/// the pool, which replaces it.
pub(super) async fn supervise(mut process: Supervised) {
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
                Some(Stop::Kill) => signal_group(pid, Signal::KILL),
                Some(Stop::Terminate) => {
                    signal_group(pid, Signal::TERM);
                    // A frozen process (Lambda's freeze) must run to see it.
                    signal_group(pid, Signal::CONT);
                    force_kill_at.get_or_insert(tokio::time::Instant::now() + STOP_GRACE);
                }
                None => {
                    // The worker is gone without stopping its process.
                    stop_open = false;
                    signal_group(pid, Signal::KILL);
                }
            },
            () = force_kill => {
                force_kill_at = None;
                signal_group(pid, Signal::KILL);
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

pub(super) fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended ({status})"),
    }
}

/// Signals the process group the function runs in (the function and any
/// process it started). Only called before the process is reaped, so the
/// group id cannot have been reused; a group already gone is no error here.
fn signal_group(pid: u32, signal: Signal) {
    let _ = local_process::signal_group(pid, signal);
}

/// Forwards the process's stdout and stderr to devstack's, each line behind
/// `prefix`, keeping the last lines for [`Worker::output_summary`](super::worker::Worker::output_summary).
pub(super) fn forward_outputs(
    child: &mut Child,
    prefix: String,
) -> (Arc<Mutex<VecDeque<String>>>, Vec<JoinHandle<()>>) {
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
    (output_tail, forwarders)
}

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
                let mut tail = tail.lock();
                if tail.len() == OUTPUT_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(text.to_owned());
            }
        }
    }
}
