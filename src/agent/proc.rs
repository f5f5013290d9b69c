//! Reading the process table: who a process is (pid and start time, so a reused pid is never taken
//! for the old process), its name, parent and command line, and a full scan of `/proc`.
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
}
