//! The restart watchdog: restarts a service safely when its policy says so (a schedule, a
//! threshold, a leak forecast, a log line, a failed probe, a person), inside allowed windows,
//! under a cooldown and a cap, with a quorum lease from the daemon, draining first and verifying
//! by a SIP probe after. Every decision is audited.
//!
//! Table of contents:
//! - [`schedule`]: calendar times and windows in an IANA zone, daylight saving decided (pure).
//! - [`config`]: `[service.restart]` as written and as checked.
//! - [`policy`]: the sans-IO policy: `(now, input)` in, restart orders and decisions out.
//! - [`audit`]: the audit records, their file in the state dir, the policy state on disk.
//! - [`leases`]: the agent side of quorum leases (ask, renew, release).
//! - [`method`]: how a restart is done: systemd over D-Bus, a command, a signal.
//! - [`executor`]: lease -> drain -> restart -> verify -> undrain -> release, one restart.
//! - [`task`]: the per-service loop that feeds the policy and runs the executor.
//! - [`commands`]: `sipwatch restart plan|now|pause|resume`.

pub mod audit;
pub mod commands;
pub mod config;
pub mod executor;
pub mod leases;
pub mod method;
pub mod policy;
pub mod schedule;
pub mod task;
