//! Receivers that echo the request in their error answer: the secrets the request carried in
//! its URL (`?token=`, `user:pass@`) or its Authorization header reach neither the log nor the
//! outbox file.

mod common;

use std::time::Duration;

use common::*;
use sipwatch_alerting::Severity;

const QUERY_TOKEN: &str = "T0KEN-query-secret";
const AM_PASSWORD: &str = "s3cr3t-am-pw";
/// base64("am:s3cr3t-am-pw"), the Basic credentials reqwest sends for the Alertmanager URL.
const AM_BASIC: &str = "YW06czNjcjN0LWFtLXB3";

#[tokio::test]
async fn echoed_url_and_header_secrets_are_scrubbed() {
    let logs = LogCapture::global();
    let dir = tempfile::tempdir().unwrap();
    let hook = Recorder::start(200).await;
    hook.always_answer(
        "k/echo",
        400,
        Some(&format!(
            "bad request: POST /hook?token={QUERY_TOKEN} (Bearer {QUERY_TOKEN})"
        )),
    );
    let am = Recorder::start(200).await;
    am.always_answer(
        "k/echo",
        400,
        Some(&format!(
            "bad request: Authorization: Basic {AM_BASIC} (user am, password {AM_PASSWORD})"
        )),
    );
    let port = am.base.rsplit(':').next().unwrap().to_string();
    let (outbox, running) = dispatching(
        dir.path(),
        &format!(
            r#"
        [[alerting.receiver]]
        kind = "webhook"
        name = "hook"
        url = "{base}/hook?token={QUERY_TOKEN}"

        [[alerting.receiver]]
        kind = "alertmanager"
        name = "am"
        url = ["http://am:{AM_PASSWORD}@127.0.0.1:{port}/"]
        "#,
            base = hook.base,
        ),
    );
    outbox
        .enqueue(&alert("k/echo", Severity::Critical))
        .unwrap();
    wait_until_async("both receivers gave up", Duration::from_secs(30), || {
        let s = outbox.stats();
        // Refused for good: kept in the outbox as failed (with the scrubbed reason).
        s.receiver("hook").unwrap().refused == 1 && s.receiver("am").unwrap().refused == 1
    })
    .await;
    running.stop().await;
    // The requests really carried the secrets.
    let reqs = hook.requests();
    assert!(reqs
        .iter()
        .any(|r| r.query.as_deref() == Some(&format!("token={QUERY_TOKEN}")[..])));
    let reqs = am.requests();
    assert!(reqs.iter().any(|r| r
        .headers
        .get("authorization")
        .is_some_and(|v| v.to_str().unwrap_or("").contains(AM_BASIC))));

    let text = logs.text();
    drop(outbox);
    let db = rusqlite::Connection::open(dir.path().join("outbox.db")).unwrap();
    let errors: Vec<String> = db
        .prepare("SELECT COALESCE(last_error, '') FROM delivery")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let stored = errors.join("\n");
    assert!(
        stored.contains("HTTP 400"),
        "the reason is stored: {stored}"
    );
    for secret in [QUERY_TOKEN, AM_PASSWORD, AM_BASIC] {
        assert!(!text.contains(secret), "{secret} in the log:\n{text}");
        assert!(
            !stored.contains(secret),
            "{secret} in the outbox:\n{stored}"
        );
    }
}
