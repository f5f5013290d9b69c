//! What the status page asks of the past: uptime, RTT over time, incidents.
//!
//! A trait so the HTTP layer can be tested with a fake; the SQLite store implements it. Queries
//! are blocking (call them from `spawn_blocking`) and return errors as text for the page to show.

use std::collections::HashMap;

use super::http::page::TargetHistory;
use super::model::{Incident, UnixTime};

const DAY_SECS: f64 = 86400.0;

pub trait History: Send + Sync {
    /// Fraction (0..=1) of probes of `target` (all its nodes) that were ok or warning since
    /// `since`; None when there were no probes.
    fn uptime(&self, target: &str, since: UnixTime) -> Result<Option<f64>, String>;
    /// Per-minute average RTT (ms) of `target` across its nodes since `since`, oldest first.
    fn rtt_series(&self, target: &str, since: UnixTime) -> Result<Vec<(UnixTime, f64)>, String>;
    /// Incidents opened or resolved since `since`, newest first, at most `limit`.
    fn incidents(&self, since: UnixTime, limit: usize) -> Result<Vec<Incident>, String>;

    /// What the status page shows of every target in `names` at `now`: uptime over 24 h and
    /// 7 days and the RTT of the last 24 h. The default asks [`History::uptime`] and
    /// [`History::rtt_series`] per target; the store answers for all targets in two queries (three
    /// per target made a page of 10,000 targets take seconds).
    fn page_history(&self, names: &[String], now: UnixTime) -> HashMap<String, TargetHistory> {
        names
            .iter()
            .map(|name| {
                let h = TargetHistory {
                    uptime_24h: self.uptime(name, now - DAY_SECS),
                    uptime_7d: self.uptime(name, now - 7.0 * DAY_SECS),
                    rtt_24h: self.rtt_series(name, now - DAY_SECS),
                };
                (name.clone(), h)
            })
            .collect()
    }
}
