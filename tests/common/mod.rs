//! The fixtures of the `sipwatch` package's integration tests: running the `sipwatch` binary (a
//! one-shot command or the daemon), reading its output, and everything of the workspace's shared
//! test support (ports, waits with a deadline, real Kamailio, SIPp, SMTP, Alertmanager, promtool),
//! re-exported.
//!
//! A fixture whose program is missing fails the test with the command that installs it; nothing
//! is skipped. Every wait is a condition with a deadline.

#![allow(dead_code)]

pub use sipwatch_test_support::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `sipwatch` with the given arguments and returns its output.
pub fn sipwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sipwatch"))
        .args(args)
        .env_remove("SIPWATCH_PASSWORD")
        .output()
        .expect("run sipwatch")
}

pub fn sipwatch_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sipwatch"));
    c.args(args).env_remove("SIPWATCH_PASSWORD");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run sipwatch")
}

/// `sipwatch probe OUTPUT -m register -u USER sip:127.0.0.1:PORT` with the password in
/// `SIPWATCH_PASSWORD`; `output` is `"--json"` or `"-v"`.
pub fn probe_register(output: &str, user: &str, port: u16, password: &str) -> Output {
    sipwatch_env(
        &[
            "probe",
            output,
            "-m",
            "register",
            "-u",
            user,
            &format!("sip:127.0.0.1:{port}"),
        ],
        &[("SIPWATCH_PASSWORD", password)],
    )
}

/// The header line `Name: value` of a SIP message (the name matched case-insensitively), or ""
/// when it has none.
pub fn sip_header<'a>(message: &'a str, name: &str) -> &'a str {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    message
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .unwrap_or("")
}

/// The JSON lines of a `probe --json` run.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Fails the test, showing the whole run, unless `out`'s stderr says `needle`.
pub fn assert_stderr_says(out: &Output, needle: &str) {
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(needle),
        "stderr does not say {needle:?}:\n{}",
        describe(out)
    );
}

/// The daemon (`sipwatch run`) started by a test, stopped with SIGTERM on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub listen: String,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, listen: &str, log: &Path) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
            .args(["run", "-c"])
            .arg(config)
            .env("SIPWATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .expect("start sipwatch run");
        let d = Daemon {
            child: Some(child),
            listen: listen.to_string(),
            log: log.to_path_buf(),
        };
        wait_until("the daemon's /healthz", Duration::from_secs(15), || {
            http_get(listen, "/healthz")
                .map(|(s, _)| s == 200)
                .unwrap_or(false)
        });
        d
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(&self.listen, path).unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the daemon did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The status of the component named `name` in a components.json body.
pub fn component_status(components: &serde_json::Value, name: &str) -> String {
    components["components"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("missing")
        .to_string()
}
