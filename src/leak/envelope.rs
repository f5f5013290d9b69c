//! The lower envelope: per-bucket minima of the raw samples, and a trailing minimum over
//! `envelope` seconds of buckets. A garbage-collector sawtooth, allocator churn or load spikes ride on
//! top of the live set; the troughs are what a leak raises. One [`EnvelopePoint`] comes out each time a
//! bucket closes, which is also when the detector re-evaluates.
//!
//! The trailing minimum lags a rising gauge by its width. A gauge that has not oscillated needs no
//! flattening, so an adaptive envelope starts one bucket wide and widens for good (in this segment)
//! when the detector sees the first sharp fall ([`LowerEnvelope::widen`]).
//!
//! It keeps the upper envelope (trailing maximum) too: the limit is hit by the peaks, so the time left
//! to the limit is measured from them. This file does not store history; see `history.rs`.

use std::collections::VecDeque;

use super::Sample;

/// One point of the envelope: at `t` (the last sample of the bucket that just closed), the trailing
/// minimum `low` and maximum `high` over the envelope width.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnvelopePoint {
    pub t: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    index: i64,
    min: f64,
    max: f64,
    last_t: f64,
}

/// Turns raw samples into envelope points, one per closed bucket.
#[derive(Clone, Debug)]
pub struct LowerEnvelope {
    bucket_secs: f64,
    buckets_per_envelope: i64,
    /// Buckets the trailing minimum spans now: 1 while an adaptive envelope is narrow.
    low_buckets: i64,
    /// Buckets before the first point comes out.
    first_point_after: i64,
    current: Option<Bucket>,
    closed: VecDeque<Bucket>,
    first_index: Option<i64>,
}

impl LowerEnvelope {
    /// A fixed-width envelope.
    pub fn new(bucket_secs: f64, envelope_secs: f64) -> Self {
        let buckets_per_envelope = ((envelope_secs / bucket_secs).round() as i64).max(1);
        LowerEnvelope {
            bucket_secs,
            buckets_per_envelope,
            low_buckets: buckets_per_envelope,
            first_point_after: buckets_per_envelope,
            current: None,
            closed: VecDeque::new(),
            first_index: None,
        }
    }

    /// An envelope one bucket wide until [`widen`](Self::widen) is called. `after_restart`: the
    /// first point still waits for a full width, because the first half hour after a service starts
    /// is where warm-ups are steepest; a gauge first seen while its service is already running has
    /// no such start.
    pub fn adaptive(bucket_secs: f64, envelope_secs: f64, after_restart: bool) -> Self {
        let wide = LowerEnvelope::new(bucket_secs, envelope_secs);
        LowerEnvelope {
            low_buckets: 1,
            first_point_after: if after_restart {
                wide.buckets_per_envelope
            } else {
                1
            },
            ..wide
        }
    }

    /// From the next closed bucket on, the trailing minimum spans the full envelope width.
    pub fn widen(&mut self) {
        self.low_buckets = self.buckets_per_envelope;
    }

    /// Whether the trailing minimum spans the full width.
    pub fn is_wide(&self) -> bool {
        self.low_buckets == self.buckets_per_envelope
    }

    /// Adds a sample; returns the envelope point of the bucket it closed, if it closed one. No point
    /// comes out until the trailing window is full: a partial window would hold the first value flat
    /// and bend the shape of whatever grows from the start.
    pub fn push(&mut self, sample: Sample) -> Option<EnvelopePoint> {
        let index = (sample.t / self.bucket_secs).floor() as i64;
        let first_index = *self.first_index.get_or_insert(index);
        match &mut self.current {
            Some(bucket) if bucket.index == index => {
                bucket.min = bucket.min.min(sample.value);
                bucket.max = bucket.max.max(sample.value);
                bucket.last_t = sample.t;
                None
            }
            _ => {
                let window = self.first_point_after.max(self.low_buckets);
                let closed = self
                    .current
                    .take()
                    .map(|bucket| (bucket.index, self.close(bucket)))
                    .and_then(|(closed_index, point)| {
                        (closed_index - first_index + 1 >= window).then_some(point)
                    });
                self.current = Some(Bucket {
                    index,
                    min: sample.value,
                    max: sample.value,
                    last_t: sample.t,
                });
                closed
            }
        }
    }

    fn close(&mut self, bucket: Bucket) -> EnvelopePoint {
        self.closed.push_back(bucket);
        while let Some(front) = self.closed.front() {
            if front.index <= bucket.index - self.buckets_per_envelope {
                self.closed.pop_front();
            } else {
                break;
            }
        }
        let low = self
            .closed
            .iter()
            .filter(|b| b.index > bucket.index - self.low_buckets)
            .map(|b| b.min)
            .fold(f64::INFINITY, f64::min);
        let high = self
            .closed
            .iter()
            .map(|b| b.max)
            .fold(f64::NEG_INFINITY, f64::max);
        EnvelopePoint {
            t: bucket.last_t,
            low,
            high,
        }
    }

    /// Trailing minimum over the envelope width before time `t` (open bucket included). `None` when
    /// no sample falls in that width, e.g. after a sampling gap: a stale level is no reference.
    pub fn low_before(&self, t: f64) -> Option<f64> {
        let oldest = (t / self.bucket_secs).floor() as i64 - self.buckets_per_envelope;
        self.current
            .iter()
            .chain(self.closed.iter())
            .filter(|b| b.index > oldest)
            .map(|b| b.min)
            .reduce(f64::min)
    }

    /// Trailing maximum including the open bucket.
    pub fn current_high(&self) -> Option<f64> {
        let open = self.current.map(|b| b.max)?;
        Some(self.closed.iter().map(|b| b.max).fold(open, f64::max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sawtooth_is_flattened_to_its_troughs() {
        // 10-minute sawtooth from 100 to 200, sampled every minute; envelope 30 minutes.
        let mut env = LowerEnvelope::new(300.0, 1800.0);
        let mut points = Vec::new();
        for i in 0..600 {
            let value = 100.0 + 10.0 * f64::from(i % 10);
            points.extend(env.push(Sample::new(f64::from(i) * 60.0, value)));
        }
        assert!(points.len() > 100);
        assert!(points.iter().all(|p| p.low == 100.0), "troughs only");
        assert!(points.iter().skip(2).all(|p| p.high == 190.0));
    }

    #[test]
    fn adaptive_envelope_follows_growth_until_widened() {
        // 1 unit per minute, 5-minute buckets: narrow, each point is its own bucket's minimum;
        // after `widen`, the trailing minimum lags by the 30-minute width again.
        let mut env = LowerEnvelope::adaptive(300.0, 1800.0, true);
        let mut points = Vec::new();
        for i in 0..120 {
            if i == 60 {
                env.widen();
            }
            points.extend(env.push(Sample::new(f64::from(i) * 60.0, f64::from(i))));
        }
        assert_eq!(
            points[0].t,
            29.0 * 60.0,
            "the first point after a full width"
        );
        assert_eq!(
            points[0].t - points[0].low * 60.0,
            240.0,
            "narrow: 4 minutes behind"
        );
        let last = points.last().expect("points");
        assert!(env.is_wide());
        assert_eq!(last.t - last.low * 60.0, 1740.0, "wide: 29 minutes behind");

        let mut env = LowerEnvelope::adaptive(300.0, 1800.0, false);
        let first = (0..20)
            .find_map(|i| env.push(Sample::new(f64::from(i) * 60.0, f64::from(i))))
            .expect("a point");
        assert_eq!(
            first.t, 240.0,
            "not after a restart: a point from the first bucket"
        );
    }

    #[test]
    fn a_step_passes_as_one_jump() {
        let mut env = LowerEnvelope::new(300.0, 1800.0);
        let mut lows = Vec::new();
        for i in 0..300 {
            let value = if i < 150 { 10.0 } else { 50.0 };
            if let Some(p) = env.push(Sample::new(f64::from(i) * 60.0, value)) {
                lows.push(p.low);
            }
        }
        let jumps = lows.windows(2).filter(|w| w[1] != w[0]).count();
        assert_eq!(jumps, 1, "{lows:?}");
        assert_eq!(env.low_before(300.0 * 60.0), Some(50.0));
        assert_eq!(env.low_before(400.0 * 60.0), None, "stale after a gap");
    }
}
