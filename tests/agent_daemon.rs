//! The agent reporting to the daemon, end to end with real parts: a Kamailio watched by the agent
//! (by pidfile) dies and comes back; the agent's alert travels through its outbox to the daemon
//! (bearer token), into the daemon's outbox and out as real e-mail through a real SMTP server
//! (aiosmtpd); the daemon's status page and `/api/v1/agents` show the host's memory health. And an
//! agent without a daemon sends the same alerts to its own webhook receiver.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// The mails the SMTP server accepted, as received.
fn mails(smtp: &Smtp) -> Vec<String> {
    smtp.mails()
        .iter()
        .map(|m| m["data"].as_str().unwrap_or("").to_string())
        .collect()
}

fn start_agent(config: &Path, log: &Path) -> Background {
    let child = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
        .args(["agent", "-c"])
        .arg(config)
        .env("SIPWATCH_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start sipwatch agent");
    Background {
        child,
        name: "agent".into(),
    }
}

#[test]
fn agent_alerts_reach_email_through_the_daemon_and_its_report_shows_on_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let smtp_port = free_sip_port();
    let smtp = Smtp::start(smtp_port, SmtpOptions::default());
    let kport = free_sip_port();
    let mut kamailio = Some(Kamailio::start(KamailioSpec::new(kport, ROUTE_OK)));
    // The agent follows Kamailio through a pidfile the test keeps up to date across restarts.
    let pidfile = dir.path().join("kamailio.pid");
    wait_until("kamailio's pidfile", Duration::from_secs(5), || {
        kamailio.as_ref().unwrap().pidfile.exists()
    });
    std::fs::copy(&kamailio.as_ref().unwrap().pidfile, &pidfile).unwrap();

    let token = dir.path().join("agent.token");
    std::fs::write(&token, "s3cret-agent-token\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let daemon_cfg = dir.path().join("sipwatch.toml");
    std::fs::write(
        &daemon_cfg,
        format!(
            r#"[http]
listen = "{listen}"
[store]
path = "{db}"
[agents]
token_file = "{token}"
[alerting]
source = "prober-test"
group_wait = "1s"
group_interval = "2s"
[[alerting.receiver]]
name = "oncall-mail"
kind = "email"
smtp = "127.0.0.1:{smtp_port}"
from = "sipwatch@example.org"
to = ["oncall@example.org"]
[[target]]
name = "k"
uri = "sip:127.0.0.1:{kport}"
interval = "500ms"
timeout = "400ms"
"#,
            db = dir.path().join("state.db").display(),
            token = token.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&daemon_cfg, &listen, &dir.path().join("daemon.log"));

    let agent_listen = format!("127.0.0.1:{}", free_sip_port());
    let agent_cfg = dir.path().join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            r#"[agent]
listen = "{agent_listen}"
interval = "300ms"
state_dir = "{state}"
[daemon]
url = "http://{listen}"
token_file = "{token}"
report_interval = "500ms"
[alerting]
source = "sip-host-1"
[[service]]
name = "kamailio"
pidfile = "{pidfile}"
[[service.gauge]]
kind = "pss"
"#,
            state = dir.path().join("agent-state").display(),
            token = token.display(),
            pidfile = pidfile.display()
        ),
    )
    .unwrap();
    let check = sipwatch(&["check-config", agent_cfg.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
    let agent_log = dir.path().join("agent.log");
    let _agent = start_agent(&agent_cfg, &agent_log);

    // The host's report reaches the daemon and its page.
    wait_until(
        "the agent's report at the daemon",
        Duration::from_secs(15),
        || {
            let v = daemon.json("/api/v1/agents");
            v["agents"].as_array().is_some_and(|a| {
                a.iter().any(|h| {
                    h["services"][0]["name"] == "kamailio"
                        && h["services"][0]["up"] == true
                        && h["services"][0]["pss_bytes"].as_u64().unwrap_or(0) > 0
                })
            })
        },
    );
    let (_, page) = http_get(&listen, "/").unwrap();
    assert!(
        page.contains("Node memory") && page.contains("kamailio"),
        "{page}"
    );

    // Kamailio dies: the agent's alert goes agent -> daemon -> SMTP.
    kamailio.take().unwrap().stop();
    wait_until("the 'not running' mail", Duration::from_secs(30), || {
        mails(&smtp)
            .iter()
            .any(|m| m.contains("kamailio on sip-host-1 is not running"))
    });
    // It comes back: the resolution is mailed too, and nothing was sent twice.
    let _k2 = Kamailio::start(KamailioSpec::new(kport, ROUTE_OK));
    wait_until("the new pidfile", Duration::from_secs(5), || {
        _k2.pidfile.exists()
    });
    std::fs::copy(&_k2.pidfile, &pidfile).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !mails(&smtp)
        .iter()
        .any(|m| m.contains("kamailio on sip-host-1 is running"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no 'running' mail; agent log:\n{}\ndaemon log:\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default(),
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let all = mails(&smtp);
    let firing = all.iter().filter(|m| m.contains("is not running")).count();
    assert_eq!(
        firing, 1,
        "exactly one firing mail, got {firing}:\n{all:#?}"
    );
    assert!(
        all.iter().all(|m| m.contains("To: oncall@example.org")),
        "{all:#?}"
    );
    let logs = format!(
        "{}{}",
        daemon.log_text(),
        std::fs::read_to_string(&agent_log).unwrap_or_default()
    );
    assert!(
        !logs.contains("s3cret-agent-token"),
        "the token leaked into a log"
    );

    // A wrong token is refused.
    let mut s = std::net::TcpStream::connect(&listen).unwrap();
    use std::io::{Read, Write};
    let body = "{}";
    write!(
        s,
        "POST /api/v1/agents/report HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[test]
fn an_agent_without_a_daemon_alerts_its_own_receivers() {
    // A webhook receiver that records what it gets.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = listener.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Read, Write};
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            sink.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).to_string());
            let mut w = stream;
            let _ =
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[agent]
listen = "127.0.0.1:{}"
interval = "300ms"
state_dir = "{}"
[alerting]
source = "lonely-host"
[[alerting.receiver]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{hook_port}/alerts"
[[service]]
name = "ghost"
pidfile = "{}"
"#,
            free_sip_port(),
            dir.path().join("state").display(),
            dir.path().join("does-not-exist.pid").display()
        ),
    )
    .unwrap();
    let _agent = start_agent(&cfg, &dir.path().join("agent.log"));
    wait_until("the webhook alert", Duration::from_secs(20), || {
        got.lock()
            .unwrap()
            .iter()
            .any(|b| b.contains("sipwatch/service/lonely-host/ghost"))
    });
    let bodies = got.lock().unwrap().clone();
    let alert: serde_json::Value = serde_json::from_str(
        bodies
            .iter()
            .find(|b| b.contains("lonely-host/ghost"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["severity"], "critical");
    assert!(alert["summary"]
        .as_str()
        .unwrap()
        .contains("ghost on lonely-host is not running"));
}
