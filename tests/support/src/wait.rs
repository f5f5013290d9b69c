//! Waiting on a condition with a deadline: the only way tests wait. A timeout panics with what
//! was awaited (and, for [`wait_until_or`], a log to read).

use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);

/// Blocks until `cond` holds, polling every 20 ms; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    wait_until_or(what, timeout, String::new, cond);
}

/// Like [`wait_until`], and on timeout shows `context()` (a log) in the panic.
pub fn wait_until_or(
    what: &str,
    timeout: Duration,
    context: impl FnOnce() -> String,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_until`] for async tests: polls with `tokio::time::sleep`, so the runtime keeps
/// running the tasks the condition waits on. The deadline is wall-clock time.
pub async fn wait_until_async(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}
