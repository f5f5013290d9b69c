//! The prober daemon (`sipwatch run`): schedules probes of every configured target, keeps node,
//! target and group state with hysteresis, stores history, and serves status and metrics.
//!
//! - [`config`]: the config file and its checks, one function per section; the outbox's path.
//! - [`alert_rules`]: which board events and silent agents page someone, with which key (pure).
//! - [`model`]: shared vocabulary (states, observations with the probe's typed status and
//!   result, incidents, snapshot).
//! - [`scheduler`]: which targets the UDP lane drives and which get a worker of their own (REGISTER,
//!   TCP, TLS), phase-spread ticks, shared UDP sockets, DNS TTL.
//! - [`lane`]: every UDP OPTIONS target driven by one task: timer heap, batched sends and
//!   receives, RFC 3261 transactions per probe, ICMP errors.
//! - [`ticks`]: the reports the probe side sends the state task, and the grid ticks follow.
//! - [`state`]: the board (pure), a folder: `node` (hysteresis, flapping, notify), `target`,
//!   `group` (quorum), `incident`, `maintenance`, `reconcile` (config reloads); `Board` in front.
//! - [`store`]: SQLite persistence of events, incidents, node state and per-minute rollups
//!   (`store/`: silences and acknowledgements).
//! - [`store_watch`]: notices a store file deleted, replaced or corrupted under the daemon.
//! - [`history`]: the questions the status page asks of the past.
//! - [`leases`]: restart leases for the agents' watchdogs (pure book, kept beside the store).
//! - [`timefmt`]: times and durations in words, in the page's time zone.
//! - [`http`]: the routes (its own table): status page, Statuspage feeds, Atom, agents, on-call
//!   controls.
//! - [`metrics`], [`delivery_metrics`]: Prometheus metrics of probing, and of alert delivery.
//! - [`paging`]: alert rules -> routes, grouping, inhibition, silences -> outbox; delivery health.
//! - [`run`]: `sipwatch run`, the state task that wires everything together.

pub mod alert_rules;
pub mod config;
pub mod delivery_metrics;
pub mod history;
pub mod http;
pub mod lane;
pub mod leases;
pub mod metrics;
pub mod model;
pub mod paging;
pub mod run;
pub mod scheduler;
pub mod state;
pub mod store;
pub mod store_watch;
pub mod ticks;
pub mod timefmt;
