//! Processes of the stack under test: the spawn that keeps a killed test run
//! from leaving them behind. Reading `/proc` and sending signals is
//! `local-process`'s job; its helpers are re-exported here for the tests.
//!
//! The stack is started in its own process group, so everything it starts
//! (function processes, the authorizer's) can be found, and killed if it
//! outlives the stack. The spawn happens on one long-lived thread with a
//! parent-death signal, so a test run killed outright (SIGKILL, abort) does
//! not leave the stack running.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

pub use local_process::{
    ProcessInfo, Signal, children, descendants, group_members, signal, signal_group, still_alive,
};

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `command` in a new process group, with SIGKILL as its
/// parent-death signal.
///
/// The parent-death signal fires when the *thread* that spawned the child
/// ends, so the spawn is done by one thread that lives as long as the test
/// process; test threads come and go.
pub fn spawn_guarded(mut command: Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;

    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();

    command.process_group(0);
    local_process::die_with_parent(&mut command);
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("e2e-spawner".into())
            .spawn(move || {
                for (mut command, reply) in queue {
                    let _ = reply.send(command.spawn());
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| eprintln!("e2e: cannot start the spawner thread: {e}"));
        Mutex::new(jobs)
    });
    let (reply, result) = mpsc::channel();
    let jobs = spawner
        .lock()
        .map_err(|_| io::Error::other("spawner lock poisoned"))?
        .clone();
    jobs.send((command, reply))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    result
        .recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_include_grandchildren_and_end_with_them() {
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 30 & wait"]);
        let mut child = spawn_guarded(command).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = descendants(std::process::id());
        while !found
            .iter()
            .any(|p| p.name == "sleep" && p.parent == child.id())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no grandchild in {found:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
            found = descendants(std::process::id());
        }
        let family: Vec<ProcessInfo> = found
            .into_iter()
            .filter(|p| p.pid == child.id() || p.parent == child.id())
            .collect();
        assert_eq!(still_alive(&family).len(), 2);
        signal_group(child.id(), Signal::KILL).unwrap();
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !still_alive(&family).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "still alive: {:?}",
                still_alive(&family)
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn a_guarded_child_has_its_own_group_and_is_listed_as_a_child() {
        let mut command = Command::new("sleep");
        command.arg("30");
        let mut child = spawn_guarded(command).unwrap();
        let id = child.id();
        let info = ProcessInfo::read(id).unwrap();
        assert_eq!(info.group, id, "the child leads its own process group");
        assert!(children(info.parent).contains(&id));
        signal_group(id, Signal::KILL).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
}
