//! Prometheus Alertmanager (Debian `prometheus-alertmanager`) on loopback, without cluster
//! gossip, its storage in a temp dir, every alert routed to a receiver that sends nothing.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::http::http_get;
use crate::ports::free_port;
use crate::programs::{require, Background};
use crate::wait::wait_until;

const CONFIG: &str = "
route:
  receiver: blackhole
  group_wait: 1s
receivers:
  - name: blackhole
";

/// A running Alertmanager, killed when dropped.
pub struct Alertmanager {
    pub port: u16,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    _process: Background,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts Alertmanager on a free port and waits until `/-/ready` answers 200.
    pub fn start() -> Alertmanager {
        let binary = require("prometheus-alertmanager", "prometheus-alertmanager");
        let dir = tempfile::tempdir().expect("a temp dir for Alertmanager");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, CONFIG).expect("write alertmanager.yml");
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-alertmanager");
        let mut process = Background {
            child,
            name: "alertmanager".into(),
        };
        let addr = format!("127.0.0.1:{port}");
        wait_until("alertmanager to be ready", Duration::from_secs(30), || {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("prometheus-alertmanager exited ({status}) before it was ready");
            }
            http_get(&addr, "/-/ready")
                .map(|(s, _)| s == 200)
                .unwrap_or(false)
        });
        Alertmanager {
            port,
            base: format!("http://{addr}"),
            _process: process,
            _dir: dir,
        }
    }
}
