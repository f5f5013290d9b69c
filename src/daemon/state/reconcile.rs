//! Config reconciliation: what a load or reload keeps (trackers of targets whose name and URI are
//! unchanged, groups by name), what it drops (resolving their incidents) and what it adds.

use std::collections::{HashMap, HashSet};

use super::group::GroupTracker;
use super::target::TargetTracker;
use super::{Board, BoardEvent, GroupSpec, TargetSpec};
use crate::daemon::model::UnixTime;

impl Board {
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

    pub(super) fn apply_config(
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
                    kept.changed();
                    new_targets.push(kept);
                }
                Some(_replaced) => {
                    // The old URI's nodes' saved rows go with the next save of every record.
                    self.full_save_due = true;
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
        if !old.is_empty() {
            // Removed targets' saved rows go with the next save of every record.
            self.full_save_due = true;
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
}
