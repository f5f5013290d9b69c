//! `leak_corpus`: runs the labelled leak corpus through sipwatch's online leak detector and the
//! baselines (monit `value > 80% of limit for 5 cycles`; the node-exporter mixin's two "filling up"
//! rules, `value > 60% of limit and predict_linear(gauge[6h], 24h) > limit for 1h` and its 4 h / 80%
//! "critical" variant; and the 24 h rule without its level guard) in one pass per series, and prints
//! the markdown tables recorded in BENCHMARKS.md.
//!
//! Usage: `cargo run --release -p sipwatch-bench --bin leak_corpus -- [--per-kind N] [--seed S]
//! [--threads T] [--sweep]`. `--sweep` scores a grid of detector settings (the defaults were chosen
//! from it) instead of the baseline comparison.

#[path = "../leak/mod.rs"]
mod leak;

use std::time::Instant;

use leak::baselines::{MonitRule, PredictLinear};
use leak::corpus::{generate, generate_twin, Kind, Series, DAY, HOUR};
use leak::score::{hours, Outcome, Tally};
use sipwatch::leak::{DetectorConfig, LeakDetector, VerdictState};

struct Options {
    per_kind: usize,
    seed: u64,
    threads: usize,
    sweep: bool,
    sweep_eta: Vec<f64>,
    sweep_plateau: Vec<f64>,
    baseline_sweep: bool,
    mistakes: bool,
    trace: Option<(usize, usize)>,
    /// `--set key=value` overrides of the detector config (TOML values), for --mistakes/--trace.
    config: DetectorConfig,
}

fn parse_list(text: &str) -> Result<Vec<f64>, String> {
    text.split(',')
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .map_err(|e| format!("`{v}` in `{text}`: {e}"))
        })
        .collect()
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        per_kind: 60,
        seed: 20_240_601,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        sweep: false,
        sweep_eta: vec![0.4, 0.5, 0.6, 0.75, 1.0],
        sweep_plateau: vec![0.5, 0.7],
        baseline_sweep: false,
        mistakes: false,
        trace: None,
        config: DetectorConfig::default(),
    };
    let mut overrides = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--per-kind" => {
                options.per_kind = value("--per-kind")?
                    .parse()
                    .map_err(|e| format!("--per-kind: {e}"))?
            }
            "--seed" => {
                options.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--threads" => {
                options.threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--sweep" => options.sweep = true,
            "--baseline-sweep" => options.baseline_sweep = true,
            "--sweep-eta" => options.sweep_eta = parse_list(&value("--sweep-eta")?)?,
            "--sweep-plateau" => options.sweep_plateau = parse_list(&value("--sweep-plateau")?)?,
            "--set" => {
                overrides.push_str(&value("--set")?);
                overrides.push('\n');
            }
            "--mistakes" => options.mistakes = true,
            "--trace" => {
                let kind = value("--trace")?
                    .parse()
                    .map_err(|e| format!("--trace KIND INDEX: {e}"))?;
                let index = value("--trace")?
                    .parse()
                    .map_err(|e| format!("--trace KIND INDEX: {e}"))?;
                options.trace = Some((kind, index));
            }
            other => {
                return Err(format!(
                    "unknown argument {other}; see the file's doc comment"
                ))
            }
        }
    }
    options.config = toml::from_str(&overrides).map_err(|e| format!("--set: {e}"))?;
    Ok(options)
}

/// A baseline alert rule and its parameters.
#[derive(Clone, Copy, Debug)]
enum Baseline {
    /// monit: `value > share x limit for cycles samples`.
    Monit { share: f64, cycles: u32 },
    /// Prometheus: `[gauge > level x limit and] predict_linear(gauge[window], horizon) > limit
    /// for: hold`.
    Predict {
        window: f64,
        horizon: f64,
        hold: f64,
        level: Option<f64>,
    },
}

/// The baselines of the main table, in order: monit, the node-exporter mixin's two
/// `NodeFilesystemSpaceFillingUp` rules as written (warning: less than 40% left and full within 24 h;
/// critical: less than 20% left and full within 4 h; both `for: 1h`), and the 24 h rule without its
/// level guard, for reference.
const STANDARD_BASELINES: [Baseline; 4] = [
    Baseline::Monit {
        share: 0.8,
        cycles: 5,
    },
    Baseline::Predict {
        window: 6.0 * HOUR,
        horizon: DAY,
        hold: HOUR,
        level: Some(0.6),
    },
    Baseline::Predict {
        window: 6.0 * HOUR,
        horizon: 4.0 * HOUR,
        hold: HOUR,
        level: Some(0.8),
    },
    Baseline::Predict {
        window: 6.0 * HOUR,
        horizon: DAY,
        hold: HOUR,
        level: None,
    },
];

impl Baseline {
    fn label(&self) -> String {
        match *self {
            Baseline::Monit { share, cycles } => {
                format!(
                    "monit: value > {:.0}% of limit for {cycles} cycles",
                    share * 100.0
                )
            }
            Baseline::Predict {
                window,
                horizon,
                hold,
                level,
            } => format!(
                "Prometheus: {}predict_linear([{}h], {}h) > limit for {}h",
                level.map_or(String::new(), |share| format!(
                    "value > {:.0}% of limit and ",
                    share * 100.0
                )),
                window / HOUR,
                horizon / HOUR,
                hold / HOUR
            ),
        }
    }

    fn start(&self, limit: f64) -> RunningBaseline {
        match *self {
            Baseline::Monit { share, cycles } => {
                RunningBaseline::Monit(MonitRule::new(share * limit, cycles))
            }
            Baseline::Predict {
                window,
                horizon,
                hold,
                level,
            } => RunningBaseline::Predict(PredictLinear::new(window, horizon, hold, limit, level)),
        }
    }
}

enum RunningBaseline {
    Monit(MonitRule),
    Predict(PredictLinear),
}

impl RunningBaseline {
    fn push(&mut self, sample: sipwatch::leak::Sample) -> bool {
        match self {
            RunningBaseline::Monit(m) => m.push(sample),
            RunningBaseline::Predict(p) => p.push(sample),
        }
    }
}

/// One pass over a series: every detector config, then every baseline; one outcome each, in order.
fn run_series(series: &Series, configs: &[DetectorConfig], baselines: &[Baseline]) -> Vec<Outcome> {
    let mut detectors: Vec<LeakDetector> = configs
        .iter()
        .map(|c| LeakDetector::new(c.clone(), Some(series.limit)))
        .collect();
    let mut rules: Vec<RunningBaseline> = baselines.iter().map(|b| b.start(series.limit)).collect();
    let mut was_leak = vec![false; detectors.len()];
    let mut outcomes = vec![Outcome::default(); detectors.len() + rules.len()];
    for &sample in &series.samples {
        for (i, detector) in detectors.iter_mut().enumerate() {
            let leak = detector.push(sample).state == VerdictState::Leak;
            if leak && !was_leak[i] {
                outcomes[i].alerts.push(sample.t);
            }
            was_leak[i] = leak;
        }
        let n = detectors.len();
        for (j, rule) in rules.iter_mut().enumerate() {
            if rule.push(sample) {
                outcomes[n + j].alerts.push(sample.t);
            }
        }
    }
    outcomes
}

/// Runs every series of the corpus through `configs` (and the baselines), in parallel.
fn run_corpus(
    options: &Options,
    configs: &[DetectorConfig],
    baselines: &[Baseline],
) -> (Vec<Tally>, usize, usize) {
    let jobs: Vec<(Kind, usize)> = Kind::ALL
        .iter()
        .flat_map(|&k| (0..options.per_kind).map(move |i| (k, i)))
        .collect();
    let width = configs.len() + baselines.len();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new((vec![Tally::default(); width], 0usize, 0usize));
    std::thread::scope(|scope| {
        for _ in 0..options.threads.max(1) {
            scope.spawn(|| {
                let mut local = vec![Tally::default(); width];
                let (mut series_count, mut sample_count) = (0, 0);
                loop {
                    let job = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(kind, index)) = jobs.get(job) else {
                        break;
                    };
                    let series = generate(kind, index, options.seed);
                    let mut outcomes = run_series(&series, configs, baselines);
                    if let Some(twin) = generate_twin(kind, index, options.seed) {
                        for (outcome, twin) in outcomes
                            .iter_mut()
                            .zip(run_series(&twin, configs, baselines))
                        {
                            outcome.twin_alerts = twin.alerts;
                        }
                    }
                    for (tally, outcome) in local.iter_mut().zip(&outcomes) {
                        tally.add(&series, outcome);
                    }
                    series_count += 1;
                    sample_count += series.samples.len();
                }
                if let Ok(mut shared) = results.lock() {
                    for (into, from) in shared.0.iter_mut().zip(local) {
                        into.merge(from);
                    }
                    shared.1 += series_count;
                    shared.2 += sample_count;
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * x)
    }
}

fn summary_row(name: &str, t: &Tally) -> String {
    format!(
        "| {name} | {} | {} ({}/{}) | {} ({}/{}) | {} | {} | {:.3} ({}) |",
        pct(t.precision()),
        pct(t.recall_in_target()),
        t.detected_in_target,
        t.leaks_in_target,
        pct(t.recall_slow()),
        t.detected_slow,
        t.leaks_slow,
        hours(t.median_delay()),
        t.median_delay_share()
            .map_or("-".into(), |s| format!("{:.2}", s)),
        t.false_alarms_per_week(),
        t.false_alerts,
    )
}

fn main() {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("leak_corpus: {e}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    if let Some((kind, index)) = options.trace {
        trace(&options, kind, index);
        return;
    }
    if options.mistakes {
        mistakes(&options);
        return;
    }
    if options.baseline_sweep {
        baseline_sweep(&options);
        eprintln!(
            "baseline sweep took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        return;
    }
    if options.sweep {
        sweep(&options);
        eprintln!("sweep took {:.1} s", started.elapsed().as_secs_f64());
        return;
    }
    let (tallies, series, samples) =
        run_corpus(&options, &[DetectorConfig::default()], &STANDARD_BASELINES);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "Corpus: {} shapes x {} series = {series} series, {samples} samples, seed {}; run took {elapsed:.1} s \
         on {} threads.\n",
        Kind::ALL.len(),
        options.per_kind,
        options.seed,
        options.threads
    );
    if let Some(t) = tallies.first() {
        println!(
            "{} leak series left out of recall for every detector: sampling gaps cover most of their onset-to-limit time.\n",
            t.unobservable
        );
    }
    println!("| detector | precision | recall, leaks reaching the limit within 7 d | recall, slower leaks | median delay after onset | median delay / time-to-limit | false alarms per service-week (count) |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let names: Vec<String> = std::iter::once("sipwatch leak detector (defaults)".to_string())
        .chain(STANDARD_BASELINES.iter().map(Baseline::label))
        .collect();
    for (name, tally) in names.iter().zip(&tallies) {
        println!("{}", summary_row(name, tally));
    }
    println!("\nPer shape: series with a detection (leak shapes) or with a false alarm (benign shapes), out of the series of that shape.\n");
    println!("| shape | sipwatch | monit | mixin 24h (>60%) | mixin 4h (>80%) | bare predict_linear 24h |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for kind in Kind::ALL {
        let cells: Vec<String> = tallies
            .iter()
            .map(|t| {
                let (n, hit) = t.per_kind.get(&kind).copied().unwrap_or_default();
                format!("{hit}/{n}")
            })
            .collect();
        let what = if kind.is_leak() {
            "detected"
        } else {
            "false alarm"
        };
        println!("| {} ({what}) | {} |", kind.name(), cells.join(" | "));
    }
}

/// Scores a grid of settings around the defaults (detector only).
fn sweep(options: &Options) {
    let mut configs = Vec::new();
    let mut labels = Vec::new();
    for &eta_fraction in &options.sweep_eta {
        for &plateau_ratio in &options.sweep_plateau {
            let config = DetectorConfig {
                eta_fraction,
                plateau_ratio,
                ..options.config.clone()
            };
            labels.push(format!(
                "eta_fraction {eta_fraction}, plateau_ratio {plateau_ratio}"
            ));
            configs.push(config);
        }
    }
    let (tallies, series, _) = run_corpus(options, &configs, &[]);
    println!(
        "Sweep over {series} series (seed {}, {} per shape).\n",
        options.seed, options.per_kind
    );
    println!("| setting | precision | recall <=7d | recall slower | median delay | delay/ttl | FA/week (count) |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (label, tally) in labels.iter().zip(&tallies) {
        println!("{}", summary_row(label, tally));
    }
}

/// Lists the series the default detector gets wrong, with the verdict at the false alarm (debugging aid).
fn mistakes(options: &Options) {
    use leak::corpus::Truth;
    for kind in Kind::ALL {
        for index in 0..options.per_kind {
            let series = generate(kind, index, options.seed);
            let start = series.samples.first().map_or(0.0, |s| s.t);
            let mut detector = LeakDetector::new(options.config.clone(), Some(series.limit));
            let mut first = None;
            let mut predict = PredictLinear::new(6.0 * HOUR, DAY, HOUR, series.limit, None);
            let mut predicted = None;
            for &sample in &series.samples {
                let v = detector.push(sample);
                if v.state == VerdictState::Leak && first.is_none() {
                    first = Some(v);
                }
                if predict.push(sample) && predicted.is_none() {
                    predicted = Some(sample.t);
                }
            }
            if let Truth::Leak {
                onset,
                limit_at: Some(limit_at),
                ..
            } = series.truth
            {
                println!(
                    "DELAY {:?}#{index} ttl {:.1} h ours {:.1} h bare predict_linear 24h {:.1} h",
                    kind,
                    (limit_at - onset) / HOUR,
                    first
                        .as_ref()
                        .and_then(|v| v.detected_at)
                        .map_or(f64::NAN, |t| (t - onset) / HOUR),
                    predicted.map_or(f64::NAN, |t| (t - onset) / HOUR)
                );
            }
            let h = |t: f64| (t - start) / HOUR;
            let base = series.samples.first().map_or(0.0, |s| s.value);
            match (series.truth, &first) {
                (Truth::Benign, Some(v)) => println!(
                    "FA   {:?}#{index}: alert at {:.1} h, shape {:?}, slope {:.2} MB/h [{:.2}, {:.2}], eta {:.1} h, limit {:.0} MB, first value {:.0} MB",
                    kind, h(v.detected_at.unwrap_or(0.0)), v.shape, v.slope_per_sec * HOUR / 1048576.0,
                    v.slope_low * HOUR / 1048576.0, v.slope_high * HOUR / 1048576.0,
                    v.eta_to_limit_secs.unwrap_or(f64::NAN) / HOUR, series.limit / 1048576.0, base / 1048576.0
                ),
                (Truth::Leak { onset, limit_at, rate_per_hour }, v) => {
                    let at = v.as_ref().and_then(|v| v.detected_at);
                    let ok = at.is_some_and(|a| a >= onset && a <= limit_at.unwrap_or(f64::INFINITY));
                    if !ok {
                        println!(
                            "MISS {:?}#{index}: onset {:.1} h, limit at {:.1} h, rate {:.2} MB/h, alert {:?} h, shape {:?}, limit {:.0} MB, first {:.0} MB",
                            kind, h(onset), limit_at.map_or(f64::NAN, h), rate_per_hour / 1048576.0,
                            at.map(h), v.as_ref().map(|v| v.shape), series.limit / 1048576.0, base / 1048576.0
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

/// Prints one series' verdicts every half hour (debugging aid): `--trace KIND_NUMBER INDEX`.
fn trace(options: &Options, kind: usize, index: usize) {
    let Some(&kind) = Kind::ALL.get(kind) else {
        eprintln!("no kind {kind}");
        return;
    };
    let series = generate(kind, index, options.seed);
    println!(
        "{:?}#{index} limit {:.1} MB truth {:?}",
        kind,
        series.limit / 1048576.0,
        series.truth
    );
    let start = series.samples.first().map_or(0.0, |s| s.t);
    let mut detector = LeakDetector::new(options.config.clone(), Some(series.limit));
    let mut next = 0.0;
    for &sample in &series.samples {
        let v = detector.push(sample);
        if sample.t - start >= next {
            next += 1800.0;
            println!(
                "{:6.1} h value {:8.1} MB  {:?} {:?} slope {:.2} MB/h [{:.2},{:.2}] eta {:?} seg {:.1}",
                (sample.t - start) / HOUR, sample.value / 1048576.0, v.state, v.shape,
                v.slope_per_sec * HOUR / 1048576.0, v.slope_low * HOUR / 1048576.0, v.slope_high * HOUR / 1048576.0,
                v.eta_to_limit_secs.map(|e| (e / HOUR).round()), (v.segment_start - start) / HOUR
            );
        }
    }
}

/// Scores a grid of baseline settings next to the detector's defaults, to compare at an equal
/// false-alarm budget.
fn baseline_sweep(options: &Options) {
    let mut baselines = Vec::new();
    for share in [0.7, 0.8, 0.9] {
        baselines.push(Baseline::Monit { share, cycles: 5 });
    }
    for level in [None, Some(0.6), Some(0.7)] {
        for window in [1.0, 6.0, 12.0, 24.0] {
            for horizon in [4.0, 12.0, 24.0, 48.0] {
                for hold in [1.0, 4.0] {
                    baselines.push(Baseline::Predict {
                        window: window * HOUR,
                        horizon: horizon * HOUR,
                        hold: hold * HOUR,
                        level,
                    });
                }
            }
        }
    }
    baselines.push(STANDARD_BASELINES[2]);
    let (tallies, series, _) = run_corpus(options, &[DetectorConfig::default()], &baselines);
    println!(
        "Baseline settings over {series} series (seed {}, {} per shape), sorted by false alarms then delay.\n",
        options.seed, options.per_kind
    );
    println!("| setting | precision | recall <=7d | recall slower | median delay | delay/ttl | FA/week (count) |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut rows: Vec<(String, &Tally)> =
        std::iter::once("sipwatch leak detector (defaults)".to_string())
            .chain(baselines.iter().map(Baseline::label))
            .zip(&tallies)
            .collect();
    rows.sort_by(|a, b| {
        (
            a.1.false_alerts,
            a.1.median_delay().unwrap_or(f64::INFINITY) as i64,
        )
            .cmp(&(
                b.1.false_alerts,
                b.1.median_delay().unwrap_or(f64::INFINITY) as i64,
            ))
    });
    for (label, tally) in rows {
        println!("{}", summary_row(&label, tally));
    }
}
