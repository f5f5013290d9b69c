//! The online leak detector: samples in, verdicts out. Pure (no clock, no I/O); the agent feeds it live
//! samples and `sipwatch leak analyze` replays a CSV through the very same code.
//!
//! - [`DetectorConfig`] (`config.rs`): the sensitivity knobs and their benchmarked defaults.
//! - [`Sample`] (`sample.rs`): one gauge reading.
//! - [`LeakVerdict`], [`VerdictState`], [`Shape`] (`verdict.rs`): what the detector concludes.
//! - [`LeakDetector`] (`detector.rs`): the state machine: segments, the window ladder, the decision.
//! - `envelope.rs`: the lower envelope (trailing minimum of bucket minima), immune to sawtooth.
//! - `history.rs`: bounded multi-resolution history of envelope points.
//! - `evidence.rs`: what one window says (steady growth, steps, staircase, levelling off).
//! - `restart.rs`: restarts seen in the data.
//! - `onset.rs`: when the growth started.
//! - `robust.rs`: median, MAD, Theil-Sen with Sen's confidence interval.

mod config;
mod detector;
mod envelope;
mod evidence;
mod history;
mod onset;
mod restart;
mod robust;
mod sample;
mod verdict;

pub use config::{duration_secs, DetectorConfig};
pub use detector::LeakDetector;
pub use sample::Sample;
pub use verdict::{LeakVerdict, Shape, VerdictState};

#[cfg(test)]
mod scenarios;
