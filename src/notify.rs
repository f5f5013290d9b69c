//! Telling systemd how the process is (sd_notify(3), `Type=notify` units): `READY=1` once the
//! config is loaded and the listeners are up, `STATUS=` with a one-line state, and `WATCHDOG=1`
//! while the main loops make progress. The loops bump a shared counter; [`spawn_watchdog`] pings
//! systemd every half `WatchdogSec` only when the counter moved since the last ping, so a loop
//! that hangs stops the pings and systemd restarts the process (`Restart=on-failure`).
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sd_notify::NotifyState;

/// `READY=1` and a first status line.
pub fn ready(status: &str) {
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]) {
        tracing::warn!(error = %e, "cannot notify systemd (READY=1)");
    }
}

/// `STATUS=` with a one-line state.
pub fn status(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Status(status)]);
}

/// Whether to ping: the loops made progress since the last check.
pub fn progressed(last: &mut u64, now: u64) -> bool {
    let moved = now != *last;
    *last = now;
    moved
}

/// Pings systemd's watchdog while `progress` moves (nothing when `WatchdogSec` is not set); the
/// status line is refreshed with each ping.
pub fn spawn_watchdog(
    progress: Arc<AtomicU64>,
    status_line: impl Fn() -> String + Send + 'static,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    tracing::info!(
        watchdog_sec = period.as_secs_f64(),
        "feeding the systemd watchdog while the loops progress"
    );
    tokio::spawn(async move {
        let mut last = u64::MAX;
        let mut tick = tokio::time::interval(period / 2);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|v| *v) => break,
            }
            if progressed(&mut last, progress.load(Ordering::Relaxed)) {
                let line = status_line();
                let _ = sd_notify::notify(&[NotifyState::Watchdog, NotifyState::Status(&line)]);
            } else {
                tracing::error!(
                    "the main loops made no progress: not feeding the systemd watchdog"
                );
            }
        }
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_only_after_progress() {
        let mut last = u64::MAX;
        assert!(progressed(&mut last, 0));
        assert!(!progressed(&mut last, 0), "stalled loops: no ping");
        assert!(progressed(&mut last, 5));
    }
}
