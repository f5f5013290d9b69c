//! Bounded history of envelope points for one segment. Recent points are kept at full resolution;
//! older ones are merged pairwise into coarser levels (an exponential histogram), so a week of history
//! costs a few hundred points whatever the sampling rate. Merging averages two neighbouring envelope
//! points rather than taking their minimum, so coarse history has the same level as fine history and
//! the boundary between resolutions does not look like a step.

use std::collections::VecDeque;

use super::envelope::EnvelopePoint;

/// Points kept per resolution level.
const LEVEL_CAPACITY: usize = 96;
/// Levels: 96 points each at 1x, 2x, 4x ... 64x the bucket width.
const MAX_LEVELS: usize = 7;

#[derive(Clone, Debug, Default)]
pub struct EnvelopeHistory {
    /// `levels[0]` is the finest and newest; every point of level `i + 1` is older than level `i`'s.
    levels: Vec<VecDeque<EnvelopePoint>>,
    max_age: f64,
}

impl EnvelopeHistory {
    pub fn new(max_age: f64) -> Self {
        EnvelopeHistory {
            levels: vec![VecDeque::new()],
            max_age,
        }
    }

    pub fn push(&mut self, point: EnvelopePoint) {
        self.levels[0].push_back(point);
        let mut level = 0;
        while level < self.levels.len() && self.levels[level].len() > LEVEL_CAPACITY {
            let (Some(a), Some(b)) = (
                self.levels[level].pop_front(),
                self.levels[level].pop_front(),
            ) else {
                break;
            };
            let merged = EnvelopePoint {
                t: 0.5 * (a.t + b.t),
                low: 0.5 * (a.low + b.low),
                high: a.high.max(b.high),
            };
            if level + 1 < MAX_LEVELS {
                if self.levels.len() == level + 1 {
                    self.levels.push(VecDeque::new());
                }
                self.levels[level + 1].push_back(merged);
            }
            level += 1;
        }
        let horizon = point.t - self.max_age;
        for level in self.levels.iter_mut().rev() {
            while level.front().is_some_and(|p| p.t < horizon) {
                level.pop_front();
            }
            if !level.is_empty() {
                break;
            }
        }
    }

    /// Number of points held (bounded by `LEVEL_CAPACITY * MAX_LEVELS`).
    pub fn len(&self) -> usize {
        self.levels.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn first(&self) -> Option<EnvelopePoint> {
        self.levels.iter().rev().find_map(|l| l.front().copied())
    }

    pub fn last(&self) -> Option<EnvelopePoint> {
        self.levels[0].back().copied()
    }

    /// All points with `t >= since`, oldest first.
    pub fn since(&self, since: f64) -> Vec<EnvelopePoint> {
        let mut out = Vec::new();
        for level in self.levels.iter().rev() {
            out.extend(level.iter().filter(|p| p.t >= since));
        }
        out
    }

    /// The lower envelope at time `t`, linearly interpolated; `None` outside the history.
    pub fn low_at(&self, t: f64) -> Option<f64> {
        let mut before: Option<EnvelopePoint> = None;
        for level in self.levels.iter().rev() {
            for p in level {
                if p.t >= t {
                    let b = before?;
                    if p.t == b.t {
                        return Some(p.low);
                    }
                    let w = (t - b.t) / (p.t - b.t);
                    return Some(b.low + w * (p.low - b.low));
                }
                before = Some(*p);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: f64, low: f64) -> EnvelopePoint {
        EnvelopePoint { t, low, high: low }
    }

    #[test]
    fn memory_is_bounded_and_order_kept() {
        let mut h = EnvelopeHistory::new(30.0 * 86_400.0);
        for i in 0..100_000 {
            h.push(point(f64::from(i) * 300.0, f64::from(i)));
        }
        assert!(h.len() <= LEVEL_CAPACITY * MAX_LEVELS, "{}", h.len());
        let all = h.since(f64::NEG_INFINITY);
        assert!(all.windows(2).all(|w| w[0].t < w[1].t));
        // A linear series stays linear after merging: low == t / 300 everywhere.
        assert!(all.iter().all(|p| (p.low - p.t / 300.0).abs() < 1e-6));
    }

    #[test]
    fn old_points_are_dropped_and_interpolation_works() {
        let mut h = EnvelopeHistory::new(86_400.0);
        for i in 0..2000 {
            h.push(point(f64::from(i) * 300.0, f64::from(i) * 2.0));
        }
        let first = h.first().expect("points");
        assert!(first.t >= 1999.0 * 300.0 - 86_400.0 - 300.0 * 64.0);
        let mid = 1990.0 * 300.0 + 150.0;
        let low = h.low_at(mid).expect("inside");
        assert!((low - (1990.5 * 2.0)).abs() < 1e-9, "{low}");
        assert_eq!(h.low_at(0.0), None);
    }
}
