//! The wall clock of the agent and its restart watchdog: Unix seconds now, for report and event
//! times. Tick timing uses tokio's monotonic clock instead; nothing here sleeps.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
