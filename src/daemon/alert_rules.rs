//! The daemon's alert rules: which board events (a node down, degraded, back) and which silent
//! node agents page someone, with which key.
//!
//! Pure: events in, [`Alert`]s out. Keys are deterministic and leave out which daemon saw the
//! problem (`sipwatch/probe/{target}/{node}`), so several daemons probing the same targets
//! produce the same key and the receivers' own dedup (PagerDuty `dedup_key`, Opsgenie `alias`,
//! Alertmanager labels) keeps one page. Only events with `notify = true` make alerts: flapping
//! and maintenance hold them (see [`super::state`]). The agent's own rules are
//! `crate::agent::alert_rules`.

use sipwatch_alerting::{Alert, AlertStatus, Severity};

use super::model::NodeState;
use super::state::BoardEvent;

/// The alert a daemon board event raises or resolves, if any.
pub fn board_alert(e: &BoardEvent, source: &str) -> Option<Alert> {
    match e {
        BoardEvent::Changed(c) if c.notify => {
            let group = c.group.as_deref().unwrap_or("");
            let labels = [
                ("alertname", "SipNodeDown"),
                ("target", c.target.as_str()),
                ("node", c.node.as_str()),
                ("group", group),
            ];
            let mut degraded_labels = labels;
            degraded_labels[0].1 = "SipNodeDegraded";
            let down_key = format!("sipwatch/probe/{}/{}", c.target, c.node);
            let degraded_key = format!("sipwatch/probe-degraded/{}/{}", c.target, c.node);
            match (c.from, c.to) {
                (_, NodeState::Down) => Some(Alert::new(
                    down_key,
                    AlertStatus::Firing,
                    Severity::Critical,
                    format!("{} node {} is down: {}", c.target, c.node, c.reason),
                    source,
                    c.at,
                    &labels,
                )),
                (NodeState::Down, NodeState::Up | NodeState::Degraded) => Some(Alert::new(
                    down_key,
                    AlertStatus::Resolved,
                    Severity::Critical,
                    format!("{} node {} answers again", c.target, c.node),
                    source,
                    c.at,
                    &labels,
                )),
                (NodeState::Up, NodeState::Degraded) => Some(Alert::new(
                    degraded_key,
                    AlertStatus::Firing,
                    Severity::Warning,
                    format!("{} node {} is degraded: {}", c.target, c.node, c.reason),
                    source,
                    c.at,
                    &degraded_labels,
                )),
                (NodeState::Degraded, NodeState::Up) => Some(Alert::new(
                    degraded_key,
                    AlertStatus::Resolved,
                    Severity::Warning,
                    format!("{} node {} is healthy again", c.target, c.node),
                    source,
                    c.at,
                    &degraded_labels,
                )),
                _ => None,
            }
        }
        BoardEvent::GroupChanged {
            at,
            group,
            to,
            from,
            serving,
            min_up,
            notify: true,
        } => {
            use crate::daemon::model::GroupState;
            let labels = [
                ("alertname", "SipGroupBelowQuorum"),
                ("group", group.as_str()),
            ];
            let key = format!("sipwatch/group/{group}");
            match (from, to) {
                (_, GroupState::Down) => Some(Alert::new(
                    key,
                    AlertStatus::Firing,
                    Severity::Critical,
                    format!("group {group} is below quorum: {serving} of min {min_up} serving"),
                    source,
                    *at,
                    &labels,
                )),
                (GroupState::Down, _) => Some(Alert::new(
                    key,
                    AlertStatus::Resolved,
                    Severity::Critical,
                    format!("group {group} has quorum again: {serving} serving (min {min_up})"),
                    source,
                    *at,
                    &labels,
                )),
                _ => None,
            }
        }
        BoardEvent::FlapStarted {
            at,
            target,
            node,
            changes,
            notify: true,
            ..
        } => Some(Alert::new(
            format!("sipwatch/flap/{target}/{node}"),
            AlertStatus::Firing,
            Severity::Warning,
            format!("{target} node {node} is flapping ({changes} changes); its alerts are held"),
            source,
            *at,
            &[
                ("alertname", "SipNodeFlapping"),
                ("target", target),
                ("node", node),
            ],
        )),
        BoardEvent::FlapEnded {
            at,
            target,
            node,
            notify: true,
            ..
        } => Some(Alert::new(
            format!("sipwatch/flap/{target}/{node}"),
            AlertStatus::Resolved,
            Severity::Warning,
            format!("{target} node {node} stopped flapping"),
            source,
            *at,
            &[
                ("alertname", "SipNodeFlapping"),
                ("target", target),
                ("node", node),
            ],
        )),
        _ => None,
    }
}

/// The daemon's alert for a node agent that stopped reporting (firing) or reports again
/// (resolved). While it fires, the default inhibition mutes that host's leak, log and service
/// alerts: one page for the host, not one per service.
pub fn agent_silent_alert(
    host: &str,
    firing: bool,
    last_report: f64,
    at: f64,
    source: &str,
) -> Alert {
    let summary = if firing {
        format!(
            "node agent on {host} stopped reporting ({:.0} s since its last report)",
            (at - last_report).max(0.0)
        )
    } else {
        format!("node agent on {host} reports again")
    };
    Alert::new(
        format!("sipwatch/agent/{host}"),
        if firing {
            AlertStatus::Firing
        } else {
            AlertStatus::Resolved
        },
        Severity::Critical,
        summary,
        source,
        at,
        &[
            ("alertname", sipwatch_alerting::inhibit::AGENT_SILENT),
            ("host", host),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::alert_rules::agent_alert;
    use crate::agent::events::AgentEvent;
    use crate::daemon::model::StateChange;

    fn change(from: NodeState, to: NodeState, notify: bool) -> BoardEvent {
        BoardEvent::Changed(StateChange {
            at: 1.0,
            target: "edge-1".into(),
            node: "10.0.0.1:5060".into(),
            group: Some("edges".into()),
            from,
            to,
            reason: "timeout".into(),
            notify,
        })
    }

    #[test]
    fn node_down_and_back_share_one_key_without_the_source() {
        let down = board_alert(&change(NodeState::Up, NodeState::Down, true), "prober-a").unwrap();
        let up = board_alert(&change(NodeState::Down, NodeState::Up, true), "prober-b").unwrap();
        assert_eq!(down.key, "sipwatch/probe/edge-1/10.0.0.1:5060");
        assert_eq!(down.key, up.key);
        assert_eq!(down.status, AlertStatus::Firing);
        assert_eq!(up.status, AlertStatus::Resolved);
        assert_eq!(down.severity, Severity::Critical);
        assert_eq!(down.labels["group"], "edges");
    }

    #[test]
    fn held_changes_do_not_alert() {
        assert!(board_alert(&change(NodeState::Up, NodeState::Down, false), "p").is_none());
        assert!(board_alert(&change(NodeState::Unknown, NodeState::Up, true), "p").is_none());
    }

    #[test]
    fn degraded_is_a_warning_of_its_own() {
        let a = board_alert(&change(NodeState::Up, NodeState::Degraded, true), "p").unwrap();
        assert_eq!(a.severity, Severity::Warning);
        assert!(a.key.starts_with("sipwatch/probe-degraded/"));
    }

    #[test]
    fn a_silent_agent_pages_once_for_its_host_and_mutes_its_services() {
        let silent = agent_silent_alert("sip1", true, 100.0, 400.0, "prober");
        assert_eq!(silent.key, "sipwatch/agent/sip1");
        assert_eq!(silent.labels["alertname"], "AgentSilent");
        assert!(silent.summary.contains("300 s"), "{}", silent.summary);
        let leak = agent_alert(
            &AgentEvent::ServiceMissing {
                service: "kamailio".into(),
                at: 2.0,
                problem: "no process".into(),
            },
            "sip1",
        )
        .unwrap();
        let rules = sipwatch_alerting::inhibit::default_rules();
        let s = sipwatch_alerting::matcher::match_labels(&silent);
        let t = sipwatch_alerting::matcher::match_labels(&leak);
        assert_eq!(
            sipwatch_alerting::inhibit::inhibited_by(
                &rules,
                &leak.key,
                &t,
                [(silent.key.as_str(), &s)]
            ),
            Some("sipwatch/agent/sip1")
        );
        let back = agent_silent_alert("sip1", false, 500.0, 500.0, "prober");
        assert_eq!(back.status, AlertStatus::Resolved);
    }
}
