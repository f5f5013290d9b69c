//! What the agent's tasks and its HTTP handlers share: the metrics registry, the restart audit,
//! a progress counter for the systemd watchdog, and the latest report of each service. The
//! runtime ([`super::runtime`]) fills it; [`super::http`] only reads it.

use std::sync::{Arc, RwLock};

use super::clock::unix_now;
use super::metrics::AgentMetrics;
use super::report::{AgentInfo, Report, ServiceReport};

/// What the tasks and the HTTP handlers share.
pub struct Shared {
    pub metrics: AgentMetrics,
    /// The restart watchdog's decisions (`GET /api/v1/restarts`).
    pub audit: Arc<crate::agent::watchdog::audit::AuditLog>,
    /// Bumped by every service and watchdog loop turn (the systemd watchdog feeds on progress).
    pub progress: Arc<std::sync::atomic::AtomicU64>,
    pub(super) services: RwLock<Vec<ServiceReport>>,
    pub(super) info: AgentInfo,
}

impl Shared {
    /// The current report.
    pub fn report(&self) -> Report {
        let services = self.services.read().map(|s| s.clone()).unwrap_or_default();
        let mut info = self.info.clone();
        info.events_dropped = self.metrics.events_dropped.get();
        let mut restarts = self.audit.newest_first();
        restarts.truncate(20);
        Report {
            agent: info,
            generated_at: unix_now(),
            services,
            restarts,
        }
    }

    /// Puts the latest report of one service.
    pub(super) fn set(&self, index: usize, report: ServiceReport) {
        if let Ok(mut services) = self.services.write() {
            if let Some(slot) = services.get_mut(index) {
                *slot = report;
            }
        }
    }

    /// The latest report of one service.
    pub fn service(&self, index: usize) -> Option<ServiceReport> {
        self.services.read().ok()?.get(index).cloned()
    }
}
