//! Maintenance: which targets and groups are inside a window now. Probing, state and incidents go
//! on; alerts are held and released (catch-up changes) when the window ends.

use std::collections::HashSet;

use super::target::TargetTracker;
use super::{Board, BoardEvent};
use crate::daemon::model::UnixTime;

impl Board {
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
        if new_targets != self.targets_in_maintenance || new_groups != self.groups_in_maintenance {
            // Which targets show "under maintenance" changed: render them again.
            self.targets.iter_mut().for_each(TargetTracker::changed);
        }
        self.targets_in_maintenance = new_targets;
        self.groups_in_maintenance = new_groups;
        for ti in 0..self.targets.len() {
            let in_maintenance = self.target_in_maintenance(ti);
            let t = &mut self.targets[ti];
            for n in &mut t.nodes {
                n.release_held(&t.spec, in_maintenance, now, "maintenance ended", &mut ev);
            }
        }
        for gi in 0..self.groups.len() {
            self.evaluate_group(gi, now, &mut ev);
        }
        ev
    }

    pub(super) fn target_in_maintenance(&self, ti: usize) -> bool {
        let t = &self.targets[ti];
        self.targets_in_maintenance.contains(&t.spec.name)
            || t.spec
                .group
                .as_ref()
                .is_some_and(|g| self.groups_in_maintenance.contains(g))
    }
}
