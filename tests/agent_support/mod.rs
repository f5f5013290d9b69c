//! Shared parts of the agent's integration tests: a real multi-process "service" (Python, forking
//! workers that grow memory, open descriptors and start threads on command) and driving a
//! `ServiceWatch` tick by tick; the workspace's shared test support (free ports, waits with a
//! deadline, real programs) is re-exported.
#![allow(dead_code)]

pub use sipwatch_test_support::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sipwatch::agent::config::{self, AgentConfig};
use sipwatch::agent::events::{AgentEvent, EventSink};
use sipwatch::agent::locator::detect_cgroup_root;
use sipwatch::agent::metrics::AgentMetrics;
use sipwatch::agent::report::ServiceReport;
use sipwatch::agent::service::ServiceWatch;
use tokio::sync::mpsc;

const SERVICE_PY: &str = r#"
import os, sys, time, threading
name, pidfile, ctl, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open('/proc/self/comm', 'w') as f:
    f.write(name)
is_main = True
children = []
def read_cmd():
    try:
        return open(ctl).read().split()
    except OSError:
        return []
def fork_workers(n):
    global is_main
    while len(children) < n:
        pid = os.fork()
        if pid == 0:
            is_main = False
            return
        children.append(pid)
fork_workers(workers)
if is_main:
    with open(pidfile + '.tmp', 'w') as f:
        f.write(str(os.getpid()))
    os.rename(pidfile + '.tmp', pidfile)
held, files, threads = [], [], []
def sleeper():
    while True:
        time.sleep(3600)
while True:
    cmd = read_cmd()
    if is_main:
        fork_workers(workers + cmd.count('fork'))
    while len(held) < cmd.count('grow'):
        held.append(bytearray(b'x') * (16 << 20))
    while len(files) < 20 * cmd.count('fds'):
        files.append(open('/dev/null'))
    while len(threads) < 4 * cmd.count('threads'):
        t = threading.Thread(target=sleeper, daemon=True)
        t.start()
        threads.append(t)
    time.sleep(0.05)
"#;

/// A multi-process service made of a Python main process and forked workers, all named `name`
/// (their `comm`). Commands written to the control file apply to every process: `grow` (+16 MiB
/// each time), `fds` (+20 descriptors), `threads` (+4 threads); `fork` makes the main process
/// fork one more worker.
pub struct PyService {
    pub name: String,
    pub dir: PathBuf,
    pub pidfile: PathBuf,
    pub ctl: PathBuf,
    pub workers: usize,
    child: Option<Child>,
    commands: Vec<String>,
}

impl PyService {
    /// Starts the service with `workers` forked workers and waits for its pidfile.
    pub fn start(dir: &Path, name: &str, workers: usize) -> Self {
        let mut s = PyService {
            name: name.to_owned(),
            dir: dir.to_owned(),
            pidfile: dir.join(format!("{name}.pid")),
            ctl: dir.join(format!("{name}.ctl")),
            workers,
            child: None,
            commands: Vec::new(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let script = self.dir.join("service.py");
        std::fs::write(&script, SERVICE_PY).unwrap();
        let _ = std::fs::remove_file(&self.pidfile);
        std::fs::write(&self.ctl, self.commands.join(" ")).unwrap();
        use std::os::unix::process::CommandExt;
        let child = Command::new(PYTHON)
            .arg(&script)
            .arg(&self.name)
            .arg(&self.pidfile)
            .arg(&self.ctl)
            .arg(self.workers.to_string())
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start python3");
        self.child = Some(child);
        wait_until("the service's pidfile", Duration::from_secs(10), || {
            self.pidfile.exists()
        });
        wait_until("all workers named", Duration::from_secs(10), || {
            self.live_pids().len() == self.workers + 1
        });
    }

    /// The main pid.
    pub fn main_pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Pids of live (non-zombie) processes whose comm is the service's name.
    pub fn live_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            let state = stat[close + 2..].chars().next().unwrap_or('?');
            if comm == self.name && state != 'Z' {
                pids.push(pid);
            }
        }
        pids.sort();
        pids
    }

    /// Sends a command to every process.
    pub fn command(&mut self, cmd: &str) {
        self.commands.push(cmd.to_owned());
        let tmp = self.ctl.with_extension("tmp");
        std::fs::write(&tmp, self.commands.join(" ")).unwrap();
        std::fs::rename(&tmp, &self.ctl).unwrap();
    }

    /// Kills every process and waits until none is left.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
        }
        wait_until(
            "all service processes gone",
            Duration::from_secs(10),
            || self.live_pids().is_empty(),
        );
    }

    /// Stops and starts again: every pid changes.
    pub fn restart(&mut self) {
        self.stop();
        self.commands.clear();
        self.spawn();
    }
}

impl Drop for PyService {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }
}

/// Parses a config text (panics with the errors).
pub fn parse_config(text: &str) -> AgentConfig {
    match config::parse(text, Path::new("test.toml")) {
        Ok(c) => c,
        Err(e) => panic!("config rejected:\n{e}\n---\n{text}"),
    }
}

/// One service of a config, driven tick by tick, with its events collected.
pub struct Driver {
    pub watch: ServiceWatch,
    pub metrics: AgentMetrics,
    pub sink: EventSink,
    pub events_rx: mpsc::Receiver<AgentEvent>,
    pub events: Vec<AgentEvent>,
    pub last: ServiceReport,
}

impl Driver {
    /// Drives the first service of `config`.
    pub fn new(config: &AgentConfig) -> Self {
        let metrics = AgentMetrics::new();
        let (tx, events_rx) = mpsc::channel(1000);
        let sink = EventSink::new(Some(tx), metrics.events_dropped.clone());
        let client = reqwest::Client::new();
        let root = config
            .cgroup_root
            .clone()
            .unwrap_or_else(detect_cgroup_root);
        let watch = ServiceWatch::new(
            config.services[0].clone(),
            config,
            &root,
            &client,
            unix_now(),
        );
        let last = watch.initial_report();
        Driver {
            watch,
            metrics,
            sink,
            events_rx,
            events: Vec::new(),
            last,
        }
    }

    /// One tick now.
    pub async fn tick(&mut self) -> &ServiceReport {
        self.last = self.watch.tick(unix_now(), &self.metrics, &self.sink).await;
        while let Ok(e) = self.events_rx.try_recv() {
            self.events.push(e);
        }
        &self.last
    }

    /// Ticks until `cond` holds on the report; panics after `timeout`.
    pub async fn tick_until(
        &mut self,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&ServiceReport) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            self.tick().await;
            if cond(&self.last) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last report: {:#?}",
                self.last
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The gauge report named `name` in the last report.
    pub fn gauge(&self, name: &str) -> &sipwatch::agent::report::GaugeReport {
        self.last
            .gauges
            .iter()
            .find(|g| g.name == name)
            .unwrap_or_else(|| panic!("no gauge {name} in {:#?}", self.last))
    }
}

/// A unique short name (<= 15 bytes, a valid comm).
pub fn unique_name(prefix: &str) -> String {
    let n: u32 = rand::random::<u32>() % 1_000_000;
    format!("{prefix}{n:06}")
}
