//! `sipwatch leak analyze` end to end through its library entry points (the lead wires the CLI):
//! recorded CSVs in `tests/data/leak/` replayed through the online detector, the JSON contract, the
//! exit codes, the plot, the errors that name the line, and the no-look-ahead property.

use std::path::{Path, PathBuf};

use sipwatch::leak::{DetectorConfig, LeakDetector, Sample, VerdictState};
use sipwatch::leak_cmd::{
    analyze_file, read_series, run_analyze, AnalyzeArgs, AnalyzeOptions, LeakInputError,
    EXIT_BAD_INPUT, EXIT_LEAK, EXIT_NO_LEAK,
};

const MB: f64 = 1024.0 * 1024.0;
const T0: f64 = 1_717_200_000.0;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/leak")
        .join(name)
}

fn options(limit: Option<f64>) -> AnalyzeOptions {
    AnalyzeOptions {
        limit,
        config: DetectorConfig::default(),
    }
}

#[test]
fn linear_leak_is_detected_after_onset_with_slope_and_eta() {
    // 300 MB flat for 12 h, then +12 MB/h; limit 1 GB is reached ~60 h after the onset.
    let report = analyze_file(&data("kamailio_rss_leak.csv"), &options(Some(1024.0 * MB)))
        .expect("valid csv");
    assert_eq!(report.verdict, "leak");
    assert_eq!(report.exit_code(), EXIT_LEAK);
    let detected = report.detected_at.expect("detected_at");
    let onset = T0 + 12.0 * 3600.0;
    assert!(detected > onset, "no alert before the leak starts");
    assert!(
        detected < onset + 30.0 * 3600.0,
        "detected {} h after onset",
        (detected - onset) / 3600.0
    );
    let slope = report.slope_per_hour / MB;
    assert!((slope - 12.0).abs() < 1.5, "slope {slope} MB/h");
    assert!(
        report.slope_low_per_hour <= report.slope_per_hour
            && report.slope_per_hour <= report.slope_high_per_hour
    );
    let onset_seen = report.onset.expect("onset");
    assert!(
        (onset_seen - onset).abs() < 4.0 * 3600.0,
        "onset off by {} h",
        (onset_seen - onset) / 3600.0
    );
    // At the end (72 h): 300 + 60 * 12 = 1020 MB, so the 1 GB limit is minutes away.
    let eta = report.eta_to_limit_seconds.expect("eta with a limit");
    assert!(eta < 2.0 * 3600.0, "eta {eta}");
    assert!(report.detected_at_line.is_some_and(|l| l > 12 * 30));
}

#[test]
fn json_has_the_documented_keys() {
    let report = analyze_file(&data("kamailio_rss_leak.csv"), &options(None)).expect("valid csv");
    let json: serde_json::Value = serde_json::to_value(&report).expect("serialises");
    assert_eq!(json["verdict"], "leak");
    assert!(json["detected_at"].is_number());
    assert!(json["slope_per_hour"].as_f64().is_some_and(|s| s > 0.0));
    assert!(
        json["eta_to_limit_seconds"].is_null(),
        "null without a limit: {json}"
    );
    for key in [
        "slope_low_per_hour",
        "slope_high_per_hour",
        "onset",
        "shape",
        "samples",
        "final_state",
    ] {
        assert!(json.get(key).is_some(), "missing {key}: {json}");
    }
    assert_eq!(json["samples"], 2160);
    assert!(json.get("series").is_none(), "raw series is not dumped");
}

#[test]
fn sawtooth_and_warm_up_with_rfc3339_timestamps_are_no_leak() {
    let report = analyze_file(
        &data("sawtooth_warmup_rfc3339.csv"),
        &options(Some(1024.0 * MB)),
    )
    .expect("valid csv");
    assert_eq!(report.verdict, "no_leak", "{report:?}");
    assert_eq!(report.exit_code(), EXIT_NO_LEAK);
    assert!(report.detected_at.is_none());
    assert_eq!(report.first_timestamp, T0);
}

#[test]
fn restart_is_seen_in_the_data_and_the_leak_before_it_is_reported() {
    let report = analyze_file(&data("leak_then_restart.csv"), &options(Some(1200.0 * MB)))
        .expect("valid csv");
    assert_eq!(report.verdict, "leak");
    assert!(report.detected_at.is_some_and(|t| t < T0 + 30.0 * 3600.0));
    assert_eq!(report.restarts.len(), 1, "{:?}", report.restarts);
    assert!((report.restarts[0] - (T0 + 30.0 * 3600.0)).abs() <= 240.0);
    assert_eq!(
        report.final_state,
        VerdictState::NoLeak,
        "the new segment is flat"
    );
}

#[test]
fn leaked_sessions_on_a_daily_cycle_reach_the_hard_limit() {
    // The WebRTC gateway case: a session count with a hard limit of 149.
    let report =
        analyze_file(&data("webbridge_sessions.csv"), &options(Some(149.0))).expect("valid csv");
    assert_eq!(report.verdict, "leak", "{report:?}");
    let per_day = report.slope_per_hour * 24.0;
    assert!(
        (20.0..55.0).contains(&per_day),
        "slope {per_day} sessions/day"
    );
}

#[test]
fn replay_has_no_look_ahead() {
    // Cutting the file right after the detection sample detects at the same sample; cutting it before
    // does not detect. So the verdict at a sample depends only on the samples up to it.
    let samples = read_series(&data("kamailio_rss_leak.csv")).expect("valid csv");
    let full = sipwatch::leak_cmd::replay(&samples, &options(Some(1024.0 * MB)));
    let detected = full.detected_at.expect("leak");
    let cut = samples
        .iter()
        .position(|s| s.sample.t == detected)
        .expect("detection sample");
    let upto = sipwatch::leak_cmd::replay(&samples[..=cut], &options(Some(1024.0 * MB)));
    assert_eq!(upto.detected_at, Some(detected));
    let before = sipwatch::leak_cmd::replay(&samples[..cut], &options(Some(1024.0 * MB)));
    assert_eq!(before.detected_at, None);
    // And it is the agent's code path: a bare detector fed the same samples agrees.
    let mut detector = LeakDetector::new(DetectorConfig::default(), Some(1024.0 * MB));
    let online = samples
        .iter()
        .map(|s| detector.push(Sample::new(s.sample.t, s.sample.value)))
        .find(|v| v.state == VerdictState::Leak)
        .and_then(|v| v.detected_at);
    assert_eq!(online, Some(detected));
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp csv");
    path
}

#[test]
fn bad_input_names_the_line_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("empty.csv", "", None, "empty"),
        ("nocol.csv", "time,value\n1,2\n", Some(1), "`timestamp`"),
        (
            "badnum.csv",
            "timestamp,value\n1700000000,5\n1700000060,5,5\n1700000120,12MB\n",
            Some(4),
            "12MB",
        ),
        (
            "unsorted.csv",
            "timestamp,value\n1700000060,5\n1700000000,5\n",
            Some(3),
            "earlier than",
        ),
        (
            "dup.csv",
            "timestamp,value\n1700000000,5\n1700000000,6\n",
            Some(3),
            "same as",
        ),
        (
            "badtime.csv",
            "timestamp,value\n2024-13-01T00:00:00Z,5\n",
            Some(2),
            "RFC 3339",
        ),
    ];
    for (name, text, line, needle) in cases {
        let path = write(dir.path(), name, text);
        let error: LeakInputError = analyze_file(&path, &options(None)).expect_err(name);
        assert_eq!(error.line(), line, "{name}: {error}");
        let message = error.to_string();
        assert!(message.contains(name), "{name}: names the file: {message}");
        if let Some(line) = line {
            assert!(
                message.contains(&format!("{name}:{line}")),
                "{name}: names the line: {message}"
            );
        }
        assert!(message.contains(needle), "{name}: {message}");
        let args = AnalyzeArgs {
            file: path,
            limit: None,
            json: true,
            plot: None,
            config: None,
        };
        assert_eq!(
            run_analyze(&args).expect("bad input is an exit code, not an error"),
            EXIT_BAD_INPUT
        );
    }
    let missing = AnalyzeArgs {
        file: dir.path().join("nope.csv"),
        limit: None,
        json: false,
        plot: None,
        config: None,
    };
    assert_eq!(run_analyze(&missing).expect("exit code"), EXIT_BAD_INPUT);
}

#[test]
fn run_analyze_returns_exit_codes_and_draws_the_plot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plot = dir.path().join("leak.svg");
    let args = AnalyzeArgs {
        file: data("kamailio_rss_leak.csv"),
        limit: Some(1024.0 * MB),
        json: false,
        plot: Some(plot.clone()),
        config: None,
    };
    assert_eq!(run_analyze(&args).expect("runs"), EXIT_LEAK);
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for needle in [
        "leak detected",
        "limit 1.00 GiB",
        "lower envelope",
        "polyline",
    ] {
        assert!(svg.contains(needle), "svg lacks {needle}");
    }
    assert!(svg.len() < 200_000, "plot stays small: {} bytes", svg.len());
    let args = AnalyzeArgs {
        file: data("sawtooth_warmup_rfc3339.csv"),
        limit: None,
        json: true,
        plot: None,
        config: None,
    };
    assert_eq!(run_analyze(&args).expect("runs"), EXIT_NO_LEAK);
}

#[test]
fn human_summary_reads_at_a_glance() {
    let path = data("kamailio_rss_leak.csv");
    let report = analyze_file(&path, &options(Some(1024.0 * MB))).expect("valid csv");
    let text = sipwatch::leak_cmd::human_summary(&path, &report);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() <= 6, "{text}");
    assert!(lines[0].contains("LEAK"), "{text}");
    assert!(
        text.contains("MiB/h") && text.contains("limit 1.00 GiB reached in"),
        "{text}"
    );
    assert!(text.contains("2160 samples"), "{text}");
}
