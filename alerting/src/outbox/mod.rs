//! The outbox: alerts are never lost and never doubled.
//!
//! [`Outbox::enqueue`] writes one delivery per receiver to SQLite before it returns, unless the
//! alert repeats the key's current state (a firing alert that already fires, a resolve for a key
//! that is not firing): those are dropped and counted as `suppressed`. [`Outbox::run`] sends the
//! pending deliveries, one task per receiver so a slow mail server never delays a page; per key
//! they go out in the order they were queued. Failures follow the [`RetryPolicy`]: a receiver
//! that is down is paused with back-off and its deliveries wait (across restarts too); a
//! delivery the receiver refuses is dropped after a few attempts, loudly.
//!
//! A full disk (or any write error) neither loses nor multiplies alerts ([`memory`]): an alert
//! that cannot be written is kept in memory (bounded by `max_unwritten`) and written, then sent,
//! when the file takes writes again ([`Enqueued::Held`]); an outcome that cannot be recorded is
//! kept in memory and its delivery is skipped meanwhile, so it is never sent again in a loop.
//! [`Outbox::health`] says what waits; the error is logged when it starts, at most every 30 s
//! while it lasts, and when it ends.
//!
//! Delivery is at-least-once at the boundary: if the process dies after a receiver accepted an
//! alert but before the outbox recorded it, that one alert is sent again after the restart.
//! PagerDuty, Opsgenie and Alertmanager fold it by key; a mail would arrive twice.
//!
//! ```no_run
//! # async fn demo(configs: Vec<sipwatch_alerting::ReceiverConfig>, alert: sipwatch_alerting::Alert)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use sipwatch_alerting::{build, Outbox, OutboxOptions};
//! let notifiers = build(&configs)?;
//! let outbox = Outbox::open("/var/lib/sipwatch/outbox.db", notifiers, OutboxOptions::default())?;
//! let (stop, stopped) = tokio::sync::watch::channel(false);
//! let dispatcher = tokio::spawn(outbox.clone().run(stopped));
//! outbox.enqueue(&alert)?;
//! let _ = stop.send(true);
//! dispatcher.await?;
//! # Ok(()) }
//! ```

mod dispatch;
mod memory;
mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Notify};

use crate::alert::Alert;
use crate::notifier::Notifier;
use crate::retry::RetryPolicy;
use memory::{Degraded, Held, Mark, Marks, Unwritten};
use store::Store;

/// Tuning of the outbox; the defaults suit production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxOptions {
    pub retry: RetryPolicy,
    /// Delivered and dropped rows kept for inspection before the oldest are deleted.
    pub keep_done: usize,
    /// Pending deliveries kept per receiver; past that the oldest are evicted (and counted as
    /// dropped) so a receiver that is gone for weeks cannot fill the disk.
    pub max_pending_per_receiver: usize,
    /// Upper bound on one send, on top of the notifier's own timeout; exceeding it is retryable.
    pub send_timeout: Duration,
    /// Alerts kept in memory while the outbox file cannot be written (disk full); past it the
    /// oldest are lost (counted and logged).
    pub max_unwritten: usize,
}

impl Default for OutboxOptions {
    fn default() -> OutboxOptions {
        OutboxOptions {
            retry: RetryPolicy::default(),
            keep_done: 10_000,
            max_pending_per_receiver: 10_000,
            send_timeout: Duration::from_secs(60),
            max_unwritten: 10_000,
        }
    }
}

/// What [`Outbox::enqueue`] did with an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored: one pending delivery per receiver.
    Queued { deliveries: usize },
    /// Not stored: the key is already firing.
    AlreadyFiring,
    /// Not stored: the key is not firing, so there is nothing to resolve.
    NotFiring,
    /// The outbox file cannot be written (disk full, I/O error): the alert is kept in memory,
    /// with `unwritten` others, and written and sent when the file takes writes again.
    Held { unwritten: usize },
}

/// How the outbox's storage is doing (for metrics, `/healthz` and the status page).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutboxHealth {
    /// The last storage error, while the store refuses writes.
    pub error: Option<String>,
    /// Alerts waiting in memory to be written.
    pub unwritten: usize,
    /// Delivery outcomes waiting in memory to be recorded.
    pub unrecorded: usize,
    /// Alerts lost because more than `max_unwritten` waited.
    pub lost: u64,
}

impl OutboxHealth {
    /// Whether anything is wrong or waiting.
    pub fn is_degraded(&self) -> bool {
        self.error.is_some() || self.unwritten > 0 || self.unrecorded > 0 || self.lost > 0
    }

    /// One line for people, e.g. `cannot write: database or disk is full; 12 alert(s) held in
    /// memory`; None when all is well.
    pub fn describe(&self) -> Option<String> {
        if !self.is_degraded() {
            return None;
        }
        let mut parts = Vec::new();
        if let Some(e) = &self.error {
            parts.push(format!("cannot write: {e}"));
        }
        if self.unwritten > 0 {
            parts.push(format!(
                "{} alert(s) held in memory until it can",
                self.unwritten
            ));
        }
        if self.unrecorded > 0 {
            parts.push(format!(
                "{} delivery outcome(s) not recorded yet",
                self.unrecorded
            ));
        }
        if self.lost > 0 {
            parts.push(format!(
                "{} alert(s) LOST (more were waiting than the memory bound)",
                self.lost
            ));
        }
        Some(parts.join("; "))
    }
}

/// The outbox could not be opened or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    #[error(
        "cannot open the alert outbox {}: {reason}; check that the directory exists and is \
         writable by the sipwatch user", path.display()
    )]
    Open { path: PathBuf, reason: String },
    #[error(
        "the alert outbox {} is in use by another sipwatch process; each daemon or agent needs \
         its own outbox file (two processes on one file would send every alert twice)",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error("two receivers are named \"{0}\"; receiver names must be unique")]
    DuplicateReceiver(String),
    #[error("alert outbox {}: {reason}", path.display())]
    Storage { path: PathBuf, reason: String },
}

/// Counters of one receiver, for metrics. `sent`, `failed`, `dropped` count since start;
/// `pending` is the current queue length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverStats {
    pub receiver: String,
    pub kind: &'static str,
    /// Deliveries the receiver accepted.
    pub sent: u64,
    /// Failed attempts (each retry counts).
    pub failed: u64,
    /// Deliveries given up (refused permanently, or evicted when the queue was full).
    pub dropped: u64,
    /// Deliveries waiting to be sent.
    pub pending: u64,
}

/// A snapshot of the outbox counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStats {
    pub receivers: Vec<ReceiverStats>,
    /// Alerts not queued because they repeated their key's state.
    pub suppressed: u64,
}

impl OutboxStats {
    /// Sum over receivers of `(sent, failed, dropped, pending)`.
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        self.receivers.iter().fold((0, 0, 0, 0), |t, r| {
            (
                t.0 + r.sent,
                t.1 + r.failed,
                t.2 + r.dropped,
                t.3 + r.pending,
            )
        })
    }

    /// The counters of the receiver named `name`.
    pub fn receiver(&self, name: &str) -> Option<&ReceiverStats> {
        self.receivers.iter().find(|r| r.receiver == name)
    }
}

/// Handle to the durable alert queue; cheap to clone, share it between producers.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    store: Mutex<Store>,
    receivers: Vec<Receiver>,
    options: OutboxOptions,
    suppressed: AtomicU64,
    /// Outcomes the store could not record, by delivery id.
    marks: Mutex<Marks>,
    /// Alerts the store could not take, oldest first.
    unwritten: Mutex<Unwritten>,
    degraded: Mutex<Degraded>,
}

/// One configured receiver: its notifier, its wake-up bell and its counters.
struct Receiver {
    notifier: Arc<dyn Notifier>,
    wake: Notify,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path` for these receivers. Pending deliveries from a
    /// previous run become due at once; those of receivers no longer configured stay on disk
    /// and are reported in the log.
    pub fn open(
        path: impl AsRef<Path>,
        notifiers: Vec<Arc<dyn Notifier>>,
        options: OutboxOptions,
    ) -> Result<Outbox, OutboxError> {
        let path = path.as_ref().to_path_buf();
        let mut names = std::collections::BTreeSet::new();
        for n in &notifiers {
            if !names.insert(n.name().to_string()) {
                return Err(OutboxError::DuplicateReceiver(n.name().to_string()));
            }
        }
        let store = Store::open(&path)?;
        let storage = |e: rusqlite::Error| OutboxError::Storage {
            path: path.clone(),
            reason: e.to_string(),
        };
        store.reschedule_pending(unix_now()).map_err(storage)?;
        let pending = store.pending_counts().map_err(storage)?;
        for (receiver, count) in &pending {
            if !names.contains(receiver) {
                tracing::warn!(receiver = %receiver, pending = count, path = %path.display(),
                    "the outbox holds deliveries for a receiver that is no longer configured; \
                     they are kept until a receiver with that name is configured again");
            }
        }
        let receivers = notifiers
            .into_iter()
            .map(|notifier| Receiver {
                pending: AtomicU64::new(pending.get(notifier.name()).copied().unwrap_or(0)),
                notifier,
                wake: Notify::new(),
                sent: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            })
            .collect();
        Ok(Outbox {
            shared: Arc::new(Shared {
                path,
                store: Mutex::new(store),
                receivers,
                options,
                suppressed: AtomicU64::new(0),
                marks: Mutex::new(Marks::default()),
                unwritten: Mutex::new(Unwritten::default()),
                degraded: Mutex::new(Degraded::default()),
            }),
        })
    }

    /// Stores `alert` for every receiver (durably, before returning) and wakes the dispatcher;
    /// an alert that repeats its key's state is not stored. When the file cannot be written
    /// (disk full), the alert is kept in memory ([`Enqueued::Held`]) and written, then sent,
    /// once it can: nothing is lost up to `max_unwritten` alerts.
    pub fn enqueue(&self, alert: &Alert) -> Result<Enqueued, OutboxError> {
        // Alerts kept from earlier go first: a key's changes stay in order.
        if !self.shared.write_unwritten() {
            return Ok(self.shared.hold(alert));
        }
        match self.shared.try_enqueue(alert) {
            Ok(e) => {
                self.shared.recovered();
                Ok(e)
            }
            Err(e) => {
                self.shared.failed("queueing an alert", &e);
                Ok(self.shared.hold(alert))
            }
        }
    }

    /// How the outbox's storage is doing.
    pub fn health(&self) -> OutboxHealth {
        self.shared.health()
    }

    /// The alerts firing now (as first raised), oldest first: what a restarted daemon compares
    /// with what it sees to resolve what cleared while it was down.
    pub fn firing(&self) -> Result<Vec<Alert>, OutboxError> {
        self.shared
            .store()
            .firing()
            .map_err(|e| self.shared.storage_error(e))
    }

    /// Counters per receiver, for metrics.
    pub fn stats(&self) -> OutboxStats {
        OutboxStats {
            receivers: self
                .shared
                .receivers
                .iter()
                .map(|r| ReceiverStats {
                    receiver: r.notifier.name().to_string(),
                    kind: r.notifier.kind(),
                    sent: r.sent.load(Ordering::Relaxed),
                    failed: r.failed.load(Ordering::Relaxed),
                    dropped: r.dropped.load(Ordering::Relaxed),
                    pending: r.pending.load(Ordering::Relaxed),
                })
                .collect(),
            suppressed: self.shared.suppressed.load(Ordering::Relaxed),
        }
    }

    /// Rows on disk per state (`pending`, `delivered`, `dropped`), for tests and inspection.
    pub fn rows_by_state(&self) -> Result<BTreeMap<String, u64>, OutboxError> {
        self.shared
            .store()
            .count_by_state()
            .map_err(|e| self.shared.storage_error(e))
    }

    /// Sends pending deliveries until `shutdown` turns true (or its sender is dropped). A send
    /// in flight is finished (bounded by `send_timeout`) so it is recorded, not repeated.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        dispatch::run(self.shared, shutdown).await
    }
}

impl Shared {
    /// One write attempt of `alert`, with the counters and log lines of a success.
    fn try_enqueue(&self, alert: &Alert) -> Result<Enqueued, rusqlite::Error> {
        let names: Vec<String> = self
            .receivers
            .iter()
            .map(|r| r.notifier.name().to_string())
            .collect();
        let outcome = self.store().enqueue(
            alert,
            &names,
            unix_now(),
            self.options.max_pending_per_receiver,
        )?;
        for (receiver, count) in &outcome.evicted {
            tracing::error!(receiver = %receiver, evicted = count,
                limit = self.options.max_pending_per_receiver,
                "outbox full for this receiver: oldest pending alerts were dropped; the receiver \
                 has been failing for a long time, check it");
            if let Some(r) = self.receiver(receiver) {
                r.dropped.fetch_add(*count, Ordering::Relaxed);
                let _ = r
                    .pending
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some(v.saturating_sub(*count))
                    });
            }
        }
        match outcome.enqueued {
            Enqueued::Queued { .. } => {
                tracing::info!(key = %alert.key, status = alert.status.as_str(),
                    severity = alert.severity.as_str(), receivers = names.len(), "alert queued");
                for r in &self.receivers {
                    r.pending.fetch_add(1, Ordering::Relaxed);
                    r.wake.notify_one();
                }
            }
            Enqueued::AlreadyFiring | Enqueued::NotFiring | Enqueued::Held { .. } => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(key = %alert.key, status = alert.status.as_str(),
                    outcome = ?outcome.enqueued, "alert repeats its state; not queued");
            }
        }
        Ok(outcome.enqueued)
    }

    /// Keeps `alert` in memory until the store takes it.
    fn hold(&self, alert: &Alert) -> Enqueued {
        let mut unwritten = lock(&self.unwritten);
        match unwritten.hold(alert, self.options.max_unwritten) {
            Held::Repeat => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
            }
            Held::Kept => {
                tracing::warn!(key = %alert.key, status = alert.status.as_str(),
                    held = unwritten.alerts.len(), path = %self.path.display(),
                    "the alert outbox cannot be written: alert kept in memory, it is written \
                     and sent when the file can be written again");
            }
            Held::KeptLosingOldest => {
                tracing::error!(key = %alert.key, lost = unwritten.lost,
                    limit = self.options.max_unwritten, path = %self.path.display(),
                    "the alert outbox cannot be written and the memory bound is reached: the \
                     OLDEST unwritten alert was LOST; free space for the outbox");
            }
        }
        Enqueued::Held {
            unwritten: unwritten.alerts.len(),
        }
    }

    /// Writes the alerts kept in memory, oldest first; true when none is left.
    fn write_unwritten(&self) -> bool {
        let mut unwritten = lock(&self.unwritten);
        while let Some(alert) = unwritten.alerts.pop_front() {
            if let Err(e) = self.try_enqueue(&alert) {
                unwritten.alerts.push_front(alert);
                drop(unwritten);
                self.failed("writing alerts kept in memory", &e);
                return false;
            }
        }
        true
    }

    /// Records the outcomes kept in memory; true when none is left.
    fn write_marks(&self) -> bool {
        let mut marks = lock(&self.marks);
        let ids: Vec<i64> = marks.0.keys().copied().collect();
        for id in ids {
            let Some(mark) = marks.0.get(&id).cloned() else {
                continue;
            };
            let store = self.store();
            let written = match &mark {
                Mark::Delivered { attempts, at } => store.mark_delivered(id, *attempts, *at),
                Mark::Dropped {
                    attempts,
                    at,
                    error,
                } => store.mark_dropped(id, *attempts, *at, error),
                Mark::Retry {
                    attempts,
                    next_at,
                    error,
                } => store.record_failure(id, *attempts, *next_at, error),
            };
            drop(store);
            if let Err(e) = written {
                drop(marks);
                self.failed("recording delivery outcomes", &e);
                return false;
            }
            marks.0.remove(&id);
        }
        true
    }

    /// Writes what waits in memory; wakes the receivers when something was written.
    fn mend(&self) {
        let had_alerts = !lock(&self.unwritten).alerts.is_empty();
        let marks_ok = self.write_marks();
        let alerts_ok = self.write_unwritten();
        if marks_ok && alerts_ok {
            self.recovered();
        }
        if had_alerts && alerts_ok {
            for r in &self.receivers {
                r.wake.notify_one();
            }
        }
    }

    fn needs_mending(&self) -> bool {
        !lock(&self.unwritten).alerts.is_empty()
            || !lock(&self.marks).0.is_empty()
            || lock(&self.degraded).error.is_some()
    }

    /// Keeps an outcome the store could not record.
    fn keep_mark(&self, id: i64, mark: Mark, e: &rusqlite::Error) {
        lock(&self.marks).0.insert(id, mark);
        self.failed("recording a delivery outcome", e);
    }

    fn failed(&self, what: &str, e: &rusqlite::Error) {
        let error = format!("{what}: {e}");
        let log = lock(&self.degraded).failed(error.clone(), std::time::Instant::now());
        if let Some(swallowed) = log {
            let unwritten = lock(&self.unwritten).alerts.len();
            let unrecorded = lock(&self.marks).0.len();
            tracing::error!(path = %self.path.display(), %error, unwritten, unrecorded,
                similar_since_last = swallowed,
                "the alert outbox cannot be written (disk full?); alerts and outcomes are kept \
                 in memory and written when it can; free space or fix the file");
        }
    }

    fn recovered(&self) {
        if let Some(was) = lock(&self.degraded).recovered() {
            tracing::info!(path = %self.path.display(), was = %was,
                "the alert outbox can be written again");
        }
    }

    fn health(&self) -> OutboxHealth {
        let unwritten = lock(&self.unwritten);
        OutboxHealth {
            error: lock(&self.degraded).error.clone(),
            unwritten: unwritten.alerts.len(),
            unrecorded: lock(&self.marks).0.len(),
            lost: unwritten.lost,
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn storage_error(&self, e: rusqlite::Error) -> OutboxError {
        OutboxError::Storage {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.notifier.name() == name)
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let receivers: Vec<&str> = self
            .shared
            .receivers
            .iter()
            .map(|r| r.notifier.name())
            .collect();
        f.debug_struct("Outbox")
            .field("path", &self.shared.path)
            .field("receivers", &receivers)
            .field("options", &self.shared.options)
            .finish()
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
