//! `sipwatch alert test`: a clearly marked test notification through the real outbox, and the
//! outcome per receiver.
//!
//! The test alert is queued like any notification (same store, same dispatcher, same notifier)
//! but leaves no firing state behind. [`wait_outcomes`] watches the deliveries until each one
//! was delivered, refused, or failed its first attempt (receiver down: the error is reported and
//! the delivery given up, so a test never lingers in the queue), or the deadline passed.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::alert::{Alert, AlertStatus, Severity};
use crate::outbox::{unix_now, Outbox, OutboxError};

/// The test alert. Its key is unique per run so no receiver folds it into a real incident.
pub fn test_alert(source: &str, url: Option<&str>) -> Alert {
    let now = unix_now();
    Alert {
        key: format!("sipwatch/test/{source}/{}", (now * 1000.0) as u64),
        status: AlertStatus::Firing,
        severity: Severity::Info,
        summary: format!("[TEST] sipwatch test notification from {source}: no action needed"),
        description:
            "This is a test sent with `sipwatch alert test`. It checks that this \
                      receiver is reachable and accepts sipwatch's notifications. Nothing is wrong."
                .into(),
        source: source.to_string(),
        labels: BTreeMap::from([
            ("alertname".to_string(), "SipwatchTest".to_string()),
            ("test".to_string(), "true".to_string()),
        ]),
        at: now,
        url: url.map(str::to_string),
    }
}

/// Queues `alert` for `receivers` and waits for each outcome: `Ok(())` delivered, `Err(why)`.
pub async fn send_and_wait(
    outbox: &Outbox,
    alert: &Alert,
    receivers: &[String],
    deadline: Duration,
) -> Result<Vec<(String, Result<(), String>)>, OutboxError> {
    let ids = outbox.enqueue_test(alert, receivers)?;
    Ok(wait_outcomes(outbox, ids, deadline).await)
}

/// Watches deliveries until each has an outcome (see the module docs).
pub async fn wait_outcomes(
    outbox: &Outbox,
    ids: Vec<(String, i64)>,
    deadline: Duration,
) -> Vec<(String, Result<(), String>)> {
    let until = tokio::time::Instant::now() + deadline;
    let mut outcomes: BTreeMap<i64, Result<(), String>> = BTreeMap::new();
    loop {
        for (_, id) in &ids {
            if outcomes.contains_key(id) {
                continue;
            }
            match outbox.delivery(*id) {
                Ok(Some(d)) => match d.state.as_str() {
                    "delivered" => {
                        outcomes.insert(*id, Ok(()));
                    }
                    "pending" if d.attempts == 0 => {}
                    "pending" => {
                        let why = d.last_error.unwrap_or_else(|| "failed".into());
                        let _ = outbox.abandon(*id, &format!("test send: {why}"));
                        outcomes.insert(*id, Err(why));
                    }
                    _ => {
                        outcomes.insert(*id, Err(d.last_error.unwrap_or_else(|| d.state.clone())));
                    }
                },
                Ok(None) => {
                    outcomes.insert(*id, Err("the delivery disappeared from the outbox".into()));
                }
                Err(e) => {
                    outcomes.insert(*id, Err(e.to_string()));
                }
            }
        }
        if outcomes.len() == ids.len() {
            break;
        }
        if tokio::time::Instant::now() >= until {
            for (_, id) in &ids {
                if !outcomes.contains_key(id) {
                    let why = format!("no answer within {deadline:?}");
                    let _ = outbox.abandon(*id, &format!("test send: {why}"));
                    outcomes.insert(*id, Err(why));
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ids.into_iter()
        .map(|(receiver, id)| {
            let outcome = outcomes
                .remove(&id)
                .unwrap_or_else(|| Err("no outcome".into()));
            (receiver, outcome)
        })
        .collect()
}
