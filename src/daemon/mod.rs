//! The prober daemon (`sipwatch run`): schedules probes of every configured target, keeps node,
//! target and group state with hysteresis, stores history, and serves status and metrics.
//!
//! - [`model`]: shared vocabulary (states, observations, incidents, snapshot).
//! - [`history`]: the questions the status page asks of the past.

pub mod history;
pub mod http;
pub mod metrics;
pub mod model;
