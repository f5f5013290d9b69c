//! A real Kamailio (Debian `kamailio`) on loopback, with a config the test writes: listeners,
//! modules and the request route are the test's; start waits until it answers OPTIONS, stop
//! waits until every one of its processes is gone.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::programs::require;
use crate::tls::TlsFiles;
use crate::wait::wait_until;

/// How every test Kamailio starts: two UDP and two TCP workers, logging to stderr.
const HEADER: &str =
    "#!KAMAILIO\ndebug=2\nlog_stderror=yes\nfork=yes\nchildren=2\ntcp_children=2\n";

/// The Kamailio binary; fails with the install command when it is missing.
pub fn kamailio_binary() -> PathBuf {
    require("kamailio", "kamailio")
}

/// Kamailio's module directory (the one holding `module`, e.g. `"xhttp.so"`), without a
/// trailing slash; fails with the install command when it is missing.
pub fn kamailio_modules_dir(module: &str) -> String {
    for dir in [
        "/usr/lib/x86_64-linux-gnu/kamailio/modules",
        "/usr/lib/aarch64-linux-gnu/kamailio/modules",
        "/usr/lib/kamailio/modules",
    ] {
        if Path::new(dir).join(module).exists() {
            return dir.to_owned();
        }
    }
    panic!(
        "Kamailio's module {module} is not installed; install with: apt-get install -y kamailio"
    );
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
        let kamailio = kamailio_binary();
        let mpath = kamailio_modules_dir("tm.so");
        let dir = tempfile::tempdir().unwrap();
        let mut listen = format!(
            "listen=udp:{ip}:{p}\nlisten=tcp:{ip}:{p}\n",
            ip = spec.ip,
            p = spec.port
        );
        let mut tls_mod = String::new();
        if let Some(tls) = &spec.tls {
            assert!(
                Path::new(&mpath).join("tls.so").exists(),
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
            r#"{HEADER}auto_aliases=no
{listen}
mpath="{mpath}/"
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
        wait_until(
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

/// What a Kamailio watched by the agent runs: SIP on UDP `sip_port`, JSON-RPC over HTTP (xhttp +
/// jsonrpcs) at `http://127.0.0.1:HTTP_PORT/RPC`, and an htable `leak` the route can fill.
pub struct RpcKamailioConfig<'a> {
    pub sip_port: u16,
    pub http_port: u16,
    /// Top-level settings after the usual ones (e.g. `exit_timeout=5`).
    pub settings: &'a str,
    /// More `loadmodule` lines.
    pub modules: &'a str,
    /// Route lines before the OPTIONS answer (e.g. a registrar).
    pub route: &'a str,
    /// What an OPTIONS does before its 200 (e.g. store it in the htable).
    pub on_options: &'a str,
}

impl RpcKamailioConfig<'_> {
    /// The config file's text.
    pub fn text(&self) -> String {
        format!(
            r#"{HEADER}{settings}listen=udp:127.0.0.1:{sip_port}
listen=tcp:127.0.0.1:{http_port}
mpath="{mpath}/"
loadmodule "sl.so"
loadmodule "kex.so"
loadmodule "pv.so"
loadmodule "htable.so"
loadmodule "xhttp.so"
loadmodule "jsonrpcs.so"
{modules}modparam("jsonrpcs", "transport", 1)
modparam("htable", "htable", "leak=>size=16;")
request_route {{
    {route}if ($rm == "OPTIONS") {{
        {on_options}
        sl_send_reply("200", "OK");
        exit;
    }}
    sl_send_reply("404", "Not here");
}}
event_route[xhttp:request] {{
    if ($hu =~ "^/RPC") {{
        jsonrpc_dispatch();
    }} else {{
        xhttp_reply("404", "Not Found", "text/plain", "no");
    }}
}}
"#,
            settings = self.settings,
            sip_port = self.sip_port,
            http_port = self.http_port,
            mpath = kamailio_modules_dir("xhttp.so"),
            modules = self.modules,
            route = self.route,
            on_options = self.on_options,
        )
    }
}
