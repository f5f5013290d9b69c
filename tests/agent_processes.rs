//! The agent following real processes: a forking Python service found by process name, by pidfile
//! and by (a test-made) systemd unit cgroup; memory, descriptor and thread figures that track what
//! the processes really do; workers coming and going; a restart (every pid new) seen as one.

mod agent_support;

use std::collections::BTreeSet;
use std::time::Duration;

use agent_support::{parse_config, unique_name, wait_until, Driver, PyService};
use sipwatch::agent::config::Finder;
use sipwatch::agent::events::AgentEvent;
use sipwatch::agent::locator::Locator;

const MIB: u64 = 1024 * 1024;
const T: Duration = Duration::from_secs(20);

fn pids_of(report: &sipwatch::agent::report::ServiceReport) -> BTreeSet<i32> {
    report.pids.iter().copied().collect()
}

#[tokio::test]
async fn process_name_service_has_plausible_memory_fds_and_threads() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("swm");
    let mut svc = PyService::start(dir.path(), &name, 3);
    let config = parse_config(&format!(
        r#"
[agent]
state_dir = "{state}"
rescan_every = 3
[[service]]
name = "py"
process = "{name}"
[[service.gauge]]
kind = "pss"
[[service.gauge]]
kind = "rss"
[[service.gauge]]
kind = "uss"
[[service.gauge]]
kind = "fds"
[[service.gauge]]
kind = "threads"
"#,
        state = dir.path().join("state").display()
    ));
    let mut d = Driver::new(&config);
    d.tick_until(T, "4 processes", |r| r.processes == 4).await;
    let live: BTreeSet<i32> = svc.live_pids().into_iter().collect();
    assert_eq!(pids_of(&d.last), live, "exactly the service's processes");
    assert_eq!(
        d.last.main_pid,
        Some(svc.main_pid()),
        "the earliest started is the main process"
    );
    assert!(
        matches!(
            d.events.first(),
            Some(AgentEvent::ServiceFound { processes: 4, .. })
        ),
        "{:?}",
        d.events
    );

    let m = d.last.memory.expect("memory figures");
    assert!(
        m.rss > 4 * 4 * MIB,
        "4 Python processes hold more than 16 MiB RSS: {m:?}"
    );
    assert!(
        m.uss > 0 && m.uss <= m.pss && m.pss < m.rss,
        "USS <= PSS < RSS for forked processes sharing pages: {m:?}"
    );
    assert_eq!(
        d.gauge("pss").value,
        Some(m.pss as f64),
        "gauge and service figure come from the same read"
    );
    assert_eq!(d.gauge("rss").value, Some(m.rss as f64));
    assert_eq!(d.gauge("uss").value, Some(m.uss as f64));
    let fds = d.last.fds.expect("fd figures");
    assert!(
        fds.open >= 4 * 3,
        "at least stdin/stdout/stderr per process: {fds:?}"
    );
    assert!(fds.limit_per_process.is_some_and(|l| l > 16));
    assert_eq!(
        d.gauge("fds").limit,
        None,
        "no automatic limit for a summed multi-process count"
    );
    assert_eq!(d.last.threads, Some(4));

    // Each process allocates and touches 16 MiB twice.
    svc.command("grow");
    svc.command("grow");
    let before = m;
    d.tick_until(T, "PSS +120 MiB", |r| {
        r.memory.is_some_and(|m| m.pss >= before.pss + 120 * MIB)
    })
    .await;
    let after = d.last.memory.unwrap();
    assert!(
        after.uss >= before.uss + 120 * MIB,
        "private memory grew: {before:?} -> {after:?}"
    );
    assert!(after.rss >= before.rss + 120 * MIB);

    svc.command("fds");
    d.tick_until(T, "+80 descriptors", |r| {
        r.fds.is_some_and(|f| f.open >= fds.open + 80)
    })
    .await;
    assert_eq!(d.gauge("fds").value, Some(d.last.fds.unwrap().open as f64));
    assert!(d.last.fds.unwrap().max_per_process >= 20);

    svc.command("threads");
    d.tick_until(T, "4 + 16 threads", |r| r.threads == Some(20))
        .await;
    assert_eq!(d.gauge("threads").value, Some(20.0));

    let text = d.metrics.encode();
    assert!(
        text.contains(r#"sipwatch_service_memory_bytes{service="py",kind="pss"}"#),
        "{text}"
    );
    assert!(text.contains(r#"sipwatch_service_fds{service="py"}"#));
    assert!(
        text.contains(r#"sipwatch_service_threads{service="py"} 20"#),
        "{text}"
    );
    assert!(text.contains(r#"sipwatch_service_up{service="py"} 1"#));
}

#[tokio::test]
async fn workers_come_and_go_and_a_restart_is_seen_once() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("swr");
    let mut svc = PyService::start(dir.path(), &name, 2);
    let config = parse_config(&format!(
        "[agent]\nstate_dir = \"{}\"\nrescan_every = 4\n[[service]]\nname = \"py\"\nprocess = \"{name}\"\n",
        dir.path().join("state").display()
    ));
    let mut d = Driver::new(&config);
    d.tick_until(T, "3 processes", |r| r.processes == 3).await;
    let main = svc.main_pid();

    // A worker dies: seen at the next tick (a known pid vanished), not a restart.
    let worker = *svc.live_pids().iter().find(|p| **p != main).unwrap();
    unsafe {
        libc::kill(worker, libc::SIGKILL);
    }
    wait_until("worker gone", T, || !svc.live_pids().contains(&worker));
    d.tick().await;
    assert_eq!(
        d.last.processes, 2,
        "the vanished worker triggers a rescan at once"
    );
    // A new worker is found at a later periodic rescan.
    svc.command("fork");
    wait_until("new worker", T, || svc.live_pids().len() == 3);
    d.tick_until(T, "the new worker", |r| r.processes == 3)
        .await;
    assert_eq!(d.last.restarts_observed, 0);
    assert_eq!(d.last.main_pid, Some(main));

    // Restart: every pid changes.
    let old: BTreeSet<i32> = pids_of(&d.last);
    svc.restart();
    d.tick_until(T, "the restart", |r| {
        r.restarts_observed == 1 && r.processes == 3
    })
    .await;
    let new = pids_of(&d.last);
    assert!(old.is_disjoint(&new), "{old:?} vs {new:?}");
    let restarted: Vec<&AgentEvent> = d
        .events
        .iter()
        .filter(|e| matches!(e, AgentEvent::ServiceRestarted { .. }))
        .collect();
    assert_eq!(restarted.len(), 1, "{:?}", d.events);
    match restarted[0] {
        AgentEvent::ServiceRestarted {
            old_pid, new_pid, ..
        } => {
            assert_eq!(*old_pid, main);
            assert_eq!(*new_pid, svc.main_pid());
        }
        _ => unreachable!(),
    }
    for _ in 0..5 {
        d.tick().await;
    }
    assert_eq!(d.last.restarts_observed, 1, "one restart, counted once");
    assert!(d
        .metrics
        .encode()
        .contains(r#"sipwatch_restarts_total{service="py",reason="observed"} 1"#));

    // Gone: reported missing, process series removed.
    svc.stop();
    d.tick_until(T, "missing", |r| !r.up).await;
    assert!(d.last.memory.is_none());
    assert!(d
        .events
        .iter()
        .any(|e| matches!(e, AgentEvent::ServiceMissing { .. })));
    let text = d.metrics.encode();
    assert!(
        text.contains(r#"sipwatch_service_up{service="py"} 0"#),
        "{text}"
    );
    assert!(
        !text.contains(r#"sipwatch_service_memory_bytes{service="py""#),
        "stale memory series removed:\n{text}"
    );
}

#[tokio::test]
async fn pidfile_service_follows_descendants_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("swp");
    let mut svc = PyService::start(dir.path(), &name, 3);
    let config = parse_config(&format!(
        "[agent]\nstate_dir = \"{}\"\n[[service]]\nname = \"py\"\npidfile = \"{}\"\n",
        dir.path().join("state").display(),
        svc.pidfile.display()
    ));
    let mut d = Driver::new(&config);
    d.tick_until(T, "main + 3 workers", |r| r.processes == 4)
        .await;
    assert_eq!(d.last.main_pid, Some(svc.main_pid()));
    assert_eq!(
        d.last.pids[0],
        svc.main_pid(),
        "the pidfile's process first"
    );
    assert_eq!(pids_of(&d.last), svc.live_pids().into_iter().collect());
    assert_eq!(
        d.gauge("pss").value,
        Some(d.last.memory.unwrap().pss as f64),
        "PSS is the default gauge"
    );

    svc.restart();
    d.tick_until(T, "the restart", |r| {
        r.restarts_observed == 1 && r.processes == 4
    })
    .await;
    assert_eq!(d.last.main_pid, Some(svc.main_pid()));

    // A stale pidfile: the service is missing, with the reason.
    svc.stop();
    d.tick_until(T, "missing", |r| !r.up).await;
    let problem = d.last.problem.clone().unwrap_or_default();
    assert!(problem.contains("not running (stale pidfile)"), "{problem}");
}

#[tokio::test]
async fn systemd_unit_cgroup_is_read_with_its_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("swu");
    let svc = PyService::start(dir.path(), &name, 2);
    // A cgroup v2 tree as systemd lays it out, with the workers in a sub-cgroup.
    let root = dir.path().join("cgroup");
    let unit = root.join("system.slice").join(format!("{name}.service"));
    std::fs::create_dir_all(unit.join("workers")).unwrap();
    let pids = svc.live_pids();
    let main = svc.main_pid();
    std::fs::write(unit.join("cgroup.procs"), format!("{main}\n")).unwrap();
    let workers: Vec<String> = pids
        .iter()
        .filter(|p| **p != main)
        .map(|p| p.to_string())
        .collect();
    std::fs::write(unit.join("workers/cgroup.procs"), workers.join("\n")).unwrap();
    std::fs::write(unit.join("memory.current"), "123456789\n").unwrap();
    std::fs::write(unit.join("memory.max"), "536870912\n").unwrap();
    let config = parse_config(&format!(
        r#"
[agent]
state_dir = "{state}"
cgroup_root = "{root}"
[[service]]
name = "unit"
systemd_unit = "{name}"
[[service.gauge]]
kind = "cgroup_memory"
[[service.gauge]]
kind = "pss"
"#,
        state = dir.path().join("state").display(),
        root = root.display()
    ));
    let mut d = Driver::new(&config);
    d.tick().await;
    assert_eq!(
        pids_of(&d.last),
        pids.iter().copied().collect(),
        "cgroup.procs of the unit and its sub-cgroups"
    );
    let cg = d.gauge("cgroup_memory");
    assert_eq!(cg.value, Some(123456789.0));
    assert_eq!(cg.limit, Some(536870912.0));
    assert_eq!(
        cg.limit_source,
        Some(sipwatch::agent::report::LimitSource::Found)
    );
    assert_eq!(
        d.gauge("pss").limit,
        Some(536870912.0),
        "memory.max is the memory gauges' limit found"
    );

    let absent = parse_config(&format!(
        "[agent]\nstate_dir = \"{}\"\ncgroup_root = \"{}\"\n[[service]]\nname = \"absent\"\nsystemd_unit = \"absent.service\"\n",
        dir.path().join("state").display(),
        root.display()
    ));
    let mut d = Driver::new(&absent);
    d.tick().await;
    assert!(!d.last.up);
    assert!(
        d.last
            .problem
            .as_deref()
            .unwrap_or("")
            .contains("no cgroup at"),
        "{:?}",
        d.last.problem
    );
}

#[test]
fn locator_walks_proc_only_every_n_ticks_or_when_a_pid_vanishes() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("swl");
    let svc = PyService::start(dir.path(), &name, 2);
    let mut locator = Locator::new(
        Finder::ProcessName(name.clone()),
        "/sys/fs/cgroup".into(),
        5,
    );
    let scans: Vec<bool> = (0..11).map(|_| locator.locate().scanned).collect();
    assert_eq!(
        scans,
        vec![true, false, false, false, false, true, false, false, false, false, true],
        "one walk of /proc every 5 ticks"
    );
    let worker = *svc
        .live_pids()
        .iter()
        .find(|p| **p != svc.main_pid())
        .unwrap();
    unsafe {
        libc::kill(worker, libc::SIGKILL);
    }
    wait_until("worker gone", T, || !svc.live_pids().contains(&worker));
    let located = locator.locate();
    assert!(
        located.scanned,
        "a vanished pid makes the next tick walk /proc"
    );
    assert_eq!(located.procs.len(), 2);
    assert!(!locator.locate().scanned);
}
