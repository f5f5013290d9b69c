//! [`LeakDetector`]: the online detector the agent runs per gauge and `leak analyze` replays.
//!
//! Inputs, in time order: [`LeakDetector::push`] for each sample (older or equal timestamps are
//! ignored), [`LeakDetector::mark_restart`] when the agent saw the service restart, and
//! [`LeakDetector::set_limit`] when the limit changes. Output: the [`LeakVerdict`] returned by `push`
//! (and [`LeakDetector::verdict`]). No clock, no I/O, no look-ahead: a verdict depends only on samples
//! already pushed, so a replay raises the alert at the same sample the agent would have.
//!
//! How it decides, once per closed bucket of the lower envelope:
//! - a ladder of trailing windows (from `min_span`, growing by 1.5x, up to the whole segment) is
//!   examined (`evidence.rs`);
//! - a window is leak evidence when its growth is steady (or a staircase), significant (Sen lower
//!   bound above zero), above noise, and has lasted at least `eta_fraction` x the time left to the
//!   limit, clamped to `min_span..=max_span` (`no_limit_span` without a limit): an urgent leak needs
//!   little evidence, a slow one waits until a warm-up would have shown it levels off;
//! - the daily guard rejects growth that the same hours of yesterday also had (a load cycle); on the
//!   first day, growth on a gauge that also fell by half as much needs half a day of evidence;
//! - evidence must be found at two evaluations in a row before `Leak` is raised (a window that
//!   qualifies for one bucket only is a flicker);
//! - once raised, `Leak` holds for the segment until the growth since the onset stops.
//!
//! The envelope of a segment is one bucket wide until the gauge shows its first sharp fall (more
//! than six noise deviations between two samples), then `envelope` wide: a gauge that never
//! oscillates (a shared-memory pool, a session count) shows its growth half an hour sooner.
//!
//! A restart (from the agent, or seen as a fall back to the segment's start level) starts a new
//! segment with empty history. Memory is bounded by `history.rs` (a few hundred points).

use super::envelope::{EnvelopePoint, LowerEnvelope};
use super::evidence::{examine, thin, Growth, WindowEvidence, MAX_FIT_POINTS, MIN_FIT_POINTS};
use super::history::EnvelopeHistory;
use super::onset::hinge_onset;
use super::restart::{RestartSignal, RestartWatch};
use super::{DetectorConfig, LeakVerdict, Sample, Shape, VerdictState};

const DAY: f64 = 86_400.0;
/// Longer than the rising half of a daily load cycle.
const HALF_DAY: f64 = 43_200.0;
/// On the first day, growth on a gauge whose envelope also fell by this share of the growth needs
/// half a day of evidence: with no yesterday to compare with, a rising half of a load cycle looks
/// like a leak.
const FIRST_DAY_DRAWDOWN: f64 = 0.5;
/// Consecutive evaluations (closed buckets) that must find leak evidence before a leak is raised:
/// one bucket where a window just qualifies is a flicker (the top of a load cycle, a fill's end).
const CONFIRMATIONS: u32 = 2;
/// Growth between consecutive windows of the ladder.
const LADDER_FACTOR: f64 = 1.5;
/// Most points the onset fit uses.
const ONSET_POINTS: usize = 64;
/// A fall between two samples larger than this many noise deviations (and three quanta) widens an
/// adaptive envelope: the gauge oscillates. A false call only costs the lag of the wide envelope.
const FALL_NOISE_K: f64 = 6.0;

/// The online leak detector for one gauge of one service.
#[derive(Clone, Debug)]
pub struct LeakDetector {
    config: DetectorConfig,
    limit: Option<f64>,
    segment: Segment,
    last_t: Option<f64>,
    /// Smallest non-zero change seen between samples (a page, one session).
    quantum: f64,
    last_value: Option<f64>,
    verdict: LeakVerdict,
}

#[derive(Clone, Debug)]
struct Segment {
    start: f64,
    envelope: LowerEnvelope,
    history: EnvelopeHistory,
    restart: RestartWatch,
    raised_at: Option<f64>,
    onset: Option<f64>,
    /// Evaluations in a row that found leak evidence, before it is raised.
    streak: u32,
}

impl Segment {
    /// `start` is NaN for the first segment (the gauge was already running when first seen).
    fn new(config: &DetectorConfig, start: f64) -> Self {
        Segment {
            start,
            envelope: if config.adaptive_envelope {
                LowerEnvelope::adaptive(config.bucket, config.envelope, !start.is_nan())
            } else {
                LowerEnvelope::new(config.bucket, config.envelope)
            },
            history: EnvelopeHistory::new(config.window),
            restart: RestartWatch::new(config.restart_drop_fraction, config.envelope, start),
            raised_at: None,
            onset: None,
            streak: 0,
        }
    }
}

impl LeakDetector {
    /// A detector with `config` (see [`DetectorConfig::validate`]) and an optional limit in the
    /// gauge's unit.
    pub fn new(config: DetectorConfig, limit: Option<f64>) -> Self {
        let segment = Segment::new(&config, f64::NAN);
        LeakDetector {
            config,
            limit,
            segment,
            last_t: None,
            quantum: f64::INFINITY,
            last_value: None,
            verdict: LeakVerdict::learning(f64::NAN),
        }
    }

    pub fn set_limit(&mut self, limit: Option<f64>) {
        self.limit = limit;
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// The latest verdict.
    pub fn verdict(&self) -> LeakVerdict {
        self.verdict.clone()
    }

    /// The current segment's lower envelope as `(t, value)` points, oldest first (older points are
    /// averaged over coarser buckets). For plots and reports; bounded to a few hundred points.
    pub fn lower_envelope(&self) -> Vec<(f64, f64)> {
        self.segment
            .history
            .since(f64::NEG_INFINITY)
            .iter()
            .map(|p| (p.t, p.low))
            .collect()
    }

    /// The newest lower-envelope point, `(t, value)`; changes once per closed bucket.
    pub fn last_envelope_point(&self) -> Option<(f64, f64)> {
        self.segment.history.last().map(|p| (p.t, p.low))
    }

    /// The agent saw the service restart at `t`: the next samples start a new segment.
    pub fn mark_restart(&mut self, t: f64) {
        self.segment = Segment::new(&self.config, t);
        // The fall to the new process's level is not an oscillation of the new segment.
        self.last_value = None;
        self.verdict = LeakVerdict::learning(t);
    }

    /// Feeds one sample; returns the verdict as of this sample. Samples not after the previous one,
    /// and non-finite values, are ignored (the previous verdict is returned).
    pub fn push(&mut self, sample: Sample) -> LeakVerdict {
        if !sample.t.is_finite()
            || !sample.value.is_finite()
            || self.last_t.is_some_and(|t| sample.t <= t)
        {
            return self.verdict.clone();
        }
        self.last_t = Some(sample.t);
        if let Some(last) = self.last_value {
            let change = (sample.value - last).abs();
            if change > 0.0 {
                self.quantum = self.quantum.min(change);
            }
            let fall_floor =
                (FALL_NOISE_K * self.segment.restart.noise()).max(3.0 * self.quantum());
            if last - sample.value > fall_floor && !self.segment.envelope.is_wide() {
                self.segment.envelope.widen();
            }
        }
        self.last_value = Some(sample.value);
        if self.segment.start.is_nan() || sample.t < self.segment.start {
            self.segment.start = sample.t;
            self.segment.restart = RestartWatch::new(
                self.config.restart_drop_fraction,
                self.config.envelope,
                sample.t,
            );
            self.verdict.segment_start = sample.t;
        }

        let quantum = self.quantum();
        let reference = self.segment.envelope.low_before(sample.t);
        match self.segment.restart.observe(sample, reference, quantum) {
            RestartSignal::Confirmed(first) => {
                self.segment = Segment::new(&self.config, first.t);
                self.verdict = LeakVerdict::learning(first.t);
                for s in [first, sample] {
                    self.segment.restart.observe(s, None, quantum);
                    self.segment.envelope.push(s);
                }
                return self.verdict.clone();
            }
            RestartSignal::Pending | RestartSignal::Continue => {}
        }
        if let Some(point) = self.segment.envelope.push(sample) {
            self.segment.history.push(point);
            self.verdict = self.evaluate(sample.t);
        }
        self.verdict.clone()
    }

    fn quantum(&self) -> f64 {
        if self.quantum.is_finite() {
            self.quantum
        } else {
            0.0
        }
    }

    /// Re-evaluates the segment after a new envelope point; `now` is the sample that closed it.
    fn evaluate(&mut self, now: f64) -> LeakVerdict {
        let config = &self.config;
        let history = &self.segment.history;
        if history.is_empty() {
            return LeakVerdict::learning(self.segment.start);
        }
        let (Some(first), Some(last)) = (history.first(), history.last()) else {
            return LeakVerdict::learning(self.segment.start);
        };
        let segment_span = last.t - first.t;
        if segment_span < config.min_span || history.len() < MIN_FIT_POINTS {
            return LeakVerdict::learning(self.segment.start);
        }
        let quantum = self.quantum();
        let upper = self.segment.envelope.current_high().unwrap_or(last.high);

        let mut report: Option<WindowEvidence> = None;
        let mut leak: Option<WindowEvidence> = None;
        let mut cyclic = false;
        let mut staircase = false;
        // How far the envelope fell during the last day: a gauge that also goes down (load-driven)
        // needs more evidence while there is no yesterday to compare with.
        let drawdown = {
            let mut peak = f64::NEG_INFINITY;
            let mut fall: f64 = 0.0;
            for p in history.since(last.t - DAY) {
                peak = peak.max(p.low);
                fall = fall.max(peak - p.low);
            }
            fall
        };
        let has_yesterday = config.daily_guard && last.t - DAY >= first.t;
        // Windows longer than twice the most evidence ever required add nothing but cost.
        let longest = (2.0 * config.max_span.max(config.no_limit_span)).min(segment_span);
        let all = history.since(last.t - longest - 1.0);
        let mut span = config.min_span;
        loop {
            let whole = span >= longest;
            let from = last.t - span.min(longest) - 1.0;
            let window = thin(&all[all.partition_point(|p| p.t < from)..], MAX_FIT_POINTS);
            if let Some(ev) = examine(&window, config, quantum) {
                let mut required = self.required_span(&ev, upper);
                if !has_yesterday && drawdown >= FIRST_DAY_DRAWDOWN * ev.rate().slope * ev.span() {
                    required = required.max(HALF_DAY);
                }
                // Two steps whose pace would reach the limit within two `min_span`s cannot wait
                // for a third.
                let urgent_steps = ev.near_staircase
                    && self
                        .eta(ev.rate().slope, upper)
                        .is_some_and(|eta| eta <= 2.0 * config.min_span);
                if (ev.is_leak_shaped() && ev.span() >= required - config.bucket) || urgent_steps {
                    if self.daily_guard_passes(&ev) {
                        staircase |= ev.growth == Growth::Staircase || urgent_steps;
                        leak = Some(ev.clone());
                    } else {
                        cyclic = true;
                    }
                }
                if span <= config.max_span.max(config.min_span) || report.is_none() {
                    report = Some(ev);
                }
            }
            if whole {
                break;
            }
            span *= LADDER_FACTOR;
        }

        if self.segment.raised_at.is_none() {
            self.segment.streak = if leak.is_some() {
                self.segment.streak + 1
            } else {
                0
            };
            if self.segment.streak < CONFIRMATIONS {
                leak = None;
            }
        }
        let mut state = if leak.is_some() {
            VerdictState::Leak
        } else {
            VerdictState::NoLeak
        };
        if state == VerdictState::NoLeak && self.segment.raised_at.is_some() {
            // Raised earlier: hold while the growth since the onset goes on.
            let since = self.segment.onset.unwrap_or(self.segment.start);
            let window = thin(&history.since(since), MAX_FIT_POINTS);
            if let Some(ev) = examine(&window, config, quantum) {
                if matches!(
                    ev.growth,
                    Growth::Steady | Growth::Staircase | Growth::Young
                ) {
                    state = VerdictState::Leak;
                    leak = Some(ev);
                }
            }
        }
        let Some(chosen) = leak.as_ref().or(report.as_ref()) else {
            return LeakVerdict::learning(self.segment.start);
        };
        let mut rate = chosen.rate();
        let mut shape = chosen.shape();
        // A flat floor under a swing far above the sample-to-sample noise: a sawtooth.
        if shape == Shape::Flat
            && chosen.swing > 6.0 * self.segment.restart.noise().max(quantum).max(chosen.noise)
        {
            shape = Shape::Sawtooth;
        }
        if state != VerdictState::Leak && cyclic {
            shape = Shape::Cyclic;
        }
        if state == VerdictState::Leak && staircase {
            shape = Shape::Staircase;
        }
        let growing = rate.low > 0.0 && rate.slope > 0.0;
        let onset = if state == VerdictState::Leak {
            hinge_onset(&thin(&history.since(f64::NEG_INFINITY), ONSET_POINTS))
        } else {
            None
        };
        // Report the slope since the onset when that is the longer view (a day or more averages out
        // a load cycle riding on the leak); the window that raised the alert may be a rising half.
        if let Some(onset) = onset {
            if last.t - onset >= DAY.max(chosen.span()) {
                let since_onset = thin(&history.since(onset), MAX_FIT_POINTS);
                if let Some(ev) = examine(&since_onset, config, quantum) {
                    if ev.rate().low > 0.0 {
                        rate = ev.rate();
                    }
                }
            }
        }
        let eta = match self.limit {
            Some(limit) if growing || state == VerdictState::Leak => {
                (rate.slope > 0.0).then(|| ((limit - upper) / rate.slope).max(0.0))
            }
            _ => None,
        };
        let segment = &mut self.segment;
        if state == VerdictState::Leak {
            segment.raised_at.get_or_insert(now);
            segment.onset = onset;
        }
        LeakVerdict {
            state,
            shape,
            slope_per_sec: rate.slope,
            slope_low: rate.low,
            slope_high: rate.high,
            onset,
            detected_at: segment.raised_at,
            eta_to_limit_secs: eta,
            segment_start: segment.start,
        }
    }

    /// Time until the limit from the upper envelope at `rate`; `None` without a limit or growth.
    fn eta(&self, rate: f64, upper: f64) -> Option<f64> {
        match self.limit {
            Some(limit) if rate > 0.0 => Some(((limit - upper) / rate).max(0.0)),
            _ => None,
        }
    }

    /// Evidence a window needs: a share of the time left to the limit, clamped; without a limit a
    /// fixed span. Infinite when the limit is further away than the horizon.
    fn required_span(&self, ev: &WindowEvidence, upper: f64) -> f64 {
        let config = &self.config;
        let rate = ev.rate().slope;
        match self.limit {
            Some(limit) if rate > 0.0 => {
                let eta = ((limit - upper) / rate).max(0.0);
                if eta > config.horizon {
                    return f64::INFINITY;
                }
                (config.eta_fraction * eta).clamp(config.min_span, config.max_span)
            }
            Some(_) => f64::INFINITY,
            None => config.no_limit_span,
        }
    }

    /// With a day of history: the growth must also show against the same time yesterday.
    fn daily_guard_passes(&self, ev: &WindowEvidence) -> bool {
        if !self.config.daily_guard {
            return true;
        }
        let history = &self.segment.history;
        let Some(first) = history.first() else {
            return true;
        };
        let recent_span = ev.span().min(3.0 * 3600.0);
        if ev.end - DAY < first.t {
            return true;
        }
        let recent: Vec<EnvelopePoint> = history.since(ev.end - recent_span);
        let mut diffs: Vec<f64> = recent
            .iter()
            .filter_map(|p| history.low_at(p.t - DAY).map(|y| p.low - y))
            .collect();
        if diffs.len() < 3 {
            return true;
        }
        let day_over_day = super::robust::median_in_place(&mut diffs);
        day_over_day >= 0.5 * ev.rate().slope * ev.span().min(DAY)
    }
}
