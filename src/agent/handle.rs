//! A watched process's `/proc` files, held open from tick to tick, and its figures read through
//! them: memory (RSS, PSS, USS from `smaps_rollup`), open descriptors and their soft limit, threads.
//!
//! Why held: opening `/proc/PID/NAME` walks the path every time (a sixth of what a small process's
//! `smaps_rollup` read costs, and most of what the other reads cost); a held file is read again
//! with one `pread`, or asked with one `fstat`. Per process this holds `smaps_rollup` (read with
//! `pread`), `fd` and `task` (`O_PATH` handles: the size of `fd` is the number of open descriptors
//! since Linux 6.2, the link count of `task` is 2 plus the number of threads), and, for a process
//! whose children are watched, `task/PID/children`. Whatever cannot be held (no permission, the
//! agent's descriptor limit reached) is read by path, as the agent always did.
//!
//! Held files are bound to this very process, which makes the read a liveness check for free: once
//! it exits, they fail instead of reading a later process that got the same pid, and the held
//! `smaps_rollup` fails as soon as the process is a zombie (or has `exec`'d: it still points at the
//! old address space; then it is opened again). This module does not decide which processes belong
//! to a service ([`super::locator`] does) nor what the figures mean ([`super::samplers`]); the parsers and the
//! reads by path are [`super::proc`].

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use super::proc::{self, MemoryTotals, ProcId, ProcInfo, ProcReading};

/// The open `/proc` files of one process.
#[derive(Debug)]
pub struct ProcHandle {
    id: ProcId,
    smaps: Option<File>,
    /// `statm`, read every tick: while it stays the same, so do the page counts, and the last
    /// `smaps_rollup` figures stand (for at most `pss_every`).
    statm: Option<File>,
    /// The `statm` text at the last `smaps_rollup` read, the figures it gave, and when.
    last_statm: Vec<u8>,
    last_memory: Option<(MemoryTotals, Instant)>,
    fd_dir: Option<File>,
    task_dir: Option<File>,
    children: Option<File>,
    /// Threads at the last read.
    threads: u64,
}

thread_local! {
    /// The buffer held files are read into, reused from read to read.
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 4096]);
}

impl ProcHandle {
    /// Opens the files of process `pid`, then reads who it is: `None` if it is gone or a zombie.
    ///
    /// The identity is read after the files are opened: a process alive then held its pid all
    /// along, so the files are its own. (Had the pid changed hands in between, the files belong to
    /// the exited process and the first read says it is gone.)
    pub fn open(pid: i32) -> Option<(ProcHandle, ProcInfo)> {
        let task_dir = open_path(pid, "task");
        let smaps = open_read(pid, "smaps_rollup");
        let statm = open_read(pid, "statm");
        let fd_dir = open_path(pid, "fd");
        let info = proc::read(pid)?;
        let handle = ProcHandle {
            id: info.id,
            smaps,
            statm,
            last_statm: Vec::new(),
            last_memory: None,
            fd_dir,
            task_dir,
            children: None,
            threads: info.threads,
        };
        Some((handle, info))
    }

    /// Who the process is.
    pub fn id(&self) -> ProcId {
        self.id
    }

    /// Its threads at the last read (or when opened).
    pub fn threads(&self) -> u64 {
        self.threads
    }

    /// Reads the process's figures; `None` when it is gone (exited, a zombie, or its pid now
    /// another process's).
    pub fn read(&mut self) -> Option<ProcReading> {
        let memory = self.read_memory(Duration::ZERO)?;
        self.read_counts(memory)
    }

    /// The second half of [`ProcHandle::read`], after [`ProcHandle::read_memory`]: descriptors,
    /// their limit and threads. (Reading the memory of all processes first, then their counts,
    /// keeps the page-table walks back to back: measured 5 to 10 % cheaper than interleaved.)
    pub fn read_counts(&mut self, memory: Option<MemoryTotals>) -> Option<ProcReading> {
        let threads = match self.task_dir.as_ref().and_then(|d| d.metadata().ok()) {
            // 2 for the directory itself and its parent, plus one per thread.
            Some(meta) if meta.nlink() > 2 => meta.nlink() - 2,
            // Reaped meanwhile, or no handle: read `stat`.
            _ => proc::read_same(self.id)?.threads,
        };
        self.threads = threads;
        let fds = match &self.fd_dir {
            Some(dir) if proc::fd_size_is_count() => dir.metadata().ok().map(|m| m.size()),
            _ => proc::count_by_listing(self.id.pid),
        };
        Some(ProcReading {
            memory,
            fds,
            nofile: proc::soft_nofile(self.id.pid),
            threads,
        })
    }

    /// The first half of [`ProcHandle::read`]: `Some(memory)` when read, `Some(None)` when alive
    /// but unreadable, `None` when gone.
    ///
    /// `smaps_rollup` (the kernel walks every page table entry: 80 % of the agent's CPU) is read
    /// again only when `statm` changed since the last read, or `pss_every` has passed (PSS also
    /// moves when another process maps or unmaps pages this one shares). Otherwise the last
    /// figures stand: the page counts `statm` shows, RSS among them, are the same. A held `statm`
    /// that reads is also the liveness check (it fails once the process is gone; a zombie's
    /// reads all zero and differs).
    pub fn read_memory(&mut self, pss_every: Duration) -> Option<Option<MemoryTotals>> {
        let ProcHandle {
            statm,
            last_statm,
            last_memory,
            ..
        } = self;
        let mut statm_now = None;
        if let Some(file) = statm.as_ref() {
            statm_now = pread_with(file, |text| {
                let same = !text.is_empty() && text == last_statm.as_slice();
                if !same {
                    last_statm.clear();
                    last_statm.extend_from_slice(text);
                }
                Some(same)
            });
        }
        if statm_now == Some(true) {
            if let Some((totals, at)) = *last_memory {
                if at.elapsed() < pss_every {
                    return Some(Some(totals));
                }
            }
        }
        if statm_now.is_none() {
            self.last_statm.clear();
        }
        self.last_memory = None;
        if let Some(file) = &self.smaps {
            if let Some(totals) = pread_with(file, proc::parse_smaps_rollup) {
                if statm_now.is_some() && totals.rss > 0 {
                    self.last_memory = Some((totals, Instant::now()));
                }
                return Some(Some(totals));
            }
        }
        // The held file failed (the process exited, is a zombie or has exec'd), or there is none
        // (permission, descriptor limit): is it still this very process, and alive?
        let info = proc::read_same(self.id)?;
        self.threads = info.threads;
        // Alive: open it again (after an `exec`, or once the permission or a descriptor is there).
        self.smaps = open_read(self.id.pid, "smaps_rollup");
        self.statm = open_read(self.id.pid, "statm");
        self.last_statm.clear();
        Some(
            self.smaps
                .as_ref()
                .and_then(|file| pread_with(file, proc::parse_smaps_rollup)),
        )
    }

    /// The process's children, from the kernel's children files; `None` when they cannot be read.
    /// A single-threaded process has one such file, held open after the first call.
    pub fn children(&mut self) -> Option<Vec<i32>> {
        if self.threads == 1 {
            if self.children.is_none() {
                self.children = open_read(self.id.pid, &format!("task/{}/children", self.id.pid));
            }
            if let Some(file) = &self.children {
                if let Some(children) = pread_with(file, |text| Some(proc::parse_pids(text))) {
                    return Some(children);
                }
            }
        }
        proc::children_of(self.id.pid, self.threads)
    }
}

/// Raises the agent's own soft descriptor limit to its hard limit (at most 65536): three or four
/// descriptors are held per watched process, and the usual soft limit of 1024 would cap that near
/// 300 processes. (Past the limit, files are read by path instead.) Returns the soft limit now.
pub fn raise_nofile_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`, which we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        let wanted = limit.rlim_max.min(65536);
        if limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = wanted;
            }
        }
    }
    Some(limit.rlim_cur)
}

fn open_read(pid: i32, name: &str) -> Option<File> {
    File::open(format!("/proc/{pid}/{name}")).ok()
}

/// An `O_PATH` handle: enough for `fstat`, no permission to read needed beyond the lookup.
fn open_path(pid: i32, name: &str) -> Option<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(format!("/proc/{pid}/{name}"))
        .ok()
}

/// Reads a held `/proc` file from its start and parses it; `None` when the read fails or gives
/// nothing (the process is gone) or `parse` refuses.
fn pread_with<T>(file: &File, parse: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let mut len = 0;
        loop {
            if len == buf.len() {
                let grown = buf.len() * 2;
                buf.resize(grown, 0);
            }
            match file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
            // `/proc` files come whole in one read when the buffer is large enough.
            if len < buf.len() {
                break;
            }
        }
        parse(&buf[..len])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_statm_keeps_the_figures_and_still_notices_the_end() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep");
        let pid = child.id() as i32;
        // Until the child has exec'd `sleep` and gone to sleep, its memory still moves.
        wait_until(std::time::Instant::now(), "the child to sleep", || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.contains("(sleep)")
                    && stat
                        .rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.starts_with(" S"))
            })
        });
        let (mut handle, _) = ProcHandle::open(pid).expect("open");
        let hour = Duration::from_secs(3600);
        let first = handle.read_memory(hour).expect("alive").expect("readable");
        assert!(first.rss > 0 && first.pss > 0, "{first:?}");
        assert!(
            handle.last_memory.is_some(),
            "figures kept for the next tick"
        );
        // A sleeping process's statm does not move: the kept figures stand.
        let second = handle.read_memory(hour).expect("alive").expect("readable");
        assert_eq!(first, second);
        // Not beyond pss_every: with zero, smaps_rollup is read again.
        let fresh = handle.read_memory(Duration::ZERO).expect("alive");
        assert!(fresh.is_some());
        // A zombie (killed, not reaped) reads as gone, though its figures were kept.
        child.kill().expect("kill");
        let since = std::time::Instant::now();
        wait_until(since, "the zombie to read as gone", || {
            handle.read_memory(hour).is_none()
        });
        child.wait().expect("reap");
        assert!(handle.read_memory(hour).is_none(), "reaped reads as gone");
    }

    /// Waits up to 10 s from `since` for `done`; fails with `what` when it does not happen.
    fn wait_until(since: std::time::Instant, what: &str, mut done: impl FnMut() -> bool) {
        while !done() {
            assert!(
                since.elapsed() < std::time::Duration::from_secs(10),
                "{what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn own_figures_through_held_files() {
        let me = std::process::id() as i32;
        let (mut handle, info) = ProcHandle::open(me).expect("own process");
        assert_eq!(handle.id(), info.id);
        let first = handle.read().expect("alive");
        let m = first.memory.expect("own smaps_rollup");
        assert!(m.rss > 1 << 20 && m.uss <= m.pss && m.pss <= m.rss, "{m:?}");
        let files: Vec<File> = (0..64)
            .map(|_| File::open("/proc/self/stat").unwrap())
            .collect();
        let second = handle.read().expect("alive");
        assert!(
            second.fds.unwrap() >= first.fds.unwrap() + 48,
            "{first:?} -> {second:?}"
        );
        assert!(second.nofile.is_some_and(|l| l >= second.fds.unwrap()));
        drop(files);

        // Threads, of a process whose threads no other test changes: 1 + 4.
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import threading, time\n\
                 for _ in range(4): threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n\
                 time.sleep(30)",
            ])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let start = std::time::Instant::now();
        wait_until(start, "python3 threads", || {
            proc::read(pid).map(|i| i.threads) == Some(5)
        });
        let (mut handle, _) = ProcHandle::open(pid).unwrap();
        assert_eq!(
            handle.read().map(|r| r.threads),
            Some(5),
            "task's link count is the thread count"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_held_handle_says_gone_for_a_zombie_and_an_exited_process_and_follows_exec() {
        // A shell that exec's sleep after a moment: same process, new address space.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x; exec sleep 30"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let (mut handle, _) = ProcHandle::open(pid).unwrap();
        let before = handle.read().expect("alive").memory.expect("readable");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"go\n").unwrap();
        }
        let start = std::time::Instant::now();
        wait_until(start, "sleep not exec'd", || {
            proc::read(pid).is_none_or(|i| i.comm == "sleep")
        });
        let after = handle.read().expect("exec keeps the process");
        assert!(after.memory.is_some_and(|m| m != before), "{after:?}");

        // Killed and not yet reaped: a zombie, gone.
        child.kill().unwrap();
        wait_until(start, "not a zombie yet", || proc::read(pid).is_none());
        assert!(handle.read().is_none(), "a zombie is gone");
        child.wait().unwrap();
        assert!(handle.read().is_none(), "a reaped process is gone");
    }

    #[test]
    fn children_through_the_held_file() {
        let mut parent = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & read x"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = parent.id() as i32;
        let (mut handle, _) = ProcHandle::open(pid).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let kids = loop {
            let kids = handle.children().expect("children files");
            if kids.len() == 2 {
                break kids;
            }
            assert!(std::time::Instant::now() < deadline, "{kids:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        for kid in &kids {
            assert_eq!(proc::read(*kid).unwrap().ppid, pid);
            unsafe {
                libc::kill(*kid, libc::SIGKILL);
            }
        }
        parent.kill().unwrap();
        parent.wait().unwrap();
    }
}
