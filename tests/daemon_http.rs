//! The daemon's HTTP surface as its users meet it: the router on a loopback port with a fabricated
//! snapshot and a fake history; JSON feeds checked field by field, the Atom feed parsed strictly,
//! `/metrics` checked by `promtool check metrics`, and `/` rendered by headless Chromium.
//!
//! Needs Debian's `prometheus` (promtool) and `chromium` (see tests/packages.txt); a missing one
//! fails the test with the command that installs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quick_xml::events::Event;
use serde_json::Value;
use sipwatch::daemon::history::History;
use sipwatch::daemon::http::{router, HttpState};
use sipwatch::daemon::metrics::Metrics;
use sipwatch::daemon::model::{
    ComponentStatus, GroupState, GroupView, Incident, IncidentUpdate, NodeState, NodeView,
    Observation, Snapshot, TargetView, UnixTime,
};
use sipwatch_probes::outcome::{ResultKind, Status};
use sipwatch_test_support::{promtool_check_metrics, unix_now as now};
use tokio::sync::watch;

const DAY: f64 = 86400.0;

fn node(addr: &str, transport: &str, state: NodeState, since: UnixTime) -> NodeView {
    let (status, result, code, rtt, reason) = match state {
        NodeState::Down => (
            Status::Critical,
            ResultKind::Timeout,
            None,
            None,
            "no answer within 2s",
        ),
        NodeState::Degraded => (
            Status::Warning,
            ResultKind::ErrorResponse,
            Some(503),
            Some(4.2),
            "Service Unavailable",
        ),
        _ => (Status::Ok, ResultKind::Ok, Some(200), Some(1.8), "OK"),
    };
    NodeView {
        node: addr.to_owned(),
        transport: transport.to_owned(),
        state,
        since,
        flapping: false,
        consecutive_failures: u32::from(state == NodeState::Down) * 5,
        consecutive_successes: u32::from(state == NodeState::Up) * 12,
        last: Some(Observation {
            at: since + 30.0,
            status,
            result,
            code,
            rtt_ms: rtt,
            reason: reason.to_owned(),
            cert_days_left: (transport == "tls").then_some(41),
        }),
    }
}

fn target(
    name: &str,
    group: Option<&str>,
    status: ComponentStatus,
    nodes: Vec<NodeView>,
) -> Arc<TargetView> {
    Arc::new(TargetView {
        name: name.to_owned(),
        uri: format!("sip:{name}.voice.example.net"),
        method: "OPTIONS".to_owned(),
        group: group.map(str::to_owned),
        nodes,
        status,
        in_maintenance: false,
        dns_error: None,
    })
}

fn open_incident(t: UnixTime) -> Incident {
    Incident {
        id: 42,
        key: "target:rec-3".to_owned(),
        title: "rec-3 is not answering OPTIONS".to_owned(),
        impact: ComponentStatus::MajorOutage,
        opened_at: t - 1800.0,
        resolved_at: None,
        affected: vec!["rec-3 10.0.0.3:5060".to_owned()],
        updates: vec![IncidentUpdate {
            at: t - 1800.0,
            status: "investigating".to_owned(),
            body: "10.0.0.3:5060: no answer within 2s (5 in a row)".to_owned(),
        }],
    }
}

fn past_incident(t: UnixTime) -> Incident {
    Incident {
        id: 41,
        key: "target:edge <&> proxy".to_owned(),
        title: "edge <&> proxy: TLS handshake failures".to_owned(),
        impact: ComponentStatus::PartialOutage,
        opened_at: t - 2.0 * DAY,
        resolved_at: Some(t - 2.0 * DAY + 900.0),
        affected: vec!["edge <&> proxy 192.0.2.10:5061".to_owned()],
        updates: vec![
            IncidentUpdate {
                at: t - 2.0 * DAY,
                status: "investigating".to_owned(),
                body: "192.0.2.10:5061: handshake failed: \"unknown ca\"".to_owned(),
            },
            IncidentUpdate {
                at: t - 2.0 * DAY + 900.0,
                status: "resolved".to_owned(),
                body: "answering again".to_owned(),
            },
        ],
    }
}

fn snapshot(t: UnixTime) -> Snapshot {
    Snapshot {
        generated_at: t,
        page_name: "ACME Voice <ops>".to_owned(),
        targets: vec![
            target(
                "rec-1",
                Some("recorders"),
                ComponentStatus::Operational,
                vec![node("10.0.0.1:5060", "udp", NodeState::Up, t - 3.0 * DAY)],
            ),
            target(
                "rec-2",
                Some("recorders"),
                ComponentStatus::DegradedPerformance,
                vec![node("10.0.0.2:5060", "udp", NodeState::Degraded, t - 600.0)],
            ),
            target(
                "rec-3",
                Some("recorders"),
                ComponentStatus::MajorOutage,
                vec![node("10.0.0.3:5060", "udp", NodeState::Down, t - 1800.0)],
            ),
            target(
                "edge <&> proxy",
                None,
                ComponentStatus::Operational,
                vec![
                    node(
                        "192.0.2.10:5061",
                        "tls",
                        NodeState::Up,
                        t - 2.0 * DAY + 900.0,
                    ),
                    node("192.0.2.11:5061", "tls", NodeState::Up, t - 5.0 * DAY),
                ],
            ),
        ],
        groups: vec![GroupView {
            name: "recorders".to_owned(),
            min_up: 2,
            members: vec!["rec-1".to_owned(), "rec-2".to_owned(), "rec-3".to_owned()],
            serving: 2,
            state: GroupState::Degraded,
            status: ComponentStatus::PartialOutage,
            in_maintenance: false,
        }],
        open_incidents: vec![open_incident(t)],
        store_error: Some("attempt to write a readonly database".to_owned()),
        agents: Vec::new(),
        ..Default::default()
    }
}

/// Answers like the SQLite store would for the fabricated snapshot, and records what it was asked.
struct FakeHistory {
    now: UnixTime,
    windows: Mutex<Vec<(String, f64)>>,
}

impl History for FakeHistory {
    fn uptime(&self, target: &str, since: UnixTime) -> Result<Option<f64>, String> {
        let window = self.now - since;
        if let Ok(mut w) = self.windows.lock() {
            w.push((target.to_owned(), window));
        }
        // Distinct answers per window, so the page proves it asked for 24 h and 7 d.
        Ok(Some(if window < 2.0 * DAY { 0.9987 } else { 0.95 }))
    }

    fn rtt_series(&self, target: &str, since: UnixTime) -> Result<Vec<(UnixTime, f64)>, String> {
        let base = if target == "rec-2" { 12.0 } else { 2.0 };
        // One point per minute over the last 24 h, with a gap of two hours around 6 h ago.
        Ok((0..1440)
            .map(|i| (since + 60.0 * f64::from(i), base + f64::from(i % 30) / 10.0))
            .filter(|(at, _)| (self.now - at - 6.0 * 3600.0).abs() > 3600.0)
            .collect())
    }

    fn incidents(&self, since: UnixTime, limit: usize) -> Result<Vec<Incident>, String> {
        // The store also holds the open incident; the HTTP layer must not list it twice.
        let mut all = vec![open_incident(self.now), past_incident(self.now)];
        all.retain(|i| i.opened_at >= since || i.resolved_at.is_some_and(|r| r >= since));
        all.truncate(limit);
        Ok(all)
    }
}

struct Server {
    addr: SocketAddr,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    history: Arc<FakeHistory>,
    t: UnixTime,
}

async fn start() -> Server {
    let t = now();
    let (snapshot_tx, snapshot) = watch::channel(Arc::new(snapshot(t)));
    let metrics = Arc::new(Metrics::new());
    metrics.probe_finished("rec-1", "ok", Some(0.0018));
    metrics.probe_finished("rec-3", "timeout", None);
    metrics.probe_finished("edge <&> proxy", "ok", Some(0.0213));
    metrics.set_target_up("rec-1", Some("recorders"), true);
    metrics.set_target_up("rec-3", Some("recorders"), false);
    metrics.set_target_up("edge <&> proxy", None, true);
    metrics.set_group_up("recorders", true);
    metrics.set_cert_expiry("edge <&> proxy", 41.0 * DAY);
    metrics.store_error();
    metrics.set_store_ok(false);
    metrics.probe_lateness(0.003);
    metrics.set_targets(4);
    metrics.set_node_counts(&[
        (NodeState::Up, 3),
        (NodeState::Degraded, 1),
        (NodeState::Down, 1),
    ]);
    let history = Arc::new(FakeHistory {
        now: t,
        windows: Mutex::new(Vec::new()),
    });
    let state = HttpState {
        snapshot,
        metrics,
        history: history.clone(),
        page_history: Default::default(),
        agents: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, router(state)).await.expect("serve");
    });
    Server {
        addr,
        snapshot_tx,
        history,
        t,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn get(server: &Server, path: &str) -> reqwest::Response {
    client()
        .get(format!("http://{}{path}", server.addr))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

async fn get_json(server: &Server, path: &str) -> Value {
    let resp = get(server, path).await;
    assert_eq!(resp.status(), 200, "{path}");
    let ct = resp.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("application/json"), "{path}: {ct}");
    resp.json()
        .await
        .unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

fn component<'a>(components: &'a Value, name: &str) -> &'a Value {
    components
        .as_array()
        .expect("components array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name} in {components}"))
}

#[tokio::test]
async fn statuspage_json_feeds() {
    let server = start().await;
    let summary = get_json(&server, "/api/v2/summary.json").await;
    let page = &summary["page"];
    assert_eq!(page["name"], "ACME Voice <ops>");
    assert_eq!(page["url"], format!("http://{}/", server.addr));
    assert_eq!(page["time_zone"], "Etc/UTC");
    assert!(page["id"].as_str().is_some_and(|id| id.len() == 12));
    assert!(page["updated_at"]
        .as_str()
        .is_some_and(|s| s.ends_with('Z')));
    assert_eq!(summary["status"]["indicator"], "critical");
    assert_eq!(summary["status"]["description"], "Major System Outage");

    let comps = &summary["components"];
    assert_eq!(comps.as_array().map(Vec::len), Some(5));
    let group = component(comps, "recorders");
    assert_eq!(group["group"], true);
    assert_eq!(group["status"], "partial_outage");
    assert_eq!(group["description"], "2 of 3 up, min 2");
    let member_ids = group["components"].as_array().expect("member ids");
    for (i, name) in ["rec-1", "rec-2", "rec-3"].iter().enumerate() {
        let c = component(comps, name);
        assert_eq!(c["group_id"], group["id"], "{name}");
        assert_eq!(member_ids[i], c["id"], "{name}");
        assert_eq!(c["position"], i + 1);
    }
    assert_eq!(component(comps, "rec-2")["status"], "degraded_performance");
    assert_eq!(component(comps, "rec-3")["status"], "major_outage");
    let edge = component(comps, "edge <&> proxy");
    assert_eq!(edge["group_id"], Value::Null);
    assert_eq!(edge["group"], false);
    assert_eq!(edge["status"], "operational");
    for c in comps.as_array().expect("array") {
        for k in [
            "id",
            "name",
            "status",
            "created_at",
            "updated_at",
            "page_id",
        ] {
            assert!(c[k].is_string(), "{k} of {c}");
        }
        assert!(c["position"].is_u64(), "{c}");
        assert_eq!(c["only_show_if_degraded"], false);
        assert_eq!(c["page_id"], page["id"]);
    }

    let open = summary["incidents"].as_array().expect("incidents");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["name"], "rec-3 is not answering OPTIONS");
    assert_eq!(open[0]["status"], "investigating");
    assert_eq!(open[0]["impact"], "critical");
    assert_eq!(open[0]["components"][0]["name"], "rec-3");
    assert_eq!(
        open[0]["incident_updates"][0]["body"],
        "10.0.0.3:5060: no answer within 2s (5 in a row)"
    );

    // Ids are derived from names: the same on every request and every daemon.
    let components = get_json(&server, "/api/v2/components.json").await;
    assert_eq!(&components["components"], comps);
    assert_eq!(components["page"]["id"], page["id"]);

    let incidents = get_json(&server, "/api/v2/incidents.json").await;
    let list = incidents["incidents"].as_array().expect("incidents");
    let names: Vec<&str> = list.iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "rec-3 is not answering OPTIONS",
            "edge <&> proxy: TLS handshake failures"
        ]
    );
    let past = &list[1];
    assert_eq!(past["status"], "resolved");
    assert_eq!(past["impact"], "major");
    assert!(past["resolved_at"].is_string());
    assert_eq!(past["incident_updates"][0]["status"], "resolved");
    assert_eq!(past["incident_updates"].as_array().map(Vec::len), Some(2));
    assert_eq!(past["components"][0]["name"], "edge <&> proxy");
    assert!(past["shortlink"]
        .as_str()
        .is_some_and(|s| s.starts_with(&format!("http://{}/#incident-", server.addr))));

    let unresolved = get_json(&server, "/api/v2/incidents/unresolved.json").await;
    assert_eq!(unresolved["incidents"].as_array().map(Vec::len), Some(1));
    let status = get_json(&server, "/api/v2/status.json").await;
    assert_eq!(status["status"], summary["status"]);
}

#[tokio::test]
async fn feeds_follow_the_published_snapshot() {
    let server = start().await;
    let before = get_json(&server, "/api/v2/status.json").await;
    assert_eq!(before["status"]["indicator"], "critical");
    let mut healed = snapshot(server.t + 60.0);
    for t in &mut healed.targets {
        Arc::make_mut(t).status = ComponentStatus::Operational;
    }
    healed.groups[0].status = ComponentStatus::Operational;
    healed.open_incidents.clear();
    server
        .snapshot_tx
        .send(Arc::new(healed))
        .expect("receiver alive");
    let after = get_json(&server, "/api/v2/status.json").await;
    assert_eq!(after["status"]["indicator"], "none");
    assert_eq!(after["status"]["description"], "All Systems Operational");
    let unresolved = get_json(&server, "/api/v2/incidents/unresolved.json").await;
    assert_eq!(unresolved["incidents"], Value::Array(vec![]));
}

/// The text of every element on `path` (e.g. `feed/entry/title`), from a strict parse.
fn parse_atom(xml: &str) -> HashMap<String, Vec<String>> {
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<String> = Vec::new();
    let mut texts: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = String::new();
    let mut saw_root = false;
    loop {
        match reader.read_event() {
            Err(e) => panic!(
                "Atom is not well-formed at {}: {e}\n{xml}",
                reader.error_position()
            ),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) if stack.is_empty() && !saw_root => {
                saw_root = true;
                assert_eq!(e.name().as_ref(), "feed");
                let ns = e
                    .try_get_attribute("xmlns")
                    .expect("attributes parse")
                    .expect("xmlns on feed");
                assert_eq!(ns.value.as_ref(), "http://www.w3.org/2005/Atom");
                stack.push("feed".to_owned());
            }
            Ok(Event::Start(e)) => {
                assert!(!stack.is_empty(), "element after the root");
                for a in e.attributes() {
                    a.expect("attribute well-formed");
                }
                stack.push(e.name().as_ref().to_owned());
                current.clear();
            }
            Ok(Event::Empty(e)) => {
                for a in e.attributes() {
                    a.expect("attribute well-formed");
                }
                let mut path = stack.join("/");
                path.push('/');
                path.push_str(e.name().as_ref());
                texts.entry(path).or_default().push(String::new());
            }
            Ok(Event::Text(t)) => {
                let s = t.xml10_content();
                assert!(
                    !s.chars().any(|c| c.is_control() && !"\t\n\r".contains(c)),
                    "control character in {s:?}"
                );
                current.push_str(&s);
            }
            Ok(Event::GeneralRef(r)) => match r.resolve_char_ref().expect("valid char ref") {
                Some(c) => current.push(c),
                None => current.push_str(match r.xml10_content().as_ref() {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    "apos" => "'",
                    other => panic!("undefined entity &{other};"),
                }),
            },
            Ok(Event::End(_)) => {
                let path = stack.join("/");
                texts
                    .entry(path)
                    .or_default()
                    .push(std::mem::take(&mut current));
                stack.pop();
            }
            Ok(Event::Decl(_)) | Ok(Event::Comment(_)) => {}
            Ok(other) => panic!("unexpected XML event {other:?}"),
        }
    }
    assert!(saw_root && stack.is_empty(), "unbalanced document");
    texts
}

#[tokio::test]
async fn atom_feed_is_well_formed_and_escaped() {
    let server = start().await;
    let resp = get(&server, "/history.atom").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/atom+xml; charset=utf-8"
    );
    let xml = resp.text().await.expect("body");
    let atom = parse_atom(&xml);
    let one = |path: &str| -> &str {
        let v = atom.get(path).unwrap_or_else(|| panic!("no {path}"));
        assert_eq!(v.len(), 1, "{path}: {v:?}");
        &v[0]
    };
    assert_eq!(one("feed/title"), "ACME Voice <ops> incidents");
    assert!(one("feed/id").starts_with("tag:sipwatch,"));
    assert!(one("feed/updated").ends_with('Z'));
    assert_eq!(one("feed/author/name"), "sipwatch");
    assert_eq!(
        atom["feed/entry/title"],
        [
            "[Investigating] rec-3 is not answering OPTIONS",
            "[Resolved] edge <&> proxy: TLS handshake failures"
        ]
    );
    let ids = &atom["feed/entry/id"];
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert_eq!(atom["feed/entry/updated"].len(), 2);
    assert_eq!(atom["feed/entry/link"].len(), 2);
    // Content is HTML, escaped once for HTML inside the XML escaping.
    let content = &atom["feed/entry/content"][1];
    assert!(
        content.contains("handshake failed: &quot;unknown ca&quot;"),
        "{content}"
    );
    assert!(content.contains("<b>Resolved</b>"), "{content}");
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let server = start().await;
    let resp = get(&server, "/metrics").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = resp.text().await.expect("body");
    let (ok, msg) = promtool_check_metrics(&body);
    assert!(ok && msg.trim().is_empty(), "promtool: {msg}\n{body}");
    for needle in [
        r#"sipwatch_probe_up{target="rec-3",group="recorders"} 0"#,
        r#"sipwatch_probe_up{target="edge <&> proxy",group=""} 1"#,
        r#"sipwatch_probes_total{target="rec-3",result="timeout"} 1"#,
        r#"sipwatch_probe_duration_seconds_bucket{le="0.0025",target="rec-1"} 1"#,
        r#"sipwatch_group_up{group="recorders"} 1"#,
        r#"sipwatch_cert_expiry_seconds{target="edge <&> proxy"} 3542400"#,
        "sipwatch_store_errors_total 1",
        "sipwatch_store_ok 0",
        "sipwatch_targets 4",
        r#"sipwatch_nodes{state="degraded"} 1"#,
    ] {
        assert!(body.contains(needle), "missing {needle} in\n{body}");
    }

    // A Prometheus server asks for OpenMetrics and gets it.
    let om = client()
        .get(format!("http://{}/metrics", server.addr))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(
        om.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = om.text().await.expect("body");
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("# TYPE sipwatch_probes counter"));
}

#[tokio::test]
async fn healthz_and_unknown_paths() {
    let server = start().await;
    let resp = get(&server, "/healthz").await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.expect("body");
    assert!(body.starts_with("ok\n"), "{body}");
    assert!(
        body.contains("store: error: attempt to write a readonly database"),
        "{body}"
    );
    assert!(body.contains("targets: 4"), "{body}");

    let mut fine = snapshot(server.t);
    fine.store_error = None;
    server
        .snapshot_tx
        .send(Arc::new(fine))
        .expect("receiver alive");
    let body = get(&server, "/healthz").await.text().await.expect("body");
    assert!(body.contains("store: ok"), "{body}");

    assert_eq!(get(&server, "/nope").await.status(), 404);
}

/// Loads `/` in headless Chromium and returns the DOM it rendered.
async fn chromium_dom(url: &str) -> String {
    let chromium = "/usr/bin/chromium";
    assert!(
        std::path::Path::new(chromium).exists(),
        "chromium missing: apt-get install -y chromium"
    );
    let profile = tempfile::tempdir().expect("temp dir");
    let child = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .env("HOME", profile.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium missing: apt-get install -y chromium");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("chromium did not finish within 120 s")
        .expect("chromium ran");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_chromium() {
    let server = start().await;
    let dom = chromium_dom(&format!("http://{}/", server.addr)).await;

    // No script anywhere, and user strings arrive as text, not markup.
    assert!(!dom.contains("<script"), "{dom}");
    assert!(
        dom.contains("<title>ACME Voice &lt;ops&gt; status</title>"),
        "{dom}"
    );
    assert!(!dom.contains("<ops>"));
    assert!(dom.contains("edge &lt;&amp;&gt; proxy"), "{dom}");
    assert!(dom.contains(r#"<meta http-equiv="refresh" content="30">"#));

    // Banners.
    assert!(
        dom.contains("Store error:</strong> attempt to write a readonly database"),
        "{dom}"
    );
    assert!(dom.contains("Major outage"), "{dom}");
    assert!(dom.contains("2 of 4 targets operational"), "{dom}");

    // The group, its quorum, members and their nodes with state in colour class and words.
    assert!(dom.contains("<h2>recorders</h2>"), "{dom}");
    assert!(dom.contains("2 of 3 up, min 2 (quorum kept)"), "{dom}");
    for (addr, class, word) in [
        ("10.0.0.1:5060", "n-up", "up"),
        ("10.0.0.2:5060", "n-degraded", "degraded"),
        ("10.0.0.3:5060", "n-down", "down"),
        ("192.0.2.11:5061", "n-up", "up"),
    ] {
        let row_start = dom
            .find(&format!("<code>{addr}</code>"))
            .unwrap_or_else(|| panic!("node {addr} missing"));
        let row = &dom[row_start
            ..dom[row_start..]
                .find("</tr>")
                .map_or(dom.len(), |e| row_start + e)];
        assert!(
            row.contains(&format!(r#"<span class="state {class}">{word}</span>"#)),
            "{addr}: {row}"
        );
    }
    assert!(dom.contains("503 Service Unavailable"), "{dom}");
    assert!(dom.contains("timeout: no answer within 2s"), "{dom}");
    assert!(dom.contains("cert 41 d left"), "{dom}");

    // Uptimes from the history, for both windows.
    assert_eq!(dom.matches("Uptime 24 h <b>99.87%</b>").count(), 4, "{dom}");
    assert_eq!(dom.matches("7 d <b>95.00%</b>").count(), 4, "{dom}");
    let windows = server.history.windows.lock().expect("lock").clone();
    assert!(windows.iter().any(|(_, w)| (w - DAY).abs() < 60.0));
    assert!(windows.iter().any(|(_, w)| (w - 7.0 * DAY).abs() < 60.0));

    // Current and past incidents.
    let current = dom
        .find("Current incidents")
        .expect("current incidents section");
    let past = dom
        .find("Incidents in the last 7 days")
        .expect("past incidents section");
    let open_at = dom
        .find("rec-3 is not answering OPTIONS")
        .expect("open incident");
    let resolved_at = dom
        .find("edge &lt;&amp;&gt; proxy: TLS handshake failures")
        .expect("past incident");
    assert!(current < open_at && open_at < past && past < resolved_at);
    assert_eq!(dom.matches("rec-3 is not answering OPTIONS").count(), 1);
    assert!(
        dom.contains("resolved") && dom.contains("after 15 min"),
        "{dom}"
    );

    // One RTT chart per target, drawn as a path with a gap.
    assert_eq!(dom.matches("<svg").count(), 4, "{dom}");
    let rec2 = dom.find("<h3>rec-2</h3>").expect("rec-2");
    let d_at = rec2 + dom[rec2..].find(" d=\"").expect("rec-2 chart path") + 4;
    let path = &dom[d_at..d_at + dom[d_at..].find('"').expect("path ends")];
    assert!(path.matches('M').count() >= 2, "no gap drawn: {path}");
    assert!(dom.contains("max 14.9 ms"), "{dom}");
}
