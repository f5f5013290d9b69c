//! `sipwatch run` against three real Kamailio instances forming a group: nodes going down after
//! the threshold, quorum kept then lost, incidents opened and resolved in the Statuspage feed and
//! Atom, recovery, state surviving a daemon restart without spurious transitions, SIGHUP reload,
//! a live `/metrics` scrape through `promtool`, and a flapping SIPp UAS.

mod common;

use std::time::Duration;

use common::*;

const INTERVAL_MS: u64 = 300;
const TIMEOUT_MS: u64 = 250;
const FAIL: u64 = 2;

fn config(dir: &std::path::Path, listen: &str, ports: &[u16], extra: &str) -> std::path::PathBuf {
    let mut cfg = format!(
        r#"[http]
listen = "{listen}"
[store]
path = "{db}"
[defaults]
interval = "{INTERVAL_MS}ms"
timeout = "{TIMEOUT_MS}ms"
fail_threshold = {FAIL}
ok_threshold = 2
[status]
page_name = "Test SIP"
[[group]]
name = "edges"
min_up = 2
"#,
        db = dir.join("state.db").display()
    );
    for (i, p) in ports.iter().enumerate() {
        cfg.push_str(&format!(
            "[[target]]\nname = \"k{}\"\nuri = \"sip:127.0.0.1:{p}\"\ngroup = \"edges\"\n",
            i + 1
        ));
    }
    cfg.push_str(extra);
    let path = dir.join("sipwatch.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn wait_status(d: &Daemon, what: &str, timeout: Duration, want: &[(&str, &str)]) {
    let mut last = serde_json::Value::Null;
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        last = d.json("/api/v2/components.json");
        if want.iter().all(|(n, s)| component_status(&last, n) == *s) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "timed out waiting for {what}: want {want:?}, have {last:#}\ndaemon log:\n{}",
        d.log_text()
    );
}

fn incident<'a>(incidents: &'a serde_json::Value, needle: &str) -> Option<&'a serde_json::Value> {
    incidents["incidents"]
        .as_array()?
        .iter()
        .find(|i| i["name"].as_str().unwrap_or("").contains(needle))
}

#[test]
fn group_of_three_kamailios_goes_down_and_recovers_with_incidents() {
    let ports = [free_sip_port(), free_sip_port(), free_sip_port()];
    let mut k: Vec<Option<Kamailio>> = ports
        .iter()
        .map(|p| Some(Kamailio::start(KamailioSpec::new(*p, ROUTE_OK))))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let cfg = config(dir.path(), &listen, &ports, "");
    let log = dir.path().join("daemon.log");
    let check = sipwatch(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
    let mut d = Daemon::start(&cfg, &listen, &log);

    let all_up = [
        ("k1", "operational"),
        ("k2", "operational"),
        ("k3", "operational"),
        ("edges", "operational"),
    ];
    wait_status(&d, "all up", Duration::from_secs(10), &all_up);
    let summary = d.json("/api/v2/summary.json");
    assert_eq!(summary["status"]["indicator"], "none");
    assert_eq!(summary["page"]["name"], "Test SIP");

    // One node down: after fail_threshold x interval + timeout it is down; quorum is kept.
    k[0].take().unwrap().stop();
    let bound = Duration::from_millis(FAIL * INTERVAL_MS + TIMEOUT_MS) + Duration::from_secs(2);
    wait_status(
        &d,
        "k1 down, group partial",
        bound,
        &[
            ("k1", "major_outage"),
            ("edges", "partial_outage"),
            ("k2", "operational"),
        ],
    );
    let incidents = d.json("/api/v2/incidents.json");
    let k1_incident =
        incident(&incidents, "k1").unwrap_or_else(|| panic!("no k1 incident: {incidents:#}"));
    assert_ne!(k1_incident["status"], "resolved");
    let (_, atom) = http_get(&listen, "/history.atom").unwrap();
    assert!(atom.contains("<feed") && atom.contains("k1"), "{atom}");
    // The page indicator follows the worst component: k1 (one node, all down) is a major outage.
    assert_eq!(
        d.json("/api/v2/summary.json")["status"]["indicator"],
        "critical"
    );

    // A second one: below quorum, the group is down and has its own incident.
    k[1].take().unwrap().stop();
    wait_status(
        &d,
        "group down",
        bound,
        &[("k2", "major_outage"), ("edges", "major_outage")],
    );
    let incidents = d.json("/api/v2/incidents.json");
    assert!(
        incident(&incidents, "edges").is_some(),
        "no group incident: {incidents:#}"
    );
    assert_eq!(
        d.json("/api/v2/summary.json")["status"]["indicator"],
        "critical"
    );

    // Metrics: a live scrape passes promtool and says what the page says.
    let (_, metrics) = http_get(&listen, "/metrics").unwrap();
    assert!(metrics.contains("sipwatch_probe_up{"), "{metrics}");
    assert!(
        metrics.contains("sipwatch_group_up{group=\"edges\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("sipwatch_probes_total{"));
    assert!(metrics.contains("sipwatch_probe_duration_seconds_bucket{"));
    assert_promtool_accepts(&metrics);

    // State survives a daemon restart: k1 and k2 stay down, no spurious recovery or new incident.
    let open_before = d.json("/api/v2/incidents/unresolved.json")["incidents"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0);
    assert_eq!(open_before, 3, "k1, k2 and the group have open incidents");
    assert_eq!(
        d.stop(),
        Some(0),
        "clean exit on SIGTERM\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let log_len = std::fs::read_to_string(&log).unwrap().len();
    let d2 = Daemon::start(&cfg, &listen, &log);
    let first = d2.json("/api/v2/components.json");
    assert_eq!(
        component_status(&first, "k1"),
        "major_outage",
        "restored at once: {first:#}"
    );
    assert_eq!(component_status(&first, "edges"), "major_outage");
    std::thread::sleep(Duration::from_millis(INTERVAL_MS * 4));
    let after = d2.json("/api/v2/components.json");
    assert_eq!(component_status(&after, "k1"), "major_outage");
    assert_eq!(component_status(&after, "k3"), "operational");
    let open_after = d2.json("/api/v2/incidents/unresolved.json")["incidents"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(open_after, open_before, "same open incidents after restart");
    let new_log = &std::fs::read_to_string(&log).unwrap()[log_len..];
    assert!(
        !new_log.contains("incident opened"),
        "no new incident after restart:\n{new_log}"
    );
    assert!(
        !new_log.contains("to=\"up\"") || !new_log.contains("k1"),
        "no spurious recovery:\n{new_log}"
    );

    // Both come back: everything recovers and the incidents resolve.
    k[0] = Some(Kamailio::start(KamailioSpec::new(ports[0], ROUTE_OK)));
    k[1] = Some(Kamailio::start(KamailioSpec::new(ports[1], ROUTE_OK)));
    wait_status(&d2, "all recovered", Duration::from_secs(10), &all_up);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let unresolved = d2.json("/api/v2/incidents/unresolved.json");
        if unresolved["incidents"]
            .as_array()
            .map(|a| a.is_empty())
            .unwrap_or(false)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "incidents still open: {unresolved:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let incidents = d2.json("/api/v2/incidents.json");
    assert_eq!(incident(&incidents, "k1").unwrap()["status"], "resolved");
    assert_eq!(incident(&incidents, "edges").unwrap()["status"], "resolved");

    // The status page a person reads, rendered by a real browser.
    let dom = chromium_dom(&format!("http://{listen}/"));
    for needle in [
        "Test SIP",
        "edges",
        "k1",
        "k2",
        "k3",
        &format!("127.0.0.1:{}", ports[0]),
    ] {
        assert!(dom.contains(needle), "status page lacks {needle:?}:\n{dom}");
    }
    assert!(dom.contains("<svg"), "no RTT chart on the page");
}

fn chromium_dom(url: &str) -> String {
    let chromium = require("chromium", "chromium");
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn sighup_adds_a_target_and_keeps_the_others_state() {
    let ports = [free_sip_port(), free_sip_port()];
    let _k: Vec<Kamailio> = ports
        .iter()
        .map(|p| Kamailio::start(KamailioSpec::new(*p, ROUTE_OK)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let cfg = config(dir.path(), &listen, &ports, "");
    let d = Daemon::start(&cfg, &listen, &dir.path().join("daemon.log"));
    wait_status(
        &d,
        "both up",
        Duration::from_secs(10),
        &[("k1", "operational"), ("k2", "operational")],
    );
    let p3 = free_sip_port();
    let _k3 = Kamailio::start(KamailioSpec::new(p3, ROUTE_OK));
    config(dir.path(), &listen, &[ports[0], ports[1], p3], "");
    d.signal(libc::SIGHUP);
    wait_status(
        &d,
        "k3 added",
        Duration::from_secs(10),
        &[("k3", "operational"), ("k1", "operational")],
    );
    assert!(d.log_text().contains("config reloaded"));
    // A broken config on SIGHUP is refused and the running one kept.
    std::fs::write(&cfg, "this is = = not toml").unwrap();
    d.signal(libc::SIGHUP);
    wait_until("the refusal in the log", Duration::from_secs(5), || {
        d.log_text().contains("config reload refused")
    });
    let c = d.json("/api/v2/components.json");
    assert_eq!(component_status(&c, "k3"), "operational");
}

const UAS_SOMETIMES: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answers late half of the time">
  <recv request="OPTIONS" />
  <pause distribution="uniform" min="0" max="800"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]f[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"#;

#[test]
fn an_intermittent_node_is_detected_as_flapping() {
    let port = free_sip_port();
    let dir = tempfile::tempdir().unwrap();
    let _uas = sipp_uas(dir.path(), port, UAS_SOMETIMES);
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let cfg = dir.path().join("sipwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[http]
listen = "{listen}"
[store]
path = "{}"
[defaults]
flap_window = "60s"
flap_max_changes = 3
[[target]]
name = "flappy"
uri = "sip:127.0.0.1:{port}"
interval = "400ms"
timeout = "400ms"
fail_threshold = 1
ok_threshold = 1
"#,
            dir.path().join("state.db").display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &listen, &dir.path().join("daemon.log"));
    // Half the answers come after the 400 ms timeout: with thresholds of 1 the node changes state
    // about every other probe; more than 3 changes in 60 s is flapping. Generous deadline: a busy
    // machine slows SIPp too.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        // The log says it at once; the page and feeds follow with the next snapshot (each second).
        let (_, page) = http_get(&listen, "/").unwrap();
        let s = d.json("/api/v2/components.json");
        if d.log_text().contains("node is flapping")
            && page.contains("flapping</")
            && component_status(&s, "flappy") != "operational"
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no flapping seen:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bad_configs_are_explained_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[http]\nlisten = \"127.0.0.1:9\"\n[store]\npath = \"x.db\"\n[[target]]\nname = \"a\"\nuri = \"sip:127.0.0.1\"\ngroup = \"g\"\n[[group]]\nname = \"g\"\nmin_up = 1\n";
    let cases = [
        (
            base.replace("name = \"a\"", "name = \"a\"\ncolour = \"red\""),
            "sipwatch.toml:7:1: unknown field `colour`",
        ),
        (
            base.replace(
                "uri = \"sip:127.0.0.1\"",
                "uri = \"sip:127.0.0.1\"\ninterval = \"5\"",
            ),
            "target \"a\": interval: duration \"5\" has no unit; write \"5s\"",
        ),
        (
            format!("{base}[[target]]\nname = \"a\"\nuri = \"sip:127.0.0.2\"\n"),
            "duplicate target \"a\" (first defined at line 6)",
        ),
        (
            base.replace("min_up = 1", "min_up = 2"),
            "group \"g\": min_up = 2 but it has only 1 member target(s)",
        ),
        (
            base.replace("uri = \"sip:127.0.0.1\"", "uri = \"http://x\""),
            "is not a SIP URI",
        ),
    ];
    for (text, needle) in cases {
        let path = dir.path().join("sipwatch.toml");
        std::fs::write(&path, &text).unwrap();
        let out = sipwatch(&["check-config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{text}\n{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
        assert!(
            err.contains("sipwatch.toml:"),
            "errors name the file and line: {err}"
        );
        // `run` refuses the same config with the same words.
        let out = sipwatch(&["run", "-c", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle));
    }
}

#[test]
fn a_node_going_down_fires_in_alertmanager_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let alertmanager = Alertmanager::start();
    let am_port = alertmanager.port;
    let kport = free_sip_port();
    let k = Kamailio::start(KamailioSpec::new(kport, ROUTE_OK));
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let cfg = dir.path().join("sipwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[http]
listen = "{listen}"
[store]
path = "{}"
[alerting]
source = "prober-a"
[[alerting.receiver]]
name = "am"
kind = "alertmanager"
url = "http://127.0.0.1:{am_port}"
[[target]]
name = "edge"
uri = "sip:127.0.0.1:{kport}"
interval = "300ms"
timeout = "250ms"
fail_threshold = 2
ok_threshold = 2
"#,
            dir.path().join("state.db").display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &listen, &dir.path().join("daemon.log"));
    wait_status(
        &d,
        "edge up",
        Duration::from_secs(10),
        &[("edge", "operational")],
    );
    drop(k);
    let am = format!("127.0.0.1:{am_port}");
    let mut seen = serde_json::Value::Null;
    let log = d.log.clone();
    wait_until_or(
        "the SipNodeDown alert in Alertmanager",
        Duration::from_secs(20),
        || std::fs::read_to_string(&log).unwrap_or_default(),
        || {
            let (_, body) = http_get(&am, "/api/v2/alerts").unwrap();
            seen = serde_json::from_str(&body).unwrap_or_default();
            seen.as_array().is_some_and(|a| {
                a.iter().any(|x| {
                    x["labels"]["alertname"] == "SipNodeDown"
                        && x["labels"]["target"] == "edge"
                        && x["labels"]["node"] == format!("127.0.0.1:{kport}").as_str()
                        && x["status"]["state"] == "active"
                })
            })
        },
    );
    let _k2 = Kamailio::start(KamailioSpec::new(kport, ROUTE_OK));
    wait_until(
        "the alert to resolve in Alertmanager",
        Duration::from_secs(20),
        || {
            let (_, body) = http_get(&am, "/api/v2/alerts?active=true").unwrap();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            v.as_array()
                .is_some_and(|a| !a.iter().any(|x| x["labels"]["alertname"] == "SipNodeDown"))
        },
    );
    assert!(d.log_text().contains("alert delivered"), "{}", d.log_text());
}

#[test]
fn an_unwritable_store_is_reported_loudly_while_probing_goes_on() {
    let kport = free_sip_port();
    let _k = Kamailio::start(KamailioSpec::new(kport, ROUTE_OK));
    let dir = tempfile::tempdir().unwrap();
    // The store's directory is a regular file: nothing can be created there, even by root.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let cfg = dir.path().join("sipwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"{listen}\"\n[store]\npath = \"{}\"\n[[target]]\nname = \"k\"\nuri = \"sip:127.0.0.1:{kport}\"\ninterval = \"300ms\"\ntimeout = \"250ms\"\n",
            blocker.join("state.db").display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &listen, &dir.path().join("daemon.log"));
    wait_until(
        "probes counted while the store is broken",
        Duration::from_secs(10),
        || {
            let (_, m) = http_get(&listen, "/metrics").unwrap();
            m.lines().any(|l| {
                l.starts_with("sipwatch_probes_total{")
                    && l.contains("result=\"ok\"")
                    && !l.ends_with(" 0")
            })
        },
    );
    let (_, m) = http_get(&listen, "/metrics").unwrap();
    assert!(m.contains("sipwatch_store_ok 0"), "{m}");
    let (_, health) = http_get(&listen, "/healthz").unwrap();
    assert!(health.contains("store: error"), "{health}");
    let (_, page) = http_get(&listen, "/").unwrap();
    assert!(
        page.to_lowercase().contains("store"),
        "the page shows the store problem"
    );
    assert!(d.log_text().contains("store"), "{}", d.log_text());
}
