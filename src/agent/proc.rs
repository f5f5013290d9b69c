//! Every read of `/proc` the agent does, and nothing else: the process table (who a process is:
//! pid and start time, so a reused pid is never taken for the old process; its name, parent and
//! command line; a full scan of `/proc`), and the figures of a process: memory from
//! `smaps_rollup`, open descriptors and their soft limit, threads. A leaf: it imports nothing of
//! the agent. What the figures mean for a gauge is the samplers' business ([`super::samplers`]);
//! holding a process's files open from tick to tick is [`super::handle`]'s, which parses what it
//! reads with the parsers here.
//!
//! These are the only places that list `/proc`; the locator decides how rarely to call [`scan`].
//! Zombies are treated as gone: they hold no memory and no descriptors and cannot be sampled.
//!
//! These reads happen when processes are discovered (a known process is read every tick through
//! its held files, [`super::handle`]); still, a walk may read hundreds. [`read`] is one `open`, one
//! `read` and one `close` of `/proc/PID/stat` (parsed by hand, into a reused buffer), and [`scan`]
//! lists `/proc` once and reads each `stat` that way.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use ::procfs::process::{LimitValue, Process};
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
    /// Threads of the process (`num_threads`), at the time it was read.
    pub threads: u64,
}

thread_local! {
    /// The buffer `/proc` files are read into, reused from read to read.
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
}

/// Reads `/proc/PID/NAME` into a reused buffer and hands it to `parse`; `None` if the file cannot
/// be read (the process is gone, or no permission).
pub fn with_proc_file<T>(
    pid: i32,
    name: &str,
    parse: impl FnOnce(&[u8]) -> Option<T>,
) -> Option<T> {
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        let mut file = std::fs::File::open(format!("/proc/{pid}/{name}")).ok()?;
        // Plain reads until end of file: `read_to_end` on a `File` asks for its size first
        // (`statx` and `lseek`), which `/proc` files do not know anyway.
        loop {
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(4096);
            }
            let len = buf.len();
            let spare = buf.capacity() - len;
            buf.resize(len + spare, 0);
            match file.read(&mut buf[len..]) {
                Ok(0) => {
                    buf.truncate(len);
                    break;
                }
                Ok(n) => buf.truncate(len + n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(len),
                Err(_) => return None,
            }
        }
        parse(&buf)
    })
}

/// Parses the text of `/proc/PID/stat`; `None` for a zombie or a text it cannot read.
pub fn parse_stat(text: &[u8]) -> Option<ProcInfo> {
    // The name is in parentheses and may itself hold spaces and parentheses: cut at the last ')'.
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let pid = std::str::from_utf8(text.get(..open)?)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = String::from_utf8_lossy(text.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    // Fields from the 3rd on (proc(5)): state, ppid, ..., num_threads (20th), ..., starttime (22nd).
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    if matches!(state, "Z" | "X" | "x") {
        return None;
    }
    let ppid = fields.next()?.parse().ok()?;
    let threads: i64 = fields.nth(15)?.parse().ok()?;
    let start = fields.nth(1)?.parse().ok()?;
    Some(ProcInfo {
        id: ProcId { pid, start },
        ppid,
        comm,
        threads: threads.max(0) as u64,
    })
}

/// Reads one process; `None` if it does not exist (any more) or is a zombie.
pub fn read(pid: i32) -> Option<ProcInfo> {
    with_proc_file(pid, "stat", parse_stat)
}

/// This very process (not a later one with the same pid), if it is still alive.
pub fn read_same(id: ProcId) -> Option<ProcInfo> {
    read(id.pid).filter(|info| info.id == id)
}

/// When the process started, in unix seconds: boot time (`btime` of `/proc/stat`) plus its
/// start time in clock ticks. Good to about a second (the boot time is rounded, and a clock
/// stepped since boot shifts it).
pub fn start_unix(id: ProcId) -> Option<f64> {
    static BOOT: std::sync::OnceLock<Option<(f64, f64)>> = std::sync::OnceLock::new();
    let (btime, hz) = (*BOOT.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let btime: f64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (hz > 0).then_some((btime, hz as f64))
    }))?;
    Some(btime + id.start as f64 / hz)
}

/// Whether this very process (not a later one with the same pid) is still alive.
pub fn alive(id: ProcId) -> bool {
    read_same(id).is_some()
}

/// The command line, arguments joined by spaces (empty for kernel threads).
pub fn cmdline(pid: i32) -> Option<String> {
    with_proc_file(pid, "cmdline", |text| {
        let args: Vec<String> = split_args(text)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Some(args.join(" "))
    })
}

/// The executable name from the command line's first argument (for names longer than `comm`'s 15
/// characters).
pub fn argv0_name(pid: i32) -> Option<String> {
    with_proc_file(pid, "cmdline", |text| {
        let first = split_args(text).next()?;
        let name = first.rsplit(|&b| b == b'/').next().unwrap_or(first);
        Some(String::from_utf8_lossy(name).into_owned())
    })
}

/// The arguments of a `cmdline` text (NUL-separated, NUL-terminated).
fn split_args(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.strip_suffix(b"\0")
        .unwrap_or(text)
        .split(|&b| b == 0)
        .filter(|_| !text.is_empty())
}

/// Every live, non-zombie process. This walks all of `/proc`: call it rarely.
pub fn scan() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read)
        .collect()
}

/// Pids in the text of a children file (space-separated).
pub fn parse_pids(text: &[u8]) -> Vec<i32> {
    text.split(u8::is_ascii_whitespace)
        .filter_map(|s| std::str::from_utf8(s).ok()?.parse::<i32>().ok())
        .collect()
}

/// Whether the kernel has the children files (`CONFIG_PROC_CHILDREN`). Asked once.
pub fn has_children_files() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| std::path::Path::new("/proc/thread-self/children").exists())
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
/// (`CONFIG_PROC_CHILDREN`); `None` when it does not. `threads` is the process's thread count as
/// just read: a single-threaded process has one such file, `task/PID/children`, read without
/// listing `task/`.
pub fn children_of(pid: i32, threads: u64) -> Option<Vec<i32>> {
    if threads == 1 {
        let path = format!("task/{pid}/children");
        if let Some(children) = with_proc_file(pid, &path, |text| Some(parse_pids(text))) {
            return Some(children);
        }
        // The process may have started a thread meanwhile: list them below.
    }
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut out = Vec::new();
    let mut any = false;
    for task in tasks.flatten() {
        let name = task.file_name();
        let Some(tid) = name.to_str() else {
            continue;
        };
        let path = format!("task/{tid}/children");
        if let Some(children) = with_proc_file(pid, &path, |text| Some(parse_pids(text))) {
            out.extend(children);
            any = true;
        }
    }
    any.then_some(out)
}

// ---- memory (`smaps_rollup`) ----

/// Memory summed over processes, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryTotals {
    pub rss: u64,
    pub pss: u64,
    pub uss: u64,
    /// Processes whose `smaps_rollup` could be read.
    pub processes: usize,
}

/// One process's figures from the text of its `smaps_rollup` (values in kB); `None` for a text
/// without them (a process that is gone reads as empty).
pub fn parse_smaps_rollup(text: &[u8]) -> Option<MemoryTotals> {
    let mut totals = MemoryTotals {
        processes: 1,
        ..MemoryTotals::default()
    };
    let mut seen = false;
    for line in text.split(|&b| b == b'\n') {
        // Only the lines wanted are parsed; `Pss_Dirty:` and the like are not `Pss:`.
        let (field, rest) = if let Some(rest) = line.strip_prefix(b"Rss:") {
            seen = true;
            (&mut totals.rss, rest)
        } else if let Some(rest) = line.strip_prefix(b"Pss:") {
            (&mut totals.pss, rest)
        } else if let Some(rest) = line
            .strip_prefix(b"Private_Clean:")
            .or_else(|| line.strip_prefix(b"Private_Dirty:"))
        {
            (&mut totals.uss, rest)
        } else {
            continue;
        };
        let digits = rest.trim_ascii_start();
        let end = digits
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(digits.len());
        let kb = digits[..end].iter().fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        *field += kb * 1024;
    }
    seen.then_some(totals)
}

/// Sums the figures over the processes; processes that exited meanwhile are skipped.
pub fn read_memory_totals(procs: &[ProcId]) -> MemoryTotals {
    let mut totals = MemoryTotals::default();
    for id in procs {
        let Some(one) = with_proc_file(id.pid, "smaps_rollup", parse_smaps_rollup) else {
            continue;
        };
        totals.rss += one.rss;
        totals.pss += one.pss;
        totals.uss += one.uss;
        totals.processes += 1;
    }
    totals
}

// ---- descriptors (`fd`, `RLIMIT_NOFILE`) ----

/// Descriptor figures over a service's processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdTotals {
    /// Open descriptors, summed.
    pub open: u64,
    /// The lowest soft `RLIMIT_NOFILE` of the processes (`None` if unlimited or unreadable).
    pub min_limit: Option<u64>,
    /// The most descriptors any one process holds.
    pub max_open: u64,
    /// Processes whose descriptors could be counted.
    pub processes: usize,
}

/// Counts descriptors; processes that exited meanwhile are skipped.
pub fn read_fd_totals(procs: &[ProcId]) -> FdTotals {
    let mut totals = FdTotals::default();
    for id in procs {
        let Some(count) = fd_count(id.pid) else {
            continue;
        };
        totals.open += count;
        totals.max_open = totals.max_open.max(count);
        totals.processes += 1;
        if let Some(soft) = soft_nofile(id.pid) {
            totals.min_limit = Some(totals.min_limit.map_or(soft, |m| m.min(soft)));
        }
    }
    totals
}

/// Open descriptors of a process; `None` if its `fd` directory cannot be read.
fn fd_count(pid: i32) -> Option<u64> {
    if fd_size_is_count() {
        return Some(std::fs::metadata(format!("/proc/{pid}/fd")).ok()?.size());
    }
    count_by_listing(pid)
}

/// Open descriptors of a process, by listing `/proc/PID/fd` (kernels before 6.2, where the
/// directory's size is 0).
pub fn count_by_listing(pid: i32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The soft `RLIMIT_NOFILE` of a process; `None` when unlimited or unreadable.
pub fn soft_nofile(pid: i32) -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit with a null new limit only writes the current one into `limit`, which we own.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut limit) };
    if rc == 0 {
        return (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur);
    }
    // Not allowed (another user's process without CAP_SYS_RESOURCE): the world-readable file.
    match Process::new(pid)
        .ok()?
        .limits()
        .ok()?
        .max_open_files
        .soft_limit
    {
        LimitValue::Value(soft) => Some(soft),
        LimitValue::Unlimited => None,
    }
}

/// Whether the size of `/proc/PID/fd` is the number of open descriptors (Linux 6.2 and later;
/// 0 before). Asked once, of the agent itself, which always has some open.
pub fn fd_size_is_count() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        std::fs::metadata("/proc/self/fd")
            .map(|m| m.size() > 0)
            .unwrap_or(false)
    })
}

// ---- threads ----

/// Sums the threads; processes that exited meanwhile are skipped.
pub fn read_thread_total(procs: &[ProcId]) -> u64 {
    procs
        .iter()
        .filter_map(|id| read(id.pid))
        .map(|info| info.threads)
        .sum()
}

// ---- a service's figures ----

/// What one read of a process gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcReading {
    /// Memory figures; `None` when `smaps_rollup` cannot be read (permission).
    pub memory: Option<MemoryTotals>,
    /// Open descriptors; `None` when they cannot be counted.
    pub fds: Option<u64>,
    /// The soft `RLIMIT_NOFILE`; `None` when unlimited or unreadable.
    pub nofile: Option<u64>,
    /// Threads.
    pub threads: u64,
}

/// Figures summed over a service's processes at one tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcFigures {
    pub memory: MemoryTotals,
    pub fds: FdTotals,
    pub threads: u64,
}

impl ProcFigures {
    /// Adds one process's reading.
    pub fn add(&mut self, reading: &ProcReading) {
        if let Some(m) = reading.memory {
            self.memory.rss += m.rss;
            self.memory.pss += m.pss;
            self.memory.uss += m.uss;
            self.memory.processes += 1;
        }
        if let Some(open) = reading.fds {
            self.fds.open += open;
            self.fds.max_open = self.fds.max_open.max(open);
            self.fds.processes += 1;
            if let Some(soft) = reading.nofile {
                self.fds.min_limit = Some(self.fds.min_limit.map_or(soft, |m| m.min(soft)));
            }
        }
        self.threads += reading.threads;
    }
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
        let procfs_args = procfs::process::Process::myself()
            .unwrap()
            .cmdline()
            .unwrap();
        assert_eq!(cmdline(me.id.pid), Some(procfs_args.join(" ")));
        let first = procfs_args[0].rsplit('/').next().unwrap().to_owned();
        assert_eq!(argv0_name(me.id.pid), Some(first));
        let table = scan();
        assert!(
            table.iter().any(|i| i.id == me.id),
            "the scan finds this process"
        );
        // The hand parser agrees with procfs.
        let stat = procfs::process::Process::myself().unwrap().stat().unwrap();
        assert_eq!(me.id.start, stat.starttime);
        assert_eq!(me.ppid, stat.ppid);
        assert_eq!(me.comm, stat.comm);
        assert!(me.threads >= 1);
    }

    #[test]
    fn stat_with_spaces_and_parentheses_in_the_name() {
        let text =
            b"4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 7 0 123456 \
                     1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let info = parse_stat(text).unwrap();
        assert_eq!(
            info.id,
            ProcId {
                pid: 4242,
                start: 123456
            }
        );
        assert_eq!((info.ppid, info.threads), (1, 7));
        assert_eq!(info.comm, "my (odd) name");
        let zombie = b"9 (z) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0\n";
        assert!(parse_stat(zombie).is_none());
    }

    #[test]
    fn children_of_a_child() {
        let me = read(std::process::id() as i32).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let kids = children_of(me.id.pid, me.threads).expect("kernel children files");
        let kids_listed = children_of(me.id.pid, 2).expect("kernel children files");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            kids.contains(&(child.id() as i32)) || me.threads > 1,
            "{kids:?}"
        );
        assert!(
            kids_listed.contains(&(child.id() as i32)),
            "{kids_listed:?}"
        );
    }

    #[test]
    fn descendants_walk_the_tree() {
        let p = |pid, ppid| ProcInfo {
            id: ProcId { pid, start: 1 },
            ppid,
            comm: String::new(),
            threads: 1,
        };
        let table = vec![p(1, 0), p(10, 1), p(11, 10), p(12, 10), p(13, 11), p(20, 1)];
        let mut d: Vec<i32> = descendants(&table, 10).iter().map(|id| id.pid).collect();
        d.sort();
        assert_eq!(d, vec![11, 12, 13]);
    }

    #[test]
    fn parses_rollup() {
        let text = "55b30b3c4000-7ffc50734000 ---p 00000000 00:00 0 [rollup]\n\
                    Rss:                1728 kB\nPss:                 407 kB\nPss_Dirty:           112 kB\n\
                    Shared_Clean:       1576 kB\nPrivate_Clean:        40 kB\nPrivate_Dirty:       112 kB\n";
        let t = parse_smaps_rollup(text.as_bytes()).unwrap();
        assert_eq!(t.rss, 1728 * 1024);
        assert_eq!(t.pss, 407 * 1024, "Pss_Dirty is not Pss");
        assert_eq!(t.uss, 152 * 1024);
        assert_eq!(
            parse_smaps_rollup(b""),
            None,
            "a process gone reads as empty"
        );
    }

    #[test]
    fn own_process_is_plausible() {
        let me = read(std::process::id() as i32).unwrap();
        let t = read_memory_totals(&[me.id]);
        assert_eq!(t.processes, 1);
        assert!(t.rss > 1 << 20 && t.pss > 0 && t.uss > 0);
        assert!(t.uss <= t.pss && t.pss <= t.rss, "{t:?}");
    }

    #[test]
    fn own_descriptors_and_limit() {
        let me = read(std::process::id() as i32).unwrap();
        let before = read_fd_totals(&[me.id]);
        // Other tests in this process open and close files meanwhile: open many, demand most.
        let files: Vec<std::fs::File> = (0..64)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let after = read_fd_totals(&[me.id]);
        assert!(after.open >= before.open + 48, "{before:?} -> {after:?}");
        assert!(after.min_limit.is_some_and(|l| l >= after.open));
        drop(files);
        // prlimit and /proc/PID/limits agree.
        let from_file = match ::procfs::process::Process::myself()
            .unwrap()
            .limits()
            .unwrap()
            .max_open_files
            .soft_limit
        {
            ::procfs::process::LimitValue::Value(v) => Some(v),
            ::procfs::process::LimitValue::Unlimited => None,
        };
        assert_eq!(soft_nofile(me.id.pid), from_file);
    }
}
