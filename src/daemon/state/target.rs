//! A target: its nodes, its DNS state, its verdict for group quorum and its status on the page.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;

use super::node::NodeTracker;
use super::{Board, BoardEvent, TargetSpec};
use crate::daemon::model::{ComponentStatus, NodeState, TargetView, UnixTime};

#[derive(Debug)]
pub(super) struct TargetTracker {
    pub(super) spec: TargetSpec,
    pub(super) nodes: Vec<NodeTracker>,
    pub(super) dns_error: Option<String>,
    pub(super) dns_notified: bool,
    /// The view [`Board::snapshot`] published last, reused until the target changes (most
    /// targets do not change between two snapshots): see [`TargetTracker::changed`].
    pub(super) view: OnceCell<Arc<TargetView>>,
}

/// A target's contribution to its group's quorum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Serving,
    NotServing,
    /// No verdict yet: counted as serving so that start-up never breaks a quorum.
    Pending,
}

impl TargetTracker {
    pub(super) fn new(spec: TargetSpec) -> Self {
        TargetTracker {
            spec,
            nodes: Vec::new(),
            dns_error: None,
            dns_notified: false,
            view: OnceCell::new(),
        }
    }

    /// Something the target's view shows may have changed: the next snapshot renders it again.
    pub(super) fn changed(&mut self) {
        self.view.take();
    }

    /// The target as the status page sees it, rendered once per change.
    pub(super) fn view(&self, in_maintenance: bool) -> Arc<TargetView> {
        self.view
            .get_or_init(|| {
                Arc::new(TargetView {
                    name: self.spec.name.clone(),
                    uri: self.spec.uri.clone(),
                    method: self.spec.method.clone(),
                    group: self.spec.group.clone(),
                    nodes: self.nodes.iter().map(NodeTracker::view).collect(),
                    status: self.status(in_maintenance),
                    in_maintenance,
                    dns_error: self.dns_error.clone(),
                })
            })
            .clone()
    }

    pub(super) fn dns_outage(&self) -> bool {
        self.dns_error.is_some() && self.nodes.is_empty()
    }

    pub(super) fn verdict(&self) -> Verdict {
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

    pub(super) fn status(&self, in_maintenance: bool) -> ComponentStatus {
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
        if !old.is_empty() {
            // Vanished nodes' saved rows go with the next save of every record.
            self.full_save_due = true;
        }
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
}
