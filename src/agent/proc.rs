//! Reading the process table: who a process is (pid and start time, so a reused pid is never taken
//! for the old process), its name, parent and command line, and a full scan of `/proc`.
//!
//! These are the only places that list `/proc`; the locator decides how rarely to call [`scan`].
//! Zombies are treated as gone: they hold no memory and no descriptors and cannot be sampled.

use std::collections::{BTreeMap, BTreeSet};

use procfs::process::Process;
use serde::Serialize;

/// A process, identified across time: the pid plus its start time (clock ticks after boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ProcId {
    pub pid: i32,
    pub start: u64,
}

/// What the process table says about one process.
#[derive(Clone, Debug)]
pub struct ProcInfo {
    pub id: ProcId,
    pub ppid: i32,
    pub comm: String,
}

/// Reads one process; `None` if it does not exist (any more) or is a zombie.
pub fn read(pid: i32) -> Option<ProcInfo> {
    let process = Process::new(pid).ok()?;
    info_of(&process)
}

fn info_of(process: &Process) -> Option<ProcInfo> {
    let stat = process.stat().ok()?;
    if matches!(stat.state, 'Z' | 'X' | 'x') {
        return None;
    }
    Some(ProcInfo {
        id: ProcId {
            pid: stat.pid,
            start: stat.starttime,
        },
        ppid: stat.ppid,
        comm: stat.comm,
    })
}

/// Whether this very process (not a later one with the same pid) is still alive.
pub fn alive(id: ProcId) -> bool {
    read(id.pid).is_some_and(|info| info.id == id)
}

/// The command line, arguments joined by spaces (empty for kernel threads).
pub fn cmdline(pid: i32) -> Option<String> {
    let process = Process::new(pid).ok()?;
    process.cmdline().ok().map(|args| args.join(" "))
}

/// The executable name from the command line's first argument (for names longer than `comm`'s 15
/// characters).
pub fn argv0_name(pid: i32) -> Option<String> {
    let process = Process::new(pid).ok()?;
    let args = process.cmdline().ok()?;
    let first = args.first()?;
    Some(first.rsplit('/').next().unwrap_or(first).to_owned())
}

/// Every live, non-zombie process. This walks all of `/proc`: call it rarely.
pub fn scan() -> Vec<ProcInfo> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(|p| p.ok())
        .filter_map(|p| info_of(&p))
        .collect()
}

/// The descendants of `root` among `table` (children, grandchildren, ...), not `root` itself.
pub fn descendants(table: &[ProcInfo], root: i32) -> Vec<ProcId> {
    let mut children: BTreeMap<i32, Vec<&ProcInfo>> = BTreeMap::new();
    for info in table {
        children.entry(info.ppid).or_default().push(info);
    }
    let mut found = Vec::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if child.id.pid != root && seen.insert(child.id.pid) {
                found.push(child.id);
                stack.push(child.id.pid);
            }
        }
    }
    found
}

/// Children of a process from `/proc/PID/task/*/children`, when the kernel provides that file
/// (`CONFIG_PROC_CHILDREN`); `None` when it does not.
pub fn children_of(pid: i32) -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut out = Vec::new();
    let mut any = false;
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        any = true;
        out.extend(
            text.split_whitespace()
                .filter_map(|s| s.parse::<i32>().ok()),
        );
    }
    any.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_itself() {
        let me = read(std::process::id() as i32).expect("own process");
        assert!(alive(me.id));
        assert!(
            !alive(ProcId {
                pid: me.id.pid,
                start: me.id.start + 1
            }),
            "another start time is another process"
        );
        assert!(cmdline(me.id.pid).is_some_and(|c| !c.is_empty()));
    }

    #[test]
    fn descendants_walk_the_tree() {
        let p = |pid, ppid| ProcInfo {
            id: ProcId { pid, start: 1 },
            ppid,
            comm: String::new(),
        };
        let table = vec![p(1, 0), p(10, 1), p(11, 10), p(12, 10), p(13, 11), p(20, 1)];
        let mut d: Vec<i32> = descendants(&table, 10).iter().map(|id| id.pid).collect();
        d.sort();
        assert_eq!(d, vec![11, 12, 13]);
    }
}
