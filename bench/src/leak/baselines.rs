//! The two baselines the detector is measured against, run on the same samples in the same pass:
//!
//! - [`MonitRule`]: monit's `if memory > X for N cycles then alert`, with X a share of the limit;
//! - [`PredictLinear`]: a Prometheus alert rule `predict_linear(gauge[W], H) > limit` with `for: F`,
//!   evaluated at every sample (an ordinary least-squares line over the samples of the last W seconds,
//!   extrapolated H seconds ahead). The node-exporter mixin's `NodeFilesystemSpaceFillingUp` rules
//!   also require the gauge to be above a share of the limit already (`avail / size < 40%` with the
//!   24 h horizon, `< 20%` with 4 h); that guard is the optional `level`.
//!
//! Each returns `true` on the sample at which its alert starts firing (a rising edge).

use std::collections::VecDeque;

use sipwatch::leak::Sample;

/// `value > threshold for cycles consecutive samples`.
pub struct MonitRule {
    threshold: f64,
    cycles: u32,
    run: u32,
    firing: bool,
}

impl MonitRule {
    pub fn new(threshold: f64, cycles: u32) -> Self {
        MonitRule {
            threshold,
            cycles,
            run: 0,
            firing: false,
        }
    }

    pub fn push(&mut self, sample: Sample) -> bool {
        if sample.value > self.threshold {
            self.run += 1;
        } else {
            self.run = 0;
            self.firing = false;
        }
        if self.run >= self.cycles && !self.firing {
            self.firing = true;
            return true;
        }
        false
    }
}

/// `[gauge > level and] predict_linear(gauge[window], horizon) > limit for: hold`.
pub struct PredictLinear {
    window: f64,
    /// The mixin's level guard, as an absolute value (a share of the limit); `None` for the bare rule.
    level: Option<f64>,
    horizon: f64,
    hold: f64,
    limit: f64,
    samples: VecDeque<(f64, f64)>,
    origin: Option<(f64, f64)>,
    sums: [f64; 4],
    pushes: usize,
    pending_since: Option<f64>,
    firing: bool,
}

impl PredictLinear {
    /// `level_share`: the rule also needs `value > level_share x limit` (the mixin's guard).
    pub fn new(window: f64, horizon: f64, hold: f64, limit: f64, level_share: Option<f64>) -> Self {
        PredictLinear {
            window,
            level: level_share.map(|share| share * limit),
            horizon,
            hold,
            limit,
            samples: VecDeque::new(),
            origin: None,
            sums: [0.0; 4],
            pushes: 0,
            pending_since: None,
            firing: false,
        }
    }

    fn add(&mut self, x: f64, y: f64, sign: f64) {
        self.sums[0] += sign * x;
        self.sums[1] += sign * y;
        self.sums[2] += sign * x * x;
        self.sums[3] += sign * x * y;
    }

    pub fn push(&mut self, sample: Sample) -> bool {
        let (t0, y0) = *self.origin.get_or_insert((sample.t, sample.value));
        let (x, y) = (sample.t - t0, sample.value - y0);
        self.samples.push_back((x, y));
        self.add(x, y, 1.0);
        while let Some(&(ox, oy)) = self.samples.front() {
            if ox <= x - self.window {
                self.samples.pop_front();
                self.add(ox, oy, -1.0);
            } else {
                break;
            }
        }
        self.pushes += 1;
        if self.pushes == 4096 {
            self.pushes = 0;
            // Re-sum from scratch now and then so add/subtract rounding never accumulates.
            self.sums = [0.0; 4];
            let samples: Vec<(f64, f64)> = self.samples.iter().copied().collect();
            for (sx, sy) in samples {
                self.add(sx, sy, 1.0);
            }
        }
        let n = self.samples.len() as f64;
        let condition = if n >= 2.0 {
            let [sx, sy, sxx, sxy] = self.sums;
            let denom = n * sxx - sx * sx;
            if denom.abs() > f64::EPSILON * n * sxx.abs().max(1.0) {
                let slope = (n * sxy - sx * sy) / denom;
                let intercept = (sy - slope * sx) / n;
                let predicted = intercept + slope * (x + self.horizon) + y0;
                predicted > self.limit
            } else {
                false
            }
        } else {
            false
        };
        let condition = condition && self.level.is_none_or(|level| sample.value > level);
        if !condition {
            self.pending_since = None;
            self.firing = false;
            return false;
        }
        let since = *self.pending_since.get_or_insert(sample.t);
        if !self.firing && sample.t - since >= self.hold {
            self.firing = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monit_needs_consecutive_cycles() {
        let mut m = MonitRule::new(10.0, 3);
        let fired: Vec<bool> = [11.0, 11.0, 9.0, 11.0, 11.0, 11.0, 11.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| m.push(Sample::new(i as f64, v)))
            .collect();
        assert_eq!(fired, [false, false, false, false, false, true, false]);
    }

    #[test]
    fn predict_linear_fires_after_hold() {
        // 1 unit/s growth, limit 1000 above start: at t the prediction is t + 100.
        let mut p = PredictLinear::new(50.0, 100.0, 20.0, 1000.0, None);
        let first = (0..2000).find(|&t| p.push(Sample::new(f64::from(t), f64::from(t))));
        assert_eq!(first, Some(921));
    }

    #[test]
    fn level_guard_holds_the_rule_until_the_gauge_is_high() {
        // Same growth; the guard needs value > 950 first, then the hold of 20 s.
        let mut p = PredictLinear::new(50.0, 100.0, 20.0, 1000.0, Some(0.95));
        let first = (0..2000).find(|&t| p.push(Sample::new(f64::from(t), f64::from(t))));
        assert_eq!(first, Some(971));
    }
}
