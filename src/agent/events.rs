//! What the agent tells the rest of sipwatch as it happens: [`AgentEvent`]s on a bounded tokio
//! channel, for alerting (leak raised or cleared, an alerting log line, a service gone or back,
//! a gauge that cannot be read).
//!
//! Every event is also logged here with `service=` and `gauge=` fields, so an agent without an
//! alerting consumer still leaves a trail. Sending never blocks sampling: when the consumer falls
//! behind and the channel is full, the event is dropped, logged, and counted
//! (`sipwatch_agent_events_dropped_total`).

use std::path::PathBuf;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::leak::LeakVerdict;

/// Why a leak alert ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClearReason {
    /// The detector no longer sees a leak.
    Verdict,
    /// The service was restarted (its memory was given back).
    Restart,
}

/// Something the agent observed that alerting may act on.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The leak detector now says `leak` for a gauge.
    LeakRaised {
        service: String,
        gauge: String,
        at: f64,
        value: f64,
        limit: Option<f64>,
        verdict: LeakVerdict,
    },
    /// A gauge's leak alert ended.
    LeakCleared {
        service: String,
        gauge: String,
        at: f64,
        reason: ClearReason,
        verdict: LeakVerdict,
    },
    /// A log line matched an alerting pattern (e.g. Kamailio's `no more shm memory`): act now.
    LogAlert {
        service: String,
        gauge: String,
        at: f64,
        file: PathBuf,
        pattern: String,
        line: String,
    },
    /// No process of the service can be found.
    ServiceMissing {
        service: String,
        at: f64,
        problem: String,
    },
    /// The service's processes were found (at start, or after it was missing).
    ServiceFound {
        service: String,
        at: f64,
        processes: usize,
        main_pid: Option<i32>,
    },
    /// The service's processes were all replaced: it was restarted (not by sipwatch).
    ServiceRestarted {
        service: String,
        at: f64,
        old_pid: i32,
        new_pid: i32,
        down_secs: Option<f64>,
    },
    /// A gauge could not be read (reported once until it recovers).
    GaugeFailed {
        service: String,
        gauge: String,
        at: f64,
        error: String,
    },
    /// A gauge that failed is read again.
    GaugeRecovered {
        service: String,
        gauge: String,
        at: f64,
    },
    /// The watchdog restarted the service, or tried and failed (`critical`): one line for people.
    Restart {
        service: String,
        at: f64,
        summary: String,
        critical: bool,
    },
    /// A person resumed automatic restarts after a failed one: its alert is resolved.
    RestartFailureCleared {
        service: String,
        at: f64,
        summary: String,
    },
}

impl AgentEvent {
    /// The service the event is about.
    pub fn service(&self) -> &str {
        match self {
            AgentEvent::LeakRaised { service, .. }
            | AgentEvent::LeakCleared { service, .. }
            | AgentEvent::LogAlert { service, .. }
            | AgentEvent::ServiceMissing { service, .. }
            | AgentEvent::ServiceFound { service, .. }
            | AgentEvent::ServiceRestarted { service, .. }
            | AgentEvent::GaugeFailed { service, .. }
            | AgentEvent::GaugeRecovered { service, .. }
            | AgentEvent::Restart { service, .. }
            | AgentEvent::RestartFailureCleared { service, .. } => service,
        }
    }

    /// The gauge the event is about, if any.
    pub fn gauge(&self) -> Option<&str> {
        match self {
            AgentEvent::LeakRaised { gauge, .. }
            | AgentEvent::LeakCleared { gauge, .. }
            | AgentEvent::LogAlert { gauge, .. }
            | AgentEvent::GaugeFailed { gauge, .. }
            | AgentEvent::GaugeRecovered { gauge, .. } => Some(gauge),
            _ => None,
        }
    }

    fn log(&self) {
        let service = self.service();
        let gauge = self.gauge().unwrap_or("");
        match self {
            AgentEvent::LeakRaised {
                value,
                limit,
                verdict,
                ..
            } => tracing::warn!(
                service,
                gauge,
                value,
                limit,
                slope_per_sec = verdict.slope_per_sec,
                eta_to_limit_secs = verdict.eta_to_limit_secs,
                "leak suspected"
            ),
            AgentEvent::LeakCleared { reason, .. } => {
                tracing::info!(service, gauge, ?reason, "leak alert cleared")
            }
            AgentEvent::LogAlert {
                file,
                pattern,
                line,
                ..
            } => {
                tracing::error!(service, gauge, file = %file.display(), pattern, line, "alerting log line")
            }
            AgentEvent::ServiceMissing { problem, .. } => {
                tracing::warn!(service, problem, "service not found")
            }
            AgentEvent::ServiceFound {
                processes,
                main_pid,
                ..
            } => {
                tracing::info!(service, processes, main_pid, "service found")
            }
            AgentEvent::ServiceRestarted {
                old_pid,
                new_pid,
                down_secs,
                ..
            } => {
                tracing::warn!(service, old_pid, new_pid, down_secs, "service restarted")
            }
            AgentEvent::GaugeFailed { error, .. } => {
                tracing::warn!(service, gauge, error, "gauge cannot be read")
            }
            AgentEvent::GaugeRecovered { .. } => tracing::info!(service, gauge, "gauge read again"),
            AgentEvent::Restart {
                summary, critical, ..
            } => {
                if *critical {
                    tracing::error!(service, summary, "watchdog restart failed")
                } else {
                    tracing::warn!(service, summary, "watchdog restart")
                }
            }
            AgentEvent::RestartFailureCleared { summary, .. } => {
                tracing::info!(service, summary, "watchdog resumed after a failed restart")
            }
        }
    }
}

/// The sending side, shared by the service tasks.
#[derive(Clone)]
pub struct EventSink {
    tx: Option<mpsc::Sender<AgentEvent>>,
    dropped: Counter,
    /// The watchdog's copy of log alerts (a receiver that lags loses the oldest).
    tap: Option<tokio::sync::broadcast::Sender<AgentEvent>>,
}

impl EventSink {
    /// Sends to `tx` (`None` only logs); counts dropped events in `dropped`.
    pub fn new(tx: Option<mpsc::Sender<AgentEvent>>, dropped: Counter) -> Self {
        EventSink {
            tx,
            dropped,
            tap: None,
        }
    }

    /// Also copies log alerts to `tap` (for the restart watchdog's `on_log`).
    pub fn with_tap(mut self, tap: tokio::sync::broadcast::Sender<AgentEvent>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Logs and sends an event without waiting.
    pub fn emit(&self, event: AgentEvent) {
        event.log();
        if let (Some(tap), AgentEvent::LogAlert { .. }) = (&self.tap, &event) {
            let _ = tap.send(event.clone());
        }
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                self.dropped.inc();
                tracing::error!(
                    service = event.service(),
                    "event channel full; event dropped"
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Events dropped because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}
