//! The agent's alert rules: which agent events (a leak, a service missing, a log line, a
//! restart) page someone, with which key.
//!
//! Pure: events in, [`Alert`]s out. Agent alerts carry their host in the key
//! (`sipwatch/leak/{host}/{service}/{gauge}`), since a leak is a fact about one host; the key is
//! deterministic, so the receivers' own dedup keeps one page. The daemon's rules are
//! `crate::daemon::alert_rules`.

use sipwatch_alerting::{Alert, AlertStatus, Severity};

use super::events::AgentEvent;

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
            Some(Alert::new(
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
        } => Some(Alert::new(
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
        } => Some(Alert::new(
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
        } => Some(Alert::new(
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
        AgentEvent::ServiceFound { service, at, .. } => Some(Alert::new(
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
        } => Some(Alert::new(
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
        } => Some(Alert::new(
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
        } => Some(Alert::new(
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
