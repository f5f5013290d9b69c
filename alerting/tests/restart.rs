//! The outbox across restarts: what was pending is sent after the restart, and the dedup state
//! (which keys fire) survives it, so a daemon re-raising its alerts at start does not re-page.

mod common;

use std::time::Duration;

use common::*;
use sipwatch_alerting::{build, Enqueued, Outbox, OutboxError, Severity};

const DEADLINE: Duration = Duration::from_secs(20);

fn webhook(url: &str) -> Vec<sipwatch_alerting::ReceiverConfig> {
    receivers(&format!(
        r#"
        [[alerting.receiver]]
        kind = "webhook"
        name = "hook"
        url = "{url}/h"
        "#
    ))
}

#[tokio::test]
async fn pending_deliveries_are_sent_after_a_restart_and_firing_state_survives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let broken = Recorder::start(503).await;
    let key = "sipwatch/leak/host1/kamailio/pss";
    let leak = alert(key, Severity::Critical);

    {
        let outbox = Outbox::open(
            &path,
            build(&webhook(&broken.base)).unwrap(),
            fast_options(),
        )
        .unwrap();
        let running = Running::start(&outbox);
        assert_eq!(
            outbox.enqueue(&leak).unwrap(),
            Enqueued::Queued { deliveries: 1 }
        );
        wait_until_async("the receiver refused it twice", DEADLINE, || {
            broken.count() >= 2
        })
        .await;
        running.stop().await;
        assert_eq!(outbox.stats().receiver("hook").unwrap().pending, 1);
    } // every handle dropped: the file is closed, as after a process exit

    // The receiver is fixed (new URL, same receiver name) and the daemon starts again.
    let fixed = Recorder::start(200).await;
    let outbox =
        Outbox::open(&path, build(&webhook(&fixed.base)).unwrap(), fast_options()).unwrap();
    assert_eq!(
        outbox.stats().receiver("hook").unwrap().pending,
        1,
        "pending read back"
    );
    let firing = outbox.firing().unwrap();
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0].key, key);
    // The restarted daemon re-raises what it sees: not queued twice.
    assert_eq!(outbox.enqueue(&leak).unwrap(), Enqueued::AlreadyFiring);

    let running = Running::start(&outbox);
    wait_until_async(
        "the pending alert is delivered after the restart",
        DEADLINE,
        || fixed.accepted().len() == 1,
    )
    .await;
    outbox.enqueue(&leak.resolved_at(unix_now())).unwrap();
    wait_until_async("the resolve follows", DEADLINE, || {
        fixed.accepted().len() == 2
    })
    .await;
    running.stop().await;

    let statuses: Vec<String> = fixed
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.body["key"].as_str().unwrap(),
                r.body["status"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [format!("{key} firing"), format!("{key} resolved")]
    );
    assert!(outbox.firing().unwrap().is_empty());
    let rows = outbox.rows_by_state().unwrap();
    assert_eq!(rows.get("delivered"), Some(&2));
    assert_eq!(rows.get("pending"), None);
}

#[tokio::test]
async fn a_second_process_on_the_same_outbox_is_refused_with_an_explanation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let hook = Recorder::start(200).await;
    let _first = Outbox::open(&path, build(&webhook(&hook.base)).unwrap(), fast_options()).unwrap();
    let err =
        Outbox::open(&path, build(&webhook(&hook.base)).unwrap(), fast_options()).unwrap_err();
    assert!(matches!(err, OutboxError::Locked { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("another sipwatch process"), "{text}");
    assert!(text.contains("outbox.db"), "{text}");
}

#[tokio::test]
async fn an_unwritable_outbox_path_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("outbox.db");
    let err = Outbox::open(&path, Vec::new(), fast_options()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("no-such-dir/outbox.db"), "{text}");
    assert!(text.contains("directory exists and is writable"), "{text}");
}
