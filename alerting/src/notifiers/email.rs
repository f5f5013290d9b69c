//! `kind = "email"`: one plain-text mail per alert over SMTP, plain or with required STARTTLS.
//!
//! Subject `[FIRING critical] summary (source)` or `[RESOLVED] summary (source)`; the body holds the
//! description, key, source, time, labels and link; the header `X-Sipwatch-Key` carries the key for
//! mail filters. SMTP 4xx replies and connection failures are retryable, 5xx replies (unknown
//! mailbox, authentication refused) are permanent. Mail cannot be deduplicated by the receiver,
//! so several daemons mailing the same list each send their own copy.

use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::alert::{Alert, AlertStatus};
use crate::config::EmailConfig;
use crate::notifier::{Notifier, NotifyError};
use crate::problems::{ReceiverCheck, ReceiverProblem};
use crate::secret::{scrub_all, Secret};

/// Used when the receiver sets no `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends alerts as mail.
pub struct EmailNotifier {
    name: String,
    smtp: String,
    starttls: bool,
    from: Mailbox,
    to: Vec<Mailbox>,
    username: Option<String>,
    password: Option<Secret>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl EmailNotifier {
    /// Checks addresses and `smtp`, reads the password and CA files, prepares the transport.
    pub fn from_config(config: &EmailConfig) -> Result<EmailNotifier, Vec<ReceiverProblem>> {
        let mut problems = ReceiverCheck::new(&config.name, "email");
        let server = problems.check("smtp", parse_host_port(&config.smtp));
        let from = problems.check("from", parse_mailbox(&config.from));
        if config.to.is_empty() {
            problems.add(
                "to",
                "is empty; list at least one recipient, e.g. to = [\"noc@example.net\"]",
            );
        }
        let to: Vec<Mailbox> = config
            .to
            .iter()
            .filter_map(|addr| problems.check("to", parse_mailbox(addr)))
            .collect();
        let password = match (&config.username, &config.password_file) {
            (Some(_), Some(path)) => problems.check("password_file", Secret::from_file(path)),
            (None, Some(_)) => {
                problems.add(
                    "username",
                    "is missing while password_file is set; add username = \"...\" for SMTP AUTH",
                );
                None
            }
            (Some(_), None) => {
                problems.add(
                    "password_file",
                    "is missing while username is set; add password_file = \"/etc/sipwatch/smtp.password\"",
                );
                None
            }
            (None, None) => None,
        };
        if config.starttls && config.tls {
            problems.add(
                "tls",
                "and starttls are both set; use tls = true for implicit TLS (port 465) or \
                 starttls = true for submission (port 587), not both",
            );
        }
        let loopback = server.as_ref().is_some_and(|(host, _)| is_loopback(host));
        if config.username.is_some() && !config.starttls && !config.tls {
            if loopback || config.allow_plaintext_auth {
                tracing::warn!(receiver = %config.name,
                    "SMTP AUTH without TLS sends the password in clear text; set starttls = true \
                     or tls = true");
            } else {
                problems.add(
                    "username",
                    "SMTP AUTH without TLS to a server that is not on loopback would send the \
                     password in clear text; set starttls = true (port 587) or tls = true (port \
                     465), or, if the network is trusted, allow_plaintext_auth = true",
                );
            }
        }
        let ca = match &config.ca_file {
            Some(path) if config.starttls || config.tls => problems.check("ca_file", read_ca(path)),
            Some(_) => {
                problems.add(
                    "ca_file",
                    "is set but neither starttls nor tls is; set one of them or remove ca_file",
                );
                None
            }
            None => None,
        };

        let mut transport = None;
        if let Some((host, port)) = &server {
            let mut builder =
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
                    .port(*port)
                    .timeout(Some(config.timeout.unwrap_or(DEFAULT_TIMEOUT)));
            if config.starttls || config.tls {
                let mut tls = TlsParameters::builder(host.clone());
                if let Some(ca) = ca {
                    tls = tls.add_root_certificate(ca);
                }
                match tls.build_rustls() {
                    Ok(params) if config.tls => builder = builder.tls(Tls::Wrapper(params)),
                    Ok(params) => builder = builder.tls(Tls::Required(params)),
                    Err(e) => problems.add("starttls", format!("cannot set up TLS: {e}")),
                }
            }
            if let (Some(user), Some(password)) = (&config.username, &password) {
                builder = builder.credentials(Credentials::new(
                    user.clone(),
                    password.expose().to_string(),
                ));
            }
            transport = Some(builder.build());
        }
        let built = match (transport, from) {
            (Some(transport), Some(from)) => Some(EmailNotifier {
                name: config.name.clone(),
                smtp: config.smtp.clone(),
                starttls: config.starttls,
                from,
                to,
                username: config.username.clone(),
                password,
                transport,
            }),
            _ => None,
        };
        problems.finish(built)
    }

    fn message(&self, alert: &Alert) -> Result<Message, NotifyError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject(alert))
            .message_id(Some(message_id(alert)))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let mut message = builder
            .body(body(alert))
            .map_err(|e| NotifyError::permanent(format!("cannot build the mail: {e}")))?;
        message.headers_mut().insert_raw(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Sipwatch-Key"),
            alert.key.clone(),
        ));
        Ok(message)
    }
}

/// Whether `host` names this machine (a password sent there never crosses a network).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `"host:port"` or `"[v6]:port"`; the port is required because 25, 465 and 587 all occur.
fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let text = text.trim();
    let (host, port) = text.rsplit_once(':').ok_or_else(|| {
        format!(
            "{text:?} has no port; write \"{text}:25\" (or \":587\" for submission with starttls)"
        )
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!(
            "{text:?} has no host; write it like \"mail.example.net:25\""
        ));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("port {port:?} is not a number; write it like \"{host}:25\""))?;
    Ok((host.to_string(), port))
}

fn parse_mailbox(text: &str) -> Result<Mailbox, String> {
    text.trim().parse::<Mailbox>().map_err(|e| {
        format!("{text:?} is not a mail address ({e}); write it like \"noc@example.net\" or \"NOC <noc@example.net>\"")
    })
}

fn read_ca(path: &std::path::Path) -> Result<Certificate, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!("cannot read {}: {e}; point ca_file at the PEM file of the CA that signed the SMTP server's certificate", path.display())
    })?;
    Certificate::from_pem(&pem)
        .map_err(|e| format!("{} is not a PEM certificate: {e}", path.display()))
}

/// `[FIRING critical] summary (source)` / `[RESOLVED] summary (source)`.
pub fn subject(alert: &Alert) -> String {
    let summary: String = alert
        .summary
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    // Grouped notifications carry their own `[FIRING:N] group: what` title.
    if alert.labels.contains_key("grouped") {
        return summary;
    }
    match alert.status {
        AlertStatus::Firing => format!(
            "[FIRING {}] {} ({})",
            alert.severity.as_str(),
            summary,
            alert.source
        ),
        AlertStatus::Resolved => format!("[RESOLVED] {} ({})", summary, alert.source),
    }
}

/// A Message-ID derived from the alert key and the event (status and time), so a mail sent
/// again after a crash carries the same id and mail clients and people can tell it is the same.
pub fn message_id(alert: &Alert) -> String {
    let key: String = alert
        .key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '.'
            }
        })
        .collect();
    let key = key
        .split('.')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(".");
    format!(
        "<{key}.{}.{}@sipwatch>",
        alert.status.as_str(),
        (alert.at * 1000.0).max(0.0) as u64
    )
}

/// The plain-text body. A grouped notification's description already says what, where and
/// since when for every member; it is followed by the key (for `sipwatch alert ack`).
pub fn body(alert: &Alert) -> String {
    let mut text = String::new();
    if alert.labels.contains_key("grouped") {
        let _ = writeln!(text, "{}", alert.description.trim_end());
        let _ = writeln!(text, "\nkey: {}", alert.key);
        text.push_str("\n-- \nsipwatch\n");
        return text;
    }
    let _ = writeln!(
        text,
        "{} {}: {}",
        alert.status.as_str().to_uppercase(),
        alert.severity.as_str(),
        alert.summary
    );
    text.push('\n');
    if !alert.description.is_empty() {
        let _ = writeln!(text, "{}\n", alert.description);
    }
    let when = match alert.status {
        AlertStatus::Firing => "since",
        AlertStatus::Resolved => "resolved at",
    };
    let _ = writeln!(text, "source: {}", alert.source);
    let _ = writeln!(text, "{when}: {}", alert.at_rfc3339());
    let _ = writeln!(text, "key: {}", alert.key);
    for (name, value) in &alert.labels {
        let _ = writeln!(text, "{name}: {value}");
    }
    if let Some(url) = &alert.url {
        let _ = writeln!(text, "more: {url}");
    }
    text.push_str("\n-- \nsipwatch\n");
    text
}

/// SMTP 5xx replies and client-side errors are permanent; 4xx, network, TLS and timeouts retry.
fn classify(err: &lettre::transport::smtp::Error, secrets: &[&Secret]) -> NotifyError {
    let message = scrub_all(&format!("SMTP: {err}"), secrets);
    if err.is_permanent() || err.is_client() {
        NotifyError::permanent(message)
    } else {
        NotifyError::retryable(message)
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "email"
    }

    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        let message = self.message(alert)?;
        let secrets: Vec<&Secret> = self.password.iter().collect();
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| classify(&e, &secrets))
    }
}

impl fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to: Vec<String> = self.to.iter().map(|m| m.to_string()).collect();
        f.debug_struct("EmailNotifier")
            .field("name", &self.name)
            .field("smtp", &self.smtp)
            .field("starttls", &self.starttls)
            .field("from", &self.from.to_string())
            .field("to", &to)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;
    use std::collections::BTreeMap;

    #[test]
    fn host_port_is_required_and_explained() {
        assert_eq!(
            parse_host_port("127.0.0.1:2525").unwrap(),
            ("127.0.0.1".into(), 2525)
        );
        assert_eq!(parse_host_port("[::1]:25").unwrap(), ("::1".into(), 25));
        assert!(parse_host_port("mail.example.net")
            .unwrap_err()
            .contains("\"mail.example.net:25\""));
        assert!(parse_host_port("mail:smtp")
            .unwrap_err()
            .contains("not a number"));
    }

    #[test]
    fn message_ids_follow_key_and_event() {
        let mut a = sample_alert_for_id();
        a.key = "sipwatch/probe/fe-1//10.0.0.1:5060".into();
        a.at = 1.5;
        assert_eq!(
            message_id(&a),
            "<sipwatch.probe.fe-1.10.0.0.1.5060.firing.1500@sipwatch>"
        );
        assert_eq!(message_id(&a), message_id(&a.clone()), "stable");
        assert_ne!(message_id(&a), message_id(&a.resolved_at(2.0)));
    }

    fn sample_alert_for_id() -> Alert {
        Alert {
            key: String::new(),
            status: AlertStatus::Firing,
            severity: crate::alert::Severity::Critical,
            summary: "s".into(),
            description: String::new(),
            source: "h".into(),
            labels: Default::default(),
            at: 0.0,
            url: None,
        }
    }

    #[test]
    fn subject_and_body_say_what_on_call_needs() {
        let alert = Alert {
            key: "sipwatch/leak/host1/kamailio/pss".into(),
            status: AlertStatus::Firing,
            severity: Severity::Critical,
            summary: "kamailio pss\nleak".into(),
            description: "grows 40 MiB/h".into(),
            source: "host1".into(),
            labels: BTreeMap::from([("service".into(), "kamailio".into())]),
            at: 0.0,
            url: Some("http://status/".into()),
        };
        assert_eq!(
            subject(&alert),
            "[FIRING critical] kamailio pss leak (host1)"
        );
        let text = body(&alert);
        for needle in [
            "grows 40 MiB/h",
            "key: sipwatch/leak/host1/kamailio/pss",
            "service: kamailio",
            "since: 1970-01-01T00:00:00.000Z",
            "more: http://status/",
        ] {
            assert!(text.contains(needle), "{needle} missing in {text}");
        }
        assert_eq!(
            subject(&alert.resolved_at(1.0)),
            "[RESOLVED] kamailio pss leak (host1)"
        );
    }

    #[test]
    fn plaintext_auth_is_refused_off_loopback_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "pw\n").unwrap();
        let config = |smtp: &str, starttls: bool, tls: bool, allow: bool| EmailConfig {
            name: "m".into(),
            smtp: smtp.into(),
            from: "a@example.net".into(),
            to: vec!["b@example.net".into()],
            starttls,
            tls,
            allow_plaintext_auth: allow,
            ca_file: None,
            username: Some("u".into()),
            password_file: Some(pw.clone()),
            timeout: None,
        };
        let e = EmailNotifier::from_config(&config("mail.example.net:25", false, false, false))
            .unwrap_err();
        assert_eq!(e[0].field, "username");
        assert!(
            e[0].message.contains("allow_plaintext_auth = true"),
            "{e:?}"
        );
        assert!(
            EmailNotifier::from_config(&config("mail.example.net:25", false, false, true)).is_ok()
        );
        assert!(EmailNotifier::from_config(&config("127.0.0.1:25", false, false, false)).is_ok());
        assert!(EmailNotifier::from_config(&config("[::1]:25", false, false, false)).is_ok());
        assert!(
            EmailNotifier::from_config(&config("mail.example.net:587", true, false, false)).is_ok()
        );
        assert!(
            EmailNotifier::from_config(&config("mail.example.net:465", false, true, false)).is_ok()
        );
        let e = EmailNotifier::from_config(&config("mail.example.net:465", true, true, false))
            .unwrap_err();
        assert_eq!(e[0].field, "tls");
    }

    #[test]
    fn debug_hides_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cr3t-pw\n").unwrap();
        let n = EmailNotifier::from_config(&EmailConfig {
            name: "m".into(),
            smtp: "127.0.0.1:25".into(),
            from: "a@example.net".into(),
            to: vec!["b@example.net".into()],
            starttls: true,
            tls: false,
            allow_plaintext_auth: false,
            ca_file: None,
            username: Some("u".into()),
            password_file: Some(pw),
            timeout: None,
        })
        .unwrap();
        let shown = format!("{n:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
