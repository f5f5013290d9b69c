//! A real SMTP server: Debian's python3-aiosmtpd, optionally with AUTH, STARTTLS or implicit TLS,
//! that writes every accepted message to a folder as JSON, so a test reads what arrived.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::programs::{require_python_module, PYTHON};

/// The server: every accepted message becomes FOLDER/<uuid>.json (written then renamed) with
/// `mail_from`, `rcpt_tos`, `data` (the message as received), `decoded` (its header and its body
/// decoded from the transfer encoding), `authenticated`, `tls` and `at` (Unix seconds).
const SERVER: &str = r#"
import email, json, os, ssl, sys, time, uuid
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

opts = json.loads(sys.argv[1])
folder = opts["folder"]

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if opts["reject"] and address == opts["reject"]:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.content.decode("utf8", "replace")
        head = raw.split("\r\n\r\n", 1)[0]
        payload = email.message_from_bytes(envelope.content).get_payload(decode=True)
        body = payload.decode("utf8", "replace") if isinstance(payload, bytes) else ""
        name = uuid.uuid4().hex
        tmp = os.path.join(folder, name + ".tmp")
        with open(tmp, "w") as f:
            json.dump({
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "data": raw,
                "decoded": head + "\r\n\r\n" + body,
                "authenticated": bool(session.authenticated),
                "tls": session.ssl is not None,
                "at": time.time(),
            }, f)
        os.rename(tmp, os.path.join(folder, name + ".json"))
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == opts["user"] \
        and auth_data.password.decode() == opts["password"]
    return AuthResult(success=ok, handled=False)

def context(pair):
    if not pair:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pair[0], pair[1])
    return ctx

kwargs = {}
if opts["user"] is not None:
    kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=False)
if opts["starttls"]:
    kwargs.update(tls_context=context(opts["starttls"]))
controller = Controller(Handler(), hostname="127.0.0.1", port=opts["port"],
                        ssl_context=context(opts["smtps"]), **kwargs)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// How the SMTP server behaves.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    /// AUTH (LOGIN/PLAIN, allowed without TLS on loopback) required with this user and password.
    pub auth: Option<(String, String)>,
    /// RCPT to this address is refused with 550.
    pub reject: Option<String>,
    /// STARTTLS offered with this certificate and key.
    pub starttls: Option<(PathBuf, PathBuf)>,
    /// Implicit TLS (SMTPS) from the first byte with this certificate and key.
    pub smtps: Option<(PathBuf, PathBuf)>,
}

/// A running aiosmtpd on 127.0.0.1; killed (by its own pid) when stopped or dropped.
pub struct Smtp {
    pub port: u16,
    child: Option<Child>,
    mails: PathBuf,
    options: String,
    dir: tempfile::TempDir,
}

/// How long the server may take to listen.
const START: Duration = Duration::from_secs(30);

impl Smtp {
    /// Starts the server on `port` and waits until it listens.
    pub fn start(port: u16, options: SmtpOptions) -> Smtp {
        require_python_module("aiosmtpd.controller", "python3-aiosmtpd");
        let dir = tempfile::tempdir().expect("a temp dir for the SMTP server");
        let mails = dir.path().join("mails");
        std::fs::create_dir(&mails).expect("create the mail folder");
        std::fs::write(dir.path().join("smtp_server.py"), SERVER).expect("write the server");
        let pair = |p: &Option<(PathBuf, PathBuf)>| {
            p.as_ref()
                .map(|(cert, key)| serde_json::json!([cert, key]))
                .unwrap_or(serde_json::Value::Null)
        };
        let (user, password) = options.auth.clone().unzip();
        let options = serde_json::json!({
            "folder": mails,
            "port": port,
            "user": user,
            "password": password,
            "reject": options.reject.clone().unwrap_or_default(),
            "starttls": pair(&options.starttls),
            "smtps": pair(&options.smtps),
        })
        .to_string();
        let mut smtp = Smtp {
            port,
            child: None,
            mails,
            options,
            dir,
        };
        smtp.restart();
        smtp
    }

    /// Starts the server again (after [`Smtp::stop`]) on the same port and folder.
    pub fn restart(&mut self) {
        self.stop();
        let log = self.dir.path().join("smtp.log");
        let mut child = Command::new(PYTHON)
            .arg(self.dir.path().join("smtp_server.py"))
            .arg(&self.options)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the SMTP server's log"))
            .spawn()
            .expect("start aiosmtpd");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "aiosmtpd exited ({status}) before listening on {}:\n{}",
                    self.port,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < START,
                "aiosmtpd did not listen on port {} within {START:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// Kills the server; the mails received so far stay readable.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every accepted message so far, oldest first.
    pub fn mails(&self) -> Vec<serde_json::Value> {
        let mut mails: Vec<serde_json::Value> = std::fs::read_dir(&self.mails)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .filter_map(|t| serde_json::from_str(&t).ok())
                    .collect()
            })
            .unwrap_or_default();
        mails.sort_by(|a, b| {
            let at = |m: &serde_json::Value| m["at"].as_f64().unwrap_or(0.0);
            at(a).total_cmp(&at(b))
        });
        mails
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}
