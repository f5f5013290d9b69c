//! The agent's state as one serializable [`Report`]: what `/api/v1/services` serves, and what the
//! agent will POST to the daemon. Plain data, built by the service tasks after each tick; no logic.

use serde::Serialize;

use crate::leak::LeakVerdict;

/// Everything the agent knows, at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub agent: AgentInfo,
    /// Unix seconds.
    pub generated_at: f64,
    pub services: Vec<ServiceReport>,
    /// The restart watchdog's newest decisions (all of them at `GET /api/v1/restarts`).
    pub restarts: Vec<crate::agent::watchdog::audit::RestartRecord>,
}

/// Who reports.
#[derive(Clone, Debug, Serialize)]
pub struct AgentInfo {
    pub host: String,
    pub version: String,
    pub started_at: f64,
    pub listen: String,
    pub events_dropped: u64,
}

/// One service.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServiceReport {
    pub name: String,
    /// How its processes are found, in words.
    pub finder: String,
    /// Whether processes were found at the last tick.
    pub up: bool,
    /// Why not, when not.
    pub problem: Option<String>,
    pub main_pid: Option<i32>,
    /// Pids at the last tick (at most 64 listed; see `processes`).
    pub pids: Vec<i32>,
    pub processes: usize,
    pub restarts_observed: u64,
    pub last_restart_at: Option<f64>,
    pub memory: Option<MemoryReport>,
    pub fds: Option<FdReport>,
    pub threads: Option<u64>,
    pub last_tick_at: Option<f64>,
    pub tick_duration_secs: f64,
    pub gauges: Vec<GaugeReport>,
}

/// Memory summed over the processes, in bytes.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MemoryReport {
    pub rss: u64,
    pub pss: u64,
    pub uss: u64,
}

/// Open descriptors.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct FdReport {
    /// Summed over the processes.
    pub open: u64,
    /// The fullest single process.
    pub max_per_process: u64,
    /// The lowest soft `RLIMIT_NOFILE`.
    pub limit_per_process: Option<u64>,
}

/// Where a gauge's limit comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// Written in the config.
    Config,
    /// Found at run time (cgroup `memory.max`, `RLIMIT_NOFILE`, Kamailio's shm total, disk size).
    Found,
}

/// One gauge.
#[derive(Clone, Debug, Serialize)]
pub struct GaugeReport {
    pub name: String,
    pub kind: String,
    pub unit: String,
    pub value: Option<f64>,
    pub sampled_at: Option<f64>,
    pub limit: Option<f64>,
    pub limit_source: Option<LimitSource>,
    /// Whether the leak detector watches it.
    pub detect: bool,
    pub verdict: Option<LeakVerdict>,
    /// Whether a leak alert is raised now.
    pub leak_suspected: bool,
    pub error: Option<String>,
    /// Samples replayed from the on-disk history at start.
    pub replayed: usize,
    pub samples: u64,
}
