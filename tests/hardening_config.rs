//! `check-config` as a careful operator needs it: every unknown key reported, no secret echoed,
//! linear time on big files, and a store folder `run` cannot write refused up front.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn daemon_config(targets: usize, store: &std::path::Path) -> String {
    let mut text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n[[group]]\nname = \"g\"\nmin_up = 1\n",
        store.display()
    );
    for i in 0..targets {
        text.push_str(&format!(
            "[[target]]\nname = \"t{i}\"\nuri = \"sip:10.{}.{}.{}\"\ninterval = \"30s\"\ngroup = \"g\"\n",
            i / 65536,
            (i / 256) % 256,
            i % 256
        ));
    }
    text
}

#[test]
fn every_unknown_key_is_reported_and_no_password_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sipwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nlissten = \"x\"\n[store]\npath = \"{}\"\n\
             [[target]]\nname = \"r\"\nuri = \"sip:127.0.0.1\"\nprobe = \"register\"\n\
             username = \"u\"\npassword = 98765432\nintervall = \"5s\"\n\
             [[target]]\nname = \"r2\"\nuri = \"sip:127.0.0.1\"\ntimout = \"1s\"\n",
            dir.path().join("state.db").display()
        ),
    )
    .unwrap();
    let out = sipwatch(&["check-config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    for key in ["lissten", "intervall", "timout"] {
        assert!(
            err.contains(&format!("unknown field `{key}`")),
            "{key} not reported:\n{err}"
        );
    }
    assert!(
        err.contains("sipwatch.toml:11:"),
        "the password line is located:\n{err}"
    );
    assert!(!err.contains("98765432"), "the password was echoed:\n{err}");

    // The agent's config too.
    let agent = dir.path().join("agent.toml");
    std::fs::write(
        &agent,
        "[agent]\nintervall = \"5s\"\n[[service]]\nname = \"k\"\nprocess = \"k\"\nlimmit = \"1GB\"\n",
    )
    .unwrap();
    let out = sipwatch(&["check-config", agent.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`intervall`") && err.contains("`limmit`"),
        "both agent keys reported:\n{err}"
    );
}

#[test]
fn check_config_time_grows_linearly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("state.db");
    let time = |n: usize| {
        let cfg = dir.path().join(format!("big-{n}.toml"));
        std::fs::write(&cfg, daemon_config(n, &store)).unwrap();
        // Best of three, to keep a busy machine's noise out.
        (0..3)
            .map(|_| {
                let started = Instant::now();
                let out = sipwatch(&["check-config", cfg.to_str().unwrap()]);
                assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
                started.elapsed()
            })
            .min()
            .unwrap()
    };
    let small = time(2_500);
    let big = time(20_000);
    // 8 times the targets: linear is about 8 times the time, quadratic 64 times.
    let ratio = big.as_secs_f64() / small.as_secs_f64().max(1e-3);
    assert!(
        ratio < 24.0,
        "2,500 targets: {small:?}, 20,000 targets: {big:?} (x{ratio:.1}; linear is about x8)"
    );
    assert!(big < Duration::from_secs(60), "{big:?}");
}

#[test]
fn a_store_folder_run_cannot_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&ro)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "cannot mount a read-only tmpfs (this test needs root)"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(ro.clone());
    let cfg = dir.path().join("sipwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n[alerting]\n\
             [[alerting.receiver]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\
             [[target]]\nname = \"t\"\nuri = \"sip:127.0.0.1\"\n",
            ro.join("state.db").display()
        ),
    )
    .unwrap();
    let out = sipwatch(&["check-config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        err.contains("[store] path") && err.contains("cannot create files"),
        "{err}"
    );
}
