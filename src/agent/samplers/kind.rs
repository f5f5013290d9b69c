//! The contract of a gauge kind's config: [`GaugeKind`], implemented by one config struct per
//! kind (in the kind's own file, beside its sampler), the `[[service.gauge]]` table as written
//! ([`RawGauge`]), and what a kind's check gets to report problems ([`GaugeCheck`]).
//!
//! A kind checks only its own keys and builds only its own sampler. What every gauge shares
//! (name, limit, detect, leak settings, stray keys, timeouts against the interval) is checked
//! once, in [`crate::agent::config`]; which kinds exist is the registry, [`super`].

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::agent::sampler::Sampler;
use crate::agent::units::{ConfigDuration, Quantity};
use crate::config_error::Problems;
use crate::leak::DetectorConfig;

/// One gauge kind's checked settings. The registry ([`super`]) dispatches to it.
pub trait GaugeKind: Sized {
    /// The names of `kind = "..."` this config is made from (memory has three: pss, rss, uss).
    const NAMES: &'static [&'static str];
    /// The keys of [`RawGauge`] this kind reads beyond the common ones (others are stray).
    const KEYS: &'static [&'static str];

    /// Checks the kind's own keys, reporting every problem; `None` when it cannot be built.
    fn check(raw: &RawGauge, c: &mut GaugeCheck<'_, '_>) -> Option<Self>;

    /// The sampler of this gauge.
    fn build(&self, ctx: &BuildContext<'_>) -> Box<dyn Sampler>;

    /// The unit of the values, for reports (`bytes` makes metrics in bytes).
    const UNIT: &'static str = "value";
    /// Whether the gauge measures memory in bytes (the service's `limit` applies to it).
    const IS_MEMORY: bool = false;
    /// Whether the gauge reads the service's processes (and so has nothing while it is missing).
    const READS_PROCESSES: bool = false;
    /// Whether samples go through the leak detector when `detect` is not written.
    const DETECT_BY_DEFAULT: bool = true;

    /// The name of the kind, as written in `kind = "..."`.
    fn name(&self) -> &'static str {
        Self::NAMES[0]
    }

    /// How long one sample may take, for the gauges that wait on something outside (their
    /// `timeout`, see [`GaugeCheck::timeout`]).
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// The log file the gauge follows, named in its log alerts.
    fn log_file(&self) -> Option<&Path> {
        None
    }
}

/// What building a sampler may use: the HTTP client shared by the HTTP samplers, and the cgroup
/// v2 mount.
pub struct BuildContext<'a> {
    pub client: &'a reqwest::Client,
    pub cgroup_root: &'a Path,
}

/// One `[[service.gauge]]` table as written: the common keys, then every kind's own keys (a key
/// a new kind needs that no kind has yet is added here and to [`RawGauge::written_keys`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGauge {
    pub kind: Spanned<String>,
    pub name: Option<Spanned<String>>,
    pub limit: Option<Quantity>,
    pub detect: Option<bool>,
    pub leak: Option<DetectorConfig>,
    pub url: Option<Spanned<String>>,
    pub field: Option<Spanned<String>>,
    pub aggregate: Option<Aggregate>,
    pub pointer: Option<Spanned<String>>,
    pub file: Option<PathBuf>,
    pub regex: Option<Spanned<String>>,
    pub patterns: Option<Spanned<Vec<Spanned<String>>>>,
    pub command: Option<Spanned<String>>,
    pub timeout: Option<ConfigDuration>,
    pub path: Option<PathBuf>,
}

impl RawGauge {
    /// The kind-specific keys written in this table, each with where to point at it (its value,
    /// or the table when the value carries no position).
    pub fn written_keys(&self, table: &Range<usize>) -> Vec<(&'static str, Range<usize>)> {
        let table = || Some(table.clone());
        [
            ("url", self.url.as_ref().map(Spanned::span)),
            ("field", self.field.as_ref().map(Spanned::span)),
            ("aggregate", self.aggregate.and_then(|_| table())),
            ("pointer", self.pointer.as_ref().map(Spanned::span)),
            ("file", self.file.as_ref().and_then(|_| table())),
            ("regex", self.regex.as_ref().map(Spanned::span)),
            ("patterns", self.patterns.as_ref().map(Spanned::span)),
            ("command", self.command.as_ref().map(Spanned::span)),
            ("timeout", self.timeout.and_then(|_| table())),
            ("path", self.path.as_ref().and_then(|_| table())),
        ]
        .into_iter()
        .filter_map(|(key, span)| span.map(|s| (key, s)))
        .collect()
    }
}

/// How a per-process Kamailio figure is folded over the processes: the value of `aggregate`, a
/// key of `kamailio_pkg` (here, beside the table as written, so that a bad value is a parse error
/// with its position).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The largest value of any process (the one closest to running out).
    Max,
    /// The total over the processes.
    Sum,
}

/// What a kind's check reports to: the gauge's place, its service and kind, and the file's
/// problems.
pub struct GaugeCheck<'a, 'p> {
    /// The `kind` as written.
    pub kind: &'a str,
    /// The service the gauge belongs to.
    pub service: &'a str,
    /// The gauge's table.
    pub span: Range<usize>,
    /// `timeout` as written, or the default: 5 s, but at most 80 % of the service's interval.
    pub timeout: Duration,
    problems: &'a mut Problems<'p>,
}

impl<'a, 'p> GaugeCheck<'a, 'p> {
    pub fn new(
        raw: &'a RawGauge,
        service: &'a str,
        span: Range<usize>,
        interval: Duration,
        problems: &'a mut Problems<'p>,
    ) -> Self {
        // The default never reaches the interval, so a sample ends before the next one starts.
        let default_timeout = Duration::from_secs(5).min(interval.mul_f64(0.8));
        GaugeCheck {
            kind: raw.kind.get_ref(),
            service,
            span,
            timeout: raw.timeout.map_or(default_timeout, ConfigDuration::get),
            problems,
        }
    }

    /// A problem at `span`.
    pub fn error(&mut self, span: Range<usize>, message: String) {
        self.problems.at(span, message);
    }

    /// A key written in the table that this kind does not read.
    pub fn stray(&mut self, key: &str, at: Range<usize>) {
        let message = format!(
            "service \"{}\": {key} does not apply to a gauge of kind = \"{}\"; remove it",
            self.service, self.kind
        );
        self.problems.at(at, message);
    }

    /// A key the kind needs is missing: say which, with an example.
    pub fn missing(&mut self, key: &str, example: &str) {
        let message = format!(
            "service \"{}\": gauge kind = \"{}\" needs {key}, e.g. {example}",
            self.service, self.kind
        );
        self.problems.at(self.span.clone(), message);
    }

    /// `url`, which must be http(s); a missing one is reported with `example`.
    pub fn url(&mut self, url: &Option<Spanned<String>>, example: &str) -> Option<String> {
        let Some(url) = url.as_ref() else {
            self.missing("url", example);
            return None;
        };
        let text = url.get_ref();
        if text.starts_with("http://") || text.starts_with("https://") {
            Some(text.clone())
        } else {
            let message = format!(
                "service \"{}\": url = \"{text}\" for {} must start with http:// or https://",
                self.service, self.kind
            );
            self.problems.at(url.span(), message);
            None
        }
    }

    /// A regex as written; `invalid` starts the error (`"regex is not valid"`).
    pub fn regex(&mut self, text: &Spanned<String>, invalid: &str) -> Option<Regex> {
        match Regex::new(text.get_ref()) {
            Ok(re) => Some(re),
            Err(e) => {
                self.problems.at(
                    text.span(),
                    format!("{invalid}: {}", one_line(&e.to_string())),
                );
                None
            }
        }
    }
}

/// A multi-line message (regex errors draw a caret) on one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
