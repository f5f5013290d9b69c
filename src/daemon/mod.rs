//! The prober daemon (`sipwatch run`): schedules probes of every configured target, keeps node,
//! target and group state with hysteresis, stores history, and serves status and metrics.
//!
//! - [`model`]: shared vocabulary (states, observations, incidents, snapshot).
//! - [`history`]: the questions the status page asks of the past.
//! - [`state`]: the board (pure): hysteresis, flapping, maintenance, groups, incidents.
//! - [`store`]: SQLite persistence of events, incidents, node state and per-minute rollups.

pub mod history;
pub mod model;
pub mod state;
pub mod store;
