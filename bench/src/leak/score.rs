//! Scoring alerts against the ground truth: precision, recall (on leaks that reach their limit within
//! 7 days of the onset, and separately on slower ones), detection delay after the onset, and false
//! alarms per service-week.
//!
//! Rules: on a leak series the first alert between the onset and the moment the series reaches its
//! limit is a detection; an alert after the limit was reached is too late (a miss); an alert before the
//! onset is a false alarm. An alert after the onset that the series' benign twin (the same series
//! without the leak) also raises within two hours is not caused by the leak: it is not a detection
//! (it counts against precision, like any alert not caused by a leak). Every alert on a benign series
//! is a false alarm. Exposure for false alarms per service-week is the benign time: whole benign series
//! plus the pre-onset part of leak series. A leak whose onset-to-limit time is mostly lost in sampling
//! gaps (an agent down for hours) cannot be seen by any detector and is left out of recall.

use std::collections::BTreeMap;

use super::corpus::{Kind, Series, Truth, DAY};

/// What one detector did on one series.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub alerts: Vec<f64>,
    /// Alerts on the benign twin (leak series only).
    pub twin_alerts: Vec<f64>,
}

/// An alert within this time of a twin alert is attributed to the benign part of the series.
pub const TWIN_MATCH: f64 = 2.0 * 3600.0;

#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub true_alerts: usize,
    pub false_alerts: usize,
    /// Alerts after the onset that the benign twin raised too.
    pub unattributed_alerts: usize,
    pub leaks_in_target: usize,
    pub detected_in_target: usize,
    pub leaks_slow: usize,
    /// Leaks left out: sampling gaps cover most of the time from onset to limit.
    pub unobservable: usize,
    pub detected_slow: usize,
    pub benign_secs: f64,
    pub delays: Vec<f64>,
    /// Detection delay as a share of the onset-to-limit time.
    pub delay_shares: Vec<f64>,
    /// Per kind: (series, series with a detection / with a false alarm).
    pub per_kind: BTreeMap<Kind, (usize, usize)>,
}

/// Leaks reaching their limit within this time after the onset are the recall target.
pub const TARGET_HORIZON: f64 = 7.0 * DAY;

impl Tally {
    pub fn add(&mut self, series: &Series, outcome: &Outcome) {
        let entry = self.per_kind.entry(series.kind).or_default();
        entry.0 += 1;
        let start = series.samples.first().map_or(0.0, |s| s.t);
        let end = series.samples.last().map_or(0.0, |s| s.t);
        match series.truth {
            Truth::Benign => {
                self.benign_secs += end - start;
                self.false_alerts += outcome.alerts.len();
                if !outcome.alerts.is_empty() {
                    entry.1 += 1;
                }
            }
            Truth::Leak {
                onset, limit_at, ..
            } => {
                self.benign_secs += (onset - start).max(0.0);
                let deadline = limit_at.unwrap_or(end);
                let covered: f64 = series
                    .samples
                    .windows(2)
                    .filter(|w| w[0].t >= onset && w[1].t <= deadline)
                    .map(|w| (w[1].t - w[0].t).min(600.0))
                    .sum();
                if covered < 0.5 * (deadline - onset) {
                    self.unobservable += 1;
                    entry.0 -= 1;
                    return;
                }
                self.false_alerts += outcome.alerts.iter().filter(|&&a| a < onset).count();
                let caused_by_leak = |a: f64| {
                    !outcome
                        .twin_alerts
                        .iter()
                        .any(|&b| (a - b).abs() <= TWIN_MATCH)
                };
                let detection = outcome
                    .alerts
                    .iter()
                    .copied()
                    .find(|&a| a >= onset && a <= deadline && caused_by_leak(a));
                self.unattributed_alerts += outcome
                    .alerts
                    .iter()
                    .filter(|&&a| {
                        a >= onset && detection.is_none_or(|d| a < d) && !caused_by_leak(a)
                    })
                    .count();
                let in_target = limit_at.is_some_and(|at| at - onset <= TARGET_HORIZON);
                if in_target {
                    self.leaks_in_target += 1;
                } else {
                    self.leaks_slow += 1;
                }
                if let Some(at) = detection {
                    self.true_alerts += 1;
                    entry.1 += 1;
                    if in_target {
                        self.detected_in_target += 1;
                        self.delays.push(at - onset);
                        self.delay_shares
                            .push((at - onset) / (deadline - onset).max(1.0));
                    } else {
                        self.detected_slow += 1;
                    }
                }
            }
        }
    }

    pub fn precision(&self) -> f64 {
        ratio(
            self.true_alerts,
            self.true_alerts + self.false_alerts + self.unattributed_alerts,
        )
    }

    pub fn recall_in_target(&self) -> f64 {
        ratio(self.detected_in_target, self.leaks_in_target)
    }

    pub fn recall_slow(&self) -> f64 {
        ratio(self.detected_slow, self.leaks_slow)
    }

    pub fn false_alarms_per_week(&self) -> f64 {
        let weeks = self.benign_secs / (7.0 * DAY);
        if weeks > 0.0 {
            self.false_alerts as f64 / weeks
        } else {
            0.0
        }
    }

    pub fn median_delay(&self) -> Option<f64> {
        quantile(&self.delays, 0.5)
    }

    pub fn median_delay_share(&self) -> Option<f64> {
        quantile(&self.delay_shares, 0.5)
    }

    pub fn merge(&mut self, other: Tally) {
        self.true_alerts += other.true_alerts;
        self.false_alerts += other.false_alerts;
        self.unattributed_alerts += other.unattributed_alerts;
        self.leaks_in_target += other.leaks_in_target;
        self.detected_in_target += other.detected_in_target;
        self.leaks_slow += other.leaks_slow;
        self.unobservable += other.unobservable;
        self.detected_slow += other.detected_slow;
        self.benign_secs += other.benign_secs;
        self.delays.extend(other.delays);
        self.delay_shares.extend(other.delay_shares);
        for (kind, (n, hit)) in other.per_kind {
            let e = self.per_kind.entry(kind).or_default();
            e.0 += n;
            e.1 += hit;
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let idx = ((v.len() - 1) as f64 * q).round() as usize;
    Some(v[idx])
}

/// Formats seconds as hours with one decimal.
pub fn hours(secs: Option<f64>) -> String {
    secs.map_or("-".into(), |s| format!("{:.1} h", s / 3600.0))
}
