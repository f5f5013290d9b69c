//! Spotting a service restart in the data alone: the gauge falls back, two samples in a row, by most
//! of the growth the segment accumulated (or by half its level), far beyond the sample-to-sample
//! noise. A garbage-collection drop lands on the lower envelope and is not a restart; a restart lands
//! below it, near where the segment started. The agent also calls `mark_restart` when the pids change;
//! this catches restarts it could not see (a replayed CSV, a supervisor that reuses the pid).

use std::collections::VecDeque;

use super::robust::median;
use super::Sample;

/// Sample-to-sample differences remembered for the noise estimate.
const NOISE_MEMORY: usize = 64;
/// A restart drop must exceed this many noise deviations.
const DROP_NOISE_K: f64 = 8.0;

/// What [`RestartWatch::observe`] concluded about the sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RestartSignal {
    Continue,
    /// This sample looks like a restart; one more like it confirms.
    Pending,
    /// Confirmed: the restart happened at the given earlier sample.
    Confirmed(Sample),
}

#[derive(Clone, Debug)]
pub struct RestartWatch {
    drop_fraction: f64,
    settle: f64,
    segment_start: f64,
    start_level: f64,
    last_value: Option<f64>,
    diffs: VecDeque<f64>,
    pending: Option<(Sample, f64)>,
}

impl RestartWatch {
    /// `settle`: the start level is the minimum over the segment's first `settle` seconds.
    pub fn new(drop_fraction: f64, settle: f64, segment_start: f64) -> Self {
        RestartWatch {
            drop_fraction,
            settle,
            segment_start,
            start_level: f64::INFINITY,
            last_value: None,
            diffs: VecDeque::with_capacity(NOISE_MEMORY),
            pending: None,
        }
    }

    /// Robust sigma of the raw sample-to-sample noise (0 until there are differences).
    pub fn noise(&self) -> f64 {
        if self.diffs.is_empty() {
            return 0.0;
        }
        let d: Vec<f64> = self.diffs.iter().copied().collect();
        1.4826 * median(&d) / std::f64::consts::SQRT_2
    }

    /// Looks at a sample before it enters the envelope; `reference` is the trailing minimum so far.
    pub fn observe(
        &mut self,
        sample: Sample,
        reference: Option<f64>,
        quantum: f64,
    ) -> RestartSignal {
        let signal = match reference {
            Some(reference) if sample.t > self.segment_start + self.settle => {
                let frozen = self.pending.map_or(reference, |(_, r)| r);
                if self.is_restart_drop(sample.value, frozen, quantum) {
                    match self.pending.take() {
                        Some((first, _)) => RestartSignal::Confirmed(first),
                        None => {
                            self.pending = Some((sample, frozen));
                            RestartSignal::Pending
                        }
                    }
                } else {
                    self.pending = None;
                    RestartSignal::Continue
                }
            }
            _ => RestartSignal::Continue,
        };
        if sample.t <= self.segment_start + self.settle {
            self.start_level = self.start_level.min(sample.value);
        }
        if let Some(last) = self.last_value {
            if self.diffs.len() == NOISE_MEMORY {
                self.diffs.pop_front();
            }
            self.diffs.push_back((sample.value - last).abs());
        }
        self.last_value = Some(sample.value);
        signal
    }

    fn is_restart_drop(&self, value: f64, reference: f64, quantum: f64) -> bool {
        let drop = reference - value;
        if drop <= DROP_NOISE_K * self.noise().max(quantum) {
            return false;
        }
        let grown = reference - self.start_level;
        let back_to_start = grown > 0.0 && drop >= self.drop_fraction * grown;
        let collapsed = drop >= 0.5 * reference.abs();
        back_to_start || collapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_needs_two_low_samples_and_reports_the_first() {
        let mut w = RestartWatch::new(0.6, 600.0, 0.0);
        for i in 0..200 {
            let v = 1000.0 + f64::from(i) * 10.0 + f64::from(i % 3);
            assert_eq!(
                w.observe(Sample::new(f64::from(i) * 60.0, v), Some(v - 200.0), 1.0),
                RestartSignal::Continue
            );
        }
        let first = Sample::new(200.0 * 60.0, 1100.0);
        assert_eq!(w.observe(first, Some(2800.0), 1.0), RestartSignal::Pending);
        let second = Sample::new(201.0 * 60.0, 1150.0);
        assert_eq!(
            w.observe(second, Some(1100.0), 1.0),
            RestartSignal::Confirmed(first)
        );
    }

    #[test]
    fn single_glitch_is_not_a_restart() {
        let mut w = RestartWatch::new(0.6, 600.0, 0.0);
        for i in 0..100 {
            w.observe(
                Sample::new(f64::from(i) * 60.0, 1000.0 + f64::from(i) * 10.0),
                Some(900.0 + f64::from(i) * 10.0),
                1.0,
            );
        }
        assert_eq!(
            w.observe(Sample::new(6000.0, 0.0), Some(1900.0), 1.0),
            RestartSignal::Pending
        );
        assert_eq!(
            w.observe(Sample::new(6060.0, 2000.0), Some(0.0), 1.0),
            RestartSignal::Continue
        );
    }
}
