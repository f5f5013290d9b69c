//! What the status page asks of the past: uptime, RTT over time, incidents.
//!
//! A trait so the HTTP layer can be tested with a fake; the SQLite store implements it. Queries
//! are blocking (call them from `spawn_blocking`) and return errors as text for the page to show.

use super::model::{Incident, UnixTime};

pub trait History: Send + Sync {
    /// Fraction (0..=1) of probes of `target` (all its nodes) that were ok or warning since
    /// `since`; None when there were no probes.
    fn uptime(&self, target: &str, since: UnixTime) -> Result<Option<f64>, String>;
    /// Per-minute average RTT (ms) of `target` across its nodes since `since`, oldest first.
    fn rtt_series(&self, target: &str, since: UnixTime) -> Result<Vec<(UnixTime, f64)>, String>;
    /// Incidents opened or resolved since `since`, newest first, at most `limit`.
    fn incidents(&self, since: UnixTime, limit: usize) -> Result<Vec<Incident>, String>;
}
