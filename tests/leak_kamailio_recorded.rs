//! The leak detector on a real leak: Kamailio storing every OPTIONS in an htable that never
//! expires, under SIPp load, sampled every 10 s (`bench/record_kamailio_leak.py`, data in
//! `tests/data/`). `sipwatch leak analyze` must raise the leak well before Kamailio logged
//! `no more shm`, and must stay quiet on the same Kamailio with entries that expire (a pool that
//! fills a little and levels off), under the same load. Two recordings: 60 OPTIONS/s (the pool is
//! full in 37 minutes; detector time constants scaled to it) and 20 OPTIONS/s (full in 112
//! minutes; the default settings, as the agent runs them).

use std::process::Command;

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn analyze(file: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
        .args(["leak", "analyze", "--json", &data(file)])
        .args(extra)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// When a recording started and when Kamailio first logged `no more shm` (unix seconds), from its
/// metadata file.
fn recording(meta: &str) -> (f64, f64) {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data(meta)).unwrap()).unwrap();
    let started = meta["leak"]["started_at"].as_f64().unwrap();
    let exhausted = meta["leak"]["no_more_shm_at"]
        .as_f64()
        .expect("the recording reached `no more shm`");
    (started, exhausted)
}

#[test]
fn a_real_kamailio_shm_leak_is_raised_well_before_no_more_shm() {
    let (started, exhausted) = recording("kamailio-leak.json");
    let config = data("leak-10s.toml");
    let (code, v) = analyze(
        "kamailio-htable-leak-shm.csv",
        &["--limit", "64MiB", "--config", &config],
    );
    assert_eq!(code, 1, "exit 1 means leak: {v:#}");
    assert_eq!(v["verdict"], "leak");
    let detected = v["detected_at"].as_f64().unwrap();
    let run = exhausted - started;
    assert!(
        detected <= exhausted - 0.25 * run,
        "raised at +{:.0} s, `no more shm` at +{:.0} s: not well before",
        detected - started,
        run
    );
    assert!(v["slope_per_hour"].as_f64().unwrap() > 1e6, "{v:#}");

    // Summed PSS of the Kamailio processes grows at the same pace (the shared pool counted once);
    // without a limit the detector wants more evidence than this 37-minute recording holds.
    let (_, pss) = analyze("kamailio-htable-leak-pss.csv", &["--config", &config]);
    let shm_slope = v["slope_per_hour"].as_f64().unwrap();
    let pss_slope = pss["slope_per_hour"].as_f64().unwrap();
    assert!(
        (pss_slope - shm_slope).abs() < 0.2 * shm_slope,
        "PSS {pss_slope}/h vs shm {shm_slope}/h"
    );
}

#[test]
fn the_same_kamailio_without_the_leak_raises_nothing() {
    let config = data("leak-10s.toml");
    for file in ["kamailio-noleak-shm.csv", "kamailio-noleak-pss.csv"] {
        let (code, v) = analyze(file, &["--limit", "64MiB", "--config", &config]);
        assert_eq!(code, 0, "{file}: {v:#}");
        assert_eq!(v["verdict"], "no_leak", "{file}");
        assert_eq!(v["detected_at"], serde_json::Value::Null, "{file}");
    }
}

/// The 20 OPTIONS/s recording (`kamailio-slow-*`), analysed with the detector's defaults.
#[test]
fn a_two_hour_real_leak_is_raised_with_the_default_settings_and_its_control_is_not() {
    let (started, exhausted) = recording("kamailio-slow-leak.json");
    let run = exhausted - started;
    assert!(
        run > 5400.0,
        "a recording of {run:.0} s is not the slow one"
    );
    let (code, v) = analyze("kamailio-slow-htable-leak-shm.csv", &["--limit", "64MiB"]);
    assert_eq!(code, 1, "exit 1 means leak: {v:#}");
    assert_eq!(v["verdict"], "leak");
    let detected = v["detected_at"].as_f64().unwrap();
    assert!(
        detected <= exhausted - 0.25 * run,
        "raised at +{:.0} s, `no more shm` at +{:.0} s: not well before",
        detected - started,
        run
    );
    let (code, v) = analyze("kamailio-slow-noleak-shm.csv", &["--limit", "64MiB"]);
    assert_eq!(code, 0, "control: {v:#}");
    assert_eq!(v["verdict"], "no_leak");
    assert_eq!(v["detected_at"], serde_json::Value::Null);
}
