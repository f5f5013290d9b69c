//! Shared test fixtures: real Kamailio, SIPp and dnsmasq processes on loopback, free ports,
//! TLS material, and running the `sipwatch` binary.
//!
//! A fixture whose program is missing fails the test with the command that installs it; nothing
//! is skipped. Every wait is a condition with a deadline.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules/";

/// Fails with an install hint when `program` is not on PATH.
pub fn require(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => p,
        None => panic!(
            "{program} is not installed; this test needs the real thing: apt-get install -y {package}"
        ),
    }
}

/// Waits until `cond` holds, polling every 20 ms, or panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Like [`wait_for`], and on timeout shows `context()` (a log) in the panic.
pub fn wait_for_or(
    what: &str,
    timeout: Duration,
    context: impl Fn() -> String,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "timed out after {timeout:?} waiting for {what}\n{}",
        context()
    );
}

/// A port free on 127.0.0.1 for both UDP and TCP (and the next one, for TLS), at the moment of asking.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let Ok(tcp) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let port = tcp.local_addr().unwrap().port();
        if port > 60000 {
            continue;
        }
        if UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port pair on 127.0.0.1");
}

/// Runs `sipwatch` with the given arguments and returns its output.
pub fn sipwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sipwatch"))
        .args(args)
        .env_remove("SIPWATCH_PASSWORD")
        .output()
        .expect("run sipwatch")
}

pub fn sipwatch_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sipwatch"));
    c.args(args).env_remove("SIPWATCH_PASSWORD");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run sipwatch")
}

/// `sipwatch probe OUTPUT -m register -u USER sip:127.0.0.1:PORT` with the password in
/// `SIPWATCH_PASSWORD`; `output` is `"--json"` or `"-v"`.
pub fn probe_register(output: &str, user: &str, port: u16, password: &str) -> Output {
    sipwatch_env(
        &[
            "probe",
            output,
            "-m",
            "register",
            "-u",
            user,
            &format!("sip:127.0.0.1:{port}"),
        ],
        &[("SIPWATCH_PASSWORD", password)],
    )
}

/// The JSON lines of a `probe --json` run.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A Kamailio started by the test, stopped (with all its children) on drop.
pub struct Kamailio {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub log: PathBuf,
    pub pidfile: PathBuf,
}

/// What the test Kamailio listens on and how it answers.
pub struct KamailioSpec {
    pub port: u16,
    pub ip: String,
    pub tls: Option<TlsFiles>,
    /// Extra `loadmodule`/`modparam` lines.
    pub modules: String,
    /// The body of `request_route`.
    pub route: String,
    /// Extra top-level config (event routes).
    pub extra: String,
    pub shm_mb: u32,
}

impl KamailioSpec {
    pub fn new(port: u16, route: &str) -> KamailioSpec {
        KamailioSpec {
            port,
            ip: "127.0.0.1".into(),
            tls: None,
            modules: String::new(),
            route: route.into(),
            extra: String::new(),
            shm_mb: 32,
        }
    }
}

/// The usual route: OPTIONS 200, REGISTER with digest (password `secret` for every user).
pub const ROUTE_OK: &str = r#"
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  if (is_method("OPTIONS")) { sl_send_reply("200", "OK"); exit; }
  if (is_method("REGISTER")) {
    if (!pv_www_authenticate("$td", "secret", "0")) { www_challenge("$td", "1"); exit; }
    if (!save("location")) { sl_reply_error(); }
    exit;
  }
  sl_send_reply("404", "Not here");
"#;

impl Kamailio {
    pub fn start(spec: KamailioSpec) -> Kamailio {
        let kamailio = require("kamailio", "kamailio kamailio-tls-modules");
        let dir = tempfile::tempdir().unwrap();
        let mut listen = format!(
            "listen=udp:{ip}:{p}\nlisten=tcp:{ip}:{p}\n",
            ip = spec.ip,
            p = spec.port
        );
        let mut tls_mod = String::new();
        if let Some(tls) = &spec.tls {
            assert!(
                Path::new(MODULES).join("tls.so").exists(),
                "Kamailio's TLS module is missing: apt-get install -y kamailio-tls-modules"
            );
            let tls_cfg = dir.path().join("tls.cfg");
            std::fs::write(
                &tls_cfg,
                format!(
                    "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\nprivate_key = {}\ncertificate = {}\n",
                    tls.key.display(),
                    tls.cert.display()
                ),
            )
            .unwrap();
            listen.push_str(&format!(
                "listen=tls:{}:{}\nenable_tls=yes\n",
                spec.ip,
                spec.port + 1
            ));
            tls_mod = format!(
                "loadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}\")\n",
                tls_cfg.display()
            );
        }
        let cfg = format!(
            r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=2
tcp_children=2
auto_aliases=no
{listen}
mpath="{MODULES}"
{tls_mod}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
{modules}
request_route {{
{route}
}}
{extra}
"#,
            modules = spec.modules,
            route = spec.route,
            extra = spec.extra,
        );
        let cfg_path = dir.path().join("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = dir.path().join("kamailio.log");
        let pidfile = dir.path().join("kamailio.pid");
        let check = Command::new(&kamailio)
            .args(["-c", "-f"])
            .arg(&cfg_path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "test Kamailio config does not check:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(&kamailio)
            .arg("-f")
            .arg(&cfg_path)
            .arg("-P")
            .arg(&pidfile)
            .arg("-w")
            .arg(dir.path())
            .args(["-m", &spec.shm_mb.to_string(), "-M", "8", "-E", "-DD"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start kamailio");
        let mut k = Kamailio {
            child: Some(child),
            dir,
            port: spec.port,
            log,
            pidfile,
        };
        let target: SocketAddr = format!("{}:{}", spec.ip, spec.port).parse().unwrap();
        k.wait_answering(target);
        k
    }

    /// Waits until Kamailio answers anything on UDP.
    fn wait_answering(&mut self, target: SocketAddr) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let local = sock.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut n = 0;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "kamailio exited with {status} during start:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            n += 1;
            let msg = format!(
                "OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKready{n}\r\nMax-Forwards: 70\r\nFrom: <sip:t@{local}>;tag=r\r\nTo: <sip:{target}>\r\nCall-ID: ready{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = sock.send_to(msg.as_bytes(), target);
            let mut buf = [0u8; 4096];
            if sock.recv_from(&mut buf).is_ok() {
                return;
            }
        }
        panic!(
            "kamailio did not answer on {target} within 15 s:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// All pids of this Kamailio (main and forked children).
    pub fn pids(&self) -> Vec<u32> {
        let Some(main) = self.child.as_ref().map(|c| c.id()) else {
            return vec![];
        };
        let mut pids = vec![main];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
                    let ppid: u32 = after
                        .split_whitespace()
                        .nth(1)
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    if ppid == main {
                        pids.push(pid);
                    }
                }
            }
        }
        pids
    }

    /// Stops Kamailio and waits until every one of its processes is gone and its ports are free.
    pub fn stop(&mut self) {
        let pids = self.pids();
        let Some(mut child) = self.child.take() else {
            return;
        };
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let alive = |p: &u32| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        };
        // Children normally exit with the main process; on a loaded machine give them a while,
        // then kill what is left so no orphan keeps the ports.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(alive) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in pids.iter().filter(|p| alive(p)) {
            unsafe {
                libc::kill(*p as i32, libc::SIGKILL);
            }
        }
        wait_for(
            "all kamailio processes to exit",
            Duration::from_secs(10),
            || !pids.iter().any(alive),
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a server certificate made for the test.
#[derive(Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub days: i64,
}

/// Makes a CA and a leaf certificate for `names` valid for `days` days, in `dir`.
pub fn make_tls(dir: &Path, names: &[&str], days: i64) -> TlsFiles {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sipwatch test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after =
        time::OffsetDateTime::now_utc() + time::Duration::days(days) + time::Duration::hours(1);
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        days,
    };
    std::fs::write(&files.ca, ca.pem()).unwrap();
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}

/// A background process (SIPp, dnsmasq) killed on drop.
pub struct Background {
    pub child: Child,
    pub name: String,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts SIPp as a UAS on 127.0.0.1:port with the scenario XML given.
pub fn sipp_uas(dir: &Path, port: u16, scenario: &str) -> Background {
    let sipp = require("sipp", "sip-tester");
    let path = dir.join(format!("uas-{port}.xml"));
    std::fs::write(&path, scenario).unwrap();
    let child = Command::new(sipp)
        .arg("-sf")
        .arg(&path)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipp");
    let bg = Background {
        child,
        name: "sipp".into(),
    };
    wait_for("sipp to bind its port", Duration::from_secs(10), || {
        UdpSocket::bind(("127.0.0.1", port)).is_err()
    });
    bg
}

/// A plain HTTP/1.1 GET on loopback; returns (status, body). No client library: the daemon's
/// endpoints must work for the simplest client.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The daemon (`sipwatch run`) started by a test, stopped with SIGTERM on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub listen: String,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, listen: &str, log: &Path) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
            .args(["run", "-c"])
            .arg(config)
            .env("SIPWATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .expect("start sipwatch run");
        let d = Daemon {
            child: Some(child),
            listen: listen.to_string(),
            log: log.to_path_buf(),
        };
        wait_for("the daemon's /healthz", Duration::from_secs(15), || {
            http_get(listen, "/healthz")
                .map(|(s, _)| s == 200)
                .unwrap_or(false)
        });
        d
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(&self.listen, path).unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the daemon did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The status of the component named `name` in a components.json body.
pub fn component_status(components: &serde_json::Value, name: &str) -> String {
    components["components"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("missing")
        .to_string()
}
