//! Alert rules: which daemon board events and agent events page someone, with which key.
//!
//! Pure: events in, [`Alert`]s out. Keys are deterministic and leave out which daemon saw the
//! problem (`sipwatch/probe/{target}/{node}`), so several daemons probing the same targets
//! produce the same key and the receivers' own dedup (PagerDuty `dedup_key`, Opsgenie `alias`,
//! Alertmanager labels) keeps one page. Agent alerts carry their host in the key, since a leak is
//! a fact about one host. Only events with `notify = true` make alerts: flapping and
//! maintenance hold them (see `daemon::state`).
//!
//! The `[alerting]` config section shared by the daemon and the agent is here too.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use sipwatch_alerting::{Alert, AlertStatus, ReceiverConfig, Severity};

use crate::agent::AgentEvent;
use crate::daemon::model::NodeState;
use crate::daemon::state::BoardEvent;

/// `[alerting]`: where the durable outbox lives and who gets told.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// The outbox file (SQLite). Default: next to the daemon's store, or in the agent's state_dir.
    pub outbox: Option<PathBuf>,
    /// Names this daemon or agent in alerts (`source`). Default: the host name.
    pub source: Option<String>,
    /// Base URL of the status page, linked from alerts.
    pub url: Option<String>,
    #[serde(default)]
    pub receiver: Vec<ReceiverConfig>,
    /// `[[alerting.route]]` (daemon): which receivers hear about which alerts, and grouping.
    #[serde(default)]
    pub route: Vec<sipwatch_alerting::route::RouteConfig>,
    /// `[[alerting.inhibit]]` (daemon): added to the default rules.
    #[serde(default)]
    pub inhibit: Vec<sipwatch_alerting::inhibit::InhibitRule>,
    /// Turn the default inhibition rules off (default true: on).
    #[serde(default)]
    pub inhibit_defaults: Option<bool>,
    /// `[[alerting.silence]]` (daemon): silences written in the config.
    #[serde(default)]
    pub silence: Vec<SilenceConfig>,
    /// Default grouping of every route (each route may override it).
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "sipwatch_alerting::duration::deserialize_option"
    )]
    pub group_wait: Option<std::time::Duration>,
    #[serde(
        default,
        deserialize_with = "sipwatch_alerting::duration::deserialize_option"
    )]
    pub group_interval: Option<std::time::Duration>,
    #[serde(
        default,
        deserialize_with = "sipwatch_alerting::duration::deserialize_option"
    )]
    pub repeat_interval: Option<std::time::Duration>,
    /// Bearer token for the silences and notifications API (`/api/v1/silences`, ...).
    pub api_token_file: Option<PathBuf>,
    /// A receiver failing longer than this is reported unhealthy (default 10m).
    #[serde(
        default,
        deserialize_with = "sipwatch_alerting::duration::deserialize_option"
    )]
    pub unhealthy_after: Option<std::time::Duration>,
    /// A node agent that has not reported for this long raises `AgentSilent` (default 3m; agents
    /// report every 30 s by default).
    #[serde(
        default,
        deserialize_with = "sipwatch_alerting::duration::deserialize_option"
    )]
    pub agent_silent_after: Option<std::time::Duration>,
}

/// One `[[alerting.silence]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceConfig {
    pub matchers: Vec<sipwatch_alerting::matcher::Matcher>,
    /// RFC 3339 (`2026-12-01T02:00:00+01:00`); default: always started.
    pub starts: Option<String>,
    /// RFC 3339.
    pub ends: String,
    #[serde(default)]
    pub comment: String,
}

impl AlertingConfig {
    /// The default grouping of routes, from `[alerting]` over the built-in defaults.
    pub fn grouping(&self) -> sipwatch_alerting::route::Grouping {
        sipwatch_alerting::route::GroupingConfig {
            group_by: self.group_by.clone(),
            group_wait: self.group_wait,
            group_interval: self.group_interval,
            repeat_interval: self.repeat_interval,
        }
        .over(&Default::default())
    }

    /// The routing table for these receivers.
    pub fn routes(&self) -> Result<sipwatch_alerting::route::Routes, Vec<String>> {
        let names: Vec<String> = self.receiver.iter().map(|r| r.name().to_string()).collect();
        sipwatch_alerting::route::Routes::new(&self.route, &names, &self.grouping())
    }

    /// Default rules (unless turned off) plus the configured ones.
    pub fn inhibit_rules(&self) -> Vec<sipwatch_alerting::inhibit::InhibitRule> {
        let mut rules = if self.inhibit_defaults.unwrap_or(true) {
            sipwatch_alerting::inhibit::default_rules()
        } else {
            Vec::new()
        };
        rules.extend(self.inhibit.iter().cloned());
        rules
    }

    /// The config silences, checked; every problem reported.
    pub fn silences(&self) -> Result<Vec<sipwatch_alerting::silence::Silence>, Vec<String>> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for (i, c) in self.silence.iter().enumerate() {
            let at = format!("[[alerting.silence]] #{}", i + 1);
            let parse = |field: &str, text: &str| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| t.timestamp_millis() as f64 / 1000.0)
                    .map_err(|e| {
                        format!(
                            "{at}: {field} {text:?} is not an RFC 3339 time ({e}); write e.g. \
                             \"2026-12-01T02:00:00+01:00\""
                        )
                    })
            };
            let starts = match c.starts.as_deref().map(|t| parse("starts", t)).transpose() {
                Ok(t) => t.unwrap_or(0.0),
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            let ends = match parse("ends", &c.ends) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            let silence = sipwatch_alerting::silence::Silence {
                id: format!("cfg-{}", i + 1),
                matchers: c.matchers.clone(),
                starts,
                ends,
                comment: c.comment.clone(),
                created_by: "config".into(),
            };
            match silence.validate() {
                Ok(()) => out.push(silence),
                Err(e) => problems.push(format!("{at}: {e}")),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }

    /// Every problem of the alert-control keys (routes, silences, api token), for
    /// `check-config` and start-up.
    pub fn control_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.routes() {
            problems.extend(e);
        }
        if let Err(e) = self.silences() {
            problems.extend(e);
        }
        if let Some(path) = &self.api_token_file {
            if let Err(e) = sipwatch_alerting::Secret::from_file(path) {
                problems.push(format!("[alerting] api_token_file: {e}"));
            }
        }
        problems
    }
}

/// The host name, for alert sources and agent keys.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn alert(
    key: String,
    status: AlertStatus,
    severity: Severity,
    summary: String,
    source: &str,
    at: f64,
    labels: &[(&str, &str)],
) -> Alert {
    Alert {
        key,
        status,
        severity,
        description: summary.clone(),
        summary,
        source: source.to_string(),
        labels: labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        at,
        url: None,
    }
}

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
            let down_key = format!("sipwatch/probe/{}/{}", c.target, c.node);
            let degraded_key = format!("sipwatch/probe-degraded/{}/{}", c.target, c.node);
            match (c.from, c.to) {
                (_, NodeState::Down) => Some(alert(
                    down_key,
                    AlertStatus::Firing,
                    Severity::Critical,
                    format!("{} node {} is down: {}", c.target, c.node, c.reason),
                    source,
                    c.at,
                    &labels,
                )),
                (NodeState::Down, NodeState::Up | NodeState::Degraded) => Some(alert(
                    down_key,
                    AlertStatus::Resolved,
                    Severity::Critical,
                    format!("{} node {} answers again", c.target, c.node),
                    source,
                    c.at,
                    &labels,
                )),
                (NodeState::Up, NodeState::Degraded) => Some(alert(
                    degraded_key,
                    AlertStatus::Firing,
                    Severity::Warning,
                    format!("{} node {} is degraded: {}", c.target, c.node, c.reason),
                    source,
                    c.at,
                    &[
                        ("alertname", "SipNodeDegraded"),
                        ("target", c.target.as_str()),
                        ("node", c.node.as_str()),
                        ("group", group),
                    ],
                )),
                (NodeState::Degraded, NodeState::Up) => Some(alert(
                    degraded_key,
                    AlertStatus::Resolved,
                    Severity::Warning,
                    format!("{} node {} is healthy again", c.target, c.node),
                    source,
                    c.at,
                    &[
                        ("alertname", "SipNodeDegraded"),
                        ("target", c.target.as_str()),
                        ("node", c.node.as_str()),
                        ("group", group),
                    ],
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
                (_, GroupState::Down) => Some(alert(
                    key,
                    AlertStatus::Firing,
                    Severity::Critical,
                    format!("group {group} is below quorum: {serving} of min {min_up} serving"),
                    source,
                    *at,
                    &labels,
                )),
                (GroupState::Down, _) => Some(alert(
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
        } => Some(alert(
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
        } => Some(alert(
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
    alert(
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

fn mb(v: f64) -> String {
    format!("{:.1} MB", v / 1_048_576.0)
}

/// The alert an agent event raises or resolves, if any. `host` is the agent's host.
pub fn agent_alert(e: &AgentEvent, host: &str) -> Option<Alert> {
    match e {
        AgentEvent::LeakRaised {
            service,
            gauge,
            at,
            value,
            limit,
            verdict,
        } => {
            let eta = verdict
                .eta_to_limit_secs
                .map(|s| format!(", limit in about {:.1} h", s / 3600.0))
                .unwrap_or_default();
            let limit = limit.map(|l| format!(" of {}", mb(l))).unwrap_or_default();
            Some(alert(
                format!("sipwatch/leak/{host}/{service}/{gauge}"),
                AlertStatus::Firing,
                Severity::Warning,
                format!(
                    "{service} on {host} is leaking {gauge}: {}{limit}, growing {:.1} MB/h{eta}",
                    mb(*value),
                    verdict.slope_per_sec * 3600.0 / 1_048_576.0
                ),
                host,
                *at,
                &[
                    ("alertname", "ServiceLeak"),
                    ("host", host),
                    ("service", service),
                    ("gauge", gauge),
                ],
            ))
        }
        AgentEvent::LeakCleared {
            service,
            gauge,
            at,
            reason,
            ..
        } => Some(alert(
            format!("sipwatch/leak/{host}/{service}/{gauge}"),
            AlertStatus::Resolved,
            Severity::Warning,
            format!("{service} on {host}: {gauge} no longer leaking ({reason:?})"),
            host,
            *at,
            &[
                ("alertname", "ServiceLeak"),
                ("host", host),
                ("service", service),
                ("gauge", gauge),
            ],
        )),
        AgentEvent::LogAlert {
            service,
            gauge,
            at,
            line,
            pattern,
            ..
        } => Some(alert(
            format!("sipwatch/log/{host}/{service}/{gauge}"),
            AlertStatus::Firing,
            Severity::Critical,
            format!(
                "{service} on {host} logged {pattern:?}: {}",
                line.chars().take(300).collect::<String>()
            ),
            host,
            *at,
            &[
                ("alertname", "ServiceLogAlert"),
                ("host", host),
                ("service", service),
                ("gauge", gauge),
            ],
        )),
        AgentEvent::ServiceMissing {
            service,
            at,
            problem,
        } => Some(alert(
            format!("sipwatch/service/{host}/{service}"),
            AlertStatus::Firing,
            Severity::Critical,
            format!("{service} on {host} is not running: {problem}"),
            host,
            *at,
            &[
                ("alertname", "ServiceMissing"),
                ("host", host),
                ("service", service),
            ],
        )),
        AgentEvent::ServiceFound { service, at, .. } => Some(alert(
            format!("sipwatch/service/{host}/{service}"),
            AlertStatus::Resolved,
            Severity::Critical,
            format!("{service} on {host} is running"),
            host,
            *at,
            &[
                ("alertname", "ServiceMissing"),
                ("host", host),
                ("service", service),
            ],
        )),
        // A restart seen after the service went missing also means it runs again.
        AgentEvent::ServiceRestarted {
            service,
            at,
            old_pid,
            new_pid,
            ..
        } => Some(alert(
            format!("sipwatch/service/{host}/{service}"),
            AlertStatus::Resolved,
            Severity::Critical,
            format!("{service} on {host} is running (restarted: pid {old_pid} -> {new_pid})"),
            host,
            *at,
            &[
                ("alertname", "ServiceMissing"),
                ("host", host),
                ("service", service),
            ],
        )),
        AgentEvent::RestartFailureCleared {
            service,
            at,
            summary,
        } => Some(alert(
            format!("sipwatch/restart/{host}/{service}/failed"),
            AlertStatus::Resolved,
            Severity::Critical,
            summary.clone(),
            host,
            *at,
            &[
                ("alertname", "ServiceRestartFailed"),
                ("host", host),
                ("service", service),
            ],
        )),
        AgentEvent::Restart {
            service,
            at,
            summary,
            critical,
        } => Some(alert(
            // Each restart is its own notice; a failure stays one alert per service.
            if *critical {
                format!("sipwatch/restart/{host}/{service}/failed")
            } else {
                format!("sipwatch/restart/{host}/{service}/{}", *at as i64)
            },
            AlertStatus::Firing,
            if *critical {
                Severity::Critical
            } else {
                Severity::Info
            },
            summary.clone(),
            host,
            *at,
            &[
                (
                    "alertname",
                    if *critical {
                        "ServiceRestartFailed"
                    } else {
                        "ServiceRestarted"
                    },
                ),
                ("host", host),
                ("service", service),
            ],
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn agent_events_carry_the_host() {
        let e = AgentEvent::ServiceMissing {
            service: "kamailio".into(),
            at: 2.0,
            problem: "no process".into(),
        };
        let a = agent_alert(&e, "sip1").unwrap();
        assert_eq!(a.key, "sipwatch/service/sip1/kamailio");
        assert_eq!(a.status, AlertStatus::Firing);
        let back = AgentEvent::ServiceFound {
            service: "kamailio".into(),
            at: 3.0,
            processes: 5,
            main_pid: Some(1),
        };
        assert_eq!(
            agent_alert(&back, "sip1").unwrap().status,
            AlertStatus::Resolved
        );
    }
}
