//! SIPp (Debian `sip-tester`) as a UAS running a scenario the test writes.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::programs::{require, Background};
use crate::wait::wait_until;

/// Starts SIPp as a UAS on 127.0.0.1:`port` with the scenario XML given (written to `dir`);
/// returns once it holds the port.
pub fn sipp_uas(dir: &Path, port: u16, scenario: &str) -> Background {
    let sipp = require("sipp", "sip-tester");
    let path = dir.join(format!("uas-{port}.xml"));
    std::fs::write(&path, scenario).expect("write the SIPp scenario");
    let child = Command::new(sipp)
        .arg("-sf")
        .arg(&path)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipp");
    let bg = Background {
        child,
        name: "sipp".into(),
    };
    wait_until("sipp to bind its port", Duration::from_secs(10), || {
        UdpSocket::bind(("127.0.0.1", port)).is_err()
    });
    bg
}
