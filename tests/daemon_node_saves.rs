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

fn wait_saved(d: &Daemon, db: &Path, what: &str, timeout: Duration, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(t, s)| (t.to_string(), s.to_string()))
        .collect();
    wait_until_or(
        what,
        timeout,
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
    wait_until_or(
        "k1 up",
        Duration::from_secs(10),
        || d.log_text(),
        || component_status(&d.json("/api/v2/components.json"), "k1") == "operational",
    );
    wait_saved(
        &d,
        &db,
        "k1 saved up",
        Duration::from_secs(15),
        &[("k1", "up")],
    );

    // Down: saved by the next save of changed records, one 5 s save later (10 s allowed).
    kamailio.stop();
    wait_until_or(
        "k1 down",
        Duration::from_secs(10),
        || d.log_text(),
        || component_status(&d.json("/api/v2/components.json"), "k1") == "major_outage",
    );
    wait_saved(
        &d,
        &db,
        "k1 saved down",
        Duration::from_secs(10),
        &[("k1", "down")],
    );
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
    let first = d2.json("/api/v2/components.json");
    assert_eq!(
        component_status(&first, "k1"),
        "major_outage",
        "restored at once: {first:#}"
    );
    // Three probe intervals: a node restored up would be found down (and logged) by now.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert_eq!(
            component_status(&d2.json("/api/v2/components.json"), "k1"),
            "major_outage"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let new_log = &d2.log_text()[log_len..];
    assert!(
        !new_log.contains("node state changed"),
        "no state change after the restart:\n{new_log}"
    );
}
