//! Incidents (`target:NAME`, `group:NAME`): what they say, when they open, update and resolve.
//! They follow the truth, also during maintenance and flapping.

use super::node::{describe, NodeTracker};
use super::target::Verdict;
use super::{Board, BoardEvent};
use crate::daemon::model::{
    ComponentStatus, GroupState, Incident, IncidentUpdate, NodeState, UnixTime,
};

impl Board {
    pub(super) fn sync_target_incident(
        &mut self,
        ti: usize,
        now: UnixTime,
        ev: &mut Vec<BoardEvent>,
    ) {
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
                    let since = crate::daemon::timefmt::since(n.since, now, self.zone);
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

    pub(super) fn sync_group_incident(
        &mut self,
        gi: usize,
        now: UnixTime,
        ev: &mut Vec<BoardEvent>,
    ) {
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

    pub(super) fn resolve_incident(
        &mut self,
        key: &str,
        now: UnixTime,
        body: &str,
        ev: &mut Vec<BoardEvent>,
    ) {
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
