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
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::alert::Alert;
use crate::notifier::Notifier;
use crate::retry::RetryPolicy;
use memory::{Degraded, Held, HeldAlert, Mark, Marks, Route, Unwritten};
pub use store::DeliveryRecord;
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
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverStats {
    pub receiver: String,
    pub kind: &'static str,
    /// Deliveries the receiver accepted.
    pub sent: u64,
    /// Failed attempts (each retry counts).
    pub failed: u64,
    /// Deliveries given up unrecorded: evicted when the queue was full, or unreadable. (A
    /// delivery the receiver refused for good counts in `refused`.)
    pub dropped: u64,
    /// Deliveries waiting to be sent.
    pub pending: u64,
    /// Failed attempts that will be tried again (receiver down, slow, or refusing for now).
    pub retried: u64,
    /// Deliveries the receiver refused for good: kept in the outbox as `failed`.
    pub refused: u64,
    /// Since when (unix seconds) every attempt to this receiver failed; `None` when its last
    /// attempt worked or it has not failed.
    pub failing_since: Option<f64>,
    /// When the oldest pending delivery was queued (unix seconds).
    pub oldest_pending_at: Option<f64>,
}

/// A snapshot of the outbox counters.
#[derive(Debug, Clone, PartialEq)]
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
    retried: AtomicU64,
    refused: AtomicU64,
    /// f64 bits of the first failure after the last success; 0: not failing.
    failing_since: AtomicU64,
}

impl Receiver {
    pub(crate) fn attempt_failed(&self, at: f64) {
        let _ = self.failing_since.compare_exchange(
            0,
            at.to_bits(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    pub(crate) fn attempt_worked(&self) {
        self.failing_since.store(0, Ordering::Relaxed);
    }
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
                retried: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                failing_since: AtomicU64::new(0),
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
        self.shared
            .write_or_hold(alert, Route::All)
            .map(Written::into_enqueued)
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

    /// Queues `alert` for some receivers only, with the same firing-state dedup as
    /// [`Outbox::enqueue`] (routed single alerts, e.g. to Alertmanager).
    pub fn enqueue_for(
        &self,
        alert: &Alert,
        receivers: &[String],
    ) -> Result<Enqueued, OutboxError> {
        let names = self.known(receivers);
        self.shared
            .write_or_hold(alert, Route::For(names))
            .map(Written::into_enqueued)
    }

    /// Queues a grouped notification for `receivers` (its updates repeat "firing" on purpose,
    /// so there is no state dedup; the key's firing state follows it). Returns the delivery ids.
    pub fn enqueue_notification(
        &self,
        alert: &Alert,
        receivers: &[String],
    ) -> Result<Vec<(String, i64)>, OutboxError> {
        self.enqueue_always(alert, receivers, true)
    }

    /// Queues a test notification for `receivers` through the same queue and dispatcher as
    /// real alerts; it leaves no firing state behind. Returns the delivery ids to watch with
    /// [`Outbox::delivery`].
    pub fn enqueue_test(
        &self,
        alert: &Alert,
        receivers: &[String],
    ) -> Result<Vec<(String, i64)>, OutboxError> {
        self.enqueue_always(alert, receivers, false)
    }

    fn enqueue_always(
        &self,
        alert: &Alert,
        receivers: &[String],
        track: bool,
    ) -> Result<Vec<(String, i64)>, OutboxError> {
        let names = self.known(receivers);
        if track {
            // A notification is never lost to a full disk: held in memory (bounded) and
            // written, then sent, when the file takes writes again. Its ids are not known yet.
            return self
                .shared
                .write_or_hold(alert, Route::Always(names))
                .map(|w| match w {
                    Written::Always(ids) => ids,
                    Written::State(_) => Vec::new(),
                });
        }
        // A test send is not held: the person asking is told at once.
        let ids = self
            .shared
            .store()
            .enqueue_always(alert, &names, unix_now(), track)
            .map_err(|e| self.shared.storage_error(e))?;
        self.shared.wake_for(&ids);
        Ok(ids)
    }

    fn known(&self, names: &[String]) -> Vec<String> {
        names
            .iter()
            .filter(|n| {
                let known = self.shared.receiver(n).is_some();
                if !known {
                    tracing::error!(receiver = %n, "no receiver has this name; skipped");
                }
                known
            })
            .cloned()
            .collect()
    }

    /// One delivery by id (its state, attempts and last error).
    pub fn delivery(&self, id: i64) -> Result<Option<DeliveryRecord>, OutboxError> {
        self.shared
            .store()
            .delivery(id)
            .map_err(|e| self.shared.storage_error(e))
    }

    /// The newest deliveries (all, or only those in `state`: `pending`, `delivered`, `failed`,
    /// `dropped`), newest first.
    pub fn deliveries(
        &self,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, OutboxError> {
        self.shared
            .store()
            .deliveries(state, limit)
            .map_err(|e| self.shared.storage_error(e))
    }

    /// Gives up a pending delivery (a test send whose outcome was reported): it is kept as
    /// `failed` with `reason`. False when it was no longer pending.
    pub fn abandon(&self, id: i64, reason: &str) -> Result<bool, OutboxError> {
        let store = self.shared.store();
        let record = store
            .delivery(id)
            .map_err(|e| self.shared.storage_error(e))?;
        let done = store
            .mark_failed(id, None, unix_now(), reason)
            .map_err(|e| self.shared.storage_error(e))?;
        drop(store);
        if done {
            if let Some(r) = record.and_then(|r| self.shared.receiver(&r.receiver)) {
                let _ = r
                    .pending
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some(v.saturating_sub(1))
                    });
            }
        }
        Ok(done)
    }

    /// The configured receivers: `(name, kind)`.
    pub fn receivers(&self) -> Vec<(String, &'static str)> {
        self.shared
            .receivers
            .iter()
            .map(|r| (r.notifier.name().to_string(), r.notifier.kind()))
            .collect()
    }

    /// Counters per receiver, for metrics.
    pub fn stats(&self) -> OutboxStats {
        let oldest = self.shared.store().oldest_pending().unwrap_or_default();
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
                    retried: r.retried.load(Ordering::Relaxed),
                    refused: r.refused.load(Ordering::Relaxed),
                    failing_since: match r.failing_since.load(Ordering::Relaxed) {
                        0 => None,
                        bits => Some(f64::from_bits(bits)),
                    },
                    oldest_pending_at: oldest.get(r.notifier.name()).copied(),
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

/// What one write of a (held) alert did.
enum Written {
    /// A state alert: queued, folded, or held in memory.
    State(Enqueued),
    /// A notification: its deliveries (none while held in memory).
    Always(Vec<(String, i64)>),
}

impl Written {
    fn into_enqueued(self) -> Enqueued {
        match self {
            Written::State(e) => e,
            Written::Always(ids) => Enqueued::Queued {
                deliveries: ids.len(),
            },
        }
    }
}

impl Shared {
    /// Writes `alert` (after what was held before it, so a key's changes stay in order), or
    /// keeps it in memory when the store refuses: nothing is lost up to `max_unwritten`.
    fn write_or_hold(&self, alert: &Alert, route: Route) -> Result<Written, OutboxError> {
        let held = HeldAlert {
            alert: alert.clone(),
            route,
        };
        if !self.write_unwritten() {
            return Ok(self.hold(held));
        }
        match self.write(&held) {
            Ok(w) => {
                self.recovered();
                Ok(w)
            }
            Err(e) => {
                self.failed("queueing an alert", &e);
                Ok(self.hold(held))
            }
        }
    }

    /// One write attempt of a held alert, the way it was asked for.
    fn write(&self, held: &HeldAlert) -> Result<Written, rusqlite::Error> {
        match &held.route {
            Route::All => self.try_enqueue(&held.alert).map(Written::State),
            Route::For(names) => {
                let outcome = self.store().enqueue(
                    &held.alert,
                    names,
                    unix_now(),
                    self.options.max_pending_per_receiver,
                )?;
                if let Enqueued::Queued { .. } = outcome.enqueued {
                    for name in names {
                        if let Some(r) = self.receiver(name) {
                            r.pending.fetch_add(1, Ordering::Relaxed);
                            r.wake.notify_one();
                        }
                    }
                }
                Ok(Written::State(outcome.enqueued))
            }
            Route::Always(names) => {
                let ids = self
                    .store()
                    .enqueue_always(&held.alert, names, unix_now(), true)?;
                self.wake_for(&ids);
                tracing::info!(key = %held.alert.key, status = held.alert.status.as_str(),
                    receivers = ?names, "notification queued");
                Ok(Written::Always(ids))
            }
        }
    }

    /// Counts and wakes the receivers of freshly queued deliveries.
    fn wake_for(&self, ids: &[(String, i64)]) {
        for (name, _) in ids {
            if let Some(r) = self.receiver(name) {
                r.pending.fetch_add(1, Ordering::Relaxed);
                r.wake.notify_one();
            }
        }
    }

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
    fn hold(&self, held: HeldAlert) -> Written {
        let alert = &held.alert;
        let always = matches!(held.route, Route::Always(_));
        let mut unwritten = lock(&self.unwritten);
        match unwritten.hold(alert, held.route.clone(), self.options.max_unwritten) {
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
        if always {
            return Written::Always(Vec::new());
        }
        Written::State(Enqueued::Held {
            unwritten: unwritten.alerts.len(),
        })
    }

    /// Writes the alerts kept in memory, oldest first; true when none is left.
    fn write_unwritten(&self) -> bool {
        let mut unwritten = lock(&self.unwritten);
        while let Some(held) = unwritten.alerts.pop_front() {
            if let Err(e) = self.write(&held) {
                unwritten.alerts.push_front(held);
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
                Mark::Failed {
                    attempts,
                    at,
                    error,
                } => store
                    .mark_failed(id, Some(*attempts), *at, error)
                    .map(|_| ()),
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

/// Unix seconds now. Unit tests read tokio's clock instead ([`virtual_time_tests`]), so that a
/// paused clock moves the due times of deliveries along with the dispatcher's sleeps.
#[cfg(not(test))]
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
pub(crate) use virtual_time_tests::unix_now;

#[cfg(test)]
mod virtual_time_tests;
