//! What the agent posts to the daemon every `report_interval` (`POST /api/v1/agents/report`): a
//! summary of every service (memory, leak verdicts, time left) and the watchdog's newest
//! decisions, for the daemon's status page. The agent owns this format; the daemon reads it.

use serde::{Deserialize, Serialize};

/// What a node agent last reported about its host (`POST /api/v1/agents/report`), shown on the
/// status page as the node's memory health.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentSummary {
    pub host: String,
    /// When the daemon received it (its own clock).
    #[serde(default)]
    pub received_at: f64,
    pub services: Vec<ServiceSummary>,
    /// The restart watchdog's newest decisions on this host (newest first).
    #[serde(default)]
    pub restarts: Vec<super::watchdog::audit::RestartRecord>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub name: String,
    pub up: bool,
    pub processes: usize,
    /// Summed PSS of the service's processes, bytes.
    pub pss_bytes: Option<u64>,
    pub restarts_observed: u64,
    pub gauges: Vec<GaugeSummary>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GaugeSummary {
    pub name: String,
    pub unit: String,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    /// `leak`, `no_leak`, `learning`, or empty when the gauge is not watched for leaks.
    pub verdict: String,
    pub slope_per_hour: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub error: Option<String>,
}
