//! What the workspace's integration tests share, so each scenario reads as the scenario: free
//! loopback ports, waiting on a condition with a deadline, the current Unix time, and the real
//! programs the tests run against, started and stopped by the test.
//!
//! | module | what |
//! | --- | --- |
//! | [`ports`] | ports free on 127.0.0.1 (TCP; UDP and TCP on the same number) |
//! | [`wait`] | poll a condition until it holds or a deadline passes (blocking and tokio) |
//! | [`programs`] | find a real program or fail with the command that installs it; a child killed on drop |
//! | [`promtool`] | `promtool check metrics` on an exposition |
//! | [`http`] | plain HTTP/1.1 requests, the simplest client there is |
//! | [`tls`] | a CA and a server certificate made for the test |
//! | [`kamailio`] | a real Kamailio on loopback with a config the test writes |
//! | [`sipp`] | SIPp as a UAS running a scenario |
//! | [`smtp`] | a real SMTP server (aiosmtpd) that keeps every accepted mail |
//! | [`alertmanager`] | Prometheus Alertmanager on loopback |
//!
//! A missing program never skips a test: the test fails and says which Debian package to install
//! (tests/packages.txt lists them all). Every wait is a condition with a deadline, never a sleep
//! that hopes.

pub mod alertmanager;
pub mod http;
pub mod kamailio;
pub mod ports;
pub mod programs;
pub mod promtool;
pub mod sipp;
pub mod smtp;
pub mod tls;
pub mod wait;

pub use alertmanager::Alertmanager;
pub use http::{http_get, http_request};
pub use kamailio::{
    kamailio_binary, kamailio_modules_dir, Kamailio, KamailioSpec, RpcKamailioConfig, ROUTE_OK,
};
pub use ports::{free_port, free_sip_port, free_udp_tcp_port};
pub use programs::{require, require_python_module, Background, PYTHON};
pub use promtool::{assert_promtool_accepts, promtool_check_metrics};
pub use sipp::sipp_uas;
pub use smtp::{Smtp, SmtpOptions};
pub use tls::{make_tls, TlsFiles};
pub use wait::{wait_until, wait_until_async, wait_until_or};

/// Unix seconds now, from the wall clock.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
