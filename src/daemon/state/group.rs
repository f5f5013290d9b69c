//! Groups: a group is up while at least `min_up` of its member targets serve (quorum), and its
//! changes are held while a member node flaps or the group is in maintenance.

use super::target::Verdict;
use super::{Board, BoardEvent, GroupSpec};
use crate::daemon::model::{ComponentStatus, GroupState, UnixTime};

#[derive(Debug)]
pub(super) struct GroupTracker {
    pub(super) spec: GroupSpec,
    /// Indices into `Board::targets`.
    pub(super) members: Vec<usize>,
    pub(super) state: GroupState,
    pub(super) notified: GroupState,
}

impl Board {
    /// (state, members counted as serving) of a group from its members' verdicts.
    pub(super) fn group_quorum(&self, spec: &GroupSpec, members: &[usize]) -> (GroupState, usize) {
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

    pub(super) fn evaluate_group(&mut self, gi: usize, now: UnixTime, ev: &mut Vec<BoardEvent>) {
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
}

pub(super) fn group_status(state: GroupState, in_maintenance: bool) -> ComponentStatus {
    if in_maintenance {
        return ComponentStatus::UnderMaintenance;
    }
    match state {
        GroupState::Up => ComponentStatus::Operational,
        GroupState::Degraded => ComponentStatus::PartialOutage,
        GroupState::Down => ComponentStatus::MajorOutage,
    }
}
