//! The process tree as `/proc` shows it: who is a child of whom, which
//! process group holds whom, who is still alive. The tests use it to find
//! what the stack started and to check that nothing outlives it.

use std::path::PathBuf;
use std::time::Duration;

use procfs::process::Process;

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
    /// The process `pid`; `None` when it is gone (or `/proc` cannot say).
    pub fn read(pid: u32) -> Option<Self> {
        let stat = Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?;
        Some(ProcessInfo {
            pid: u32::try_from(stat.pid).ok()?,
            name: stat.comm,
            state: stat.state,
            parent: u32::try_from(stat.ppid).ok()?,
            group: u32::try_from(stat.pgrp).ok()?,
        })
    }

    /// The executable's path; `None` when it cannot be read (the process is
    /// gone, or is a zombie).
    pub fn exe(&self) -> Option<PathBuf> {
        Process::new(i32::try_from(self.pid).ok()?).ok()?.exe().ok()
    }

    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// Whether `pid` is a zombie (ended, not yet reaped); `false` when it is
/// gone altogether.
pub fn is_zombie(pid: u32) -> bool {
    ProcessInfo::read(pid).is_some_and(|info| info.is_zombie())
}

/// The direct children of `pid`, from `/proc/<pid>/task/*/children`.
pub fn children(pid: u32) -> Vec<u32> {
    let Some(tasks) = i32::try_from(pid)
        .ok()
        .and_then(|pid| Process::new(pid).ok())
        .and_then(|process| process.tasks().ok())
    else {
        return Vec::new();
    };
    let mut found: Vec<u32> = tasks
        .flatten()
        .filter_map(|task| task.children().ok())
        .flatten()
        .collect();
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

/// The CPU time (user + system, all its threads) process `pid` has used
/// so far; `None` when it is gone. Clock-tick resolution (10 ms at the
/// usual 100 Hz).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?;
    let ticks = stat.utime.saturating_add(stat.stime);
    let per_second = procfs::ticks_per_second().max(1);
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
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
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let mut members: Vec<ProcessInfo> = all
        .flatten()
        .filter_map(|process| u32::try_from(process.pid).ok())
        .filter_map(ProcessInfo::read)
        .filter(|p| p.group == group && !p.is_zombie())
        .collect();
    members.sort_by_key(|p| p.pid);
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_in_its_own_group() {
        let me = ProcessInfo::read(std::process::id()).expect("this process in /proc");
        assert_eq!(me.pid, std::process::id());
        assert!(!me.is_zombie());
        assert!(me.exe().is_some());
        assert!(group_members(me.group).iter().any(|p| p.pid == me.pid));
    }

    #[test]
    fn cpu_time_grows_with_work_and_a_gone_process_has_none() {
        let me = std::process::id();
        let before = cpu_time(me).expect("this process's CPU time");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_time(me).expect("this process's CPU time");
        let elapsed = started.elapsed();
        assert!(
            after >= before + Duration::from_millis(100),
            "{before:?} → {after:?}"
        );
        // In seconds, not ticks: no more than every core for the time the
        // loop ran, plus a tick either side.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        assert!(
            after - before <= elapsed * cores + Duration::from_millis(20),
            "{before:?} → {after:?} in {elapsed:?} on {cores} cores"
        );
        assert_eq!(cpu_time(u32::MAX), None);
    }

    #[test]
    fn a_child_is_listed_and_a_reaped_one_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep starts");
        let id = child.id();
        assert!(children(std::process::id()).contains(&id));
        // Read once it runs `sleep`: until its exec the child still bears
        // this thread's name, which `still_alive` would see change.
        let started = std::time::Instant::now();
        let info = loop {
            let info = ProcessInfo::read(id).expect("the child in /proc");
            if info.name == "sleep" || started.elapsed() > std::time::Duration::from_secs(10) {
                break info;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(info.parent, std::process::id());
        let family = std::slice::from_ref(&info);
        let alive: Vec<u32> = still_alive(family).iter().map(|p| p.pid).collect();
        assert_eq!(alive, [id]);
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        assert!(still_alive(family).is_empty());
        assert!(!is_zombie(id));
    }
}
