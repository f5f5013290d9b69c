//! The restart watchdog end to end: the `sipwatch agent` binary watching a real Kamailio (Debian's
//! `kamailio`, started by the test on loopback with an htable that keeps every OPTIONS: a real
//! shared-memory leak) and restarting it with the command method (a script the test writes, run
//! without a shell by the agent), verified by SIP OPTIONS. Decisions are read where a person reads
//! them: `GET /api/v1/restarts` of the agent, and `sipwatch restart plan`.

mod agent_support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_support::{
    free_port, free_udp_tcp_port, http_get, kamailio_binary, wait_until, RpcKamailioConfig,
};

const T: Duration = Duration::from_secs(60);

/// A Kamailio the test starts, with a restart script for the agent's command method.
struct Kamailio {
    dir: PathBuf,
    pidfile: PathBuf,
    log: PathBuf,
    sip_port: u16,
    http_port: u16,
    script: PathBuf,
}

impl Kamailio {
    fn start(dir: &Path, shm_mb: u32) -> Kamailio {
        Kamailio::start_with(dir, shm_mb, false)
    }

    /// `register`: also a registrar with digest (password `secret` for every user).
    fn start_with(dir: &Path, shm_mb: u32, register: bool) -> Kamailio {
        let (reg_modules, reg_route) = if register {
            (
                "loadmodule \"tm.so\"\nloadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\nloadmodule \"auth.so\"\n",
                "if ($rm == \"REGISTER\") {\n        if (!pv_www_authenticate(\"$td\", \"secret\", \"0\")) { www_challenge(\"$td\", \"1\"); exit; }\n        if (!save(\"location\")) { sl_reply_error(); }\n        exit;\n    }\n",
            )
        } else {
            ("", "")
        };
        let sip_port = free_udp_tcp_port();
        let http_port = free_port();
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(
            &cfg,
            RpcKamailioConfig {
                sip_port,
                http_port,
                // On TERM the main process waits this long for its children before killing them
                // (default 60 s, which on a loaded machine is longer than the tests' deadlines).
                settings: "exit_timeout=5\n",
                modules: reg_modules,
                route: reg_route,
                on_options:
                    "if ($ci =~ \"^leak-\") {\n            $sht(leak=>$ci) = $mb;\n        }",
            }
            .text(),
        )
        .unwrap();
        let pidfile = dir.join("kamailio.pid");
        let log = dir.join("kamailio.log");
        // The restart the agent runs: stop (TERM, wait), start again; no shell involved on the
        // agent's side, this script is the operator's own program.
        let script = dir.join("restart-kamailio");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nset -e\nPID=$(cat {pid} 2>/dev/null || true)\nif [ -n \"$PID\" ]; then kill -TERM \"$PID\" 2>/dev/null || true; \
                 for i in $(seq 1 100); do kill -0 \"$PID\" 2>/dev/null || break; grep -q ') Z ' /proc/$PID/stat 2>/dev/null && break; sleep 0.1; done; fi\n\
                 echo restart >> {dir}/restarts.txt\n\
                 exec {bin} -f {cfg} -P {pid} -w {dir} -m {shm_mb} -M 8 -E </dev/null >/dev/null 2>>{log}\n",
                pid = pidfile.display(),
                dir = dir.display(),
                bin = kamailio_binary().display(),
                cfg = cfg.display(),
                log = log.display(),
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let k = Kamailio {
            dir: dir.to_owned(),
            pidfile,
            log,
            sip_port,
            http_port,
            script,
        };
        let status = Command::new(&k.script)
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "kamailio did not start:\n{}",
            std::fs::read_to_string(&k.log).unwrap_or_default()
        );
        let _ = std::fs::remove_file(dir.join("restarts.txt"));
        wait_until("kamailio's pidfile", T, || k.main_pid().is_some());
        let addr = format!("127.0.0.1:{}", k.http_port);
        wait_until("kamailio's HTTP listener", T, || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        k
    }

    fn main_pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/RPC", self.http_port)
    }

    fn restarts_done(&self) -> usize {
        std::fs::read_to_string(self.dir.join("restarts.txt"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Sends OPTIONS with distinct Call-IDs, each stored whole in the htable.
    fn flood(&self, from: usize, count: usize) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = sock.local_addr().unwrap();
        let pad = "X".repeat(1500);
        for i in from..from + count {
            let msg = format!(
                "OPTIONS sip:leak@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{i}\r\n\
                 From: <sip:t@127.0.0.1>;tag=t{i}\r\nTo: <sip:leak@127.0.0.1>\r\nCall-ID: leak-{i}@wd\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nX-Pad: {pad}\r\nContent-Length: 0\r\n\r\n",
                port = self.sip_port
            );
            let _ = sock.send_to(msg.as_bytes(), ("127.0.0.1", self.sip_port));
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(3));
            }
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(pid) = self.main_pid() {
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

/// The agent binary, run by the test.
struct Agent {
    child: Child,
    listen: String,
    config: PathBuf,
    stderr: PathBuf,
}

impl Agent {
    fn start(dir: &Path, body: &str) -> Agent {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[agent]\nlisten = \"{listen}\"\ninterval = \"1s\"\nstate_dir = \"{}\"\n\n{body}",
                dir.join("state").display()
            ),
        )
        .unwrap();
        Agent::launch(config, listen, dir)
    }

    fn launch(config: PathBuf, listen: String, dir: &Path) -> Agent {
        let stderr = dir.join(format!("agent-{:.6}.log", agent_support::unix_now()));
        let child = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
            .args(["agent", "-c"])
            .arg(&config)
            .env("SIPWATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let a = Agent {
            child,
            listen,
            config,
            stderr,
        };
        wait_until("the agent's HTTP listener", T, || {
            std::net::TcpStream::connect(&a.listen).is_ok()
        });
        a
    }

    fn restart_process(self, dir: &Path) -> Agent {
        let (config, listen) = (self.config.clone(), self.listen.clone());
        drop(self);
        Agent::launch(config, listen, dir)
    }

    fn get(&self, path: &str) -> serde_json::Value {
        let (code, body) = http_get(&self.listen, path).unwrap();
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn restarts(&self) -> Vec<serde_json::Value> {
        self.get("/api/v1/restarts")["restarts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until the agent has read Kamailio's shared memory: it watches the service.
    fn wait_watching(&self) {
        wait_until("the agent watching", T, || {
            self.gauge("kamailio_shm").is_some()
        });
    }

    /// Waits up to `timeout` for a decision in the audit for which `matches` holds; returns it.
    fn wait_restart(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut found = None;
        wait_until(what, timeout, || {
            found = self.restarts().into_iter().find(|r| matches(r));
            found.is_some()
        });
        found.unwrap_or_default()
    }

    fn gauge(&self, name: &str) -> Option<(f64, f64)> {
        let v = self.get("/api/v1/services");
        let g = v["services"][0]["gauges"]
            .as_array()?
            .iter()
            .find(|g| g["name"] == name)?
            .clone();
        Some((g["value"].as_f64()?, g["limit"].as_f64()?))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn service_toml(k: &Kamailio, restart: &str) -> String {
    format!(
        r#"[[service]]
name = "kamailio"
pidfile = "{pid}"
[[service.gauge]]
kind = "kamailio_shm"
url = "{url}"
[[service.gauge]]
kind = "log_alert"
name = "shm_exhausted"
file = "{log}"
patterns = ["no more shm", "WATCHDOG-TEST"]
[service.restart]
method = "command"
command = ["{script}"]
timeout = "30s"
{restart}
[service.restart.verify]
uri = "sip:127.0.0.1:{sip}"
within = "20s"
"#,
        pid = k.pidfile.display(),
        url = k.url(),
        log = k.log.display(),
        script = k.script.display(),
        sip = k.sip_port,
    )
}

fn append_log(k: &Kamailio, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&k.log)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

#[test]
fn threshold_restart_before_no_more_shm_verified_by_options() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(dir.path(), 8);
    let old = k.main_pid().unwrap();
    let agent = Agent::start(
        dir.path(),
        &service_toml(&k, "threshold = \"kamailio_shm > 60% for 2s\"\ncooldown = \"1h\"\nmax_restarts = \"2 per 1d\""),
    );
    wait_until("the shm gauge read", T, || {
        agent.gauge("kamailio_shm").is_some()
    });
    // Leak in steps until the pool is past the threshold, then stop and watch.
    let mut sent = 0;
    let crossed = loop {
        let (v, l) = agent.gauge("kamailio_shm").unwrap();
        if v > 0.62 * l {
            break Instant::now();
        }
        assert!(
            sent < 40_000,
            "the htable leak did not fill the pool: {v} of {l}"
        );
        k.flood(sent, 300);
        sent += 300;
        std::thread::sleep(Duration::from_millis(400));
    };
    agent.wait_restart("a verified restart in the audit", T, |r| {
        r["decision"] == "restarted"
    });
    let took = crossed.elapsed();
    let records = agent.restarts();
    let r = records
        .iter()
        .find(|r| r["decision"] == "restarted")
        .unwrap();
    println!(
        "BENCH threshold_to_verified_restart_seconds={:.2}",
        took.as_secs_f64()
    );
    assert_eq!(r["trigger"], "threshold", "{r}");
    assert_eq!(r["verify"], "ok", "{r}");
    assert_eq!(r["old_pid"].as_i64(), Some(i64::from(old)), "{r}");
    assert_ne!(r["new_pid"].as_i64(), Some(i64::from(old)), "{r}");
    assert_eq!(r["new_pid"].as_i64(), k.main_pid().map(i64::from), "{r}");
    assert!(r["summary"].as_str().unwrap().contains("SIP OK"), "{r}");
    assert!(r["at"].as_str().unwrap().ends_with('Z'), "RFC 3339: {r}");
    assert_eq!(k.restarts_done(), 1, "one restart");
    let log = std::fs::read_to_string(&k.log).unwrap();
    assert!(
        !log.contains("no more shm"),
        "restarted before the pool ran out:\n{}",
        &log[log.len().saturating_sub(2000)..]
    );
    // The pool is fresh: the threshold no longer holds, no second restart.
    let (v, l) = agent.gauge("kamailio_shm").unwrap();
    assert!(v < 0.5 * l, "shm after the restart: {v} of {l}");
    let metrics = http_get(&agent.listen, "/metrics").unwrap().1;
    assert!(
        metrics.contains("sipwatch_restarts_total{service=\"kamailio\",reason=\"threshold\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "sipwatch_restart_decisions_total{service=\"kamailio\",decision=\"restarted\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("sipwatch_restarts_total{service=\"kamailio\",reason=\"observed\"} 0"),
        "the watchdog's own restart is not counted as observed: {metrics}"
    );
    // The alerting path got one line.
    assert!(
        agent.log_text().contains("watchdog restart"),
        "{}",
        agent.log_text()
    );
}

#[test]
fn log_line_restart_then_cooldown_and_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(dir.path(), 16);
    let agent = Agent::start(
        dir.path(),
        &service_toml(&k, "on_log = [\"shm_exhausted\"]\ncooldown = \"1h\""),
    );
    agent.wait_watching();
    append_log(
        &k,
        "ERROR: WATCHDOG-TEST no more shm memory (simulated line)",
    );
    agent.wait_restart("a restart on the log line", T, |r| {
        r["decision"] == "restarted"
    });
    let r = agent.restarts()[0].clone();
    assert_eq!(
        (r["trigger"].as_str(), r["verify"].as_str()),
        (Some("log"), Some("ok")),
        "{r}"
    );
    // A second line within the cooldown: recorded, skipped, nothing restarted.
    append_log(&k, "ERROR: WATCHDOG-TEST again");
    agent.wait_restart("the cooldown decision", T, |r| r["why"] == "cooldown");
    assert_eq!(k.restarts_done(), 1);
    let s = agent
        .restarts()
        .iter()
        .find(|r| r["why"] == "cooldown")
        .cloned()
        .unwrap();
    assert_eq!(s["decision"], "skipped", "{s}");
    // A person: `restart now` goes through the same guards; `--force` passes them, audited.
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
            .args(args)
            .arg("-c")
            .arg(&agent.config)
            .env("USER", "alice")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["restart", "now", "kamailio"]);
    agent.wait_restart("the manual request refused by the cooldown", T, |r| {
        r["trigger"] == "manual" && r["why"] == "cooldown"
    });
    assert_eq!(k.restarts_done(), 1);
    run(&["restart", "now", "kamailio", "--force"]);
    agent.wait_restart("the forced restart", T, |r| {
        r["trigger"] == "manual" && r["decision"] == "restarted"
    });
    let f = agent
        .restarts()
        .into_iter()
        .find(|r| r["trigger"] == "manual" && r["decision"] == "restarted")
        .unwrap();
    assert!(
        f["forced_by"].as_str().unwrap().contains("alice (uid "),
        "who forced it is audited: {f}"
    );
    assert_eq!(k.restarts_done(), 2);
    drop(agent);

    // Dry run: the same line records would_restart and restarts nothing.
    let dir2 = tempfile::tempdir().unwrap();
    let pid = k.main_pid();
    let agent = Agent::start(
        dir2.path(),
        &service_toml(&k, "on_log = [\"shm_exhausted\"]\ndry_run = true"),
    );
    agent.wait_watching();
    std::thread::sleep(Duration::from_millis(1500));
    append_log(&k, "ERROR: WATCHDOG-TEST dry");
    agent.wait_restart("would_restart", T, |r| r["decision"] == "would_restart");
    assert_eq!(k.main_pid(), pid, "dry run restarts nothing");
    assert_eq!(k.restarts_done(), 2);
}

#[test]
fn failed_verification_gives_one_critical_alert_and_no_loop() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(dir.path(), 16);
    // The verification asks a port where nothing answers.
    let wrong = free_udp_tcp_port();
    let body = service_toml(&k, "on_log = [\"shm_exhausted\"]\ncooldown = \"1s\"")
        .replace(
            &format!("sip:127.0.0.1:{}", k.sip_port),
            &format!("sip:127.0.0.1:{wrong}"),
        )
        .replace("within = \"20s\"", "within = \"4s\"");
    let agent = Agent::start(dir.path(), &body);
    agent.wait_watching();
    append_log(&k, "ERROR: WATCHDOG-TEST first");
    agent.wait_restart("the failed verification", T, |r| r["decision"] == "failed");
    let f = agent
        .restarts()
        .iter()
        .find(|r| r["decision"] == "failed")
        .cloned()
        .unwrap();
    assert_eq!(
        (f["why"].as_str(), f["verify"].as_str()),
        (Some("verify_failed"), Some("failed")),
        "{f}"
    );
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("did not answer OPTIONS"),
        "{f}"
    );
    for i in 0..3 {
        append_log(&k, &format!("ERROR: WATCHDOG-TEST more {i}"));
    }
    wait_until("paused decisions", T, || {
        agent
            .restarts()
            .iter()
            .filter(|r| r["why"] == "paused")
            .count()
            >= 3
    });
    assert_eq!(k.restarts_done(), 1, "no loop: one restart only");
    let critical = agent.log_text().matches("watchdog restart failed").count();
    assert_eq!(critical, 1, "one critical alert:\n{}", agent.log_text());
    // A person resumes; the next line restarts again (and fails again: still one alert per failure).
    let out = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
        .args(["restart", "resume", "kamailio", "-c"])
        .arg(&agent.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    agent.wait_restart("resumed in the audit", T, |r| r["why"] == "resumed");
    wait_until("the failure alert resolved", T, || {
        agent
            .log_text()
            .contains("watchdog resumed after a failed restart")
    });
}

#[test]
fn deferred_restart_survives_an_agent_restart_and_runs_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(dir.path(), 16);
    // A window that opens at the next whole minute (at least 20 s from now) and lasts 10 minutes.
    let now = chrono::Utc::now();
    let mut open = chrono::Timelike::with_nanosecond(&now, 0).unwrap()
        + chrono::Duration::seconds(60 - i64::from(chrono::Timelike::second(&now)));
    if (open - now).num_seconds() < 20 {
        open += chrono::Duration::seconds(60);
    }
    let close = open + chrono::Duration::minutes(10);
    let window = format!(
        "daily {}-{} UTC",
        open.format("%H:%M"),
        close.format("%H:%M")
    );
    let agent = Agent::start(
        dir.path(),
        &service_toml(
            &k,
            &format!("on_log = [\"shm_exhausted\"]\nwindows = [\"{window}\"]"),
        ),
    );
    agent.wait_watching();
    append_log(&k, "ERROR: WATCHDOG-TEST deferred");
    agent.wait_restart("the deferral", T, |r| {
        r["decision"] == "deferred" && r["why"] == "window"
    });
    let metrics = http_get(&agent.listen, "/metrics").unwrap().1;
    let next = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("sipwatch_restart_next_timestamp_seconds{service=\"kamailio\"} ")
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no next restart metric: {metrics}"));
    assert_eq!(
        next as i64,
        open.timestamp(),
        "the deferred restart is the next one"
    );
    // plan shows it.
    let plan = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
        .args(["restart", "plan", "--json", "-c"])
        .arg(&agent.config)
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let s = &plan["services"][0];
    assert_eq!(s["window_open"], false, "{plan}");
    assert_eq!(s["would_restart_now"], false, "{plan}");
    assert!(s["planned"]["at"].as_str().is_some(), "{plan}");
    // The agent restarts while the restart is deferred.
    let agent = agent.restart_process(dir.path());
    assert_eq!(k.restarts_done(), 0);
    let deadline = Duration::from_secs(100);
    let r = agent.wait_restart("the deferred restart, in the window", deadline, |r| {
        r["decision"] == "restarted"
    });
    assert_eq!(r["trigger"], "log", "{r}");
    let at = chrono::DateTime::parse_from_rfc3339(r["at"].as_str().unwrap()).unwrap();
    assert!(at >= open, "not before the window opened: {at} < {open}");
    assert_eq!(k.restarts_done(), 1);
}

#[test]
fn drain_waits_for_a_gauge_the_test_controls_then_undrains() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(dir.path(), 16);
    let active = dir.path().join("active");
    std::fs::write(&active, "5\n").unwrap();
    let drained = dir.path().join("drained");
    let body = service_toml(&k, "on_log = [\"shm_exhausted\"]").replace(
        "[service.restart.verify]",
        &format!(
            "[service.restart.drain]\ncommand = [\"touch\", \"{}\"]\nuntil = \"active_dialogs <= 0\"\nmax_wait = \"60s\"\nundrain_rpc = {{ url = \"{}\", method = \"htable.sets\", params = [\"leak\", \"undrained\", \"yes\"] }}\n[service.restart.verify]",
            drained.display(),
            k.url()
        ),
    ).replace(
        "[service.restart]",
        &format!("[[service.gauge]]\nkind = \"command\"\nname = \"active_dialogs\"\ncommand = \"cat {}\"\ndetect = false\n[service.restart]", active.display()),
    );
    let agent = Agent::start(dir.path(), &body);
    agent.wait_watching();
    append_log(&k, "ERROR: WATCHDOG-TEST drain");
    wait_until("the drain command", T, || drained.exists());
    let pid = k.main_pid();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(k.main_pid(), pid, "no restart while dialogs are active");
    assert!(!rpc(&k, "htable.get", r#"["leak", "undrained"]"#).contains("yes"));
    std::fs::write(&active, "0\n").unwrap();
    let r = agent.wait_restart("the restart after draining", T, |r| {
        r["decision"] == "restarted"
    });
    assert!(r["drained_seconds"].as_f64().unwrap() >= 3.0, "{r}");
    assert!(r["summary"].as_str().unwrap().contains("drained in"), "{r}");
    // The undrain JSON-RPC call reached the restarted Kamailio (its htable is new).
    wait_until("undrained by JSON-RPC after the verification", T, || {
        rpc(&k, "htable.get", r#"["leak", "undrained"]"#).contains("yes")
    });
}

/// A JSON-RPC call to Kamailio over HTTP; the answer's body.
fn rpc(k: &Kamailio, method: &str, params: &str) -> String {
    use std::io::{Read, Write};
    let body =
        format!(r#"{{"jsonrpc": "2.0", "method": "{method}", "params": {params}, "id": 1}}"#);
    let addr = format!("127.0.0.1:{}", k.http_port);
    let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(
        s,
        "POST /RPC HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The daemon (`sipwatch run`), started by the test.
struct Daemon {
    child: Child,
    listen: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// `n` Kamailios (16 MB of shared memory each), each in its own folder under `dir`.
fn kamailios(dir: &Path, n: usize) -> Vec<Kamailio> {
    (0..n)
        .map(|i| {
            let d = dir.join(format!("k{i}"));
            std::fs::create_dir_all(&d).unwrap();
            Kamailio::start(&d, 16)
        })
        .collect()
}

/// The daemon (`sipwatch run`, its log in `dir/daemon.log`) probing every 1 s the Kamailios as
/// the targets `GROUP-1`, `GROUP-2`, ... of `group` (`min_up`), down after `fail_threshold`
/// failures, agents admitted with `token` (written to the file returned). Returns once the daemon
/// sees every target up.
fn start_daemon(
    dir: &Path,
    ks: &[Kamailio],
    (group, min_up): (&str, usize),
    fail_threshold: u32,
    token: &str,
) -> (Daemon, PathBuf) {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let token = &token_file;
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cfg = format!(
        "[http]\nlisten = \"{listen}\"\n[store]\npath = \"{}\"\n[agents]\ntoken_file = \"{}\"\n[defaults]\ninterval = \"1s\"\ntimeout = \"1s\"\nfail_threshold = {fail_threshold}\nok_threshold = 1\n[[group]]\nname = \"{group}\"\nmin_up = {min_up}\n",
        dir.join("state.db").display(),
        token.display()
    );
    for (i, k) in ks.iter().enumerate() {
        cfg.push_str(&format!(
            "[[target]]\nname = \"{group}-{}\"\nuri = \"sip:127.0.0.1:{}\"\ngroup = \"{group}\"\n",
            i + 1,
            k.sip_port
        ));
    }
    let daemon_cfg = dir.join("sipwatch.toml");
    std::fs::write(&daemon_cfg, cfg).unwrap();
    let daemon = Daemon {
        child: Command::new(env!("CARGO_BIN_EXE_sipwatch"))
            .args(["run", "-c"])
            .arg(&daemon_cfg)
            .env("SIPWATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
            .spawn()
            .unwrap(),
        listen,
    };
    let names: Vec<String> = (1..=ks.len()).map(|i| format!("{group}-{i}")).collect();
    wait_until("the daemon sees every target up", T, || {
        std::net::TcpStream::connect(&daemon.listen).is_ok() && {
            let (_, body) = http_get(&daemon.listen, "/api/v2/components.json").unwrap();
            serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["components"].as_array().cloned())
                .is_some_and(|c| {
                    names.iter().all(|n| {
                        c.iter()
                            .any(|c| c["name"] == n.as_str() && c["status"] == "operational")
                    })
                })
        }
    });
    (daemon, token_file)
}

#[test]
fn two_agents_of_a_group_of_three_with_min_up_2_take_turns_by_lease() {
    let dir = tempfile::tempdir().unwrap();
    let ks = kamailios(dir.path(), 3);
    let (daemon, token) = start_daemon(dir.path(), &ks, ("fe", 2), 1, "s3cret-token-for-agents");
    let listen = daemon.listen.clone();
    let daemon_log = dir.path().join("daemon.log");
    let agents: Vec<Agent> = (0..2)
        .map(|i| {
            let d = dir.path().join(format!("agent{i}"));
            std::fs::create_dir_all(&d).unwrap();
            let body = format!(
                "[daemon]\nurl = \"http://{listen}\"\ntoken_file = \"{}\"\nreport_interval = \"1s\"\n\n{}",
                token.display(),
                service_toml(&ks[i], &format!("on_log = [\"shm_exhausted\"]\ntarget = \"fe-{}\"\nlease_ttl = \"2m\"", i + 1))
            );
            Agent::start(&d, &body)
        })
        .collect();
    for a in &agents {
        a.wait_watching();
    }
    // Both ask at once.
    append_log(&ks[0], "ERROR: WATCHDOG-TEST both");
    append_log(&ks[1], "ERROR: WATCHDOG-TEST both");
    wait_until(
        "both restarted, one after the other",
        Duration::from_secs(120),
        || {
            agents
                .iter()
                .all(|a| a.restarts().iter().any(|r| r["decision"] == "restarted"))
        },
    );
    let done: Vec<serde_json::Value> = agents
        .iter()
        .map(|a| {
            a.restarts()
                .into_iter()
                .find(|r| r["decision"] == "restarted")
                .unwrap()
        })
        .collect();
    let waited: Vec<bool> = agents
        .iter()
        .map(|a| {
            a.restarts().iter().any(|r| {
                r["decision"] == "deferred" && (r["why"] == "lease" || r["why"] == "quorum")
            })
        })
        .collect();
    assert_eq!(
        waited.iter().filter(|w| **w).count(),
        1,
        "exactly one waited for a lease: {waited:?}"
    );
    let (first, second) = if waited[0] {
        (&done[1], &done[0])
    } else {
        (&done[0], &done[1])
    };
    let t =
        |v: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert!(
        t(&second["at"]) >= t(&first["verified_at"]),
        "the second restart began after the first was verified: {first} / {second}"
    );
    assert_eq!(ks[2].restarts_done(), 0);
    // The daemon's page shows the restarts the agents reported (both agents run on this one
    // host, so the page shows the latest report of the host: at least one restart).
    wait_until("the Restarts section", T, || {
        let (_, page) = http_get(&daemon.listen, "/").unwrap();
        page.contains("id=\"restarts\"") && page.contains("<td>restarted <span")
    });
    let log = std::fs::read_to_string(&daemon_log).unwrap();
    assert!(log.contains("restart lease refused"), "{log}");
    assert!(
        !log.contains("s3cret-token"),
        "the token never reaches the log"
    );
}

#[test]
fn forecast_restart_planned_into_a_window_before_exhaustion() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(dir.path(), 16);
    // One-minute windows every other minute for the next half hour (UTC): a forecast must pick
    // the last one that opens before the exhaustion minus the margin.
    let now = chrono::Utc::now();
    let base =
        chrono::Timelike::with_nanosecond(&chrono::Timelike::with_second(&now, 0).unwrap(), 0)
            .unwrap();
    let windows: Vec<String> = (1..30)
        .step_by(2)
        .map(|i| {
            let s = base + chrono::Duration::minutes(i);
            let e = s + chrono::Duration::minutes(1);
            format!("\"daily {}-{} UTC\"", s.format("%H:%M"), e.format("%H:%M"))
        })
        .collect();
    // The detector's time constants scaled from hours to seconds (the leak here fills the pool in
    // minutes, not days).
    let body = service_toml(
        &k,
        &format!(
            "on_leak = true\nmargin = \"10s\"\nemergency_horizon = \"5s\"\nwindows = [{}]",
            windows.join(", ")
        ),
    )
    .replace(
        "[[service.gauge]]\nkind = \"kamailio_shm\"",
        "[service.leak]\nbucket = \"2s\"\nenvelope = \"10s\"\nmin_span = \"20s\"\nmax_span = \"10m\"\nno_limit_span = \"10m\"\nwindow = \"1h\"\nhorizon = \"1d\"\ndaily_guard = false\n[[service.gauge]]\nkind = \"kamailio_shm\"",
    )
    .replace("within = \"20s\"", "within = \"20s\"\nmemory_drop = \"40%\"\ngauge = \"kamailio_shm\"");
    let agent = Agent::start(dir.path(), &body);
    agent.wait_watching();
    // A steady leak: 30 stored OPTIONS a second.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        let port = k.sip_port;
        std::thread::spawn(move || {
            // Only the port is used; with no pidfile, dropping it stops nothing.
            let k = Kamailio {
                dir: PathBuf::new(),
                pidfile: PathBuf::new(),
                log: PathBuf::new(),
                sip_port: port,
                http_port: 0,
                script: PathBuf::new(),
            };
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                k.flood(i, 3);
                i += 3;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let started = Instant::now();
    let mut last_eta: Option<(Instant, f64)> = None;
    let mut planned: Option<serde_json::Value> = None;
    let restarted = loop {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no forecast restart within 10 minutes"
        );
        let v = agent.get("/api/v1/services");
        if let Some(eta) = v["services"][0]["gauges"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["name"] == "kamailio_shm").cloned())
            .and_then(|g| {
                if g["leak_suspected"] == true {
                    g["verdict"]["eta_to_limit_secs"].as_f64()
                } else {
                    None
                }
            })
        {
            last_eta = Some((Instant::now(), eta));
        }
        let records = agent.restarts();
        if planned.is_none() {
            planned = records
                .iter()
                .find(|r| r["decision"] == "deferred" && r["why"] == "forecast")
                .cloned();
        }
        if let Some(r) = records
            .iter()
            .find(|r| r["decision"] == "restarted" || r["decision"] == "failed")
        {
            break r.clone();
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flooder.join().unwrap();
    assert_eq!(restarted["trigger"], "forecast", "{restarted}");
    assert_eq!(restarted["verify"], "ok", "{restarted}");
    let planned = planned.expect("the forecast restart was planned (deferred) before it ran");
    let at = chrono::DateTime::parse_from_rfc3339(restarted["at"].as_str().unwrap()).unwrap();
    assert!(
        chrono::Timelike::second(&at) < 5,
        "restarted as a window opened: {at} ({planned})"
    );
    let (seen, eta) = last_eta.expect("the leak was raised with a time to the limit");
    let _ = seen;
    println!("BENCH forecast_restart_before_exhaustion_seconds={eta:.0} (the detector's time to the limit at the last sample before the restart)");
    assert!(
        eta > 10.0,
        "restarted at least the margin before the forecast exhaustion: {eta}"
    );
    let log = std::fs::read_to_string(&k.log).unwrap();
    assert!(
        !log.contains("no more shm"),
        "restarted before the pool ran out"
    );
}

#[test]
fn probe_failure_reported_by_the_daemon_restarts_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let ks = kamailios(dir.path(), 2);
    let (daemon, token) = start_daemon(dir.path(), &ks, ("rec", 1), 2, "another-agent-token");
    let listen = daemon.listen.clone();
    let status = |name: &str| -> Option<String> {
        let (_, body) = http_get(&daemon.listen, "/api/v2/components.json").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["components"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["status"].as_str().map(str::to_owned))
    };
    let body = format!(
        "[daemon]\nurl = \"http://{listen}\"\ntoken_file = \"{}\"\n\n{}",
        token.display(),
        service_toml(&ks[0], "on_probe_failure = true\ntarget = \"rec-1\"")
    );
    let agent = Agent::start(dir.path(), &body);
    agent.wait_watching();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        agent.restarts().is_empty(),
        "nothing to do while the target is up"
    );
    // Kamailio stops answering (its processes gone); the daemon marks rec-1 down; the agent
    // restarts it (the command starts it again) and the probe verifies it.
    let pid = ks[0].main_pid().unwrap();
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let r = agent.wait_restart("the restart on the probe failure", T, |r| {
        r["decision"] == "restarted"
    });
    assert_eq!(
        (r["trigger"].as_str(), r["verify"].as_str()),
        (Some("probe"), Some("ok")),
        "{r}"
    );
    assert!(r["summary"].as_str().unwrap().contains("rec-1 down"), "{r}");
    wait_until("rec-1 up again in the daemon", T, || {
        status("rec-1").as_deref() == Some("operational")
    });
}

#[test]
fn signal_method_with_a_supervisor_that_brings_kamailio_back() {
    let dir = tempfile::tempdir().unwrap();
    // Reuse the config the Kamailio helper writes, then run Kamailio in the foreground under a
    // supervisor loop (as runit or a container runtime would).
    let k = Kamailio::start(dir.path(), 16);
    let pid0 = k.main_pid().unwrap();
    unsafe {
        libc::kill(pid0, libc::SIGTERM);
    }
    // Gone, or a zombie: the daemonized process's parent is PID 1, which in a container may
    // not reap it at once. Kamailio kills children that do not exit within `exit_timeout`.
    wait_until("the daemonized kamailio gone", T, || {
        std::fs::read_to_string(format!("/proc/{pid0}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    });
    let supervisor = dir.path().join("supervise");
    std::fs::write(
        &supervisor,
        format!(
            "#!/bin/sh\nwhile [ ! -e {stop} ]; do\n  {bin} -f {cfg} -P {pid} -w {dir} -m 16 -M 8 -E -DD </dev/null >/dev/null 2>>{log}\n  sleep 0.2\ndone\n",
            stop = dir.path().join("stop").display(),
            bin = kamailio_binary().display(),
            cfg = dir.path().join("kamailio.cfg").display(),
            pid = k.pidfile.display(),
            dir = dir.path().display(),
            log = k.log.display(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&supervisor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = std::fs::remove_file(&k.pidfile);
    let mut sup = Command::new(&supervisor)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("kamailio under the supervisor", T, || {
        k.main_pid().is_some_and(|p| p != pid0)
            && std::net::TcpStream::connect(("127.0.0.1", k.http_port)).is_ok()
    });
    let old = k.main_pid().unwrap();
    let body = service_toml(&k, "on_log = [\"shm_exhausted\"]\nsignal = \"TERM\"")
        .replace("method = \"command\"", "method = \"signal\"")
        .replace(&format!("command = [\"{}\"]\n", k.script.display()), "");
    let agent = Agent::start(dir.path(), &body);
    agent.wait_watching();
    append_log(&k, "ERROR: WATCHDOG-TEST signal");
    let r = agent.wait_restart("the signal restart, verified", T, |r| {
        r["decision"] == "restarted" || r["decision"] == "failed"
    });
    std::fs::write(dir.path().join("stop"), "").unwrap();
    assert_eq!(
        (r["decision"].as_str(), r["verify"].as_str()),
        (Some("restarted"), Some("ok")),
        "{r}"
    );
    assert_eq!(r["old_pid"].as_i64(), Some(i64::from(old)), "{r}");
    assert_ne!(r["new_pid"].as_i64(), Some(i64::from(old)), "{r}");
    assert_eq!(k.restarts_done(), 0, "the restart script was not used");
    drop(agent);
    if let Some(p) = k.main_pid() {
        unsafe {
            libc::kill(p, libc::SIGTERM);
        }
    }
    let _ = sup.wait();
}

#[test]
fn drain_timeout_gives_up_restarts_nothing_and_undrains() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(dir.path(), 16);
    let active = dir.path().join("active");
    std::fs::write(&active, "7\n").unwrap();
    let undrained = dir.path().join("undrained");
    let body = service_toml(&k, "on_log = [\"shm_exhausted\"]\ncooldown = \"1h\"")
        .replace(
            "[service.restart.verify]",
            &format!(
                "[service.restart.drain]\nuntil = \"active_dialogs <= 0\"\nmax_wait = \"3s\"\non_drain_timeout = \"give_up\"\nundrain_command = [\"touch\", \"{}\"]\n[service.restart.verify]",
                undrained.display()
            ),
        )
        .replace(
            "[service.restart]",
            &format!(
                "[[service.gauge]]\nkind = \"command\"\nname = \"active_dialogs\"\ncommand = \"cat {}\"\ndetect = false\n[service.restart]",
                active.display()
            ),
        );
    let agent = Agent::start(dir.path(), &body);
    agent.wait_watching();
    let pid = k.main_pid();
    append_log(&k, "ERROR: WATCHDOG-TEST busy");
    agent.wait_restart("the drain timeout", T, |r| r["why"] == "drain_timeout");
    let r = agent
        .restarts()
        .into_iter()
        .find(|r| r["why"] == "drain_timeout")
        .unwrap();
    assert_eq!(r["decision"], "skipped", "{r}");
    assert!(r["drained_seconds"].as_f64().unwrap() >= 3.0, "{r}");
    assert!(undrained.exists(), "undrained after giving up");
    assert_eq!(k.main_pid(), pid, "nothing restarted");
    assert_eq!(k.restarts_done(), 0);
    // The attempt counts for the cooldown: another line does not drain again at once.
    append_log(&k, "ERROR: WATCHDOG-TEST busy again");
    agent.wait_restart("the cooldown", T, |r| r["why"] == "cooldown");
    assert_eq!(k.restarts_done(), 0);
}

#[test]
fn verification_by_register_with_digest() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start_with(dir.path(), 16, true);
    let pw = dir.path().join("verify.pw");
    std::fs::write(&pw, "secret\n").unwrap();
    let wrong = dir.path().join("wrong.pw");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let body = |file: &Path| {
        service_toml(&k, "on_log = [\"shm_exhausted\"]").replace(
            "within = \"20s\"",
            &format!(
                "within = \"8s\"\nprobe = \"register\"\nusername = \"watchdog\"\ndomain = \"127.0.0.1\"\npassword_file = \"{}\"",
                file.display()
            ),
        )
    };
    let agent = Agent::start(dir.path(), &body(&pw));
    agent.wait_watching();
    append_log(&k, "ERROR: WATCHDOG-TEST register");
    agent.wait_restart("the restart verified by REGISTER", T, |r| {
        r["decision"] == "restarted" || r["decision"] == "failed"
    });
    let r = agent.restarts()[0].clone();
    assert_eq!(
        (r["decision"].as_str(), r["verify"].as_str()),
        (Some("restarted"), Some("ok")),
        "{r}"
    );
    drop(agent);
    // A wrong password: the REGISTER is refused, the verification fails.
    let dir2 = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir2.path(), &body(&wrong));
    agent.wait_watching();
    std::thread::sleep(Duration::from_millis(1500));
    append_log(&k, "ERROR: WATCHDOG-TEST register wrong");
    agent.wait_restart("the failed verification", T, |r| r["decision"] == "failed");
    let f = agent
        .restarts()
        .into_iter()
        .find(|r| r["decision"] == "failed")
        .unwrap();
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("did not answer REGISTER"),
        "{f}"
    );
    assert!(
        !agent.log_text().contains("not-the-password"),
        "the password never reaches the log"
    );
}
