//! The running agent: binds the HTTP listener, starts one task per service (each on its own
//! interval, its history replayed first), serves `/metrics`, `/healthz` and `/api/v1/services`, and
//! stops every loop when the shutdown signal turns true (or its sender is dropped).
//!
//! The tasks share only the metrics registry and the latest report of each service; no task waits
//! on another, so a slow gauge (a Kamailio that does not answer) delays only its own service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use super::clock::unix_now;
use super::config::AgentConfig;
use super::events::{AgentEvent, EventSink};
use super::http;
use super::locator::detect_cgroup_root;
use super::metrics::{AgentMetrics, RestartLabels};
use super::report::{AgentInfo, Report, ServiceReport};
use super::service::{ServiceWatch, REASON_OBSERVED};
use super::shared::Shared;

/// A read handle on the agent's state (for tests and for the lead's reporting to the daemon).
#[derive(Clone)]
pub struct ReportHandle(Arc<Shared>);

impl ReportHandle {
    /// The current report.
    pub fn report(&self) -> Report {
        self.0.report()
    }
}

/// An agent, bound and ready to run.
pub struct Agent {
    config: AgentConfig,
    listener: TcpListener,
    shared: Arc<Shared>,
    sink: EventSink,
    cgroup_root: PathBuf,
    client: reqwest::Client,
    logs: tokio::sync::broadcast::Sender<AgentEvent>,
}

impl Agent {
    /// Binds `[agent] listen` and prepares the state directory. Events go to `events` (and are
    /// always logged).
    pub async fn bind(
        config: AgentConfig,
        events: Option<mpsc::Sender<AgentEvent>>,
    ) -> anyhow::Result<Agent> {
        std::fs::create_dir_all(&config.state_dir).with_context(|| {
            format!(
                "cannot create the state directory {}; create it (writable by the agent) or set [agent] state_dir",
                config.state_dir.display()
            )
        })?;
        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!(
                "cannot listen on {}; is another agent running? change [agent] listen",
                config.listen
            )
        })?;
        let local = listener.local_addr().context("reading the bound address")?;
        let nofile = super::handle::raise_nofile_limit();
        tracing::debug!(
            nofile,
            "descriptor limit (files of watched processes are held open)"
        );
        let metrics = AgentMetrics::new();
        let (logs, _) = tokio::sync::broadcast::channel(256);
        let sink = EventSink::new(events, metrics.events_dropped.clone()).with_tap(logs.clone());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            metrics,
            audit: Arc::new(crate::agent::watchdog::audit::AuditLog::open(
                &config.state_dir,
            )),
            progress: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            services: RwLock::new(
                config
                    .services
                    .iter()
                    .map(|s| ServiceReport {
                        name: s.name.clone(),
                        finder: s.finder.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            info: AgentInfo {
                host,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at: unix_now(),
                listen: local.to_string(),
                events_dropped: 0,
            },
        });
        let client = reqwest::Client::builder()
            .user_agent(concat!("sipwatch-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        let cgroup_root = config
            .cgroup_root
            .clone()
            .unwrap_or_else(detect_cgroup_root);
        Ok(Agent {
            config,
            listener,
            shared,
            sink,
            cgroup_root,
            client,
            logs,
        })
    }

    /// The address `/metrics` is served on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// A handle to read the agent's state while it runs.
    pub fn reports(&self) -> ReportHandle {
        ReportHandle(self.shared.clone())
    }

    /// Runs until `shutdown` turns true or its sender is dropped.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let Agent {
            config,
            listener,
            shared,
            sink,
            cgroup_root,
            client,
            logs,
        } = self;
        tracing::info!(listen = %listener.local_addr().map_or_else(|_| config.listen.to_string(), |a| a.to_string()),
            services = config.services.len(), state_dir = %config.state_dir.display(), "agent started");
        let mut tasks = tokio::task::JoinSet::new();
        let config = Arc::new(config);
        // Every service ticks on a grid from here (after its first, immediate tick), so services
        // with the same interval wake the agent once rather than each at its own moment.
        let origin = tokio::time::Instant::now();
        let flags: Vec<Arc<std::sync::atomic::AtomicBool>> = config
            .services
            .iter()
            .map(|_| Arc::new(std::sync::atomic::AtomicBool::new(false)))
            .collect();
        for (index, service) in config.services.iter().enumerate() {
            let flag = flags[index].clone();
            // Restarts start at zero, so that rate() works from the first scrape.
            let _ = shared.metrics.restarts.get_or_create_owned(&RestartLabels {
                service: service.name.clone(),
                reason: REASON_OBSERVED.to_owned(),
            });
            let (config, service) = (config.clone(), service.clone());
            let (shared, sink, client, cgroup_root) = (
                shared.clone(),
                sink.clone(),
                client.clone(),
                cgroup_root.clone(),
            );
            let mut shutdown = shutdown.clone();
            tasks.spawn(async move {
                let setup = tokio::task::spawn_blocking(move || {
                    ServiceWatch::new(service, &config, &cgroup_root, &client, unix_now())
                });
                let mut watch = tokio::select! {
                    watch = setup => match watch {
                        Ok(mut watch) => {
                            watch.restarts_made_by(flag);
                            watch
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "service setup failed");
                            return;
                        }
                    },
                    _ = stopped(&mut shutdown) => return,
                };
                shared.set(index, watch.initial_report());
                let mut interval = tick_grid(origin, watch.interval());
                loop {
                    tokio::select! {
                        _ = interval.tick() => {
                            let report = watch.tick(unix_now(), &shared.metrics, &sink).await;
                            shared.set(index, report);
                            shared.progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        _ = stopped(&mut shutdown) => break,
                    }
                }
                tracing::debug!(service = watch.name(), "service loop stopped");
            });
        }
        spawn_watchdogs(
            &config, &shared, &sink, &client, &logs, &shutdown, &flags, &mut tasks,
        );
        let router = http::router(shared.clone());
        let watched = config
            .services
            .iter()
            .filter(|s| s.restart.is_some())
            .count();
        crate::notify::ready(&format!(
            "watching {} services ({} with a restart policy)",
            config.services.len(),
            watched
        ));
        let status_shared = shared.clone();
        crate::notify::spawn_watchdog(
            shared.progress.clone(),
            move || {
                let report = status_shared.report();
                let up = report.services.iter().filter(|s| s.up).count();
                let leaking = report
                    .services
                    .iter()
                    .flat_map(|s| &s.gauges)
                    .filter(|g| g.leak_suspected)
                    .count();
                format!(
                    "{up}/{} services up, {leaking} gauges leaking, {} watchdog decisions",
                    report.services.len(),
                    status_shared.audit.newest_first().len()
                )
            },
            shutdown.clone(),
        );
        let mut http_shutdown = shutdown.clone();
        let server = axum::serve(listener, router).with_graceful_shutdown(async move {
            stopped(&mut http_shutdown).await;
        });
        let served = server.await.context("serving HTTP");
        while tasks.join_next().await.is_some() {}
        tracing::info!("agent stopped");
        served
    }
}

/// One restart watchdog per service with a `[service.restart]`.
#[allow(clippy::too_many_arguments)]
fn spawn_watchdogs(
    config: &Arc<AgentConfig>,
    shared: &Arc<Shared>,
    sink: &EventSink,
    client: &reqwest::Client,
    logs: &tokio::sync::broadcast::Sender<AgentEvent>,
    shutdown: &watch::Receiver<bool>,
    restarting: &[Arc<std::sync::atomic::AtomicBool>],
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let host = shared.info.host.clone();
    let leases = config.daemon.as_ref().and_then(|link| {
        crate::agent::watchdog::leases::LeaseClient::new(link, &host)
            .map_err(|e| tracing::error!(error = %e, "cannot build the lease client"))
            .ok()
    });
    for (index, service) in config.services.iter().enumerate() {
        let Some(restart) = service.restart.clone() else {
            continue;
        };
        let view_shared = shared.clone();
        let task = crate::agent::watchdog::task::WatchdogTask {
            service: service.name.clone(),
            place: restart.target.clone().unwrap_or_else(|| host.clone()),
            config: restart,
            state_dir: config.state_dir.clone(),
            view: Arc::new(move || view_shared.service(index)),
            audit: shared.audit.clone(),
            sink: sink.clone(),
            logs: logs.subscribe(),
            client: client.clone(),
            leases: leases.clone(),
            daemon_url: config.daemon.as_ref().map(|d| d.url.clone()),
            restarts_total: shared.metrics.restarts.clone(),
            metrics: shared.metrics.watchdog.clone(),
            progress: shared.progress.clone(),
            restarting: restarting.get(index).cloned().unwrap_or_default(),
        };
        tasks.spawn(task.run(shutdown.clone()));
    }
}

/// The ticks of one service: at once, then on the grid `origin + k * period`. A late tick (a
/// slow gauge) is not made up for: one tick stands for all that were missed, and the next one is
/// on the grid again.
fn tick_grid(origin: tokio::time::Instant, period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(first_tick(origin, period), period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    interval
}

/// The grid point `origin + k * period` at or just before now: an interval started there (with
/// [`MissedTickBehavior::Skip`]) ticks at once, then on the grid.
fn first_tick(origin: tokio::time::Instant, period: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let since = now.saturating_duration_since(origin);
    let into = since.as_nanos() % period.as_nanos().max(1);
    now - Duration::from_nanos(into as u64)
}

/// Resolves when the shutdown value is true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;
