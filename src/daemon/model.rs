//! The daemon's shared vocabulary: node, target and group states, observations, state changes,
//! incidents and the snapshot that the HTTP layer renders.
//!
//! Plain data with serde, no behaviour beyond small derivations (Statuspage names, worst-of). The
//! rules that move these states live in `state/`; persistence in `store.rs`; rendering in `http/`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sipwatch_probes::outcome::{ResultKind, Status};

/// Seconds since the Unix epoch. The daemon's pure parts take time as this value, never read a clock.
pub type UnixTime = f64;

/// A node's state after hysteresis (RFC-agnostic: "is this address answering SIP well?").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Not enough probes yet to say.
    Unknown,
    Up,
    /// Answering, but with warnings (503, slow, certificate near expiry).
    Degraded,
    Down,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Up => "up",
            NodeState::Degraded => "degraded",
            NodeState::Down => "down",
        }
    }

    /// Whether the node counts as serving (for group quorum and `sipwatch_probe_up`).
    pub fn is_serving(self) -> bool {
        matches!(self, NodeState::Up | NodeState::Degraded)
    }
}

/// What one probe of one node found, reduced to what the daemon keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub at: UnixTime,
    /// The probe's [`Status`]: `ok`, `warning`, `critical`, `unknown` in JSON and the store.
    pub status: Status,
    /// The probe's [`ResultKind`]: `ok`, `timeout`, `transport_error`, ... in JSON and the store.
    pub result: ResultKind,
    pub code: Option<u16>,
    pub rtt_ms: Option<f64>,
    pub reason: String,
    pub cert_days_left: Option<i64>,
}

impl Observation {
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
    pub fn is_warning(&self) -> bool {
        self.status == Status::Warning
    }
    /// Critical and unknown both count as a failure for hysteresis.
    pub fn is_failure(&self) -> bool {
        !self.is_ok() && !self.is_warning()
    }
}

/// A node changed state (after hysteresis). `notify` is false when alerts are held (flapping,
/// maintenance, or a change restored from the store at start-up).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    pub at: UnixTime,
    pub target: String,
    /// The node's address (`ip:port`), or empty for a group change.
    pub node: String,
    pub group: Option<String>,
    pub from: NodeState,
    pub to: NodeState,
    pub reason: String,
    pub notify: bool,
}

/// Atlassian Statuspage component status names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    Operational,
    UnderMaintenance,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
}

impl ComponentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::DegradedPerformance => "degraded_performance",
            ComponentStatus::PartialOutage => "partial_outage",
            ComponentStatus::MajorOutage => "major_outage",
            ComponentStatus::UnderMaintenance => "under_maintenance",
        }
    }
}

/// Statuspage page indicator: `none`, `minor`, `major`, `critical`.
pub fn page_indicator(worst: ComponentStatus) -> &'static str {
    match worst {
        ComponentStatus::Operational | ComponentStatus::UnderMaintenance => "none",
        ComponentStatus::DegradedPerformance => "minor",
        ComponentStatus::PartialOutage => "major",
        ComponentStatus::MajorOutage => "critical",
    }
}

/// One node of a target as the status page and metrics see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// `ip:port`.
    pub node: String,
    pub transport: String,
    pub state: NodeState,
    pub since: UnixTime,
    pub flapping: bool,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last: Option<Observation>,
}

/// A configured target (a Statuspage component).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetView {
    pub name: String,
    pub uri: String,
    pub method: String,
    pub group: Option<String>,
    pub nodes: Vec<NodeView>,
    pub status: ComponentStatus,
    pub in_maintenance: bool,
    /// Set while the target's name cannot be resolved.
    pub dns_error: Option<String>,
}

/// Group quorum state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupState {
    /// Every member serving.
    Up,
    /// Some members down, quorum (`min_up`) kept.
    Degraded,
    /// Fewer than `min_up` members serving.
    Down,
}

/// A configured group (a Statuspage component group).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupView {
    pub name: String,
    pub min_up: usize,
    pub members: Vec<String>,
    pub serving: usize,
    pub state: GroupState,
    pub status: ComponentStatus,
    pub in_maintenance: bool,
}

/// An incident: a target with a node down, or a group below quorum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: i64,
    /// `target:NAME` or `group:NAME`: at most one open incident per key.
    pub key: String,
    pub title: String,
    pub impact: ComponentStatus,
    pub opened_at: UnixTime,
    pub resolved_at: Option<UnixTime>,
    /// Affected nodes (`target ip:port`) or group members.
    pub affected: Vec<String>,
    pub updates: Vec<IncidentUpdate>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentUpdate {
    pub at: UnixTime,
    /// Statuspage incident status: `investigating`, `identified`, `monitoring`, `resolved`.
    pub status: String,
    pub body: String,
}

/// Everything the HTTP layer needs to render "now", published by the state task after each change.
///
/// Targets are shared (`Arc`): a snapshot reuses the views of the targets that did not change
/// since the previous one (about one in ten between two publishes at 10 s intervals), so two
/// snapshots alive at once cost little more than one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub generated_at: UnixTime,
    pub page_name: String,
    #[serde(with = "shared_views")]
    pub targets: Vec<Arc<TargetView>>,
    pub groups: Vec<GroupView>,
    pub open_incidents: Vec<Incident>,
    /// Set while the store cannot be written (read-only, full disk): shown loudly on the page.
    pub store_error: Option<String>,
    /// The last report of every node agent, by host.
    #[serde(default)]
    pub agents: Vec<AgentSummary>,
    /// The page's time zone (IANA name, `[status] time_zone`); empty: UTC.
    #[serde(default)]
    pub time_zone: String,
    /// Every `[[maintenance]]` window: the one in progress or the next one.
    #[serde(default)]
    pub scheduled_maintenances: Vec<MaintenanceView>,
    /// Delivery health, silences and muted alerts (see `daemon::paging`).
    #[serde(default)]
    pub alerting: AlertingView,
}

/// Serde for `Vec<Arc<T>>` as a plain sequence (serde's `rc` feature is not enabled).
mod shared_views {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &[Arc<T>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|t| &**t))
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<Arc<T>>, D::Error> {
        Ok(Vec::<T>::deserialize(d)?
            .into_iter()
            .map(Arc::new)
            .collect())
    }
}

/// One `[[maintenance]]` window as the feeds show it: in progress now, or its next occurrence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceView {
    /// The calendar expression as written (`"Tue,Fri 03:00"`).
    pub schedule: String,
    pub starts_at: UnixTime,
    pub ends_at: UnixTime,
    pub in_progress: bool,
    pub targets: Vec<String>,
    pub groups: Vec<String>,
}

/// What the status page, `/healthz` and the API show about alert delivery and control.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertingView {
    pub receivers: Vec<ReceiverHealth>,
    pub silences: Vec<SilenceView>,
    /// Alerts firing now, with whether they are notified, silenced or inhibited.
    pub alerts: Vec<AlertStateView>,
    /// Acknowledged notifications (escalation stopped).
    #[serde(default)]
    pub acks: Vec<AckView>,
}

/// An acknowledged notification.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AckView {
    /// The notification's key (`sipwatch/notify/...`).
    pub key: String,
    pub by: String,
    pub at: UnixTime,
}

/// One receiver's delivery health.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReceiverHealth {
    pub name: String,
    pub kind: String,
    pub pending: u64,
    pub oldest_pending_seconds: Option<f64>,
    /// Since when every attempt failed (unix seconds).
    pub failing_since: Option<UnixTime>,
    /// Failing for longer than `[alerting] unhealthy_after`.
    pub unhealthy: bool,
    /// Notifications the receiver refused for good (kept as failed).
    pub failed: u64,
}

/// A silence as shown and served by `GET /api/v1/silences`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SilenceView {
    pub id: String,
    pub matchers: Vec<String>,
    pub starts: UnixTime,
    pub ends: UnixTime,
    pub comment: String,
    pub created_by: String,
    /// `pending`, `active` or `expired`.
    pub state: String,
}

/// A firing alert and its notification state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertStateView {
    pub key: String,
    pub summary: String,
    pub severity: String,
    pub since: UnixTime,
    /// `active`, `silenced` or `inhibited`.
    pub state: String,
    /// The silence id or the inhibiting alert's key.
    pub by: Option<String>,
}

/// What an agent posts (`POST /api/v1/agents/report`): the agent owns the format.
pub use crate::agent::summary::{AgentSummary, GaugeSummary, ServiceSummary};

#[cfg(test)]
mod tests {
    use super::*;

    /// The store and the HTTP API see the names `probe --json` prints, and read them back.
    #[test]
    fn observation_status_and_result_keep_the_probe_names() {
        let statuses = [
            Status::Ok,
            Status::Warning,
            Status::Unknown,
            Status::Critical,
        ];
        let results = [
            ResultKind::Ok,
            ResultKind::Timeout,
            ResultKind::AuthFailed,
            ResultKind::ErrorResponse,
            ResultKind::TransportError,
            ResultKind::DnsError,
            ResultKind::Slow,
            ResultKind::CertProblem,
            ResultKind::BindingMissing,
            ResultKind::BadResponse,
        ];
        for (i, &status) in statuses.iter().enumerate() {
            for &result in &results {
                let obs = Observation {
                    at: i as f64,
                    status,
                    result,
                    code: None,
                    rtt_ms: None,
                    reason: String::new(),
                    cert_days_left: None,
                };
                let json = serde_json::to_value(&obs).expect("serializes");
                assert_eq!(
                    json["status"],
                    serde_json::to_value(status).expect("status")
                );
                assert_eq!(json["result"], result.as_str());
                let back: Observation = serde_json::from_value(json).expect("deserializes");
                assert_eq!(back, obs);
            }
        }
        assert_eq!(
            serde_json::to_value(Observation {
                at: 0.0,
                status: Status::Critical,
                result: ResultKind::TransportError,
                code: None,
                rtt_ms: None,
                reason: String::new(),
                cert_days_left: None,
            })
            .expect("serializes")["status"],
            "critical"
        );
        let stored = r#"{"at":1.0,"status":"critcal","result":"timeout","code":null,
            "rtt_ms":null,"reason":"","cert_days_left":null}"#;
        assert!(
            serde_json::from_str::<Observation>(stored).is_err(),
            "a misspelled status must not load"
        );
    }
}
