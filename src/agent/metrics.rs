//! The agent's Prometheus metrics. The names in DESIGN.md are a contract (dashboards and alert
//! rules use them): `sipwatch_service_memory_bytes{service,kind}`, `sipwatch_service_fds{service}`,
//! `sipwatch_leak_slope_bytes_per_second{service,gauge}`, `sipwatch_leak_suspected{service,gauge}`,
//! `sipwatch_restarts_total{service,reason}`. The others are extensions.
//!
//! The slope metric keeps its contract name for every gauge, in the gauge's own unit per second
//! (bytes for memory gauges, sessions for a session counter). Series of a service that is missing
//! are removed rather than left at their last value. Served in the classic Prometheus text format.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `{service}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

/// `{service,kind}` of the memory gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemoryLabels {
    pub service: String,
    pub kind: String,
}

/// `{service,gauge}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GaugeLabels {
    pub service: String,
    pub gauge: String,
}

/// `{service,reason}` of restarts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestartLabels {
    pub service: String,
    pub reason: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric family of the agent.
pub struct AgentMetrics {
    registry: Registry,
    pub service_up: Family<ServiceLabels, Gauge>,
    pub processes: Family<ServiceLabels, Gauge>,
    pub memory_bytes: Family<MemoryLabels, FloatGauge>,
    pub fds: Family<ServiceLabels, Gauge>,
    pub fds_limit: Family<ServiceLabels, Gauge>,
    pub threads: Family<ServiceLabels, Gauge>,
    pub gauge_value: Family<GaugeLabels, FloatGauge>,
    pub gauge_limit: Family<GaugeLabels, FloatGauge>,
    pub leak_slope: Family<GaugeLabels, FloatGauge>,
    pub leak_suspected: Family<GaugeLabels, Gauge>,
    pub leak_eta: Family<GaugeLabels, FloatGauge>,
    pub restarts: Family<RestartLabels, Counter>,
    pub gauge_errors: Family<GaugeLabels, Counter>,
    pub log_alerts: Family<GaugeLabels, Counter>,
    pub tick_duration: Family<ServiceLabels, FloatGauge>,
    pub events_dropped: Counter,
    /// The restart watchdog's decisions and next planned restart.
    pub watchdog: crate::watchdog::task::WatchdogMetrics,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = AgentMetrics {
            service_up: Family::default(),
            processes: Family::default(),
            memory_bytes: Family::default(),
            fds: Family::default(),
            fds_limit: Family::default(),
            threads: Family::default(),
            gauge_value: Family::default(),
            gauge_limit: Family::default(),
            leak_slope: Family::default(),
            leak_suspected: Family::default(),
            leak_eta: Family::default(),
            restarts: Family::default(),
            gauge_errors: Family::default(),
            log_alerts: Family::default(),
            tick_duration: Family::default(),
            events_dropped: Counter::default(),
            watchdog: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "sipwatch_service_up",
            "1 if processes of the service were found at the last tick",
            m.service_up.clone(),
        );
        registry.register(
            "sipwatch_service_processes",
            "Processes of the service",
            m.processes.clone(),
        );
        registry.register(
            "sipwatch_service_memory_bytes",
            "Memory of the service summed over its processes (kind: rss, pss, uss) from smaps_rollup",
            m.memory_bytes.clone(),
        );
        registry.register(
            "sipwatch_service_fds",
            "Open file descriptors summed over the service's processes",
            m.fds.clone(),
        );
        registry.register(
            "sipwatch_service_fds_limit",
            "Lowest soft RLIMIT_NOFILE of the service's processes",
            m.fds_limit.clone(),
        );
        registry.register(
            "sipwatch_service_threads",
            "Threads summed over the service's processes",
            m.threads.clone(),
        );
        registry.register(
            "sipwatch_service_value",
            "Last value of each configured gauge of the service, in the gauge's own unit",
            m.gauge_value.clone(),
        );
        registry.register(
            "sipwatch_service_limit",
            "Limit of each gauge (from the config, or found: cgroup memory.max, RLIMIT_NOFILE, Kamailio shm total, disk size)",
            m.gauge_limit.clone(),
        );
        registry.register(
            "sipwatch_leak_slope_bytes_per_second",
            "Growth rate estimated by the leak detector, in the gauge's unit per second (bytes for memory gauges)",
            m.leak_slope.clone(),
        );
        registry.register(
            "sipwatch_leak_suspected",
            "1 while the leak detector says leak for the gauge",
            m.leak_suspected.clone(),
        );
        registry.register(
            "sipwatch_leak_eta_seconds",
            "Seconds until the gauge reaches its limit at the estimated leak rate",
            m.leak_eta.clone(),
        );
        registry.register(
            "sipwatch_restarts",
            "Restarts of the service (reason: observed when its processes were all replaced not by sipwatch, else the watchdog's trigger)",
            m.restarts.clone(),
        );
        registry.register(
            "sipwatch_gauge_errors",
            "Failed samples of a gauge",
            m.gauge_errors.clone(),
        );
        registry.register(
            "sipwatch_log_alerts",
            "Log lines that matched an alerting pattern",
            m.log_alerts.clone(),
        );
        registry.register(
            "sipwatch_agent_tick_duration_seconds",
            "Time the last tick of the service took (finding processes and sampling every gauge)",
            m.tick_duration.clone(),
        );
        registry.register(
            "sipwatch_agent_events_dropped",
            "Events dropped because their consumer fell behind",
            m.events_dropped.clone(),
        );
        registry.register(
            "sipwatch_restart_decisions",
            "Decisions of the restart watchdog (decision: restarted, would_restart, deferred, skipped, failed)",
            m.watchdog.decisions.clone(),
        );
        registry.register(
            "sipwatch_restart_next_timestamp_seconds",
            "When the watchdog's next scheduled or deferred restart of the service is due (unix seconds)",
            m.watchdog.next.clone(),
        );
        AgentMetrics { registry, ..m }
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        crate::metrics_text::openmetrics_to_prometheus_text(&out)
    }

    /// Removes the per-process series of a service that has no process.
    pub fn forget_processes(&self, service: &str) {
        let s = ServiceLabels {
            service: service.to_owned(),
        };
        for kind in ["rss", "pss", "uss"] {
            self.memory_bytes.remove(&MemoryLabels {
                service: service.to_owned(),
                kind: kind.to_owned(),
            });
        }
        self.fds.remove(&s);
        self.fds_limit.remove(&s);
        self.threads.remove(&s);
    }
}

/// The content type of [`AgentMetrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `{service,gauge}` labels.
pub fn gauge_labels(service: &str, gauge: &str) -> GaugeLabels {
    GaugeLabels {
        service: service.to_owned(),
        gauge: gauge.to_owned(),
    }
}

/// The `{service}` labels.
pub fn service_labels(service: &str) -> ServiceLabels {
    ServiceLabels {
        service: service.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_in_classic_text() {
        let m = AgentMetrics::new();
        m.restarts
            .get_or_create(&RestartLabels {
                service: "kamailio".into(),
                reason: "observed".into(),
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains("# TYPE sipwatch_restarts_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP sipwatch_restarts_total Restarts"),
            "{text}"
        );
        assert!(
            text.contains("sipwatch_restarts_total{service=\"kamailio\",reason=\"observed\"} 1\n")
        );
        assert!(!text.contains("# EOF"));
    }
}
