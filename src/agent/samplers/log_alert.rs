//! Log lines that must page at once, without waiting for a trend: Kamailio's
//! `no more shm memory` or `could not allocate shared memory` mean calls are failing now.
//!
//! Every appended line matching any of the patterns becomes an immediate alert (the gauge layer
//! turns it into an event). The gauge's value counts the matches since the agent started, so a
//! dashboard shows how often it happened. Not fed to the leak detector by default.

use std::path::{Path, PathBuf};

use regex::Regex;

use super::kind::{BuildContext, GaugeCheck, GaugeKind, RawGauge};
use crate::agent::log_tail::LogTail;
use crate::agent::sampler::{
    LogAlertLine, Reading, SampleContext, SampleError, SampleFuture, Sampler,
};

/// Most alerts raised per tick; the count still includes the rest.
const MAX_ALERTS_PER_TICK: usize = 20;

/// Watches a log file for alerting patterns.
pub struct LogAlertSampler {
    tail: LogTail,
    patterns: Vec<Regex>,
    matches: u64,
}

impl LogAlertSampler {
    pub fn new(tail: LogTail, patterns: Vec<Regex>) -> Self {
        LogAlertSampler {
            tail,
            patterns,
            matches: 0,
        }
    }
}

impl Sampler for LogAlertSampler {
    fn sample<'a>(&'a mut self, _ctx: &'a SampleContext) -> SampleFuture<'a> {
        Box::pin(async move {
            let lines = self.tail.read_lines().map_err(|e| {
                SampleError::new(format!(
                    "cannot read log file {}: {e}",
                    self.tail.path().display()
                ))
            })?;
            let mut alerts = Vec::new();
            for line in &lines {
                if let Some(pattern) = self.patterns.iter().find(|p| p.is_match(line)) {
                    self.matches += 1;
                    if alerts.len() < MAX_ALERTS_PER_TICK {
                        alerts.push(LogAlertLine {
                            pattern: pattern.as_str().to_owned(),
                            line: line.chars().take(1000).collect(),
                        });
                    }
                }
            }
            Ok(Reading {
                value: Some(self.matches as f64),
                found_limit: None,
                alerts,
            })
        })
    }
}

/// `kind = "log_alert"`: lines of `file` matching any pattern raise an immediate alert; the value
/// counts them.
#[derive(Clone, Debug)]
pub struct LogAlertConfig {
    pub file: PathBuf,
    pub patterns: Vec<Regex>,
}

impl GaugeKind for LogAlertConfig {
    const NAMES: &'static [&'static str] = &["log_alert"];
    const KEYS: &'static [&'static str] = &["file", "patterns"];
    const UNIT: &'static str = "matches";
    const DETECT_BY_DEFAULT: bool = false;

    fn check(raw: &RawGauge, c: &mut GaugeCheck<'_, '_>) -> Option<Self> {
        if raw.file.is_none() {
            c.missing("file", "file = \"/var/log/kamailio.log\"");
        }
        let mut patterns = Vec::new();
        match &raw.patterns {
            None => c.missing("patterns", r#"patterns = ["no more shm memory"]"#),
            Some(list) if list.get_ref().is_empty() => c.error(
                list.span(),
                "patterns is empty; list at least one regex, e.g. [\"no more shm memory\"]"
                    .to_owned(),
            ),
            Some(list) => {
                for p in list.get_ref() {
                    patterns.extend(c.regex(p, "pattern is not a valid regex"));
                }
            }
        }
        match raw.file.clone() {
            Some(file) if !patterns.is_empty() => Some(LogAlertConfig { file, patterns }),
            _ => None,
        }
    }

    fn build(&self, _ctx: &BuildContext<'_>) -> Box<dyn Sampler> {
        Box::new(LogAlertSampler::new(
            LogTail::new(&self.file),
            self.patterns.clone(),
        ))
    }

    fn log_file(&self) -> Option<&Path> {
        Some(&self.file)
    }
}
