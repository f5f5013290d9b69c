//! The agent's Prometheus metrics. The names in DESIGN.md are a contract (dashboards and alert
//! rules use them): `sipwatch_service_memory_bytes{service,kind}`, `sipwatch_service_fds{service}`,
//! `sipwatch_leak_slope_bytes_per_second{service,gauge}`, `sipwatch_leak_suspected{service,gauge}`,
//! `sipwatch_restarts_total{service,reason}`. The others are extensions.
//!
//! Named by the Prometheus naming best practices (one unit per metric name, the unit in the name),
//! each gauge of a service is served twice while the old names are deprecated:
//!
//! | gauges in bytes (memory, shm, disk) | gauges without a unit (fds, threads, sessions, matches) | deprecated, one release |
//! |---|---|---|
//! | `sipwatch_service_usage_bytes` | `sipwatch_service_usage` | `sipwatch_service_value` |
//! | `sipwatch_service_usage_limit_bytes` | `sipwatch_service_usage_limit` | `sipwatch_service_limit` |
//! | `sipwatch_leak_slope_bytes_per_second` | `sipwatch_leak_slope_per_second` | `sipwatch_leak_slope_bytes_per_second` for a gauge without a unit |
//!
//! Series of a service that is missing are removed rather than left at their last value. Served
//! in the classic Prometheus text format, with `sipwatch_build_info{version}`.

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
    gauge_bytes: Family<GaugeLabels, FloatGauge>,
    gauge_unitless: Family<GaugeLabels, FloatGauge>,
    limit_bytes: Family<GaugeLabels, FloatGauge>,
    limit_unitless: Family<GaugeLabels, FloatGauge>,
    slope_unitless: Family<GaugeLabels, FloatGauge>,
    build_info: Family<VersionLabels, Gauge>,
    /// The restart watchdog's decisions and next planned restart.
    pub watchdog: WatchdogMetrics,
}

/// `{service,decision}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub service: String,
    pub decision: String,
}

/// The watchdog's metrics (registered with the agent's; fed by `crate::agent::watchdog::task`).
#[derive(Clone, Default)]
pub struct WatchdogMetrics {
    /// `sipwatch_restart_decisions_total{service,decision}`.
    pub decisions: Family<DecisionLabels, Counter>,
    /// `sipwatch_restart_next_timestamp_seconds{service}`.
    pub next: Family<ServiceLabels, Gauge<f64, AtomicU64>>,
}

/// `{version}` of `sipwatch_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
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
            gauge_bytes: Family::default(),
            gauge_unitless: Family::default(),
            limit_bytes: Family::default(),
            limit_unitless: Family::default(),
            slope_unitless: Family::default(),
            build_info: Family::default(),
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
            "Deprecated (mixes units), use sipwatch_service_usage_bytes or sipwatch_service_usage: last value of each configured gauge of the service, in the gauge's own unit",
            m.gauge_value.clone(),
        );
        registry.register(
            "sipwatch_service_limit",
            "Deprecated (mixes units), use sipwatch_service_usage_limit_bytes or sipwatch_service_usage_limit: limit of each gauge (from the config, or found: cgroup memory.max, RLIMIT_NOFILE, Kamailio shm total, disk size)",
            m.gauge_limit.clone(),
        );
        registry.register(
            "sipwatch_leak_slope_bytes_per_second",
            "Growth rate of a gauge in bytes estimated by the leak detector, bytes per second (deprecated for gauges without a unit: use sipwatch_leak_slope_per_second)",
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
            "sipwatch_service_usage_bytes",
            "Last value of each gauge of the service that counts bytes (memory, Kamailio shm/pkg, disk)",
            m.gauge_bytes.clone(),
        );
        registry.register(
            "sipwatch_service_usage",
            "Last value of each gauge of the service without a unit (fds, threads, sessions, log matches, command or JSON values)",
            m.gauge_unitless.clone(),
        );
        registry.register(
            "sipwatch_service_usage_limit_bytes",
            "Limit of each gauge in bytes (from the config, or found: cgroup memory.max, Kamailio shm total, disk size)",
            m.limit_bytes.clone(),
        );
        registry.register(
            "sipwatch_service_usage_limit",
            "Limit of each gauge without a unit (from the config, or found: RLIMIT_NOFILE)",
            m.limit_unitless.clone(),
        );
        registry.register(
            "sipwatch_leak_slope_per_second",
            "Growth rate estimated by the leak detector for a gauge without a unit, per second",
            m.slope_unitless.clone(),
        );
        registry.register(
            "sipwatch_build_info",
            "Always 1; the version of sipwatch serving these metrics",
            m.build_info.clone(),
        );
        m.build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
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

    /// The last value of a gauge: under its unit's name and the deprecated `sipwatch_service_value`.
    pub fn set_gauge_value(&self, labels: &GaugeLabels, bytes: bool, value: f64) {
        self.gauge_value.get_or_create(labels).set(value);
        let family = if bytes {
            &self.gauge_bytes
        } else {
            &self.gauge_unitless
        };
        family.get_or_create(labels).set(value);
    }

    pub fn remove_gauge_value(&self, labels: &GaugeLabels) {
        self.gauge_value.remove(labels);
        self.gauge_bytes.remove(labels);
        self.gauge_unitless.remove(labels);
    }

    /// The limit of a gauge: under its unit's name and the deprecated `sipwatch_service_limit`.
    pub fn set_gauge_limit(&self, labels: &GaugeLabels, bytes: bool, limit: f64) {
        self.gauge_limit.get_or_create(labels).set(limit);
        let family = if bytes {
            &self.limit_bytes
        } else {
            &self.limit_unitless
        };
        family.get_or_create(labels).set(limit);
    }

    pub fn remove_gauge_limit(&self, labels: &GaugeLabels) {
        self.gauge_limit.remove(labels);
        self.limit_bytes.remove(labels);
        self.limit_unitless.remove(labels);
    }

    /// The leak detector's slope: `sipwatch_leak_slope_bytes_per_second` for a byte gauge,
    /// `sipwatch_leak_slope_per_second` otherwise (and, deprecated, the byte name too).
    pub fn set_leak_slope(&self, labels: &GaugeLabels, bytes: bool, per_second: f64) {
        self.leak_slope.get_or_create(labels).set(per_second);
        if !bytes {
            self.slope_unitless.get_or_create(labels).set(per_second);
        }
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
    fn each_unit_has_its_own_name_and_the_old_names_stay() {
        let m = AgentMetrics::new();
        let mem = gauge_labels("kamailio", "shm");
        let fds = gauge_labels("kamailio", "fds");
        m.set_gauge_value(&mem, true, 1e6);
        m.set_gauge_limit(&mem, true, 32e6);
        m.set_leak_slope(&mem, true, 12.5);
        m.set_gauge_value(&fds, false, 40.0);
        m.set_gauge_limit(&fds, false, 1024.0);
        m.set_leak_slope(&fds, false, 0.5);
        let text = m.encode();
        for needle in [
            r#"sipwatch_service_usage_bytes{service="kamailio",gauge="shm"} 1000000"#,
            r#"sipwatch_service_usage_limit_bytes{service="kamailio",gauge="shm"} 32000000"#,
            r#"sipwatch_service_usage{service="kamailio",gauge="fds"} 40"#,
            r#"sipwatch_service_usage_limit{service="kamailio",gauge="fds"} 1024"#,
            r#"sipwatch_leak_slope_bytes_per_second{service="kamailio",gauge="shm"} 12.5"#,
            r#"sipwatch_leak_slope_per_second{service="kamailio",gauge="fds"} 0.5"#,
            // Deprecated, kept one release.
            r#"sipwatch_service_value{service="kamailio",gauge="fds"} 40"#,
            r#"sipwatch_service_limit{service="kamailio",gauge="shm"} 32000000"#,
            r#"sipwatch_leak_slope_bytes_per_second{service="kamailio",gauge="fds"} 0.5"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(!text.contains(r#"sipwatch_service_usage_bytes{service="kamailio",gauge="fds"}"#));
        assert!(!text.contains(r#"sipwatch_leak_slope_per_second{service="kamailio",gauge="shm"}"#));
        assert!(text.contains(&format!(
            "sipwatch_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        m.remove_gauge_value(&fds);
        m.remove_gauge_limit(&mem);
        let text = m.encode();
        assert!(!text.contains(r#"gauge="fds"} 40"#), "{text}");
        assert!(!text.contains("32000000"), "{text}");
    }

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
