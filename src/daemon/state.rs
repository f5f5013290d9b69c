//! The board: node, target and group state with hysteresis, flap damping, maintenance and
//! incidents. Pure: observations and configuration go in with the time, [`BoardEvent`]s come out.
//!
//! Inputs, in any order, with `now` never going backwards:
//! [`Board::reconfigure`] (config load/reload), [`Board::set_nodes`] / [`Board::set_dns_error`]
//! (after each DNS resolution), [`Board::observe`] (one probe result), [`Board::set_maintenance`]
//! (which maintenance windows are active) and once at start-up [`Board::restore`]. Every input
//! returns the events it caused; [`Board::snapshot`] renders "now" for the status page and
//! [`Board::node_records`] is what the store saves so that a restart resumes where it stopped.
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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::model::{
    ComponentStatus, GroupState, GroupView, Incident, IncidentUpdate, NodeState, NodeView,
    Observation, Snapshot, StateChange, TargetView, UnixTime,
};

/// Hysteresis and flap damping of one target (config `[[target]]`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Consecutive failures that make a node `Down`.
    pub fail: u32,
    /// Consecutive successes (or warnings, or oks) that move a node out of its state.
    pub ok: u32,
    pub flap_window_secs: f64,
    /// A node is flapping when it changed state more than this many times within the window.
    pub flap_max_changes: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            fail: 3,
            ok: 2,
            flap_window_secs: 600.0,
            flap_max_changes: 4,
        }
    }
}

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

/// The daemon's picture of every target, node and group. See the module docs for the rules.
#[derive(Debug)]
pub struct Board {
    page_name: String,
    /// The zone incident texts give times in (`[status] time_zone`; UTC by default).
    zone: chrono_tz::Tz,
    targets: Vec<TargetTracker>,
    target_index: HashMap<String, usize>,
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
}

#[derive(Debug)]
struct TargetTracker {
    spec: TargetSpec,
    nodes: Vec<NodeTracker>,
    dns_error: Option<String>,
    dns_notified: bool,
}

#[derive(Debug)]
struct NodeTracker {
    node: String,
    transport: String,
    state: NodeState,
    since: UnixTime,
    consecutive_failures: u32,
    consecutive_successes: u32,
    consecutive_oks: u32,
    consecutive_warnings: u32,
    /// Times of state changes within the last flap window (changes from `Unknown` excluded).
    recent_changes: VecDeque<UnixTime>,
    flapping: bool,
    /// The state on-call last heard about (or the first verdict, which is never notified).
    notified: NodeState,
    last: Option<Observation>,
}

#[derive(Debug)]
struct GroupTracker {
    spec: GroupSpec,
    /// Indices into `Board::targets`.
    members: Vec<usize>,
    state: GroupState,
    notified: GroupState,
}

/// A target's contribution to its group's quorum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Serving,
    NotServing,
    /// No verdict yet: counted as serving so that start-up never breaks a quorum.
    Pending,
}

impl NodeTracker {
    fn new(node: String, transport: String, now: UnixTime) -> Self {
        NodeTracker {
            node,
            transport,
            state: NodeState::Unknown,
            since: now,
            consecutive_failures: 0,
            consecutive_successes: 0,
            consecutive_oks: 0,
            consecutive_warnings: 0,
            recent_changes: VecDeque::new(),
            flapping: false,
            notified: NodeState::Unknown,
            last: None,
        }
    }

    fn from_record(rec: NodeRecord) -> Self {
        NodeTracker {
            node: rec.node,
            transport: rec.transport,
            state: rec.state,
            since: rec.since,
            consecutive_failures: rec.consecutive_failures,
            consecutive_successes: rec.consecutive_successes,
            consecutive_oks: rec.consecutive_oks,
            consecutive_warnings: rec.consecutive_warnings,
            recent_changes: rec.recent_changes.into_iter().collect(),
            flapping: rec.flapping,
            // What was persisted was either notified or deliberately held; a restart must not
            // replay it.
            notified: rec.state,
            last: rec.last,
        }
    }

    fn record(&self, target: &str) -> NodeRecord {
        NodeRecord {
            target: target.to_string(),
            node: self.node.clone(),
            transport: self.transport.clone(),
            state: self.state,
            since: self.since,
            consecutive_failures: self.consecutive_failures,
            consecutive_successes: self.consecutive_successes,
            recent_changes: self.recent_changes.iter().copied().collect(),
            last: self.last.clone(),
            consecutive_oks: self.consecutive_oks,
            consecutive_warnings: self.consecutive_warnings,
            flapping: self.flapping,
        }
    }

    fn view(&self) -> NodeView {
        NodeView {
            node: self.node.clone(),
            transport: self.transport.clone(),
            state: self.state,
            since: self.since,
            flapping: self.flapping,
            consecutive_failures: self.consecutive_failures,
            consecutive_successes: self.consecutive_successes,
            last: self.last.clone(),
        }
    }

    /// Counts the observation and returns the hysteresis transition it completes, if any, with
    /// the reason to show.
    fn count(&mut self, obs: &Observation, th: &Thresholds) -> Option<(NodeState, String)> {
        let fail = th.fail.max(1);
        let ok = th.ok.max(1);
        if obs.is_failure() {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_successes = 0;
            self.consecutive_oks = 0;
            self.consecutive_warnings = 0;
        } else {
            self.consecutive_failures = 0;
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            if obs.is_ok() {
                self.consecutive_oks = self.consecutive_oks.saturating_add(1);
                self.consecutive_warnings = 0;
            } else {
                self.consecutive_warnings = self.consecutive_warnings.saturating_add(1);
                self.consecutive_oks = 0;
            }
        }
        let what = describe(obs);
        match self.state {
            NodeState::Unknown | NodeState::Up | NodeState::Degraded
                if obs.is_failure() && self.consecutive_failures >= fail =>
            {
                let n = self.consecutive_failures;
                Some((
                    NodeState::Down,
                    format!("{n} consecutive failures; last: {what}"),
                ))
            }
            NodeState::Unknown | NodeState::Down
                if !obs.is_failure() && self.consecutive_successes >= ok =>
            {
                let n = self.consecutive_successes;
                let to = if obs.is_ok() {
                    NodeState::Up
                } else {
                    NodeState::Degraded
                };
                Some((to, format!("{n} consecutive answers; last: {what}")))
            }
            NodeState::Up if obs.is_warning() && self.consecutive_warnings >= ok => {
                let n = self.consecutive_warnings;
                Some((
                    NodeState::Degraded,
                    format!("{n} consecutive warnings; last: {what}"),
                ))
            }
            NodeState::Degraded if obs.is_ok() && self.consecutive_oks >= ok => {
                let n = self.consecutive_oks;
                Some((NodeState::Up, format!("{n} consecutive oks; last: {what}")))
            }
            _ => None,
        }
    }

    /// Forgets changes that left the flap window; ends flapping when none are left.
    fn expire_changes(&mut self, now: UnixTime, th: &Thresholds) -> bool {
        let window = th.flap_window_secs.max(0.0);
        while self
            .recent_changes
            .front()
            .is_some_and(|&t| t <= now - window)
        {
            self.recent_changes.pop_front();
        }
        if self.flapping && self.recent_changes.is_empty() {
            self.flapping = false;
            return true;
        }
        false
    }
}

/// "timeout", "error_response 503 Service Unavailable in 12 ms", for reasons and incident bodies.
fn describe(obs: &Observation) -> String {
    let mut s = obs.result.clone();
    if let Some(code) = obs.code {
        s.push_str(&format!(" {code}"));
    }
    if !obs.reason.is_empty() {
        s.push_str(&format!(" ({})", obs.reason));
    }
    if let Some(rtt) = obs.rtt_ms {
        s.push_str(&format!(" in {rtt:.0} ms"));
    }
    s
}

impl TargetTracker {
    fn new(spec: TargetSpec) -> Self {
        TargetTracker {
            spec,
            nodes: Vec::new(),
            dns_error: None,
            dns_notified: false,
        }
    }

    fn dns_outage(&self) -> bool {
        self.dns_error.is_some() && self.nodes.is_empty()
    }

    fn verdict(&self) -> Verdict {
        if self.nodes.iter().any(|n| n.state.is_serving()) {
            Verdict::Serving
        } else if self.dns_outage() {
            Verdict::NotServing
        } else if self.nodes.is_empty() || self.nodes.iter().any(|n| n.state == NodeState::Unknown)
        {
            Verdict::Pending
        } else {
            Verdict::NotServing
        }
    }

    fn status(&self, in_maintenance: bool) -> ComponentStatus {
        let down = self
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Down)
            .count();
        if in_maintenance {
            ComponentStatus::UnderMaintenance
        } else if self.dns_outage() || (!self.nodes.is_empty() && down == self.nodes.len()) {
            ComponentStatus::MajorOutage
        } else if down > 0 {
            ComponentStatus::PartialOutage
        } else if self
            .nodes
            .iter()
            .any(|n| n.state == NodeState::Degraded || n.flapping)
        {
            ComponentStatus::DegradedPerformance
        } else {
            ComponentStatus::Operational
        }
    }
}

impl Board {
    /// A board for these targets and groups; nodes arrive with [`Board::set_nodes`].
    pub fn new(page_name: String, targets: Vec<TargetSpec>, groups: Vec<GroupSpec>) -> Board {
        let mut board = Board {
            page_name,
            zone: chrono_tz::UTC,
            targets: Vec::new(),
            target_index: HashMap::new(),
            groups: Vec::new(),
            group_index: HashMap::new(),
            incidents: BTreeMap::new(),
            next_incident_id: 1,
            targets_in_maintenance: HashSet::new(),
            groups_in_maintenance: HashSet::new(),
            pending: Vec::new(),
        };
        // Nothing has happened yet: no time, no events (a group that can never reach quorum opens
        // its incident at its members' first input).
        board.apply_config(targets, groups, 0.0, false);
        board
    }

    /// Config reload: keeps trackers (state, counters) of targets whose name and URI are unchanged,
    /// drops removed ones (resolving their incidents) and adds new ones (without nodes until
    /// [`Board::set_nodes`]). Groups keep their state when their name is unchanged.
    pub fn reconfigure(
        &mut self,
        targets: Vec<TargetSpec>,
        groups: Vec<GroupSpec>,
        now: UnixTime,
    ) -> Vec<BoardEvent> {
        self.apply_config(targets, groups, now, true)
    }

    fn apply_config(
        &mut self,
        targets: Vec<TargetSpec>,
        groups: Vec<GroupSpec>,
        now: UnixTime,
        sync: bool,
    ) -> Vec<BoardEvent> {
        let mut ev = std::mem::take(&mut self.pending);
        let mut old: HashMap<String, TargetTracker> = self
            .targets
            .drain(..)
            .map(|t| (t.spec.name.clone(), t))
            .collect();
        let mut new_targets = Vec::with_capacity(targets.len());
        let mut seen = HashSet::new();
        for spec in targets {
            if !seen.insert(spec.name.clone()) {
                continue; // duplicate names are a config error reported by check-config
            }
            match old.remove(&spec.name) {
                Some(mut kept) if kept.spec.uri == spec.uri => {
                    kept.spec = spec;
                    new_targets.push(kept);
                }
                Some(_replaced) => {
                    let key = format!("target:{}", spec.name);
                    self.resolve_incident(
                        &key,
                        now,
                        "The target's URI changed; watching the new one.",
                        &mut ev,
                    );
                    new_targets.push(TargetTracker::new(spec));
                }
                None => new_targets.push(TargetTracker::new(spec)),
            }
        }
        for name in old.keys() {
            let key = format!("target:{name}");
            self.resolve_incident(
                &key,
                now,
                "The target was removed from the configuration.",
                &mut ev,
            );
        }
        self.targets = new_targets;
        self.target_index = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.spec.name.clone(), i))
            .collect();

        let mut old_groups: HashMap<String, GroupTracker> = self
            .groups
            .drain(..)
            .map(|g| (g.spec.name.clone(), g))
            .collect();
        let mut new_groups = Vec::with_capacity(groups.len());
        let mut seen = HashSet::new();
        for spec in groups {
            if !seen.insert(spec.name.clone()) {
                continue;
            }
            let members: Vec<usize> = self
                .targets
                .iter()
                .enumerate()
                .filter(|(_, t)| t.spec.group.as_deref() == Some(spec.name.as_str()))
                .map(|(i, _)| i)
                .collect();
            let tracker = match old_groups.remove(&spec.name) {
                Some(mut g) => {
                    g.spec = spec;
                    g.members = members;
                    g
                }
                None => {
                    // A new group starts where its members are, without an event.
                    let (state, _) = self.group_quorum(&spec, &members);
                    GroupTracker {
                        spec,
                        members,
                        state,
                        notified: state,
                    }
                }
            };
            new_groups.push(tracker);
        }
        for name in old_groups.keys() {
            let key = format!("group:{name}");
            self.resolve_incident(
                &key,
                now,
                "The group was removed from the configuration.",
                &mut ev,
            );
        }
        self.groups = new_groups;
        self.group_index = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.spec.name.clone(), i))
            .collect();
        self.targets_in_maintenance
            .retain(|t| self.target_index.contains_key(t));
        self.groups_in_maintenance
            .retain(|g| self.group_index.contains_key(g));
        if !sync {
            return ev;
        }
        for ti in 0..self.targets.len() {
            self.sync_target_incident(ti, now, &mut ev);
        }
        for gi in 0..self.groups.len() {
            self.evaluate_group(gi, now, &mut ev);
        }
        ev
    }

    /// After DNS: the target's nodes are now these. New ones start `Unknown`, vanished ones are
    /// dropped (with their state), known ones keep theirs. Clears nothing about DNS errors: call
    /// [`Board::set_dns_error`] with `None` when the resolution succeeded.
    pub fn set_nodes(
        &mut self,
        target: &str,
        nodes: &[(String, String)],
        now: UnixTime,
    ) -> Vec<BoardEvent> {
        let mut ev = std::mem::take(&mut self.pending);
        let Some(&ti) = self.target_index.get(target) else {
            return ev;
        };
        let t = &mut self.targets[ti];
        let mut old: HashMap<String, NodeTracker> =
            t.nodes.drain(..).map(|n| (n.node.clone(), n)).collect();
        for (addr, transport) in nodes {
            if t.nodes.iter().any(|n| &n.node == addr) {
                continue;
            }
            let tracker = match old.remove(addr) {
                Some(n) if &n.transport == transport => n,
                _ => NodeTracker::new(addr.clone(), transport.clone(), now),
            };
            t.nodes.push(tracker);
        }
        // Kept for the target's lifetime: no spare capacity (10,000 targets x 3 unused slots).
        t.nodes.shrink_to_fit();
        self.after_target_change(ti, now, &mut ev);
        ev
    }

    /// The target's name failed to resolve (`Some(error)`) or resolves again (`None`). Known nodes
    /// are kept (and still probed by the scheduler if it wishes); with no node at all the target is
    /// a major outage.
    pub fn set_dns_error(
        &mut self,
        target: &str,
        error: Option<String>,
        now: UnixTime,
    ) -> Vec<BoardEvent> {
        let mut ev = std::mem::take(&mut self.pending);
        let Some(&ti) = self.target_index.get(target) else {
            return ev;
        };
        let in_maintenance = self.target_in_maintenance(ti);
        let t = &mut self.targets[ti];
        let toggled = t.dns_error.is_some() != error.is_some();
        t.dns_error = error;
        if toggled {
            let notify = if t.dns_error.is_some() {
                t.nodes.is_empty() && !in_maintenance
            } else {
                t.dns_notified
            };
            t.dns_notified = t.dns_error.is_some() && notify;
            ev.push(BoardEvent::DnsChanged {
                at: now,
                target: t.spec.name.clone(),
                group: t.spec.group.clone(),
                error: t.dns_error.clone(),
                notify,
            });
        }
        self.after_target_change(ti, now, &mut ev);
        ev
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
        let Some(ni) = t.nodes.iter().position(|n| n.node == node) else {
            return ev;
        };
        let th = t.spec.thresholds;
        let n = &mut t.nodes[ni];
        let transition = n.count(&obs, &th);
        n.last = Some(obs);
        if n.expire_changes(now, &th) {
            ev.push(BoardEvent::FlapEnded {
                at: now,
                target: t.spec.name.clone(),
                node: n.node.clone(),
                group: t.spec.group.clone(),
                state: n.state,
                notify: !in_maintenance,
            });
            // On-call hears where the node settled before anything new happens to it.
            release_held_node(t, ni, in_maintenance, now, "flapping ended", &mut ev);
        }
        if let Some((to, reason)) = transition {
            let n = &mut t.nodes[ni];
            let from = n.state;
            n.state = to;
            n.since = now;
            if from != NodeState::Unknown {
                n.recent_changes.push_back(now);
                if !n.flapping && n.recent_changes.len() > th.flap_max_changes as usize {
                    n.flapping = true;
                    ev.push(BoardEvent::FlapStarted {
                        at: now,
                        target: t.spec.name.clone(),
                        node: n.node.clone(),
                        group: t.spec.group.clone(),
                        changes: n.recent_changes.len(),
                        notify: !in_maintenance,
                    });
                }
            }
            // From Unknown only a node found dead notifies (a daemon that starts while a node is
            // down must page); a node found healthy has nothing to tell.
            let notify = (from != NodeState::Unknown || to == NodeState::Down)
                && !n.flapping
                && !in_maintenance;
            if notify || from == NodeState::Unknown {
                n.notified = to;
            }
            ev.push(BoardEvent::Changed(StateChange {
                at: now,
                target: t.spec.name.clone(),
                node: n.node.clone(),
                group: t.spec.group.clone(),
                from,
                to,
                reason,
                notify,
            }));
        }
        self.after_target_change(ti, now, &mut ev);
        ev
    }

    /// Which targets and groups are inside a maintenance window now. A target is in maintenance
    /// when it is listed or its group is. Probing and state go on; alerts are held and released
    /// (catch-up changes) when the window ends.
    pub fn set_maintenance(
        &mut self,
        targets_in: &[String],
        groups_in: &[String],
        now: UnixTime,
    ) -> Vec<BoardEvent> {
        let mut ev = std::mem::take(&mut self.pending);
        let new_targets: HashSet<String> = targets_in
            .iter()
            .filter(|t| self.target_index.contains_key(*t))
            .cloned()
            .collect();
        let new_groups: HashSet<String> = groups_in
            .iter()
            .filter(|g| self.group_index.contains_key(*g))
            .cloned()
            .collect();
        for t in &self.targets {
            let name = &t.spec.name;
            let was = self.targets_in_maintenance.contains(name);
            let is = new_targets.contains(name);
            if was != is {
                ev.push(BoardEvent::MaintenanceChanged {
                    at: now,
                    key: format!("target:{name}"),
                    active: is,
                });
            }
        }
        for g in &self.groups {
            let name = &g.spec.name;
            let was = self.groups_in_maintenance.contains(name);
            let is = new_groups.contains(name);
            if was != is {
                ev.push(BoardEvent::MaintenanceChanged {
                    at: now,
                    key: format!("group:{name}"),
                    active: is,
                });
            }
        }
        self.targets_in_maintenance = new_targets;
        self.groups_in_maintenance = new_groups;
        for ti in 0..self.targets.len() {
            let in_maintenance = self.target_in_maintenance(ti);
            let t = &mut self.targets[ti];
            for ni in 0..t.nodes.len() {
                release_held_node(t, ni, in_maintenance, now, "maintenance ended", &mut ev);
            }
        }
        for gi in 0..self.groups.len() {
            self.evaluate_group(gi, now, &mut ev);
        }
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

    /// Every node's state, for the store to save.
    pub fn node_records(&self) -> Vec<NodeRecord> {
        self.targets
            .iter()
            .flat_map(|t| t.nodes.iter().map(|n| n.record(&t.spec.name)))
            .collect()
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
            .map(|(ti, t)| {
                let in_maintenance = self.target_in_maintenance(ti);
                TargetView {
                    name: t.spec.name.clone(),
                    uri: t.spec.uri.clone(),
                    method: t.spec.method.clone(),
                    group: t.spec.group.clone(),
                    nodes: t.nodes.iter().map(NodeTracker::view).collect(),
                    status: t.status(in_maintenance),
                    in_maintenance,
                    dns_error: t.dns_error.clone(),
                }
            })
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

    fn target_in_maintenance(&self, ti: usize) -> bool {
        let t = &self.targets[ti];
        self.targets_in_maintenance.contains(&t.spec.name)
            || t.spec
                .group
                .as_ref()
                .is_some_and(|g| self.groups_in_maintenance.contains(g))
    }

    fn after_target_change(&mut self, ti: usize, now: UnixTime, ev: &mut Vec<BoardEvent>) {
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

    /// (state, members counted as serving) of a group from its members' verdicts.
    fn group_quorum(&self, spec: &GroupSpec, members: &[usize]) -> (GroupState, usize) {
        let not_serving = members
            .iter()
            .filter(|&&i| self.targets[i].verdict() == Verdict::NotServing)
            .count();
        let serving = members.len() - not_serving;
        let state = if serving < spec.min_up {
            GroupState::Down
        } else if not_serving > 0 {
            GroupState::Degraded
        } else {
            GroupState::Up
        };
        (state, serving)
    }

    fn evaluate_group(&mut self, gi: usize, now: UnixTime, ev: &mut Vec<BoardEvent>) {
        let (state, serving) = self.group_quorum(&self.groups[gi].spec, &self.groups[gi].members);
        let held = self
            .groups_in_maintenance
            .contains(&self.groups[gi].spec.name)
            || self.groups[gi]
                .members
                .iter()
                .any(|&i| self.targets[i].nodes.iter().any(|n| n.flapping));
        let g = &mut self.groups[gi];
        if state != g.state {
            ev.push(BoardEvent::GroupChanged {
                at: now,
                group: g.spec.name.clone(),
                from: g.state,
                to: state,
                serving,
                min_up: g.spec.min_up,
                notify: !held,
            });
            g.state = state;
            if !held {
                g.notified = state;
            }
        } else if !held && g.notified != state {
            ev.push(BoardEvent::GroupChanged {
                at: now,
                group: g.spec.name.clone(),
                from: g.notified,
                to: state,
                serving,
                min_up: g.spec.min_up,
                notify: true,
            });
            g.notified = state;
        }
        self.sync_group_incident(gi, now, ev);
    }

    fn sync_target_incident(&mut self, ti: usize, now: UnixTime, ev: &mut Vec<BoardEvent>) {
        let t = &self.targets[ti];
        // The usual case, once per probe: nothing down, flapping or unresolvable and no incident
        // open at all, so there is nothing to resolve either (no key to format).
        if self.incidents.is_empty()
            && !t.dns_outage()
            && t.nodes
                .iter()
                .all(|n| n.state != NodeState::Down && !n.flapping)
        {
            return;
        }
        let name = &t.spec.name;
        let key = format!("target:{name}");
        let total = t.nodes.len();
        let down: Vec<&NodeTracker> = t
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Down)
            .collect();
        let flapping: Vec<String> = t
            .nodes
            .iter()
            .filter(|n| n.flapping)
            .map(|n| format!("{name} {}", n.node))
            .collect();
        let open = self.incidents.contains_key(&key);
        if t.dns_outage() {
            let error = t.dns_error.clone().unwrap_or_default();
            let title = format!("{name}: name does not resolve");
            let body = format!("{name} cannot be resolved: {error}. No node to probe.");
            let affected = vec![name.clone()];
            let impact = ComponentStatus::MajorOutage;
            self.upsert_incident(&key, title, impact, affected, body, now, ev);
        } else if !down.is_empty() {
            let impact = if down.len() == total {
                ComponentStatus::MajorOutage
            } else {
                ComponentStatus::PartialOutage
            };
            let title = if total == 1 {
                format!("{name}: down")
            } else if down.len() == total {
                format!("{name}: all {total} nodes down")
            } else {
                format!("{name}: {} of {total} nodes down", down.len())
            };
            let affected: Vec<String> = down.iter().map(|n| format!("{name} {}", n.node)).collect();
            if open && !flapping.is_empty() {
                self.flapping_incident(&key, title, impact, affected, &flapping, now, ev);
                return;
            }
            let body = down
                .iter()
                .map(|n| {
                    let last = n.last.as_ref().map(describe).unwrap_or_default();
                    let since = super::timefmt::since(n.since, now, self.zone);
                    format!("{} down {since}: {last}", n.node)
                })
                .collect::<Vec<_>>()
                .join("; ");
            self.upsert_incident(&key, title, impact, affected, body, now, ev);
        } else if !flapping.is_empty() {
            // Keep the incident open: a flapping node would otherwise open one per flap.
            if open {
                let title = format!("{name}: nodes answer again, {} flapping", flapping.len());
                let impact = ComponentStatus::DegradedPerformance;
                let affected = flapping.clone();
                self.flapping_incident(&key, title, impact, affected, &flapping, now, ev);
            }
        } else {
            self.resolve_incident(&key, now, "Every node answers again.", ev);
        }
    }

    /// An open target incident while some of its nodes flap: one `identified` update says so,
    /// then title, impact and affected follow the flaps without adding updates (the incident
    /// would otherwise grow by one update per flap).
    #[allow(clippy::too_many_arguments)]
    fn flapping_incident(
        &mut self,
        key: &str,
        title: String,
        impact: ComponentStatus,
        affected: Vec<String>,
        flapping: &[String],
        now: UnixTime,
        ev: &mut Vec<BoardEvent>,
    ) {
        let Some(inc) = self.incidents.get_mut(key) else {
            return;
        };
        let noted = inc.updates.last().is_some_and(|u| u.status == "identified");
        if noted && inc.title == title && inc.impact == impact && inc.affected == affected {
            return;
        }
        if !noted {
            inc.updates.push(IncidentUpdate {
                at: now,
                status: "identified".to_string(),
                body: format!(
                    "{} keep changing state (flapping). The incident stays open until they have \
                     been stable for a whole flap window.",
                    flapping.join(", ")
                ),
            });
        }
        inc.title = title;
        inc.impact = impact;
        inc.affected = affected;
        ev.push(BoardEvent::IncidentUpdated(inc.clone()));
    }

    fn sync_group_incident(&mut self, gi: usize, now: UnixTime, ev: &mut Vec<BoardEvent>) {
        let g = &self.groups[gi];
        let name = g.spec.name.clone();
        let key = format!("group:{name}");
        let (state, serving) = self.group_quorum(&g.spec, &g.members);
        if state == GroupState::Down {
            let min_up = g.spec.min_up;
            let total = g.members.len();
            let affected: Vec<String> = g
                .members
                .iter()
                .filter(|&&i| self.targets[i].verdict() == Verdict::NotServing)
                .map(|&i| self.targets[i].spec.name.clone())
                .collect();
            let title = format!("{name}: {serving} of {total} serving, quorum needs {min_up}");
            let body = if affected.is_empty() {
                format!("{name} has {total} members but needs {min_up} serving.")
            } else {
                format!(
                    "Not serving: {}. {serving} of {total} serving, quorum needs {min_up}.",
                    affected.join(", ")
                )
            };
            self.upsert_incident(
                &key,
                title,
                ComponentStatus::MajorOutage,
                affected,
                body,
                now,
                ev,
            );
        } else {
            self.resolve_incident(&key, now, "Quorum is back.", ev);
        }
    }

    /// Opens the incident of `key`, or updates it when what it says changed.
    #[allow(clippy::too_many_arguments)]
    fn upsert_incident(
        &mut self,
        key: &str,
        title: String,
        impact: ComponentStatus,
        affected: Vec<String>,
        body: String,
        now: UnixTime,
        ev: &mut Vec<BoardEvent>,
    ) {
        match self.incidents.get_mut(key) {
            None => {
                let inc = Incident {
                    id: self.next_incident_id,
                    key: key.to_string(),
                    title,
                    impact,
                    opened_at: now,
                    resolved_at: None,
                    affected,
                    updates: vec![IncidentUpdate {
                        at: now,
                        status: "investigating".to_string(),
                        body,
                    }],
                };
                self.next_incident_id += 1;
                ev.push(BoardEvent::IncidentOpened(inc.clone()));
                self.incidents.insert(key.to_string(), inc);
            }
            Some(inc) => {
                let after_other_note = inc
                    .updates
                    .last()
                    .is_some_and(|u| u.status != "investigating");
                if inc.affected == affected
                    && inc.impact == impact
                    && inc.title == title
                    && !after_other_note
                {
                    return;
                }
                inc.title = title;
                inc.impact = impact;
                inc.affected = affected;
                inc.updates.push(IncidentUpdate {
                    at: now,
                    status: "investigating".to_string(),
                    body,
                });
                ev.push(BoardEvent::IncidentUpdated(inc.clone()));
            }
        }
    }

    fn resolve_incident(&mut self, key: &str, now: UnixTime, body: &str, ev: &mut Vec<BoardEvent>) {
        if let Some(mut inc) = self.incidents.remove(key) {
            inc.resolved_at = Some(now);
            inc.updates.push(IncidentUpdate {
                at: now,
                status: "resolved".to_string(),
                body: body.to_string(),
            });
            ev.push(BoardEvent::IncidentResolved(inc));
        }
    }
}

/// When a node's alerts are no longer held (not flapping, not in maintenance) and its state
/// differs from what on-call last heard, tell them now.
fn release_held_node(
    t: &mut TargetTracker,
    ni: usize,
    in_maintenance: bool,
    now: UnixTime,
    why: &str,
    ev: &mut Vec<BoardEvent>,
) {
    let Some(n) = t.nodes.get_mut(ni) else {
        return;
    };
    if n.flapping || in_maintenance || n.notified == n.state {
        return;
    }
    let from = n.notified;
    n.notified = n.state;
    ev.push(BoardEvent::Changed(StateChange {
        at: now,
        target: t.spec.name.clone(),
        node: n.node.clone(),
        group: t.spec.group.clone(),
        from,
        to: n.state,
        reason: format!(
            "alerts released ({why}); {} since {:.0}",
            n.state.as_str(),
            n.since
        ),
        notify: true,
    }));
}

fn group_status(state: GroupState, in_maintenance: bool) -> ComponentStatus {
    if in_maintenance {
        return ComponentStatus::UnderMaintenance;
    }
    match state {
        GroupState::Up => ComponentStatus::Operational,
        GroupState::Degraded => ComponentStatus::PartialOutage,
        GroupState::Down => ComponentStatus::MajorOutage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(at: UnixTime, status: &str) -> Observation {
        let (result, code) = match status {
            "ok" => ("ok", Some(200)),
            "warning" => ("error_response", Some(503)),
            _ => ("timeout", None),
        };
        Observation {
            at,
            status: status.to_string(),
            result: result.to_string(),
            code,
            rtt_ms: Some(12.0),
            reason: String::new(),
            cert_days_left: None,
        }
    }

    fn target(name: &str, group: Option<&str>, th: Thresholds) -> TargetSpec {
        TargetSpec {
            name: name.to_string(),
            uri: format!("sip:{name}.example.net"),
            method: "OPTIONS".to_string(),
            group: group.map(str::to_string),
            thresholds: th,
        }
    }

    fn nodes(n: usize) -> Vec<(String, String)> {
        (1..=n)
            .map(|i| (format!("10.0.0.{i}:5060"), "udp".to_string()))
            .collect()
    }

    fn node(i: usize) -> String {
        format!("10.0.0.{i}:5060")
    }

    /// One target `edge` with `n` nodes, default thresholds, no group.
    fn board_with(n: usize, th: Thresholds) -> Board {
        let mut b = Board::new("Status".into(), vec![target("edge", None, th)], vec![]);
        b.set_nodes("edge", &nodes(n), 0.0);
        b
    }

    fn changes(ev: &[BoardEvent]) -> Vec<&StateChange> {
        ev.iter()
            .filter_map(|e| match e {
                BoardEvent::Changed(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn feed(
        b: &mut Board,
        t: &str,
        node: &str,
        at: &mut f64,
        status: &str,
        n: usize,
    ) -> Vec<BoardEvent> {
        let mut all = Vec::new();
        for _ in 0..n {
            *at += 10.0;
            all.extend(b.observe(t, node, obs(*at, status)));
        }
        all
    }

    fn node_state(b: &Board, t: &str, node: &str, now: f64) -> NodeView {
        let snap = b.snapshot(now);
        let tv = snap
            .targets
            .into_iter()
            .find(|x| x.name == t)
            .expect("target");
        tv.nodes.into_iter().find(|n| n.node == node).expect("node")
    }

    fn status_of(b: &Board, t: &str, now: f64) -> ComponentStatus {
        b.snapshot(now)
            .targets
            .into_iter()
            .find(|x| x.name == t)
            .expect("target")
            .status
    }

    #[test]
    fn unknown_becomes_up_after_ok_successes_without_notifying() {
        let mut b = board_with(1, Thresholds::default());
        let mut at = 0.0;
        assert!(changes(&feed(&mut b, "edge", &node(1), &mut at, "ok", 1)).is_empty());
        let ev = feed(&mut b, "edge", &node(1), &mut at, "ok", 1);
        let c = changes(&ev);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].from, c[0].to, c[0].notify),
            (NodeState::Unknown, NodeState::Up, false)
        );
        assert_eq!(node_state(&b, "edge", &node(1), at).since, at);
    }

    #[test]
    fn unknown_becomes_down_after_fail_failures_and_notifies() {
        let mut b = board_with(1, Thresholds::default());
        let mut at = 0.0;
        assert!(changes(&feed(&mut b, "edge", &node(1), &mut at, "critical", 2)).is_empty());
        let ev = feed(&mut b, "edge", &node(1), &mut at, "critical", 1);
        let c = changes(&ev);
        assert_eq!(
            (c[0].from, c[0].to, c[0].notify),
            (NodeState::Unknown, NodeState::Down, true)
        );
        assert!(
            c[0].reason
                .starts_with("3 consecutive failures; last: timeout"),
            "{}",
            c[0].reason
        );
    }

    #[test]
    fn down_after_fail_consecutive_failures_and_up_after_ok_successes() {
        let mut b = board_with(1, Thresholds::default());
        let mut at = 0.0;
        feed(&mut b, "edge", &node(1), &mut at, "ok", 2);
        // Two failures, an ok in between: the count restarts.
        assert!(changes(&feed(&mut b, "edge", &node(1), &mut at, "critical", 2)).is_empty());
        assert!(changes(&feed(&mut b, "edge", &node(1), &mut at, "ok", 1)).is_empty());
        assert!(changes(&feed(&mut b, "edge", &node(1), &mut at, "critical", 2)).is_empty());
        assert_eq!(node_state(&b, "edge", &node(1), at).consecutive_failures, 2);
        let ev = feed(&mut b, "edge", &node(1), &mut at, "critical", 1);
        let c = changes(&ev);
        assert_eq!(
            (c[0].from, c[0].to, c[0].notify),
            (NodeState::Up, NodeState::Down, true)
        );
        // `unknown` counts as a failure too; it keeps the node down.
        assert!(changes(&feed(&mut b, "edge", &node(1), &mut at, "unknown", 1)).is_empty());
        assert!(changes(&feed(&mut b, "edge", &node(1), &mut at, "ok", 1)).is_empty());
        let ev = feed(&mut b, "edge", &node(1), &mut at, "ok", 1);
        let c = changes(&ev);
        assert_eq!(
            (c[0].from, c[0].to, c[0].notify),
            (NodeState::Down, NodeState::Up, true)
        );
    }

    #[test]
    fn custom_thresholds_apply() {
        let th = Thresholds {
            fail: 1,
            ok: 4,
            ..Thresholds::default()
        };
        let mut b = board_with(1, th);
        let mut at = 0.0;
        let ev = feed(&mut b, "edge", &node(1), &mut at, "critical", 1);
        assert_eq!(changes(&ev)[0].to, NodeState::Down);
        assert!(changes(&feed(&mut b, "edge", &node(1), &mut at, "ok", 3)).is_empty());
        assert_eq!(
            changes(&feed(&mut b, "edge", &node(1), &mut at, "ok", 1))[0].to,
            NodeState::Up
        );
    }

    #[test]
    fn warnings_degrade_an_up_node_and_oks_bring_it_back() {
        let mut b = board_with(2, Thresholds::default());
        let mut at = 0.0;
        feed(&mut b, "edge", &node(1), &mut at, "ok", 2);
        feed(&mut b, "edge", &node(2), &mut at, "ok", 2);
        assert!(changes(&feed(&mut b, "edge", &node(1), &mut at, "warning", 1)).is_empty());
        let ev = feed(&mut b, "edge", &node(1), &mut at, "warning", 1);
        let c = changes(&ev);
        assert_eq!(
            (c[0].from, c[0].to, c[0].notify),
            (NodeState::Up, NodeState::Degraded, true)
        );
        assert!(c[0].reason.contains("2 consecutive warnings"));
        assert_eq!(
            status_of(&b, "edge", at),
            ComponentStatus::DegradedPerformance
        );
        // Degraded is serving: no incident.
        assert!(b.snapshot(at).open_incidents.is_empty());
        // A warning between oks restarts the ok count.
        assert!(changes(&feed(&mut b, "edge", &node(1), &mut at, "ok", 1)).is_empty());
        assert!(changes(&feed(&mut b, "edge", &node(1), &mut at, "warning", 1)).is_empty());
        assert!(changes(&feed(&mut b, "edge", &node(1), &mut at, "ok", 1)).is_empty());
        let ev = feed(&mut b, "edge", &node(1), &mut at, "ok", 1);
        assert_eq!(changes(&ev)[0].to, NodeState::Up);
        assert_eq!(status_of(&b, "edge", at), ComponentStatus::Operational);
    }

    #[test]
    fn a_down_node_leaves_down_after_ok_non_failures_to_the_last_ones_state() {
        let mut b = board_with(1, Thresholds::default());
        let mut at = 0.0;
        feed(&mut b, "edge", &node(1), &mut at, "critical", 3);
        feed(&mut b, "edge", &node(1), &mut at, "ok", 1);
        let ev = feed(&mut b, "edge", &node(1), &mut at, "warning", 1);
        assert_eq!(changes(&ev)[0].to, NodeState::Degraded);
        feed(&mut b, "edge", &node(1), &mut at, "critical", 3);
        feed(&mut b, "edge", &node(1), &mut at, "warning", 1);
        let ev = feed(&mut b, "edge", &node(1), &mut at, "ok", 1);
        assert_eq!(changes(&ev)[0].to, NodeState::Up);
        // Degraded -> Down after `fail` failures as well.
        feed(&mut b, "edge", &node(1), &mut at, "warning", 2);
        assert_eq!(
            node_state(&b, "edge", &node(1), at).state,
            NodeState::Degraded
        );
        let ev = feed(&mut b, "edge", &node(1), &mut at, "critical", 3);
        assert_eq!(
            (changes(&ev)[0].from, changes(&ev)[0].to),
            (NodeState::Degraded, NodeState::Down)
        );
    }

    #[test]
    fn target_status_follows_its_nodes() {
        let mut b = board_with(3, Thresholds::default());
        let mut at = 0.0;
        assert_eq!(status_of(&b, "edge", at), ComponentStatus::Operational); // unknown only
        for i in 1..=3 {
            feed(&mut b, "edge", &node(i), &mut at, "ok", 2);
        }
        assert_eq!(status_of(&b, "edge", at), ComponentStatus::Operational);
        feed(&mut b, "edge", &node(1), &mut at, "critical", 3);
        assert_eq!(status_of(&b, "edge", at), ComponentStatus::PartialOutage);
        feed(&mut b, "edge", &node(2), &mut at, "critical", 3);
        feed(&mut b, "edge", &node(3), &mut at, "critical", 3);
        assert_eq!(status_of(&b, "edge", at), ComponentStatus::MajorOutage);
    }

    /// Fast thresholds so that every observation is a change: fail=1, ok=1.
    fn twitchy() -> Thresholds {
        Thresholds {
            fail: 1,
            ok: 1,
            flap_window_secs: 600.0,
            flap_max_changes: 4,
        }
    }

    #[test]
    fn flapping_holds_alerts_and_releases_them_after_a_stable_window() {
        let mut b = board_with(2, twitchy());
        let mut at = 0.0;
        feed(&mut b, "edge", &node(2), &mut at, "ok", 1);
        feed(&mut b, "edge", &node(1), &mut at, "ok", 1); // Unknown -> Up: not counted
                                                          // Four changes within the window: still notified.
        for (i, s) in ["critical", "ok", "critical", "ok"].iter().enumerate() {
            let ev = feed(&mut b, "edge", &node(1), &mut at, s, 1);
            let c = changes(&ev);
            assert!(c[0].notify, "change {i} should notify");
            assert!(!ev
                .iter()
                .any(|e| matches!(e, BoardEvent::FlapStarted { .. })));
        }
        // The fifth starts flapping: the event itself notifies, the change is held.
        let ev = feed(&mut b, "edge", &node(1), &mut at, "critical", 1);
        assert!(ev.iter().any(|e| matches!(
            e,
            BoardEvent::FlapStarted {
                changes: 5,
                notify: true,
                ..
            }
        )));
        let c = changes(&ev);
        assert_eq!((c[0].to, c[0].notify), (NodeState::Down, false));
        assert!(node_state(&b, "edge", &node(1), at).flapping);
        // Changes still apply and show, silently; no second FlapStarted.
        for s in ["ok", "critical", "ok", "critical"] {
            let ev = feed(&mut b, "edge", &node(1), &mut at, s, 1);
            assert!(!changes(&ev)[0].notify);
            assert!(!ev
                .iter()
                .any(|e| matches!(e, BoardEvent::FlapStarted { .. })));
        }
        assert_eq!(node_state(&b, "edge", &node(1), at).state, NodeState::Down);
        // The flapping node keeps its incident open even while it answers, and the flaps do not
        // pile up updates: one `identified` note, then title/affected follow.
        let updated = |ev: &[BoardEvent]| {
            ev.iter().find_map(|e| match e {
                BoardEvent::IncidentUpdated(i) => Some(i.clone()),
                _ => None,
            })
        };
        let ev = feed(&mut b, "edge", &node(1), &mut at, "ok", 1);
        let inc = updated(&ev).expect("incident kept open and updated");
        assert_eq!(
            inc.updates.last().map(|u| u.status.as_str()),
            Some("identified")
        );
        assert_eq!(inc.title, "edge: nodes answer again, 1 flapping");
        assert!(!ev
            .iter()
            .any(|e| matches!(e, BoardEvent::IncidentResolved(_))));
        assert_eq!(
            status_of(&b, "edge", at),
            ComponentStatus::DegradedPerformance
        );
        let notes = inc.updates.len();
        let ev = feed(&mut b, "edge", &node(1), &mut at, "critical", 1);
        let inc = updated(&ev).expect("title follows");
        assert_eq!(
            (inc.title.as_str(), inc.updates.len()),
            ("edge: 1 of 2 nodes down", notes)
        );
        let ev = feed(&mut b, "edge", &node(1), &mut at, "ok", 1);
        assert_eq!(updated(&ev).map(|i| i.updates.len()), Some(notes));
        // The node goes down and stays down; last notified state was Up.
        feed(&mut b, "edge", &node(1), &mut at, "critical", 1);
        let last_change = at;
        // Stable, but not yet for a whole window: still flapping, nothing released.
        while at + 10.0 < last_change + 600.0 {
            let ev = feed(&mut b, "edge", &node(1), &mut at, "critical", 1);
            assert!(ev.is_empty(), "{ev:?}");
        }
        let ev = feed(&mut b, "edge", &node(1), &mut at, "critical", 1);
        assert!(
            ev.iter().any(|e| matches!(
                e,
                BoardEvent::FlapEnded {
                    state: NodeState::Down,
                    notify: true,
                    ..
                }
            )),
            "{ev:?}"
        );
        let c = changes(&ev);
        assert_eq!(c.len(), 1, "{ev:?}");
        assert_eq!(
            (c[0].from, c[0].to, c[0].notify),
            (NodeState::Up, NodeState::Down, true)
        );
        assert!(!node_state(&b, "edge", &node(1), at).flapping);
        let inc = updated(&ev).expect("incident back to normal updates");
        assert_eq!(
            inc.updates.last().map(|u| u.status.as_str()),
            Some("investigating")
        );
        // After the flap, changes notify again.
        let ev = feed(&mut b, "edge", &node(1), &mut at, "ok", 1);
        assert!(changes(&ev)[0].notify);
    }

    #[test]
    fn flap_end_releases_nothing_when_the_node_settled_where_on_call_last_heard() {
        let mut b = board_with(1, twitchy());
        let mut at = 0.0;
        feed(&mut b, "edge", &node(1), &mut at, "ok", 1);
        for s in ["critical", "ok", "critical", "ok", "critical", "ok"] {
            feed(&mut b, "edge", &node(1), &mut at, s, 1);
        }
        // Notified state is Up (4th change); it settled Up.
        let mut released = Vec::new();
        for _ in 0..61 {
            released.extend(feed(&mut b, "edge", &node(1), &mut at, "ok", 1));
        }
        assert!(released
            .iter()
            .any(|e| matches!(e, BoardEvent::FlapEnded { .. })));
        assert!(changes(&released).is_empty(), "{released:?}");
    }

    fn group_board(min_up: usize) -> (Board, f64) {
        let targets = ["a", "b", "c"]
            .iter()
            .map(|n| target(n, Some("core"), Thresholds::default()))
            .collect();
        let mut b = Board::new(
            "Status".into(),
            targets,
            vec![GroupSpec {
                name: "core".into(),
                min_up,
            }],
        );
        let mut at = 0.0;
        for t in ["a", "b", "c"] {
            b.set_nodes(t, &nodes(1), 0.0);
            feed(&mut b, t, &node(1), &mut at, "ok", 2);
        }
        (b, at)
    }

    fn group_view(b: &Board, now: f64) -> GroupView {
        b.snapshot(now).groups.into_iter().next().expect("group")
    }

    fn group_changes(ev: &[BoardEvent]) -> Vec<(GroupState, GroupState, usize, bool)> {
        ev.iter()
            .filter_map(|e| match e {
                BoardEvent::GroupChanged {
                    from,
                    to,
                    serving,
                    notify,
                    ..
                } => Some((*from, *to, *serving, *notify)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_fresh_group_is_up_and_quiet_before_any_probe() {
        let targets = vec![target("a", Some("core"), Thresholds::default())];
        let mut b = Board::new(
            "S".into(),
            targets,
            vec![GroupSpec {
                name: "core".into(),
                min_up: 1,
            }],
        );
        let ev = b.set_nodes("a", &nodes(2), 1.0);
        assert!(ev.is_empty(), "{ev:?}");
        let g = group_view(&b, 1.0);
        assert_eq!(
            (g.state, g.status, g.serving),
            (GroupState::Up, ComponentStatus::Operational, 1)
        );
        assert!(b.snapshot(1.0).open_incidents.is_empty());
    }

    #[test]
    fn group_degrades_then_goes_down_below_quorum_and_recovers() {
        let (mut b, mut at) = group_board(2);
        assert_eq!(group_view(&b, at).state, GroupState::Up);
        let ev = feed(&mut b, "a", &node(1), &mut at, "critical", 3);
        assert_eq!(
            group_changes(&ev),
            vec![(GroupState::Up, GroupState::Degraded, 2, true)]
        );
        let g = group_view(&b, at);
        assert_eq!(
            (g.status, g.serving, g.min_up),
            (ComponentStatus::PartialOutage, 2, 2)
        );
        assert_eq!(g.members, vec!["a", "b", "c"]);
        assert!(!ev
            .iter()
            .any(|e| matches!(e, BoardEvent::IncidentOpened(i) if i.key == "group:core")));

        let ev = feed(&mut b, "b", &node(1), &mut at, "critical", 3);
        assert_eq!(
            group_changes(&ev),
            vec![(GroupState::Degraded, GroupState::Down, 1, true)]
        );
        assert_eq!(group_view(&b, at).status, ComponentStatus::MajorOutage);
        let opened = ev
            .iter()
            .find_map(|e| match e {
                BoardEvent::IncidentOpened(i) if i.key == "group:core" => Some(i.clone()),
                _ => None,
            })
            .expect("group incident");
        assert_eq!(opened.title, "core: 1 of 3 serving, quorum needs 2");
        assert_eq!(opened.affected, vec!["a", "b"]);
        assert_eq!(opened.impact, ComponentStatus::MajorOutage);

        let ev = feed(&mut b, "a", &node(1), &mut at, "ok", 2);
        assert_eq!(
            group_changes(&ev),
            vec![(GroupState::Down, GroupState::Degraded, 2, true)]
        );
        assert!(ev.iter().any(|e| matches!(e, BoardEvent::IncidentResolved(i) if i.key == "group:core" && i.id == opened.id && i.resolved_at == Some(at))));
        let ev = feed(&mut b, "b", &node(1), &mut at, "ok", 2);
        assert_eq!(
            group_changes(&ev),
            vec![(GroupState::Degraded, GroupState::Up, 3, true)]
        );
        assert_eq!(group_view(&b, at).status, ComponentStatus::Operational);
    }

    #[test]
    fn a_target_serves_while_one_node_serves() {
        let targets = vec![target("a", Some("core"), Thresholds::default())];
        let mut b = Board::new(
            "S".into(),
            targets,
            vec![GroupSpec {
                name: "core".into(),
                min_up: 1,
            }],
        );
        b.set_nodes("a", &nodes(2), 0.0);
        let mut at = 0.0;
        feed(&mut b, "a", &node(1), &mut at, "warning", 2);
        feed(&mut b, "a", &node(2), &mut at, "critical", 3);
        assert_eq!(group_view(&b, at).state, GroupState::Up);
        let ev = feed(&mut b, "a", &node(1), &mut at, "critical", 3);
        assert_eq!(
            group_changes(&ev),
            vec![(GroupState::Up, GroupState::Down, 0, true)]
        );
    }

    fn incidents_in(ev: &[BoardEvent]) -> Vec<(&'static str, Incident)> {
        ev.iter()
            .filter_map(|e| match e {
                BoardEvent::IncidentOpened(i) => Some(("opened", i.clone())),
                BoardEvent::IncidentUpdated(i) => Some(("updated", i.clone())),
                BoardEvent::IncidentResolved(i) => Some(("resolved", i.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn target_incident_opens_updates_and_resolves() {
        let mut b = board_with(3, Thresholds::default());
        let mut at = 0.0;
        for i in 1..=3 {
            feed(&mut b, "edge", &node(i), &mut at, "ok", 2);
        }
        let ev = feed(&mut b, "edge", &node(2), &mut at, "critical", 3);
        let inc = incidents_in(&ev);
        assert_eq!(inc.len(), 1);
        let (kind, i) = &inc[0];
        assert_eq!(*kind, "opened");
        assert_eq!(i.id, 1);
        assert_eq!(i.key, "target:edge");
        assert_eq!(i.title, "edge: 1 of 3 nodes down");
        assert_eq!(i.impact, ComponentStatus::PartialOutage);
        assert_eq!(i.affected, vec!["edge 10.0.0.2:5060"]);
        assert_eq!(i.opened_at, at);
        assert_eq!(i.updates[0].status, "investigating");
        // More failures of the same node: nothing new to say.
        assert!(incidents_in(&feed(&mut b, "edge", &node(2), &mut at, "critical", 5)).is_empty());
        assert_eq!(b.snapshot(at).open_incidents.len(), 1);

        let ev = feed(&mut b, "edge", &node(3), &mut at, "critical", 3);
        let inc = incidents_in(&ev);
        assert_eq!(inc[0].0, "updated");
        assert_eq!(inc[0].1.id, 1);
        assert_eq!(inc[0].1.title, "edge: 2 of 3 nodes down");
        assert_eq!(inc[0].1.updates.len(), 2);
        let ev = feed(&mut b, "edge", &node(1), &mut at, "critical", 3);
        let inc = incidents_in(&ev);
        assert_eq!(inc[0].1.title, "edge: all 3 nodes down");
        assert_eq!(inc[0].1.impact, ComponentStatus::MajorOutage);

        for i in [1, 2] {
            let ev = feed(&mut b, "edge", &node(i), &mut at, "ok", 2);
            assert_eq!(incidents_in(&ev)[0].0, "updated");
        }
        let ev = feed(&mut b, "edge", &node(3), &mut at, "ok", 2);
        let inc = incidents_in(&ev);
        assert_eq!(inc[0].0, "resolved");
        assert_eq!(inc[0].1.resolved_at, Some(at));
        assert_eq!(
            inc[0].1.updates.last().map(|u| u.status.as_str()),
            Some("resolved")
        );
        assert!(b.snapshot(at).open_incidents.is_empty());
        // The next incident gets the next id.
        let ev = feed(&mut b, "edge", &node(1), &mut at, "critical", 3);
        assert_eq!(incidents_in(&ev)[0].1.id, 2);
    }

    #[test]
    fn incident_texts_are_in_words_and_the_page_zone() {
        let mut b = board_with(2, Thresholds::default());
        b.set_time_zone("Europe/Berlin".parse().unwrap());
        // 03:11:30 CET: node 1 goes down (3 failures, 10 s apart) at 03:12 CET.
        let mut at = 1_796_004_690.0;
        let ev = feed(&mut b, "edge", &node(1), &mut at, "critical", 3);
        let body = &incidents_in(&ev)[0].1.updates[0].body;
        assert!(
            body.starts_with("10.0.0.1:5060 down since 03:12 CET:"),
            "{body}"
        );
        // Fourteen minutes later node 2 follows: the update says how long node 1 has been down.
        at += 14.0 * 60.0;
        let ev = feed(&mut b, "edge", &node(2), &mut at, "critical", 3);
        let inc = &incidents_in(&ev)[0].1;
        assert_eq!(inc.title, "edge: all 2 nodes down");
        let body = &inc.updates.last().unwrap().body;
        assert!(
            body.starts_with("10.0.0.1:5060 down since 03:12 CET, 14 min:"),
            "{body}"
        );
        assert!(
            !body.contains("1796"),
            "no unix times in words for people: {body}"
        );

        // A target with one node: no "all 1 nodes".
        let mut one = board_with(1, Thresholds::default());
        let mut at = 1_796_004_690.0;
        let ev = feed(&mut one, "edge", &node(1), &mut at, "critical", 3);
        assert_eq!(incidents_in(&ev)[0].1.title, "edge: down");
    }

    #[test]
    fn a_vanished_down_node_resolves_the_incident() {
        let mut b = board_with(2, Thresholds::default());
        let mut at = 0.0;
        feed(&mut b, "edge", &node(1), &mut at, "ok", 2);
        feed(&mut b, "edge", &node(2), &mut at, "critical", 3);
        let ev = b.set_nodes("edge", &nodes(1), at);
        assert_eq!(incidents_in(&ev)[0].0, "resolved");
        let snap = b.snapshot(at);
        assert_eq!(snap.targets[0].nodes.len(), 1);
        assert_eq!(
            snap.targets[0].nodes[0].state,
            NodeState::Up,
            "known nodes keep their state"
        );
        // A new address starts Unknown.
        b.set_nodes("edge", &nodes(2), at);
        assert_eq!(
            node_state(&b, "edge", &node(2), at).state,
            NodeState::Unknown
        );
    }

    #[test]
    fn dns_failure_without_nodes_is_a_major_outage() {
        let targets = vec![target("a", Some("core"), Thresholds::default())];
        let mut b = Board::new(
            "S".into(),
            targets,
            vec![GroupSpec {
                name: "core".into(),
                min_up: 1,
            }],
        );
        let ev = b.set_dns_error("a", Some("NXDOMAIN".into()), 5.0);
        assert!(ev.iter().any(|e| matches!(
            e,
            BoardEvent::DnsChanged {
                error: Some(_),
                notify: true,
                ..
            }
        )));
        assert_eq!(incidents_in(&ev)[0].1.title, "a: name does not resolve");
        assert_eq!(
            group_changes(&ev),
            vec![(GroupState::Up, GroupState::Down, 0, true)]
        );
        assert_eq!(status_of(&b, "a", 5.0), ComponentStatus::MajorOutage);
        // The same error again says nothing new.
        assert!(b
            .set_dns_error("a", Some("NXDOMAIN".into()), 6.0)
            .is_empty());
        let mut ev = b.set_nodes("a", &nodes(1), 7.0);
        ev.extend(b.set_dns_error("a", None, 7.0));
        assert!(ev.iter().any(|e| matches!(
            e,
            BoardEvent::DnsChanged {
                error: None,
                notify: true,
                ..
            }
        )));
        assert!(incidents_in(&ev).iter().any(|(k, _)| *k == "resolved"));
        assert_eq!(status_of(&b, "a", 7.0), ComponentStatus::Operational);
    }

    #[test]
    fn restore_resumes_without_spurious_transitions() {
        let targets = || {
            vec![
                target("edge", Some("core"), Thresholds::default()),
                target("rec", Some("core"), Thresholds::default()),
            ]
        };
        let groups = || {
            vec![GroupSpec {
                name: "core".into(),
                min_up: 2,
            }]
        };
        let mut b = Board::new("S".into(), targets(), groups());
        b.set_nodes("edge", &nodes(2), 0.0);
        b.set_nodes("rec", &nodes(1), 0.0);
        let mut at = 0.0;
        feed(&mut b, "rec", &node(1), &mut at, "ok", 2);
        feed(&mut b, "edge", &node(1), &mut at, "ok", 2);
        feed(&mut b, "edge", &node(2), &mut at, "ok", 2);
        feed(&mut b, "edge", &node(2), &mut at, "critical", 3);
        feed(&mut b, "edge", &node(1), &mut at, "critical", 3);
        feed(&mut b, "rec", &node(1), &mut at, "critical", 1); // one failure, below `fail`
        let records = b.node_records();
        let open = b.snapshot(at).open_incidents;
        assert_eq!(open.len(), 2, "target and group incidents");
        let next = b.next_incident_id();

        // Through JSON, as the store does.
        let json = serde_json::to_string(&records).expect("serialize");
        let records: Vec<NodeRecord> = serde_json::from_str(&json).expect("deserialize");

        let mut b2 = Board::new("S".into(), targets(), groups());
        b2.restore(records, open.clone(), next);
        let mut ev = b2.set_nodes("edge", &nodes(2), at);
        ev.extend(b2.set_nodes("rec", &nodes(1), at));
        assert!(ev.is_empty(), "restore + same nodes must be silent: {ev:?}");
        assert_eq!(b2.snapshot(at).open_incidents, open);
        assert_eq!(group_view(&b2, at).state, GroupState::Down);
        assert_eq!(node_state(&b2, "edge", &node(1), at).state, NodeState::Down);
        assert_eq!(node_state(&b2, "rec", &node(1), at).consecutive_failures, 1);

        // Still failing: no "down" again. One ok: nothing. The second: recovered, notified.
        assert!(feed(&mut b2, "edge", &node(1), &mut at, "critical", 2).is_empty());
        assert!(feed(&mut b2, "edge", &node(1), &mut at, "ok", 1).is_empty());
        let ev = feed(&mut b2, "edge", &node(1), &mut at, "ok", 1);
        let c = changes(&ev);
        assert_eq!(
            (c[0].from, c[0].to, c[0].notify),
            (NodeState::Down, NodeState::Up, true)
        );
        // The restored incident is updated (same id), the group incident resolves.
        let inc = incidents_in(&ev);
        assert!(inc.iter().any(|(k, i)| *k == "updated"
            && i.id
                == open
                    .iter()
                    .find(|o| o.key == "target:edge")
                    .map(|o| o.id)
                    .unwrap_or(-1)));
        assert!(inc
            .iter()
            .any(|(k, i)| *k == "resolved" && i.key == "group:core"));
        // rec's restored failure count continues: two more failures take it down.
        let ev = feed(&mut b2, "rec", &node(1), &mut at, "critical", 2);
        assert_eq!(changes(&ev)[0].to, NodeState::Down);
        // Ids continue.
        let opened = incidents_in(&ev)
            .into_iter()
            .find(|(k, _)| *k == "opened")
            .expect("rec incident");
        assert_eq!(opened.1.id, next);
    }

    #[test]
    fn restore_resolves_incidents_of_targets_no_longer_configured() {
        let mut b = board_with(1, Thresholds::default());
        let ghost = Incident {
            id: 7,
            key: "target:gone".into(),
            title: "gone: 1 of 1 nodes down".into(),
            impact: ComponentStatus::MajorOutage,
            opened_at: 100.0,
            resolved_at: None,
            affected: vec![],
            updates: vec![],
        };
        b.restore(vec![], vec![ghost], 3);
        assert_eq!(b.next_incident_id(), 8);
        let ev = b.observe("edge", &node(1), obs(200.0, "ok"));
        let inc = incidents_in(&ev);
        assert_eq!(inc.len(), 1);
        assert_eq!(
            (inc[0].0, inc[0].1.id, inc[0].1.resolved_at),
            ("resolved", 7, Some(100.0))
        );
    }

    #[test]
    fn reconfigure_keeps_unchanged_targets_and_resets_changed_ones() {
        let mut b = Board::new(
            "S".into(),
            vec![
                target("keep", None, Thresholds::default()),
                target("move", None, Thresholds::default()),
                target("drop", None, Thresholds::default()),
            ],
            vec![],
        );
        let mut at = 0.0;
        for t in ["keep", "move", "drop"] {
            b.set_nodes(t, &nodes(1), 0.0);
            feed(&mut b, t, &node(1), &mut at, "critical", 3);
        }
        assert_eq!(b.snapshot(at).open_incidents.len(), 3);
        let mut moved = target("move", None, Thresholds::default());
        moved.uri = "sip:elsewhere.example.net".into();
        let mut kept = target(
            "keep",
            Some("g"),
            Thresholds {
                fail: 5,
                ..Thresholds::default()
            },
        );
        kept.method = "REGISTER".into();
        let ev = b.reconfigure(
            vec![kept, moved, target("new", None, Thresholds::default())],
            vec![],
            at,
        );
        let resolved: Vec<String> = incidents_in(&ev)
            .into_iter()
            .filter(|(k, _)| *k == "resolved")
            .map(|(_, i)| i.key)
            .collect();
        assert_eq!(resolved.len(), 2);
        assert!(resolved.contains(&"target:drop".to_string()));
        assert!(resolved.contains(&"target:move".to_string()));
        let snap = b.snapshot(at);
        let names: Vec<&str> = snap.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["keep", "move", "new"]);
        let keep = &snap.targets[0];
        assert_eq!(keep.nodes[0].state, NodeState::Down);
        assert_eq!(keep.nodes[0].consecutive_failures, 3);
        assert_eq!(keep.method, "REGISTER");
        assert!(snap.targets[1].nodes.is_empty());
        assert_eq!(snap.open_incidents.len(), 1);
        // Kept state: recovery still needs `ok` successes, no spurious event before.
        assert!(feed(&mut b, "keep", &node(1), &mut at, "ok", 1).is_empty());
        assert_eq!(
            changes(&feed(&mut b, "keep", &node(1), &mut at, "ok", 1))[0].to,
            NodeState::Up
        );
        // The dropped target's probes are ignored.
        assert!(feed(&mut b, "drop", &node(1), &mut at, "ok", 2).is_empty());
    }

    #[test]
    fn reconfigure_moving_targets_between_groups_reevaluates_quorum() {
        let (mut b, at) = group_board(3);
        let ev = b.reconfigure(
            vec![
                target("a", Some("core"), Thresholds::default()),
                target("b", Some("core"), Thresholds::default()),
                target("c", None, Thresholds::default()),
            ],
            vec![GroupSpec {
                name: "core".into(),
                min_up: 3,
            }],
            at,
        );
        assert_eq!(
            group_changes(&ev),
            vec![(GroupState::Up, GroupState::Down, 2, true)]
        );
        assert!(incidents_in(&ev)
            .iter()
            .any(|(k, i)| *k == "opened" && i.key == "group:core"));
        let ev = b.reconfigure(vec![target("a", None, Thresholds::default())], vec![], at);
        assert!(incidents_in(&ev)
            .iter()
            .any(|(k, i)| *k == "resolved" && i.key == "group:core"));
        assert!(b.snapshot(at).groups.is_empty());
    }

    #[test]
    fn maintenance_shows_holds_alerts_and_releases_them_when_it_ends() {
        let (mut b, mut at) = group_board(2);
        let ev = b.set_maintenance(&["a".to_string()], &[], at);
        assert_eq!(
            ev,
            vec![BoardEvent::MaintenanceChanged {
                at,
                key: "target:a".into(),
                active: true
            }]
        );
        assert_eq!(status_of(&b, "a", at), ComponentStatus::UnderMaintenance);
        assert_eq!(status_of(&b, "b", at), ComponentStatus::Operational);
        let ev = feed(&mut b, "a", &node(1), &mut at, "critical", 3);
        let c = changes(&ev);
        assert_eq!((c[0].to, c[0].notify), (NodeState::Down, false));
        // The truth is on the page: the incident opens.
        assert_eq!(incidents_in(&ev)[0].0, "opened");
        assert_eq!(node_state(&b, "a", &node(1), at).state, NodeState::Down);

        let ev = b.set_maintenance(&[], &[], at);
        assert!(ev.contains(&BoardEvent::MaintenanceChanged {
            at,
            key: "target:a".into(),
            active: false
        }));
        let c = changes(&ev);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].from, c[0].to, c[0].notify),
            (NodeState::Up, NodeState::Down, true)
        );
        assert_eq!(status_of(&b, "a", at), ComponentStatus::MajorOutage);

        // A group window covers its members and holds the group's changes.
        b.set_maintenance(&[], &["core".to_string()], at);
        assert_eq!(status_of(&b, "b", at), ComponentStatus::UnderMaintenance);
        assert_eq!(group_view(&b, at).status, ComponentStatus::UnderMaintenance);
        let ev = feed(&mut b, "b", &node(1), &mut at, "critical", 3);
        assert!(!changes(&ev)[0].notify);
        assert_eq!(
            group_changes(&ev),
            vec![(GroupState::Degraded, GroupState::Down, 1, false)]
        );
        let ev = b.set_maintenance(&[], &[], at);
        assert_eq!(
            group_changes(&ev),
            vec![(GroupState::Degraded, GroupState::Down, 1, true)]
        );
        assert_eq!(changes(&ev).len(), 1);
        // A node that recovered during the window releases nothing.
        b.set_maintenance(&["c".to_string()], &[], at);
        feed(&mut b, "c", &node(1), &mut at, "critical", 3);
        feed(&mut b, "c", &node(1), &mut at, "ok", 2);
        let ev = b.set_maintenance(&[], &[], at);
        assert!(changes(&ev).is_empty(), "{ev:?}");
    }

    #[test]
    fn snapshot_lists_open_incidents_newest_first() {
        let mut b = Board::new(
            "Acme voice".into(),
            vec![
                target("a", None, Thresholds::default()),
                target("b", None, Thresholds::default()),
            ],
            vec![],
        );
        let mut at = 0.0;
        for t in ["a", "b"] {
            b.set_nodes(t, &nodes(1), 0.0);
            feed(&mut b, t, &node(1), &mut at, "critical", 3);
        }
        let snap = b.snapshot(at);
        assert_eq!(snap.page_name, "Acme voice");
        assert_eq!(snap.generated_at, at);
        let ids: Vec<i64> = snap.open_incidents.iter().map(|i| i.id).collect();
        assert_eq!(ids, vec![2, 1]);
        assert!(snap.store_error.is_none());
    }
}
