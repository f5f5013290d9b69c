//! Robust statistics the detector is built on: median, MAD, and the Theil-Sen slope with Sen's
//! rank-based confidence interval (the inversion of the Mann-Kendall trend test, with the tie
//! correction that page-quantised memory values need).
//!
//! Pure functions over slices; no state, no allocation beyond a scratch vector for pair slopes.
//! Outliers up to ~29% of the points do not move a Theil-Sen slope, which is why a few stray samples,
//! a missed sawtooth trough or a short spike do not fake a trend.

/// Median of `values` (reorders them). `NaN` for an empty slice.
pub fn median_in_place(values: &mut [f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    values.sort_unstable_by(f64::total_cmp);
    if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

/// Median by selection (O(n), reorders `values`). `NaN` for an empty slice.
pub fn median_by_selection(values: &mut [f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let upper = *values.select_nth_unstable_by(n / 2, f64::total_cmp).1;
    if n % 2 == 1 {
        return upper;
    }
    let lower = values[..n / 2]
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    0.5 * (lower + upper)
}

/// Median of `values` without touching them.
pub fn median(values: &[f64]) -> f64 {
    let mut scratch = values.to_vec();
    median_in_place(&mut scratch)
}

/// Median absolute deviation around the median, scaled by 1.4826 to estimate a normal sigma.
pub fn mad_sigma(values: &[f64]) -> f64 {
    let m = median(values);
    let mut dev: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
    1.4826 * median_in_place(&mut dev)
}

/// A Theil-Sen fit: slope, its Sen confidence interval, and the intercept at `t = 0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SenFit {
    pub slope: f64,
    pub low: f64,
    pub high: f64,
    pub intercept: f64,
    /// Mann-Kendall z-score (continuity-corrected); positive for an increasing series.
    pub z: f64,
}

impl SenFit {
    pub const NONE: SenFit = SenFit {
        slope: 0.0,
        low: 0.0,
        high: 0.0,
        intercept: 0.0,
        z: 0.0,
    };
}

/// Theil-Sen slope of `(t, y)` points (any order of `t` but no duplicates expected) with the Sen
/// confidence interval at z-score `z`. O(n^2 log n); callers thin to a few dozen points.
pub fn theil_sen(t: &[f64], y: &[f64], z: f64) -> SenFit {
    let n = t.len().min(y.len());
    if n < 3 {
        return SenFit::NONE;
    }
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    let mut s: i64 = 0;
    for i in 0..n {
        for j in (i + 1)..n {
            let dt = t[j] - t[i];
            if dt == 0.0 {
                continue;
            }
            let dy = y[j] - y[i];
            slopes.push(dy / dt);
            let sign = (dy * dt.signum()).partial_cmp(&0.0);
            s += match sign {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    if slopes.is_empty() {
        return SenFit::NONE;
    }
    let slope = median_by_selection(&mut slopes);
    let var_s = kendall_variance(y);
    let sd = var_s.max(f64::MIN_POSITIVE).sqrt();
    let mk_z = if s > 0 {
        (s as f64 - 1.0) / sd
    } else if s < 0 {
        (s as f64 + 1.0) / sd
    } else {
        0.0
    };
    let m = slopes.len() as f64;
    let c = z * sd;
    let lower_rank = ((m - c) / 2.0).floor();
    let upper_rank = ((m + c) / 2.0).ceil();
    let last = slopes.len() - 1;
    let low = if lower_rank < 1.0 {
        f64::NEG_INFINITY
    } else {
        *slopes
            .select_nth_unstable_by((lower_rank as usize - 1).min(last), f64::total_cmp)
            .1
    };
    let high = if upper_rank > m {
        f64::INFINITY
    } else {
        *slopes
            .select_nth_unstable_by((upper_rank as usize).min(last), f64::total_cmp)
            .1
    };
    let mut residual: Vec<f64> = (0..n).map(|i| y[i] - slope * t[i]).collect();
    let intercept = median_by_selection(&mut residual);
    SenFit {
        slope,
        low,
        high,
        intercept,
        z: mk_z,
    }
}

/// Variance of the Mann-Kendall S statistic with the correction for tied values.
fn kendall_variance(y: &[f64]) -> f64 {
    let n = y.len() as f64;
    let mut sorted = y.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut run = 1usize;
    for i in 1..=sorted.len() {
        if i < sorted.len() && sorted[i] == sorted[i - 1] {
            run += 1;
        } else {
            if run > 1 {
                let r = run as f64;
                ties += r * (r - 1.0) * (2.0 * r + 5.0);
            }
            run = 1;
        }
    }
    (n * (n - 1.0) * (2.0 * n + 5.0) - ties) / 18.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let sigma = mad_sigma(&[1.0, 2.0, 3.0, 4.0, 100.0]);
        assert!((sigma - 1.4826).abs() < 1e-9, "{sigma}");
    }

    #[test]
    fn theil_sen_ignores_outliers_and_brackets_the_slope() {
        let t: Vec<f64> = (0..40).map(f64::from).collect();
        let mut y: Vec<f64> = t.iter().map(|t| 5.0 + 2.0 * t + (t * 7.3).sin()).collect();
        y[10] = 1000.0;
        y[30] = -1000.0;
        let fit = theil_sen(&t, &y, 1.96);
        assert!((fit.slope - 2.0).abs() < 0.1, "{fit:?}");
        assert!(fit.low < 2.0 && fit.high > 2.0 && fit.low > 1.5, "{fit:?}");
        assert!(fit.z > 5.0);
        assert!((fit.intercept - 5.0).abs() < 1.5, "{fit:?}");
    }

    #[test]
    fn flat_quantised_series_is_not_significant() {
        let t: Vec<f64> = (0..40).map(f64::from).collect();
        let y: Vec<f64> = (0..40)
            .map(|i| 4096.0 * f64::from([3, 4, 3, 3, 4][i % 5]))
            .collect();
        let fit = theil_sen(&t, &y, 2.58);
        assert!(fit.low <= 0.0 && fit.high >= 0.0, "{fit:?}");
    }
}
