//! The whole agent, as a user runs it: `/metrics` (checked by `promtool check metrics`),
//! `/healthz`, `/api/v1/services`, events on the channel, shutdown; a slow leak stored on disk by
//! an earlier run replayed at start; a restart made while the agent was down still seen.

mod agent_support;

use std::path::Path;
use std::time::{Duration, Instant};

use agent_support::{parse_config, unique_name, Driver, PyService};
use sipwatch::agent::clock::unix_now;
use sipwatch::agent::events::AgentEvent;
use sipwatch::agent::Agent;
use tokio::sync::{mpsc, watch};

const T: Duration = Duration::from_secs(30);
const RATE: f64 = 5000.0; // bytes per second: 18 MB an hour
const BASE: f64 = 100e6;

/// Six hours of a linear leak, every 10 s, as an earlier agent run would have stored them.
fn write_history(state: &Path, service: &str, gauge: &str, t0: f64, now: f64) -> usize {
    let dir = state.join(service);
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::new();
    let mut t = now - 6.0 * 3600.0 + 30.0;
    let mut n = 0;
    while t < now - 5.0 {
        text.push_str(&format!("{t:.3} {}\n", (BASE + RATE * (t - t0)).round()));
        t += 10.0;
        n += 1;
    }
    std::fs::write(dir.join(format!("{gauge}.raw")), text).unwrap();
    n
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let r = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (r.status().as_u16(), r.text().await.unwrap())
}

fn agent_config(dir: &Path, t0: f64) -> String {
    let pidfile = dir.join("self.pid");
    std::fs::write(&pidfile, std::process::id().to_string()).unwrap();
    format!(
        r#"
[agent]
listen = "127.0.0.1:0"
interval = "200ms"
state_dir = "{state}"

[[service]]
name = "app"
pidfile = "{pidfile}"
[[service.gauge]]
kind = "pss"
[[service.gauge]]
kind = "command"
name = "grow"
command = "echo $(( {base} + ($(date +%s) - {t0}) * {rate} ))"
limit = "300MB"

[[service]]
name = "ghost"
pidfile = "{dir}/ghost.pid"
"#,
        state = dir.join("state").display(),
        pidfile = pidfile.display(),
        dir = dir.display(),
        base = BASE as u64,
        rate = RATE as u64,
        t0 = t0 as u64,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_serves_metrics_api_and_events_and_replays_a_stored_leak() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let t0 = (now - 6.0 * 3600.0).floor();
    let stored = write_history(&dir.path().join("state"), "app", "grow", t0, now);
    let config = parse_config(&agent_config(dir.path(), t0));

    let (events_tx, mut events_rx) = mpsc::channel(256);
    let agent = Agent::bind(config.clone(), Some(events_tx)).await.unwrap();
    let addr = agent.local_addr();
    let (stop_tx, stop_rx) = watch::channel(false);
    let running = tokio::spawn(agent.run(stop_rx));
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");

    assert_eq!(
        get(&client, &format!("{base}/healthz")).await,
        (200, "ok\n".to_owned())
    );

    // Events: the service found, the ghost missing, the stored leak raised.
    let mut events = Vec::new();
    let deadline = Instant::now() + T;
    while !events
        .iter()
        .any(|e| matches!(e, AgentEvent::LeakRaised { .. }))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events_rx.recv()).await {
            Ok(Some(e)) => events.push(e),
            _ => panic!("no leak raised within {T:?}; events: {events:#?}"),
        }
    }
    assert!(events
        .iter()
        .any(|e| matches!(e, AgentEvent::ServiceFound { service, .. } if service == "app")));
    assert!(
        events.iter().any(
            |e| matches!(e, AgentEvent::ServiceMissing { service, problem, .. }
        if service == "ghost" && problem.contains("cannot read pidfile"))
        ),
        "{events:#?}"
    );
    let Some(AgentEvent::LeakRaised {
        service,
        gauge,
        limit,
        verdict,
        value,
        ..
    }) = events
        .iter()
        .find(|e| matches!(e, AgentEvent::LeakRaised { .. }))
    else {
        unreachable!()
    };
    assert_eq!((service.as_str(), gauge.as_str()), ("app", "grow"));
    assert_eq!(*limit, Some(300e6));
    assert!(*value > BASE + RATE * 6.0 * 3600.0 - 1e6, "{value}");
    assert!(
        (verdict.slope_per_sec - RATE).abs() < 0.5 * RATE,
        "slope {} vs {RATE}",
        verdict.slope_per_sec
    );

    // The API: every service, its gauges, values, limits, verdicts.
    // (The event is sent during the tick; the report is published at its end.)
    let deadline = Instant::now() + T;
    let report = loop {
        let (status, body) = get(&client, &format!("{base}/api/v1/services")).await;
        assert_eq!(status, 200);
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        if report["services"][0]["last_tick_at"].is_f64()
            && report["services"][1]["last_tick_at"].is_f64()
        {
            break report;
        }
        assert!(Instant::now() < deadline, "no tick published: {report:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let services = report["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    let app = &services[0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["up"], true);
    assert_eq!(app["main_pid"], std::process::id());
    assert!(app["memory"]["pss"].as_u64().unwrap() > 0);
    let grow = app["gauges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "grow")
        .unwrap();
    assert_eq!(
        grow["replayed"].as_u64().unwrap() as usize,
        stored,
        "the whole stored history was replayed"
    );
    assert_eq!(grow["limit"], 300e6);
    assert_eq!(grow["limit_source"], "config");
    assert_eq!(grow["verdict"]["state"], "leak");
    assert_eq!(grow["leak_suspected"], true);
    let eta = grow["verdict"]["eta_to_limit_secs"]
        .as_f64()
        .expect("eta with a limit");
    let expected_eta = (300e6 - (BASE + RATE * (unix_now() - t0))) / RATE;
    assert!(
        (eta - expected_eta).abs() < 0.5 * expected_eta,
        "eta {eta} vs {expected_eta}"
    );
    let ghost = &services[1];
    assert_eq!(ghost["up"], false);
    assert!(ghost["problem"].as_str().unwrap().contains("ghost.pid"));

    // /metrics: the contract names, and promtool accepts the exposition.
    let (status, text) = get(&client, &format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    for needle in [
        r#"sipwatch_service_memory_bytes{service="app",kind="rss"}"#,
        r#"sipwatch_service_memory_bytes{service="app",kind="pss"}"#,
        r#"sipwatch_service_memory_bytes{service="app",kind="uss"}"#,
        r#"sipwatch_service_fds{service="app"}"#,
        r#"sipwatch_leak_slope_bytes_per_second{service="app",gauge="grow"}"#,
        r#"sipwatch_leak_suspected{service="app",gauge="grow"} 1"#,
        r#"sipwatch_restarts_total{service="app",reason="observed"} 0"#,
        r#"sipwatch_service_up{service="ghost"} 0"#,
        r#"sipwatch_service_limit{service="app",gauge="grow"} 300000000"#,
        r#"sipwatch_leak_eta_seconds{service="app",gauge="grow"}"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    agent_support::assert_promtool_accepts(&text);

    // Shutdown: run() returns.
    stop_tx.send(true).unwrap();
    tokio::time::timeout(T, running)
        .await
        .expect("agent stops")
        .unwrap()
        .unwrap();

    // A second run on the same state directory replays the first run's live samples too.
    let agent = Agent::bind(config, None).await.unwrap();
    let reports = agent.reports();
    let (stop_tx, stop_rx) = watch::channel(false);
    let running = tokio::spawn(agent.run(stop_rx));
    let deadline = Instant::now() + T;
    loop {
        let r = reports.report();
        let grow = r.services[0]
            .gauges
            .iter()
            .find(|g| g.name == "grow")
            .cloned();
        if let Some(grow) = grow.filter(|_| r.services[0].last_tick_at.is_some()) {
            assert!(
                grow.replayed > stored,
                "the first run's live samples were stored: {grow:?}"
            );
            assert_eq!(
                r.services[0].restarts_observed, 0,
                "same main process: no restart"
            );
            break;
        }
        assert!(Instant::now() < deadline, "second run never ticked: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(true).unwrap();
    tokio::time::timeout(T, running)
        .await
        .expect("agent stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_restart_made_while_the_agent_was_down_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("swd");
    let mut svc = PyService::start(dir.path(), &name, 1);
    let config = parse_config(&format!(
        "[agent]\nstate_dir = \"{}\"\n[[service]]\nname = \"py\"\nprocess = \"{name}\"\n",
        dir.path().join("state").display()
    ));
    {
        let mut d = Driver::new(&config);
        d.tick_until(T, "found", |r| r.processes == 2).await;
    }
    // Agent down; the service restarts; agent up again.
    svc.restart();
    let mut d = Driver::new(&config);
    d.tick_until(T, "found", |r| r.processes == 2).await;
    assert_eq!(d.last.restarts_observed, 1, "{:?}", d.events);
    assert!(d.events.iter().any(
        |e| matches!(e, AgentEvent::ServiceRestarted { new_pid, .. } if *new_pid == svc.main_pid())
    ));
    // And without a restart, a new agent run sees none.
    let mut d = Driver::new(&config);
    d.tick_until(T, "found", |r| r.processes == 2).await;
    assert_eq!(d.last.restarts_observed, 0);
}

#[tokio::test]
async fn a_busy_listen_address_is_explained() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = parse_config(&format!(
        "[agent]\nlisten = \"{}\"\nstate_dir = \"{}\"\n",
        taken.local_addr().unwrap(),
        dir.path().join("state").display()
    ));
    let err = Agent::bind(config, None)
        .await
        .err()
        .expect("bind fails")
        .to_string();
    assert!(
        err.contains("cannot listen on") && err.contains("[agent] listen"),
        "{err}"
    );
}
