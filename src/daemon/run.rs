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
//! `sipwatch_store_errors_total`, shown on the status page, and writes are retried. A store file
//! deleted, replaced or damaged under the daemon ([`StoreWatch`]) and an alert outbox that cannot
//! be written (disk full) are reported the same way, and turn `sipwatch_store_ok` to 0.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use super::config::{DaemonConfig, MaintenanceWindow};
use super::history::History;
use super::http::agents::{AgentIntake, AgentMsg};
use super::http::alert_control::{ControlApi, ControlMsg};
use super::http::{router, HttpState};
use super::metrics::Metrics;
use super::model::AgentSummary;
use super::model::{Incident, MaintenanceView, NodeState, Observation, Snapshot, UnixTime};
use super::paging::Paging;
use super::scheduler::{ProbeReport, Scheduler, SchedulerMsg};
use super::state::{Board, BoardEvent, GroupSpec, SaveMode, TargetSpec, Thresholds};
use super::store::{Store, StoreReader};
use super::store_watch::StoreWatch;
use sipwatch_alerting::{Outbox, OutboxOptions};

fn now_unix() -> UnixTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Takes the targets out of `cfg` once they are applied, keeping their names and groups.
fn take_targets(cfg: &mut DaemonConfig) -> Vec<(String, Option<String>)> {
    std::mem::take(&mut cfg.targets)
        .into_iter()
        .map(|t| (t.name, t.group))
        .collect()
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

impl LazyHistory {
    /// Forgets the reader: the next question opens the file at the path again (after the
    /// store file was replaced).
    fn reset(&self) {
        if let Ok(mut guard) = self.reader.lock() {
            *guard = None;
        }
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
    /// The running config, without its targets: those live on in the board and the scheduler
    /// (a copy here was 4 MB at 10,000 targets), and `targets` keeps what a reload compares.
    cfg: DaemonConfig,
    /// The configured targets' names and groups.
    targets: Vec<(String, Option<String>)>,
    board: Board,
    store: Option<Store>,
    /// While the store is away being flushed on a blocking thread: it comes back through this.
    flushing: Option<tokio::sync::oneshot::Receiver<(Store, Result<(), String>)>>,
    /// Probes and state changes that arrived while the store was away, applied when it is back.
    backlog: Vec<Backlogged>,
    store_error: Option<String>,
    metrics: Arc<Metrics>,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    /// The snapshot [`StateTask::refresh_metrics`] saw last (the one published last).
    metrics_view: Option<Arc<Snapshot>>,
    dirty: bool,
    /// Routes, grouping, inhibition, silences and the durable outbox (None without receivers:
    /// notifications are only logged).
    paging: Paging,
    /// `source` of the alerts this daemon raises.
    source: String,
    /// Agents whose silence raised `AgentSilent`.
    silent_agents: std::collections::BTreeSet<String>,
    /// The alert-control view last published, to publish again only when it changed.
    alerting_view: super::model::AlertingView,
    /// Last report of each node agent, by host.
    agents: std::collections::BTreeMap<String, AgentSummary>,
    /// What is wrong with the alert outbox's storage (disk full: alerts held in memory).
    outbox_problem: Option<String>,
    /// Restart leases out (the watchdog's quorum leases).
    leases: super::leases::LeaseBook,
    /// Watches the store file for deletion, replacement and corruption.
    store_watch: Option<StoreWatch>,
    /// The store file was deleted or replaced under us (kept until restart: history was lost).
    store_lost: Option<String>,
    /// The last integrity check failed.
    store_corrupt: Option<String>,
    /// The status page's reader of the store, reset when the file is replaced.
    history: Option<Arc<LazyHistory>>,
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
        self.metrics.set_store_ok(self.store_problems().is_none());
    }

    /// Every storage problem, for the page, `/healthz` and `sipwatch_store_ok`.
    fn store_problems(&self) -> Option<String> {
        let all: Vec<&str> = [
            &self.store_error,
            &self.store_lost,
            &self.store_corrupt,
            &self.outbox_problem,
        ]
        .into_iter()
        .filter_map(|p| p.as_deref())
        .collect();
        (!all.is_empty()).then(|| all.join("; "))
    }

    /// Runs the store file's integrity check on schedule and takes its result.
    fn check_store_file(&mut self) {
        let Some(result) = self
            .store_watch
            .as_mut()
            .and_then(|w| w.poll_quick_check(std::time::Instant::now()))
        else {
            return;
        };
        match result {
            Ok(()) => {
                if self.store_corrupt.take().is_some() {
                    tracing::info!(path = %self.cfg.store_path.display(), "store file passes its integrity check again");
                    self.dirty = true;
                }
            }
            Err(e) => {
                if self.store_corrupt.as_deref() != Some(e.as_str()) {
                    tracing::error!(path = %self.cfg.store_path.display(), error = %e, "store file is damaged");
                    self.store_corrupt = Some(e);
                    self.dirty = true;
                }
            }
        }
    }

    /// A store file deleted or replaced under us: say so, and start a new file at the path so
    /// that what follows is kept.
    fn check_store_identity(&mut self) {
        if self.store.is_none() {
            return;
        }
        let Some(problem) = self
            .store_watch
            .as_ref()
            .and_then(StoreWatch::identity_problem)
        else {
            return;
        };
        tracing::error!(path = %self.cfg.store_path.display(), error = %problem,
            "store file lost; starting a new one at the same path (history before now is gone)");
        self.store = None;
        self.store_watch = None;
        if let Some(h) = &self.history {
            h.reset();
        }
        self.store_lost = Some(format!(
            "{problem} (noticed at {}; a new file was started: history and incidents before \
             then are gone; this notice stays until sipwatch restarts)",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S %Z")
        ));
        self.dirty = true;
    }

    /// Follows the alert outbox's storage: a full disk shows on the page, `/healthz` and
    /// `sipwatch_store_ok` (the outbox logs it itself, at a bounded rate).
    fn check_outbox(&mut self) {
        let problem = self
            .paging
            .outbox()
            .and_then(|o| o.health().describe())
            .map(|d| format!("alert outbox: {d}"));
        if problem != self.outbox_problem {
            self.outbox_problem = problem;
            self.dirty = true;
        }
        self.metrics.set_store_ok(self.store_problems().is_none());
    }

    fn events(&mut self, events: Vec<BoardEvent>) {
        if events.is_empty() {
            return;
        }
        self.dirty = true;
        for e in &events {
            log_event(e);
            if let Some(alert) = super::alert_rules::board_alert(e, &self.source) {
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

    /// Hands an alert to routing and grouping (notifications leave on the tick).
    fn raise(&mut self, alert: sipwatch_alerting::Alert) {
        tracing::warn!(key = %alert.key, status = ?alert.status, summary = %alert.summary, "alert");
        let key = alert.key.clone();
        if let Err(e) = self.paging.raise(now_unix(), alert) {
            tracing::error!(key = %key, error = %e, "cannot queue the alert");
        }
        self.paging.tick(now_unix());
    }

    /// The paging tick: due notifications out, delivery metrics and view refreshed.
    fn paging_tick(&mut self) {
        let now = now_unix();
        let silent_after = self
            .cfg
            .alerting
            .agent_silent_after
            .map_or(180.0, |d| d.as_secs_f64());
        let newly_silent: Vec<(String, f64)> = self
            .agents
            .values()
            .filter(|a| now - a.received_at > silent_after && !self.silent_agents.contains(&a.host))
            .map(|a| (a.host.clone(), a.received_at))
            .collect();
        for (host, last) in newly_silent {
            self.silent_agents.insert(host.clone());
            let alert =
                super::alert_rules::agent_silent_alert(&host, true, last, now, &self.source);
            self.raise(alert);
        }
        self.paging.tick(now);
        if let Some(outbox) = self.paging.outbox() {
            self.metrics.delivery.update(&outbox.stats(), now);
        }
        let view = self.paging.view(now);
        if view != self.alerting_view {
            self.alerting_view = view;
            self.dirty = true;
        }
    }

    /// A request of the alert control API.
    fn control(&mut self, msg: ControlMsg) {
        let now = now_unix();
        let view = |paging: &Paging, id: &str| {
            paging
                .silence_views(now)
                .into_iter()
                .find(|v| v.id == id)
                .ok_or_else(|| format!("silence {id} vanished"))
        };
        match msg {
            ControlMsg::AddSilence(silence, reply) => {
                let result = self.paging.add_silence(*silence).and_then(|s| {
                    self.save_silence(&s);
                    view(&self.paging, &s.id)
                });
                let _ = reply.send(result);
            }
            ControlMsg::ExpireSilence(id, reply) => {
                let result = self.paging.expire_silence(&id, now).and_then(|s| {
                    self.save_silence(&s);
                    view(&self.paging, &s.id)
                });
                let _ = reply.send(result);
            }
            ControlMsg::ListSilences(reply) => {
                let _ = reply.send(self.paging.silence_views(now));
            }
            ControlMsg::Ack { key, by, reply } => {
                let result = self.paging.acknowledge(&key, &by, now);
                if result.is_ok() {
                    let saved = match self.store.as_ref() {
                        Some(store) => store.save_ack(&key, &by, now),
                        None => Err("store not open".to_string()),
                    };
                    if let Err(e) = saved {
                        tracing::error!(key = %key, error = %e,
                            "the acknowledgement applies now but is not saved");
                    }
                }
                let _ = reply.send(result);
            }
        }
        self.paging_tick();
        self.publish();
    }

    fn save_silence(&mut self, silence: &sipwatch_alerting::silence::Silence) {
        if silence.id.starts_with("cfg-") {
            return;
        }
        let result = match self.store.as_ref() {
            Some(store) => store.save_silence(silence),
            None => Err("store not open".to_string()),
        };
        if let Err(e) = result {
            tracing::error!(id = %silence.id, error = %e,
                "the silence applies now but is not saved: it will be lost at a restart");
        }
    }

    fn agent(&mut self, msg: AgentMsg) {
        match msg {
            AgentMsg::Report(mut summary) => {
                summary.received_at = now_unix();
                if self.silent_agents.remove(&summary.host) {
                    let alert = super::alert_rules::agent_silent_alert(
                        &summary.host,
                        false,
                        summary.received_at,
                        summary.received_at,
                        &self.source,
                    );
                    self.raise(alert);
                }
                self.agents.insert(summary.host.clone(), summary);
                self.dirty = true;
            }
            AgentMsg::Lease(op, reply) => {
                let _ = reply.send(self.lease(op));
            }
            AgentMsg::Alert(alert, reply) => {
                let result = match self.paging.outbox() {
                    Some(_) => self.paging.raise(now_unix(), *alert.clone()),
                    None => Err("this daemon has no [alerting] receivers: configure some, or give the agent its own [alerting] receivers instead of [daemon]".to_string()),
                };
                self.paging.tick(now_unix());
                if result.is_ok() {
                    tracing::warn!(key = %alert.key, status = ?alert.status, source = %alert.source, summary = %alert.summary, "agent alert");
                }
                let _ = reply.send(result);
            }
        }
    }

    /// Answers a restart lease operation from the group's current probe state.
    fn lease(&mut self, op: super::leases::LeaseOp) -> (axum::http::StatusCode, serde_json::Value) {
        use super::leases::{GroupView, LeaseOp};
        use axum::http::StatusCode;
        let now = now_unix();
        match op {
            LeaseOp::Acquire(req) => {
                let snap = self.board.snapshot(now);
                let Some(target) = snap.targets.iter().find(|t| t.name == req.target) else {
                    return (
                        StatusCode::CONFLICT,
                        serde_json::json!({"why": "unknown_target", "reason": format!("the daemon has no target {:?}; set [service.restart] target to a [[target]] name", req.target)}),
                    );
                };
                let group = target.group.as_deref().and_then(|g| {
                    let settings = self.cfg.groups.iter().find(|s| s.name == g)?;
                    Some(GroupView {
                        name: &settings.name,
                        min_up: settings.min_up,
                        max_parallel: settings.max_parallel,
                        members: snap
                            .targets
                            .iter()
                            .filter(|t| t.group.as_deref() == Some(g))
                            .map(|t| {
                                (
                                    t.name.as_str(),
                                    t.nodes.iter().any(|n| n.state.is_serving()),
                                )
                            })
                            .collect(),
                    })
                });
                let id = format!("{:016x}", rand::random::<u64>());
                match self.leases.grant(
                    now,
                    &req.target,
                    &req.holder,
                    req.ttl_seconds.clamp(10.0, 86_400.0),
                    group,
                    id,
                ) {
                    Ok(lease) => {
                        tracing::info!(
                            target = lease.target,
                            holder = req.holder,
                            "restart lease granted"
                        );
                        (
                            StatusCode::OK,
                            serde_json::to_value(&lease).unwrap_or_default(),
                        )
                    }
                    Err(refusal) => {
                        tracing::info!(
                            target = req.target,
                            holder = req.holder,
                            why = refusal.why,
                            reason = refusal.reason,
                            "restart lease refused"
                        );
                        (
                            StatusCode::CONFLICT,
                            serde_json::to_value(&refusal).unwrap_or_default(),
                        )
                    }
                }
            }
            LeaseOp::Renew { id, ttl_seconds } => {
                if self
                    .leases
                    .renew(now, &id, ttl_seconds.clamp(10.0, 86_400.0))
                {
                    (StatusCode::OK, serde_json::json!({"renewed": id}))
                } else {
                    (
                        StatusCode::NOT_FOUND,
                        serde_json::json!({"why": "unknown_lease", "reason": "no such lease (expired or released)"}),
                    )
                }
            }
            LeaseOp::Release { id } => {
                if self.leases.release(&id) {
                    tracing::info!(lease = id, "restart lease released");
                    (StatusCode::OK, serde_json::json!({"released": id}))
                } else {
                    (
                        StatusCode::NOT_FOUND,
                        serde_json::json!({"why": "unknown_lease", "reason": "no such lease (expired or released)"}),
                    )
                }
            }
        }
    }

    fn probe(&mut self, mut r: ProbeReport) {
        let reason = std::mem::take(&mut r.outcome.reason);
        let o = &r.outcome;
        let obs = Observation {
            at: o.started_at,
            status: o.status,
            result: o.result,
            code: o.code,
            rtt_ms: o.rtt_ms,
            reason,
            cert_days_left: o.cert_days_left,
        };
        self.metrics
            .probe_finished(&r.target, o.result.as_str(), o.rtt_ms.map(|ms| ms / 1e3));
        self.metrics.probe_lateness(r.lateness.as_secs_f64());
        if let Some(days) = o.cert_days_left {
            self.metrics
                .set_cert_expiry(&r.target, days as f64 * 86_400.0);
        }
        if let Some(not_after) = o.cert_not_after {
            self.metrics.set_cert_not_after(&r.target, not_after);
        }
        if let Some(store) = self.store.as_mut() {
            store.record_probe(r.target.clone(), r.node.clone(), &obs);
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

    /// Metrics that follow the board: target and group up, node counts. Targets whose view is
    /// the very one of the snapshot refreshed last did not change: their series are left alone.
    fn refresh_metrics(&mut self, snap: &Arc<Snapshot>) {
        let before = self.metrics_view.replace(snap.clone());
        let mut counts = [
            (NodeState::Unknown, 0usize),
            (NodeState::Up, 0),
            (NodeState::Degraded, 0),
            (NodeState::Down, 0),
        ];
        for (i, t) in snap.targets.iter().enumerate() {
            for n in &t.nodes {
                if let Some((_, c)) = counts.iter_mut().find(|(s, _)| *s == n.state) {
                    *c += 1;
                }
            }
            let unchanged = before
                .as_ref()
                .and_then(|b| b.targets.get(i))
                .is_some_and(|b| Arc::ptr_eq(b, t));
            if unchanged {
                continue;
            }
            let up = t.nodes.iter().any(|n| n.state.is_serving());
            // No verdict yet (every node unknown): no probe_up series, not a 0.
            if t.nodes.iter().any(|n| n.state != NodeState::Unknown) {
                self.metrics.set_target_up(&t.name, t.group.as_deref(), up);
            } else {
                self.metrics.clear_target_up(&t.name, t.group.as_deref());
            }
            let nodes: Vec<(&str, Option<bool>)> = t
                .nodes
                .iter()
                .map(|n| {
                    let verdict = (n.state != NodeState::Unknown).then(|| n.state.is_serving());
                    (n.node.as_str(), verdict)
                })
                .collect();
            self.metrics.set_node_states(&t.name, &nodes);
        }
        for g in &snap.groups {
            self.metrics
                .set_group_up(&g.name, g.state != super::model::GroupState::Down);
        }
        self.metrics.set_node_counts(&counts);
        self.metrics.set_targets(snap.targets.len());
    }

    fn publish(&mut self) {
        self.metrics.set_store_ok(self.store_problems().is_none());
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let mut snap = self.board.snapshot(now_unix());
        snap.store_error = self.store_problems();
        snap.agents = self.agents.values().cloned().collect();
        snap.scheduled_maintenances = scheduled_maintenances(&self.cfg, now_unix());
        snap.alerting = self.alerting_view.clone();
        let snap = Arc::new(snap);
        self.refresh_metrics(&snap);
        let _ = self.snapshot_tx.send(snap);
    }

    fn maintenance(&mut self) {
        let mut targets = Vec::new();
        let mut groups = Vec::new();
        for w in &self.cfg.maintenance {
            if window_open(&self.cfg, w, now_unix()) {
                targets.extend(w.targets.iter().cloned());
                groups.extend(w.groups.iter().cloned());
            }
        }
        let events = self.board.set_maintenance(&targets, &groups, now_unix());
        self.events(events);
    }

    /// Writes what waits for the store and every node's record, here and now (at shutdown, and
    /// when the store has to be opened again).
    fn flush(&mut self) {
        self.check_store_identity();
        if self.store.is_none() {
            match Store::open(&self.cfg.store_path, self.cfg.retention.as_secs_f64()) {
                Ok(s) => {
                    self.store = Some(s);
                    self.store_watch = Some(StoreWatch::new(&self.cfg.store_path));
                    self.store_ok();
                }
                Err(e) => {
                    self.store_failed("opening the store", e);
                    return;
                }
            }
        }
        let now = now_unix();
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let (mode, records) = self.board.records_to_save(now, SaveMode::All);
        let result = store
            .flush(now)
            .and_then(|_| store.save_nodes(&records, mode))
            .map_err(|e| e.to_string());
        match result {
            Ok(()) => self.store_ok(),
            Err(e) => {
                self.board.node_save_failed();
                self.store_failed("flushing history", e);
            }
        }
    }

    /// Like [`StateTask::flush`], but the writing (SQLite: tens of milliseconds with 10,000
    /// targets) happens on a blocking thread, so the probe thread keeps its schedule. Probes and
    /// state changes that come meanwhile wait in a backlog; [`StateTask::store_back`] applies them.
    /// Node records: only those whose durable state changed, and every one now and then (see
    /// [`SaveMode`]).
    fn flush_away(&mut self) {
        if self.flushing.is_some() {
            return;
        }
        // A deleted or replaced file is noticed before its store is handed to the flush thread.
        self.check_store_identity();
        if self.store.is_none() {
            self.flush();
            return;
        }
        let Some(mut store) = self.store.take() else {
            return;
        };
        let now = now_unix();
        let (mode, records) = self.board.records_to_save(now, SaveMode::Changed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.flushing = Some(rx);
        tokio::task::spawn_blocking(move || {
            let result = store
                .flush(now)
                .and_then(|_| store.save_nodes(&records, mode))
                .map_err(|e| e.to_string());
            let _ = tx.send((store, result));
        });
    }

    /// The store is back from a flush: keeps it and applies what waited. When the flush failed,
    /// the node records it took are written again by the next one (a save of every record).
    fn store_back(&mut self, back: Result<(Store, Result<(), String>), String>) {
        self.flushing = None;
        let result = match back {
            Ok((store, result)) => {
                self.store = Some(store);
                result
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => self.store_ok(),
            Err(e) => {
                self.board.node_save_failed();
                self.store_failed("flushing history", e);
            }
        }
        for item in std::mem::take(&mut self.backlog) {
            match item {
                Backlogged::Probe(target, node, obs) => {
                    if let Some(store) = self.store.as_mut() {
                        store.record_probe(target, node, &obs);
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
                let wanted: std::collections::HashSet<&str> =
                    new.targets.iter().map(|t| t.name.as_str()).collect();
                let removed: Vec<(String, Option<String>)> = self
                    .targets
                    .iter()
                    .filter(|(name, _)| !wanted.contains(name.as_str()))
                    .cloned()
                    .collect();
                drop(wanted);
                for (name, group) in &removed {
                    self.metrics.remove_target(name, group.as_deref());
                }
                let events = self.board.reconfigure(targets, groups, now_unix());
                self.board
                    .set_time_zone(new.time_zone.unwrap_or(chrono_tz::UTC));
                scheduler.apply(&new.targets);
                let keep = (self.cfg.store_path.clone(), self.cfg.listen);
                let mut new = new;
                self.targets = take_targets(&mut new);
                self.cfg = new;
                (self.cfg.store_path, self.cfg.listen) = keep;
                self.events(events);
                self.dirty = true;
                tracing::info!(targets = self.targets.len(), "config reloaded");
            }
            Err(e) => tracing::error!("config reload refused, keeping the running config:\n{e}"),
        }
    }
}

/// The alerts that fire according to a restored board: nodes down, groups below quorum.
fn restored_alerts(snap: &Snapshot, source: &str) -> Vec<sipwatch_alerting::Alert> {
    use super::model::{GroupState, StateChange};
    let mut events = Vec::new();
    for t in &snap.targets {
        for n in t.nodes.iter().filter(|n| n.state == NodeState::Down) {
            events.push(BoardEvent::Changed(StateChange {
                at: n.since,
                target: t.name.clone(),
                node: n.node.clone(),
                group: t.group.clone(),
                from: NodeState::Up,
                to: NodeState::Down,
                reason: n
                    .last
                    .as_ref()
                    .map(|o| o.reason.clone())
                    .unwrap_or_else(|| "down before the restart".into()),
                notify: !t.in_maintenance,
            }));
        }
    }
    for g in snap.groups.iter().filter(|g| g.state == GroupState::Down) {
        events.push(BoardEvent::GroupChanged {
            at: snap.generated_at,
            group: g.name.clone(),
            from: GroupState::Up,
            to: GroupState::Down,
            serving: g.serving,
            min_up: g.min_up,
            notify: !g.in_maintenance,
        });
    }
    events
        .iter()
        .filter_map(|e| super::alert_rules::board_alert(e, source))
        .collect()
}

fn log_event(e: &BoardEvent) {
    match e {
        BoardEvent::Changed(c) => tracing::info!(
            target = %c.target, node = %c.node, from = c.from.as_str(), to = c.to.as_str(),
            notify = c.notify, reason = %sipwatch_probes::text::escape_control(&c.reason), "node state changed"
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

/// Whether `w` is open at `now`, evaluated in `[status] time_zone` (else the machine's local time).
fn window_open(cfg: &DaemonConfig, w: &MaintenanceWindow, now: UnixTime) -> bool {
    let utc = chrono::DateTime::from_timestamp(now.floor() as i64, 0).unwrap_or_default();
    match cfg.time_zone {
        Some(zone) => w.calendar.in_window(&utc.with_timezone(&zone), w.duration),
        None => w
            .calendar
            .in_window(&utc.with_timezone(&chrono::Local), w.duration),
    }
}

/// Every maintenance window: in progress (with its start) or its next occurrence, soonest first.
pub fn scheduled_maintenances(cfg: &DaemonConfig, now: UnixTime) -> Vec<MaintenanceView> {
    let utc = chrono::DateTime::from_timestamp(now.floor() as i64, 0).unwrap_or_default();
    let mut out: Vec<MaintenanceView> = cfg
        .maintenance
        .iter()
        .filter_map(|w| {
            let length = chrono::Duration::from_std(w.duration).ok()?;
            let in_progress = window_open(cfg, w, now);
            // The window that is open now began within `length` before now.
            let from = if in_progress { utc - length } else { utc };
            let start = match cfg.time_zone {
                Some(zone) => w
                    .calendar
                    .next_from(&from.with_timezone(&zone))?
                    .timestamp(),
                None => w
                    .calendar
                    .next_from(&from.with_timezone(&chrono::Local))?
                    .timestamp(),
            } as f64;
            Some(MaintenanceView {
                schedule: w.calendar.as_str().to_string(),
                starts_at: start,
                ends_at: start + w.duration.as_secs_f64(),
                in_progress,
                targets: w.targets.clone(),
                groups: w.groups.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.starts_at.total_cmp(&b.starts_at));
    out
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
    board.set_time_zone(cfg.time_zone.unwrap_or(chrono_tz::UTC));

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
    let lazy = (!cfg.store_path.as_os_str().is_empty()).then(|| {
        Arc::new(LazyHistory {
            path: cfg.store_path.clone(),
            reader: std::sync::Mutex::new(None),
        })
    });
    let history: Arc<dyn History> = match &lazy {
        Some(l) => l.clone(),
        None => Arc::new(NoHistory("no store configured".into())),
    };

    // Alerting: a durable outbox for the configured receivers.
    let outbox = if cfg.alerting.receiver.is_empty() {
        tracing::info!("no [alerting] receivers: alerts are only logged");
        None
    } else {
        let notifiers = sipwatch_alerting::build(&cfg.alerting.receiver)
            .map_err(|e| anyhow::anyhow!("[alerting]: {e}"))?;
        let path = cfg.outbox_path();
        let legacy = cfg
            .store_path
            .parent()
            .unwrap_or(Path::new("."))
            .join("outbox.db");
        if cfg.alerting.outbox.is_none() && legacy.exists() && !path.exists() {
            tracing::warn!(legacy = %legacy.display(), outbox = %path.display(),
                "an outbox.db from an older sipwatch is next to the store; this daemon now uses \
                 an outbox named after its store; to send what is still pending in the old one, \
                 set [alerting] outbox to the old path");
        }
        let outbox = Outbox::open(&path, notifiers, OutboxOptions::default())
            .with_context(|| format!("cannot open the alert outbox {}", path.display()))?;
        tokio::spawn(outbox.clone().run(shutdown.clone()));
        Some(outbox)
    };
    let source = cfg
        .alerting
        .source
        .clone()
        .unwrap_or_else(sipwatch_alerting::host_name);
    let stored_silences = match &store {
        Some(store) => store
            .load_silences(now_unix(), 86_400.0)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read the saved silences; starting without them");
                Vec::new()
            }),
        None => Vec::new(),
    };
    let paging = Paging::new(
        &cfg.alerting,
        outbox.clone(),
        source.clone(),
        stored_silences,
    )
    .map_err(|e| anyhow::anyhow!("[alerting]: {e}"))?;
    let api_token = match &cfg.alerting.api_token_file {
        Some(path) => Some(
            sipwatch_alerting::Secret::from_file(path)
                .map_err(|e| anyhow::anyhow!("[alerting] api_token_file: {e}"))?,
        ),
        None => None,
    };
    let paging = paging.with_ack_key(api_token.clone());
    let (control_tx, mut control_rx) = mpsc::channel::<ControlMsg>(64);
    let control_api = ControlApi {
        token: api_token,
        tx: control_tx,
        outbox: outbox.clone(),
        source: source.clone(),
        url: cfg.alerting.url.clone(),
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
        page_history: Default::default(),
        agents: intake,
    })
    .merge(super::http::alert_control::routes(control_api));
    let http = serve_http(listener, app, shutdown.clone())?;

    let (tx, mut rx) = mpsc::channel::<SchedulerMsg>(4096);
    let mut scheduler = Scheduler::new(cfg.udp_sockets, cfg.max_in_flight, tx).await?;
    scheduler.apply(&cfg.targets);
    tracing::info!(
        targets = cfg.targets.len(),
        groups = cfg.groups.len(),
        "probing"
    );
    let mut cfg = cfg;
    let targets = take_targets(&mut cfg);

    let mut task = StateTask {
        paging,
        source,
        alerting_view: Default::default(),
        silent_agents: Default::default(),
        agents: Default::default(),
        outbox_problem: None,
        leases: super::leases::LeaseBook::open(super::leases::LeaseBook::path_for_store(
            &cfg.store_path,
        )),
        store_watch: store.as_ref().map(|_| StoreWatch::new(&cfg.store_path)),
        store_lost: None,
        store_corrupt: None,
        history: lazy,
        cfg,
        targets,
        board,
        store,
        flushing: None,
        backlog: Vec::new(),
        store_error,
        metrics,
        snapshot_tx,
        metrics_view: None,
        dirty: true,
    };
    task.maintenance();
    let restored = restored_alerts(&task.board.snapshot(now_unix()), &task.source);
    task.paging.restore(now_unix(), restored);
    if let Some(store) = task.store.as_ref() {
        match store.load_acks() {
            Ok(acks) => {
                let kept = task.paging.restore_acks(acks);
                if let Err(e) = store.forget_acks_except(&kept) {
                    tracing::warn!(error = %e, "cannot prune old acknowledgements");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the saved acknowledgements"),
        }
    }
    task.publish();

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ticks: u64 = 0;
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    crate::notify::ready(&format!(
        "probing {} targets in {} groups",
        task.targets.len(),
        task.cfg.groups.len()
    ));
    let status_rx = task.snapshot_tx.subscribe();
    crate::notify::spawn_watchdog(
        progress.clone(),
        move || {
            let snap = status_rx.borrow().clone();
            let down = snap
                .targets
                .iter()
                .filter(|t| !t.nodes.iter().any(|n| n.state.is_serving()))
                .count();
            format!(
                "{} targets, {down} down, {} open incidents",
                snap.targets.len(),
                snap.open_incidents.len()
            )
        },
        shutdown.clone(),
    );
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                match msg {
                    SchedulerMsg::Probe(r) => task.probe(*r),
                    SchedulerMsg::Probes(batch) => {
                        for r in batch {
                            task.probe(r);
                        }
                    }
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
                progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if ticks.is_multiple_of(10) {
                    task.maintenance();
                }
                if ticks.is_multiple_of(5) {
                    task.flush_away();
                }
                if ticks.is_multiple_of(3600) {
                    task.prune();
                }
                task.check_outbox();
                task.paging_tick();
                task.check_store_file();
                task.publish();
            }
            back = async { task.flushing.as_mut().expect("guarded").await }, if task.flushing.is_some() => {
                task.store_back(back.map_err(|_| "the flush thread ended".to_string()));
            }
            Some(msg) = agent_rx.recv() => task.agent(msg),
            Some(msg) = control_rx.recv() => task.control(msg),
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
    while let Ok(msg) = rx.try_recv() {
        match msg {
            SchedulerMsg::Probe(r) => task.probe(*r),
            SchedulerMsg::Probes(batch) => batch.into_iter().for_each(|r| task.probe(r)),
            _ => {}
        }
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
    shutdown: watch::Receiver<bool>,
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
                super::http::serve::serve(
                    listener,
                    app,
                    super::http::serve::Limits::default(),
                    Default::default(),
                    shutdown,
                )
                .await;
            })
        })
        .context("cannot start the HTTP thread")
}
