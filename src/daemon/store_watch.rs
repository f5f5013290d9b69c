//! Is the store file still the one being written, and is it sound?
//!
//! SQLite keeps writing into a file that was deleted (the open descriptor keeps the inode alive)
//! and happily reports success: everything written after an `rm state.db*` is lost at the next
//! start. A file overwritten in place (a bad restore, a stray `dd`) is only noticed when a page
//! is read. [`StoreWatch`] catches both: the file's identity (device and inode) is compared with
//! the one opened on every check, and `PRAGMA quick_check` runs on its own read-only connection
//! every [`QUICK_CHECK_EVERY`] on the blocking pool. What it finds is reported by the daemon
//! everywhere (log, `/healthz`, the status page, `sipwatch_store_ok`).
//!
//! It does not repair anything: after a deletion the daemon starts a new file at the same path
//! (so what follows is kept), and a failed check is left to the operator.

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::task::JoinHandle;

/// How often the integrity check runs.
pub const QUICK_CHECK_EVERY: Duration = Duration::from_secs(20);

/// Watches one store file.
pub struct StoreWatch {
    path: PathBuf,
    identity: Option<(u64, u64)>,
    last_check: Option<Instant>,
    running: Option<JoinHandle<Result<(), String>>>,
}

impl StoreWatch {
    /// Remembers the identity of the file at `path` now (call right after opening it).
    pub fn new(path: &Path) -> StoreWatch {
        StoreWatch {
            path: path.to_path_buf(),
            identity: identity(path),
            last_check: None,
            running: None,
        }
    }

    /// Why the file at the path is not the one opened (deleted, replaced); None if it is.
    pub fn identity_problem(&self) -> Option<String> {
        let opened = self.identity?;
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "the store file {} was deleted while in use; what was written since is lost",
                self.path.display()
            )),
            Err(e) => Some(format!(
                "cannot stat the store file {}: {e}",
                self.path.display()
            )),
            Ok(m) if (m.dev(), m.ino()) != opened => Some(format!(
                "the store file {} was replaced by another file while in use",
                self.path.display()
            )),
            Ok(_) => None,
        }
    }

    /// Starts an integrity check when one is due; returns the result of one that finished.
    pub fn poll_quick_check(&mut self, now: Instant) -> Option<Result<(), String>> {
        if let Some(handle) = &self.running {
            if !handle.is_finished() {
                return None;
            }
            let handle = self.running.take()?;
            // The task is finished: this does not wait.
            let result = futures_now(handle);
            return Some(result);
        }
        if self
            .last_check
            .is_some_and(|at| now.duration_since(at) < QUICK_CHECK_EVERY)
        {
            return None;
        }
        self.last_check = Some(now);
        let path = self.path.clone();
        self.running = Some(tokio::task::spawn_blocking(move || quick_check(&path)));
        None
    }
}

/// The output of a finished task.
fn futures_now(handle: JoinHandle<Result<(), String>>) -> Result<(), String> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut handle = handle;
    match std::pin::Pin::new(&mut handle).poll(&mut cx) {
        std::task::Poll::Ready(Ok(result)) => result,
        std::task::Poll::Ready(Err(e)) => Err(format!("the integrity check did not finish: {e}")),
        std::task::Poll::Pending => Ok(()),
    }
}

/// Whether this process can create files in the folder of `path` (where SQLite also puts its
/// `-wal` and `-shm` files): a probe file is created and removed. `what` names the setting.
pub fn check_writable(path: &Path, what: &str) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let probe = dir.join(format!(".sipwatch-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!(
            "{what} {}: cannot create files in {} ({e}); sipwatch run writes there (the file \
             and its -wal/-shm companions): make the folder writable by the user running \
             sipwatch, or choose another path",
            path.display(),
            dir.display()
        )),
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// `PRAGMA quick_check` on a fresh read-only connection: Ok, or what it found.
pub fn quick_check(path: &Path) -> Result<(), String> {
    let fail = |e: rusqlite::Error| {
        format!(
            "the store file {} failed its integrity check: {e}; stop sipwatch, move the file \
             away (or restore a backup) and start again",
            path.display()
        )
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    let mut stmt = conn.prepare("PRAGMA quick_check(5)").map_err(fail)?;
    let found: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(fail)?
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    if found.len() == 1 && found[0] == "ok" {
        return Ok(());
    }
    Err(format!(
        "the store file {} failed its integrity check: {}; stop sipwatch, move the file away (or \
         restore a backup) and start again",
        path.display(),
        found.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_replacement_and_corruption_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        let watch = StoreWatch::new(&path);
        assert_eq!(watch.identity_problem(), None);
        assert_eq!(quick_check(&path), Ok(()));
        drop(conn);

        std::fs::write(dir.path().join("other.db"), vec![0xA5u8; 8192]).unwrap();
        std::fs::rename(dir.path().join("other.db"), &path).unwrap();
        assert!(watch.identity_problem().unwrap().contains("replaced"));
        assert!(quick_check(&path).is_err(), "not a database");
        std::fs::remove_file(&path).unwrap();
        assert!(watch.identity_problem().unwrap().contains("deleted"));
    }
}
