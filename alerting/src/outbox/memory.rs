//! What the disk could not take: outcomes and alerts the store failed to write (disk full, I/O
//! error), kept in memory, bounded, until the store takes them again.
//!
//! Two things can fail to be written. A delivery's *outcome* (delivered, dropped, retry at T):
//! without it the delivery would still look due and be sent again at once, in a tight loop, so
//! the outcome is kept here as a [`Mark`] and the dispatcher skips the delivery until the mark is
//! written. A new *alert*: it is kept in [`Unwritten`], in order, and written (then delivered)
//! when the store takes writes again; an alert repeating the state of the last kept one of its
//! key is not kept twice. Both are bounded: marks by the pending deliveries they stand for,
//! alerts by `OutboxOptions::max_unwritten` (past it the oldest are lost, counted and logged).
//!
//! [`Degraded`] holds the last storage error and limits how often it is logged.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::alert::Alert;

/// The outcome of a delivery the store has not recorded yet.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mark {
    Delivered {
        attempts: u32,
        at: f64,
    },
    Dropped {
        attempts: u32,
        at: f64,
        error: String,
    },
    /// Refused for good by the receiver: kept as `failed` (visible), never sent again.
    Failed {
        attempts: u32,
        at: f64,
        error: String,
    },
    Retry {
        attempts: u32,
        next_at: f64,
        error: String,
    },
}

impl Mark {
    /// Whether the delivery is finished (no longer holds later deliveries of its key back).
    pub fn is_done(&self) -> bool {
        !matches!(self, Mark::Retry { .. })
    }
}

/// Unrecorded outcomes by delivery id.
#[derive(Debug, Default)]
pub(crate) struct Marks(pub BTreeMap<i64, Mark>);

impl Marks {
    /// JSON arrays of ids for the store's queries: (held back at `now`, finished).
    pub fn skip_lists(&self, now: f64) -> (String, String) {
        let skip = self
            .0
            .iter()
            .filter(|(_, m)| !matches!(m, Mark::Retry { next_at, .. } if *next_at <= now))
            .map(|(id, _)| *id);
        let done = self
            .0
            .iter()
            .filter(|(_, m)| m.is_done())
            .map(|(id, _)| *id);
        (json_ids(skip), json_ids(done))
    }

    /// JSON array of every marked id (for "when is the next one due": marked ones count by
    /// their mark).
    pub fn all(&self) -> String {
        json_ids(self.0.keys().copied())
    }

    /// The earliest retry time among the marks.
    pub fn next_retry(&self) -> Option<f64> {
        self.0
            .values()
            .filter_map(|m| match m {
                Mark::Retry { next_at, .. } => Some(*next_at),
                _ => None,
            })
            .min_by(f64::total_cmp)
    }

    /// The attempts recorded in memory for `id`, if any.
    pub fn attempts(&self, id: i64) -> Option<u32> {
        self.0.get(&id).map(|m| match m {
            Mark::Delivered { attempts, .. }
            | Mark::Dropped { attempts, .. }
            | Mark::Failed { attempts, .. }
            | Mark::Retry { attempts, .. } => *attempts,
        })
    }
}

fn json_ids(ids: impl Iterator<Item = i64>) -> String {
    let list: Vec<String> = ids.map(|id| id.to_string()).collect();
    format!("[{}]", list.join(","))
}

/// How a held alert is to be written once the store takes writes again: the way it was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Every receiver, folded by key and state (`Outbox::enqueue`).
    All,
    /// These receivers, folded by key and state (`Outbox::enqueue_for`).
    For(Vec<String>),
    /// These receivers, always queued (a grouped notification: its updates repeat "firing").
    Always(Vec<String>),
}

/// An alert not written yet, and where it goes.
#[derive(Clone, Debug)]
pub(crate) struct HeldAlert {
    pub alert: Alert,
    pub route: Route,
}

/// Alerts not written yet, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Unwritten {
    pub alerts: VecDeque<HeldAlert>,
    /// Alerts lost because more than the bound waited.
    pub lost: u64,
}

/// What [`Unwritten::hold`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Held {
    Kept,
    /// Same key and status as the last kept alert of its key: nothing new.
    Repeat,
    /// Kept, and the oldest kept alert was lost to stay within `max`.
    KeptLosingOldest,
}

impl Unwritten {
    pub fn hold(&mut self, alert: &Alert, route: Route, max: usize) -> Held {
        // A notification's update repeats "firing" on purpose; only state alerts fold.
        if !matches!(route, Route::Always(_)) {
            if let Some(last) = self
                .alerts
                .iter()
                .rev()
                .find(|h| h.alert.key == alert.key && h.route == route)
            {
                if last.alert.status == alert.status {
                    return Held::Repeat;
                }
            }
        }
        self.alerts.push_back(HeldAlert {
            alert: alert.clone(),
            route,
        });
        if self.alerts.len() > max.max(1) {
            self.alerts.pop_front();
            self.lost += 1;
            return Held::KeptLosingOldest;
        }
        Held::Kept
    }
}

/// The outbox's storage health and its log pacing.
#[derive(Debug, Default)]
pub(crate) struct Degraded {
    pub error: Option<String>,
    last_logged: Option<Instant>,
    swallowed: u64,
}

/// A storage problem is logged at most this often (plus once when it starts and ends).
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(30);

impl Degraded {
    /// Records `error`; returns `Some(swallowed)` when it should be logged now.
    pub fn failed(&mut self, error: String, now: Instant) -> Option<u64> {
        let new = self.error.is_none();
        self.error = Some(error);
        if new
            || self
                .last_logged
                .is_none_or(|l| now.duration_since(l) >= LOG_EVERY)
        {
            self.last_logged = Some(now);
            return Some(std::mem::take(&mut self.swallowed));
        }
        self.swallowed += 1;
        None
    }

    /// The store took a write; returns the error that was cleared, if any.
    pub fn recovered(&mut self) -> Option<String> {
        self.last_logged = None;
        self.swallowed = 0;
        self.error.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Unwritten {
        fn hold_all(&mut self, alert: &Alert, max: usize) -> Held {
            self.hold(alert, Route::All, max)
        }
    }

    #[test]
    fn notifications_are_held_every_time_state_alerts_fold() {
        let mut u = Unwritten::default();
        let r = || Route::Always(vec!["mail".into()]);
        assert_eq!(u.hold(&alert("n", AlertStatus::Firing), r(), 5), Held::Kept);
        assert_eq!(u.hold(&alert("n", AlertStatus::Firing), r(), 5), Held::Kept);
        let f = || Route::For(vec!["pager".into()]);
        assert_eq!(u.hold(&alert("a", AlertStatus::Firing), f(), 5), Held::Kept);
        assert_eq!(
            u.hold(&alert("a", AlertStatus::Firing), f(), 5),
            Held::Repeat
        );
        assert_eq!(u.alerts.len(), 3);
        assert_eq!(u.alerts[2].route, f());
    }
    use crate::alert::{AlertStatus, Severity};

    fn alert(key: &str, status: AlertStatus) -> Alert {
        Alert {
            key: key.into(),
            status,
            severity: Severity::Critical,
            summary: "s".into(),
            description: String::new(),
            source: "h".into(),
            labels: Default::default(),
            at: 1.0,
            url: None,
        }
    }

    #[test]
    fn repeats_are_kept_once_and_the_bound_holds() {
        let mut u = Unwritten::default();
        assert_eq!(u.hold_all(&alert("a", AlertStatus::Firing), 3), Held::Kept);
        assert_eq!(
            u.hold_all(&alert("a", AlertStatus::Firing), 3),
            Held::Repeat
        );
        assert_eq!(u.hold_all(&alert("b", AlertStatus::Firing), 3), Held::Kept);
        assert_eq!(
            u.hold_all(&alert("a", AlertStatus::Resolved), 3),
            Held::Kept
        );
        assert_eq!(
            u.hold_all(&alert("c", AlertStatus::Firing), 3),
            Held::KeptLosingOldest
        );
        assert_eq!(u.alerts.len(), 3);
        assert_eq!(u.lost, 1);
        // The key's last kept state is "resolved": a new "firing" is news.
        assert_eq!(u.hold_all(&alert("a", AlertStatus::Firing), 10), Held::Kept);
    }

    #[test]
    fn retry_marks_are_skipped_until_due_and_done_marks_always() {
        let mut m = Marks::default();
        m.0.insert(
            1,
            Mark::Delivered {
                attempts: 1,
                at: 5.0,
            },
        );
        m.0.insert(
            2,
            Mark::Retry {
                attempts: 2,
                next_at: 10.0,
                error: "x".into(),
            },
        );
        assert_eq!(m.skip_lists(5.0), ("[1,2]".into(), "[1]".into()));
        assert_eq!(m.skip_lists(10.0), ("[1]".into(), "[1]".into()));
        assert_eq!(m.next_retry(), Some(10.0));
        assert_eq!(m.all(), "[1,2]");
    }

    #[test]
    fn errors_are_logged_at_a_bounded_rate() {
        let mut d = Degraded::default();
        let t0 = Instant::now();
        assert_eq!(d.failed("full".into(), t0), Some(0));
        for i in 1..100 {
            assert_eq!(d.failed("full".into(), t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(d.failed("full".into(), t0 + LOG_EVERY), Some(99));
        assert_eq!(d.recovered().as_deref(), Some("full"));
        assert_eq!(d.recovered(), None);
    }
}
