//! Where processes and invocations meet: processes waiting for an event and
//! invocations waiting for a process.
//!
//! A process that finishes while an invocation waits is handed to it
//! directly, without being frozen and thawed in between: Lambda answers a
//! runtime's `/next` at once when an event is waiting and freezes the
//! execution environment only when none is. Only a process nobody waits
//! for is parked (and, with the freeze on, frozen). Both sides live under
//! one lock, so a process is never parked while an invocation waits.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::worker::Worker;

#[derive(Default)]
pub(super) struct Idle {
    /// Parked processes, most recently used last.
    processes: VecDeque<Arc<Worker>>,
    /// Invocations waiting for a process, oldest first. A waiter that gave
    /// up (its receiver closed or dropped) is skipped when reached.
    waiting: VecDeque<oneshot::Sender<Arc<Worker>>>,
}

impl Idle {
    /// The most recently used live process (its caches are the warmest);
    /// without one, a place in the queue of waiting invocations.
    pub(super) fn take_or_wait(&mut self) -> Result<Arc<Worker>, oneshot::Receiver<Arc<Worker>>> {
        if let Some(worker) = self.take() {
            return Ok(worker);
        }
        let (sender, receiver) = oneshot::channel();
        // A waiter that gave up leaves the queue when it reaches the front:
        // here, or when `hand_off` passes it over.
        while self
            .waiting
            .front()
            .is_some_and(|waiter| waiter.is_closed())
        {
            self.waiting.pop_front();
        }
        self.waiting.push_back(sender);
        Err(receiver)
    }

    /// The most recently used live parked process.
    pub(super) fn take(&mut self) -> Option<Arc<Worker>> {
        while let Some(worker) = self.processes.pop_back() {
            if worker.is_alive() {
                return Some(worker);
            }
        }
        None
    }

    /// Gives `worker` to the oldest invocation still waiting, or back when
    /// none is.
    pub(super) fn hand_off(&mut self, mut worker: Arc<Worker>) -> Result<(), Arc<Worker>> {
        while let Some(waiter) = self.waiting.pop_front() {
            match waiter.send(worker) {
                Ok(()) => return Ok(()),
                Err(back) => worker = back,
            }
        }
        Err(worker)
    }

    /// Parks a process nobody waits for.
    pub(super) fn park(&mut self, worker: Arc<Worker>) {
        self.processes.push_back(worker);
    }

    /// The longest-parked process (a swap stops it to free its slot).
    pub(super) fn oldest(&mut self) -> Option<Arc<Worker>> {
        self.processes.pop_front()
    }

    /// Every parked process, taken out.
    pub(super) fn drain(&mut self) -> Vec<Arc<Worker>> {
        self.processes.drain(..).collect()
    }

    /// Forgets a process that exited.
    pub(super) fn remove(&mut self, worker_id: u64) {
        self.processes.retain(|worker| worker.id != worker_id);
    }

    /// Forgets every process, and every waiter (whose receivers then fail).
    pub(super) fn clear(&mut self) {
        self.processes.clear();
        self.waiting.clear();
    }

    #[cfg(test)]
    pub(super) fn parked(&self) -> usize {
        self.processes.len()
    }
}
