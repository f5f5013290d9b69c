//! `promtool check metrics` (Debian `prometheus`): what Prometheus itself says of an exposition.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::programs::require;

/// Runs `promtool check metrics` on `text`: whether it passed, and what promtool said (lint
/// remarks included; an empty message means no remark at all).
pub fn promtool_check_metrics(text: &str) -> (bool, String) {
    let promtool = require("promtool", "prometheus");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write the metrics to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// Fails the test, with promtool's words and the exposition, unless promtool accepts `text`.
pub fn assert_promtool_accepts(text: &str) {
    let (ok, said) = promtool_check_metrics(text);
    assert!(ok, "promtool check metrics failed:\n{said}\n---\n{text}");
}
