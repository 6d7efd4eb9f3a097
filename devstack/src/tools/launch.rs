//! `devstack up` as a child process, one way: the benchmarks and the e2e
//! harness both start a stack on loopback ports the kernel picks, log it to
//! a file and wait for its ready file.
//!
//! The launcher builds the command and waits; how the child is spawned
//! (its own process group, death with the parent) stays with the caller,
//! which knows how it must end.

use std::io;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::stack::Endpoints;

/// One stack to start: its program, its config, and where it reports.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The directory holding `Pulumi.yaml` and `Pulumi.<stack>.yaml`.
    pub program_dir: &'a Path,
    pub stack: &'a str,
    /// Where `devstack up` writes its [`Endpoints`] once it accepts connections.
    pub ready_file: &'a Path,
    /// Its stdout and stderr, created anew.
    pub log: &'a Path,
    /// The edge's address: `127.0.0.1:0` (a free port) unless a test needs
    /// the same one across a restart.
    pub edge_addr: Option<std::net::SocketAddr>,
}

impl Launch<'_> {
    /// `<exe> up` with every listener on `127.0.0.1:0` (the edge on
    /// `edge_addr` when set) and the ready file,
    /// stdin closed and output to the log. The caller adds its own flags and
    /// spawns it. A ready file left from an earlier run is removed.
    pub fn command(&self, exe: &Path) -> io::Result<Command> {
        match std::fs::remove_file(self.ready_file) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let log = std::fs::File::create(self.log)?;
        let mut command = Command::new(exe);
        command
            .arg("up")
            .arg("--program-dir")
            .arg(self.program_dir)
            .args(["--stack", self.stack])
            .arg("--edge-addr")
            .arg(
                self.edge_addr
                    .map_or_else(|| "127.0.0.1:0".to_string(), |addr| addr.to_string()),
            )
            .args(["--api-addr", "127.0.0.1:0"])
            .args(["--console-addr", "127.0.0.1:0"])
            .arg("--ready-file")
            .arg(self.ready_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        Ok(command)
    }
}

/// Why a started stack never became ready.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("`devstack up` exited with {0} before it was ready")]
    Exited(ExitStatus),
    #[error("`devstack up` wrote no ready file within {0:?}")]
    NotReady(Duration),
    #[error("watching `devstack up`: {0}")]
    Watch(io::Error),
}

/// Waits at most `limit` for a complete ready file while the child lives;
/// `try_wait` is the child's (`Some` once it has exited).
pub async fn wait_ready(
    ready_file: &Path,
    limit: Duration,
    mut try_wait: impl FnMut() -> io::Result<Option<ExitStatus>>,
) -> Result<Endpoints, LaunchError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = try_wait().map_err(LaunchError::Watch)? {
            return Err(LaunchError::Exited(status));
        }
        // The file may be caught half-written: only a complete document counts.
        if let Ok(text) = std::fs::read_to_string(ready_file)
            && let Ok(endpoints) = serde_json::from_str::<Endpoints>(&text)
        {
            return Ok(endpoints);
        }
        if Instant::now() >= deadline {
            return Err(LaunchError::NotReady(limit));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_half_written_file_is_waited_past_and_a_complete_one_read() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ready = dir.path().join("ready.json");
        std::fs::write(&ready, "{\"edge\":").expect("a partial file");
        let short = Duration::from_millis(300);
        let waited = wait_ready(&ready, short, || Ok(None)).await;
        assert!(
            matches!(waited, Err(LaunchError::NotReady(_))),
            "{waited:?}"
        );
        crate::stack::write_ready_file(&ready, &Endpoints::example()).expect("the ready file");
        let read = wait_ready(&ready, short, || Ok(None)).await;
        assert_eq!(read.map(|e| e.edge).ok(), Some(Endpoints::example().edge));
    }

    #[tokio::test]
    async fn a_child_that_exits_first_is_reported_and_a_stale_file_removed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ready = dir.path().join("ready.json");
        crate::stack::write_ready_file(&ready, &Endpoints::example()).expect("a stale ready file");
        let launch = Launch {
            program_dir: dir.path(),
            stack: "dev",
            ready_file: &ready,
            log: &dir.path().join("log"),
            edge_addr: None,
        };
        let mut child = launch
            .command(Path::new("false"))
            .expect("the command")
            .spawn()
            .expect("`false` starts");
        assert!(!ready.exists(), "the stale ready file was removed");
        let waited = wait_ready(&ready, Duration::from_secs(10), || child.try_wait()).await;
        assert!(matches!(waited, Err(LaunchError::Exited(_))), "{waited:?}");
    }
}
