//! One node's hysteresis and flap damping: counting observations into state transitions,
//! starting and ending flapping, deciding whether on-call hears about a change (`notify`), and
//! releasing alerts held while it flapped or was in maintenance. The thresholds come from the
//! target's config ([`Thresholds`]). A change to node hysteresis lives in this file.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{BoardEvent, NodeRecord, TargetSpec};
use crate::daemon::model::{NodeState, NodeView, Observation, StateChange, UnixTime};

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

#[derive(Debug)]
pub(super) struct NodeTracker {
    pub(super) node: String,
    pub(super) transport: String,
    pub(super) state: NodeState,
    pub(super) since: UnixTime,
    pub(super) consecutive_failures: u32,
    pub(super) consecutive_successes: u32,
    pub(super) consecutive_oks: u32,
    pub(super) consecutive_warnings: u32,
    /// Times of state changes within the last flap window (changes from `Unknown` excluded).
    pub(super) recent_changes: VecDeque<UnixTime>,
    pub(super) flapping: bool,
    /// The state on-call last heard about (or the first verdict, which is never notified).
    pub(super) notified: NodeState,
    pub(super) last: Option<Observation>,
    /// The node's durable state changed since its record was last taken for saving: the next
    /// changed-records save writes it (see [`super::SaveMode::Changed`] for the rule).
    pub(super) unsaved: bool,
}

impl NodeTracker {
    pub(super) fn new(node: String, transport: String, now: UnixTime) -> Self {
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
            // A new node has no row yet.
            unsaved: true,
        }
    }

    pub(super) fn from_record(rec: NodeRecord) -> Self {
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
            // It is what the store holds.
            unsaved: false,
        }
    }

    pub(super) fn record(&self, target: &str) -> NodeRecord {
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

    pub(super) fn view(&self) -> NodeView {
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

    /// Which of the four counters are running (non-zero): the kind of streak the node is in.
    fn streak(&self) -> [bool; 4] {
        [
            self.consecutive_failures > 0,
            self.consecutive_successes > 0,
            self.consecutive_oks > 0,
            self.consecutive_warnings > 0,
        ]
    }

    /// Counts the observation and returns the hysteresis transition it completes, if any, with
    /// the reason to show. A streak that starts or ends makes the node unsaved.
    fn count(&mut self, obs: &Observation, th: &Thresholds) -> Option<(NodeState, String)> {
        let fail = th.fail.max(1);
        let ok = th.ok.max(1);
        let streak = self.streak();
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
        if self.streak() != streak {
            self.unsaved = true;
        }
        // Spelt only for a transition (not once per probe).
        let what = || describe(obs);
        match self.state {
            NodeState::Unknown | NodeState::Up | NodeState::Degraded
                if obs.is_failure() && self.consecutive_failures >= fail =>
            {
                let n = self.consecutive_failures;
                Some((
                    NodeState::Down,
                    format!("{n} consecutive failures; last: {}", what()),
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
                Some((to, format!("{n} consecutive answers; last: {}", what())))
            }
            NodeState::Up if obs.is_warning() && self.consecutive_warnings >= ok => {
                let n = self.consecutive_warnings;
                Some((
                    NodeState::Degraded,
                    format!("{n} consecutive warnings; last: {}", what()),
                ))
            }
            NodeState::Degraded if obs.is_ok() && self.consecutive_oks >= ok => {
                let n = self.consecutive_oks;
                Some((
                    NodeState::Up,
                    format!("{n} consecutive oks; last: {}", what()),
                ))
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
            self.unsaved = true;
        }
        if self.flapping && self.recent_changes.is_empty() {
            self.flapping = false;
            self.unsaved = true;
            return true;
        }
        false
    }

    /// One probe result: counts it, ends or starts flapping, applies the transition it completes
    /// and decides whether on-call hears about it. `spec` is the node's target; while
    /// `in_maintenance` (or flapping) changes apply but are held.
    pub(super) fn observe(
        &mut self,
        spec: &TargetSpec,
        obs: Observation,
        in_maintenance: bool,
        ev: &mut Vec<BoardEvent>,
    ) {
        let now = obs.at;
        let th = spec.thresholds;
        let transition = self.count(&obs, &th);
        self.last = Some(obs);
        if self.expire_changes(now, &th) {
            ev.push(BoardEvent::FlapEnded {
                at: now,
                target: spec.name.clone(),
                node: self.node.clone(),
                group: spec.group.clone(),
                state: self.state,
                notify: !in_maintenance,
            });
            // On-call hears where the node settled before anything new happens to it.
            self.release_held(spec, in_maintenance, now, "flapping ended", ev);
        }
        if let Some((to, reason)) = transition {
            let from = self.state;
            self.state = to;
            self.since = now;
            self.unsaved = true;
            if from != NodeState::Unknown {
                self.recent_changes.push_back(now);
                if !self.flapping && self.recent_changes.len() > th.flap_max_changes as usize {
                    self.flapping = true;
                    ev.push(BoardEvent::FlapStarted {
                        at: now,
                        target: spec.name.clone(),
                        node: self.node.clone(),
                        group: spec.group.clone(),
                        changes: self.recent_changes.len(),
                        notify: !in_maintenance,
                    });
                }
            }
            // From Unknown only a node found dead notifies (a daemon that starts while a node is
            // down must page); a node found healthy has nothing to tell.
            let notify = (from != NodeState::Unknown || to == NodeState::Down)
                && !self.flapping
                && !in_maintenance;
            if notify || from == NodeState::Unknown {
                self.notified = to;
            }
            ev.push(self.changed(spec, now, from, reason, notify));
        }
    }

    /// When the node's alerts are no longer held (not flapping, not in maintenance) and its state
    /// differs from what on-call last heard, tell them now.
    pub(super) fn release_held(
        &mut self,
        spec: &TargetSpec,
        in_maintenance: bool,
        now: UnixTime,
        why: &str,
        ev: &mut Vec<BoardEvent>,
    ) {
        if self.flapping || in_maintenance || self.notified == self.state {
            return;
        }
        let from = self.notified;
        self.notified = self.state;
        let reason = format!(
            "alerts released ({why}); {} since {:.0}",
            self.state.as_str(),
            self.since
        );
        ev.push(self.changed(spec, now, from, reason, true));
    }

    /// The event of a change of this node from `from` to its current state.
    fn changed(
        &self,
        spec: &TargetSpec,
        at: UnixTime,
        from: NodeState,
        reason: String,
        notify: bool,
    ) -> BoardEvent {
        BoardEvent::Changed(StateChange {
            at,
            target: spec.name.clone(),
            node: self.node.clone(),
            group: spec.group.clone(),
            from,
            to: self.state,
            reason,
            notify,
        })
    }
}

/// "timeout", "error_response 503 Service Unavailable in 12 ms", for reasons and incident bodies.
pub(super) fn describe(obs: &Observation) -> String {
    let mut s = obs.result.as_str().to_string();
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
