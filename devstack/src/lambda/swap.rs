//! A new version of the function on a running pool, as Lambda publishes a
//! new version: new invocations go to processes of the new version, in-flight
//! ones finish on the old processes, which are then stopped.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use tokio::sync::OwnedSemaphorePermit;
use tracing::info;

use super::{FunctionConfig, INIT_TIMEOUT, LambdaPool};

/// One configuration of the function; processes of older versions finish
/// their invocation and are stopped.
pub(super) struct FunctionVersion {
    pub(super) number: u64,
    pub(super) config: FunctionConfig,
}

impl LambdaPool {
    pub(super) fn current_version(&self) -> Arc<FunctionVersion> {
        Arc::clone(&self.version.lock())
    }

    /// Runs `config` for new invocations: one process of it is started and
    /// must finish its init; then idle processes of the old version are
    /// stopped, and busy ones when their invocation ends. On error the old
    /// version keeps serving. Name and concurrency stay the pool's.
    pub async fn swap(&self, mut config: FunctionConfig) -> anyhow::Result<()> {
        config.binary = std::path::absolute(&config.binary).with_context(|| {
            format!(
                "resolving the function binary path {}",
                config.binary.display()
            )
        })?;
        if !config.binary.is_file() {
            bail!("function binary {} not found", config.binary.display());
        }
        config.name = self.config.name.clone();
        config.max_concurrency = self.config.max_concurrency;
        let version = Arc::new(FunctionVersion {
            number: self.current_version().number + 1,
            config,
        });
        let slot = self.slot_for_swap().await?;
        let worker = self.start_worker_of(Arc::clone(&version), slot).await?;
        let number = version.number;
        *self.version.lock() = version;
        let old: Vec<_> = self.idle.lock().drain();
        for worker in &old {
            worker.retire();
        }
        info!(
            function = %self.config.name,
            version = number,
            pid = worker.pid,
            init_ms = worker.init_ms(),
            idle_stopped = old.len(),
            "function version started"
        );
        self.check_in(worker);
        Ok(())
    }

    /// A free process slot; when every slot is held, idle processes (of the
    /// version being replaced) are stopped to free one.
    async fn slot_for_swap(&self) -> anyhow::Result<OwnedSemaphorePermit> {
        let deadline = tokio::time::Instant::now() + INIT_TIMEOUT;
        loop {
            if let Ok(slot) = self.slots.clone().try_acquire_owned() {
                return Ok(slot);
            }
            let idle_added = self.idle_added.notified();
            tokio::pin!(idle_added);
            idle_added.as_mut().enable();
            let oldest = self.idle.lock().oldest();
            if let Some(worker) = oldest {
                worker.retire();
            }
            tokio::select! {
                slot = self.slots.clone().acquire_owned() => {
                    return slot.map_err(|_| anyhow::anyhow!("the pool is shutting down"));
                }
                () = &mut idle_added => {}
                () = tokio::time::sleep_until(deadline) => bail!(
                    "all {} function processes stayed busy for {INIT_TIMEOUT:?}: no room to start the new version",
                    self.config.max_concurrency
                ),
                () = self.closing.cancelled() => bail!("the pool is shutting down"),
            }
        }
    }
}
