//! What one trailing window of the lower envelope says: is there growth, is it steady, is it made of
//! a few jumps, is it levelling off? [`examine`] answers for a window; the detector asks it for a ladder
//! of windows and decides (see `detector.rs`).
//!
//! Steps, in order:
//! 1. thin the window to at most [`MAX_FIT_POINTS`] points spread evenly in time (bounds the cost, and
//!    keeps the rank test from treating near-duplicate envelope points as independent evidence);
//! 2. find jumps: increments far above the typical rate (relative to the window's range and noise);
//! 3. subtract the jumps and fit Theil-Sen with Sen's interval to what is left (continuous growth);
//! 4. compare the slopes of the earlier and later halves: a warm-up or cache fill decelerates.

use super::envelope::EnvelopePoint;
use super::robust::{mad_sigma, median, theil_sen, SenFit};
use super::{DetectorConfig, Shape};

/// Most points one window fit uses.
pub const MAX_FIT_POINTS: usize = 32;
/// Fewest points a window needs before it says anything.
pub const MIN_FIT_POINTS: usize = 6;
/// Fewest points each half of a window needs for its slope to count.
const MIN_HALF_POINTS: usize = 4;
/// A jump is an increment above this fraction of the window's range (and well above noise).
const JUMP_RANGE_FRACTION: f64 = 0.2;
/// ... and above this many robust deviations of the increments.
const JUMP_NOISE_K: f64 = 6.0;

/// How the growth in a window looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// No significant growth (flat, or jumps that cancel).
    None,
    /// One or a few jumps between flat stretches.
    Steps,
    /// Significant growth that slows down: later half below `plateau_ratio` x the earlier half.
    Levelling,
    /// Growth concentrated in the later half: it started inside the window (a shorter window sees it
    /// steady).
    Young,
    /// Steady continuous growth.
    Steady,
    /// Repeated up-steps spread over the window.
    Staircase,
}

/// The findings for one window.
#[derive(Clone, Debug)]
pub struct WindowEvidence {
    pub start: f64,
    pub end: f64,
    /// Theil-Sen fit of the jump-adjusted lower envelope (continuous growth).
    pub fit: SenFit,
    /// Theil-Sen fit of the raw lower envelope (includes jumps; the rate of a staircase).
    pub raw_fit: SenFit,
    /// Robust deviation of the residuals around the fit.
    pub noise: f64,
    /// Median height of the raw oscillation above the lower envelope (trailing max - min).
    pub swing: f64,
    /// One up-step short of a staircase (spread over the window): a leak only if the limit is near.
    pub near_staircase: bool,
    pub growth: Growth,
}

impl WindowEvidence {
    pub fn span(&self) -> f64 {
        self.end - self.start
    }

    /// The growth rate that counts for this window: the staircase's average rate, or the continuous
    /// slope.
    pub fn rate(&self) -> SenFit {
        if self.growth == Growth::Staircase || self.near_staircase {
            self.raw_fit
        } else {
            self.fit
        }
    }

    pub fn is_leak_shaped(&self) -> bool {
        matches!(self.growth, Growth::Steady | Growth::Staircase)
    }

    pub fn shape(&self) -> Shape {
        match self.growth {
            Growth::Steady | Growth::Young => Shape::Linear,
            Growth::Staircase => Shape::Staircase,
            Growth::Levelling => Shape::WarmUp,
            Growth::Steps => Shape::Step,
            Growth::None => Shape::Flat,
        }
    }
}

/// Picks at most `max` points spread evenly in time, always keeping the first and the last.
pub fn thin(points: &[EnvelopePoint], max: usize) -> Vec<EnvelopePoint> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let (first, last) = (points[0].t, points[points.len() - 1].t);
    let step = (last - first) / (max - 1) as f64;
    let mut out = Vec::with_capacity(max);
    let mut next = first;
    for (i, p) in points.iter().enumerate() {
        if p.t >= next || i == points.len() - 1 {
            out.push(*p);
            next = p.t + step * 0.999;
        }
    }
    out
}

/// Examines one window of envelope points (oldest first, already thinned). `quantum` is the smallest
/// change the gauge shows (a page, one session).
pub fn examine(
    points: &[EnvelopePoint],
    config: &DetectorConfig,
    quantum: f64,
) -> Option<WindowEvidence> {
    if points.len() < MIN_FIT_POINTS {
        return None;
    }
    let n = points.len();
    let t0 = points[0].t;
    let t: Vec<f64> = points.iter().map(|p| p.t - t0).collect();
    let low: Vec<f64> = points.iter().map(|p| p.low).collect();

    // Jumps: increments far above the window's typical rate.
    let rates: Vec<f64> = (1..n)
        .map(|i| (low[i] - low[i - 1]) / (t[i] - t[i - 1]).max(1e-9))
        .collect();
    let typical_rate = median(&rates);
    let excess: Vec<f64> = (1..n)
        .map(|i| low[i] - low[i - 1] - typical_rate * (t[i] - t[i - 1]))
        .collect();
    let excess_sigma = mad_sigma(&excess);
    let (lo_min, lo_max) = low
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let threshold = (JUMP_NOISE_K * excess_sigma)
        .max(JUMP_RANGE_FRACTION * (lo_max - lo_min))
        .max(2.0 * quantum);
    let mut adjusted = low.clone();
    let mut shift = 0.0;
    let mut up_steps = 0u32;
    let mut first_up = None;
    let mut last_up = None;
    let mut in_jump = false;
    for i in 1..n {
        let e = excess[i - 1];
        let jump = e.abs() > threshold && threshold > 0.0;
        if jump {
            shift += e;
            // Adjacent jump increments are one step seen across thinned points (or a short ramp).
            if e > 0.0 && !in_jump {
                up_steps += 1;
                first_up.get_or_insert(t[i]);
                last_up = Some(t[i]);
            }
        }
        in_jump = jump && e > 0.0;
        adjusted[i] = low[i] - shift;
    }

    let z = config.significance_z;
    let fit = theil_sen(&t, &adjusted, z);
    let raw_fit = if up_steps > 0 || shift != 0.0 {
        theil_sen(&t, &low, z)
    } else {
        fit
    };
    // Noise: the robust scatter around the line (a knee inflates it, which only makes a window that
    // is not steady anyway more conservative), and at least the scatter of the increments.
    let residuals: Vec<f64> = (0..n)
        .map(|i| adjusted[i] - (fit.intercept + fit.slope * t[i]))
        .collect();
    let noise = mad_sigma(&residuals).max(excess_sigma / std::f64::consts::SQRT_2);
    let swing = median(&points.iter().map(|p| p.high - p.low).collect::<Vec<_>>());
    let span = t[n - 1];
    let mid = span / 2.0;
    let floor = (config.noise_k * noise)
        .max(config.min_rise)
        .max(3.0 * quantum);
    let continuous = fit.low > 0.0 && fit.slope * span >= floor;
    let (mut early_slope, mut late_slope, mut recent_slope) = (0.0, 0.0, 0.0);
    // Growth must be seen across the window: after a sampling gap one half may hold only a few
    // points, and slopes from those are noise.
    let split = t.partition_point(|&x| x < mid);
    let quarter = t.partition_point(|&x| x < 0.75 * span);
    let covered = split >= MIN_HALF_POINTS.max(n / 4)
        && n - split >= MIN_HALF_POINTS.max(n / 4)
        && n - quarter >= 3;
    let continuous = continuous && covered;
    if continuous {
        // Only growth needs its shape checked; the halves cost three more fits.
        early_slope = theil_sen(&t[..split], &adjusted[..split], z).slope;
        late_slope = theil_sen(&t[split..], &adjusted[split..], z).slope;
        recent_slope = theil_sen(&t[quarter..], &adjusted[quarter..], z).slope;
    }
    let stepped_rise = raw_fit.slope * span;
    let stairs = raw_fit.low > 0.0
        && stepped_rise >= floor
        && first_up.is_some_and(|f| f <= mid)
        && last_up.is_some_and(|l| l >= mid);
    let near_staircase = !continuous && stairs && up_steps + 1 == config.staircase_min_steps;
    let growth = if continuous {
        let ratio = config.plateau_ratio;
        if (early_slope > 0.0 && late_slope < ratio * early_slope)
            || recent_slope < ratio * fit.slope
        {
            Growth::Levelling
        } else if early_slope <= 0.0 || late_slope * ratio > early_slope {
            Growth::Young
        } else {
            Growth::Steady
        }
    } else if up_steps >= config.staircase_min_steps && stairs {
        Growth::Staircase
    } else if up_steps > 0 && raw_fit.low > 0.0 {
        Growth::Steps
    } else {
        Growth::None
    };
    Some(WindowEvidence {
        start: t0,
        end: points[n - 1].t,
        fit,
        raw_fit,
        noise,
        swing,
        near_staircase,
        growth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> f64) -> Vec<EnvelopePoint> {
        (0..40)
            .map(|i| {
                let t = f64::from(i) * 1800.0;
                let low = f(t);
                EnvelopePoint { t, low, high: low }
            })
            .collect()
    }

    fn growth(points: &[EnvelopePoint]) -> Growth {
        examine(points, &DetectorConfig::default(), 1.0)
            .expect("enough points")
            .growth
    }

    #[test]
    fn classifies_window_shapes() {
        let wiggle = |t: f64| 3.0 * (t / 977.0).sin();
        assert_eq!(growth(&series(|t| 1000.0 + wiggle(t))), Growth::None);
        assert_eq!(
            growth(&series(|t| 1000.0 + t / 36.0 + wiggle(t))),
            Growth::Steady
        );
        let warm = |t: f64| 1000.0 + 2000.0 * (1.0 - (-t / 10_000.0).exp()) + wiggle(t);
        assert_eq!(growth(&series(warm)), Growth::Levelling);
        let step = |t: f64| if t < 30_000.0 { 1000.0 } else { 1500.0 } + wiggle(t);
        assert_eq!(growth(&series(step)), Growth::Steps);
        let stairs = |t: f64| 1000.0 + 300.0 * (t / 15_000.0).floor() + wiggle(t);
        assert_eq!(growth(&series(stairs)), Growth::Staircase);
        let young = |t: f64| 1000.0 + (t - 45_000.0).max(0.0) / 10.0 + wiggle(t);
        let ev = examine(&series(young), &DetectorConfig::default(), 1.0).expect("points");
        assert!(
            !ev.is_leak_shaped(),
            "growth that started mid-window is not steady: {ev:?}"
        );
    }

    #[test]
    fn a_short_ramp_across_thinned_points_is_one_step_not_a_staircase() {
        // A cache filling in 1.5 h, seen through 30-minute points: three big increments in a row.
        let ramp =
            |t: f64| 1000.0 + 900.0 * ((t - 30_000.0) / 5400.0).clamp(0.0, 1.0) + (t / 977.0).sin();
        assert_eq!(growth(&series(ramp)), Growth::Steps);
    }

    #[test]
    fn thinning_keeps_ends_and_bounds_count() {
        let pts = (0..500)
            .map(|i| EnvelopePoint {
                t: f64::from(i),
                low: 0.0,
                high: 0.0,
            })
            .collect::<Vec<_>>();
        let thin = thin(&pts, 40);
        assert!(thin.len() <= 41 && thin.len() >= 38, "{}", thin.len());
        assert_eq!(thin[0].t, 0.0);
        assert_eq!(thin[thin.len() - 1].t, 499.0);
    }
}
