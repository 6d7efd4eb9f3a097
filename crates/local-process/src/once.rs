//! An install done once per directory, under a file lock: the Python venvs and
//! the Node packages of the local stack and its tests. Many processes may ask
//! for the same directory at once (parallel tests), so the install runs under
//! `<dir>.lock`, and a marker written last records what a complete install
//! holds; anything else found there is wiped and redone.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

const MARKER: &str = ".installed";

/// Whether `dir` holds a complete install of `wanted`.
pub(crate) fn is_installed(dir: &Path, wanted: &str) -> bool {
    fs::read_to_string(dir.join(MARKER)).is_ok_and(|held| held == wanted)
}

/// Runs `install` into a fresh `dir` unless a complete install of `wanted` is
/// there, holding `<dir>.lock` while it runs. `progress` is called before an
/// install starts; `io_err` turns a failed file step into the caller's error.
pub(crate) fn install_once<E>(
    dir: &Path,
    wanted: &str,
    io_err: impl Fn(String, io::Error) -> E,
    progress: impl FnOnce(&Path),
    install: impl FnOnce() -> Result<(), E>,
) -> Result<(), E> {
    if is_installed(dir, wanted) {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| io_err(format!("creating {}", parent.display()), e))?;
    let lock_path = dir.with_extension("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_err(format!("opening {}", lock_path.display()), e))?;
    lock.lock()
        .map_err(|e| io_err(format!("locking {}", lock_path.display()), e))?;
    // Someone else may have finished the install while we waited.
    if is_installed(dir, wanted) {
        return Ok(());
    }
    if dir.exists() {
        fs::remove_dir_all(dir)
            .map_err(|e| io_err(format!("removing the incomplete {}", dir.display()), e))?;
    }
    progress(dir);
    install()?;
    let marker = dir.join(MARKER);
    File::create(&marker)
        .and_then(|mut file| io::Write::write_all(&mut file, wanted.as_bytes()))
        .map_err(|e| io_err(format!("writing {}", marker.display()), e))
}

/// How an install step (a tool run to completion) went wrong.
pub(crate) enum StepError {
    /// The tool is not on PATH: the caller names the prerequisite.
    Missing,
    /// It could not be started for another reason.
    Io(io::Error),
    /// It ran and failed: its exit status and the last 30 lines it printed.
    Failed { status: String, output: String },
}

/// Runs an install step with no input and waits for it.
pub(crate) fn run_step(command: &mut Command) -> Result<(), StepError> {
    let output = match command.stdin(Stdio::null()).output() {
        Ok(output) => output,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StepError::Missing),
        Err(e) => return Err(StepError::Io(e)),
    };
    if output.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Err(StepError::Failed {
        status: output.status.to_string(),
        output: tail(&text, 30),
    })
}

/// The last `lines` lines of a tool's output, for an error message.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn a_complete_install_is_kept_and_an_interrupted_one_redone() {
        let scratch = tempfile::tempdir().expect("a temporary directory");
        let dir = scratch.path().join("pkgs");
        let fail = |context: String, e: io::Error| io::Error::other(format!("{context}: {e}"));
        let runs = std::cell::Cell::new(0);
        let install = || {
            runs.set(runs.get() + 1);
            fs::create_dir_all(&dir)?;
            fs::write(dir.join("a"), "1")
        };
        install_once(&dir, "v1", fail, |_| {}, install).expect("installed");
        install_once(&dir, "v1", fail, |_| {}, install).expect("kept");
        assert_eq!(runs.get(), 1, "a complete install is not redone");
        install_once(&dir, "v2", fail, |_| {}, install).expect("reinstalled");
        assert_eq!(runs.get(), 2, "another wanted content reinstalls");
        assert!(is_installed(&dir, "v2"));
    }
}
