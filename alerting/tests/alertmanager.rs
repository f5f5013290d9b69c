//! The Alertmanager receiver against a real Prometheus Alertmanager (Debian
//! prometheus-alertmanager) on loopback, without cluster gossip, storage in a temp dir.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use sipwatch_alerting::{build, Enqueued, Outbox, Severity};

const DEADLINE: Duration = Duration::from_secs(30);

/// Alertmanager's API, as the tests read it.
trait Api {
    /// `GET /api/v2/alerts` filtered on the `key` label.
    async fn alerts(&self, key: &str) -> Vec<Value>;
    async fn wait_for(&self, key: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value>;
}

impl Api for Alertmanager {
    async fn alerts(&self, key: &str) -> Vec<Value> {
        let response = reqwest::Client::new()
            .get(format!("{}/api/v2/alerts", self.base))
            .query(&[("filter", format!("key=\"{key}\""))])
            .send()
            .await
            .expect("GET /api/v2/alerts");
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.expect("alerts JSON")
    }

    /// Polls the alerts of `key` until `done` holds for them; panics with `what` at the deadline.
    async fn wait_for(&self, key: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = std::time::Instant::now();
        loop {
            let alerts = self.alerts(key).await;
            if done(&alerts) {
                return alerts;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for: {what}; last seen {alerts:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn config(name: &str, urls: &[&str]) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        r#"
        [[alerting.receiver]]
        kind = "alertmanager"
        name = "{name}"
        url = [{}]
        resend = "1s"
        timeout = "5s"
        "#,
        urls.join(", ")
    )
}

fn ends_at(alert: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(alert["endsAt"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn alert_fires_stays_active_by_resend_and_resolves() {
    let am = Alertmanager::start();
    let dir = tempfile::tempdir().unwrap();
    // An HA pair where the second instance is down: one accepting instance is enough.
    let down = format!("http://127.0.0.1:{}", free_port());
    let (outbox, running) = dispatching(dir.path(), &config("am", &[&am.base, &down]));

    let key = "sipwatch/leak/host1/kamailio/pss";
    let leak = alert(key, Severity::Critical);
    outbox.enqueue(&leak).unwrap();
    let first = am
        .wait_for(key, "Alertmanager lists the firing alert", |a| {
            !a.is_empty()
        })
        .await;
    assert_eq!(first.len(), 1, "{first:#?}");
    let a = &first[0];
    assert_eq!(a["labels"]["alertname"], "leak");
    assert_eq!(a["labels"]["key"], key);
    assert_eq!(a["labels"]["severity"], "critical");
    assert!(
        a["labels"].get("source").is_none(),
        "source is an annotation, not a label"
    );
    assert_eq!(a["annotations"]["source"], "host1");
    assert_eq!(a["labels"]["service"], "kamailio");
    assert_eq!(a["annotations"]["summary"], leak.summary);
    assert_eq!(a["annotations"]["description"], leak.description);
    assert_eq!(a["generatorURL"], "http://status.example/sipwatch");
    assert_eq!(a["status"]["state"], "active");
    let first_end = ends_at(a);

    // resend = 1s, so endsAt is ~4s ahead: past it, the alert is still active only because
    // the outbox re-sent it (and moved endsAt).
    wait_until_async("the first endsAt has passed", DEADLINE, || {
        chrono::Utc::now() > first_end + chrono::Duration::seconds(1)
    })
    .await;
    let now_listed = am.alerts(key).await;
    assert_eq!(now_listed.len(), 1, "still listed: {now_listed:#?}");
    assert_eq!(now_listed[0]["status"]["state"], "active");
    assert!(
        ends_at(&now_listed[0]) > first_end,
        "endsAt moved by re-sends"
    );

    outbox.enqueue(&leak.resolved_at(unix_now())).unwrap();
    am.wait_for(
        key,
        "Alertmanager no longer lists the alert as active",
        |a| a.is_empty(),
    )
    .await;
    // Re-sends stop once resolved: the alert does not come back.
    let resolved_at = chrono::Utc::now();
    wait_until_async("three resend intervals pass", DEADLINE, || {
        chrono::Utc::now() > resolved_at + chrono::Duration::seconds(3)
    })
    .await;
    assert!(
        am.alerts(key).await.is_empty(),
        "a resolved alert was re-sent as firing"
    );
    running.stop().await;

    let stats = outbox.stats();
    let r = stats.receiver("am").unwrap();
    assert_eq!((r.sent, r.pending, r.dropped), (2, 0, 0));
}

#[tokio::test]
async fn two_daemons_raising_the_same_key_show_one_alert() {
    let am = Alertmanager::start();
    let dir = tempfile::tempdir().unwrap();
    let configs = receivers(&config("am", &[&am.base]));
    let daemon_a = Outbox::open(
        dir.path().join("a.db"),
        build(&configs).unwrap(),
        fast_options(),
    )
    .unwrap();
    let daemon_b = Outbox::open(
        dir.path().join("b.db"),
        build(&configs).unwrap(),
        fast_options(),
    )
    .unwrap();
    let running_a = Running::start(&daemon_a);
    let running_b = Running::start(&daemon_b);

    let key = "sipwatch/probe/edge-1";
    let seen_by_a = alert(key, Severity::Critical);
    let mut seen_by_b = seen_by_a.clone();
    seen_by_b.at += 3.0; // b noticed a little later
    assert!(matches!(
        daemon_a.enqueue(&seen_by_a).unwrap(),
        Enqueued::Queued { .. }
    ));
    assert!(matches!(
        daemon_b.enqueue(&seen_by_b).unwrap(),
        Enqueued::Queued { .. }
    ));
    wait_until_async("both daemons delivered", DEADLINE, || {
        daemon_a.stats().totals().0 == 1 && daemon_b.stats().totals().0 == 1
    })
    .await;
    let listed = am.alerts(key).await;
    assert_eq!(listed.len(), 1, "one alert for one key: {listed:#?}");
    running_a.stop().await;
    running_b.stop().await;
}
