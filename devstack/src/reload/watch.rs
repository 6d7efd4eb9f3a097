//! Watching the function's sources and the Pulumi program for saves.
//!
//! File events (inotify, through `notify`) are debounced by
//! `notify-debouncer-full`: an editor's save, which may write, rename and
//! chmod several files, arrives as one batch, and each batch becomes one
//! [`Changed`] saying which side changed. Single files (`Pulumi.yaml`, a
//! `--function-bin`) are watched through their directory, so a file
//! replaced by a rename (as editors and `mv` do) is still seen.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use notify_debouncer_full::notify::{EventKind, RecursiveMode, event::ModifyKind};
use notify_debouncer_full::{DebounceEventResult, DebouncedEvent, new_debouncer};
use tokio::sync::mpsc;
use tracing::warn;

/// How long the file system must be quiet before a batch of events is handed on.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// What to watch.
#[derive(Debug, Clone, Default)]
pub struct WatchSet {
    /// Directories of the function's sources (recursive; `target/` and
    /// hidden or editor scratch files ignored).
    pub function_dirs: Vec<PathBuf>,
    /// A prebuilt function binary (`--function-bin`).
    pub function_file: Option<PathBuf>,
    /// `Pulumi.yaml` and `Pulumi.<stack>.yaml`.
    pub program_files: Vec<PathBuf>,
}

/// Which side a batch of file events touched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    pub function: bool,
    pub program: bool,
}

impl Changed {
    pub fn any(self) -> bool {
        self.function || self.program
    }

    /// Both batches' changes.
    pub fn merge(self, other: Changed) -> Changed {
        Changed {
            function: self.function || other.function,
            program: self.program || other.program,
        }
    }
}

/// The watch; dropping it stops watching.
pub struct Watcher {
    _debouncer: notify_debouncer_full::Debouncer<
        notify_debouncer_full::notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
}

/// Starts watching `set`; each debounced batch that touches it arrives on the
/// returned channel.
pub fn watch(
    set: &WatchSet,
    debounce: Duration,
) -> anyhow::Result<(Watcher, mpsc::UnboundedReceiver<Changed>)> {
    let set = set.canonical();
    let (sender, receiver) = mpsc::unbounded_channel();
    let classify_set = set.clone();
    let mut debouncer = new_debouncer(debounce, None, move |result: DebounceEventResult| {
        match result {
            Ok(events) => {
                let changed = classify(&classify_set, &events);
                if changed.any() {
                    // The receiver is gone only when the stack is stopping.
                    let _ = sender.send(changed);
                }
            }
            Err(errors) => {
                for error in errors {
                    warn!(%error, "watching files");
                }
            }
        }
    })
    .context("starting the file watcher")?;
    for (dir, mode) in set.roots() {
        debouncer
            .watch(&dir, mode)
            .with_context(|| format!("watching {}", dir.display()))?;
    }
    Ok((
        Watcher {
            _debouncer: debouncer,
        },
        receiver,
    ))
}

impl WatchSet {
    /// The same set with canonical paths, as the watcher reports them.
    fn canonical(&self) -> WatchSet {
        let canonical_file = |file: &PathBuf| match (file.parent(), file.file_name()) {
            (Some(parent), Some(name)) => {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                parent
                    .canonicalize()
                    .map_or_else(|_| file.clone(), |dir| dir.join(name))
            }
            _ => file.clone(),
        };
        WatchSet {
            function_dirs: self
                .function_dirs
                .iter()
                .map(|dir| dir.canonicalize().unwrap_or_else(|_| dir.clone()))
                .collect(),
            function_file: self.function_file.as_ref().map(canonical_file),
            program_files: self.program_files.iter().map(canonical_file).collect(),
        }
    }

    /// The directories to watch: each source directory recursively, the
    /// directory of each single file on its own (unless a recursive watch
    /// covers it already).
    fn roots(&self) -> Vec<(PathBuf, RecursiveMode)> {
        let mut roots: BTreeMap<PathBuf, RecursiveMode> = BTreeMap::new();
        for dir in &self.function_dirs {
            roots.insert(dir.clone(), RecursiveMode::Recursive);
        }
        let files = self.function_file.iter().chain(&self.program_files);
        for dir in files.filter_map(|file| file.parent()) {
            let covered = self.function_dirs.iter().any(|root| dir.starts_with(root));
            if !covered {
                roots
                    .entry(dir.to_path_buf())
                    .or_insert(RecursiveMode::NonRecursive);
            }
        }
        roots.into_iter().collect()
    }
}

/// Which side of `set` a batch of events touches.
pub fn classify(set: &WatchSet, events: &[DebouncedEvent]) -> Changed {
    let mut changed = Changed::default();
    for event in events {
        if !mutates(&event.kind) {
            continue;
        }
        for path in &event.paths {
            if set.program_files.iter().any(|file| file == path) {
                changed.program = true;
            }
            if set.function_file.as_ref() == Some(path) {
                changed.function = true;
            }
            if set.function_dirs.iter().any(|root| is_source(root, path)) {
                changed.function = true;
            }
        }
    }
    changed
}

/// Writes, creations, removals and renames; not reads (cargo reading the
/// sources must not trigger a build) nor attribute changes.
fn mutates(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Any
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Other => true,
    }
}

/// Whether `path` under `root` is a source file: not in a `target`
/// directory, not hidden, not an editor's backup or swap file.
fn is_source(root: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else {
        return false;
    };
    let mut components = relative.components().peekable();
    while let Some(Component::Normal(part)) = components.next() {
        let part = part.to_string_lossy();
        let last = components.peek().is_none();
        if part.starts_with('.') || (!last && part == "target") {
            return false;
        }
        if last {
            // Vim's write test file, backups, swap files.
            return part != "4913"
                && !part.ends_with('~')
                && !part.ends_with(".swp")
                && !part.ends_with(".swx");
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify_debouncer_full::notify::Event;
    use notify_debouncer_full::notify::event::{
        AccessKind, CreateKind, DataChange, MetadataKind, RenameMode,
    };
    use std::time::Instant;

    fn set() -> WatchSet {
        WatchSet {
            function_dirs: vec![
                PathBuf::from("/w/functions/fn"),
                PathBuf::from("/w/crates/p"),
            ],
            function_file: None,
            program_files: vec![
                PathBuf::from("/w/Pulumi.yaml"),
                PathBuf::from("/w/Pulumi.dev.yaml"),
            ],
        }
    }

    fn event(kind: EventKind, paths: &[&str]) -> DebouncedEvent {
        let mut event = Event::new(kind);
        for path in paths {
            event = event.add_path(PathBuf::from(path));
        }
        DebouncedEvent::new(event, Instant::now())
    }

    fn write(path: &str) -> DebouncedEvent {
        event(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            &[path],
        )
    }

    #[test]
    fn source_and_program_saves_are_told_apart() {
        let set = set();
        let changed = |events: &[DebouncedEvent]| classify(&set, events);
        assert_eq!(
            changed(&[write("/w/functions/fn/src/main.rs")]),
            Changed {
                function: true,
                program: false
            }
        );
        assert_eq!(
            changed(&[write("/w/crates/p/Cargo.toml")]),
            Changed {
                function: true,
                program: false
            }
        );
        assert_eq!(
            changed(&[write("/w/Pulumi.dev.yaml"), write("/w/crates/p/src/lib.rs")]),
            Changed {
                function: true,
                program: true
            }
        );
        // An editor's atomic save: the temporary file renamed over Pulumi.yaml.
        let rename = event(
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            &["/w/.Pulumi.yaml.tmp", "/w/Pulumi.yaml"],
        );
        assert!(changed(&[rename]).program);
    }

    #[test]
    fn reads_build_output_and_scratch_files_are_ignored() {
        let set = set();
        let ignored = [
            event(
                EventKind::Access(AccessKind::Any),
                &["/w/functions/fn/src/main.rs"],
            ),
            event(
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                &["/w/functions/fn/src/main.rs"],
            ),
            write("/w/functions/fn/target/debug/fn"),
            write("/w/functions/fn/src/.main.rs.swp"),
            write("/w/functions/fn/src/main.rs~"),
            write("/w/functions/fn/src/4913"),
            write("/w/devstack/src/main.rs"),
            write("/w/Pulumi.prod.yaml"),
            write("/w/README.md"),
        ];
        for event in ignored {
            assert!(
                !classify(&set, std::slice::from_ref(&event)).any(),
                "{event:?}"
            );
        }
        let created = event(
            EventKind::Create(CreateKind::File),
            &["/w/functions/fn/src/routes/new.rs"],
        );
        assert!(classify(&set, &[created]).function);
    }

    #[test]
    fn a_function_file_is_watched_through_its_directory() {
        let set = WatchSet {
            function_dirs: Vec::new(),
            function_file: Some(PathBuf::from("/t/bin/bootstrap")),
            program_files: vec![PathBuf::from("/w/Pulumi.yaml")],
        };
        assert_eq!(
            set.roots(),
            [
                (PathBuf::from("/t/bin"), RecursiveMode::NonRecursive),
                (PathBuf::from("/w"), RecursiveMode::NonRecursive)
            ]
        );
        assert!(classify(&set, &[write("/t/bin/bootstrap")]).function);
        assert!(!classify(&set, &[write("/t/bin/other")]).any());
    }

    #[tokio::test]
    async fn a_burst_of_saves_arrives_as_one_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let src = dir.path().join("fn/src");
        std::fs::create_dir_all(&src).expect("mkdir");
        let program = dir.path().join("Pulumi.yaml");
        std::fs::write(&program, "name: x\n").expect("write");
        let set = WatchSet {
            function_dirs: vec![dir.path().join("fn")],
            function_file: None,
            program_files: vec![program.clone()],
        };
        let (_watcher, mut changes) = watch(&set, Duration::from_millis(200)).expect("watch");
        for i in 0..5 {
            std::fs::write(src.join("main.rs"), format!("fn main() {{ {i} }}")).expect("write");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A rename over the program file, as editors save.
        let tmp = dir.path().join(".Pulumi.yaml.tmp");
        std::fs::write(&tmp, "name: y\n").expect("write");
        std::fs::rename(&tmp, &program).expect("rename");

        let mut seen = Changed::default();
        let mut batches = 0;
        while !(seen.function && seen.program) {
            let batch = tokio::time::timeout(Duration::from_secs(10), changes.recv())
                .await
                .expect("a batch within 10 s")
                .expect("the watcher is running");
            seen = seen.merge(batch);
            batches += 1;
        }
        assert!(batches <= 2, "{batches} batches for one burst");
        let late = tokio::time::timeout(Duration::from_millis(600), changes.recv()).await;
        assert!(late.is_err(), "nothing more after the burst: {late:?}");
    }
}
