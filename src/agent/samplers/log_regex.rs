//! A number captured from a log file: the newest appended line matching a regex gives the value
//! (its first capture group, or the whole match when the regex has no group). Made for services
//! that log their own counters, like the WebRTC gateway's
//! `"webbridge": INFO : [DEBUGGING] Stats 149, c:3477, d:3170` (regex `Stats (\d+)` -> 149).
//!
//! A tick with no new matching line records nothing: the gauge keeps its last value. The file is
//! followed across rotation and truncation by [`LogTail`].

use std::path::{Path, PathBuf};

use regex::Regex;

use super::kind::{BuildContext, GaugeCheck, GaugeKind, RawGauge};
use crate::agent::log_tail::LogTail;
use crate::agent::sampler::{Reading, SampleContext, SampleError, SampleFuture, Sampler};

/// The value captured from one line, if the line matches and the capture is a number.
pub fn capture(regex: &Regex, line: &str) -> Option<f64> {
    let caps = regex.captures(line)?;
    let text = caps.get(1).or_else(|| caps.get(0))?.as_str();
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Samples a number from a followed log file.
pub struct LogRegexSampler {
    tail: LogTail,
    regex: Regex,
}

impl LogRegexSampler {
    pub fn new(tail: LogTail, regex: Regex) -> Self {
        LogRegexSampler { tail, regex }
    }
}

impl Sampler for LogRegexSampler {
    fn sample<'a>(&'a mut self, _ctx: &'a SampleContext) -> SampleFuture<'a> {
        Box::pin(async move {
            let lines = self.tail.read_lines().map_err(|e| {
                SampleError::new(format!(
                    "cannot read log file {}: {e}",
                    self.tail.path().display()
                ))
            })?;
            let value = lines
                .iter()
                .rev()
                .find_map(|line| capture(&self.regex, line));
            Ok(Reading {
                value,
                ..Reading::default()
            })
        })
    }
}

/// `kind = "log_regex"`: the first capture group of `regex` in the newest matching line
/// appended to `file`.
#[derive(Clone, Debug)]
pub struct LogRegexConfig {
    pub file: PathBuf,
    pub regex: Regex,
}

impl GaugeKind for LogRegexConfig {
    const NAMES: &'static [&'static str] = &["log_regex"];
    const KEYS: &'static [&'static str] = &["file", "regex"];

    fn check(raw: &RawGauge, c: &mut GaugeCheck<'_, '_>) -> Option<Self> {
        if raw.file.is_none() {
            c.missing("file", "file = \"/var/log/webbridge.log\"");
        }
        let regex = match &raw.regex {
            None => {
                c.missing(
                    "regex",
                    r#"regex = 'Stats (\d+)' (the first group is the value)"#,
                );
                None
            }
            Some(text) => c.regex(text, "regex is not valid"),
        };
        Some(LogRegexConfig {
            file: raw.file.clone()?,
            regex: regex?,
        })
    }

    fn build(&self, _ctx: &BuildContext<'_>) -> Box<dyn Sampler> {
        Box::new(LogRegexSampler::new(
            LogTail::new(&self.file),
            self.regex.clone(),
        ))
    }

    fn log_file(&self) -> Option<&Path> {
        Some(&self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webbridge_stats_line() {
        let re = Regex::new(r"Stats (\d+)").unwrap();
        let line =
            r#"2024-05-02 10:00:01 "webbridge": INFO : [DEBUGGING] Stats 149, c:3477, d:3170"#;
        assert_eq!(capture(&re, line), Some(149.0));
        assert_eq!(capture(&re, "Stats pending"), None);
        let whole = Regex::new(r"\d+\.\d+").unwrap();
        assert_eq!(capture(&whole, "load 3.25 now"), Some(3.25));
    }
}
