//! Email receivers against a real SMTP server (Debian's python3-aiosmtpd), with a handler that
//! writes every accepted message to a folder as JSON (envelope, data, whether TLS was on).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use sipwatch_alerting::{build, Outbox, Severity};

const DEADLINE: Duration = Duration::from_secs(30);
const PYTHON: &str = "/usr/bin/python3";

const HANDLER: &str = r#"
import json, os, uuid

class FolderHandler:
    """Writes each accepted message to FOLDER/<uuid>.json (atomically, via rename)."""

    def __init__(self, folder):
        self.folder = folder

    @classmethod
    def from_cli(cls, parser, *args):
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        name = uuid.uuid4().hex
        tmp = os.path.join(self.folder, name + ".tmp")
        with open(tmp, "w") as f:
            json.dump({
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "data": envelope.content.decode("utf8", "replace"),
                "tls": session.ssl is not None,
            }, f)
        os.rename(tmp, os.path.join(self.folder, name + ".json"))
        return "250 OK"
"#;

/// A running aiosmtpd; killed (by its own pid) when dropped.
struct SmtpServer {
    child: Child,
    mails: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    async fn start(port: u16, tls: Option<(&Path, &Path)>) -> SmtpServer {
        SmtpServer::start_with(port, tls, None).await
    }

    /// Implicit TLS (SMTPS) from the first byte.
    async fn start_smtps(port: u16, cert: &Path, key: &Path) -> SmtpServer {
        SmtpServer::start_with(port, None, Some((cert, key))).await
    }

    async fn start_with(
        port: u16,
        tls: Option<(&Path, &Path)>,
        smtps: Option<(&Path, &Path)>,
    ) -> SmtpServer {
        require_program(PYTHON, "python3-aiosmtpd");
        let probe = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .output()
            .expect("run /usr/bin/python3");
        assert!(
            probe.status.success(),
            "aiosmtpd is not importable by /usr/bin/python3: apt-get install -y python3-aiosmtpd"
        );
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), "sipwatch_test_handler.py", HANDLER);
        let mails = dir.path().join("mails");
        std::fs::create_dir(&mails).unwrap();
        let mut command = Command::new(PYTHON);
        command.env("PYTHONPATH", dir.path()).args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
        ]);
        if let Some((cert, key)) = tls {
            command.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
        }
        if let Some((cert, key)) = smtps {
            command
                .arg("--smtpscert")
                .arg(cert)
                .arg("--smtpskey")
                .arg(key);
        }
        command
            .args(["-c", "sipwatch_test_handler.FolderHandler"])
            .arg(&mails)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start aiosmtpd");
        let start = std::time::Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    use std::io::Read;
                    let _ = stderr.read_to_string(&mut err);
                }
                panic!("aiosmtpd exited ({status}) before listening: {err}");
            }
            assert!(
                start.elapsed() < DEADLINE,
                "aiosmtpd did not listen on port {port} within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        SmtpServer {
            child,
            mails,
            _dir: dir,
        }
    }

    /// Every message received so far.
    fn mails(&self) -> Vec<serde_json::Value> {
        let mut mails = Vec::new();
        for entry in std::fs::read_dir(&self.mails).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                mails.push(serde_json::from_str(&text).unwrap());
            }
        }
        mails
    }

    fn mails_with_key(&self, key: &str) -> usize {
        let header = format!("X-Sipwatch-Key: {key}\r\n");
        self.mails()
            .iter()
            .filter(|m| m["data"].as_str().unwrap_or("").contains(&header))
            .count()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn email_config(name: &str, port: u16, extra: &str) -> String {
    format!(
        r#"
        [[alerting.receiver]]
        kind = "email"
        name = "{name}"
        smtp = "127.0.0.1:{port}"
        from = "sipwatch <sipwatch@example.net>"
        to = ["noc@example.net", "oncall@example.net"]
        timeout = "5s"
        {extra}
        "#
    )
}

#[tokio::test]
async fn mail_arrives_with_subject_body_and_recipients() {
    let port = free_port();
    let server = SmtpServer::start(port, None).await;
    let dir = tempfile::tempdir().unwrap();
    let configs = receivers(&email_config("noc-mail", port, ""));
    let outbox = Outbox::open(
        dir.path().join("outbox.db"),
        build(&configs).unwrap(),
        fast_options(),
    )
    .unwrap();
    let running = Running::start(&outbox);

    let mut leak = alert("sipwatch/leak/host1/kamailio/pss", Severity::Critical);
    leak.summary = "kamailio pss grows 40 MiB/h".into();
    leak.description = "limit of 2 GiB reached in about 6h".into();
    outbox.enqueue(&leak).unwrap();
    wait_until(DEADLINE, "the firing mail arrives", || {
        server.mails().len() == 1
    })
    .await;
    outbox.enqueue(&leak.resolved_at(now())).unwrap();
    wait_until(DEADLINE, "the resolved mail arrives", || {
        server.mails().len() == 2
    })
    .await;
    running.stop().await;

    let mails = server.mails();
    let firing = mails
        .iter()
        .find(|m| m["data"].as_str().unwrap().contains("[FIRING"))
        .expect("a firing mail");
    assert_eq!(firing["mail_from"], "sipwatch@example.net");
    assert_eq!(
        firing["rcpt_tos"],
        serde_json::json!(["noc@example.net", "oncall@example.net"])
    );
    let data = firing["data"].as_str().unwrap();
    for needle in [
        "Subject: [FIRING critical] kamailio pss grows 40 MiB/h (host1)",
        "To: noc@example.net, oncall@example.net",
        "X-Sipwatch-Key: sipwatch/leak/host1/kamailio/pss",
        "limit of 2 GiB reached in about 6h",
        "key: sipwatch/leak/host1/kamailio/pss",
        "service: kamailio",
    ] {
        assert!(data.contains(needle), "{needle:?} missing in:\n{data}");
    }
    let resolved = mails
        .iter()
        .find(|m| m["data"].as_str().unwrap().contains("[RESOLVED]"))
        .expect("a resolved mail");
    assert!(resolved["data"]
        .as_str()
        .unwrap()
        .contains("Subject: [RESOLVED] kamailio pss grows 40 MiB/h (host1)"));
    let stats = outbox.stats();
    assert_eq!(stats.receiver("noc-mail").unwrap().sent, 2);
}

#[tokio::test]
async fn smtp_down_at_first_keeps_the_alert_and_delivers_it_once() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let configs = receivers(&email_config("noc-mail", port, ""));
    let outbox = Outbox::open(
        dir.path().join("outbox.db"),
        build(&configs).unwrap(),
        fast_options(),
    )
    .unwrap();
    let running = Running::start(&outbox);

    let key = "sipwatch/probe/edge-1";
    outbox.enqueue(&alert(key, Severity::Critical)).unwrap();
    wait_until(DEADLINE, "sends fail while nothing listens", || {
        outbox.stats().receiver("noc-mail").unwrap().failed >= 3
    })
    .await;
    let stats = outbox.stats();
    let r = stats.receiver("noc-mail").unwrap();
    assert_eq!(
        (r.sent, r.pending, r.dropped),
        (0, 1, 0),
        "kept while down: {r:?}"
    );

    let server = SmtpServer::start(port, None).await;
    wait_until(
        DEADLINE,
        "the queued mail arrives once the server is up",
        || server.mails_with_key(key) == 1,
    )
    .await;
    // Queued behind it on the same receiver: when this one arrives, a duplicate would have too.
    outbox
        .enqueue(&alert("sipwatch/probe/sentinel", Severity::Info))
        .unwrap();
    wait_until(DEADLINE, "the sentinel mail arrives", || {
        server.mails_with_key("sipwatch/probe/sentinel") == 1
    })
    .await;
    running.stop().await;

    assert_eq!(server.mails_with_key(key), 1, "delivered exactly once");
    assert_eq!(server.mails().len(), 2);
    let stats = outbox.stats();
    let r = stats.receiver("noc-mail").unwrap();
    assert_eq!((r.sent, r.pending, r.dropped), (2, 0, 0));
}

#[tokio::test]
async fn starttls_is_required_and_verified_against_the_configured_ca() {
    let logs = LogCapture::global();
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sipwatch test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let cert = write_file(dir.path(), "smtp.crt", &leaf.pem());
    let key = write_file(dir.path(), "smtp.key", &leaf_key.serialize_pem());
    let ca_file = write_file(dir.path(), "ca.crt", &ca.pem());

    let port = free_port();
    let server = SmtpServer::start(port, Some((&cert, &key))).await;
    let configs = receivers(&format!(
        "{}\n{}",
        email_config(
            "tls-mail",
            port,
            &format!("starttls = true\nca_file = \"{}\"", ca_file.display())
        ),
        email_config("untrusted", port, "starttls = true"),
    ));
    let outbox = Outbox::open(
        dir.path().join("outbox.db"),
        build(&configs).unwrap(),
        fast_options(),
    )
    .unwrap();
    let running = Running::start(&outbox);
    outbox
        .enqueue(&alert("sipwatch/tls/check", Severity::Warning))
        .unwrap();
    wait_until(
        DEADLINE,
        "the mail arrives over STARTTLS; the untrusted one keeps failing",
        || {
            let s = outbox.stats();
            server.mails().len() == 1 && s.receiver("untrusted").unwrap().failed >= 2
        },
    )
    .await;
    running.stop().await;

    let mails = server.mails();
    assert_eq!(
        mails.len(),
        1,
        "only the receiver that trusts the CA delivered"
    );
    assert_eq!(mails[0]["tls"], true, "the session used STARTTLS");
    let stats = outbox.stats();
    let untrusted = stats.receiver("untrusted").unwrap();
    assert_eq!(
        (untrusted.sent, untrusted.pending),
        (0, 1),
        "kept, not dropped: {untrusted:?}"
    );
    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("receiver=untrusted") && l.contains("UnknownIssuer")),
        "the untrusted receiver fails on certificate verification:\n{text}"
    );
}

#[tokio::test]
async fn implicit_tls_smtps_delivers_over_tls_with_a_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sipwatch test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let cert = write_file(dir.path(), "smtp.crt", &leaf.pem());
    let key = write_file(dir.path(), "smtp.key", &leaf_key.serialize_pem());
    let ca_file = write_file(dir.path(), "ca.crt", &ca.pem());

    let port = free_port();
    let server = SmtpServer::start_smtps(port, &cert, &key).await;
    // The same server without TLS cannot be talked to: "plain" proves the port is SMTPS only.
    let configs = receivers(&format!(
        "{}\n{}",
        email_config(
            "smtps",
            port,
            &format!("tls = true\nca_file = \"{}\"", ca_file.display()),
        ),
        email_config("plain", port, ""),
    ));
    let outbox = Outbox::open(
        dir.path().join("outbox.db"),
        build(&configs).unwrap(),
        // A plain client waits for a greeting an SMTPS server never sends: bound the wait.
        sipwatch_alerting::OutboxOptions {
            send_timeout: Duration::from_secs(3),
            ..fast_options()
        },
    )
    .unwrap();
    let running = Running::start(&outbox);
    let a = alert("sipwatch/smtps/check", Severity::Warning);
    outbox.enqueue(&a).unwrap();
    wait_until(
        DEADLINE,
        "the mail arrives over SMTPS; the plain receiver keeps failing",
        || server.mails().len() == 1 && outbox.stats().receiver("plain").unwrap().retried >= 1,
    )
    .await;
    running.stop().await;
    let mails = server.mails();
    assert_eq!(mails.len(), 1, "only the TLS receiver got through");
    assert_eq!(outbox.stats().receiver("plain").unwrap().sent, 0);
    let data = mails[0]["data"].as_str().unwrap();
    let expected = format!(
        "Message-ID: {}",
        sipwatch_alerting::notifiers::email::message_id(&a)
    );
    assert!(data.contains(&expected), "{expected} in:\n{data}");
}
