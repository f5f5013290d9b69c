//! The agent under the hardening findings: a pid reused by an unrelated process is not a
//! "recovery" of the service, and a command gauge whose timeout is not below its interval is
//! refused by `check-config` (the process-group kill itself is tested in the command sampler).

mod agent_support;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use agent_support::{parse_config, Driver};
use sipwatch::agent::config;
use sipwatch::agent::events::AgentEvent;

const T: Duration = Duration::from_secs(20);

/// A `sleep` whose pid is `pid`, made by pointing the kernel's next pid just before it
/// (`/proc/sys/kernel/ns_last_pid`, root only). Other processes on the machine may take the pid
/// first: retried until it works or the pid is taken by someone else for good.
fn spawn_with_pid(pid: i32) -> Child {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1)).unwrap_or_else(
            |e| panic!("cannot write /proc/sys/kernel/ns_last_pid ({e}): this test needs root"),
        );
        let mut child = Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawn sleep");
        if child.id() as i32 == pid {
            return child;
        }
        let _ = child.kill();
        let _ = child.wait();
        if Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("could not start a process with pid {pid} after 200 attempts");
}

#[tokio::test]
async fn a_reused_pid_is_not_a_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("svc.pid");
    let mut service = Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = service.id() as i32;
    std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
    let config = parse_config(&format!(
        r#"
[agent]
state_dir = "{state}"
[[service]]
name = "svc"
pidfile = "{pidfile}"
"#,
        state = dir.path().join("state").display(),
        pidfile = pidfile.display()
    ));
    let mut d = Driver::new(&config);
    d.tick_until(T, "the service found", |r| r.processes == 1)
        .await;
    assert_eq!(d.last.main_pid, Some(pid));

    // The service dies; an unrelated process gets its pid; the pidfile is left as it was.
    service.kill().unwrap();
    service.wait().unwrap();
    let mut stranger = spawn_with_pid(pid);
    for _ in 0..5 {
        d.tick().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stranger.kill();
    let _ = stranger.wait();

    let restarted: Vec<&AgentEvent> = d
        .events
        .iter()
        .filter(|e| matches!(e, AgentEvent::ServiceRestarted { .. }))
        .collect();
    assert!(
        restarted.is_empty(),
        "a stranger taken for a restart: {restarted:?}"
    );
    assert_eq!(
        d.last.processes, 0,
        "the stranger is not measured: {:#?}",
        d.last
    );
    let problem = d.last.problem.clone().unwrap_or_default();
    assert!(problem.contains("reused"), "{problem}");
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, AgentEvent::ServiceMissing { .. })),
        "the service is reported missing: {:?}",
        d.events
    );
}

#[test]
fn a_gauge_timeout_not_below_the_interval_is_refused() {
    let text = r#"
[agent]
interval = "5s"
[[service]]
name = "bridge"
process = "bridge"
[[service.gauge]]
kind = "command"
name = "sessions"
command = "sleep 100; echo 1"
timeout = "5s"
[[service]]
name = "media"
process = "media"
interval = "10s"
[[service.gauge]]
kind = "command"
name = "calls"
command = "echo 1"
timeout = "9s"
"#;
    let errors = match config::parse(text, Path::new("agent.toml")) {
        Ok(_) => panic!("a 5s timeout on a 5s interval was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        errors.contains(
            "gauge \"sessions\" has timeout = \"5s\", not below the service's interval = \"5s\""
        ),
        "{errors}"
    );
    assert!(
        errors.contains("agent.toml:7:"),
        "the error points at the gauge: {errors}"
    );
    assert!(
        !errors.contains("\"calls\""),
        "9s below 10s is fine: {errors}"
    );
}
