//! Finding the processes of one service, tick after tick, cheaply.
//!
//! A systemd unit's processes are read from its cgroup (`cgroup.procs`, the unit's sub-cgroups
//! included) and a pidfile names the main process: both are read directly every tick. A service
//! found by process name or command line needs a walk over all of `/proc`; that walk happens only
//! every `rescan_every` ticks, or at once when a known process vanished (a restart replaces every
//! pid). In between, the known processes are only checked to be alive. A pidfile service's
//! descendants are taken from `/proc/PID/task/*/children` when the kernel has it, else from a
//! table walk on the same schedule.
//!
//! This module only says which processes belong to the service now; deciding whether that is a
//! restart is [`super::presence`]'s job.

use std::path::{Path, PathBuf};

use super::config::Finder;
use super::proc::{self, ProcId, ProcInfo};

/// The processes of a service at one tick.
#[derive(Clone, Debug, Default)]
pub struct Located {
    /// The processes, main process first when known.
    pub procs: Vec<ProcId>,
    /// The cgroup directory, for a systemd unit.
    pub cgroup: Option<PathBuf>,
    /// Why nothing was found, in words for the log.
    pub problem: Option<String>,
    /// Whether this tick walked all of `/proc`.
    pub scanned: bool,
    /// Threads summed over `procs`, when every one of them had its `stat` read this tick (the
    /// thread gauge then need not read them again).
    pub threads: Option<u64>,
}

/// Finds a service's processes; keep one per service and call [`Locator::locate`] once per tick.
pub struct Locator {
    finder: Finder,
    cgroup_root: PathBuf,
    rescan_every: u32,
    known: Vec<ProcId>,
    ticks_since_scan: u32,
    /// Ticks left during which a missing service is searched for on every tick (right after its
    /// processes vanished: a restart brings new ones within seconds).
    eager_ticks: u32,
    first: bool,
    own_pid: i32,
}

/// The cgroup v2 mount: `/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on hybrid ones.
pub fn detect_cgroup_root() -> PathBuf {
    for candidate in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if Path::new(candidate).join("cgroup.controllers").exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("/sys/fs/cgroup")
}

impl Locator {
    /// A locator for `finder`; `cgroup_root` is the cgroup v2 mount.
    pub fn new(finder: Finder, cgroup_root: PathBuf, rescan_every: u32) -> Self {
        Locator {
            finder,
            cgroup_root,
            rescan_every: rescan_every.max(1),
            known: Vec::new(),
            ticks_since_scan: 0,
            eager_ticks: 0,
            first: true,
            own_pid: std::process::id() as i32,
        }
    }

    /// The processes of the service now.
    pub fn locate(&mut self) -> Located {
        let located = match self.finder.clone() {
            Finder::SystemdUnit(unit) => self.by_cgroup(&unit),
            Finder::Pidfile(path) => self.by_pidfile(&path),
            Finder::ProcessName(_) | Finder::Cmdline(_) => self.by_scan(),
        };
        self.first = false;
        located
    }

    fn by_cgroup(&mut self, unit: &str) -> Located {
        let dir = self.cgroup_root.join("system.slice").join(unit);
        if !dir.join("cgroup.procs").exists() {
            return Located {
                problem: Some(format!(
                    "no cgroup at {} (the unit is not running, or the host does not use cgroup v2)",
                    dir.display()
                )),
                ..Located::default()
            };
        }
        let mut pids = Vec::new();
        read_procs_recursive(&dir, &mut pids, 0);
        pids.sort_unstable();
        pids.dedup();
        let infos: Vec<ProcInfo> = pids.into_iter().filter_map(proc::read).collect();
        let threads = infos.iter().map(|i| i.threads).sum();
        let mut procs: Vec<ProcId> = infos.into_iter().map(|i| i.id).collect();
        procs.sort();
        procs.dedup();
        let problem = procs
            .is_empty()
            .then(|| format!("the cgroup {} holds no process", dir.display()));
        Located {
            procs,
            cgroup: Some(dir),
            problem,
            scanned: false,
            threads: Some(threads),
        }
    }

    fn by_pidfile(&mut self, path: &Path) -> Located {
        let main = match std::fs::read_to_string(path) {
            Err(e) => {
                self.known.clear();
                return Located {
                    problem: Some(format!("cannot read pidfile {}: {e}", path.display())),
                    ..Located::default()
                };
            }
            Ok(text) => match text.trim().parse::<i32>() {
                Ok(pid) if pid > 0 => pid,
                _ => {
                    self.known.clear();
                    return Located {
                        problem: Some(format!(
                            "pidfile {} does not hold a pid (it holds \"{}\")",
                            path.display(),
                            text.trim().chars().take(40).collect::<String>()
                        )),
                        ..Located::default()
                    };
                }
            },
        };
        let Some(main) = proc::read(main) else {
            self.known.clear();
            return Located {
                problem: Some(format!(
                    "pidfile {} names pid {main}, which is not running (stale pidfile)",
                    path.display()
                )),
                ..Located::default()
            };
        };
        // Descendants: the kernel's children lists if present, else the table walk on schedule.
        let mut scanned = false;
        let mut threads = None;
        let descendants = if let Some((d, t)) = descendants_from_children_files(&main) {
            threads = Some(t);
            d
        } else {
            let main_changed = self.known.first() != Some(&main.id);
            let vanished = self.known.iter().skip(1).any(|id| !proc::alive(*id));
            self.ticks_since_scan += 1;
            if main_changed || vanished || self.ticks_since_scan >= self.rescan_every {
                self.ticks_since_scan = 0;
                scanned = true;
                proc::descendants(&proc::scan(), main.id.pid)
            } else {
                self.known.iter().skip(1).copied().collect()
            }
        };
        let mut procs = vec![main.id];
        procs.extend(descendants);
        self.known = procs.clone();
        Located {
            procs,
            cgroup: None,
            problem: None,
            scanned,
            threads,
        }
    }

    fn by_scan(&mut self) -> Located {
        self.ticks_since_scan += 1;
        // Checking the known processes reads their stat: keep their thread counts.
        let mut known_threads = 0;
        let vanished = !self.known.iter().all(|id| match proc::read_same(*id) {
            Some(info) => {
                known_threads += info.threads;
                true
            }
            None => false,
        });
        let due = self.ticks_since_scan >= self.rescan_every;
        let missing = self.known.is_empty();
        if vanished {
            self.eager_ticks = self.rescan_every;
        }
        let eager = missing && self.eager_ticks > 0;
        if !(self.first || vanished || due || eager) {
            return Located {
                procs: self.known.clone(),
                threads: Some(known_threads),
                ..Located::default()
            };
        }
        self.eager_ticks = self.eager_ticks.saturating_sub(1);
        self.ticks_since_scan = 0;
        let table = proc::scan();
        let mut threads = 0;
        let mut procs: Vec<ProcId> = table
            .iter()
            .filter(|info| info.id.pid != self.own_pid && self.matches(info))
            .inspect(|info| threads += info.threads)
            .map(|info| info.id)
            .collect();
        // Main process first: the earliest started.
        procs.sort_by_key(|id| (id.start, id.pid));
        self.known = procs.clone();
        let problem = procs
            .is_empty()
            .then(|| format!("no running process has {}", self.finder));
        Located {
            procs,
            cgroup: None,
            problem,
            scanned: true,
            threads: Some(threads),
        }
    }

    fn matches(&self, info: &ProcInfo) -> bool {
        match &self.finder {
            Finder::ProcessName(name) => {
                if info.comm == *name {
                    return true;
                }
                // comm is cut at 15 bytes; then compare the start and argv[0].
                name.len() > 15
                    && name.as_bytes().get(..15) == Some(info.comm.as_bytes())
                    && proc::argv0_name(info.id.pid).as_deref() == Some(name.as_str())
            }
            Finder::Cmdline(re) => proc::cmdline(info.id.pid)
                .is_some_and(|line| !line.is_empty() && re.is_match(&line)),
            Finder::SystemdUnit(_) | Finder::Pidfile(_) => false,
        }
    }
}

fn read_procs_recursive(dir: &Path, out: &mut Vec<i32>, depth: u32) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(
            text.split_whitespace()
                .filter_map(|s| s.parse::<i32>().ok()),
        );
    }
    if depth >= 8 {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                read_procs_recursive(&entry.path(), out, depth + 1);
            }
        }
    }
}

/// The descendants of `root` from the kernel's children files, with the threads of `root` and of
/// them summed; `None` when the kernel lacks those files.
fn descendants_from_children_files(root: &ProcInfo) -> Option<(Vec<ProcId>, u64)> {
    // The kernel lacks the children files when the root's own is missing; a child that exits
    // during the walk just has no children to list.
    let mut stack = vec![proc::children_of(root.id.pid, root.threads)?];
    let mut found: Vec<ProcId> = Vec::new();
    let mut threads = root.threads;
    while let Some(children) = stack.pop() {
        for child in children {
            if let Some(info) = proc::read(child) {
                if found.len() < 100_000 && !found.contains(&info.id) {
                    found.push(info.id);
                    threads += info.threads;
                    stack.push(proc::children_of(child, info.threads).unwrap_or_default());
                }
            }
        }
    }
    Some((found, threads))
}
