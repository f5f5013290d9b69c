//! Delivery health as Prometheus metrics: are alerts reaching anyone?
//!
//! `sipwatch_notifications_total{receiver,outcome}` (`delivered`, `retried`, `failed`,
//! `dropped`), `sipwatch_outbox_pending{receiver}` and
//! `sipwatch_outbox_oldest_pending_seconds{receiver}`, refreshed from the outbox counters on
//! the daemon's tick. The outbox counts since start; this file turns its snapshots into counter
//! increments. It only records; whether a receiver is unhealthy is `daemon::paging`'s call.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sipwatch_alerting::OutboxStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReceiverOutcome {
    receiver: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReceiverLabel {
    receiver: String,
}

/// The delivery metrics, registered in the daemon's registry.
pub struct DeliveryMetrics {
    notifications: Family<ReceiverOutcome, Counter>,
    pending: Family<ReceiverLabel, Gauge>,
    oldest: Family<ReceiverLabel, Gauge<f64, AtomicU64>>,
    /// Last counter values seen per (receiver, outcome).
    seen: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl DeliveryMetrics {
    pub fn register(registry: &mut Registry) -> DeliveryMetrics {
        let notifications = Family::<ReceiverOutcome, Counter>::default();
        registry.register(
            "sipwatch_notifications",
            "Notification attempts by receiver and outcome: delivered, retried (failed, tried again), failed (refused for good, kept in the outbox), dropped (evicted)",
            notifications.clone(),
        );
        let pending = Family::<ReceiverLabel, Gauge>::default();
        registry.register(
            "sipwatch_outbox_pending",
            "Notifications waiting in the outbox for this receiver",
            pending.clone(),
        );
        let oldest = Family::<ReceiverLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "sipwatch_outbox_oldest_pending_seconds",
            "Age of the oldest notification waiting for this receiver (0 when none)",
            oldest.clone(),
        );
        DeliveryMetrics {
            notifications,
            pending,
            oldest,
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// Brings the metrics up to `stats` (taken at `now`, unix seconds).
    pub fn update(&self, stats: &OutboxStats, now: f64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for r in &stats.receivers {
            for (outcome, value) in [
                ("delivered", r.sent),
                ("retried", r.retried),
                ("failed", r.refused),
                ("dropped", r.dropped),
            ] {
                let last = seen.entry((r.receiver.clone(), outcome)).or_insert(0);
                let counter = self.notifications.get_or_create(&ReceiverOutcome {
                    receiver: r.receiver.clone(),
                    outcome: outcome.to_string(),
                });
                if value > *last {
                    counter.inc_by(value - *last);
                }
                *last = value;
            }
            let label = ReceiverLabel {
                receiver: r.receiver.clone(),
            };
            self.pending
                .get_or_create(&label)
                .set(r.pending.min(i64::MAX as u64) as i64);
            self.oldest.get_or_create(&label).set(
                r.oldest_pending_at
                    .map(|t| (now - t).max(0.0))
                    .unwrap_or(0.0),
            );
        }
    }
}
