//! The detector's sensitivity knobs ([`DetectorConfig`]), with defaults chosen from the labelled corpus
//! in `bench/` (see `bench/LEAK-RESULTS.md`).
//!
//! The same struct is embedded in the agent's `[service.leak]` table, so it deserialises from TOML with
//! unknown keys rejected and every key optional. Durations are written like the rest of the config
//! (`"5m"`, `"2h"`, `"7d"`) or as a plain number of seconds. This file only describes the knobs; what they
//! do is implemented in `evidence.rs` and `detector.rs`.

use serde::{Deserialize, Serialize};

/// How sensitive a [`LeakDetector`](super::LeakDetector) is. `Default` gives the benchmarked defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Resolution of the lower envelope: one envelope point per bucket, and the detector re-evaluates
    /// once per bucket. Default `5m`.
    #[serde(with = "duration_secs")]
    pub bucket: f64,
    /// Width of the trailing minimum that forms the lower envelope. A garbage-collector sawtooth (or any
    /// oscillation) with a period shorter than this is flattened to its troughs. Default `30m`.
    #[serde(with = "duration_secs")]
    pub envelope: f64,
    /// Start each segment with a one-bucket envelope and widen it to `envelope` at the first sharp
    /// fall (a garbage collection, a freed cache, a spike going away). A gauge that never falls (a
    /// shared-memory pool, a session count) then shows its growth `envelope` sooner. Default `true`.
    pub adaptive_envelope: bool,
    /// Least time growth must have been seen, however close the limit is. Default `1h`.
    #[serde(with = "duration_secs")]
    pub min_span: f64,
    /// Growth seen steadily for this long is a leak however far the limit is (within `horizon`).
    /// Default `24h`.
    #[serde(with = "duration_secs")]
    pub max_span: f64,
    /// Evidence required when the gauge has no limit (no time-to-limit to weigh). Default `12h`.
    #[serde(with = "duration_secs")]
    pub no_limit_span: f64,
    /// With a limit, growth must have been seen for `eta_fraction` x the time left to the limit (clamped
    /// to `min_span..=max_span`): an urgent leak is raised on little evidence, a slow one waits until a
    /// warm-up or a cache fill would have levelled off. Default `0.8` (the least delay with no false
    /// alarm on the benchmark's benign shapes; 0.5 raises leaks ~25% sooner but alarms on caches that
    /// fill linearly for hours).
    pub eta_fraction: f64,
    /// Growth whose later half is slower than `plateau_ratio` x its earlier half is levelling off (a
    /// warm-up or a cache fill), not a leak; so is a window whose last quarter grows slower than this
    /// share of its average. Default `0.7`.
    pub plateau_ratio: f64,
    /// z-score of the Mann-Kendall/Sen test: the lower confidence bound of the slope must be above zero
    /// at this level. The reported `slope_low`/`slope_high` are the Sen interval at this level.
    /// Default `3.0`.
    pub significance_z: f64,
    /// Growth made of jumps counts as a staircase leak from this many up-steps in one window; fewer are
    /// one-off steps (a reload, a config push). Default `3`.
    pub staircase_min_steps: u32,
    /// History kept per segment; older envelope points are dropped. Default `7d`.
    #[serde(with = "duration_secs")]
    pub window: f64,
    /// A value that falls back by this fraction of the growth since the segment started (two samples in
    /// a row) is taken as a restart: a new segment begins. Default `0.6`.
    pub restart_drop_fraction: f64,
    /// Growth over the evidence window must exceed this many robust noise deviations. Default `4.0`.
    pub noise_k: f64,
    /// With a limit, growth that would take longer than this to reach it is not raised (yet): it is
    /// raised once its time to the limit drops below. Default `7d`.
    #[serde(with = "duration_secs")]
    pub horizon: f64,
    /// Growth below this absolute amount (in the gauge's unit) is never a leak. Default `0`.
    pub min_rise: f64,
    /// Compare with the same time yesterday, when the segment is old enough, so the rising half of a
    /// daily load cycle is not taken for a leak. Default `true`.
    pub daily_guard: bool,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            bucket: 300.0,
            envelope: 1800.0,
            adaptive_envelope: true,
            min_span: 3600.0,
            max_span: 86_400.0,
            no_limit_span: 43_200.0,
            eta_fraction: 0.8,
            plateau_ratio: 0.7,
            significance_z: 3.0,
            staircase_min_steps: 3,
            window: 7.0 * 86_400.0,
            restart_drop_fraction: 0.6,
            noise_k: 4.0,
            horizon: 7.0 * 86_400.0,
            min_rise: 0.0,
            daily_guard: true,
        }
    }
}

impl DetectorConfig {
    /// Checks the knobs against each other; the message names the key and a fix.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("bucket", self.bucket),
            ("envelope", self.envelope),
            ("min_span", self.min_span),
            ("max_span", self.max_span),
            ("no_limit_span", self.no_limit_span),
            ("window", self.window),
            ("eta_fraction", self.eta_fraction),
            ("significance_z", self.significance_z),
            ("noise_k", self.noise_k),
            ("horizon", self.horizon),
        ];
        for (key, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(format!("leak.{key} must be a positive number, got {value}"));
            }
        }
        if self.envelope < self.bucket {
            return Err(format!(
                "leak.envelope ({}s) is shorter than leak.bucket ({}s); make it at least one bucket",
                self.envelope, self.bucket
            ));
        }
        if self.max_span < self.min_span {
            return Err("leak.max_span is shorter than leak.min_span; swap them".into());
        }
        if self.window < self.max_span.max(self.no_limit_span) * 2.0 {
            return Err(format!(
                "leak.window ({}s) must cover twice max_span and no_limit_span, or the detector can \
                 never gather enough evidence",
                self.window
            ));
        }
        if !(0.0..1.0).contains(&self.plateau_ratio) {
            return Err("leak.plateau_ratio must be in [0, 1), e.g. 0.5".into());
        }
        if !(self.restart_drop_fraction > 0.0 && self.restart_drop_fraction <= 1.0) {
            return Err("leak.restart_drop_fraction must be in (0, 1], e.g. 0.6".into());
        }
        if self.staircase_min_steps < 2 {
            return Err(
                "leak.staircase_min_steps must be at least 2 (one step is a reload)".into(),
            );
        }
        if !(self.min_rise.is_finite() && self.min_rise >= 0.0) {
            return Err("leak.min_rise must be zero or positive".into());
        }
        Ok(())
    }
}

/// Serde for durations in seconds: reads `"90s"`, `"30m"`, `"2h"`, `"7d"`, `"1h30m"` or a number of
/// seconds; writes the shortest exact string.
pub mod duration_secs {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(secs: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*secs))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = f64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"30m\", \"2h\", \"7d\" or a number of seconds")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                parse_duration(v).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }

    /// Parses `"1h30m"`, `"90s"`, `"7d"`, `"0.5h"` (`sipwatch_alerting::duration`). A string needs a unit (a
    /// TOML number is seconds).
    pub fn parse_duration(text: &str) -> Result<f64, String> {
        sipwatch_alerting::duration::parse_seconds(text)
    }

    pub fn format_duration(secs: f64) -> String {
        sipwatch_alerting::duration::format_seconds(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        DetectorConfig::default()
            .validate()
            .expect("defaults validate");
    }

    #[test]
    fn toml_table_with_durations_and_unknown_key_rejected() {
        let cfg: DetectorConfig =
            toml::from_str("envelope = \"1h\"\nmin_span = 5400\nmax_span = \"1d12h\"")
                .expect("parse");
        assert_eq!(cfg.envelope, 3600.0);
        assert_eq!(cfg.min_span, 5400.0);
        assert_eq!(cfg.max_span, 129_600.0);
        assert_eq!(cfg.bucket, 300.0, "unspecified keys keep defaults");
        let err = toml::from_str::<DetectorConfig>("envlope = \"1h\"").unwrap_err();
        assert!(err.to_string().contains("envlope"), "{err}");
        let err = toml::from_str::<DetectorConfig>("envelope = \"30\"").unwrap_err();
        assert!(err.to_string().contains("duration"), "{err}");
    }

    #[test]
    fn round_trips_through_toml() {
        let cfg = DetectorConfig::default();
        let text = toml::to_string(&cfg).expect("serialise");
        assert!(text.contains("envelope = \"30m\""), "{text}");
        let back: DetectorConfig = toml::from_str(&text).expect("parse back");
        assert_eq!(back, cfg);
    }
}
