//! A store file deleted or overwritten under the running daemon is noticed and reported on
//! `/healthz`, the status page and `sipwatch_store_ok` within 30 s (the old daemon kept writing
//! into the deleted file with `sipwatch_store_ok 1`).

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use common::*;

fn start(dir: &std::path::Path) -> (Daemon, std::path::PathBuf) {
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let db = dir.join("state.db");
    let cfg = dir.join("sipwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"{listen}\"\n[store]\npath = \"{}\"\n[[target]]\nname = \"t\"\n\
             uri = \"sip:127.0.0.1:{}\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
            db.display(),
            free_sip_port()
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &listen, &dir.join("daemon.log"));
    (d, db)
}

fn store_ok(listen: &str) -> Option<String> {
    let (_, m) = http_get(listen, "/metrics").ok()?;
    m.lines()
        .find(|l| l.starts_with("sipwatch_store_ok "))
        .map(|l| l.trim_start_matches("sipwatch_store_ok ").to_string())
}

#[test]
fn a_deleted_store_is_noticed_and_a_new_file_started() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, db) = start(dir.path());
    wait_until("the store file", Duration::from_secs(10), || db.exists());
    assert_eq!(store_ok(&daemon.listen).as_deref(), Some("1"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    wait_until_or(
        "the deletion on /healthz",
        Duration::from_secs(30),
        || daemon.log_text(),
        || {
            http_get(&daemon.listen, "/healthz")
                .is_ok_and(|(_, b)| b.contains("was deleted while in use"))
        },
    );
    assert_eq!(store_ok(&daemon.listen).as_deref(), Some("0"));
    let (_, page) = http_get(&daemon.listen, "/").unwrap();
    assert!(
        page.contains("was deleted while in use"),
        "the page says so"
    );
    wait_until("a new store file", Duration::from_secs(15), || db.exists());
}

#[test]
fn an_overwritten_store_fails_its_integrity_check() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, db) = start(dir.path());
    wait_until("the store file", Duration::from_secs(10), || db.exists());
    // Page 1 and the write-ahead log overwritten in place (same inode).
    for (file, len) in [(db.clone(), 4096), (db.with_extension("db-wal"), 65536)] {
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&file) {
            f.seek(SeekFrom::Start(0)).unwrap();
            f.write_all(&vec![0xA5u8; len]).unwrap();
            f.sync_all().unwrap();
        }
    }
    wait_until_or(
        "the damage on /healthz",
        Duration::from_secs(30),
        || daemon.log_text(),
        || http_get(&daemon.listen, "/healthz").is_ok_and(|(_, b)| b.contains("store: error")),
    );
    wait_until("sipwatch_store_ok 0", Duration::from_secs(3), || {
        store_ok(&daemon.listen).as_deref() == Some("0")
    });
    let (_, health) = http_get(&daemon.listen, "/healthz").unwrap();
    assert!(
        health.contains("integrity check") || health.contains("not a database"),
        "{health}"
    );
}
