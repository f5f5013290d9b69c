//! Email receivers against a real SMTP server (Debian's python3-aiosmtpd), with a handler that
//! writes every accepted message to a folder as JSON (envelope, data, whether TLS was on).

mod common;

use std::time::Duration;

use common::*;
use sipwatch_alerting::{build, Outbox, Severity};

const DEADLINE: Duration = Duration::from_secs(30);

/// How many received mails carry the alert key `key`.
fn mails_with_key(server: &Smtp, key: &str) -> usize {
    let header = format!("X-Sipwatch-Key: {key}\r\n");
    server
        .mails()
        .iter()
        .filter(|m| m["data"].as_str().unwrap_or("").contains(&header))
        .count()
}

/// An SMTP server with a certificate for 127.0.0.1 from a test CA, offering STARTTLS, or
/// implicit TLS (SMTPS) from the first byte when `implicit`; returned with the CA's file.
fn tls_server(dir: &std::path::Path, implicit: bool) -> (Smtp, std::path::PathBuf) {
    let tls = make_tls(dir, &["127.0.0.1"], 30);
    let pair = Some((tls.cert, tls.key));
    let options = if implicit {
        SmtpOptions {
            smtps: pair,
            ..SmtpOptions::default()
        }
    } else {
        SmtpOptions {
            starttls: pair,
            ..SmtpOptions::default()
        }
    };
    (Smtp::start(free_port(), options), tls.ca)
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
    let server = Smtp::start(port, SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (outbox, running) = dispatching(dir.path(), &email_config("noc-mail", port, ""));

    let mut leak = alert("sipwatch/leak/host1/kamailio/pss", Severity::Critical);
    leak.summary = "kamailio pss grows 40 MiB/h".into();
    leak.description = "limit of 2 GiB reached in about 6h".into();
    outbox.enqueue(&leak).unwrap();
    wait_until_async("the firing mail arrives", DEADLINE, || {
        server.mails().len() == 1
    })
    .await;
    outbox.enqueue(&leak.resolved_at(unix_now())).unwrap();
    wait_until_async("the resolved mail arrives", DEADLINE, || {
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
    let (outbox, running) = dispatching(dir.path(), &email_config("noc-mail", port, ""));

    let key = "sipwatch/probe/edge-1";
    outbox.enqueue(&alert(key, Severity::Critical)).unwrap();
    wait_until_async("sends fail while nothing listens", DEADLINE, || {
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

    let server = Smtp::start(port, SmtpOptions::default());
    wait_until_async(
        "the queued mail arrives once the server is up",
        DEADLINE,
        || mails_with_key(&server, key) == 1,
    )
    .await;
    // Queued behind it on the same receiver: when this one arrives, a duplicate would have too.
    outbox
        .enqueue(&alert("sipwatch/probe/sentinel", Severity::Info))
        .unwrap();
    wait_until_async("the sentinel mail arrives", DEADLINE, || {
        mails_with_key(&server, "sipwatch/probe/sentinel") == 1
    })
    .await;
    running.stop().await;

    assert_eq!(mails_with_key(&server, key), 1, "delivered exactly once");
    assert_eq!(server.mails().len(), 2);
    let stats = outbox.stats();
    let r = stats.receiver("noc-mail").unwrap();
    assert_eq!((r.sent, r.pending, r.dropped), (2, 0, 0));
}

#[tokio::test]
async fn starttls_is_required_and_verified_against_the_configured_ca() {
    let logs = LogCapture::global();
    let dir = tempfile::tempdir().unwrap();
    let (server, ca_file) = tls_server(dir.path(), false);
    let port = server.port;
    let (outbox, running) = dispatching(
        dir.path(),
        &format!(
            "{}\n{}",
            email_config(
                "tls-mail",
                port,
                &format!("starttls = true\nca_file = \"{}\"", ca_file.display())
            ),
            email_config("untrusted", port, "starttls = true"),
        ),
    );
    outbox
        .enqueue(&alert("sipwatch/tls/check", Severity::Warning))
        .unwrap();
    wait_until_async(
        "the mail arrives over STARTTLS; the untrusted one keeps failing",
        DEADLINE,
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
    let (server, ca_file) = tls_server(dir.path(), true);
    let port = server.port;
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
    wait_until_async(
        "the mail arrives over SMTPS; the plain receiver keeps failing",
        DEADLINE,
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
