//! The Prometheus rules and the Grafana dashboard in `examples/` against what sipwatch serves:
//! `promtool check rules` and `promtool test rules` pass, and every `sipwatch_*` metric the rules
//! and the dashboard use has samples on the `/metrics` of a real daemon (probing a real Kamailio
//! over TLS and a dead port) or a real agent (watching this test process, with a stored leak
//! replayed at start). A renamed or misspelt metric fails here, not on a dashboard at 3 am.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    free_sip_port, http_get, make_tls, require, unix_now, wait_until_or, Daemon, Kamailio,
    KamailioSpec, ROUTE_OK,
};

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
}

/// Every `sipwatch_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("sipwatch_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let preceded_by_word =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded_by_word {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// The sample names (not HELP/TYPE lines) of a /metrics body.
fn served(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

fn promtool(args: &[&str]) -> (bool, String) {
    let promtool = require("promtool", "prometheus");
    let out = Command::new(promtool)
        .args(args)
        .current_dir(examples())
        .output()
        .expect("run promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn promtool_checks_and_tests_the_rules() {
    let (ok, out) = promtool(&["check", "rules", "prometheus-rules.yml"]);
    assert!(ok, "promtool check rules: {out}");
    let (ok, out) = promtool(&["test", "rules", "prometheus-rules.test.yml"]);
    assert!(ok, "promtool test rules: {out}");
}

/// The agent binary, killed on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_metric_of_the_rules_and_the_dashboard_is_served() {
    let rules = std::fs::read_to_string(examples().join("prometheus-rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(examples().join("grafana-dashboard.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let mut exprs = String::new();
    for panel in json["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push_str(target["expr"].as_str().unwrap_or_default());
            exprs.push('\n');
        }
    }
    let mut used = metric_names(&rules);
    let dashboard_names = metric_names(&exprs);
    assert!(dashboard_names.len() >= 15, "{dashboard_names:?}");
    used.extend(dashboard_names);

    // The daemon: a TLS Kamailio (certificate metrics) in a group, and a dead port (down).
    let dir = tempfile::tempdir().unwrap();
    let port = free_sip_port();
    let tls = make_tls(dir.path(), &["127.0.0.1"], 30);
    let mut spec = KamailioSpec::new(port, ROUTE_OK);
    spec.tls = Some(tls.clone());
    let _k = Kamailio::start(spec);
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let config = dir.path().join("sipwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[http]
listen = "{listen}"
[store]
path = "{store}"
[defaults]
interval = "300ms"
timeout = "250ms"
fail_threshold = 1
ok_threshold = 1
[[target]]
name = "edge-tls"
uri = "sip:127.0.0.1:{tls_port};transport=tls"
ca = "{ca}"
group = "edges"
[[target]]
name = "dead"
uri = "sip:127.0.0.1:{dead}"
group = "edges"
[[group]]
name = "edges"
min_up = 2
"#,
            store = dir.path().join("state.db").display(),
            tls_port = port + 1,
            ca = tls.ca.display(),
            dead = free_sip_port(),
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config, &listen, &dir.path().join("daemon.log"));

    // The agent: this test process, a memory limit, and six hours of a stored leak replayed.
    let agent_listen = format!("127.0.0.1:{}", free_sip_port());
    let state = dir.path().join("agent-state");
    let now = unix_now();
    let t0 = (now - 6.0 * 3600.0).floor();
    std::fs::create_dir_all(state.join("app")).unwrap();
    let mut history = String::new();
    let mut t = t0 + 30.0;
    while t < now - 5.0 {
        history.push_str(&format!("{t:.3} {}\n", (1e8 + 5000.0 * (t - t0)).round()));
        t += 10.0;
    }
    std::fs::write(state.join("app/grow.raw"), history).unwrap();
    let pidfile = dir.path().join("self.pid");
    std::fs::write(&pidfile, std::process::id().to_string()).unwrap();
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"
[agent]
listen = "{agent_listen}"
interval = "200ms"
state_dir = "{state}"
[[service]]
name = "app"
pidfile = "{pidfile}"
limit = "64GiB"
[[service.gauge]]
kind = "pss"
[[service.gauge]]
kind = "fds"
[[service.gauge]]
kind = "command"
name = "grow"
command = "echo $(( 100000000 + ($(date +%s) - {t0}) * 5000 ))"
limit = "300MB"
[[service]]
name = "ghost"
pidfile = "{dir}/ghost.pid"
"#,
            state = state.display(),
            pidfile = pidfile.display(),
            dir = dir.path().display(),
            t0 = t0 as u64,
        ),
    )
    .unwrap();
    let agent_log = dir.path().join("agent.log");
    let _agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_sipwatch"))
            .args(["agent", "-c"])
            .arg(&agent_config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&agent_log).unwrap())
            .spawn()
            .expect("start sipwatch agent"),
    );

    let scrape = |addr: &str| {
        http_get(addr, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    };
    let missing = || {
        let mut have = served(&scrape(&listen));
        have.extend(served(&scrape(&agent_listen)));
        used.iter()
            .filter(|name| !have.contains(*name))
            .cloned()
            .collect::<Vec<_>>()
    };
    wait_until_or(
        "every metric of the rules and the dashboard on /metrics",
        Duration::from_secs(60),
        || {
            format!(
                "missing: {:?}\ndaemon log:\n{}\nagent log:\n{}",
                missing(),
                daemon.log_text(),
                std::fs::read_to_string(&agent_log).unwrap_or_default()
            )
        },
        || missing().is_empty(),
    );
    // The daemon's new names carry what they promise.
    let body = scrape(&listen);
    assert!(
        body.contains(r#"sipwatch_node_up{target="dead",node="127.0.0.1:"#),
        "{body}"
    );
    let not_after: f64 = body
        .lines()
        .find(|l| l.starts_with(r#"sipwatch_cert_not_after_timestamp_seconds{target="edge-tls"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("cert notAfter sample");
    let days = (not_after - now) / 86400.0;
    assert!((29.9..31.1).contains(&days), "notAfter {days} days away");
}
