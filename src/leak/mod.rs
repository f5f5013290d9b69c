//! TEMPORARY stub of the online leak detector, so the agent compiles before the real `sipwatch::leak`
//! lands. Same public API as the contract; the logic is a plain least-squares slope since the last
//! restart. The lead drops this commit at merge.

use serde::{Deserialize, Serialize};

/// Detector tuning (stub: two knobs).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Samples needed before a verdict (0 means 10).
    pub min_samples: usize,
}

/// One observation of a gauge.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Unix seconds.
    pub t: f64,
    /// The gauge's value.
    pub value: f64,
}

/// Online detector (stub).
pub struct LeakDetector {
    config: DetectorConfig,
    limit: Option<f64>,
    samples: Vec<Sample>,
    segment_start: f64,
    detected_at: Option<f64>,
    verdict: LeakVerdict,
}

/// What the detector thinks now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeakVerdict {
    pub state: VerdictState,
    pub shape: Shape,
    pub slope_per_sec: f64,
    pub slope_low: f64,
    pub slope_high: f64,
    pub onset: Option<f64>,
    pub detected_at: Option<f64>,
    pub eta_to_limit_secs: Option<f64>,
    pub segment_start: f64,
}

/// Learning, no leak, or leak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictState {
    Learning,
    NoLeak,
    Leak,
}

/// The shape of the series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Flat,
    WarmUp,
    Sawtooth,
    Step,
    Staircase,
    Linear,
    Cyclic,
    Unknown,
}

impl LeakDetector {
    pub fn new(config: DetectorConfig, limit: Option<f64>) -> Self {
        LeakDetector {
            config,
            limit,
            samples: Vec::new(),
            segment_start: 0.0,
            detected_at: None,
            verdict: LeakVerdict {
                state: VerdictState::Learning,
                shape: Shape::Unknown,
                slope_per_sec: 0.0,
                slope_low: 0.0,
                slope_high: 0.0,
                onset: None,
                detected_at: None,
                eta_to_limit_secs: None,
                segment_start: 0.0,
            },
        }
    }

    pub fn set_limit(&mut self, limit: Option<f64>) {
        self.limit = limit;
    }

    pub fn push(&mut self, sample: Sample) -> LeakVerdict {
        if self.samples.is_empty() && self.segment_start == 0.0 {
            self.segment_start = sample.t;
        }
        self.samples.push(sample);
        let min = if self.config.min_samples == 0 {
            10
        } else {
            self.config.min_samples
        };
        let n = self.samples.len() as f64;
        let (mt, mv) = self
            .samples
            .iter()
            .fold((0.0, 0.0), |(a, b), s| (a + s.t / n, b + s.value / n));
        let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
        for s in &self.samples {
            sxy += (s.t - mt) * (s.value - mv);
            sxx += (s.t - mt) * (s.t - mt);
            syy += (s.value - mv) * (s.value - mv);
        }
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let r2 = if sxx > 0.0 && syy > 0.0 {
            sxy * sxy / (sxx * syy)
        } else {
            0.0
        };
        let leak = self.samples.len() >= min && slope > 0.0 && r2 > 0.8;
        let state = if self.samples.len() < min {
            VerdictState::Learning
        } else if leak {
            VerdictState::Leak
        } else {
            VerdictState::NoLeak
        };
        if leak && self.detected_at.is_none() {
            self.detected_at = Some(sample.t);
        }
        if !leak {
            self.detected_at = None;
        }
        let eta = match (self.limit, leak) {
            (Some(limit), true) => Some(((limit - sample.value) / slope).max(0.0)),
            _ => None,
        };
        self.verdict = LeakVerdict {
            state,
            shape: if leak { Shape::Linear } else { Shape::Unknown },
            slope_per_sec: slope,
            slope_low: slope,
            slope_high: slope,
            onset: if leak { Some(self.segment_start) } else { None },
            detected_at: self.detected_at,
            eta_to_limit_secs: eta,
            segment_start: self.segment_start,
        };
        self.verdict.clone()
    }

    pub fn mark_restart(&mut self, t: f64) {
        self.samples.clear();
        self.segment_start = t;
        self.detected_at = None;
        self.verdict.state = VerdictState::Learning;
        self.verdict.segment_start = t;
    }

    pub fn verdict(&self) -> LeakVerdict {
        self.verdict.clone()
    }
}
