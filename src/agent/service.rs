//! One watched service, tick by tick: find its processes, notice it missing, back or restarted,
//! sample its process figures (memory RSS/PSS/USS, descriptors, threads: always, for the metrics)
//! and its configured gauges, and publish the result as metrics and a [`ServiceReport`].
//!
//! The main process is remembered in `STATE_DIR/SERVICE/main` (with the boot id), so a restart of
//! the service while the agent itself was down (or a reboot) is still seen as a restart when the
//! agent comes back. The tick is driven from outside (the runtime's interval); `now` is passed in.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::config::{AgentConfig, ServiceConfig};
use super::events::{AgentEvent, EventSink};
use super::gauge::GaugeTrack;
use super::history::{GaugeHistory, Retention};
use super::locator::Locator;
use super::metrics::{service_labels, AgentMetrics, MemoryLabels, RestartLabels};
use super::presence::{Presence, PresenceChange};
use super::proc::ProcId;
use super::report::{FdReport, MemoryReport, ServiceReport};
use super::sampler::{SampleContext, SampleError};
use super::samplers;

/// The `reason` label of restarts the agent saw but did not make.
pub const REASON_OBSERVED: &str = "observed";

/// A service being watched.
pub struct ServiceWatch {
    config: ServiceConfig,
    locator: Locator,
    presence: Presence,
    gauges: Vec<GaugeTrack>,
    dir: PathBuf,
    report: ServiceReport,
    sample_timeout: Duration,
    /// Set by the restart watchdog while it restarts this service: that restart is its own
    /// (`sipwatch_restarts_total{reason=TRIGGER}`), not an observed one.
    by_watchdog: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl ServiceWatch {
    /// Sets up the service: opens and replays each gauge's history, recalls the main process.
    pub fn new(
        config: ServiceConfig,
        agent: &AgentConfig,
        cgroup_root: &Path,
        client: &reqwest::Client,
        now: f64,
    ) -> Self {
        let dir = agent.state_dir.join(&config.name);
        let retention = Retention {
            raw: agent.history_raw,
            minutes: agent.history_minutes,
        };
        let gauges = config
            .gauges
            .iter()
            .map(|g| {
                let sampler = samplers::build(&g.spec, client, cgroup_root);
                let history = if g.detect {
                    match GaugeHistory::open(&dir, &g.name, retention, now) {
                        Ok(h) => Some(h),
                        Err(e) => {
                            tracing::error!(service = config.name, gauge = g.name, dir = %dir.display(), error = %e,
                                "cannot open gauge history; this gauge starts without it");
                            None
                        }
                    }
                } else {
                    None
                };
                GaugeTrack::new(&config.name, g.clone(), sampler, history)
            })
            .collect();
        let presence = match load_main(&dir) {
            Some(main) => Presence::resume(main),
            None => Presence::new(),
        };
        let report = ServiceReport {
            name: config.name.clone(),
            finder: config.finder.to_string(),
            ..ServiceReport::default()
        };
        ServiceWatch {
            locator: Locator::new(
                config.finder.clone(),
                cgroup_root.to_owned(),
                agent.rescan_every,
            )
            .with_pss_every(agent.pss_every),
            sample_timeout: config.interval.max(Duration::from_secs(1)),
            config,
            presence,
            gauges,
            dir,
            report,
            by_watchdog: None,
        }
    }

    /// Restarts seen while `flag` is set are the watchdog's, not counted as observed.
    pub fn restarts_made_by(&mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.by_watchdog = Some(flag);
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The time between ticks.
    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    /// One tick at `now` (unix seconds); returns the report after it.
    pub async fn tick(
        &mut self,
        now: f64,
        metrics: &AgentMetrics,
        sink: &EventSink,
    ) -> ServiceReport {
        let started = Instant::now();
        let name = self.config.name.clone();
        let located = self.locator.locate();
        if located.scanned {
            tracing::debug!(
                service = name,
                processes = located.procs.len(),
                "scanned /proc"
            );
        }
        let problem = located.problem.clone();
        match self.presence.observe(now, &located.procs) {
            Some(PresenceChange::Missing) => sink.emit(AgentEvent::ServiceMissing {
                service: name.clone(),
                at: now,
                problem: problem
                    .clone()
                    .unwrap_or_else(|| "no process found".to_owned()),
            }),
            Some(PresenceChange::Found { processes }) => {
                self.save_main();
                sink.emit(AgentEvent::ServiceFound {
                    service: name.clone(),
                    at: now,
                    processes,
                    main_pid: self.presence.main().map(|m| m.pid),
                });
            }
            Some(PresenceChange::Restarted {
                old_main,
                new_main,
                down_secs,
            }) => {
                self.save_main();
                let ours = self
                    .by_watchdog
                    .as_ref()
                    .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed));
                if !ours {
                    metrics
                        .restarts
                        .get_or_create(&RestartLabels {
                            service: name.clone(),
                            reason: REASON_OBSERVED.to_owned(),
                        })
                        .inc();
                }
                self.report.restarts_observed += 1;
                self.report.last_restart_at = Some(now);
                for gauge in &mut self.gauges {
                    gauge.restart(now, metrics, sink);
                }
                sink.emit(AgentEvent::ServiceRestarted {
                    service: name.clone(),
                    at: now,
                    old_pid: old_main.pid,
                    new_pid: new_main.pid,
                    down_secs,
                });
            }
            None => {}
        }

        let up = !located.procs.is_empty();
        let labels = service_labels(&name);
        metrics.service_up.get_or_create(&labels).set(i64::from(up));
        metrics
            .processes
            .get_or_create(&labels)
            .set(located.procs.len() as i64);
        let ctx = SampleContext::new(&name, located.procs.clone(), located.cgroup.clone())
            .with_figures(&located.figures);

        // The process figures, always: they are the contract metrics.
        if up {
            let memory = *ctx.memory();
            let fds = *ctx.fds();
            let threads = ctx.threads();
            for (kind, bytes) in [
                ("rss", memory.rss),
                ("pss", memory.pss),
                ("uss", memory.uss),
            ] {
                metrics
                    .memory_bytes
                    .get_or_create(&MemoryLabels {
                        service: name.clone(),
                        kind: kind.to_owned(),
                    })
                    .set(bytes as f64);
            }
            metrics.fds.get_or_create(&labels).set(fds.open as i64);
            match fds.min_limit {
                Some(limit) => {
                    metrics
                        .fds_limit
                        .get_or_create(&labels)
                        .set(limit.min(i64::MAX as u64) as i64);
                }
                None => {
                    metrics.fds_limit.remove(&labels);
                }
            }
            metrics.threads.get_or_create(&labels).set(threads as i64);
            self.report.memory = Some(MemoryReport {
                rss: memory.rss,
                pss: memory.pss,
                uss: memory.uss,
            });
            self.report.fds = Some(FdReport {
                open: fds.open,
                max_per_process: fds.max_open,
                limit_per_process: fds.min_limit,
            });
            self.report.threads = Some(threads);
        } else {
            metrics.forget_processes(&name);
            self.report.memory = None;
            self.report.fds = None;
            self.report.threads = None;
        }

        for gauge in &mut self.gauges {
            let outcome = match tokio::time::timeout(self.sample_timeout, gauge.sample(&ctx)).await
            {
                Ok(outcome) => outcome,
                Err(_) => Err(SampleError::new(format!(
                    "sampling took longer than {:?}; skipped this tick",
                    self.sample_timeout
                ))),
            };
            gauge.record(now, outcome, metrics, sink);
        }

        let took = started.elapsed().as_secs_f64();
        metrics.tick_duration.get_or_create(&labels).set(took);
        self.report.up = up;
        self.report.problem = problem;
        self.report.main_pid = self.presence.main().filter(|_| up).map(|m| m.pid);
        self.report.pids = located.procs.iter().take(64).map(|p| p.pid).collect();
        self.report.processes = located.procs.len();
        self.report.last_tick_at = Some(now);
        self.report.tick_duration_secs = took;
        self.report.gauges = self.gauges.iter().map(GaugeTrack::report).collect();
        self.report.clone()
    }

    /// The report before the first tick.
    pub fn initial_report(&self) -> ServiceReport {
        let mut report = self.report.clone();
        report.gauges = self.gauges.iter().map(GaugeTrack::report).collect();
        report
    }

    fn save_main(&self) {
        let Some(main) = self.presence.main() else {
            return;
        };
        let text = format!("{} {} {}\n", boot_id(), main.pid, main.start);
        let path = self.dir.join("main");
        let written = std::fs::create_dir_all(&self.dir).and_then(|()| {
            let tmp = self.dir.join("main.tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &path)
        });
        if let Err(e) = written {
            tracing::warn!(service = self.config.name, path = %path.display(), error = %e, "cannot remember the main process");
        }
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The main process remembered from an earlier run. From an earlier boot of the host it is pid 0:
/// no process matches it, so the first tick sees the restart the reboot was.
fn load_main(dir: &Path) -> Option<ProcId> {
    let text = std::fs::read_to_string(dir.join("main")).ok()?;
    let mut parts = text.split_whitespace();
    let boot = parts.next()?;
    if boot != boot_id() || boot.is_empty() {
        return Some(ProcId { pid: 0, start: 0 });
    }
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    Some(ProcId { pid, start })
}
