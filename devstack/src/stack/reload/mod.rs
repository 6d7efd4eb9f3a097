//! Watch mode: edit, save, see, without restarting the stack.
//!
//! A save of the function's sources rebuilds it ([`build`]); a replaced
//! `--function-bin` file is taken as it is. Either way the new binary is
//! swapped into the Lambda pool, as a deployment of a new function version
//! would be: new invocations go to new processes, in-flight ones finish on
//! the old. A save of `Pulumi.yaml` / `Pulumi.<stack>.yaml` is checked and
//! re-read ([`program`]); what a deployment would apply to a live stage is
//! swapped into the running stack, what it could not ([`diff`]) is named with
//! the advice to restart. A failed build, a version that does not start, or
//! an edit the offline check refuses leaves the running stack as it was.
//!
//! The [`Reloader`] handles one batch of changes at a time, so two builds
//! never run at once, and saves made during a build are taken together by
//! the next one. The stack it changes is behind the small [`Target`] trait.

pub mod diff;
mod live;
pub mod program;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pulumi_program::Topology;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::reload::build::{self, BuildError, CargoFunction, Identity, Output, Snapshots};
use crate::reload::watch::{self, Changed, WatchSet};
use diff::Part;
pub use live::LiveStack;
use program::{Edit, ProgramFiles};

/// The running stack, as the reloader changes it.
pub trait Target: Send + Sync {
    /// Starts running `binary` with the function configuration of
    /// `topology` for new invocations; in-flight ones finish on the old
    /// processes. An error (e.g. the new version fails its init) must leave
    /// the old version serving.
    fn swap_function(
        &self,
        topology: &Topology,
        binary: &Path,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Applies `topology`'s routes, selection expressions and throttling.
    fn swap_api(&self, topology: &Topology);
    /// Applies `topology`'s WAF rate rule.
    fn swap_edge(&self, topology: &Topology);
    /// Applies the function's event invoke config to events queued from now.
    fn swap_async_invoke(&self, topology: &Topology);
}

/// Where new versions of the function come from.
#[derive(Debug, Clone)]
pub enum FunctionSource {
    /// Built with cargo from the function's crate.
    Cargo(CargoFunction),
    /// A prebuilt binary (`--function-bin`), taken again when replaced.
    File(PathBuf),
}

/// The version of the function that is serving.
#[derive(Debug, Clone)]
pub struct Version {
    /// devstack's private copy of the binary.
    pub binary: PathBuf,
    pub identity: Identity,
}

/// The function's versions: where they come from and the one serving.
pub struct Function {
    source: FunctionSource,
    snapshots: Arc<Snapshots>,
    current: Version,
}

impl FunctionSource {
    /// The binary to start with: built with cargo (its output shown as it
    /// comes: the first build may take a while) or the given file.
    pub async fn first_binary(&self) -> anyhow::Result<PathBuf> {
        if let FunctionSource::Cargo(cargo) = self {
            eprintln!(
                "devstack: building the function ({}, {} profile)…",
                cargo.package,
                cargo.profile()
            );
        }
        let package = match self {
            FunctionSource::Cargo(cargo) => cargo.package.as_str(),
            FunctionSource::File(_) => build::FUNCTION_PACKAGE,
        };
        let (binary, _) = produce(self, Output::Show).await.map_err(|e| match e {
            Produce::Build(BuildError::Failed { .. }) => anyhow::anyhow!(
                "{e}; cargo printed the errors above (`cargo build -p {package}` shows them again)"
            ),
            other => anyhow::anyhow!("{other}"),
        })?;
        Ok(binary)
    }

    /// The files whose change makes a new version: the function crate's
    /// sources (and its workspace dependencies'), or the binary file.
    pub async fn watch_set(&self, program: &ProgramFiles) -> WatchSet {
        let mut set = WatchSet {
            program_files: program.paths().to_vec(),
            ..WatchSet::default()
        };
        match self {
            FunctionSource::Cargo(cargo) => match cargo.source_dirs().await {
                Ok(dirs) => set.function_dirs = dirs,
                Err(error) => warn!(
                    error = format!("{error:#}"),
                    "watch mode: the function's sources are not watched"
                ),
            },
            FunctionSource::File(path) => set.function_file = Some(path.clone()),
        }
        set
    }

    /// What a save rebuilds, for the banner.
    pub fn describe(&self) -> String {
        match self {
            FunctionSource::Cargo(cargo) => format!("rebuilds {} on save", cargo.package),
            FunctionSource::File(path) => format!("swaps in {} when it changes", path.display()),
        }
    }
}

impl Function {
    /// Produces the first version (building it with its output shown).
    pub async fn first(source: FunctionSource) -> anyhow::Result<Function> {
        let snapshots = Arc::new(Snapshots::new()?);
        let binary = source.first_binary().await?;
        let current = snapshot(&snapshots, binary).await?;
        Ok(Function {
            source,
            snapshots,
            current,
        })
    }

    pub fn current(&self) -> &Version {
        &self.current
    }

    pub fn source(&self) -> &FunctionSource {
        &self.source
    }
}

#[derive(Debug, thiserror::Error)]
enum Produce {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("{0}")]
    Missing(String),
}

/// The binary the source has now, and how long building it took.
async fn produce(
    source: &FunctionSource,
    output: Output,
) -> Result<(PathBuf, Option<Duration>), Produce> {
    match source {
        FunctionSource::Cargo(cargo) => {
            let built = cargo.build(output).await?;
            Ok((built.binary, Some(built.duration)))
        }
        FunctionSource::File(path) if path.is_file() => Ok((path.clone(), None)),
        FunctionSource::File(path) => Err(Produce::Missing(format!(
            "the function binary {} is not there",
            path.display()
        ))),
    }
}

async fn snapshot(snapshots: &Arc<Snapshots>, binary: PathBuf) -> anyhow::Result<Version> {
    let snapshots = Arc::clone(snapshots);
    let (binary, identity) = tokio::task::spawn_blocking(move || snapshots.take(&binary))
        .await
        .context("the task copying the function binary failed")??;
    Ok(Version { binary, identity })
}

/// Watch mode running: the watcher and the reloader's task.
pub struct Watching {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _watcher: watch::Watcher,
}

impl Watching {
    /// Watches `set` and applies its changes with `reloader` until stopped.
    pub fn start<T: Target + 'static>(
        reloader: Reloader<T>,
        set: &watch::WatchSet,
    ) -> anyhow::Result<Watching> {
        let (watcher, changes) = watch::watch(set, watch::DEBOUNCE)?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(reloader.run(changes, stop.clone()));
        Ok(Watching {
            stop,
            task,
            _watcher: watcher,
        })
    }

    /// Stops watching; a build in progress is abandoned.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Applies saved changes to the running stack, one batch at a time.
pub struct Reloader<T> {
    target: T,
    program: ProgramFiles,
    running: Topology,
    function: Function,
}

impl<T: Target> Reloader<T> {
    /// `running` is the topology the stack was started from, `function` the
    /// version it runs.
    pub fn new(target: T, program: ProgramFiles, running: Topology, function: Function) -> Self {
        Reloader {
            target,
            program,
            running,
            function,
        }
    }

    pub fn running(&self) -> &Topology {
        &self.running
    }

    pub fn function(&self) -> &Function {
        &self.function
    }

    /// Handles changes until `stop` is cancelled or the watcher ends. A build
    /// in progress is abandoned (cargo killed) when `stop` is cancelled.
    pub async fn run(
        mut self,
        mut changes: mpsc::UnboundedReceiver<Changed>,
        stop: CancellationToken,
    ) {
        loop {
            let mut changed = tokio::select! {
                () = stop.cancelled() => return,
                next = changes.recv() => match next {
                    Some(changed) => changed,
                    None => return,
                },
            };
            // Saves that arrived while the last batch was handled: one build for all.
            while let Ok(more) = changes.try_recv() {
                changed = changed.merge(more);
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.handle(changed) => {}
            }
        }
    }

    /// Handles one batch: the program first (a function swap then runs with
    /// the new configuration), then the function.
    pub async fn handle(&mut self, changed: Changed) {
        if changed.program {
            self.reload_program().await;
        }
        if changed.function {
            self.reload_function().await;
        }
    }

    async fn reload_program(&mut self) {
        let files = self.program.clone();
        let running = self.running.clone();
        let edit =
            match tokio::task::spawn_blocking(move || program::reread(&files, &running)).await {
                Ok(Ok(edit)) => edit,
                Ok(Err(error)) => {
                    warn!("Pulumi program not applied: {error}; the stack runs as before");
                    return;
                }
                Err(error) => {
                    warn!(%error, "the task reading the Pulumi program failed");
                    return;
                }
            };
        if edit.diff.is_empty() {
            info!("Pulumi program saved: nothing the local stack runs changed");
            return;
        }
        if let Some(message) = edit.diff.restart_message() {
            warn!("Pulumi program not applied: {message}");
            return;
        }
        self.apply(edit).await;
    }

    async fn apply(&mut self, edit: Edit) {
        let changes: Vec<String> = edit.diff.live().map(ToString::to_string).collect();
        if edit.diff.touches(Part::Function)
            && let Err(error) = self
                .target
                .swap_function(&edit.topology, &self.function.current.binary)
                .await
        {
            warn!(
                error = format!("{error:#}"),
                "Pulumi program not applied: the function did not start with the new configuration; the stack runs as before"
            );
            return;
        }
        if edit.diff.touches(Part::Api) {
            self.target.swap_api(&edit.topology);
        }
        if edit.diff.touches(Part::Edge) {
            self.target.swap_edge(&edit.topology);
        }
        if edit.diff.touches(Part::AsyncInvoke) {
            self.target.swap_async_invoke(&edit.topology);
        }
        self.running = edit.topology;
        info!(changes = changes.join("; "), "Pulumi program applied live");
    }

    async fn reload_function(&mut self) {
        let still = self.function.current.identity.clone();
        let (binary, build_time) = match produce(&self.function.source, Output::Capture).await {
            Ok(produced) => produced,
            Err(Produce::Build(BuildError::Failed {
                package,
                status,
                duration,
                output,
            })) => {
                // The compiler's own words, as `cargo build` shows them.
                eprintln!("{}", output.trim_end());
                warn!(
                    build_ms = duration.as_millis(),
                    still_serving = %still,
                    "building {package} failed ({status}): the compiler's output is above; \
                     the running version keeps serving until a build succeeds"
                );
                return;
            }
            Err(error) => {
                warn!(still_serving = %still, "no new function version: {error}; the running version keeps serving");
                return;
            }
        };
        let version = match snapshot(&self.function.snapshots, binary).await {
            Ok(version) => version,
            Err(error) => {
                warn!(error = format!("{error:#}"), still_serving = %still, "no new function version; the running version keeps serving");
                return;
            }
        };
        if version.identity.sha256 == still.sha256 {
            info!(binary = %version.identity, "function saved: the binary did not change");
            return;
        }
        match self
            .target
            .swap_function(&self.running, &version.binary)
            .await
        {
            Ok(()) => {
                info!(
                    function = %self.running.function.name,
                    build_ms = build_time.map(|t| t.as_millis()),
                    binary = %version.identity,
                    "function swapped: new invocations run the new version"
                );
                let old = std::mem::replace(&mut self.function.current, version);
                self.function.snapshots.retire(&old.binary);
            }
            Err(error) => {
                warn!(
                    error = format!("{error:#}"),
                    binary = %version.identity,
                    still_serving = %still,
                    "the new function version did not start; the running version keeps serving"
                );
                self.function.snapshots.retire(&version.binary);
            }
        }
    }
}

#[cfg(test)]
mod tests;
