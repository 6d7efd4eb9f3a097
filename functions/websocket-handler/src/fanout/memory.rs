//! In-process stand-ins for the table and Lambda's queue: for the route
//! tests, and for running a whole chain of continuations in one process.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::*;
use crate::claims::Claims;
use crate::registry::MemoryRegistry;
use serde_json::Value;

/// Pages over a [`MemoryRegistry`]'s ids in key order, `size` per page.
pub struct MemoryPages<'a> {
    pub registry: &'a MemoryRegistry,
    pub size: usize,
}

#[async_trait]
impl RecipientPages for MemoryPages<'_> {
    async fn page(&self, after: Option<&str>) -> Result<Page, RegistryError> {
        let ids = self.registry.list().await?;
        let rest: Vec<String> = ids
            .into_iter()
            .filter(|id| after.is_none_or(|key| id.as_str() > key))
            .collect();
        let page: Vec<String> = rest.iter().take(self.size.max(1)).cloned().collect();
        let next = (rest.len() > page.len())
            .then(|| page.last().cloned())
            .flatten();
        Ok(Page { ids: page, next })
    }
}

/// A [`MemoryRegistry`] read in pages of [`MEMORY_PAGE`] ids.
pub const MEMORY_PAGE: usize = 100;

#[async_trait]
impl RecipientPages for MemoryRegistry {
    async fn page(&self, after: Option<&str>) -> Result<Page, RegistryError> {
        MemoryPages {
            registry: self,
            size: MEMORY_PAGE,
        }
        .page(after)
        .await
    }
}

/// Claims in a map of claim key to token.
#[derive(Debug, Default)]
pub struct MemoryClaims {
    claimed: Mutex<HashMap<String, String>>,
    broken: bool,
    /// Claims still to apply and then answer with an error, as a PutItem
    /// whose answer is lost.
    lost_answers: AtomicUsize,
}

impl MemoryClaims {
    /// Claims that always fail, as a table that cannot be written.
    pub fn broken() -> Self {
        MemoryClaims {
            broken: true,
            ..Self::default()
        }
    }

    /// Claims whose first `n` writes are applied but answered with an error.
    pub fn losing_first_answers(n: usize) -> Self {
        MemoryClaims {
            lost_answers: AtomicUsize::new(n),
            ..Self::default()
        }
    }

    /// How many claims are recorded.
    pub fn len(&self) -> usize {
        self.claimed.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Claims for MemoryClaims {
    async fn claim(&self, claim: &str, token: &str) -> Result<bool, RegistryError> {
        if self.broken {
            return Err(RegistryError::new("PutItem", "table is unavailable"));
        }
        let claimed = {
            let mut claimed = self.claimed.lock();
            let holder = claimed
                .entry(claim.to_string())
                .or_insert_with(|| token.to_string());
            holder == token
        };
        let lost = self
            .lost_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lost {
            return Err(RegistryError::new(
                "PutItem",
                "HTTP 500 (the write was applied)",
            ));
        }
        Ok(claimed)
    }
}

/// Lambda's asynchronous queue: hand-offs wait here as event JSON.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    events: Mutex<VecDeque<Value>>,
    /// Hand-offs still to refuse.
    refusals: AtomicUsize,
}

impl MemoryQueue {
    /// A queue that refuses every hand-off, as a throttled `Invoke`.
    pub fn failing() -> Self {
        Self::failing_first(usize::MAX)
    }

    /// A queue that refuses the first `n` hand-offs, as an `Invoke` that
    /// times out under load, then queues.
    pub fn failing_first(n: usize) -> Self {
        MemoryQueue {
            refusals: AtomicUsize::new(n),
            ..Self::default()
        }
    }

    pub fn pop(&self) -> Option<Value> {
        self.events.lock().pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.events.lock().is_empty()
    }
}

#[async_trait]
impl Relay for MemoryQueue {
    async fn hand_off(&self, continuation: &Continuation) -> Result<(), String> {
        let refused = self
            .refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err("Invoke: throttled".into());
        }
        self.events.lock().push_back(continuation.to_event());
        Ok(())
    }
}
