//! What the detector concludes after each sample: [`LeakVerdict`], its [`VerdictState`] and the
//! [`Shape`] it recognised. These are plain data for alerts, metrics, the agent's report and the
//! `leak analyze` output; they carry no behaviour.

use serde::Serialize;

/// Is the gauge leaking?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictState {
    /// Too little data in the current segment to say anything.
    Learning,
    /// No growth that would be a leak.
    NoLeak,
    /// Steady growth (linear or staircase) with enough evidence for the time left to the limit.
    Leak,
}

/// The detector's best guess at what the lower envelope looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Not enough data to tell.
    Unknown,
    /// No significant trend.
    Flat,
    /// Growth that is levelling off: a warm-up or a cache fill.
    WarmUp,
    /// A flat lower envelope under a large oscillation (garbage collection, allocator churn).
    Sawtooth,
    /// One or two jumps with flat stretches around them (a reload).
    Step,
    /// Repeated up-steps: a leak that grows in chunks.
    Staircase,
    /// Steady continuous growth.
    Linear,
    /// Growth today that yesterday's same hours also had: a daily load cycle.
    Cyclic,
}

/// The detector's conclusion after a sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeakVerdict {
    pub state: VerdictState,
    pub shape: Shape,
    /// Robust (Theil-Sen) slope of the lower envelope, gauge units per second.
    pub slope_per_sec: f64,
    /// Lower Sen confidence bound of the slope (at `significance_z`).
    pub slope_low: f64,
    /// Upper Sen confidence bound of the slope.
    pub slope_high: f64,
    /// When the growth started (unix seconds), when there is growth.
    pub onset: Option<f64>,
    /// Time of the sample at which `Leak` was first raised in this segment.
    pub detected_at: Option<f64>,
    /// Seconds from the last sample until the gauge reaches the limit at the current slope; `None`
    /// without a limit or without growth.
    pub eta_to_limit_secs: Option<f64>,
    /// Start of the current segment (first sample, or the restart).
    pub segment_start: f64,
}

impl LeakVerdict {
    /// The verdict before any data: learning, unknown shape, zero slope.
    pub fn learning(segment_start: f64) -> Self {
        LeakVerdict {
            state: VerdictState::Learning,
            shape: Shape::Unknown,
            slope_per_sec: 0.0,
            slope_low: 0.0,
            slope_high: 0.0,
            onset: None,
            detected_at: None,
            eta_to_limit_secs: None,
            segment_start,
        }
    }

    pub fn is_leak(&self) -> bool {
        self.state == VerdictState::Leak
    }
}
