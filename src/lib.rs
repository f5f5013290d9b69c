//! sipwatch: the binary's parts, wired together by `main.rs`.
//!
//! - [`probe_cmd`]: the `sipwatch probe` command (flags, human and JSON output, exit codes).
//! - [`leak`]: the online leak detector (pure: samples in, verdicts out).
//! - [`agent`]: the node agent: finds services, samples their gauges, runs the detector.
//! - [`daemon`]: the prober daemon (`sipwatch run`).
//! - [`watchdog`]: the restart watchdog (policy, executor, audit, `sipwatch restart`).
//! - [`notify`]: systemd readiness, status and watchdog (sd_notify).
//! - [`calendar`], [`config_error`] (from `sipwatch-alerting`): small shared pieces (durations
//!   are parsed by the alerting crate's `duration` module, the one syntax of every config).

pub mod agent;
pub mod alert_cmd;
pub mod calendar;
/// The located config errors of every config file, shared with the alerting crate (see there).
pub use sipwatch_alerting::config_error;
pub mod daemon;
pub mod leak;
pub mod leak_cmd;
pub mod manual;
pub mod metrics_text;
pub mod notify;
pub mod probe_cmd;
pub mod watchdog;
