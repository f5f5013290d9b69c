//! PagerDuty, Opsgenie and webhook receivers against a local HTTP receiver that checks the
//! documented request shapes and answers scripted failures (500, 503, 429, 400).

mod common;

use std::time::Duration;

use common::*;
use sipwatch_alerting::{build, Enqueued, Severity};

const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn pagerduty_trigger_and_resolve_follow_events_api_v2() {
    let HttpReceiver {
        recorder: pd,
        outbox,
        running,
        dir: _dir,
    } = HttpReceiver::start(
        "pagerduty",
        "oncall",
        202,
        "/v2/enqueue",
        Some(("routing_key_file", "R0UTING-KEY-0123456789abcdef\n")),
        "",
    )
    .await;

    let leak = alert("sipwatch/leak/host1/kamailio/pss", Severity::Critical);
    assert_eq!(
        outbox.enqueue(&leak).unwrap(),
        Enqueued::Queued { deliveries: 1 }
    );
    wait_until_async("PagerDuty receives the trigger", DEADLINE, || {
        pd.count() == 1
    })
    .await;
    // Raised again by a second evaluation while still firing: not sent again.
    assert_eq!(outbox.enqueue(&leak).unwrap(), Enqueued::AlreadyFiring);
    let resolved = leak.resolved_at(unix_now());
    assert_eq!(
        outbox.enqueue(&resolved).unwrap(),
        Enqueued::Queued { deliveries: 1 }
    );
    wait_until_async("PagerDuty receives the resolve", DEADLINE, || {
        pd.count() == 2
    })
    .await;
    running.stop().await;

    let requests = pd.requests();
    assert_eq!(
        requests.len(),
        2,
        "exactly one trigger and one resolve: {requests:#?}"
    );
    let trigger = &requests[0];
    assert_eq!(trigger.method, "POST");
    assert_eq!(trigger.path, "/v2/enqueue");
    assert_eq!(trigger.headers["content-type"], "application/json");
    let body = &trigger.body;
    assert_eq!(body["routing_key"], "R0UTING-KEY-0123456789abcdef");
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["dedup_key"], "sipwatch/leak/host1/kamailio/pss");
    let payload = &body["payload"];
    assert_eq!(payload["summary"], leak.summary);
    assert_eq!(payload["source"], "host1");
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["component"], "kamailio");
    assert_eq!(payload["class"], "leak");
    assert_eq!(payload["custom_details"]["description"], leak.description);
    let timestamp = payload["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
        "timestamp {timestamp} is RFC 3339"
    );
    assert_eq!(body["links"][0]["href"], "http://status.example/sipwatch");

    let resolve = &requests[1].body;
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], "sipwatch/leak/host1/kamailio/pss");
    assert_eq!(resolve["routing_key"], "R0UTING-KEY-0123456789abcdef");

    let stats = outbox.stats();
    let oncall = stats.receiver("oncall").unwrap();
    assert_eq!((oncall.sent, oncall.failed, oncall.pending), (2, 0, 0));
    assert_eq!(stats.suppressed, 1);
}

#[tokio::test]
async fn opsgenie_create_and_close_use_alias_and_genie_key() {
    let HttpReceiver {
        recorder: og,
        outbox,
        running,
        dir: _dir,
    } = HttpReceiver::start(
        "opsgenie",
        "genie",
        202,
        "/v2/alerts",
        Some(("api_key_file", "0PSGENIE-API-KEY\n")),
        "",
    )
    .await;

    let mut down = alert("sipwatch/probe/edge-1", Severity::Warning);
    down.summary = "edge-1 does not answer OPTIONS ".repeat(10);
    outbox.enqueue(&down).unwrap();
    outbox.enqueue(&down.resolved_at(unix_now())).unwrap();
    wait_until_async("Opsgenie receives create and close", DEADLINE, || {
        og.count() == 2
    })
    .await;
    running.stop().await;

    let requests = og.requests();
    let create = &requests[0];
    assert_eq!(create.method, "POST");
    assert_eq!(create.path, "/v2/alerts");
    assert_eq!(create.headers["authorization"], "GenieKey 0PSGENIE-API-KEY");
    assert_eq!(create.body["alias"], "sipwatch/probe/edge-1");
    assert_eq!(create.body["priority"], "P3");
    assert_eq!(create.body["source"], "host1");
    assert_eq!(create.body["description"], down.description);
    assert!(create.body["message"].as_str().unwrap().chars().count() <= 130);
    assert!(create.body["tags"]
        .as_array()
        .unwrap()
        .contains(&"sipwatch".into()));
    assert_eq!(create.body["details"]["key"], "sipwatch/probe/edge-1");

    let close = &requests[1];
    assert_eq!(close.method, "POST");
    assert_eq!(close.path, "/v2/alerts/sipwatch%2Fprobe%2Fedge-1/close");
    assert_eq!(close.query.as_deref(), Some("identifierType=alias"));
    assert_eq!(close.headers["authorization"], "GenieKey 0PSGENIE-API-KEY");
    assert_eq!(close.body["source"], "host1");
}

#[tokio::test]
async fn webhook_posts_the_alert_json_with_bearer_token() {
    let HttpReceiver {
        recorder: hook,
        outbox,
        running,
        dir: _dir,
    } = HttpReceiver::start(
        "webhook",
        "chatops",
        200,
        "/hooks/sipwatch",
        Some(("bearer_token_file", "B3ARER-T0KEN\n")),
        "timeout = \"5s\"",
    )
    .await;
    let a = alert("sipwatch/group/edge", Severity::Info);
    outbox.enqueue(&a).unwrap();
    wait_until_async("the webhook receives the alert", DEADLINE, || {
        hook.count() == 1
    })
    .await;
    running.stop().await;

    let request = &hook.requests()[0];
    assert_eq!(request.path, "/hooks/sipwatch");
    assert_eq!(request.headers["authorization"], "Bearer B3ARER-T0KEN");
    assert_eq!(request.body, serde_json::to_value(&a).unwrap());
}

#[tokio::test]
async fn retryable_answers_are_retried_until_accepted_and_sent_once() {
    let HttpReceiver {
        recorder: hook,
        outbox,
        running,
        dir: _dir,
    } = HttpReceiver::start("webhook", "hook", 200, "/h", None, "").await;
    hook.script(&[(500, None), (503, None), (429, None)]);

    outbox.enqueue(&alert("k/one", Severity::Critical)).unwrap();
    wait_until_async(
        "the alert is accepted after 500, 503, 429",
        DEADLINE,
        || hook.accepted().len() == 1,
    )
    .await;
    // A second alert queued behind it: when it arrives, any duplicate of the first would have too.
    outbox.enqueue(&alert("k/two", Severity::Critical)).unwrap();
    wait_until_async("the second alert arrives", DEADLINE, || {
        hook.accepted().len() == 2
    })
    .await;
    running.stop().await;

    let answered: Vec<(String, u16)> = hook
        .requests()
        .iter()
        .map(|r| (r.body["key"].as_str().unwrap().to_string(), r.answered))
        .collect();
    assert_eq!(
        answered,
        [
            ("k/one".to_string(), 500),
            ("k/one".to_string(), 503),
            ("k/one".to_string(), 429),
            ("k/one".to_string(), 200),
            ("k/two".to_string(), 200),
        ]
    );
    let stats = outbox.stats();
    let hook_stats = stats.receiver("hook").unwrap();
    assert_eq!(
        (
            hook_stats.sent,
            hook_stats.failed,
            hook_stats.dropped,
            hook_stats.pending
        ),
        (2, 3, 0, 0)
    );
}

#[tokio::test]
async fn permanent_refusal_is_dropped_after_attempts_and_the_key_never_logged() {
    let logs = LogCapture::global();
    let dir = tempfile::tempdir().unwrap();
    let pd = Recorder::start(202).await;
    // PagerDuty's 400 body names the (wrong) routing key: it must not reach the log.
    let echo =
        r#"{"status":"invalid event","errors":["routing_key WR0NG-ROUTING-KEY is not valid"]}"#;
    pd.always_answer("k/refused", 400, Some(echo));
    let key_file = write_file(dir.path(), "pd.key", "WR0NG-ROUTING-KEY");
    let configs = receivers(&format!(
        r#"
        [[alerting.receiver]]
        kind = "pagerduty"
        name = "oncall"
        routing_key_file = "{}"
        url = "{}/v2/enqueue"
        "#,
        key_file.display(),
        pd.base
    ));
    let notifiers = build(&configs).unwrap();
    assert!(!format!("{notifiers:?}").contains("WR0NG-ROUTING-KEY"));
    let (outbox, running) = open_outbox(dir.path(), notifiers);

    outbox
        .enqueue(&alert("k/refused", Severity::Critical))
        .unwrap();
    outbox
        .enqueue(&alert("k/later", Severity::Critical))
        .unwrap();
    wait_until_async(
        "the refused alert is dropped and the next one delivered",
        DEADLINE,
        || {
            let s = outbox.stats();
            let r = s.receiver("oncall").unwrap();
            r.refused == 1 && r.dropped == 0 && r.sent == 1
        },
    )
    .await;
    running.stop().await;

    let keys: Vec<String> = pd
        .requests()
        .iter()
        .map(|r| r.body["dedup_key"].as_str().unwrap().to_string())
        .collect();
    // Three attempts for the refused one (permanent_attempts = 3); the other goes through
    // between them because a refusal does not pause the receiver.
    assert_eq!(
        keys.iter().filter(|k| *k == "k/refused").count(),
        3,
        "{keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| *k == "k/later").count(),
        1,
        "{keys:?}"
    );
    let stats = outbox.stats();
    let r = stats.receiver("oncall").unwrap();
    assert_eq!((r.failed, r.pending), (3, 0));
    assert_eq!(outbox.rows_by_state().unwrap().get("failed"), Some(&1));
    let failed = outbox.deliveries(Some("failed"), 10).unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].key, "k/refused");
    assert_eq!(failed[0].attempts, 3);
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("HTTP 400"),
        "{failed:?}"
    );
    assert!(
        !format!("{failed:?}").contains("WR0NG-ROUTING-KEY"),
        "the stored error is scrubbed"
    );

    let text = logs.text();
    assert!(
        text.contains("DROPPING"),
        "the drop is logged loudly:\n{text}"
    );
    assert!(text.contains("HTTP 400"), "the reason is logged:\n{text}");
    assert!(
        text.contains("<redacted>"),
        "the echoed key is scrubbed:\n{text}"
    );
    assert!(
        !text.contains("WR0NG-ROUTING-KEY"),
        "the key leaked into the log:\n{text}"
    );
}
