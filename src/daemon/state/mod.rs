//! The board: node, target and group state with hysteresis, flap damping, maintenance and
//! incidents. Pure: observations and configuration go in with the time, [`BoardEvent`]s come out.
//!
//! Inputs, in any order, with `now` never going backwards:
//! [`Board::reconfigure`] (config load/reload), [`Board::set_nodes`] / [`Board::set_dns_error`]
//! (after each DNS resolution), [`Board::observe`] (one probe result), [`Board::set_maintenance`]
//! (which maintenance windows are active) and once at start-up [`Board::restore`]. Every input
//! returns the events it caused; [`Board::snapshot`] renders "now" for the status page and
//! [`Board::records_to_save`] is what the store saves so that a restart resumes where it stopped
//! (the records whose durable state changed, and every record now and then: see [`SaveMode`]).
//!
//! Rules, in short:
//! - A node goes `Down` after `fail` consecutive failures, leaves `Down` after `ok` consecutive
//!   non-failures (to `Up` or `Degraded` after the last one), goes `Up -> Degraded` after `ok`
//!   consecutive warnings and `Degraded -> Up` after `ok` consecutive oks. `Unknown` nodes take the
//!   same thresholds; a change *from* `Unknown` notifies only when the node is found down.
//! - A node that changed state more than `flap_max_changes` times within `flap_window_secs` is
//!   flapping: changes still apply, but `notify` is false until it has been stable for a whole
//!   window. Maintenance holds alerts the same way. When the hold lifts and the state differs from
//!   the last notified one, a catch-up [`StateChange`] (`from` = last notified state) is emitted
//!   with `notify = true`, so the alert layer always ends up with the truth.
//! - Incidents (`target:NAME`, `group:NAME`) always follow the truth, also during maintenance and
//!   flapping: the status page must not lie. A target incident stays open (`identified`) while a
//!   node of the target still flaps, so a flapping node does not open ten incidents.
//! - Targets with no verdict yet (only `Unknown` nodes, not yet resolved) count as serving for group
//!   quorum: a fresh start never opens a group incident before the first probes.
//!
//! Not here: clocks, sockets, DNS, SQL, alert routing (see `store.rs`, the scheduler, `alerting`).
//!
//! Files: this one is the front ([`Board`], its inputs and what it renders); `node` holds one
//! node's hysteresis, flap damping and notify decisions (a change to node hysteresis lives
//! there), `target` a target's nodes, DNS state and quorum verdict, `group` group quorum,
//! `incident` the incident texts, `maintenance` which alerts maintenance holds and `reconcile`
//! what a config load or reload keeps. Tests of the rules: `tests.rs`.

mod group;
mod incident;
mod maintenance;
mod node;
mod reconcile;
mod target;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::model::{
    GroupState, GroupView, Incident, NodeState, Observation, Snapshot, StateChange, UnixTime,
};
use group::{group_status, GroupTracker};
use node::NodeTracker;
pub use node::Thresholds;
use target::TargetTracker;

/// A configured target as the board needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetSpec {
    pub name: String,
    pub uri: String,
    /// `OPTIONS` or `REGISTER`.
    pub method: String,
    pub group: Option<String>,
    pub thresholds: Thresholds,
}

/// A configured group: up while at least `min_up` members serve.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    pub min_up: usize,
}

/// What an input to the board caused. `notify` says whether on-call should hear about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BoardEvent {
    Changed(StateChange),
    GroupChanged {
        at: UnixTime,
        group: String,
        from: GroupState,
        to: GroupState,
        serving: usize,
        min_up: usize,
        notify: bool,
    },
    /// A node started flapping: its further changes are held (notify = false) until it has been
    /// stable for a whole flap window.
    FlapStarted {
        at: UnixTime,
        target: String,
        node: String,
        group: Option<String>,
        /// State changes counted within the window.
        changes: usize,
        notify: bool,
    },
    /// A node has been stable for a whole flap window; `state` is where it settled.
    FlapEnded {
        at: UnixTime,
        target: String,
        node: String,
        group: Option<String>,
        state: NodeState,
        notify: bool,
    },
    /// The target's name started (`error` set) or stopped (`None`) failing to resolve.
    /// `notify` is true when the target has no node to probe at all.
    DnsChanged {
        at: UnixTime,
        target: String,
        group: Option<String>,
        error: Option<String>,
        notify: bool,
    },
    /// A maintenance window started or ended for `target:NAME` or `group:NAME`.
    MaintenanceChanged {
        at: UnixTime,
        key: String,
        active: bool,
    },
    IncidentOpened(Incident),
    IncidentUpdated(Incident),
    IncidentResolved(Incident),
}

/// One node's state as persisted, so that a restart restores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub target: String,
    pub node: String,
    pub transport: String,
    pub state: NodeState,
    pub since: UnixTime,
    pub consecutive_failures: u32,
    /// Consecutive non-failures (ok or warning).
    pub consecutive_successes: u32,
    pub recent_changes: Vec<UnixTime>,
    pub last: Option<Observation>,
    /// Consecutive `ok` observations (moves `Degraded -> Up`).
    #[serde(default)]
    pub consecutive_oks: u32,
    /// Consecutive `warning` observations (moves `Up -> Degraded`).
    #[serde(default)]
    pub consecutive_warnings: u32,
    #[serde(default)]
    pub flapping: bool,
}

/// What a node-state save writes ([`Board::records_to_save`], `Store::save_nodes`).
///
/// The daemon saves every 5 s, but most records change at every probe only in what does not need
/// to survive a crash at once (the last observation, a growing counter), so most saves write only
/// the records whose *durable* state changed ([`SaveMode::Changed`]), and a save of every record
/// ([`SaveMode::All`]) comes every [`FULL_NODE_SAVE_EVERY_SECS`], at clean shutdown, after nodes
/// left the board and after a failed save.
///
/// The rule: a node's record is written by the next save when, since its record was last taken
/// for saving, its `state`, `since`, `flapping` or `recent_changes` changed (a transition, flapping
/// starting or ending, a change leaving the flap window), or one of its four counters
/// (`consecutive_failures`, `_successes`, `_oks`, `_warnings`) went from zero to non-zero or back
/// (a streak started or ended). A counter merely growing within its streak, and `last`, wait for
/// the next full save. Why that is enough to resume correctly: the saved counters are always those
/// of the node's current streak, taken earlier in it, so a restored counter is never above the true
/// one. A restart can delay a transition by the probes since the last full save (and the next
/// `fail` or `ok` probes re-establish it anyway), never complete one early, and it never misses or
/// invents a state change, which is saved within one save interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveMode {
    /// Every node's record: the saved table is replaced, so rows of nodes no longer on the board
    /// go.
    All,
    /// Only the records whose durable state changed; the other rows stay as they are.
    Changed,
}

/// How often every node's full record (last observation and exact counters) is saved, in
/// seconds. After a crash a node's counters and last observation may be up to this old; its state
/// transitions at most one 5 s save old. Probes re-establish the counters within
/// `fail_threshold x interval` anyway, and saving everything every 5 s cost about 8 % of the
/// daemon's CPU at 2,000 targets x 1 s (every record copied, encoded and rewritten).
pub const FULL_NODE_SAVE_EVERY_SECS: f64 = 60.0;

/// The daemon's picture of every target, node and group. See the module docs for the rules.
#[derive(Debug)]
pub struct Board {
    page_name: String,
    /// The zone incident texts give times in (`[status] time_zone`; UTC by default).
    zone: chrono_tz::Tz,
    targets: Vec<TargetTracker>,
    /// FxHash: looked up on every probe; the names come from the config.
    target_index: rustc_hash::FxHashMap<String, usize>,
    groups: Vec<GroupTracker>,
    group_index: HashMap<String, usize>,
    /// Open incidents by key (`target:NAME`, `group:NAME`).
    incidents: BTreeMap<String, Incident>,
    next_incident_id: i64,
    targets_in_maintenance: HashSet<String>,
    groups_in_maintenance: HashSet<String>,
    /// Events caused by inputs that cannot return them (`new`, `restore`), handed out with the
    /// next input's events.
    pending: Vec<BoardEvent>,
    /// The next save writes every record: nodes left the board (their rows must go), a save
    /// failed (the records it took must be written again), or nothing was saved yet.
    full_save_due: bool,
    /// When every record was last taken for saving.
    last_full_save: Option<UnixTime>,
}

impl Board {
    /// A board for these targets and groups; nodes arrive with [`Board::set_nodes`].
    pub fn new(page_name: String, targets: Vec<TargetSpec>, groups: Vec<GroupSpec>) -> Board {
        let mut board = Board {
            page_name,
            zone: chrono_tz::UTC,
            targets: Vec::new(),
            target_index: Default::default(),
            groups: Vec::new(),
            group_index: HashMap::new(),
            incidents: BTreeMap::new(),
            next_incident_id: 1,
            targets_in_maintenance: HashSet::new(),
            groups_in_maintenance: HashSet::new(),
            pending: Vec::new(),
            full_save_due: true,
            last_full_save: None,
        };
        // Nothing has happened yet: no time, no events (a group that can never reach quorum opens
        // its incident at its members' first input).
        board.apply_config(targets, groups, 0.0, false);
        board
    }

    /// One probe result of one node; `obs.at` is the time. Results for targets or nodes the board
    /// no longer knows (a reload or a DNS change raced the probe) are ignored.
    pub fn observe(&mut self, target: &str, node: &str, obs: Observation) -> Vec<BoardEvent> {
        let mut ev = std::mem::take(&mut self.pending);
        let Some(&ti) = self.target_index.get(target) else {
            return ev;
        };
        let now = obs.at;
        let in_maintenance = self.target_in_maintenance(ti);
        let t = &mut self.targets[ti];
        let Some(n) = t.nodes.iter_mut().find(|n| n.node == node) else {
            return ev;
        };
        n.observe(&t.spec, obs, in_maintenance, &mut ev);
        self.after_target_change(ti, now, &mut ev);
        ev
    }

    /// Start-up: puts back the node states, open incidents and incident counter saved by the
    /// store. Nodes of targets no longer configured are ignored; incidents whose target or group
    /// is gone are resolved (with the next input's events). Emits no state change: a node that was
    /// `Down` stays `Down` until it earns `ok` successes.
    pub fn restore(
        &mut self,
        nodes: Vec<NodeRecord>,
        open_incidents: Vec<Incident>,
        next_incident_id: i64,
    ) {
        for rec in nodes {
            let Some(&ti) = self.target_index.get(&rec.target) else {
                continue;
            };
            let t = &mut self.targets[ti];
            t.changed();
            let tracker = NodeTracker::from_record(rec);
            match t.nodes.iter_mut().find(|n| n.node == tracker.node) {
                Some(existing) => *existing = tracker,
                None => t.nodes.push(tracker),
            }
        }
        let max_id = open_incidents.iter().map(|i| i.id).max().unwrap_or(0);
        self.next_incident_id = self.next_incident_id.max(next_incident_id).max(max_id + 1);
        // restore has no clock: the latest time the saved state mentions stands in for "now".
        let now = open_incidents
            .iter()
            .flat_map(|i| std::iter::once(i.opened_at).chain(i.updates.iter().map(|u| u.at)))
            .chain(self.targets.iter().flat_map(|t| {
                t.nodes
                    .iter()
                    .map(|n| n.last.as_ref().map_or(n.since, |o| o.at.max(n.since)))
            }))
            .fold(0.0_f64, f64::max);
        let mut ev = std::mem::take(&mut self.pending);
        for inc in open_incidents {
            if inc.resolved_at.is_some() {
                continue;
            }
            let known = match inc.key.split_once(':') {
                Some(("target", name)) => self.target_index.contains_key(name),
                Some(("group", name)) => self.group_index.contains_key(name),
                _ => false,
            };
            let key = inc.key.clone();
            self.incidents.insert(key.clone(), inc);
            if !known {
                self.resolve_incident(&key, now, "No longer in the configuration.", &mut ev);
            }
        }
        // Groups take the restored state silently; incidents are reconciled with it (an incident
        // that the previous run could not save is opened or resolved now).
        for gi in 0..self.groups.len() {
            let (state, _) = self.group_quorum(&self.groups[gi].spec, &self.groups[gi].members);
            self.groups[gi].state = state;
            self.groups[gi].notified = state;
        }
        for ti in 0..self.targets.len() {
            self.sync_target_incident(ti, now, &mut ev);
        }
        for gi in 0..self.groups.len() {
            self.sync_group_incident(gi, now, &mut ev);
        }
        self.pending = ev;
    }

    /// Every node's state (what a save of every record writes).
    pub fn node_records(&self) -> Vec<NodeRecord> {
        self.targets
            .iter()
            .flat_map(|t| t.nodes.iter().map(|n| n.record(&t.spec.name)))
            .collect()
    }

    /// The records the save at `now` writes, and how: [`SaveMode::All`] when `wanted` says so, a
    /// full save is due (every [`FULL_NODE_SAVE_EVERY_SECS`], after nodes left the board, after
    /// a failed save) or the clock went back; otherwise [`SaveMode::Changed`] with only the
    /// records whose durable state changed (the rule is on [`SaveMode`]). The records count as
    /// saved from now on: if writing them fails, call [`Board::node_save_failed`].
    pub fn records_to_save(
        &mut self,
        now: UnixTime,
        wanted: SaveMode,
    ) -> (SaveMode, Vec<NodeRecord>) {
        let full = wanted == SaveMode::All
            || self.full_save_due
            || self
                .last_full_save
                .is_none_or(|at| now < at || now - at >= FULL_NODE_SAVE_EVERY_SECS);
        if full {
            self.full_save_due = false;
            self.last_full_save = Some(now);
        }
        let mut records = if full {
            Vec::with_capacity(self.targets.iter().map(|t| t.nodes.len()).sum())
        } else {
            Vec::new()
        };
        for t in &mut self.targets {
            for n in &mut t.nodes {
                if full || n.unsaved {
                    n.unsaved = false;
                    records.push(n.record(&t.spec.name));
                }
            }
        }
        let mode = if full {
            SaveMode::All
        } else {
            SaveMode::Changed
        };
        (mode, records)
    }

    /// The records last taken by [`Board::records_to_save`] were not written: the next save
    /// writes every record.
    pub fn node_save_failed(&mut self) {
        self.full_save_due = true;
    }

    /// The id the next incident will get (the store keeps it too, from the incidents it saw).
    pub fn next_incident_id(&self) -> i64 {
        self.next_incident_id
    }

    /// Incident texts give times in `zone` (`down since 03:12 CET, 14 min`).
    pub fn set_time_zone(&mut self, zone: chrono_tz::Tz) {
        self.zone = zone;
    }

    /// "Now" for the status page and metrics. `store_error` is left `None` for the caller to set.
    pub fn snapshot(&self, now: UnixTime) -> Snapshot {
        let targets = self
            .targets
            .iter()
            .enumerate()
            .map(|(ti, t)| t.view(self.target_in_maintenance(ti)))
            .collect();
        let groups = self
            .groups
            .iter()
            .map(|g| {
                let (state, serving) = self.group_quorum(&g.spec, &g.members);
                let in_maintenance = self.groups_in_maintenance.contains(&g.spec.name);
                GroupView {
                    name: g.spec.name.clone(),
                    min_up: g.spec.min_up,
                    members: g
                        .members
                        .iter()
                        .map(|&i| self.targets[i].spec.name.clone())
                        .collect(),
                    serving,
                    state,
                    status: group_status(state, in_maintenance),
                    in_maintenance,
                }
            })
            .collect();
        let mut open_incidents: Vec<Incident> = self.incidents.values().cloned().collect();
        open_incidents.sort_by_key(|i| std::cmp::Reverse(i.id));
        Snapshot {
            generated_at: now,
            page_name: self.page_name.clone(),
            targets,
            groups,
            open_incidents,
            store_error: None,
            agents: Vec::new(),
            time_zone: self.zone.name().to_string(),
            scheduled_maintenances: Vec::new(),
            alerting: Default::default(),
        }
    }

    fn after_target_change(&mut self, ti: usize, now: UnixTime, ev: &mut Vec<BoardEvent>) {
        self.targets[ti].changed();
        self.sync_target_incident(ti, now, ev);
        if let Some(gi) = self.targets[ti]
            .spec
            .group
            .as_ref()
            .and_then(|g| self.group_index.get(g))
            .copied()
        {
            self.evaluate_group(gi, now, ev);
        }
    }
}

#[cfg(test)]
mod tests;
