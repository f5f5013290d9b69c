//! The node agent (`sipwatch agent -c agent.toml`): finds the services of its host, samples their
//! gauges, keeps their history on disk, runs the leak detector on each gauge, and reports them as
//! Prometheus metrics, a JSON report and events for alerting.
//!
//! Table of contents (each file imports only files listed before it or beside it, never back):
//! - [`units`]: durations and sizes as written; [`config`]: the config file and its checks.
//! - [`proc`]: every read of `/proc` (the process table, memory, descriptors, threads; a leaf);
//!   [`handle`]: a watched process's `/proc` files, held open; [`locator`]: a service's
//!   processes, cheaply, tick after tick; [`presence`]: up, missing, restarted (pure).
//! - [`sampler`]: the one trait of every gauge; [`samplers`]: one file per gauge kind;
//!   [`log_tail`]: following a log file across rotation.
//! - [`history`]: gauge history on disk, replayed at start; [`gauge`]: sample -> limit -> history ->
//!   detector -> events; [`service`]: one service's tick.
//! - [`events`]: what alerting is told; [`alert_rules`]: which events page someone, with which
//!   key; [`report`]: what the API serves; [`summary`]: what the daemon is sent; [`metrics`]: Prometheus (the watchdog's too).
//! - [`clock`]: Unix seconds now; [`shared`]: what the tasks and the endpoints share; [`http`]:
//!   the endpoints; [`runtime`]: tasks, listener, shutdown; [`uplink`]: alerts and reports to
//!   the daemon or to the agent's own receivers.
//! - [`watchdog`]: the restart watchdog the agent runs (policy, executor, audit, `sipwatch
//!   restart`), a folder of its own; its `config` and `audit` are leaves that [`config`] and
//!   [`report`] read, the rest builds on the agent's files above.
//!
//! For the binary: [`check_config`] and [`run`]; to receive events, [`Agent::bind`] with a channel,
//! then [`Agent::run`].

pub mod alert_rules;
pub mod clock;
pub mod config;
pub mod events;
pub mod gauge;
pub mod handle;
pub mod history;
pub mod http;
pub mod locator;
pub mod log_tail;
pub mod metrics;
pub mod presence;
pub mod proc;
pub mod report;
pub mod runtime;
pub mod sampler;
pub mod samplers;
pub mod service;
pub mod shared;
pub mod summary;
pub mod units;
pub mod uplink;
pub mod watchdog;

use std::path::Path;

use crate::config_error::ConfigErrors;

pub use config::AgentConfig;
pub use events::{AgentEvent, ClearReason};
pub use report::{GaugeReport, Report, ServiceReport};
pub use runtime::{Agent, ReportHandle};

/// Reads and validates an agent config; the error lists every problem with its `file:line:col`.
pub fn check_config(path: &Path) -> Result<AgentConfig, ConfigErrors> {
    config::load(path)
}

/// Runs the agent of `config_path` until `shutdown` turns true (or its sender is dropped). Events
/// become alerts ([`uplink`]): to the daemon when `[daemon]` is set, else to `[alerting]`
/// receivers; use [`Agent::bind`] with a channel to receive the raw events instead.
pub async fn run(
    config_path: &Path,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = check_config(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let agent = Agent::bind(config.clone(), Some(tx)).await?;
    uplink::start(&config, rx, agent.reports(), shutdown.clone())?;
    agent.run(shutdown).await
}
