//! Alert control against real parts: `sipwatch run` probing real Kamailio instances, mail to a
//! real SMTP server (Debian's python3-aiosmtpd, with AUTH), silences through the CLI and the
//! HTTP API, `sipwatch alert test`, and delivery health in /metrics, /healthz and the API.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SMTP_USER: &str = "sipwatch";
const SMTP_PASSWORD: &str = "s3cret-smtp-pw";
const API_TOKEN: &str = "test-api-token-0123456789";

/// The tests' SMTP server (aiosmtpd): AUTH required (LOGIN/PLAIN, allowed without TLS on
/// loopback); RCPT to `reject` (unless empty) is refused with 550.
fn start_smtp(port: u16, reject: &str) -> Smtp {
    Smtp::start(
        port,
        SmtpOptions {
            auth: Some((SMTP_USER.into(), SMTP_PASSWORD.into())),
            reject: (!reject.is_empty()).then(|| reject.to_string()),
            ..SmtpOptions::default()
        },
    )
}

/// Accepted mails, oldest first: (subject, the message with its body decoded, authenticated).
fn received(smtp: &Smtp) -> Vec<(String, String, bool)> {
    smtp.mails()
        .iter()
        .map(|m| {
            let data = m["decoded"].as_str().unwrap_or("").replace("\r\n", "\n");
            (
                subject(&data),
                data,
                m["authenticated"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// The Subject header, unfolded (RFC 5322 folding) and decoded when it is an encoded word.
fn subject(data: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in data.lines() {
        if line.is_empty() {
            break;
        }
        if let Some(rest) = line.strip_prefix("Subject:") {
            out.push_str(rest.trim());
            inside = true;
        } else if inside && line.starts_with([' ', '\t']) {
            out.push(' ');
            out.push_str(line.trim());
        } else {
            inside = false;
        }
    }
    out
}

/// Waits up to `secs` seconds until the mails received satisfy `ok`, and returns them; a timeout
/// shows their subjects and the daemon's log.
fn wait_mails(
    smtp: &Smtp,
    d: &Daemon,
    what: &str,
    secs: u64,
    mut ok: impl FnMut(&[(String, String, bool)]) -> bool,
) -> Vec<(String, String, bool)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mails = received(smtp);
        if ok(&mails) {
            return mails;
        }
        if Instant::now() > deadline {
            let subjects: Vec<&String> = mails.iter().map(|m| &m.0).collect();
            panic!(
                "timed out waiting for {what}; mails: {subjects:#?}\ndaemon log:\n{}",
                d.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Setup {
    dir: tempfile::TempDir,
    listen: String,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
            listen: format!("127.0.0.1:{}", free_sip_port()),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A daemon config: targets as (name, port, group), groups as (name, min_up), mail to
    /// `smtp_port` with AUTH, the API token, and `extra` appended under [alerting].
    fn config(
        &self,
        targets: &[(String, u16, &str)],
        groups: &[(&str, usize)],
        smtp_port: u16,
        to: &str,
        extra: &str,
    ) -> PathBuf {
        std::fs::write(self.path("smtp.password"), SMTP_PASSWORD).unwrap();
        std::fs::write(self.path("api.token"), API_TOKEN).unwrap();
        let mut cfg = format!(
            r#"[http]
listen = "{listen}"
[store]
path = "{db}"
[defaults]
interval = "300ms"
timeout = "250ms"
fail_threshold = 2
ok_threshold = 2
[alerting]
source = "prober-test"
url = "http://{listen}/"
api_token_file = "api.token"
group_wait = "4s"
group_interval = "10s"
repeat_interval = "1h"
{extra}
[[alerting.receiver]]
kind = "email"
name = "mail"
smtp = "127.0.0.1:{smtp_port}"
from = "sipwatch@example.net"
to = ["{to}"]
username = "{SMTP_USER}"
password_file = "{pw}"
timeout = "5s"
"#,
            listen = self.listen,
            db = self.path("state.db").display(),
            pw = self.path("smtp.password").display(),
        );
        for (name, min_up) in groups {
            cfg.push_str(&format!(
                "[[group]]\nname = \"{name}\"\nmin_up = {min_up}\n"
            ));
        }
        for (name, port, group) in targets {
            cfg.push_str(&format!(
                "[[target]]\nname = \"{name}\"\nuri = \"sip:127.0.0.1:{port}\"\ngroup = \"{group}\"\n"
            ));
        }
        let path = self.path("sipwatch.toml");
        std::fs::write(&path, cfg).unwrap();
        path
    }

    fn start(&self, config: &Path) -> Daemon {
        Daemon::start(config, &self.listen, &self.path("daemon.log"))
    }
}

/// Two real Kamailios in group `frontends` (min_up 1): `node`, the one a test stops, and
/// `anchor`, which stays up so the group keeps its quorum.
struct Frontends {
    node: Kamailio,
    anchor: Kamailio,
}

impl Frontends {
    fn start() -> Frontends {
        Frontends {
            node: Kamailio::start(KamailioSpec::new(free_sip_port(), ROUTE_OK)),
            anchor: Kamailio::start(KamailioSpec::new(free_sip_port(), ROUTE_OK)),
        }
    }

    /// The target `node` on the node and `anchor` on the anchor.
    fn targets(&self, node: &str, anchor: &str) -> Vec<(String, u16, &'static str)> {
        vec![
            (node.to_string(), self.node.port, "frontends"),
            (anchor.to_string(), self.anchor.port, "frontends"),
        ]
    }

    /// The node again, on its port, after the test stopped it.
    fn restart_node(&self) -> Kamailio {
        Kamailio::start(KamailioSpec::new(self.node.port, ROUTE_OK))
    }
}

/// Waits until the daemon's /metrics satisfy `ok`; a timeout shows the daemon's log.
fn wait_metrics(s: &Setup, d: &Daemon, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) {
    wait_until_or(
        what,
        timeout,
        || d.log_text(),
        || ok(&http_get(&s.listen, "/metrics").unwrap().1),
    );
}

fn wait_up(d: &Daemon, names: &[String]) {
    wait_until_or(
        "every target up",
        Duration::from_secs(20),
        || d.log_text(),
        || {
            let c = d.json("/api/v2/components.json");
            names
                .iter()
                .all(|n| component_status(&c, n) == "operational")
        },
    );
}

/// A JSON request to the daemon's API, with the bearer `token` if given.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let headers = format!("{auth}Content-Type: application/json\r\n");
    http_request(addr, method, path, &headers, body, Duration::from_secs(60)).unwrap()
}

fn run_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sipwatch"))
        .args(args)
        .output()
        .expect("run sipwatch")
}

fn metric(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn forty_nodes_down_make_one_grouped_mail_then_one_resolve() {
    let s = Setup::new();
    let smtp = start_smtp(free_sip_port(), "");
    let mut f = Frontends::start();
    // 40 frontends on one Kamailio, plus one on another that stays up: the group keeps its
    // quorum, so the 40 node alerts are what on-call must hear about, in one mail.
    let mut targets: Vec<(String, u16, &str)> = (1..=40)
        .map(|i| (format!("fe-{i:02}"), f.node.port, "frontends"))
        .collect();
    targets.push(("fe-anchor".into(), f.anchor.port, "frontends"));
    let cfg = s.config(
        &targets,
        &[("frontends", 1)],
        smtp.port,
        "noc@example.net",
        "",
    );
    let d = s.start(&cfg);
    let names: Vec<String> = targets.iter().map(|t| t.0.clone()).collect();
    wait_up(&d, &names);

    f.node.stop();
    let mails = wait_mails(&smtp, &d, "the grouped mail", 40, |m| !m.is_empty());
    // Restart right away: recovery completes well inside the group's 10 s interval.
    let _k2 = f.restart_node();
    let (subject, data, authenticated) = &mails[0];
    assert_eq!(subject, "[FIRING:40] frontends: 40 nodes down", "{data}");
    assert!(authenticated, "the mail was sent after SMTP AUTH");
    for i in 1..=40 {
        assert!(
            data.contains(&format!("fe-{i:02} node 127.0.0.1:{} is down", f.node.port)),
            "fe-{i:02} listed:\n{data}"
        );
    }
    assert!(
        data.contains(&format!("Status page: http://{}/", s.listen)),
        "{data}"
    );
    assert!(
        data.contains("Message-ID: <sipwatch.notify.default.group.frontends.firing."),
        "{data}"
    );

    let mails = wait_mails(&smtp, &d, "the resolve", 40, |m| m.len() >= 2);
    assert_eq!(
        mails[1].0, "[RESOLVED] frontends: 40 nodes down",
        "{}",
        mails[1].1
    );
    // Nothing else follows: no per-node mail, no extra update.
    std::thread::sleep(Duration::from_secs(12));
    let subjects: Vec<String> = received(&smtp).into_iter().map(|m| m.0).collect();
    assert_eq!(subjects.len(), 2, "{subjects:#?}");

    let metrics = http_get(&s.listen, "/metrics").unwrap().1;
    assert_eq!(
        metric(
            &metrics,
            "sipwatch_notifications_total{receiver=\"mail\",outcome=\"delivered\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "sipwatch_outbox_pending{receiver=\"mail\"}"),
        Some(0.0),
        "{metrics}"
    );
    // The delivery metrics pass Prometheus' own linter.
    assert_promtool_accepts(&metrics);
}

#[test]
fn a_group_below_quorum_pages_once_for_the_group_not_per_node() {
    let s = Setup::new();
    let smtp = start_smtp(free_sip_port(), "");
    let ports: Vec<u16> = (0..3).map(|_| free_sip_port()).collect();
    let mut ks: Vec<Kamailio> = ports
        .iter()
        .map(|p| Kamailio::start(KamailioSpec::new(*p, ROUTE_OK)))
        .collect();
    let targets: Vec<(String, u16, &str)> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("edge-{}", i + 1), *p, "edges"))
        .collect();
    let cfg = s.config(&targets, &[("edges", 2)], smtp.port, "noc@example.net", "");
    let d = s.start(&cfg);
    wait_up(&d, &targets.iter().map(|t| t.0.clone()).collect::<Vec<_>>());
    // All three at once: one after the other, a loaded machine took longer than the group's
    // 4 s group_wait to stop them, and the page went out before the third node was down.
    std::thread::scope(|scope| {
        for k in ks.iter_mut() {
            scope.spawn(move || k.stop());
        }
    });
    let mails = wait_mails(&smtp, &d, "the group page", 40, |m| !m.is_empty());
    let (subject, data, _) = &mails[0];
    assert!(
        subject.starts_with("[FIRING:1] edges: group edges is below quorum"),
        "{subject}\n{data}"
    );
    for t in &targets {
        assert!(
            data.contains(&format!("{} node", t.0))
                && data.contains("inhibited by sipwatch/group/edges"),
            "{} listed as muted by the group alert:\n{data}",
            t.0
        );
    }
    // The node alerts are recorded as inhibited, not sent on their own.
    std::thread::sleep(Duration::from_secs(12));
    let subjects: Vec<String> = received(&smtp).into_iter().map(|m| m.0).collect();
    assert_eq!(subjects.len(), 1, "{subjects:#?}");
    let page = http_get(&s.listen, "/").unwrap().1;
    assert!(page.contains("inhibited by sipwatch/group/edges"), "{page}");
}

#[test]
fn a_silence_through_the_api_and_cli_holds_the_mail_and_its_expiry_releases_it() {
    let s = Setup::new();
    let smtp = start_smtp(free_sip_port(), "");
    let mut f = Frontends::start();
    let targets = f.targets("fe-2", "fe-1");
    let cfg = s.config(
        &targets,
        &[("frontends", 1)],
        smtp.port,
        "noc@example.net",
        "",
    );
    let d = s.start(&cfg);
    wait_up(&d, &["fe-1".into(), "fe-2".into()]);
    let cfg_arg = cfg.to_str().unwrap();

    // The API refuses without the token.
    let (status, body) = http(&s.listen, "GET", "/api/v1/silences", None, "");
    assert_eq!(status, 401, "{body}");
    let (status, body) = http(&s.listen, "GET", "/api/v1/silences", Some("wrong"), "");
    assert_eq!(status, 401, "{body}");

    let out = run_cli(&[
        "silence",
        "add",
        "target=fe-2",
        "--for",
        "2h",
        "--comment",
        "swapping the PSU",
        "-c",
        cfg_arg,
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let id = printed.split_whitespace().next().unwrap().to_string();
    assert!(
        printed.contains("active") && printed.contains("target=fe-2"),
        "{printed}"
    );

    let (status, body) = http(&s.listen, "GET", "/api/v1/silences", Some(API_TOKEN), "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["silences"][0]["id"], id.as_str(), "{v}");
    assert_eq!(v["silences"][0]["comment"], "swapping the PSU");

    f.node.stop();
    // The alert fires, is recorded as silenced and shown, and no mail leaves.
    wait_until_or(
        "the silenced alert on the status page",
        Duration::from_secs(30),
        || d.log_text(),
        || {
            let page = http_get(&s.listen, "/").unwrap().1;
            page.contains("silenced by") && page.contains("swapping the PSU")
        },
    );
    std::thread::sleep(Duration::from_secs(6));
    assert!(received(&smtp).is_empty(), "{:?}", received(&smtp));

    // The silence survives a daemon restart (kept in the store).
    drop(d);
    let d = s.start(&cfg);
    let out = run_cli(&["silence", "list", "--json", "-c", cfg_arg]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&id),
        "{}",
        describe(&out)
    );

    let out = run_cli(&["silence", "expire", &id, "-c", cfg_arg]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("expired"),
        "{}",
        describe(&out)
    );
    let mails = wait_mails(&smtp, &d, "the mail after the silence", 40, |m| {
        !m.is_empty()
    });
    assert!(
        mails[0].0.starts_with("[FIRING:1] frontends: fe-2 node"),
        "{}",
        mails[0].0
    );
    let out = run_cli(&["silence", "expire", "nope", "-c", cfg_arg]);
    assert!(!out.status.success());
    assert_stderr_says(&out, "no silence has the id");
}

#[test]
fn alert_test_reports_each_receiver_and_fails_on_a_dead_smtp_port() {
    let s = Setup::new();
    let smtp = start_smtp(free_sip_port(), "");
    let kport = free_sip_port();
    let targets = vec![("fe-1".to_string(), kport, "frontends")];
    let cfg = s.config(
        &targets,
        &[("frontends", 1)],
        smtp.port,
        "noc@example.net",
        "",
    );
    let cfg_arg = cfg.to_str().unwrap();

    // No daemon: the command opens the outbox itself.
    let out = run_cli(&["alert", "test", "-c", cfg_arg]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "mail: delivered\n");
    let mails = received(&smtp);
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].0.contains("[TEST] sipwatch test notification"),
        "{}",
        mails[0].0
    );

    // A dead SMTP port: non-zero, with the reason.
    let dead = free_sip_port();
    let cfg_dead = s.config(&targets, &[("frontends", 1)], dead, "noc@example.net", "");
    let out = run_cli(&["alert", "test", "-c", cfg_dead.to_str().unwrap(), "mail"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("mail: failed: ") && stdout.to_lowercase().contains("connect"),
        "{}",
        describe(&out)
    );
    assert!(!stdout.contains(SMTP_PASSWORD));

    // With the daemon running (it holds the outbox), the test goes through its API.
    let cfg = s.config(
        &targets,
        &[("frontends", 1)],
        smtp.port,
        "noc@example.net",
        "",
    );
    let _d = s.start(&cfg);
    let out = run_cli(&["alert", "test", "-c", cfg_arg]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "mail: delivered\n");
    assert_eq!(received(&smtp).len(), 2);
    let out = run_cli(&["alert", "test", "-c", cfg_arg, "pager"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_stderr_says(&out, "the receivers are: mail");
}

#[test]
fn a_refused_mail_is_kept_as_failed_and_a_failing_receiver_is_reported() {
    let s = Setup::new();
    let smtp_port = free_sip_port();
    let mut f = Frontends::start();
    let targets = f.targets("fe-1", "fe-anchor");
    // The SMTP server refuses the recipient: a permanent failure.
    let mut smtp = start_smtp(smtp_port, "gone@example.net");
    let cfg = s.config(
        &targets,
        &[("frontends", 1)],
        smtp_port,
        "gone@example.net",
        "unhealthy_after = \"3s\"",
    );
    let d = s.start(&cfg);
    wait_up(&d, &["fe-1".into(), "fe-anchor".into()]);
    f.node.stop();
    wait_until_or(
        "the refused notification listed as failed",
        Duration::from_secs(60),
        || d.log_text(),
        || {
            let (status, body) = http(
                &s.listen,
                "GET",
                "/api/v1/notifications?state=failed",
                Some(API_TOKEN),
                "",
            );
            status == 200 && body.contains("mailbox unavailable")
        },
    );
    wait_metrics(
        &s,
        &d,
        "the refusal counted in /metrics",
        Duration::from_secs(10),
        |metrics| {
            metric(
                metrics,
                "sipwatch_notifications_total{receiver=\"mail\",outcome=\"failed\"}",
            ) == Some(1.0)
        },
    );

    // Now the server is down altogether: the resolve waits in the outbox, and the receiver
    // has been failing for longer than unhealthy_after.
    smtp.stop();
    let _k2 = f.restart_node();
    wait_metrics(
        &s,
        &d,
        "the resolve pending in /metrics for a second or more",
        Duration::from_secs(60),
        |metrics| {
            metric(metrics, "sipwatch_outbox_pending{receiver=\"mail\"}") == Some(1.0)
                && metric(
                    metrics,
                    "sipwatch_outbox_oldest_pending_seconds{receiver=\"mail\"}",
                )
                .is_some_and(|v| v >= 1.0)
        },
    );
    let body = http_get(&s.listen, "/healthz").unwrap().1;
    assert!(
        body.contains("alerting: unhealthy: receiver mail (email) failing for"),
        "{body}"
    );
    let page = http_get(&s.listen, "/").unwrap().1;
    assert!(page.contains("Alerts are not being delivered"), "{page}");
    let metrics = http_get(&s.listen, "/metrics").unwrap().1;
    assert!(
        metric(
            &metrics,
            "sipwatch_notifications_total{receiver=\"mail\",outcome=\"retried\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{metrics}"
    );
}

fn kill9(d: &mut Daemon) {
    if let Some(mut c) = d.child.take() {
        unsafe {
            libc::kill(c.id() as i32, libc::SIGKILL);
        }
        let _ = c.wait();
    }
}

#[test]
fn a_page_pending_through_a_crash_and_an_smtp_outage_arrives_once_within_30_s_of_smtp_return() {
    let s = Setup::new();
    let smtp_port = free_sip_port();
    let mut f = Frontends::start();
    let targets = f.targets("fe-1", "fe-anchor");
    let cfg = s.config(
        &targets,
        &[("frontends", 1)],
        smtp_port,
        "noc@example.net",
        "",
    );
    let mut d = s.start(&cfg);
    wait_up(&d, &["fe-1".into(), "fe-anchor".into()]);
    // The SMTP server is down when the node dies: the page waits in the outbox.
    f.node.stop();
    wait_metrics(
        &s,
        &d,
        "the page pending in the outbox",
        Duration::from_secs(30),
        |m| {
            metric(m, "sipwatch_outbox_pending{receiver=\"mail\"}") == Some(1.0)
                && metric(
                    m,
                    "sipwatch_notifications_total{receiver=\"mail\",outcome=\"retried\"}",
                )
                .is_some_and(|v| v >= 1.0)
        },
    );
    // The daemon dies with it pending, and comes back (the node is still down).
    kill9(&mut d);
    let d = s.start(&cfg);
    // Long enough for the back-off to reach its cap.
    std::thread::sleep(Duration::from_secs(35));
    let mut smtp = start_smtp(smtp_port, "");
    let back = Instant::now();
    let mails = wait_mails(&smtp, &d, "the page after SMTP returned", 60, |m| {
        !m.is_empty()
    });
    let waited = back.elapsed();
    eprintln!("the page left {waited:?} after the SMTP server returned");
    assert!(
        waited <= Duration::from_secs(35),
        "the page left {waited:?} after the SMTP server returned (limit 30 s + 5 s margin)"
    );
    assert!(
        mails[0].0.starts_with("[FIRING:1] frontends: fe-1 node"),
        "{}",
        mails[0].0
    );
    // Exactly once: no second page from the restart.
    std::thread::sleep(Duration::from_secs(14));
    let subjects: Vec<String> = received(&smtp).into_iter().map(|m| m.0).collect();
    assert_eq!(subjects.len(), 1, "{subjects:#?}\n{}", d.log_text());
    smtp.stop();
}

#[test]
fn daemons_whose_stores_share_a_folder_get_their_own_outboxes() {
    let s = Setup::new();
    let smtp = start_smtp(free_sip_port(), "");
    let kport = free_sip_port();
    let _k = Kamailio::start(KamailioSpec::new(kport, ROUTE_OK));
    let targets = vec![("fe-1".to_string(), kport, "frontends")];
    let cfg_a = s.config(
        &targets,
        &[("frontends", 1)],
        smtp.port,
        "noc@example.net",
        "",
    );
    let text_a = std::fs::read_to_string(&cfg_a).unwrap();
    let listen_b = format!("127.0.0.1:{}", free_sip_port());
    let text_b = text_a
        .replace(&s.listen, &listen_b)
        .replace("state.db", "state-b.db");
    let cfg_b = s.path("b.toml");
    std::fs::write(&cfg_b, &text_b).unwrap();
    let cfg_a = s.path("a.toml");
    std::fs::write(&cfg_a, &text_a).unwrap();

    let _a = Daemon::start(&cfg_a, &s.listen, &s.path("a.log"));
    let out = run_cli(&["check-config", cfg_b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        describe(&out)
    );
    let b = Daemon::start(&cfg_b, &listen_b, &s.path("b.log"));
    assert!(s.path("state.outbox.db").exists());
    assert!(s.path("state-b.outbox.db").exists());
    assert!(
        !b.log_text().contains("in use by another"),
        "{}",
        b.log_text()
    );
    // check-config sees the outbox a running daemon holds, and says what it means.
    let out = run_cli(&["check-config", cfg_a.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("state.outbox.db is in use by a running sipwatch process"),
        "{}",
        describe(&out)
    );
    // An outbox that is the store itself is a config error.
    let clash = text_a.replace(
        "api_token_file",
        &format!(
            "outbox = \"{}\"\napi_token_file",
            s.path("state.db").display()
        ),
    );
    let cfg_c = s.path("c.toml");
    std::fs::write(&cfg_c, clash).unwrap();
    let out = run_cli(&["check-config", cfg_c.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_stderr_says(&out, "is the [store] path too");
}

#[test]
fn two_daemons_make_one_alert_in_a_real_alertmanager() {
    let s = Setup::new();
    let am = Alertmanager::start();
    let am_addr = format!("127.0.0.1:{}", am.port);
    let kport = free_sip_port();
    let mut k = Kamailio::start(KamailioSpec::new(kport, ROUTE_OK));
    let mut daemons = Vec::new();
    for name in ["prober-a", "prober-b"] {
        let listen = format!("127.0.0.1:{}", free_sip_port());
        let cfg = s.path(&format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                r#"[http]
listen = "{listen}"
[store]
path = "{}"
[defaults]
interval = "300ms"
timeout = "250ms"
fail_threshold = 2
ok_threshold = 2
[alerting]
source = "{name}"
group_wait = "1s"
[[alerting.route]]
matchers = ["severity=critical"]
receivers = ["am"]
[[alerting.receiver]]
name = "am"
kind = "alertmanager"
url = "http://{am_addr}"
[[target]]
name = "edge"
uri = "sip:127.0.0.1:{kport}"
"#,
                s.path(&format!("{name}.db")).display()
            ),
        )
        .unwrap();
        let d = Daemon::start(&cfg, &listen, &s.path(&format!("{name}.log")));
        daemons.push(d);
    }
    for d in &daemons {
        wait_up(d, &["edge".into()]);
    }
    k.stop();
    let mut seen = serde_json::Value::Null;
    wait_until_or(
        "the SipNodeDown alert from both daemons in Alertmanager",
        Duration::from_secs(30),
        || {
            daemons
                .iter()
                .map(|d| d.log_text())
                .collect::<Vec<_>>()
                .join("\n---\n")
        },
        || {
            let logs_ok = daemons
                .iter()
                .all(|d| d.log_text().contains("alert delivered"));
            let (_, body) = http_get(&am_addr, "/api/v2/alerts").unwrap();
            seen = serde_json::from_str(&body).unwrap_or_default();
            logs_ok
                && seen
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["labels"]["alertname"] == "SipNodeDown"))
        },
    );
    let down: Vec<&serde_json::Value> = seen
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["labels"]["alertname"] == "SipNodeDown")
        .collect();
    assert_eq!(down.len(), 1, "one alert, not one per daemon: {seen:#}");
    assert_eq!(down[0]["labels"]["target"], "edge");
}

#[test]
fn an_unacknowledged_page_escalates_and_an_acknowledged_one_does_not() {
    let s = Setup::new();
    let smtp = start_smtp(free_sip_port(), "");
    let ports: Vec<u16> = (0..4).map(|_| free_sip_port()).collect();
    let mut down_a = Kamailio::start(KamailioSpec::new(ports[0], ROUTE_OK));
    let mut down_b = Kamailio::start(KamailioSpec::new(ports[1], ROUTE_OK));
    let _anchor_a = Kamailio::start(KamailioSpec::new(ports[2], ROUTE_OK));
    let _anchor_b = Kamailio::start(KamailioSpec::new(ports[3], ROUTE_OK));
    let targets = vec![
        ("a-1".to_string(), ports[0], "ga"),
        ("b-1".to_string(), ports[1], "gb"),
        ("a-anchor".to_string(), ports[2], "ga"),
        ("b-anchor".to_string(), ports[3], "gb"),
    ];
    let extra = format!(
        r#"[[alerting.route]]
receivers = ["mail"]
escalate = [{{ after = "20s", receivers = ["secondary"] }}]
[[alerting.receiver]]
kind = "email"
name = "secondary"
smtp = "127.0.0.1:{}"
from = "sipwatch@example.net"
to = ["secondary@example.net"]
username = "{SMTP_USER}"
password_file = "{}"
timeout = "5s"
"#,
        smtp.port,
        s.path("smtp.password").display()
    );
    // The extra tables go after [alerting]'s keys: append them at the end of the file.
    let cfg = s.config(
        &targets,
        &[("ga", 1), ("gb", 1)],
        smtp.port,
        "primary@example.net",
        "",
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    let at = text.find("[[group]]").unwrap();
    std::fs::write(&cfg, format!("{}{extra}{}", &text[..at], &text[at..])).unwrap();
    let d = s.start(&cfg);
    wait_up(&d, &targets.iter().map(|t| t.0.clone()).collect::<Vec<_>>());
    down_a.stop();
    down_b.stop();
    let mails = wait_mails(&smtp, &d, "both first pages", 30, |m| m.len() >= 2);
    let page_b = mails
        .iter()
        .find(|m| m.0.starts_with("[FIRING:1] gb:"))
        .unwrap_or_else(|| panic!("{mails:#?}"));
    // The one-click link: a page with a button (a mail scanner following it acks nothing),
    // then the form.
    let link = page_b
        .1
        .lines()
        .find_map(|l| l.strip_prefix("Acknowledge (stops escalation): "))
        .unwrap_or_else(|| panic!("no link in:\n{}", page_b.1))
        .trim()
        .to_string();
    let path = &link[link.find("/ack?").unwrap()..];
    let (status, page) = http(&s.listen, "GET", path, None, "");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<button type=\"submit\">Acknowledge</button>"),
        "{page}"
    );
    let query = &path["/ack?".len()..];
    let (status, body) = http(&s.listen, "POST", "/ack", None, query);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Acknowledged"), "{body}");
    // A tampered link is refused.
    let tampered = query.replace("group%3Dgb", "group%3Dga");
    let (status, _) = http(&s.listen, "POST", "/ack", None, &tampered);
    assert_eq!(status, 403);

    let mails = wait_mails(&smtp, &d, "the escalation", 60, |m| {
        m.iter().any(|m| m.0.starts_with("[ESCALATED]"))
    });
    let escalated: Vec<_> = mails
        .iter()
        .filter(|m| m.0.starts_with("[ESCALATED]"))
        .collect();
    assert_eq!(
        escalated.len(),
        1,
        "{mails:#?}\ndaemon log:\n{}",
        d.log_text()
    );
    assert!(
        escalated[0]
            .0
            .starts_with("[ESCALATED] [FIRING:1] ga: a-1 node"),
        "{}",
        escalated[0].0
    );
    assert!(
        escalated[0].1.contains("To: secondary@example.net"),
        "{}",
        escalated[0].1
    );
    // The acknowledged group never escalates.
    std::thread::sleep(Duration::from_secs(10));
    let mails = received(&smtp);
    assert!(
        !mails
            .iter()
            .any(|m| m.0.contains("gb:") && m.0.starts_with("[ESCALATED]")),
        "{mails:#?}"
    );
    let page = http_get(&s.listen, "/").unwrap().1;
    assert!(
        page.contains("sipwatch/notify/route-1/group=gb"),
        "the ack is shown: {page}"
    );
    // The CLI acknowledges by key, and says so when nothing has that key.
    let cfg_arg = cfg.to_str().unwrap();
    let out = run_cli(&[
        "alert",
        "ack",
        "sipwatch/notify/route-1/group=ga",
        "-c",
        cfg_arg,
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = run_cli(&[
        "alert",
        "ack",
        "sipwatch/notify/route-1/group=zz",
        "-c",
        cfg_arg,
    ]);
    assert!(!out.status.success());
    assert_stderr_says(&out, "no firing notification has the key");
}
