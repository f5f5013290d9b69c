//! The agent against a real Kamailio (Debian's `kamailio`), started by the test on loopback ports
//! with JSON-RPC over HTTP (xhttp + jsonrpcs): the shared and private memory gauges with their
//! limits found from Kamailio itself, a real shared-memory leak (an htable that stores every
//! OPTIONS and never expires) filling the pool until Kamailio logs `no more shm`, the processes
//! followed by pidfile and by name, and a Kamailio restart seen as one restart.

mod agent_support;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use agent_support::{
    free_port, free_udp_tcp_port, kamailio_binary, parse_config, unique_name, wait_until, Driver,
    RpcKamailioConfig,
};
use sipwatch::agent::events::AgentEvent;
use sipwatch::agent::proc;
use sipwatch::agent::report::LimitSource;

const T: Duration = Duration::from_secs(30);

/// A Kamailio started by the test.
struct Kamailio {
    dir: PathBuf,
    binary: PathBuf,
    cfg: PathBuf,
    pidfile: PathBuf,
    log: PathBuf,
    sip_port: u16,
    http_port: u16,
    shm_mb: u32,
}

impl Kamailio {
    /// Writes the config and starts Kamailio; `name`, if given, is the process name (a symlink to
    /// the binary, so that only this instance has it).
    fn start(dir: &Path, name: Option<&str>, shm_mb: u32) -> Self {
        let real = kamailio_binary();
        let binary = match name {
            Some(name) => {
                let link = dir.join(name);
                std::os::unix::fs::symlink(&real, &link).unwrap();
                link
            }
            None => real,
        };
        let sip_port = free_udp_tcp_port();
        let http_port = free_port();
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(
            &cfg,
            RpcKamailioConfig {
                sip_port,
                http_port,
                settings: "",
                modules: "",
                route: "",
                on_options: "$sht(leak=>$ci) = $mb;",
            }
            .text(),
        )
        .unwrap();
        let k = Kamailio {
            dir: dir.to_owned(),
            binary,
            cfg,
            pidfile: dir.join("kamailio.pid"),
            log: dir.join("kamailio.log"),
            sip_port,
            http_port,
            shm_mb,
        };
        k.launch();
        k
    }

    fn launch(&self) {
        let _ = std::fs::remove_file(&self.pidfile);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let status = Command::new(&self.binary)
            .arg("-f")
            .arg(&self.cfg)
            .arg("-P")
            .arg(&self.pidfile)
            .arg("-w")
            .arg(&self.dir)
            .args(["-m", &self.shm_mb.to_string(), "-M", "8", "-E"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .status()
            .expect("run kamailio");
        assert!(
            status.success(),
            "kamailio did not start; its log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        wait_until("kamailio's pidfile", T, || self.main_pid().is_some());
        let addr = format!("127.0.0.1:{}", self.http_port);
        wait_until("kamailio's HTTP listener", T, || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        // All processes forked: the count settles.
        let mut last = 0;
        wait_until("kamailio's processes forked", T, || {
            let n = self.pids().len();
            let settled = n >= 5 && n == last;
            last = n;
            if !settled {
                std::thread::sleep(Duration::from_millis(100));
            }
            settled
        });
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/RPC", self.http_port)
    }

    fn main_pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The main process and its descendants, as the process table says.
    fn pids(&self) -> BTreeSet<i32> {
        let Some(main) = self.main_pid() else {
            return BTreeSet::new();
        };
        let table = proc::scan();
        let mut out: BTreeSet<i32> = proc::descendants(&table, main)
            .into_iter()
            .map(|p| p.pid)
            .collect();
        if proc::read(main).is_some() {
            out.insert(main);
        }
        out
    }

    /// Stops Kamailio (SIGTERM to the main pid) and waits until all its processes are gone.
    fn stop(&self) {
        let pids = self.pids();
        if let Some(main) = self.main_pid() {
            unsafe {
                libc::kill(main, libc::SIGTERM);
            }
        }
        wait_until("all kamailio processes gone", T, || {
            pids.iter().all(|p| proc::read(*p).is_none())
        });
    }

    /// Sends `count` OPTIONS with distinct Call-IDs, padded so that each stored request is large.
    fn flood_options(&self, count: usize) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = sock.local_addr().unwrap();
        let pad = "X".repeat(1500);
        for i in 0..count {
            let msg = format!(
                "OPTIONS sip:leak@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{i}\r\n\
                 From: <sip:agent-test@127.0.0.1>;tag=t{i}\r\nTo: <sip:leak@127.0.0.1>\r\nCall-ID: leak-{i}@agent-test\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nX-Pad: {pad}\r\nContent-Length: 0\r\n\r\n",
                port = self.sip_port
            );
            sock.send_to(msg.as_bytes(), ("127.0.0.1", self.sip_port))
                .unwrap();
            if i % 100 == 99 {
                // Let Kamailio's two UDP workers keep up instead of dropping datagrams.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(main) = self.main_pid() {
            if proc::read(main).is_some() {
                let pids = self.pids();
                unsafe {
                    libc::kill(main, libc::SIGKILL);
                }
                for p in pids {
                    unsafe {
                        libc::kill(p, libc::SIGKILL);
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn kamailio_memory_gauges_and_a_real_shm_leak() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(dir.path(), None, 8);
    let config = parse_config(&format!(
        r#"
[agent]
state_dir = "{state}"
[[service]]
name = "kamailio"
pidfile = "{pidfile}"
[[service.gauge]]
kind = "kamailio_shm"
url = "{url}"
[[service.gauge]]
kind = "kamailio_pkg"
url = "{url}"
[[service.gauge]]
kind = "pss"
[[service.gauge]]
kind = "log_alert"
name = "shm_exhausted"
file = "{log}"
patterns = ["no more shm", "could not allocate shared memory"]
"#,
        state = dir.path().join("state").display(),
        pidfile = k.pidfile.display(),
        url = k.url(),
        log = k.log.display()
    ));
    let mut d = Driver::new(&config);
    d.tick().await;
    assert_eq!(
        d.last.pids.iter().copied().collect::<BTreeSet<i32>>(),
        k.pids(),
        "main process and every child"
    );
    assert!(
        d.last.processes >= 5,
        "Kamailio forks its workers: {}",
        d.last.processes
    );

    let shm = d.gauge("kamailio_shm").clone();
    assert!(shm.error.is_none(), "{:?}", shm.error);
    let used0 = shm.value.expect("shm real_used");
    assert_eq!(
        shm.limit,
        Some(8.0 * 1048576.0),
        "the limit is Kamailio's own shm total (-m 8)"
    );
    assert_eq!(shm.limit_source, Some(LimitSource::Found));
    assert!(used0 > 0.0 && used0 < 8.0 * 1048576.0);
    let pkg = d.gauge("kamailio_pkg").clone();
    assert!(pkg.error.is_none(), "{:?}", pkg.error);
    assert!(pkg.value.is_some_and(|v| v > 0.0));
    assert_eq!(
        pkg.limit,
        Some(8.0 * 1048576.0),
        "a process's pkg pool (-M 8)"
    );
    let pss0 = d.last.memory.unwrap().pss;

    // By name: every Kamailio on the host, this one's processes included.
    let by_name = parse_config(&format!(
        "[agent]\nstate_dir = \"{}\"\n[[service]]\nname = \"all-kamailio\"\nprocess = \"kamailio\"\n",
        dir.path().join("state2").display()
    ));
    let mut all = Driver::new(&by_name);
    all.tick().await;
    let all_pids: BTreeSet<i32> = all.last.pids.iter().copied().collect();
    assert!(
        k.pids().is_subset(&all_pids) || all.last.processes > 64,
        "{:?} not in {all_pids:?}",
        k.pids()
    );

    // The leak: requests stored in the htable, then more than the pool holds.
    k.flood_options(2000);
    d.tick_until(T, "shm real_used +1 MiB", |r| {
        r.gauges
            .iter()
            .any(|g| g.name == "kamailio_shm" && g.value.is_some_and(|v| v >= used0 + 1048576.0))
    })
    .await;
    assert!(
        d.last.memory.unwrap().pss >= pss0 + 1048576,
        "the shared pages show in summed PSS too"
    );
    k.flood_options(6000);
    let deadline = std::time::Instant::now() + T;
    while !d
        .events
        .iter()
        .any(|e| matches!(e, AgentEvent::LogAlert { .. }))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no log alert; events: {:?}",
            d.events
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        d.tick().await;
    }
    let alert = d.events.iter().find_map(|e| match e {
        AgentEvent::LogAlert {
            line,
            pattern,
            service,
            ..
        } => Some((line.clone(), pattern.clone(), service.clone())),
        _ => None,
    });
    let (line, pattern, service) = alert.unwrap();
    assert_eq!(service, "kamailio");
    assert!(
        line.contains("no more shm") || line.contains("could not allocate shared memory"),
        "{line}"
    );
    assert!(pattern == "no more shm" || pattern == "could not allocate shared memory");
    assert!(d.gauge("shm_exhausted").value.unwrap_or(0.0) >= 1.0);
    k.stop();
}

#[tokio::test]
async fn kamailio_followed_by_pidfile_and_by_name_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("kam-");
    let k = Kamailio::start(dir.path(), Some(&name), 16);
    let config = |service: &str, finder: String| {
        parse_config(&format!(
            "[agent]\nstate_dir = \"{}\"\nrescan_every = 3\n[[service]]\nname = \"{service}\"\n{finder}\n\
             [[service.gauge]]\nkind = \"kamailio_shm\"\nurl = \"{}\"\n",
            dir.path().join("state").display(),
            k.url()
        ))
    };
    let mut by_pidfile = Driver::new(&config(
        "kam-pidfile",
        format!("pidfile = \"{}\"", k.pidfile.display()),
    ));
    let mut by_name = Driver::new(&config("kam-name", format!("process = \"{name}\"")));
    by_pidfile.tick().await;
    by_name.tick().await;
    let before = k.pids();
    let set = |d: &Driver| d.last.pids.iter().copied().collect::<BTreeSet<i32>>();
    assert_eq!(set(&by_pidfile), before);
    assert_eq!(
        set(&by_name),
        before,
        "the process name finds exactly the same processes"
    );
    assert_eq!(by_name.last.main_pid, k.main_pid());
    assert_eq!(
        by_pidfile.gauge("kamailio_shm").limit,
        Some(16.0 * 1048576.0)
    );

    k.stop();
    k.launch();
    let after = k.pids();
    assert!(before.is_disjoint(&after));
    for d in [&mut by_pidfile, &mut by_name] {
        d.tick_until(T, "the restart", |r| {
            r.restarts_observed == 1 && r.processes == after.len()
        })
        .await;
        assert_eq!(set(d), after);
        assert_eq!(d.last.main_pid, k.main_pid());
        let restarts: Vec<&AgentEvent> = d
            .events
            .iter()
            .filter(|e| matches!(e, AgentEvent::ServiceRestarted { .. }))
            .collect();
        assert_eq!(restarts.len(), 1, "{:?}", d.events);
        // The detector started a new segment at the restart.
        let verdict = d.gauge("kamailio_shm").verdict.clone().expect("a verdict");
        let restart_at = d.last.last_restart_at.unwrap();
        assert!(
            verdict.segment_start >= restart_at - 1e-6,
            "{verdict:?} vs {restart_at}"
        );
        // The gauge reads the new instance.
        d.tick_until(T, "shm read again", |r| {
            r.gauges
                .iter()
                .any(|g| g.name == "kamailio_shm" && g.error.is_none() && g.value.is_some())
        })
        .await;
    }
    k.stop();
}
