//! `sipwatch restart plan --at TIME`: how a person checks a schedule and its windows before
//! trusting them, including the days clocks change (Europe/Zurich, 2026: spring forward on
//! 29 March at 02:00, fall back on 25 October at 03:00).

use std::process::Command;

fn plan(config: &std::path::Path, at: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
        .args(["restart", "plan", "--json", "--at", at, "-c"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["services"][0].clone()
}

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"[agent]
state_dir = "{}"
[[service]]
name = "kamailio"
pidfile = "/run/kamailio/kamailio.pid"
[service.restart]
schedule = "daily 02:30 Europe/Zurich"
windows = ["daily 02:00-04:00 Europe/Zurich"]
cooldown = "1h"
method = "command"
command = ["/usr/sbin/kamctl", "restart"]
"#,
            dir.join("state").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn plan_at_a_spring_forward_day() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    // 01:30 CET: 02:30 does not exist today; the restart runs once, at 03:00 CEST (01:00 UTC).
    let p = plan(&c, "2026-03-29T00:30:00Z");
    assert_eq!(p["service"], "kamailio");
    assert_eq!(p["next_scheduled"], "2026-03-29T01:00:00.000Z", "{p}");
    assert_eq!(p["window_open"], false, "{p}");
    assert_eq!(p["would_restart_now"], false, "{p}");
    assert!(p["why"].as_str().unwrap().starts_with("window"), "{p}");
    // 03:30 CEST: inside the window (which opened at the jump).
    let p = plan(&c, "2026-03-29T01:30:00+00:00");
    assert_eq!(p["window_open"], true, "{p}");
    assert_eq!(p["would_restart_now"], true, "{p}");
    assert_eq!(
        p["next_scheduled"], "2026-03-30T00:30:00.000Z",
        "02:30 CEST the next day: {p}"
    );
}

#[test]
fn plan_at_a_fall_back_day_and_bad_times() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    // 02:30 happens twice on 25 October; the schedule runs at the first (00:30 UTC) only.
    let p = plan(&c, "2026-10-24T23:00:00Z");
    assert_eq!(p["next_scheduled"], "2026-10-25T00:30:00.000Z", "{p}");
    let p = plan(&c, "2026-10-25T00:31:00Z");
    assert_eq!(
        p["next_scheduled"], "2026-10-26T01:30:00.000Z",
        "not the second 02:30: {p}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
        .args(["restart", "plan", "--at", "tomorrow", "-c"])
        .arg(&c)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
    // Human output names the service and what it would do.
    let out = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
        .args(["restart", "plan", "--at", "2026-03-29T01:30:00Z", "-c"])
        .arg(&c)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "kamailio: next scheduled 2026-03-30T00:30:00.000Z; window open; would restart now"
        ),
        "{text}"
    );
}

#[test]
fn restart_config_errors_name_the_line_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "[[service]]\nname = \"k\"\nprocess = \"k\"\n[service.restart]\nthreshold = \"shm > 85% for 2m\"\nmax_restarts = \"3/day\"\nwindows = [\"Mon 01:00\"]\nmethod = \"systemd\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("agent.toml:5:") && e.contains("has no gauge \"shm\""),
        "{e}"
    );
    assert!(
        e.contains("agent.toml:6:") && e.contains("\"3 per 1d\""),
        "{e}"
    );
    assert!(
        e.contains("agent.toml:7:") && e.contains("no end time"),
        "{e}"
    );
    assert!(
        e.contains("agent.toml:8:") && e.contains("systemd_unit"),
        "{e}"
    );
}

#[test]
fn the_readme_example_and_examples_agent_toml_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let section = readme
        .split("## The restart watchdog")
        .nth(1)
        .expect("the README documents the watchdog");
    let block = section
        .split("```toml")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        format!("[agent]\nstate_dir = \"{}\"\n{block}", dir.path().display()),
    )
    .unwrap();
    for file in [
        path,
        std::path::PathBuf::from(format!("{root}/examples/agent.toml")),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
