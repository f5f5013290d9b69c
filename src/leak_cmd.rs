//! `sipwatch leak analyze FILE [--limit N] [--json] [--plot out.svg]`: replays a recorded gauge series
//! through the same online [`LeakDetector`] the agent runs, sample by sample (no look-ahead), and says
//! whether and when it would have raised the leak alert.
//!
//! Exit codes: 0 no leak, 1 leak (the alert was raised at some sample), 2 bad input (the error names the
//! file and line). The lead wires [`AnalyzeArgs`] and [`run_analyze`] into the CLI; tests call
//! [`analyze_file`] directly. CSV reading is in `leak_cmd/input.rs`, the SVG in `leak_cmd/plot.rs`.

mod input;
mod plot;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use input::{parse_series, parse_timestamp, read_series, InputSample, LeakInputError};
pub use plot::render_svg;

use crate::leak::{DetectorConfig, LeakDetector, LeakVerdict, Sample, Shape, VerdictState};

/// Exit code: no leak.
pub const EXIT_NO_LEAK: i32 = 0;
/// Exit code: the detector raised the leak alert.
pub const EXIT_LEAK: i32 = 1;
/// Exit code: the input could not be read or parsed.
pub const EXIT_BAD_INPUT: i32 = 2;

/// Flags of `sipwatch leak analyze`.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = "\
Input: a CSV with a header naming `timestamp` (unix seconds or RFC 3339) and `value`, one sample per
line, sorted by time. The file is replayed sample by sample through the detector the agent runs.

Exit codes: 0 no leak, 1 leak (the alert would have been raised), 2 bad input (the error names the line).")]
pub struct AnalyzeArgs {
    /// CSV with a header and columns `timestamp` (unix seconds or RFC 3339) and `value`.
    pub file: PathBuf,
    /// The gauge's limit in its unit, for the time left until it is reached: bytes for memory,
    /// with KB, MB, GB, TB = powers of 1000 and KiB, MiB, GiB, TiB = powers of 1024 (as in agent.toml).
    #[arg(long, value_name = "BYTES", value_parser = parse_amount)]
    pub limit: Option<f64>,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Also draw the series, the trend and the detection point into this SVG file (SVG only: a
    /// name not ending in .svg is refused, exit 2).
    #[arg(long, value_name = "OUT.svg")]
    pub plot: Option<PathBuf>,
    /// Detector settings (TOML, the same keys as the agent's `[service.leak]` table, e.g.
    /// `min_span = "5m"`); unset keys keep their defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Reads `--config`: a TOML table of detector settings, checked like the agent's.
fn read_config(path: &std::path::Path) -> anyhow::Result<DetectorConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read detector settings {}: {e}", path.display()))?;
    let config: DetectorConfig =
        crate::config_error::parse_toml(path, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(config)
}

/// What `analyze_file` needs besides the file.
#[derive(Clone, Debug, Default)]
pub struct AnalyzeOptions {
    pub limit: Option<f64>,
    pub config: DetectorConfig,
}

/// The outcome of a replay. Serialises to the documented JSON (`verdict`, `detected_at`,
/// `slope_per_hour`, `eta_to_limit_seconds`, plus details).
#[derive(Clone, Debug, Serialize)]
pub struct AnalysisReport {
    /// `leak` if the detector raised the alert at any sample, else `no_leak`.
    pub verdict: &'static str,
    /// Unix time of the first sample at which the alert was raised.
    pub detected_at: Option<f64>,
    /// That sample's timestamp as written in the file.
    pub detected_at_text: Option<String>,
    /// Line of that sample in the file.
    pub detected_at_line: Option<usize>,
    /// Robust slope of the lower envelope (gauge units per hour), from the latest verdict of the
    /// leak (or, without a leak, the final verdict).
    pub slope_per_hour: f64,
    pub slope_low_per_hour: f64,
    pub slope_high_per_hour: f64,
    /// Seconds from the last sample until the limit at that slope; null without a limit or growth.
    pub eta_to_limit_seconds: Option<f64>,
    pub limit: Option<f64>,
    /// When the growth started (unix seconds).
    pub onset: Option<f64>,
    pub shape: Shape,
    /// The detector's state after the last sample (`learning`, `no_leak`, `leak`).
    pub final_state: VerdictState,
    /// Start of the last segment (after the last restart seen).
    pub segment_start: f64,
    /// Restarts seen in the data (start times of the segments after the first).
    pub restarts: Vec<f64>,
    pub samples: usize,
    pub first_timestamp: f64,
    pub last_timestamp: f64,
    pub last_value: f64,
    /// The series, for the plot.
    #[serde(skip)]
    pub series: Vec<Sample>,
    /// The lower envelope the detector built, for the plot.
    #[serde(skip)]
    pub envelope: Vec<(f64, f64)>,
}

impl AnalysisReport {
    pub fn is_leak(&self) -> bool {
        self.verdict == "leak"
    }

    pub fn exit_code(&self) -> i32 {
        if self.is_leak() {
            EXIT_LEAK
        } else {
            EXIT_NO_LEAK
        }
    }
}

/// Reads `path` and replays it (see [`replay`]).
pub fn analyze_file(
    path: &Path,
    options: &AnalyzeOptions,
) -> Result<AnalysisReport, LeakInputError> {
    let samples = read_series(path)?;
    Ok(replay(&samples, options))
}

/// Feeds the samples one by one to a fresh detector, exactly as the agent would online.
pub fn replay(samples: &[InputSample], options: &AnalyzeOptions) -> AnalysisReport {
    let mut detector = LeakDetector::new(options.config.clone(), options.limit);
    let mut detected: Option<&InputSample> = None;
    let mut leak_verdict: Option<LeakVerdict> = None;
    let mut restarts = Vec::new();
    let mut envelope: Vec<(f64, f64)> = Vec::new();
    let mut segment_start: Option<f64> = None;
    let mut verdict = detector.verdict();
    for input in samples {
        verdict = detector.push(input.sample);
        if segment_start.is_some_and(|s| s != verdict.segment_start) {
            restarts.push(verdict.segment_start);
        }
        segment_start = Some(verdict.segment_start);
        if let Some(point) = detector.last_envelope_point() {
            if envelope.last().is_none_or(|last| last.0 < point.0) {
                envelope.push(point);
            }
        }
        if verdict.state == VerdictState::Leak {
            detected.get_or_insert(input);
            leak_verdict = Some(verdict.clone());
        }
    }
    let shown = leak_verdict.clone().unwrap_or_else(|| verdict.clone());
    let per_hour = |v: f64| if v.is_finite() { v * 3600.0 } else { 0.0 };
    let last = samples.last().map(|s| s.sample);
    AnalysisReport {
        verdict: if detected.is_some() {
            "leak"
        } else {
            "no_leak"
        },
        detected_at: detected.map(|s| s.sample.t),
        detected_at_text: detected.map(|s| s.timestamp_text.clone()),
        detected_at_line: detected.map(|s| s.line),
        slope_per_hour: per_hour(shown.slope_per_sec),
        slope_low_per_hour: per_hour(shown.slope_low),
        slope_high_per_hour: per_hour(shown.slope_high),
        eta_to_limit_seconds: shown.eta_to_limit_secs,
        limit: options.limit,
        onset: shown.onset,
        shape: shown.shape,
        final_state: verdict.state,
        segment_start: verdict.segment_start,
        restarts,
        samples: samples.len(),
        first_timestamp: samples.first().map_or(f64::NAN, |s| s.sample.t),
        last_timestamp: last.map_or(f64::NAN, |s| s.t),
        last_value: last.map_or(f64::NAN, |s| s.value),
        series: samples.iter().map(|s| s.sample).collect(),
        envelope,
    }
}

/// Runs `leak analyze`: prints the summary or JSON to stdout, writes the plot, returns the exit code
/// (bad input: the error is printed to stderr and 2 is returned).
pub fn run_analyze(args: &AnalyzeArgs) -> anyhow::Result<i32> {
    let config = match &args.config {
        Some(path) => match read_config(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sipwatch leak analyze: {e}");
                return Ok(EXIT_BAD_INPUT);
            }
        },
        None => DetectorConfig::default(),
    };
    let options = AnalyzeOptions {
        limit: args.limit,
        config,
    };
    let report = match analyze_file(&args.file, &options) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("sipwatch leak analyze: {error}");
            return Ok(EXIT_BAD_INPUT);
        }
    };
    if let Some(out) = &args.plot {
        if !out
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
        {
            eprintln!(
                "sipwatch leak analyze: --plot {} : the plot is written as SVG only; name the file \
                 .svg (a PNG from it: rsvg-convert -o plot.png plot.svg)",
                out.display()
            );
            return Ok(EXIT_BAD_INPUT);
        }
        let title = format!("{}: {}", args.file.display(), headline(&report));
        std::fs::write(out, render_svg(&report, &title))
            .map_err(|e| anyhow::anyhow!("cannot write the plot to {}: {e}", out.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", human_summary(&args.file, &report));
    }
    Ok(report.exit_code())
}

fn shape_name(shape: Shape) -> &'static str {
    match shape {
        Shape::Unknown => "unknown",
        Shape::Flat => "flat",
        Shape::WarmUp => "warm-up levelling off",
        Shape::Sawtooth => "sawtooth over a flat floor",
        Shape::Step => "one-off step",
        Shape::Staircase => "staircase",
        Shape::Linear => "linear growth",
        Shape::Cyclic => "daily cycle",
    }
}

fn headline(report: &AnalysisReport) -> String {
    if report.is_leak() {
        format!("LEAK ({})", shape_name(report.shape))
    } else if report.final_state == VerdictState::Learning {
        "no leak (too little data to judge)".to_string()
    } else {
        format!("no leak ({})", shape_name(report.shape))
    }
}

/// The few lines a person reads at a glance.
pub fn human_summary(file: &Path, report: &AnalysisReport) -> String {
    use input::format_rfc3339 as at;
    let mut out = format!("{}: {}\n", file.display(), headline(report));
    if let (Some(t), Some(line)) = (report.detected_at, report.detected_at_line) {
        let onset = report
            .onset
            .map(|o| format!(", growth since about {}", at(o)))
            .unwrap_or_default();
        out += &format!("  alert raised at {} (line {line}){onset}\n", at(t));
    }
    out += &format!(
        "  slope {}/h (confidence bounds {}/h .. {}/h)\n",
        format_amount(report.slope_per_hour),
        format_amount(report.slope_low_per_hour),
        format_amount(report.slope_high_per_hour)
    );
    match (report.limit, report.eta_to_limit_seconds) {
        (Some(limit), Some(eta)) if eta <= 0.0 => {
            out += &format!("  limit {} already reached\n", format_amount(limit))
        }
        (Some(limit), Some(eta)) => {
            out += &format!(
                "  limit {} reached in about {} (around {})\n",
                format_amount(limit),
                format_duration(eta),
                at(report.last_timestamp + eta)
            )
        }
        (Some(limit), None) => {
            out += &format!("  limit {}: not approaching\n", format_amount(limit))
        }
        (None, _) => out += "  no --limit given: no time-to-limit estimate\n",
    }
    let restarts = match report.restarts.len() {
        0 => String::new(),
        1 => ", 1 restart seen".to_string(),
        n => format!(", {n} restarts seen"),
    };
    out += &format!(
        "  {} samples from {} to {} ({}){restarts}\n",
        report.samples,
        at(report.first_timestamp),
        at(report.last_timestamp),
        format_duration(report.last_timestamp - report.first_timestamp)
    );
    out
}

/// Formats an amount with binary prefixes from 1 MiB on (memory gauges), else as a plain number.
pub fn format_amount(v: f64) -> String {
    let a = v.abs();
    if a >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", v / (1024.0 * 1024.0 * 1024.0))
    } else if a >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", v / (1024.0 * 1024.0))
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Formats seconds as `3d 4h`, `5h 20m` or `12m`.
pub fn format_duration(secs: f64) -> String {
    let m = (secs / 60.0).round() as i64;
    let (d, h, m) = (m / 1440, (m / 60) % 24, m % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m")
    }
}

/// Parses `--limit` with the agent config's byte-size syntax ([`Quantity`]): `GB` is 10^9,
/// `GiB` 2^30; a bare number is in the gauge's unit.
///
/// [`Quantity`]: crate::agent::units::Quantity
pub fn parse_amount(text: &str) -> Result<f64, String> {
    let value = crate::agent::units::Quantity::parse(text)?.0;
    if value > 0.0 {
        Ok(value)
    } else {
        Err(format!("`{text}`: the limit must be a positive number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_parse_with_clap_and_help_documents_exit_codes() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            analyze: AnalyzeArgs,
        }
        let cli = Cli::try_parse_from([
            "analyze", "rss.csv", "--limit", "2G", "--json", "--plot", "o.svg",
        ])
        .expect("parses");
        assert_eq!(cli.analyze.limit, Some(2e9));
        assert!(cli.analyze.json);
        assert_eq!(cli.analyze.plot.as_deref(), Some(Path::new("o.svg")));
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes: 0 no leak, 1 leak"), "{help}");
        assert!(Cli::try_parse_from(["analyze", "rss.csv", "--limit", "lots"]).is_err());
    }

    #[test]
    fn amounts_and_durations() {
        // The agent config's syntax: GB is 10^9, GiB 2^30.
        assert_eq!(parse_amount("1GB"), Ok(1e9));
        assert_eq!(parse_amount("1GiB"), Ok(1024.0 * 1024.0 * 1024.0));
        assert_eq!(
            parse_amount("1GB"),
            crate::agent::units::Quantity::parse("1GB").map(|q| q.0)
        );
        assert_eq!(parse_amount("512MiB"), Ok(512.0 * 1024.0 * 1024.0));
        assert!(parse_amount("0").is_err());
        assert_eq!(parse_amount("149"), Ok(149.0));
        assert!(parse_amount("2X").is_err());
        assert!(parse_amount("-5").is_err());
        assert_eq!(format_duration(3.0 * 86_400.0 + 4.0 * 3600.0), "3d 4h");
        assert_eq!(format_duration(5.0 * 3600.0 + 20.0 * 60.0), "5h 20m");
        assert_eq!(format_amount(3.5 * 1024.0 * 1024.0), "3.5 MiB");
    }
}
