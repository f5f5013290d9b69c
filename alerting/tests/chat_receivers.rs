//! Slack-compatible and Microsoft Teams receivers, and the signed webhook, against a local HTTP
//! receiver that checks the documented request shapes field by field. The webhook signature is
//! checked with `openssl dgst -hmac` (Debian `openssl`), an implementation independent of ours.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use sipwatch_alerting::{Outbox, Severity};

const DEADLINE: Duration = Duration::from_secs(20);

async fn deliver(configs: &str, alerts: &[sipwatch_alerting::Alert]) -> Outbox {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, running) = dispatching(dir.path(), configs);
    for a in alerts {
        outbox.enqueue(a).unwrap();
    }
    let want = alerts.len() as u64;
    wait_until_async("every alert delivered or given up", DEADLINE, || {
        outbox
            .stats()
            .receivers
            .iter()
            .all(|r| r.sent + r.refused >= want || r.retried >= 3)
    })
    .await;
    running.stop().await;
    std::mem::forget(dir);
    outbox
}

#[tokio::test]
async fn slack_gets_one_text_field_with_subject_body_and_link() {
    let dir = tempfile::tempdir().unwrap();
    let chat = Recorder::start(200).await;
    let url_file = write_file(
        dir.path(),
        "slack.url",
        &format!("{}/services/T000/B000/XXXXSECRET\n", chat.base),
    );
    let firing = alert("sipwatch/probe/fe-2/10.0.0.2:5060", Severity::Critical);
    let resolved = firing.resolved_at(unix_now());
    deliver(
        &format!(
            "[[alerting.receiver]]\nkind = \"slack\"\nname = \"chat\"\nurl_file = \"{}\"\n",
            url_file.display()
        ),
        &[firing.clone(), resolved],
    )
    .await;
    let requests = chat.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/services/T000/B000/XXXXSECRET");
    assert_eq!(r.headers["content-type"], "application/json");
    let body = r.body.as_object().unwrap();
    assert_eq!(
        body.keys().collect::<Vec<_>>(),
        ["text"],
        "only `text`: {body:?}"
    );
    let text = body["text"].as_str().unwrap();
    let first_line = text.lines().next().unwrap();
    assert_eq!(
        first_line,
        format!("[FIRING critical] {} (host1)", firing.summary)
    );
    assert!(text.contains(&firing.description), "{text}");
    assert!(
        text.contains("more: http://status.example/sipwatch"),
        "{text}"
    );
    let text = requests[1].body["text"].as_str().unwrap();
    assert!(text.starts_with("[RESOLVED] "), "{text}");
}

#[tokio::test]
async fn a_grouped_notification_reads_the_same_in_slack() {
    use sipwatch_alerting::inhibit::default_rules;
    use sipwatch_alerting::route::{Grouping, Routes};
    let dir = tempfile::tempdir().unwrap();
    let chat = Recorder::start(200).await;
    let url_file = write_file(dir.path(), "slack.url", &format!("{}/hook", chat.base));
    let grouping = Grouping {
        group_wait: Duration::ZERO,
        ..Grouping::default()
    };
    let mut control = sipwatch_alerting::AlertControl::new(
        Routes::everyone(&["chat".into()], &grouping),
        default_rules(),
        Vec::new(),
    );
    for i in 1..=3 {
        let mut a = alert(&format!("sipwatch/probe/fe-{i}/n"), Severity::Critical);
        a.labels.insert("alertname".into(), "SipNodeDown".into());
        a.labels.insert("group".into(), "frontends".into());
        control.handle_alert(0.0, &a);
    }
    let n = control.poll(0.0);
    assert_eq!(n.len(), 1);
    let grouped = n[0].to_alert("prober", Some("http://status.example/"));
    deliver(
        &format!(
            "[[alerting.receiver]]\nkind = \"slack\"\nname = \"chat\"\nurl_file = \"{}\"\n",
            url_file.display()
        ),
        &[grouped],
    )
    .await;
    let text = chat.requests()[0].body["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.starts_with("[FIRING:3] frontends: 3 nodes down\n"),
        "{text}"
    );
    assert!(text.contains("Firing (3):"), "{text}");
    assert!(
        text.contains("Status page: http://status.example/"),
        "{text}"
    );
}

#[tokio::test]
async fn teams_gets_an_adaptive_card_message() {
    let dir = tempfile::tempdir().unwrap();
    let teams = Recorder::start(202).await;
    let url_file = write_file(
        dir.path(),
        "teams.url",
        &format!(
            "{}/workflows/abc/triggers/manual/paths/invoke?sig=SECRETSIG",
            teams.base
        ),
    );
    let firing = alert("sipwatch/leak/host1/kamailio/pss", Severity::Warning);
    deliver(
        &format!(
            "[[alerting.receiver]]\nkind = \"teams\"\nname = \"teams\"\nurl_file = \"{}\"\n",
            url_file.display()
        ),
        std::slice::from_ref(&firing),
    )
    .await;
    let requests = teams.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let r = &requests[0];
    assert_eq!(r.query.as_deref(), Some("sig=SECRETSIG"));
    let b = &r.body;
    assert_eq!(b["type"], "message");
    let attachments = b["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachments[0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert_eq!(card["version"], "1.4");
    let body = card["body"].as_array().unwrap();
    assert_eq!(body[0]["type"], "TextBlock");
    assert_eq!(
        body[0]["text"],
        format!("[FIRING warning] {} (host1)", firing.summary)
    );
    assert_eq!(body[1]["text"], firing.description);
    assert_eq!(body[2]["type"], "FactSet");
    let facts = body[2]["facts"].as_array().unwrap();
    assert!(facts
        .iter()
        .any(|f| f["title"] == "Severity" && f["value"] == "warning"));
    assert!(facts
        .iter()
        .any(|f| f["title"] == "Key" && f["value"] == firing.key.as_str()));
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    assert_eq!(card["actions"][0]["url"], "http://status.example/sipwatch");
}

#[tokio::test]
async fn a_chat_url_never_reaches_the_log() {
    let logs = LogCapture::global();
    let dir = tempfile::tempdir().unwrap();
    let chat = Recorder::start(200).await;
    chat.always_answer("", 403, Some("invalid token XXXXSECRET"));
    let url_file = write_file(
        dir.path(),
        "slack.url",
        &format!("{}/services/XXXXSECRET", chat.base),
    );
    let outbox = deliver(
        &format!(
            "[[alerting.receiver]]\nkind = \"slack\"\nname = \"chat\"\nurl_file = \"{}\"\n",
            url_file.display()
        ),
        &[alert("k/x", Severity::Critical)],
    )
    .await;
    assert_eq!(outbox.stats().receiver("chat").unwrap().refused, 1);
    let failed = outbox.deliveries(Some("failed"), 10).unwrap();
    assert!(!format!("{failed:?}").contains("XXXXSECRET"), "{failed:?}");
    let text = logs.text();
    assert!(text.contains("HTTP 403"), "{text}");
    assert!(!text.contains("XXXXSECRET"), "{text}");
}

#[tokio::test]
async fn the_webhook_signature_checks_out_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Recorder::start(200).await;
    let secret = "whsec-0123456789";
    let secret_file = write_file(dir.path(), "hook.secret", &format!("{secret}\n"));
    let a = alert("sipwatch/probe/fe-1/n", Severity::Critical);
    deliver(
        &format!(
            "[[alerting.receiver]]\nkind = \"webhook\"\nname = \"hook\"\nurl = \"{}/hook\"\nsigning_secret_file = \"{}\"\n",
            hook.base,
            secret_file.display()
        ),
        std::slice::from_ref(&a),
    )
    .await;
    let r = &hook.requests()[0];
    assert_eq!(r.body["key"], a.key.as_str());
    assert_eq!(r.body["status"], "firing");
    let timestamp = r.headers["x-sipwatch-timestamp"].to_str().unwrap();
    let ts: f64 = timestamp.parse().unwrap();
    assert!(
        (unix_now() - ts).abs() < 60.0,
        "a current timestamp: {timestamp}"
    );
    let signature = r.headers["x-sipwatch-signature"].to_str().unwrap();
    let signed = format!("{timestamp}.{}", r.raw);
    let path = write_file(dir.path(), "signed", &signed);
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret])
        .arg(&path)
        .output()
        .expect("openssl (apt-get install -y openssl)");
    assert!(out.status.success(), "{out:?}");
    let hex = String::from_utf8_lossy(&out.stdout)
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(signature, format!("sha256={hex}"));
}
