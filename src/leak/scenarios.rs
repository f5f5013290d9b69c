//! Shape-by-shape scenarios for the detector, generated in-test with a tiny deterministic RNG: every
//! benign shape must stay `NoLeak` and every leak shape must be raised, with a sane slope and onset.
//! (The labelled benchmark corpus in `bench/` measures the same thing at scale.)

use super::{DetectorConfig, LeakDetector, LeakVerdict, Sample, Shape, VerdictState};

const MB: f64 = 1024.0 * 1024.0;
const HOUR: f64 = 3600.0;
const PAGE: f64 = 4096.0;

/// xorshift64*: tiny, deterministic, good enough for test noise.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn gauss(&mut self) -> f64 {
        let u = self.next_f64().max(1e-12);
        let v = self.next_f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Replays `shape(t)` (seconds since start) sampled every minute for `hours`, with Gaussian noise of
/// `noise` bytes and page quantisation; returns every verdict.
fn replay(
    hours: f64,
    limit: Option<f64>,
    seed: u64,
    noise: f64,
    shape: impl Fn(f64) -> f64,
) -> Vec<LeakVerdict> {
    let mut rng = Rng(seed | 1);
    let mut detector = LeakDetector::new(DetectorConfig::default(), limit);
    let start = 1_700_000_000.0;
    let mut out = Vec::new();
    let mut t = 0.0;
    while t < hours * HOUR {
        let value = ((shape(t) + noise * rng.gauss()) / PAGE).round() * PAGE;
        out.push(detector.push(Sample::new(start + t, value)));
        t += 60.0;
    }
    out
}

fn first_leak(verdicts: &[LeakVerdict]) -> Option<&LeakVerdict> {
    verdicts.iter().find(|v| v.state == VerdictState::Leak)
}

fn assert_benign(name: &str, verdicts: &[LeakVerdict]) {
    if let Some(v) = first_leak(verdicts) {
        panic!("{name}: false alarm {v:?}");
    }
    let last = verdicts.last().expect("verdicts");
    assert_eq!(last.state, VerdictState::NoLeak, "{name}: {last:?}");
}

#[test]
fn linear_leak_is_raised_with_slope_onset_and_eta() {
    let base = 300.0 * MB;
    let rate = 20.0 * MB / HOUR;
    let onset = 10.0 * HOUR;
    let limit = base + 1000.0 * MB; // reached at 60 h
    let v = replay(60.0, Some(limit), 7, 2.0 * MB, |t| {
        base + rate * (t - onset).max(0.0)
    });
    let hit = first_leak(&v).expect("leak raised");
    let delay = hit.detected_at.expect("detected_at") - 1_700_000_000.0 - onset;
    assert!(delay > 0.0 && delay < 25.0 * HOUR, "delay {delay}");
    let last = v.last().expect("verdicts");
    assert_eq!(last.state, VerdictState::Leak);
    assert_eq!(last.shape, Shape::Linear);
    assert!((last.slope_per_sec - rate).abs() < 0.1 * rate, "{last:?}");
    assert!(
        last.slope_low < rate && last.slope_high > rate * 0.98,
        "{last:?}"
    );
    let onset_seen = last.onset.expect("onset") - 1_700_000_000.0;
    assert!(
        (onset_seen - onset).abs() < 3.0 * HOUR,
        "onset {onset_seen}"
    );
    let eta = last.eta_to_limit_secs.expect("eta");
    assert!(eta < 3.0 * HOUR, "eta {eta}");
}

#[test]
fn fast_leak_is_raised_within_a_third_of_its_time_to_limit() {
    let base = 500.0 * MB;
    let rate = 300.0 * MB / HOUR;
    let v = replay(8.0, Some(base + 2000.0 * MB), 3, 5.0 * MB, |t| {
        base + rate * (t - 2.0 * HOUR).max(0.0)
    });
    let hit = first_leak(&v).expect("leak raised");
    let delay = hit.detected_at.expect("t") - 1_700_000_000.0 - 2.0 * HOUR;
    // 2000 MB of headroom at 300 MB/h: 6.7 h to the limit.
    assert!(delay < 6.7 * HOUR / 2.0, "delay {delay}");
}

#[test]
fn leak_under_gc_sawtooth_is_raised() {
    let rate = 5.0 * MB / HOUR;
    let v = replay(96.0, Some(1200.0 * MB), 11, 1.0 * MB, |t| {
        400.0 * MB + rate * t + 150.0 * MB * ((t % 900.0) / 900.0)
    });
    let hit = first_leak(&v).expect("leak raised");
    assert!(
        hit.slope_per_sec > 0.5 * rate && hit.slope_per_sec < 1.5 * rate,
        "{hit:?}"
    );
}

#[test]
fn plain_sawtooth_noise_and_quantisation_are_benign() {
    let v = replay(7.0 * 24.0, Some(1000.0 * MB), 5, 3.0 * MB, |t| {
        400.0 * MB + 150.0 * MB * ((t % 1200.0) / 1200.0)
    });
    assert_benign("sawtooth", &v);
    assert_eq!(v.last().map(|v| v.shape), Some(Shape::Sawtooth));
    let v = replay(7.0 * 24.0, Some(1000.0 * MB), 9, PAGE, |_| 200.0 * MB);
    assert_benign("quantised flat", &v);
}

#[test]
fn warm_up_and_cache_fill_that_level_off_are_benign() {
    for (tau_h, amplitude) in [(0.2, 300.0), (1.5, 400.0), (4.0, 400.0)] {
        let v = replay(72.0, Some(1200.0 * MB), 21, 2.0 * MB, |t| {
            200.0 * MB + amplitude * MB * (1.0 - (-t / (tau_h * HOUR)).exp())
        });
        assert_benign(&format!("warm-up tau {tau_h}h"), &v);
    }
}

#[test]
fn one_step_is_benign_a_staircase_is_a_leak() {
    let v = replay(96.0, Some(1500.0 * MB), 4, 2.0 * MB, |t| {
        if t < 20.0 * HOUR {
            300.0 * MB
        } else {
            450.0 * MB
        }
    });
    assert_benign("single step", &v);
    let v = replay(96.0, Some(1500.0 * MB), 4, 2.0 * MB, |t| {
        300.0 * MB + 100.0 * MB * (t / (6.0 * HOUR)).floor()
    });
    let hit = first_leak(&v).expect("staircase raised");
    assert!(
        hit.detected_at.expect("t") - 1_700_000_000.0 < 40.0 * HOUR,
        "{hit:?}"
    );
    assert_eq!(v.last().map(|v| v.shape), Some(Shape::Staircase));
}

#[test]
fn daily_load_cycle_is_benign() {
    let v = replay(7.0 * 24.0, Some(1000.0 * MB), 8, 2.0 * MB, |t| {
        400.0 * MB + 150.0 * MB * (std::f64::consts::TAU * t / 86_400.0).sin()
    });
    assert_benign("daily cycle", &v);
}

#[test]
fn restart_starts_a_new_segment_and_resets_the_leak() {
    // Leak for 30 h, restart (back to base with a short warm-up), then flat.
    let rate = 10.0 * MB / HOUR;
    let v = replay(60.0, Some(800.0 * MB), 13, 1.0 * MB, |t| {
        if t < 30.0 * HOUR {
            300.0 * MB + rate * t
        } else {
            300.0 * MB
        }
    });
    assert!(first_leak(&v).is_some(), "leak before the restart");
    let last = v.last().expect("verdicts");
    assert!(
        (last.segment_start - 1_700_000_000.0 - 30.0 * HOUR).abs() < 120.0,
        "{last:?}"
    );
    assert_eq!(last.state, VerdictState::NoLeak, "{last:?}");
}

#[test]
fn mark_restart_and_ignored_samples() {
    let mut d = LeakDetector::new(DetectorConfig::default(), None);
    let v = d.push(Sample::new(100.0, 5.0));
    assert_eq!(v.state, VerdictState::Learning);
    assert_eq!(v.segment_start, 100.0);
    assert_eq!(
        d.push(Sample::new(100.0, 1e12)),
        v,
        "equal timestamp ignored"
    );
    assert_eq!(
        d.push(Sample::new(50.0, 1e12)),
        v,
        "older timestamp ignored"
    );
    d.mark_restart(200.0);
    let v = d.push(Sample::new(260.0, 5.0));
    assert_eq!(v.segment_start, 200.0);
    assert_eq!(v.state, VerdictState::Learning);
}

#[test]
fn memory_stays_bounded_over_a_month() {
    let mut d = LeakDetector::new(DetectorConfig::default(), Some(1e12));
    for i in 0..(30 * 24 * 60) {
        d.push(Sample::new(
            f64::from(i) * 60.0,
            1e9 + f64::from(i % 7) * 4096.0,
        ));
    }
    assert!(
        format!("{d:?}").len() < 200_000,
        "debug dump size is a proxy for retained state"
    );
}

#[test]
fn a_daily_cycle_across_a_sampling_gap_is_not_a_restart() {
    // Three hours of lost samples while the cycle falls: the first sample after the gap is far below
    // the last level seen, but that level is stale, not a reference.
    let mut detector = LeakDetector::new(DetectorConfig::default(), Some(2000.0 * MB));
    let mut t = 0.0;
    let mut last = None;
    while t < 4.0 * 86_400.0 {
        let in_gap = (30.0 * HOUR..33.0 * HOUR).contains(&t);
        if !in_gap {
            let value = 800.0 * MB + 300.0 * MB * (std::f64::consts::TAU * t / 86_400.0).cos();
            last = Some(detector.push(Sample::new(1_700_000_000.0 + t, value)));
        }
        t += 60.0;
    }
    let last = last.expect("verdicts");
    assert_eq!(last.segment_start, 1_700_000_000.0, "no restart: {last:?}");
    assert_eq!(last.state, VerdictState::NoLeak);
}
