//! When did the growth start? A hinge fit over the segment's lower envelope: flat at `c` until `t0`,
//! then linear with slope `b`; `t0` is the breakpoint with the least squared error. Used only once the
//! detector has found growth, so its O(n^2) over a thinned series does not run per sample.

use super::envelope::EnvelopePoint;

/// The breakpoint of the best flat-then-linear fit, or the first point's time if the series grows
/// from the start. `None` for fewer than four points.
pub fn hinge_onset(points: &[EnvelopePoint]) -> Option<f64> {
    let n = points.len();
    if n < 4 {
        return None;
    }
    let mut best: Option<(f64, f64)> = None;
    for candidate in points.iter().take(n - 2) {
        let t0 = candidate.t;
        // Least squares for y = c + b * x with x = max(0, t - t0).
        let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
        for p in points {
            let x = (p.t - t0).max(0.0);
            sx += x;
            sy += p.low;
            sxx += x * x;
            sxy += x * p.low;
        }
        let nf = n as f64;
        let det = nf * sxx - sx * sx;
        if det.abs() < f64::EPSILON {
            continue;
        }
        let b = (nf * sxy - sx * sy) / det;
        let c = (sy - b * sx) / nf;
        let sse: f64 = points
            .iter()
            .map(|p| {
                let r = p.low - (c + b * (p.t - t0).max(0.0));
                r * r
            })
            .sum();
        if best.is_none_or(|(_, e)| sse < e) {
            best = Some((t0, sse));
        }
    }
    best.map(|(t0, _)| t0).or(Some(points[0].t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_knee() {
        let pts: Vec<EnvelopePoint> = (0..60)
            .map(|i| {
                let t = f64::from(i) * 600.0;
                let low =
                    500.0 + (t - 20_000.0).max(0.0) * 0.05 + if i % 2 == 0 { 1.0 } else { -1.0 };
                EnvelopePoint { t, low, high: low }
            })
            .collect();
        let onset = hinge_onset(&pts).expect("onset");
        assert!((onset - 20_000.0).abs() <= 1200.0, "{onset}");
    }
}
