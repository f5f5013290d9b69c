//! Finding the processes of one service, tick after tick, cheaply.
//!
//! Every known process is held open ([`ProcHandle`]) and read once per tick. That read (its
//! `smaps_rollup`, wanted every tick anyway) is also what proves it alive: a process that exited or
//! is a zombie fails it. So following a service whose processes do not change costs nothing beyond
//! sampling them; new processes are looked for as follows.
//!
//! - A systemd unit: its cgroup's `cgroup.procs` (sub-cgroups included), read every tick; only pids
//!   not known yet are opened.
//! - A pidfile: the file is read again when its `stat` changed (or every `rescan_every`-th tick);
//!   the kernel's children lists of the main process and of every known process that has children
//!   are read every tick (one `pread` each), those of all known processes every `rescan_every`-th
//!   tick (a grandchild forked by a process that had none is found then). A new main process, a
//!   change in those lists, or a known process gone makes the locator walk the descendants again.
//!   Without the kernel's children files, that walk is a walk of all of `/proc`, made every
//!   `rescan_every` ticks. The pid alone does not identify the process: if the process behind it
//!   has another start time (`/proc/PID/stat`) than the one first found under the same pidfile,
//!   or started after the pidfile was written, the pid was reused and the pidfile is stale.
//! - A process name or command line: a walk of all of `/proc` every `rescan_every` ticks, or at
//!   once when a known process vanished (a restart replaces every pid; while the service is then
//!   missing, it is searched for on every tick for a while).
//!
//! This module only says which processes belong to the service now, and what they read; deciding
//! whether that is a restart is [`super::presence`]'s job.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::Finder;
use super::handle::ProcHandle;
use super::proc::{self, MemoryTotals, ProcFigures, ProcId, ProcInfo, ProcReading};

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
    /// The figures of `procs`, summed from this tick's read of each (the read that found them
    /// alive).
    pub figures: ProcFigures,
}

/// Finds a service's processes; keep one per service and call [`Locator::locate`] once per tick.
pub struct Locator {
    finder: Finder,
    tracking: Tracking,
}

/// What the locator remembers from tick to tick.
struct Tracking {
    cgroup_root: PathBuf,
    rescan_every: u32,
    /// The longest a process's PSS is taken from an earlier read while its `statm` is unchanged.
    pss_every: Duration,
    /// The known processes, main process first when known.
    tracked: Vec<Tracked>,
    ticks_since_scan: u32,
    /// Ticks left during which a missing service is searched for on every tick (right after its
    /// processes vanished: a restart brings new ones within seconds).
    eager_ticks: u32,
    /// A known process was found gone after this tick's walk: walk again at the next tick.
    walk_next: bool,
    pidfile: PidfileCache,
    first: bool,
    own_pid: i32,
}

/// A known process.
struct Tracked {
    handle: ProcHandle,
    /// This tick's reading, once read.
    reading: Option<ProcReading>,
    /// This tick's memory, between the two halves of the read.
    memory: Option<Option<MemoryTotals>>,
    /// The children seen at the last walk (sorted), for the processes of a pidfile service.
    children: Option<Vec<i32>>,
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

/// What a finder's step found, before the processes are listed.
#[derive(Default)]
struct Found {
    cgroup: Option<PathBuf>,
    problem: Option<String>,
    scanned: bool,
}

impl Locator {
    /// Re-reads `smaps_rollup` of a process whose `statm` is unchanged only every `pss_every`
    /// (see [`ProcHandle::read_memory`]); zero reads it every tick.
    pub fn with_pss_every(mut self, pss_every: Duration) -> Self {
        self.tracking.pss_every = pss_every;
        self
    }

    /// A locator for `finder`; `cgroup_root` is the cgroup v2 mount.
    pub fn new(finder: Finder, cgroup_root: PathBuf, rescan_every: u32) -> Self {
        Locator {
            finder,
            tracking: Tracking {
                cgroup_root,
                rescan_every: rescan_every.max(1),
                pss_every: super::config::DEFAULT_PSS_EVERY,
                tracked: Vec::new(),
                ticks_since_scan: 0,
                eager_ticks: 0,
                walk_next: false,
                pidfile: PidfileCache::default(),
                first: true,
                own_pid: std::process::id() as i32,
            },
        }
    }

    /// The processes of the service now, with their figures.
    pub fn locate(&mut self) -> Located {
        let t = &mut self.tracking;
        for tracked in &mut t.tracked {
            tracked.reading = None;
        }
        let found = match &self.finder {
            Finder::SystemdUnit(unit) => t.by_cgroup(unit),
            Finder::Pidfile(path) => t.by_pidfile(path),
            Finder::ProcessName(_) | Finder::Cmdline(_) => t.by_scan(&self.finder),
        };
        t.first = false;
        let mut figures = ProcFigures::default();
        let mut procs = Vec::with_capacity(t.tracked.len());
        for tracked in &t.tracked {
            procs.push(tracked.handle.id());
            if let Some(reading) = &tracked.reading {
                figures.add(reading);
            }
        }
        Located {
            procs,
            cgroup: found.cgroup,
            problem: found.problem,
            scanned: found.scanned,
            figures,
        }
    }
}

impl Tracking {
    /// Reads every known process not read yet this tick; drops those gone. Returns whether any was.
    /// Memory first for all of them, then their counts (see [`ProcHandle::read_counts`]).
    fn read_all(&mut self) -> bool {
        let before = self.tracked.len();
        let pss_every = self.pss_every;
        self.tracked.retain_mut(|t| {
            if t.reading.is_some() {
                return true;
            }
            t.memory = t.handle.read_memory(pss_every);
            t.memory.is_some()
        });
        self.tracked.retain_mut(|t| {
            if let Some(memory) = t.memory.take() {
                t.reading = t.handle.read_counts(memory);
                return t.reading.is_some();
            }
            true
        });
        self.tracked.len() < before
    }

    fn take_tracked(&mut self) -> HashMap<i32, Tracked> {
        self.tracked
            .drain(..)
            .map(|t| (t.handle.id().pid, t))
            .collect()
    }

    fn by_cgroup(&mut self, unit: &str) -> Found {
        let dir = self.cgroup_root.join("system.slice").join(unit);
        if !dir.join("cgroup.procs").exists() {
            self.tracked.clear();
            return Found {
                problem: Some(format!(
                    "no cgroup at {} (the unit is not running, or the host does not use cgroup v2)",
                    dir.display()
                )),
                ..Found::default()
            };
        }
        let mut pids = Vec::new();
        read_procs_recursive(&dir, &mut pids, 0);
        pids.sort_unstable();
        pids.dedup();
        let unchanged = pids.len() == self.tracked.len()
            && pids
                .iter()
                .zip(&self.tracked)
                .all(|(pid, t)| *pid == t.handle.id().pid);
        if !unchanged {
            let mut old = self.take_tracked();
            self.tracked = pids
                .into_iter()
                .filter_map(|pid| adopt(&mut old, pid, None, None))
                .collect();
            self.tracked.sort_by_key(|t| t.handle.id());
        }
        // A process gone is dropped now; a pid taken by a new process shows in the next list.
        self.read_all();
        let problem = self
            .tracked
            .is_empty()
            .then(|| format!("the cgroup {} holds no process", dir.display()));
        Found {
            cgroup: Some(dir),
            problem,
            scanned: false,
        }
    }

    fn by_pidfile(&mut self, path: &Path) -> Found {
        self.ticks_since_scan += 1;
        let due = self.ticks_since_scan >= self.rescan_every;
        if due {
            self.ticks_since_scan = 0;
        }
        let mut main = match self.pidfile.read(path, due) {
            Ok(pid) => pid,
            Err(problem) => {
                self.tracked.clear();
                return Found {
                    problem: Some(problem),
                    ..Found::default()
                };
            }
        };
        let main_known = self
            .tracked
            .first()
            .is_some_and(|t| t.handle.id().pid == main);
        let mut walk = self.first
            || self.walk_next
            || !main_known
            || (due && !proc::has_children_files())
            || self.children_changed(due);
        let (mut walked, mut scanned) = (false, false);
        loop {
            if walk {
                self.walk_next = false;
                walked = true;
                match self.walk(main) {
                    Ok(table) => scanned |= table,
                    Err(problem) => {
                        self.tracked.clear();
                        return Found {
                            problem: Some(format!("pidfile {}{problem}", path.display())),
                            ..Found::default()
                        };
                    }
                }
            }
            let vanished = self.read_all();
            let main_alive = self
                .tracked
                .first()
                .is_some_and(|t| t.handle.id().pid == main);
            if (vanished || !main_alive) && !walked {
                // The pidfile may name a new main process already.
                match self.pidfile.read(path, true) {
                    Ok(pid) => main = pid,
                    Err(problem) => {
                        self.tracked.clear();
                        return Found {
                            problem: Some(problem),
                            ..Found::default()
                        };
                    }
                }
                walk = true;
                continue;
            }
            if !main_alive {
                self.tracked.clear();
                return Found {
                    problem: Some(format!(
                        "pidfile {} names pid {main}, which is not running (stale pidfile)",
                        path.display()
                    )),
                    scanned,
                    ..Found::default()
                };
            }
            // The pid alone is not the process: a pid reused by a stranger is a stale pidfile.
            if let Some(problem) = self
                .tracked
                .first()
                .and_then(|t| self.pidfile.stranger(t.handle.id(), path))
            {
                self.tracked.clear();
                return Found {
                    problem: Some(problem),
                    scanned,
                    ..Found::default()
                };
            }
            // Gone right after the walk: its pid may be someone's child by now; look next tick.
            self.walk_next |= vanished;
            return Found {
                scanned,
                ..Found::default()
            };
        }
    }

    /// Whether a known process has other children than at the last walk (or cannot tell any
    /// more). Checked on every tick: the main process and the processes that had children; on a
    /// `due` tick, every known process.
    fn children_changed(&mut self, due: bool) -> bool {
        self.tracked.iter_mut().enumerate().any(|(i, t)| {
            let Some(before) = &t.children else {
                return false;
            };
            if !(due || i == 0 || !before.is_empty()) {
                return false;
            }
            let Some(mut now) = t.handle.children() else {
                return true;
            };
            now.sort_unstable();
            now != *before
        })
    }

    /// Walks the descendants of `main` again, keeping the known processes' handles. Returns whether
    /// that took a walk of all of `/proc`; the error completes "pidfile PATH".
    fn walk(&mut self, main: i32) -> Result<bool, String> {
        let Some(info) = proc::read(main) else {
            return Err(format!(
                " names pid {main}, which is not running (stale pidfile)"
            ));
        };
        let mut old = self.take_tracked();
        let Some(root) = adopt(&mut old, main, Some(info.id), None) else {
            return Err(format!(" names pid {main}, which just exited"));
        };
        self.tracked.push(root);
        if !proc::has_children_files() {
            let table = proc::scan();
            for id in proc::descendants(&table, main) {
                if let Some(t) = adopt(&mut old, id.pid, Some(id), None) {
                    self.tracked.push(t);
                }
            }
            return Ok(true);
        }
        // Breadth first through the kernel's children files.
        let mut seen = std::collections::HashSet::from([main]);
        let mut next = 0;
        while next < self.tracked.len() && self.tracked.len() < 100_000 {
            let handle = &mut self.tracked[next].handle;
            let pid = handle.id().pid;
            let mut children = handle.children().unwrap_or_default();
            children.sort_unstable();
            for &child in &children {
                if seen.insert(child) {
                    if let Some(t) = adopt(&mut old, child, None, Some(pid)) {
                        self.tracked.push(t);
                    }
                }
            }
            self.tracked[next].children = Some(children);
            next += 1;
        }
        Ok(false)
    }

    fn by_scan(&mut self, finder: &Finder) -> Found {
        self.ticks_since_scan += 1;
        let missing = self.tracked.is_empty();
        let vanished = self.read_all();
        let due = self.ticks_since_scan >= self.rescan_every;
        if vanished {
            self.eager_ticks = self.rescan_every;
        }
        let eager = missing && self.eager_ticks > 0;
        let scanned = self.first || vanished || due || eager;
        if scanned {
            self.eager_ticks = self.eager_ticks.saturating_sub(1);
            self.ticks_since_scan = 0;
            let table = proc::scan();
            let mut matched: Vec<&ProcInfo> = table
                .iter()
                .filter(|info| info.id.pid != self.own_pid && matches(finder, info))
                .collect();
            // Main process first: the earliest started.
            matched.sort_by_key(|info| (info.id.start, info.id.pid));
            let mut old = self.take_tracked();
            self.tracked = matched
                .into_iter()
                .filter_map(|info| adopt(&mut old, info.id.pid, Some(info.id), None))
                .collect();
            self.read_all();
        }
        let problem = self
            .tracked
            .is_empty()
            .then(|| format!("no running process has {finder}"));
        Found {
            problem,
            scanned,
            ..Found::default()
        }
    }
}

/// The known process `pid` (if it is `expect`), else the process `pid` opened now (if it is
/// `expect`, or a child of `parent`); `None` if it is gone.
fn adopt(
    old: &mut HashMap<i32, Tracked>,
    pid: i32,
    expect: Option<ProcId>,
    parent: Option<i32>,
) -> Option<Tracked> {
    if let Some(known) = old.remove(&pid) {
        if expect.is_none_or(|id| id == known.handle.id()) {
            return Some(known);
        }
    }
    let (handle, info) = ProcHandle::open(pid)?;
    if expect.is_some_and(|id| id != info.id) || parent.is_some_and(|p| p != info.ppid) {
        return None;
    }
    Some(Tracked {
        handle,
        reading: None,
        memory: None,
        children: None,
    })
}

fn matches(finder: &Finder, info: &ProcInfo) -> bool {
    match finder {
        Finder::ProcessName(name) => {
            if info.comm == *name {
                return true;
            }
            // comm is cut at 15 bytes; then compare the start and argv[0].
            name.len() > 15
                && name.as_bytes().get(..15) == Some(info.comm.as_bytes())
                && proc::argv0_name(info.id.pid).as_deref() == Some(name.as_str())
        }
        Finder::Cmdline(re) => {
            proc::cmdline(info.id.pid).is_some_and(|line| !line.is_empty() && re.is_match(&line))
        }
        Finder::SystemdUnit(_) | Finder::Pidfile(_) => false,
    }
}

/// The pid a pidfile named at its last read, with the file's identity and times then: while they
/// do not change, neither did the pid, and one `stat` replaces an open, two reads and a close.
#[derive(Default)]
struct PidfileCache {
    stamp: Option<[i64; 7]>,
    pid: i32,
    /// The process (pid and start time) first found under the current stamp.
    owner: Option<ProcId>,
}

/// A process that started this long after its pidfile was written did not write it.
const PIDFILE_SLACK_SECS: f64 = 5.0;

impl PidfileCache {
    /// The pid `path` names (read again when the file changed, or when `force`d).
    fn read(&mut self, path: &Path, force: bool) -> Result<i32, String> {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read pidfile {}: {e}", path.display()))?;
        let stamp = [
            meta.dev() as i64,
            meta.ino() as i64,
            meta.len() as i64,
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
        ];
        if !force && self.stamp == Some(stamp) {
            return Ok(self.pid);
        }
        if self.stamp != Some(stamp) {
            self.owner = None;
        }
        self.stamp = None;
        // Read after the stat: a change in between shows as a new stamp at the next tick.
        let pid = read_pidfile(path)?;
        self.stamp = Some(stamp);
        self.pid = pid;
        Ok(pid)
    }
}

impl PidfileCache {
    /// Why `main` (the process the pidfile's pid leads to now) is not the process the pidfile
    /// was written for: the pid is the same but the start time is not the one seen before under
    /// the same pidfile, or the process started after the file was last written. `None`: it is.
    fn stranger(&mut self, main: ProcId, path: &Path) -> Option<String> {
        let stale = |why: &str| {
            format!(
                "pidfile {} names pid {}, but {why}: the pid was reused by another process and \
                 the service is not running (stale pidfile)",
                path.display(),
                main.pid
            )
        };
        if let Some(owner) = self.owner {
            if owner.pid == main.pid && owner.start != main.start {
                return Some(stale(
                    "that process is not the one seen before (start time differs)",
                ));
            }
        }
        if let (Some(stamp), Some(started)) = (self.stamp, proc::start_unix(main)) {
            let written = stamp[3] as f64 + stamp[4] as f64 / 1e9;
            if started > written + PIDFILE_SLACK_SECS {
                return Some(stale(&format!(
                    "that process started {:.0} s after the pidfile was written",
                    started - written
                )));
            }
        }
        self.owner = Some(main);
        None
    }
}

/// The pid a pidfile names, or why there is none.
fn read_pidfile(path: &Path) -> Result<i32, String> {
    // A plain read of a small file (`read_to_string` would ask for its size first).
    let mut bytes = [0u8; 64];
    let mut len = 0;
    let read = std::fs::File::open(path).and_then(|mut file| {
        while len < bytes.len() {
            match file.read(&mut bytes[len..])? {
                0 => break,
                n => len += n,
            }
        }
        Ok(())
    });
    if let Err(e) = read {
        return Err(format!("cannot read pidfile {}: {e}", path.display()));
    }
    let text = String::from_utf8_lossy(&bytes[..len]);
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(format!(
            "pidfile {} does not hold a pid (it holds \"{}\")",
            path.display(),
            text.trim().chars().take(40).collect::<String>()
        )),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn children(pid: i32) -> Vec<i32> {
        proc::children_of(pid, 1).unwrap_or_default()
    }

    #[test]
    fn a_rewritten_pidfile_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid");
        let mut cache = PidfileCache::default();
        std::fs::write(&path, "1234\n").unwrap();
        assert_eq!(cache.read(&path, false), Ok(1234));
        assert_eq!(cache.read(&path, false), Ok(1234));
        // Rewritten in place (a same-length rewrite is told by its times, which a test cannot
        // count on changing within a clock tick on every kernel).
        std::fs::write(&path, "56789\n").unwrap();
        assert_eq!(cache.read(&path, false), Ok(56789));
        std::fs::write(&path, "1234\n").unwrap();
        assert_eq!(cache.read(&path, true), Ok(1234), "forced");
        // Replaced by a rename.
        std::fs::write(dir.path().join("tmp"), "4321\n").unwrap();
        std::fs::rename(dir.path().join("tmp"), &path).unwrap();
        assert_eq!(cache.read(&path, false), Ok(4321));
        std::fs::remove_file(&path).unwrap();
        assert!(cache
            .read(&path, false)
            .unwrap_err()
            .contains("cannot read pidfile"));
    }

    #[test]
    fn pidfile_descendants_come_and_go_through_held_files() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("go");
        let c_fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
        // The main process: a child that forks a grandchild when told (through the fifo), and a
        // second child of its own when told (through its stdin).
        let script = format!(
            "sh -c 'read x < {}; sleep 30 & wait' & read y; sleep 30 & read z",
            fifo.display()
        );
        let mut main = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let main_pid = main.id() as i32;
        let pidfile = dir.path().join("main.pid");
        std::fs::write(&pidfile, format!("{main_pid}\n")).unwrap();
        let mut locator = Locator::new(Finder::Pidfile(pidfile), "/sys/fs/cgroup".into(), 3);
        wait_for("the first child", || children(main_pid).len() == 1);
        let inner = children(main_pid)[0];

        let located = locator.locate();
        assert_eq!(
            located.procs.iter().map(|p| p.pid).collect::<Vec<_>>(),
            vec![main_pid, inner]
        );
        let f = located.figures;
        assert_eq!(
            (f.memory.processes, f.fds.processes, f.threads),
            (2, 2, 2),
            "every process read once: {f:?}"
        );
        assert!(f.memory.pss > 0 && f.memory.pss <= f.memory.rss, "{f:?}");
        assert!(f.fds.open >= 2 * 3, "{f:?}");

        // A new child of the main process: at the next tick.
        main.stdin.as_mut().unwrap().write_all(b"y\n").unwrap();
        wait_for("the second child", || children(main_pid).len() == 2);
        let second = *children(main_pid).iter().find(|p| **p != inner).unwrap();
        let located = locator.locate();
        assert_eq!(located.procs.len(), 3, "{:?}", located.procs);
        assert!(located.procs.iter().any(|p| p.pid == second));

        // A grandchild forked by a process that had no children: within rescan_every ticks.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .unwrap()
            .write_all(b"go\n")
            .unwrap();
        wait_for("the grandchild", || children(inner).len() == 1);
        let grandchild = children(inner)[0];
        let found_at = (1..=3).find(|_| locator.locate().procs.iter().any(|p| p.pid == grandchild));
        assert!(found_at.is_some(), "grandchild not found within 3 ticks");

        // The grandchild dies: its parent reaps it and exits, left a zombie (the main process
        // does not reap it): both are gone at the next tick.
        unsafe {
            libc::kill(grandchild, libc::SIGKILL);
        }
        wait_for("the inner shell a zombie", || {
            proc::read(grandchild).is_none() && proc::read(inner).is_none()
        });
        let located = locator.locate();
        assert_eq!(
            located.procs.iter().map(|p| p.pid).collect::<Vec<_>>(),
            vec![main_pid, second],
            "zombies and exited processes are gone"
        );
        assert_eq!(located.figures.memory.processes, 2);

        // The main process exits: the pidfile is stale.
        main.kill().unwrap();
        main.wait().unwrap();
        let located = locator.locate();
        assert!(located.procs.is_empty());
        let problem = located.problem.unwrap_or_default();
        assert!(problem.contains("stale pidfile"), "{problem}");
        unsafe {
            libc::kill(second, libc::SIGKILL);
        }
    }
}
