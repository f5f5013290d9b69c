//! `check_config` as a user meets it: the example config is valid, and a broken file gets every
//! problem listed with `file:line:col`, what is wrong and the fix.

use std::path::Path;

use sipwatch::agent::check_config;
use sipwatch::agent::config::{Finder, GaugeSpec, MemoryKind};

#[test]
fn the_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agent.toml");
    let config = check_config(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen.to_string(), "127.0.0.1:9198");
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["kamailio", "webbridge", "recorder"]);
    let kamailio = &config.services[0];
    assert!(matches!(&kamailio.finder, Finder::SystemdUnit(u) if u == "kamailio.service"));
    assert!(matches!(
        kamailio.gauges[0].spec,
        GaugeSpec::Memory(MemoryKind::Pss)
    ));
    assert_eq!(kamailio.gauges[0].limit, Some(1024.0 * 1024.0 * 1024.0));
    let recorder = &config.services[2];
    assert_eq!(recorder.interval.as_secs(), 30);
    assert!(
        !recorder
            .gauges
            .iter()
            .find(|g| g.name == "queue")
            .unwrap()
            .detect
    );
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        r#"[agent]
listen = "localhost"

[[service]]
name = "kamailio"
process = "kamailio"
pidfile = "/run/kamailio.pid"

[[service.gauge]]
kind = "kamailio_shm"

[[service.gauge]]
kind = "log_regex"
file = "/var/log/x.log"
regex = 'Stats (\d+'

[[service]]
name = "kamailio"
cmdline = "x"
"#,
    )
    .unwrap();
    let err = check_config(&path).unwrap_err();
    let text = err.to_string();
    let file = path.display().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].starts_with(&format!(
            "config error at {file}:2:10: listen = \"localhost\""
        )),
        "{text}"
    );
    assert!(lines[0].contains("write e.g. \"127.0.0.1:9198\""));
    assert!(
        lines[1].starts_with(&format!("config error at {file}:7:11:"))
            && lines[1].contains("keep exactly one"),
        "{text}"
    );
    assert!(
        lines[2].contains(":9:1:") && lines[2].contains("needs url"),
        "{text}"
    );
    assert!(
        lines[3].contains(":15:9:") && lines[3].contains("regex is not valid"),
        "{text}"
    );
    assert!(
        lines[4].contains(":18:8:") && lines[4].contains("two services are named \"kamailio\""),
        "{text}"
    );
}

#[test]
fn syntax_and_unit_errors_point_at_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "[[service]]\nname = \"a\"\nprocess = \"a\"\ninterval = \"30 sec\"\n",
    )
    .unwrap();
    let text = check_config(&path).unwrap_err().to_string();
    assert!(
        text.contains(":4:12:") && text.contains("unknown unit \"sec\""),
        "{text}"
    );

    std::fs::write(
        &path,
        "[[service]]\nname = \"a\"\nprocess = \"a\"\n[service.restart]\nat = \"Mon 04:00\"\n",
    )
    .unwrap();
    let text = check_config(&path).unwrap_err().to_string();
    assert!(
        text.contains(":5:") && text.contains("unknown field `at`"),
        "{text}"
    );

    let missing = check_config(&dir.path().join("nope.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("cannot read the file") && missing.contains("nope.toml"),
        "{missing}"
    );
}
