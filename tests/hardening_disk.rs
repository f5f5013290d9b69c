//! A full disk under the daemon's store and alert outbox: no alert storm, no alert lost.
//!
//! The store and the outbox live on a 16 MiB tmpfs (the test mounts it: root). Twenty targets go
//! down while the disk still has room; their alerts are queued and the webhook receiver holds
//! the first delivery while the disk is filled, so that every "delivered" is then unrecordable
//! (the old outbox re-sent such an alert in a tight loop). Twenty more go down on the full disk
//! (the old outbox lost them: "cannot queue the alert"). After space is freed, every down target
//! must have been delivered, none more than a few times.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `file`'s directory to the last byte.
fn fill(file: &Path) {
    let mut f = std::fs::File::create(file).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let small = [0u8; 64];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}

/// SIP nodes that answer OPTIONS with 200 until told to stop (then their port is closed).
fn sip_node(up: Arc<AtomicBool>) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while up.load(Ordering::SeqCst) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let h = |name: &str| {
                req.lines()
                    .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
                    .unwrap_or("")
                    .to_string()
            };
            let answer = format!(
                "SIP/2.0 200 OK\r\n{}\r\n{}\r\n{};tag=n\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
                h("via"),
                h("from"),
                h("to"),
                h("call-id"),
                h("cseq")
            );
            let _ = sock.send_to(answer.as_bytes(), from);
        }
    });
    port
}

/// A webhook receiver counting deliveries per (key, status); answers only while not held.
#[derive(Clone, Default)]
struct Receiver {
    counts: Arc<Mutex<HashMap<(String, String), u32>>>,
    hold: Arc<AtomicBool>,
}

impl Receiver {
    fn start(&self) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = self.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let me = me.clone();
                std::thread::spawn(move || me.serve(stream));
            }
        });
        port
    }

    fn serve(&self, stream: std::net::TcpStream) {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        loop {
            let mut length = 0usize;
            let mut line = String::new();
            let mut first = true;
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if first {
                    first = false;
                    continue;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            while self.hold.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                let key = v["key"].as_str().unwrap_or("").to_string();
                let status = v["status"].as_str().unwrap_or("").to_string();
                *self
                    .counts
                    .lock()
                    .unwrap()
                    .entry((key, status))
                    .or_insert(0) += 1;
            }
            if writer
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .is_err()
            {
                return;
            }
        }
    }

    fn firing(&self, target: &str) -> u32 {
        self.counts
            .lock()
            .unwrap()
            .iter()
            // A node alert's key names the target (`sipwatch/probe/a01/...`); a notification
            // grouped by target ends with it (`sipwatch/notify/default/target=a01`).
            .filter(|((k, s), _)| {
                s == "firing"
                    && (k.contains(&format!("/{target}/"))
                        || k.ends_with(&format!("target={target}")))
            })
            .map(|(_, n)| *n)
            .sum()
    }

    fn total(&self) -> u32 {
        self.counts.lock().unwrap().values().sum()
    }

    fn max_per_key(&self) -> u32 {
        self.counts
            .lock()
            .unwrap()
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }
}

#[test]
fn a_full_disk_neither_multiplies_nor_loses_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    // Big enough for the store's and the outbox's write-ahead logs in normal operation (SQLite
    // checkpoints at 1000 pages, 4 MB), then filled to the last byte by the test.
    let _tmpfs = Tmpfs::mount(&disk, "16m");

    let receiver = Receiver::default();
    let hook = receiver.start();
    let up_a = Arc::new(AtomicBool::new(true));
    let up_b = Arc::new(AtomicBool::new(true));
    let mut targets = String::new();
    let mut names = Vec::new();
    for (group, up) in [("a", &up_a), ("b", &up_b)] {
        for i in 0..20 {
            let port = sip_node(up.clone());
            let name = format!("{group}{i:02}");
            targets.push_str(&format!(
                "[[target]]\nname = \"{name}\"\nuri = \"sip:127.0.0.1:{port}\"\n\
                 interval = \"500ms\"\ntimeout = \"400ms\"\n"
            ));
            names.push(name);
        }
    }
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let cfg = dir.path().join("sipwatch.toml");
    // group_wait 0: each target's notification is queued the moment it goes down, so the disk
    // is full exactly while group b's are queued and group a's delivery is recorded.
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"{listen}\"\n[store]\npath = \"{db}\"\n[alerting]\n\
             source = \"disk-test\"\n\
             group_wait = \"0s\"\n[[alerting.receiver]]\nname = \"hook\"\nkind = \"webhook\"\n\
             url = \"http://127.0.0.1:{hook}/alerts\"\n{targets}",
            db = disk.join("state.db").display(),
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&cfg, &listen, &dir.path().join("daemon.log"));
    wait_until("every target up", Duration::from_secs(20), || {
        let v = daemon.json("/api/v2/components.json");
        names
            .iter()
            .all(|n| component_status(&v, n) == "operational")
    });

    // Group a goes down with room on the disk: queued; the first delivery is held in flight.
    receiver.hold.store(true, Ordering::SeqCst);
    up_a.store(false, Ordering::SeqCst);
    wait_until("group a down", Duration::from_secs(20), || {
        let v = daemon.json("/api/v2/components.json");
        names[..20]
            .iter()
            .all(|n| component_status(&v, n) == "major_outage")
    });
    std::thread::sleep(Duration::from_secs(1));

    // The disk fills; group b goes down on it; the receiver answers again.
    let filler = disk.join("filler");
    fill(&filler);
    up_b.store(false, Ordering::SeqCst);
    receiver.hold.store(false, Ordering::SeqCst);
    wait_until(
        "the full outbox reported on /healthz",
        Duration::from_secs(30),
        || {
            http_get(&listen, "/healthz")
                .is_ok_and(|(_, body)| body.contains("alert outbox") && body.contains("held"))
        },
    );
    std::thread::sleep(Duration::from_secs(5));
    let during = receiver.max_per_key();
    assert!(
        during <= 3,
        "an alert was sent {during} times while its delivery could not be recorded \
         ({} deliveries in all)",
        receiver.total()
    );
    let (_, health) = http_get(&listen, "/healthz").unwrap();
    let (_, metrics) = http_get(&listen, "/metrics").unwrap();
    assert!(
        metrics.contains("sipwatch_store_ok 0"),
        "the full disk shows in metrics:\n{health}"
    );

    // Space comes back: everything held is written and delivered.
    std::fs::remove_file(&filler).unwrap();
    wait_until_or(
        "every down target delivered",
        Duration::from_secs(60),
        || {
            let missing: Vec<&String> = names.iter().filter(|n| receiver.firing(n) == 0).collect();
            let log = daemon.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let df = Command::new("df").arg(&disk).output().map(|o| o.stdout);
            format!(
                "not delivered: {missing:?}\ndf: {}\nhealthz: {:?}\nlog tail:\n{}",
                String::from_utf8_lossy(&df.unwrap_or_default()),
                http_get(&listen, "/healthz").map(|r| r.1),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        },
        || names.iter().all(|n| receiver.firing(n) >= 1),
    );
    wait_until("the outbox healthy again", Duration::from_secs(30), || {
        http_get(&listen, "/healthz").is_ok_and(|(_, body)| !body.contains("alert outbox"))
    });
    std::thread::sleep(Duration::from_secs(3));
    let most = receiver.max_per_key();
    assert!(
        most <= 3,
        "some alert was delivered {most} times ({} deliveries for {} targets)",
        receiver.total(),
        names.len()
    );
    let log = daemon.log_text();
    let complaints = log
        .matches("the alert outbox cannot be written (disk full?)")
        .count();
    assert!(
        complaints <= 10,
        "the storage error was logged {complaints} times: the log must be rate-limited"
    );
}
