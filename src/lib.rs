//! sipwatch: the binary's parts, wired together by `main.rs`.
//!
//! Commands (each parses its flags, runs, and maps the outcome to an exit code):
//! - [`probe_cmd`]: `sipwatch probe` (flags, human, JSON and Nagios output, exit codes).
//! - [`alert_cmd`]: `sipwatch silence ...`, `sipwatch alert test|ack` (the on-call's controls).
//! - [`leak_cmd`]: `sipwatch leak analyze` (a recorded series through the online detector).
//! - [`manual`]: `sipwatch generate man|completion` (from the clap definitions).
//!
//! Long-running parts:
//! - [`daemon`]: the prober daemon (`sipwatch run`): scheduler, board, store, HTTP, paging.
//! - [`agent`]: the node agent (`sipwatch agent`): finds services, samples their gauges (one file
//!   per gauge kind), runs the leak detector, reports to the daemon.
//!   Its restart watchdog (policy, executor, audit, `sipwatch restart`) is `agent::watchdog`.
//!
//! Shared pieces, leaves that import nothing above them:
//! - [`leak`]: the online leak detector (pure: samples in, verdicts out).
//! - [`calendar`]: maintenance-window calendars.
//! - [`metrics_text`]: the Prometheus text both `/metrics` endpoints serve.
//! - [`notify`]: systemd readiness, status and watchdog (sd_notify).
//! - [`config_error`] (from `sipwatch-alerting`): located config errors, `file:line:col: what;
//!   fix`, for the daemon's, the agent's and the `[alerting]` config alike (durations are parsed
//!   by the alerting crate's `duration` module, the one syntax of every config).
//!
//! Below this crate: `sipwatch-probes` (SIP messages, transactions, transports, the probe) and
//! `sipwatch-alerting` (alerts, routing, receivers, the durable outbox).

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
