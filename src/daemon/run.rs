//! `sipwatch run`: wires the daemon together and owns its one state task.
//!
//! The state task is the only owner of the [`Board`] and the [`Store`] writer: the scheduler sends
//! it probe results, it applies them, records what changed, updates metrics and publishes a new
//! [`Snapshot`] for the HTTP layer. A tick each second evaluates maintenance windows, publishes the
//! snapshot when something changed, flushes the store every few seconds and saves node state so a
//! restart resumes where it stopped. SIGHUP reloads the config (unchanged targets keep their state
//! and keep probing); SIGTERM/SIGINT stop everything cleanly after a last flush.
//!
//! A store that cannot be opened or written does not stop probing: the error is logged, counted in
//! `sipwatch_store_errors_total`, shown on the status page, and writes are retried.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use super::config::DaemonConfig;
use super::history::History;
use super::http::agents::{AgentIntake, AgentMsg};
use super::http::{router, HttpState};
use super::metrics::Metrics;
use super::model::AgentSummary;
use super::model::{Incident, NodeState, Observation, Snapshot, UnixTime};
use super::scheduler::{ProbeReport, Scheduler, SchedulerMsg};
use super::state::{Board, BoardEvent, GroupSpec, TargetSpec, Thresholds};
use super::store::{Store, StoreReader};
use sipwatch_alerting::{Outbox, OutboxOptions};

fn now_unix() -> UnixTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn specs(cfg: &DaemonConfig) -> (Vec<TargetSpec>, Vec<GroupSpec>) {
    let targets = cfg
        .targets
        .iter()
        .map(|t| TargetSpec {
            name: t.name.clone(),
            uri: t.uri.original.clone(),
            method: t.method.as_str().to_string(),
            group: t.group.clone(),
            thresholds: Thresholds {
                fail: t.fail_threshold,
                ok: t.ok_threshold,
                flap_window_secs: t.flap_window.as_secs_f64(),
                flap_max_changes: t.flap_max_changes,
            },
        })
        .collect();
    let groups = cfg
        .groups
        .iter()
        .map(|g| GroupSpec {
            name: g.name.clone(),
            min_up: g.min_up,
        })
        .collect();
    (targets, groups)
}

/// History when the store cannot be read: every question answered with the reason.
struct NoHistory(String);

impl History for NoHistory {
    fn uptime(&self, _: &str, _: UnixTime) -> Result<Option<f64>, String> {
        Err(self.0.clone())
    }
    fn rtt_series(&self, _: &str, _: UnixTime) -> Result<Vec<(UnixTime, f64)>, String> {
        Err(self.0.clone())
    }
    fn incidents(&self, _: UnixTime, _: usize) -> Result<Vec<Incident>, String> {
        Err(self.0.clone())
    }
}

/// Reads readers lazily: the store file may only appear once the writer created it.
struct LazyHistory {
    path: PathBuf,
    reader: std::sync::Mutex<Option<Arc<StoreReader>>>,
}

impl LazyHistory {
    fn get(&self) -> Result<Arc<StoreReader>, String> {
        let mut guard = self
            .reader
            .lock()
            .map_err(|_| "store reader poisoned".to_string())?;
        if let Some(r) = guard.as_ref() {
            return Ok(r.clone());
        }
        let r = Arc::new(StoreReader::open(&self.path).map_err(|e| e.to_string())?);
        *guard = Some(r.clone());
        Ok(r)
    }
}

impl History for LazyHistory {
    fn uptime(&self, target: &str, since: UnixTime) -> Result<Option<f64>, String> {
        self.get()?.uptime(target, since)
    }
    fn rtt_series(&self, target: &str, since: UnixTime) -> Result<Vec<(UnixTime, f64)>, String> {
        self.get()?.rtt_series(target, since)
    }
    fn incidents(&self, since: UnixTime, limit: usize) -> Result<Vec<Incident>, String> {
        self.get()?.incidents(since, limit)
    }
    fn page_history(
        &self,
        names: &[String],
        now: UnixTime,
    ) -> std::collections::HashMap<String, super::http::page::TargetHistory> {
        match self.get() {
            Ok(reader) => reader.page_history(names, now),
            Err(e) => names
                .iter()
                .map(|n| {
                    let h = super::http::page::TargetHistory {
                        uptime_24h: Err(e.clone()),
                        uptime_7d: Err(e.clone()),
                        rtt_24h: Err(e.clone()),
                    };
                    (n.clone(), h)
                })
                .collect(),
        }
    }
}

/// What waits for the store while it is being flushed.
enum Backlogged {
    Probe(Arc<str>, Arc<str>, Observation),
    Events(Vec<BoardEvent>),
}

/// The daemon's mutable heart, owned by the state task.
struct StateTask {
    cfg: DaemonConfig,
    board: Board,
    store: Option<Store>,
    /// While the store is away being flushed on a blocking thread: it comes back through this.
    flushing: Option<tokio::sync::oneshot::Receiver<(Store, Result<(), String>)>>,
    /// Probes and state changes that arrived while the store was away, applied when it is back.
    backlog: Vec<Backlogged>,
    store_error: Option<String>,
    metrics: Arc<Metrics>,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    dirty: bool,
    /// The durable alert queue; None without `[alerting]` receivers (alerts are only logged).
    outbox: Option<Outbox>,
    /// `source` of the alerts this daemon raises.
    source: String,
    /// Last report of each node agent, by host.
    agents: std::collections::BTreeMap<String, AgentSummary>,
}

impl StateTask {
    fn store_failed(&mut self, what: &str, e: impl std::fmt::Display) {
        let msg = format!("{what}: {e}");
        if self.store_error.as_deref() != Some(msg.as_str()) {
            tracing::error!(path = %self.cfg.store_path.display(), error = %msg, "store cannot be written; probing goes on");
        }
        self.metrics.store_error();
        self.metrics.set_store_ok(false);
        self.store_error = Some(msg);
        self.dirty = true;
    }

    fn store_ok(&mut self) {
        if self.store_error.take().is_some() {
            tracing::info!(path = %self.cfg.store_path.display(), "store writable again");
            self.dirty = true;
        }
        self.metrics.set_store_ok(true);
    }

    fn events(&mut self, events: Vec<BoardEvent>) {
        if events.is_empty() {
            return;
        }
        self.dirty = true;
        for e in &events {
            log_event(e);
            if let Some(alert) = crate::alerts::board_alert(e, &self.source) {
                self.raise(alert);
            }
        }
        if self.flushing.is_some() {
            self.backlog.push(Backlogged::Events(events));
            return;
        }
        let result = match self.store.as_mut() {
            Some(store) => store.record_events(&events).map_err(|e| e.to_string()),
            None => Err("store not open".to_string()),
        };
        match result {
            Ok(()) => self.store_ok(),
            Err(e) => self.store_failed("recording state changes", e),
        }
    }

    /// Puts an alert in the outbox (or only logs it when no receiver is configured).
    fn raise(&mut self, mut alert: sipwatch_alerting::Alert) {
        if alert.url.is_none() {
            alert.url = self.cfg.alerting.url.clone();
        }
        tracing::warn!(key = %alert.key, status = ?alert.status, summary = %alert.summary, "alert");
        if let Some(outbox) = &self.outbox {
            if let Err(e) = outbox.enqueue(&alert) {
                tracing::error!(key = %alert.key, error = %e, "cannot queue the alert");
            }
        }
    }

    fn agent(&mut self, msg: AgentMsg) {
        match msg {
            AgentMsg::Report(mut summary) => {
                summary.received_at = now_unix();
                self.agents.insert(summary.host.clone(), summary);
                self.dirty = true;
            }
            AgentMsg::Alert(alert, reply) => {
                let result = match &self.outbox {
                    Some(outbox) => outbox
                        .enqueue(&alert)
                        .map(|_| ())
                        .map_err(|e| format!("cannot queue the alert: {e}")),
                    None => Err("this daemon has no [alerting] receivers: configure some, or give the agent its own [alerting] receivers instead of [daemon]".to_string()),
                };
                if result.is_ok() {
                    tracing::warn!(key = %alert.key, status = ?alert.status, source = %alert.source, summary = %alert.summary, "agent alert");
                }
                let _ = reply.send(result);
            }
        }
    }

    fn probe(&mut self, r: ProbeReport) {
        let o = &r.outcome;
        let obs = Observation {
            at: o.started_at,
            status: match o.status {
                sipwatch_probes::outcome::Status::Ok => "ok",
                sipwatch_probes::outcome::Status::Warning => "warning",
                sipwatch_probes::outcome::Status::Critical => "critical",
                sipwatch_probes::outcome::Status::Unknown => "unknown",
            }
            .to_string(),
            result: o.result.as_str().to_string(),
            code: o.code,
            rtt_ms: o.rtt_ms,
            reason: o.reason.clone(),
            cert_days_left: o.cert_days_left,
        };
        self.metrics
            .probe_finished(&r.target, o.result.as_str(), o.rtt_ms.map(|ms| ms / 1e3));
        self.metrics.probe_lateness(r.lateness.as_secs_f64());
        if let Some(days) = o.cert_days_left {
            self.metrics
                .set_cert_expiry(&r.target, days as f64 * 86_400.0);
        }
        if let Some(store) = self.store.as_mut() {
            store.record_probe(&r.target, &r.node, &obs);
        } else if self.flushing.is_some() {
            self.backlog.push(Backlogged::Probe(
                r.target.clone(),
                r.node.clone(),
                obs.clone(),
            ));
        }
        let events = self.board.observe(&r.target, &r.node, obs);
        self.events(events);
    }

    /// Metrics that follow the board: target and group up, node counts.
    fn refresh_metrics(&self, snap: &Snapshot) {
        let mut counts = std::collections::HashMap::new();
        for t in &snap.targets {
            let up = t.nodes.iter().any(|n| n.state.is_serving());
            self.metrics.set_target_up(&t.name, t.group.as_deref(), up);
            for n in &t.nodes {
                *counts.entry(n.state).or_insert(0usize) += 1;
            }
        }
        for g in &snap.groups {
            self.metrics
                .set_group_up(&g.name, g.state != super::model::GroupState::Down);
        }
        let counts: Vec<(NodeState, usize)> = [
            NodeState::Unknown,
            NodeState::Up,
            NodeState::Degraded,
            NodeState::Down,
        ]
        .into_iter()
        .map(|s| (s, counts.get(&s).copied().unwrap_or(0)))
        .collect();
        self.metrics.set_node_counts(&counts);
        self.metrics.set_targets(snap.targets.len());
    }

    fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let mut snap = self.board.snapshot(now_unix());
        snap.store_error = self.store_error.clone();
        snap.agents = self.agents.values().cloned().collect();
        self.refresh_metrics(&snap);
        let _ = self.snapshot_tx.send(Arc::new(snap));
    }

    fn maintenance(&mut self) {
        let now = chrono::Local::now();
        let mut targets = Vec::new();
        let mut groups = Vec::new();
        for w in &self.cfg.maintenance {
            if w.calendar.in_window(&now, w.duration) {
                targets.extend(w.targets.iter().cloned());
                groups.extend(w.groups.iter().cloned());
            }
        }
        let events = self.board.set_maintenance(&targets, &groups, now_unix());
        self.events(events);
    }

    fn flush(&mut self) {
        if self.store.is_none() {
            match Store::open(&self.cfg.store_path, self.cfg.retention.as_secs_f64()) {
                Ok(s) => {
                    self.store = Some(s);
                    self.store_ok();
                }
                Err(e) => {
                    self.store_failed("opening the store", e);
                    return;
                }
            }
        }
        let now = now_unix();
        let records = self.board.node_records();
        let result = self.store.as_mut().map(|s| {
            s.flush(now)
                .and_then(|_| s.save_nodes(&records))
                .map_err(|e| e.to_string())
        });
        match result {
            Some(Ok(())) => self.store_ok(),
            Some(Err(e)) => self.store_failed("flushing history", e),
            None => {}
        }
    }

    /// Like [`StateTask::flush`], but the writing (SQLite: tens of milliseconds with 10,000
    /// targets) happens on a blocking thread, so the probe thread keeps its schedule. Probes and
    /// state changes that come meanwhile wait in a backlog; [`StateTask::store_back`] applies them.
    fn flush_away(&mut self) {
        if self.flushing.is_some() {
            return;
        }
        if self.store.is_none() {
            self.flush();
            return;
        }
        let Some(mut store) = self.store.take() else {
            return;
        };
        let now = now_unix();
        let records = self.board.node_records();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.flushing = Some(rx);
        tokio::task::spawn_blocking(move || {
            let result = store
                .flush(now)
                .and_then(|_| store.save_nodes(&records))
                .map_err(|e| e.to_string());
            let _ = tx.send((store, result));
        });
    }

    /// The store is back from a flush: keeps it and applies what waited.
    fn store_back(&mut self, back: Result<(Store, Result<(), String>), String>) {
        self.flushing = None;
        match back {
            Ok((store, result)) => {
                self.store = Some(store);
                match result {
                    Ok(()) => self.store_ok(),
                    Err(e) => self.store_failed("flushing history", e),
                }
            }
            Err(e) => self.store_failed("flushing history", e),
        }
        for item in std::mem::take(&mut self.backlog) {
            match item {
                Backlogged::Probe(target, node, obs) => {
                    if let Some(store) = self.store.as_mut() {
                        store.record_probe(&target, &node, &obs);
                    }
                }
                Backlogged::Events(events) => {
                    let result = match self.store.as_mut() {
                        Some(store) => store.record_events(&events).map_err(|e| e.to_string()),
                        None => Err("store not open".to_string()),
                    };
                    if let Err(e) = result {
                        self.store_failed("recording state changes", e);
                    }
                }
            }
        }
    }

    /// Waits for a flush in progress (at shutdown).
    async fn wait_store(&mut self) {
        if let Some(rx) = self.flushing.take() {
            let back = rx.await.map_err(|_| "the flush thread ended".to_string());
            self.store_back(back);
        }
    }

    fn prune(&mut self) {
        if let Some(store) = self.store.as_mut() {
            match store.prune(now_unix()) {
                Ok(n) if n > 0 => tracing::info!(rows = n, "pruned old history"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning history failed"),
            }
        }
    }

    fn reload(&mut self, scheduler: &mut Scheduler) {
        match DaemonConfig::load(&self.cfg.path) {
            Ok(new) => {
                if new.store_path != self.cfg.store_path || new.listen != self.cfg.listen {
                    tracing::warn!(
                        "[store] path and [http] listen changes need a restart; kept the old ones"
                    );
                }
                let (targets, groups) = specs(&new);
                let removed: Vec<(String, Option<String>)> = self
                    .cfg
                    .targets
                    .iter()
                    .filter(|old| !new.targets.iter().any(|t| t.name == old.name))
                    .map(|t| (t.name.clone(), t.group.clone()))
                    .collect();
                for (name, group) in &removed {
                    self.metrics.remove_target(name, group.as_deref());
                }
                let events = self.board.reconfigure(targets, groups, now_unix());
                scheduler.apply(&new.targets);
                let keep = (self.cfg.store_path.clone(), self.cfg.listen);
                self.cfg = new;
                (self.cfg.store_path, self.cfg.listen) = keep;
                self.events(events);
                self.dirty = true;
                tracing::info!(targets = self.cfg.targets.len(), "config reloaded");
            }
            Err(e) => tracing::error!("config reload refused, keeping the running config:\n{e}"),
        }
    }
}

fn log_event(e: &BoardEvent) {
    match e {
        BoardEvent::Changed(c) => tracing::info!(
            target = %c.target, node = %c.node, from = c.from.as_str(), to = c.to.as_str(),
            notify = c.notify, reason = %c.reason, "node state changed"
        ),
        BoardEvent::GroupChanged {
            group,
            from,
            to,
            serving,
            min_up,
            notify,
            ..
        } => tracing::info!(
            group = %group, from = ?from, to = ?to, serving, min_up, notify, "group state changed"
        ),
        BoardEvent::IncidentOpened(i) => {
            tracing::warn!(id = i.id, key = %i.key, title = %i.title, "incident opened")
        }
        BoardEvent::IncidentUpdated(i) => {
            tracing::info!(id = i.id, key = %i.key, title = %i.title, "incident updated")
        }
        BoardEvent::IncidentResolved(i) => {
            tracing::info!(id = i.id, key = %i.key, "incident resolved")
        }
        BoardEvent::FlapStarted {
            target,
            node,
            changes,
            ..
        } => tracing::warn!(
            target = %target, node = %node, changes, "node is flapping; its alerts are held"
        ),
        BoardEvent::FlapEnded {
            target,
            node,
            state,
            ..
        } => tracing::info!(
            target = %target, node = %node, state = state.as_str(), "node stopped flapping"
        ),
        BoardEvent::DnsChanged { target, error, .. } => match error {
            Some(e) => tracing::warn!(target = %target, error = %e, "target cannot be resolved"),
            None => tracing::info!(target = %target, "target resolves again"),
        },
        BoardEvent::MaintenanceChanged { key, active, .. } => {
            tracing::info!(key = %key, active, "maintenance window")
        }
    }
}

/// glibc's allocator, tuned for a long-lived daemon whose HTTP threads now and then build a
/// page of several megabytes: a fixed mmap threshold, so such a page goes back to the system once
/// sent (by default the threshold grows with each large free and the memory stays in the thread's
/// arena: 120 MB more after 20 clients loaded the page of 10,000 targets for 30 s). The number of
/// arenas is left alone: two arenas shared with the probe thread made it wait on the HTTP threads'
/// allocations (probe start lateness p99 200 ms under page loads).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt(3) only sets an allocator parameter; called once, before the threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Runs the daemon until `shutdown` turns true.
pub async fn run(config_path: &Path, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    tune_allocator();
    let cfg = DaemonConfig::load(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = Arc::new(Metrics::new());
    let (targets, groups) = specs(&cfg);
    let mut board = Board::new(cfg.page_name.clone(), targets, groups);

    let (store, store_error) = match Store::open(&cfg.store_path, cfg.retention.as_secs_f64()) {
        Ok(store) => match store.load() {
            Ok((nodes, incidents, next_id)) => {
                tracing::info!(
                    nodes = nodes.len(),
                    open_incidents = incidents.len(),
                    "restored state from the store"
                );
                board.restore(nodes, incidents, next_id);
                (Some(store), None)
            }
            Err(e) => (Some(store), Some(format!("reading saved state: {e}"))),
        },
        Err(e) => (None, Some(format!("opening the store: {e}"))),
    };
    if let Some(e) = &store_error {
        tracing::error!(path = %cfg.store_path.display(), error = %e, "store unavailable; probing goes on");
        metrics.store_error();
    }
    metrics.set_store_ok(store_error.is_none());
    let history: Arc<dyn History> = if cfg.store_path.as_os_str().is_empty() {
        Arc::new(NoHistory("no store configured".into()))
    } else {
        Arc::new(LazyHistory {
            path: cfg.store_path.clone(),
            reader: std::sync::Mutex::new(None),
        })
    };

    // Alerting: a durable outbox for the configured receivers.
    let outbox = if cfg.alerting.receiver.is_empty() {
        tracing::info!("no [alerting] receivers: alerts are only logged");
        None
    } else {
        let notifiers = sipwatch_alerting::build(&cfg.alerting.receiver)
            .map_err(|e| anyhow::anyhow!("[alerting]: {e}"))?;
        let path = cfg.alerting.outbox.clone().unwrap_or_else(|| {
            cfg.store_path
                .parent()
                .unwrap_or(Path::new("."))
                .join("outbox.db")
        });
        let outbox = Outbox::open(&path, notifiers, OutboxOptions::default())
            .with_context(|| format!("cannot open the alert outbox {}", path.display()))?;
        tokio::spawn(outbox.clone().run(shutdown.clone()));
        Some(outbox)
    };
    let (agent_tx, mut agent_rx) = mpsc::channel::<AgentMsg>(256);
    let intake = cfg.agent_token.clone().map(|token| AgentIntake {
        token,
        tx: agent_tx.clone(),
    });
    drop(agent_tx);

    let mut first = board.snapshot(now_unix());
    first.store_error = store_error.clone();
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(first));

    let listener = std::net::TcpListener::bind(cfg.listen)
        .with_context(|| format!("cannot listen on {} ([http] listen)", cfg.listen))?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("cannot listen on {} ([http] listen)", cfg.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "status page and metrics");
    let app = router(HttpState {
        snapshot: snapshot_rx,
        metrics: metrics.clone(),
        history,
        agents: intake,
    });
    let http = serve_http(listener, app, shutdown.clone())?;

    let (tx, mut rx) = mpsc::channel::<SchedulerMsg>(4096);
    let mut scheduler = Scheduler::new(cfg.udp_sockets, cfg.max_in_flight, tx).await?;
    scheduler.apply(&cfg.targets);
    tracing::info!(
        targets = cfg.targets.len(),
        groups = cfg.groups.len(),
        "probing"
    );

    let source = cfg
        .alerting
        .source
        .clone()
        .unwrap_or_else(crate::alerts::host_name);
    let mut task = StateTask {
        outbox,
        source,
        agents: Default::default(),
        cfg,
        board,
        store,
        flushing: None,
        backlog: Vec::new(),
        store_error,
        metrics,
        snapshot_tx,
        dirty: true,
    };
    task.maintenance();
    task.publish();

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                match msg {
                    SchedulerMsg::Probe(r) => task.probe(*r),
                    SchedulerMsg::Nodes { target, nodes } => {
                        let events = task.board.set_nodes(&target, &nodes, now_unix());
                        task.events(events);
                        task.dirty = true;
                    }
                    SchedulerMsg::DnsError { target, error } => {
                        let events = task.board.set_dns_error(&target, Some(error), now_unix());
                        task.events(events);
                        task.dirty = true;
                    }
                    SchedulerMsg::DnsOk { target } => {
                        let events = task.board.set_dns_error(&target, None, now_unix());
                        task.events(events);
                        task.dirty = true;
                    }
                }
            }
            _ = tick.tick() => {
                ticks += 1;
                if ticks.is_multiple_of(10) {
                    task.maintenance();
                }
                if ticks.is_multiple_of(5) {
                    task.flush_away();
                }
                if ticks.is_multiple_of(3600) {
                    task.prune();
                }
                task.publish();
            }
            back = async { task.flushing.as_mut().expect("guarded").await }, if task.flushing.is_some() => {
                task.store_back(back.map_err(|_| "the flush thread ended".to_string()));
            }
            Some(msg) = agent_rx.recv() => task.agent(msg),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                task.reload(&mut scheduler);
                task.publish();
            }
            _ = shutdown.wait_for(|v| *v) => break,
        }
    }
    tracing::info!("stopping: saving state");
    scheduler.shutdown().await;
    task.wait_store().await;
    while let Ok(SchedulerMsg::Probe(r)) = rx.try_recv() {
        task.probe(*r);
    }
    task.flush();
    let _ = tokio::task::spawn_blocking(move || http.join()).await;
    Ok(())
}

/// Serves the status page, feed, metrics and agent intake on a runtime of their own (two worker
/// threads): rendering a page of 10,000 targets or answering 20 clients at once then never holds
/// up the probe thread, which only publishes snapshots and updates atomics for it.
fn serve_http(
    listener: std::net::TcpListener,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .thread_name("sipwatch-http")
        // Page loads yield the CPU to probing: when both want it, the kernel runs the probe
        // thread first (20 clients loading the page moved probes' p99 start lateness from 10 to
        // 36 ms at the default priority on 2 cores).
        .on_thread_start(|| {
            // SAFETY: setpriority(2) on this very thread (a Linux thread id is a process id for
            // PRIO_PROCESS); failure only leaves the default priority.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
            }
        })
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    std::thread::Builder::new()
        .name("sipwatch-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot serve HTTP");
                        return;
                    }
                };
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = shutdown.wait_for(|v| *v).await;
                    })
                    .await;
            })
        })
        .context("cannot start the HTTP thread")
}
