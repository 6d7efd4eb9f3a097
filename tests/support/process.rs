//! Processes of the stack under test, seen through `/proc`: who is a child
//! of whom, which process group is whose, and signals to them.
//!
//! The stack is started in its own process group, so everything it starts
//! (function processes, the DynamoDB server) can be found, and killed if it
//! outlives the stack. The spawn happens on one long-lived thread with a
//! parent-death signal, so a test run killed outright (SIGKILL, abort) does
//! not leave the stack running.

use std::io;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use rustix::process::{Pid, Signal};

/// One process as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// The kernel's short name (`comm`, at most 15 bytes).
    pub name: String,
    pub state: char,
    pub parent: u32,
    pub group: u32,
}

impl ProcessInfo {
    pub fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&stat)
    }

    /// The executable's path; `None` when it cannot be read (the process is
    /// gone, or is a zombie).
    pub fn exe(&self) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{}/exe", self.pid)).ok()
    }

    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid pgrp …`. `comm` may
/// hold spaces and parentheses, so the fields after it are found from the
/// last `)`.
pub fn parse_stat(stat: &str) -> Option<ProcessInfo> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let pid = stat.get(..open)?.trim().parse().ok()?;
    let name = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let parent = rest.next()?.parse().ok()?;
    let group = rest.next()?.parse().ok()?;
    Some(ProcessInfo {
        pid,
        name,
        state,
        parent,
        group,
    })
}

/// The direct children of `pid`, from `/proc/<pid>/task/*/children`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Every living descendant of `pid` (children, their children, …).
pub fn descendants(pid: u32) -> Vec<ProcessInfo> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        for child in children(parent) {
            if let Some(info) = ProcessInfo::read(child).filter(|p| !p.is_zombie()) {
                queue.push(info.pid);
                found.push(info);
            }
        }
    }
    found.sort_by_key(|p| p.pid);
    found
}

/// Those of `processes` still alive (same pid and name, not a zombie).
pub fn still_alive(processes: &[ProcessInfo]) -> Vec<ProcessInfo> {
    processes
        .iter()
        .filter_map(|p| {
            ProcessInfo::read(p.pid).filter(|now| now.name == p.name && !now.is_zombie())
        })
        .collect()
}

/// Every living (non-zombie) process in process group `group`.
pub fn group_members(group: u32) -> Vec<ProcessInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut members: Vec<ProcessInfo> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(ProcessInfo::read)
        .filter(|p| p.group == group && !p.is_zombie())
        .collect();
    members.sort_by_key(|p| p.pid);
    members
}

fn pid(raw: u32) -> io::Result<Pid> {
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

pub fn signal(raw: u32, signal: Signal) -> io::Result<()> {
    rustix::process::kill_process(pid(raw)?, signal).map_err(io::Error::from)
}

pub fn signal_group(group: u32, signal: Signal) -> io::Result<()> {
    rustix::process::kill_process_group(pid(group)?, signal).map_err(io::Error::from)
}

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
    // SAFETY: the closure runs in the forked child before exec and only makes
    // one system call (prctl), which is async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                .map_err(io::Error::from)
        });
    }
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
    fn stat_lines_are_parsed_from_the_last_parenthesis() {
        let info = parse_stat("4242 (web (socket) x) S 17 4240 4240 0 -1 4194560 …").unwrap();
        assert_eq!(
            info,
            ProcessInfo {
                pid: 4242,
                name: "web (socket) x".into(),
                state: 'S',
                parent: 17,
                group: 4240
            }
        );
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("12 (x) Z").is_none());
    }

    #[test]
    fn this_process_is_found_in_its_own_group() {
        let me = ProcessInfo::read(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(group_members(me.group).iter().any(|p| p.pid == me.pid));
    }

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
