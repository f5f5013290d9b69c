//! What the probe side tells the state task, and the grid its ticks follow: shared by the
//! per-target workers (`scheduler.rs`) and the UDP lane (`lane.rs`), so both report the same way
//! and tick on the same instants.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use sipwatch_probes::outcome::ProbeOutcome;
use tokio::time::Instant;

/// What the scheduler tells the state task.
#[derive(Debug)]
pub enum SchedulerMsg {
    /// One probe of one node finished.
    Probe(Box<ProbeReport>),
    /// Probes that finished in one turn of the UDP lane, in order: one message (one channel
    /// hand-over and wake-up of the state task) per grid slot instead of one per probe.
    Probes(Vec<ProbeReport>),
    /// The target's nodes (after DNS) are now these `(ip:port, transport)`.
    Nodes {
        target: String,
        nodes: Vec<(String, String)>,
    },
    /// The target's name could not be resolved (nodes are kept from the last good answer).
    DnsError {
        target: String,
        error: String,
    },
    DnsOk {
        target: String,
    },
}

#[derive(Debug)]
pub struct ProbeReport {
    pub target: Arc<str>,
    pub node: Arc<str>,
    pub outcome: ProbeOutcome,
    /// How long after its scheduled instant the probe actually started.
    pub lateness: Duration,
    /// The tick this probe belongs to (on the target's grid `epoch + phase + k x interval`).
    pub scheduled: Instant,
}

/// Phases are multiples of this. Targets whose ticks fall in the same slot of the grid wake the
/// probe thread once between them and send back to back, and the UDP lane reads the previous
/// slot's answers in the same wake-up. A sleep and wake-up of the thread costs tens of
/// microseconds on a virtual machine, so the slot sets the cost: at 2,000 probes a second the
/// daemon measured 16.7 and 17.5 us per probe with 10 ms slots, 14.2 and 14.7 us with 20 ms, and
/// no better with 50 ms (BENCHMARKS.md, fifth pass). 20 ms: 40 requests per burst at 2,000 a
/// second, and an answer is acted on at most 20 ms after it came (its RTT is the kernel's
/// arrival stamp, so it does not grow). Far below any lateness or detection time that matters.
pub const PHASE_GRID_MS: u64 = 20;

/// The offset of a target inside its interval, stable across restarts and reloads: a multiple
/// of [`PHASE_GRID_MS`] (or of 1 ms for intervals shorter than 20 grid steps).
pub fn phase(name: &str, interval: Duration) -> Duration {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    let grid = if ms >= 20 * PHASE_GRID_MS {
        PHASE_GRID_MS
    } else {
        1
    };
    Duration::from_millis((h.finish() % (ms / grid).max(1)) * grid)
}

/// The first tick of a target at or after now: the next instant `epoch + phase + k x interval`,
/// the very same instant for every target in the same slot (so they share one timer wake-up).
pub fn first_tick(epoch: Instant, phase: Duration, interval: Duration) -> Instant {
    let since_epoch = epoch.elapsed();
    let k = if since_epoch < phase {
        0
    } else {
        (since_epoch - phase).as_nanos() / interval.as_nanos().max(1) + 1
    };
    epoch + phase + interval * (k.min(u128::from(u32::MAX)) as u32)
}

/// The tick after `scheduled`; the ticks already past at `now` are skipped, not bunched up.
pub fn next_tick(scheduled: Instant, interval: Duration, now: Instant) -> Instant {
    let mut next = scheduled + interval;
    if next <= now {
        let behind = now - next;
        let skip = (behind.as_nanos() / interval.as_nanos().max(1)) as u32 + 1;
        next += interval * skip;
    }
    next
}
