//! The manual: man pages and shell completions written from the clap definitions
//! (`sipwatch generate`), and the `run`/`agent`/`probe` help texts that explain signals,
//! `SIPWATCH_LOG`, files and exit codes.

mod common;

use common::{describe, sipwatch};

#[test]
fn man_pages_are_written_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = sipwatch(&["generate", "man", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    for page in [
        "sipwatch.1",
        "sipwatch-probe.1",
        "sipwatch-run.1",
        "sipwatch-agent.1",
        "sipwatch-check-config.1",
        "sipwatch-leak-analyze.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: not roff"
        );
    }
    let run = std::fs::read_to_string(dir.path().join("sipwatch-run.1")).unwrap();
    assert!(
        run.contains("SIGHUP") && run.contains("SIPWATCH_LOG"),
        "{run}"
    );
    let probe = std::fs::read_to_string(dir.path().join("sipwatch-probe.1")).unwrap();
    assert!(
        probe.contains("UNKNOWN") && probe.contains("\\-\\-warn\\-rtt"),
        "{probe}"
    );
}

#[test]
fn completions_know_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = sipwatch(&["generate", "completion", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", describe(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        for word in ["probe", "check-config", "warn-rtt"] {
            assert!(text.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = sipwatch(&["generate", "completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

#[test]
fn run_agent_and_probe_help_explain_signals_environment_files_and_exit_codes() {
    for (cmd, needles) in [
        (
            "run",
            &[
                "SIGHUP",
                "SIGTERM",
                "SIPWATCH_LOG",
                "/var/lib/sipwatch/state.db",
                "Exit codes",
                "8479",
            ][..],
        ),
        (
            "agent",
            &[
                "SIGTERM",
                "SIPWATCH_LOG",
                "/var/lib/sipwatch/agent",
                "Exit codes",
                "9198",
            ][..],
        ),
        (
            "probe",
            &["Exit codes", "UNKNOWN", "perf", "SIPWATCH_PASSWORD"][..],
        ),
    ] {
        let out = sipwatch(&[cmd, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        for needle in needles {
            assert!(
                text.contains(needle),
                "{cmd} --help lacks {needle}:\n{text}"
            );
        }
    }
}

/// The demo installs what it runs (Kamailio with TLS, openssl, curl, python3) and nothing the
/// tests alone need (Chromium, Prometheus, Alertmanager, SIPp, ...), and says what the long
/// release build is doing.
#[test]
fn the_demo_installs_only_what_it_runs() {
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo.sh"))
        .expect("examples/demo.sh");
    let install = script
        .lines()
        .find(|l| l.trim_start().starts_with("tests/install-deps.sh"))
        .expect("the demo installs its packages through tests/install-deps.sh");
    let packages: Vec<&str> = install.split_whitespace().skip(1).collect();
    assert_eq!(
        packages,
        [
            "kamailio",
            "kamailio-tls-modules",
            "openssl",
            "curl",
            "python3"
        ],
        "{install}"
    );
    for used in ["kamailio", "tls.so", "openssl req", "curl ", "python3 "] {
        assert!(script.contains(used), "the demo no longer uses {used}");
    }
    let build = script
        .lines()
        .position(|l| l.trim_start().starts_with("cargo build --release"))
        .expect("release build");
    let before: Vec<&str> = script.lines().take(build).collect();
    assert!(
        before.last().is_some_and(|l| l.contains("echo")),
        "the build is announced"
    );
    assert!(
        !script.lines().nth(build).unwrap().contains(" -q"),
        "cargo shows its progress"
    );
}
