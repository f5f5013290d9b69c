//! Node states survive a crash: the daemon saves the records whose durable state changed at every
//! 5 s save (every record only every 60 s and at shutdown), so a node going down is in the store
//! within one save, and a daemon killed with SIGKILL right after resumes with it, silently.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Each saved node's target and state, read from the store file as a restart reads it. Empty
/// while the file or table does not exist yet, or is busy.
fn saved_states(db: &Path) -> Vec<(String, String)> {
    let read = || -> rusqlite::Result<Vec<(String, String)>> {
        let conn =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut stmt = conn.prepare("SELECT target, record FROM nodes ORDER BY target, node")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.collect()
    };
    read()
        .unwrap_or_default()
        .into_iter()
        .map(|(target, record)| {
            let record: serde_json::Value = serde_json::from_str(&record)
                .unwrap_or_else(|e| panic!("saved node record is not JSON ({e}): {record}"));
            (target, record["state"].as_str().unwrap_or("?").to_string())
        })
        .collect()
}

/// k1's status on the page.
fn k1_status(d: &Daemon) -> String {
    component_status(&d.json("/api/v2/components.json"), "k1")
}

/// Waits until k1 shows `status` on the page, then until the store holds it as `state`.
fn wait_shown_then_saved(d: &Daemon, db: &Path, status: &str, state: &str, save: Duration) {
    wait_until_or(
        &format!("k1 {status}"),
        Duration::from_secs(10),
        || d.log_text(),
        || k1_status(d) == status,
    );
    let want = vec![("k1".to_string(), state.to_string())];
    wait_until_or(
        &format!("k1 saved {state}"),
        save,
        || {
            format!(
                "saved: {:?}\ndaemon log:\n{}",
                saved_states(db),
                d.log_text()
            )
        },
        || saved_states(db) == want,
    );
}

#[test]
fn a_node_going_down_is_saved_within_one_save_and_survives_a_crash() {
    let port = free_sip_port();
    let mut kamailio = Kamailio::start(KamailioSpec::new(port, ROUTE_OK));
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let db = dir.path().join("state.db");
    let cfg = dir.path().join("sipwatch.toml");
    // fail 2 x 1 s: a node found down afresh after a restart takes at least 1.5 s, far longer
    // than the first status read after /healthz answers.
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"{listen}\"\n[store]\npath = \"{}\"\n[defaults]\ninterval = \"1s\"\n\
             timeout = \"500ms\"\nfail_threshold = 2\nok_threshold = 2\n[[target]]\nname = \"k1\"\n\
             uri = \"sip:127.0.0.1:{port}\"\n",
            db.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let started = Instant::now();
    let mut d = Daemon::start(&cfg, &listen, &log);

    // Up, and saved by the first save (a save of every record, about 5 s after the start).
    wait_shown_then_saved(&d, &db, "operational", "up", Duration::from_secs(15));
    // Down: saved by the next save of changed records, one 5 s save later (10 s allowed).
    kamailio.stop();
    wait_shown_then_saved(&d, &db, "major_outage", "down", Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the test ran too slowly to tell: the save of every record 60 s after the first one may \
         have written the down state instead of a save of changed records ({:?})",
        started.elapsed()
    );

    // A crash: no last save at shutdown.
    let mut child = d.child.take().expect("the daemon runs");
    child.kill().expect("SIGKILL the daemon");
    child.wait().expect("reap the daemon");
    let log_len = std::fs::read_to_string(&log).unwrap().len();

    // The restart resumes with k1 down at once, without finding it down again.
    let d2 = Daemon::start(&cfg, &listen, &log);
    // At once, and for three probe intervals: a node restored up would be found down (and
    // logged) by then.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert_eq!(k1_status(&d2), "major_outage", "k1 restored down");
        std::thread::sleep(Duration::from_millis(100));
    }
    let new_log = &d2.log_text()[log_len..];
    assert!(
        !new_log.contains("node state changed"),
        "no state change after the restart:\n{new_log}"
    );
}
