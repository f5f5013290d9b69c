//! The labelled corpus: synthetic memory series of the shapes on-call engineers meet, each with its
//! ground truth (benign, or a leak with its onset and the time it reaches the limit).
//!
//! Every series is made from a clean profile (base level, warm-up, cache fills, steps, GC sawtooth,
//! daily cycle, restarts, leak) sampled at 15/30/60 s with jitter and realistic gaps (scrapes lost,
//! an agent down for hours), plus Gaussian noise, rare upward spikes and 4 KiB page quantisation.
//! Parameters are drawn from wide, documented ranges with a seeded RNG: series `i` of shape `k`
//! depends only on (seed, k, i). This file generates; it does not score.

use sipwatch::leak::Sample;

use super::rng::Rng;

pub const MB: f64 = 1024.0 * 1024.0;
pub const MINUTE: f64 = 60.0;
pub const HOUR: f64 = 3600.0;
pub const DAY: f64 = 86_400.0;
const PAGE: f64 = 4096.0;
const T0: f64 = 1_700_000_000.0;
/// Benign series last a week; leak series end an hour after reaching their limit (at most 14 days).
const BENIGN_DURATION: f64 = 7.0 * DAY;
const MAX_LEAK_DURATION: f64 = 14.0 * DAY;

/// The shapes in the corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Flat,
    Noisy,
    Sawtooth,
    WarmUp,
    CacheFillExp,
    CacheFillExpiry,
    Step,
    DailyCycle,
    Restarts,
    LeakLinear,
    LeakSawtooth,
    LeakStaircase,
    LeakCyclic,
    LeakAfterRestart,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::Flat,
        Kind::Noisy,
        Kind::Sawtooth,
        Kind::WarmUp,
        Kind::CacheFillExp,
        Kind::CacheFillExpiry,
        Kind::Step,
        Kind::DailyCycle,
        Kind::Restarts,
        Kind::LeakLinear,
        Kind::LeakSawtooth,
        Kind::LeakStaircase,
        Kind::LeakCyclic,
        Kind::LeakAfterRestart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Flat => "flat + noise",
            Kind::Noisy => "heavy noise + spikes",
            Kind::Sawtooth => "GC sawtooth",
            Kind::WarmUp => "warm-up after start",
            Kind::CacheFillExp => "cache fill (exp. plateau)",
            Kind::CacheFillExpiry => "cache fill (ramp to cap)",
            Kind::Step => "one-off step(s) (reload)",
            Kind::DailyCycle => "daily load cycle",
            Kind::Restarts => "scheduled restarts",
            Kind::LeakLinear => "leak: linear",
            Kind::LeakSawtooth => "leak: under GC sawtooth",
            Kind::LeakStaircase => "leak: staircase",
            Kind::LeakCyclic => "leak: on a daily cycle",
            Kind::LeakAfterRestart => "leak: after a restart",
        }
    }

    pub fn is_leak(self) -> bool {
        matches!(
            self,
            Kind::LeakLinear
                | Kind::LeakSawtooth
                | Kind::LeakStaircase
                | Kind::LeakCyclic
                | Kind::LeakAfterRestart
        )
    }
}

/// Ground truth of a series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Truth {
    Benign,
    Leak {
        onset: f64,
        /// First time the clean series reaches the limit (`None` if not within the series).
        limit_at: Option<f64>,
        rate_per_hour: f64,
    },
}

pub struct Series {
    pub kind: Kind,
    pub limit: f64,
    pub truth: Truth,
    pub samples: Vec<Sample>,
}

/// A clean (noise-free) memory profile; times are seconds since the series start.
#[derive(Clone, Debug, Default)]
struct Profile {
    base: f64,
    warmup: Option<(f64, f64)>,
    fills_exp: Vec<(f64, f64, f64)>,
    fills_ramp: Vec<(f64, f64, f64)>,
    steps: Vec<(f64, f64)>,
    sawtooth: Option<(f64, f64, f64)>,
    cycle: Option<(f64, f64)>,
    /// (restart time, level right after as a fraction of base, warm-up tau)
    restarts: Vec<(f64, f64, f64)>,
    leak_onset: f64,
    leak_rate: f64,
    /// Staircase: step times and sizes after the onset.
    leak_stairs: Option<Vec<(f64, f64)>>,
}

impl Profile {
    fn value(&self, u: f64, with_leak: bool) -> f64 {
        let restart = self.restarts.iter().rev().find(|r| r.0 <= u).copied();
        let segment_start = restart.map_or(0.0, |r| r.0);
        let mut v = self.base;
        match restart {
            Some((at, drop, tau)) => v -= self.base * (1.0 - drop) * (-(u - at) / tau).exp(),
            None => {
                if let Some((tau, amp)) = self.warmup {
                    v += amp * (1.0 - (-u / tau).exp());
                }
            }
        }
        for &(t0, tau, amp) in &self.fills_exp {
            if u > t0 {
                v += amp * (1.0 - (-(u - t0) / tau).exp());
            }
        }
        for &(t0, dur, amp) in &self.fills_ramp {
            if u > t0 {
                v += amp * ((u - t0) / dur).min(1.0);
            }
        }
        v += self
            .steps
            .iter()
            .filter(|s| s.0 <= u)
            .map(|s| s.1)
            .sum::<f64>();
        if let Some((period, amp, phase)) = self.sawtooth {
            v += amp * ((u + phase) / period).fract();
        }
        if let Some((amp, phase)) = self.cycle {
            let x = std::f64::consts::TAU * u / DAY + phase;
            v += amp * (x.sin() + 0.3 * (2.0 * x).sin()) / 1.3;
        }
        if with_leak && self.leak_rate > 0.0 {
            let from = self.leak_onset.max(segment_start);
            if u > from {
                v += match &self.leak_stairs {
                    Some(stairs) => stairs
                        .iter()
                        .filter(|s| s.0 <= u && s.0 > from)
                        .map(|s| s.1)
                        .sum(),
                    None => self.leak_rate * (u - from),
                };
            }
        }
        v
    }

    /// Highest clean value on a one-minute grid over `[0, duration]`.
    fn top(&self, duration: f64, with_leak: bool) -> f64 {
        let mut top = f64::NEG_INFINITY;
        let mut u = 0.0;
        while u <= duration {
            top = top.max(self.value(u, with_leak));
            u += MINUTE;
        }
        top
    }
}

/// Generates series `index` of shape `kind` for `seed`.
pub fn generate(kind: Kind, index: usize, seed: u64) -> Series {
    generate_inner(kind, index, seed, true)
}

/// The benign twin of a leak series: the very same series (same noise, gaps, spikes, limit) without
/// the leak. An alert the twin also raises at about the same time is not a detection of the leak.
pub fn generate_twin(kind: Kind, index: usize, seed: u64) -> Option<Series> {
    kind.is_leak()
        .then(|| generate_inner(kind, index, seed, false))
}

fn generate_inner(kind: Kind, index: usize, seed: u64, with_leak: bool) -> Series {
    let mut rng =
        Rng::new(seed ^ ((kind as u64 + 1) << 40) ^ (index as u64).wrapping_mul(0x9E37_79B9));
    let base = rng.log_uniform(50.0 * MB, 2048.0 * MB);
    let mut p = Profile {
        base,
        ..Profile::default()
    };
    let mut noise = base * rng.log_uniform(0.0005, 0.01);
    let mut spike_rate = 0.001;
    let duration;
    match kind {
        Kind::Flat => {}
        Kind::Noisy => {
            noise = base * rng.uniform(0.02, 0.05);
            spike_rate = 0.01;
        }
        Kind::Sawtooth => p.sawtooth = Some(sawtooth(&mut rng, base)),
        Kind::WarmUp => {
            p.warmup = Some((
                rng.log_uniform(2.0 * MINUTE, 3.0 * HOUR),
                base * rng.log_uniform(0.1, 1.5),
            ))
        }
        Kind::CacheFillExp => {
            maybe_warmup(&mut rng, &mut p);
            let amp = base * rng.log_uniform(0.1, 1.0);
            p.fills_exp.push((
                rng.uniform(0.0, DAY),
                rng.log_uniform(HOUR, 12.0 * HOUR),
                amp,
            ));
        }
        Kind::CacheFillExpiry => {
            maybe_warmup(&mut rng, &mut p);
            let amp = base * rng.log_uniform(0.1, 1.0);
            p.fills_ramp.push((
                rng.uniform(0.0, DAY),
                rng.log_uniform(30.0 * MINUTE, 12.0 * HOUR),
                amp,
            ));
        }
        Kind::Step => {
            let at = rng.uniform(6.0 * HOUR, 6.0 * DAY);
            p.steps.push((at, base * rng.log_uniform(0.05, 0.5)));
            if rng.chance(0.3) {
                let second = at + rng.uniform(DAY, 3.0 * DAY);
                p.steps.push((second, base * rng.log_uniform(0.05, 0.5)));
            }
        }
        Kind::DailyCycle => {
            p.cycle = Some((
                base * rng.uniform(0.05, 0.3),
                rng.uniform(0.0, std::f64::consts::TAU),
            ))
        }
        Kind::Restarts => {
            let mut at = rng.uniform(0.5 * DAY, 2.0 * DAY);
            while at < BENIGN_DURATION {
                p.restarts.push((
                    at,
                    rng.uniform(0.2, 0.7),
                    rng.log_uniform(2.0 * MINUTE, HOUR),
                ));
                at += rng.uniform(DAY, 3.5 * DAY);
            }
        }
        _ => {}
    }
    let truth;
    let limit;
    if kind.is_leak() {
        match kind {
            Kind::LeakSawtooth => p.sawtooth = Some(sawtooth(&mut rng, base)),
            Kind::LeakCyclic => {
                p.cycle = Some((
                    base * rng.uniform(0.05, 0.3),
                    rng.uniform(0.0, std::f64::consts::TAU),
                ));
            }
            _ => {}
        }
        if kind == Kind::LeakAfterRestart {
            let at = rng.uniform(12.0 * HOUR, 2.0 * DAY);
            p.restarts.push((
                at,
                rng.uniform(0.2, 0.7),
                rng.log_uniform(2.0 * MINUTE, HOUR),
            ));
            p.leak_onset = at;
        } else if rng.chance(0.3) {
            maybe_warmup(&mut rng, &mut p);
            p.leak_onset = 0.0;
        } else {
            maybe_warmup(&mut rng, &mut p);
            p.leak_onset = rng.uniform(6.0 * HOUR, 2.0 * DAY);
        }
        // The limit sits 30% to 200% above the service's normal peak (as for benign series, where it
        // is 50% to 200%); the time to reach it after the onset is log-uniform in 2 h .. 10 d, and
        // the rate that implies must lie in 0.5 .. 500 MB/h.
        let planned_top = p.top(p.leak_onset + 4.0 * DAY, false);
        let (mut t_target, mut rate) = (0.0, 0.0);
        for _ in 0..1000 {
            let headroom = planned_top * rng.uniform(0.3, 2.0);
            t_target = rng.log_uniform(2.0 * HOUR, 10.0 * DAY);
            rate = headroom / t_target;
            if (0.5 * MB / HOUR..=500.0 * MB / HOUR).contains(&rate) {
                break;
            }
        }
        p.leak_rate = rate;
        if kind == Kind::LeakStaircase {
            let period = rng.log_uniform(20.0 * MINUTE, 12.0 * HOUR);
            let mut stairs = Vec::new();
            let mut at = p.leak_onset + rng.uniform(0.1, 1.0) * period;
            while at < p.leak_onset + MAX_LEAK_DURATION {
                stairs.push((at, rate * period * rng.uniform(0.7, 1.3)));
                at += period * rng.uniform(0.8, 1.2);
            }
            p.leak_stairs = Some(stairs);
        }
        let planned = (p.leak_onset + t_target * 1.3 + HOUR).min(p.leak_onset + MAX_LEAK_DURATION);
        let benign_top = p.top(planned, false);
        limit = benign_top + rate * t_target;
        // First crossing of the limit, on a one-minute grid.
        let mut limit_at = None;
        let mut u = 0.0;
        while u <= p.leak_onset + MAX_LEAK_DURATION {
            if p.value(u, true) >= limit {
                limit_at = Some(u);
                break;
            }
            u += MINUTE;
        }
        duration = limit_at.map_or(p.leak_onset + MAX_LEAK_DURATION, |at| at + HOUR);
        truth = Truth::Leak {
            onset: T0 + p.leak_onset,
            limit_at: limit_at.map(|u| T0 + u),
            rate_per_hour: rate * HOUR,
        };
    } else {
        duration = BENIGN_DURATION;
        limit = p.top(duration, false) * rng.uniform(1.5, 3.0);
        truth = Truth::Benign;
    }
    let samples = sample_profile(&mut rng, &p, duration, noise, spike_rate, with_leak);
    Series {
        kind,
        limit,
        truth,
        samples,
    }
}

fn sawtooth(rng: &mut Rng, base: f64) -> (f64, f64, f64) {
    let period = rng.log_uniform(MINUTE, 25.0 * MINUTE);
    (
        period,
        base * rng.uniform(0.05, 0.4),
        rng.uniform(0.0, period),
    )
}

fn maybe_warmup(rng: &mut Rng, p: &mut Profile) {
    if rng.chance(0.5) {
        p.warmup = Some((
            rng.log_uniform(2.0 * MINUTE, HOUR),
            p.base * rng.log_uniform(0.05, 0.5),
        ));
    }
}

/// Samples the profile with jittered intervals, gaps, noise, spikes and page quantisation.
fn sample_profile(
    rng: &mut Rng,
    p: &Profile,
    duration: f64,
    noise: f64,
    spike_rate: f64,
    with_leak: bool,
) -> Vec<Sample> {
    let interval = rng.pick(&[15.0, 30.0, 30.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0]);
    // Gaps: ~1.5 a day of 2 min to 3 h; one series in ten loses its agent for 6-18 h.
    let mut gaps = Vec::new();
    let mut at = rng.exponential(DAY / 1.5);
    while at < duration {
        gaps.push((at, at + rng.log_uniform(2.0 * MINUTE, 3.0 * HOUR)));
        at += rng.exponential(DAY / 1.5);
    }
    if rng.chance(0.1) {
        let at = rng.uniform(0.0, duration);
        gaps.push((at, at + rng.uniform(6.0 * HOUR, 18.0 * HOUR)));
    }
    let mut samples = Vec::with_capacity((duration / interval) as usize + 1);
    let mut u = 0.0;
    while u <= duration {
        let jittered = u + rng.uniform(-0.1, 0.1) * interval;
        u += interval;
        if gaps.iter().any(|g| jittered >= g.0 && jittered < g.1) || jittered < 0.0 {
            continue;
        }
        let mut value = p.value(jittered, with_leak) + noise * rng.gauss();
        if rng.chance(spike_rate) {
            value += p.base * rng.uniform(0.02, 0.2);
        }
        let value = (value.max(PAGE) / PAGE).round() * PAGE;
        samples.push(Sample::new(T0 + jittered, value));
    }
    samples
}
