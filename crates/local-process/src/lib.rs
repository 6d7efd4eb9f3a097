//! The child processes of the local stack and its tests, one way each.
//!
//! The local stack runs function processes and a DynamoDB server; the tests
//! run the stack itself. All of them must end with their parent (even when
//! it is SIGKILLed), be stopped as a group, and be observable through
//! `/proc`. Before this crate each did that its own way (three copies, one
//! without the parent-death race check). What they run is installed one way
//! too, once under a lock: the local DynamoDB server from npm
//! ([`NodePackages`]), the benchmarks' awslambdaric into a venv
//! ([`PythonVenv`]).

use std::io;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use rustix::process::Pid;
pub use rustix::process::Signal;

mod npm;
mod once;
mod status;
mod tree;
mod venv;
pub use npm::{NodePackages, NpmError};
pub use status::ProcStatus;
pub use tree::{
    ProcessInfo, children, cpu_time, descendants, group_members, is_zombie, still_alive,
};
pub use venv::{PythonVenv, VenvError};

/// Makes the kernel SIGKILL the child when its parent dies, even by SIGKILL,
/// so no child outlives the process that started it.
///
/// The signal fires when the *thread* that spawned the child ends: spawn from
/// threads that live as long as the parent (a runtime's worker threads, or a
/// dedicated spawner thread). If the parent dies between fork and the
/// `prctl`, the child sees a new parent and fails to start instead of
/// running orphaned.
pub fn die_with_parent(command: &mut Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (prctl, getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::from(rustix::io::Errno::SRCH));
            }
            Ok(())
        });
    }
}

/// `raw` as a process id; an error naming it when it is none (0, or over
/// `i32::MAX`).
pub fn pid(raw: u32) -> io::Result<Pid> {
    i32::try_from(raw)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a process id: {raw}"),
            )
        })
}

/// Whether a process with this id exists (zombies included), as signal 0
/// tells.
pub fn exists(raw: u32) -> bool {
    pid(raw).is_ok_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

/// Sends `signal` to one process.
pub fn signal(raw: u32, signal: Signal) -> io::Result<()> {
    rustix::process::kill_process(pid(raw)?, signal).map_err(io::Error::from)
}

/// Sends `signal` to the process group `group` (a process started with
/// `process_group(0)` leads its own group, whose id is its pid). Call it only
/// before the leader is reaped, so the id cannot have been reused.
pub fn signal_group(group: u32, signal: Signal) -> io::Result<()> {
    rustix::process::kill_process_group(pid(group)?, signal).map_err(io::Error::from)
}

/// Resolves when process `raw` exits, however it ends: waits on a pidfd,
/// which turns readable then, rather than polling. The pidfd is opened now,
/// so `raw` must be alive and not yet reaped (a child not waited for);
/// must be called within a tokio runtime.
pub fn exit_of(raw: u32) -> io::Result<impl Future<Output = ()> + Send + 'static> {
    let fd = rustix::process::pidfd_open(pid(raw)?, rustix::process::PidfdFlags::NONBLOCK)?;
    // SAFETY: `fd` is an `OwnedFd` moved into the `AsyncFd`, which owns it
    // until it is dropped: nothing else can close or replace it meanwhile.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }
    .map_err(|error| error.into_parts().1)?;
    Ok(async move {
        // An error here means the descriptor is unusable; the caller learns
        // nothing more by waiting, so it counts as the end too.
        let _ = fd.readable().await;
    })
}

/// The peak resident set size of a live process (`VmHWM` in
/// `/proc/<pid>/status`), in bytes. To read it again and again, keep a
/// [`ProcStatus`].
pub fn peak_rss_bytes(raw: u32) -> io::Result<u64> {
    ProcStatus::open(raw)?.peak_rss_bytes()
}

/// The resident set size of a live process now (`VmRSS` in
/// `/proc/<pid>/status`), in bytes.
pub fn rss_bytes(raw: u32) -> io::Result<u64> {
    ProcStatus::open(raw)?.rss_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_peak_rss() {
        let bytes = peak_rss_bytes(std::process::id()).expect("VmHWM of this process");
        assert!(bytes > 1024 * 1024, "{bytes}");
    }

    #[test]
    fn this_process_has_a_resident_size_and_no_process_has_none() {
        let bytes = rss_bytes(std::process::id()).expect("VmRSS of this process");
        assert!(bytes > 1024 * 1024, "{bytes}");
        assert!(rss_bytes(u32::MAX).is_err());
    }

    #[test]
    fn zero_is_not_a_process_id() {
        assert_eq!(
            signal(0, Signal::TERM).map_err(|e| e.kind()),
            Err(io::ErrorKind::InvalidInput)
        );
    }

    #[tokio::test]
    async fn exit_of_resolves_when_the_process_ends_and_not_before() {
        let mut child = Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep starts");
        let exited = exit_of(child.id()).expect("a pidfd for a live child");
        tokio::pin!(exited);
        // Positive control for "not before": still pending while it runs.
        let early = tokio::time::timeout(std::time::Duration::from_millis(200), exited.as_mut());
        assert!(early.await.is_err(), "resolved while the process ran");
        signal(child.id(), Signal::KILL).expect("kill");
        tokio::time::timeout(std::time::Duration::from_secs(10), exited)
            .await
            .expect("resolved after the kill");
        let _ = child.wait();
    }

    #[test]
    fn a_child_of_a_live_parent_passes_the_race_check_and_runs() {
        let mut command = Command::new("true");
        die_with_parent(&mut command);
        let status = command.status().expect("`true` starts under a live parent");
        assert!(status.success());
    }
}
