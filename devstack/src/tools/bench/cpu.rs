//! The CPU a target's processes spend on a row, by process: a rate says how
//! fast, this says what it cost and where (the stack, its function
//! processes, serverless-offline's Node). Unlike a rate, it barely moves
//! with the machine's other load, so one run's figures can be compared with
//! another's.
//!
//! Read from `/proc` (user + system time of each process and its threads)
//! for the target's root process and its living descendants, before and
//! after the row. A process that exits during the row takes its time with
//! it; the function processes live for the whole row.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The CPU time each process of a tree had used at one moment.
#[derive(Debug, Clone, Default)]
pub(super) struct CpuSnapshot {
    /// pid → (the kernel's short name, CPU time so far).
    processes: HashMap<u32, (String, Duration)>,
}

impl CpuSnapshot {
    /// `root` and its living descendants, now.
    pub(super) fn take(root: u32) -> CpuSnapshot {
        let mut processes = HashMap::new();
        let root_info = local_process::ProcessInfo::read(root);
        let tree = root_info
            .into_iter()
            .chain(local_process::descendants(root));
        for info in tree {
            if let Some(cpu) = local_process::cpu_time(info.pid) {
                processes.insert(info.pid, (info.name, cpu));
            }
        }
        CpuSnapshot { processes }
    }

    /// What each kind of process (by name) spent since `earlier`; a process
    /// not in `earlier` started within the interval and counts whole.
    pub(super) fn since(&self, earlier: &CpuSnapshot) -> CpuSpent {
        let mut by_name: BTreeMap<String, (usize, Duration)> = BTreeMap::new();
        for (pid, (name, now)) in &self.processes {
            let before = earlier
                .processes
                .get(pid)
                .filter(|(was, _)| was == name)
                .map_or(Duration::ZERO, |(_, cpu)| *cpu);
            let entry = by_name.entry(name.clone()).or_default();
            entry.0 += 1;
            entry.1 += now.saturating_sub(before);
        }
        CpuSpent {
            by_process: by_name
                .into_iter()
                .map(|(name, (count, cpu))| ProcessCpu { name, count, cpu })
                .collect(),
        }
    }
}

/// The CPU processes of one name spent (`count` of them).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessCpu {
    pub name: String,
    pub count: usize,
    pub cpu: Duration,
}

/// A target's CPU over a row, by process name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSpent {
    pub by_process: Vec<ProcessCpu>,
}

impl CpuSpent {
    pub fn total(&self) -> Duration {
        self.by_process.iter().map(|p| p.cpu).sum()
    }

    /// The total divided over `n` operations (zero for none).
    pub fn per(&self, n: usize) -> Duration {
        match u32::try_from(n) {
            Ok(n) if n > 0 => self.total() / n,
            _ => Duration::ZERO,
        }
    }

    /// "devstack 310 µs, websocket-handl ×16 262 µs" per operation, the
    /// largest first.
    pub fn split_per(&self, n: usize) -> String {
        let Ok(n) = u32::try_from(n.max(1)) else {
            return String::new();
        };
        let mut parts: Vec<&ProcessCpu> = self.by_process.iter().collect();
        parts.sort_by(|a, b| b.cpu.cmp(&a.cpu).then_with(|| a.name.cmp(&b.name)));
        parts
            .iter()
            .map(|p| {
                let count = if p.count > 1 {
                    format!(" ×{}", p.count)
                } else {
                    String::new()
                };
                format!("{}{count} {}", p.name, super::format_duration(p.cpu / n))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(entries: &[(u32, &str, u64)]) -> CpuSnapshot {
        CpuSnapshot {
            processes: entries
                .iter()
                .map(|&(pid, name, ms)| (pid, (name.to_owned(), Duration::from_millis(ms))))
                .collect(),
        }
    }

    #[test]
    fn the_interval_is_summed_by_name_and_a_new_process_counts_whole() {
        let before = snapshot(&[(1, "devstack", 1_000), (2, "fn", 100), (3, "fn", 50)]);
        let after = snapshot(&[
            (1, "devstack", 1_400),
            (2, "fn", 300),
            (3, "fn", 50),
            (4, "fn", 20),
        ]);
        let spent = after.since(&before);
        assert_eq!(
            spent.by_process,
            vec![
                ProcessCpu {
                    name: "devstack".into(),
                    count: 1,
                    cpu: Duration::from_millis(400)
                },
                ProcessCpu {
                    name: "fn".into(),
                    count: 3,
                    cpu: Duration::from_millis(220)
                },
            ]
        );
        assert_eq!(spent.total(), Duration::from_millis(620));
        assert_eq!(spent.per(4), Duration::from_millis(155));
        assert_eq!(spent.per(0), Duration::ZERO);
        assert_eq!(spent.split_per(2), "devstack 200.00 ms, fn ×3 110.00 ms");
    }

    #[test]
    fn a_reused_pid_under_another_name_is_a_new_process() {
        let before = snapshot(&[(7, "old", 5_000)]);
        let after = snapshot(&[(7, "new", 30)]);
        assert_eq!(after.since(&before).total(), Duration::from_millis(30));
    }

    #[test]
    fn this_process_tree_is_read_from_proc() {
        let me = std::process::id();
        let snapshot = CpuSnapshot::take(me);
        assert!(snapshot.processes.contains_key(&me));
        assert!(CpuSnapshot::take(u32::MAX).processes.is_empty());
    }
}
