//! The grouper: many alerts of one group become one notification, then updates, then a resolve.
//!
//! Sans-IO, in the quinn-proto manner. Inputs: [`Grouper::insert`] (an alert's new state, for one
//! route). Outputs: [`Grouper::flush_due`] (the notifications to send at `now`) and
//! [`Grouper::next_flush`] (when to call it again). `now` (unix seconds) never goes backwards.
//!
//! Alertmanager's timing: a new group waits `group_wait` for more members, then notifies; after
//! that it looks at itself every `group_interval` and notifies when its set of firing alerts
//! changed (members joined or resolved), or when `repeat_interval` passed since the last
//! notification and it still fires. When the last member resolves it sends the resolve and ends.
//! Muted members (silenced or inhibited, decided by the caller at flush time) are not
//! notified, but listed; when a silence ends and the member still fires, the next flush sends it.
//! A resolve for a member that was never notified is not sent.
//!
//! Escalation (a route's `escalate` levels): when a group stays firing and unacknowledged for a
//! level's `after` since its first notification, the current state goes to that level's
//! receivers, who from then on also get the group's updates and its resolve.
//! [`Grouper::acknowledge`] stops further levels; it does not stop the resolve.

use std::collections::{BTreeMap, BTreeSet};

use crate::alert::{Alert, AlertStatus};
use crate::route::{EscalationLevel, Grouping, Route};

/// One notification for one group on one route.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub route: String,
    /// Deterministic dedup key (PagerDuty `dedup_key`, Opsgenie `alias`, outbox key):
    /// `sipwatch/notify/{route}/{label=value,...}`.
    pub group_key: String,
    pub group_labels: BTreeMap<String, String>,
    pub receivers: Vec<String>,
    /// `Firing` while any member fires unmuted; `Resolved` when the last one resolved.
    pub status: AlertStatus,
    /// Unmuted firing members.
    pub firing: Vec<Alert>,
    /// Members resolved since the last notification.
    pub resolved: Vec<Alert>,
    /// Firing members not notified, with why (`silenced by ID`, `inhibited by KEY`).
    pub muted: Vec<(Alert, String)>,
    pub at: f64,
    /// Nothing changed: a `repeat_interval` reminder.
    pub repeat: bool,
    /// Set on an escalation: the level (1-based) whose receivers this goes to.
    pub escalation: Option<usize>,
}

#[derive(Debug, Clone)]
struct AggrGroup {
    route: String,
    receivers: Vec<String>,
    grouping: Grouping,
    labels: BTreeMap<String, String>,
    /// Latest state of each member, by alert key.
    alerts: BTreeMap<String, Alert>,
    next_flush: f64,
    /// Keys of the firing members last notified.
    sent: BTreeSet<String>,
    last_notified: Option<f64>,
    /// When the group was first notified as firing (escalation counts from here).
    first_notified: Option<f64>,
    escalate: Vec<EscalationLevel>,
    /// Escalation levels already done.
    escalated: usize,
    /// Who acknowledged, and when.
    acked: Option<(String, f64)>,
}

impl AggrGroup {
    /// When the next escalation level is due, if one is.
    fn next_escalation(&self) -> Option<f64> {
        if self.acked.is_some() || self.sent.is_empty() {
            return None;
        }
        let first = self.first_notified?;
        self.escalate
            .get(self.escalated)
            .map(|level| first + level.after.as_secs_f64())
    }

    /// The members as notifications see them: unmuted firing, muted firing (with why), and
    /// resolved ones that were notified.
    #[allow(clippy::type_complexity)]
    fn members(
        &self,
        muted: &dyn Fn(&Alert) -> Option<String>,
    ) -> (Vec<Alert>, Vec<(Alert, String)>, Vec<Alert>) {
        let mut firing = Vec::new();
        let mut muted_list = Vec::new();
        let mut resolved = Vec::new();
        for alert in self.alerts.values() {
            match alert.status {
                AlertStatus::Firing => match muted(alert) {
                    Some(why) => muted_list.push((alert.clone(), why)),
                    None => firing.push(alert.clone()),
                },
                AlertStatus::Resolved if self.sent.contains(&alert.key) => {
                    resolved.push(alert.clone())
                }
                AlertStatus::Resolved => {}
            }
        }
        (firing, muted_list, resolved)
    }

    /// The next escalation level: the current state to that level's receivers, who from now
    /// on also get the group's updates and resolve.
    fn escalate(
        &mut self,
        key: &str,
        now: f64,
        muted: &dyn Fn(&Alert) -> Option<String>,
    ) -> Option<Notification> {
        let level = self.escalate.get(self.escalated)?.clone();
        self.escalated += 1;
        let (firing, muted_list, _) = self.members(muted);
        for r in &level.receivers {
            if !self.receivers.contains(r) {
                self.receivers.push(r.clone());
            }
        }
        if firing.is_empty() {
            return None;
        }
        Some(Notification {
            route: self.route.clone(),
            group_key: key.to_string(),
            group_labels: self.labels.clone(),
            receivers: level.receivers.clone(),
            status: AlertStatus::Firing,
            firing,
            resolved: Vec::new(),
            muted: muted_list,
            at: now,
            repeat: false,
            escalation: Some(self.escalated),
        })
    }

    /// The regular flush (see the module docs); drops resolved members afterwards.
    fn flush(
        &mut self,
        key: &str,
        now: f64,
        muted: &dyn Fn(&Alert) -> Option<String>,
    ) -> Option<Notification> {
        let (firing, muted_list, resolved) = self.members(muted);
        let firing_keys: BTreeSet<String> = firing.iter().map(|a| a.key.clone()).collect();
        let muted_keys: BTreeSet<String> = muted_list.iter().map(|(a, _)| a.key.clone()).collect();
        let compared: BTreeSet<String> = self
            .sent
            .difference(&muted_keys)
            .filter(|k| !resolved.iter().any(|a| &a.key == *k))
            .cloned()
            .collect();
        let changed = firing_keys != compared || !resolved.is_empty();
        let repeat_due = !firing.is_empty()
            && self
                .last_notified
                .is_some_and(|t| now >= t + self.grouping.repeat_interval.as_secs_f64());
        let mut notification = None;
        if changed || repeat_due {
            let status = if firing.is_empty() {
                AlertStatus::Resolved
            } else {
                AlertStatus::Firing
            };
            if status == AlertStatus::Firing && self.first_notified.is_none() {
                self.first_notified = Some(now);
            }
            notification = Some(Notification {
                route: self.route.clone(),
                group_key: key.to_string(),
                group_labels: self.labels.clone(),
                receivers: self.receivers.clone(),
                status,
                firing,
                resolved,
                muted: muted_list,
                at: now,
                repeat: !changed,
                escalation: None,
            });
            let still_muted: BTreeSet<String> =
                self.sent.intersection(&muted_keys).cloned().collect();
            self.sent = firing_keys.union(&still_muted).cloned().collect();
            self.last_notified = Some(now);
        }
        self.alerts.retain(|_, a| a.status == AlertStatus::Firing);
        let alerts = &self.alerts;
        self.sent.retain(|k| alerts.contains_key(k));
        self.next_flush = now + self.grouping.group_interval.as_secs_f64();
        notification
    }
}

/// All groups of all routes.
#[derive(Debug, Clone, Default)]
pub struct Grouper {
    groups: BTreeMap<String, AggrGroup>,
}

/// The group key of `labels` on `route`.
pub fn group_key(route: &str, labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("sipwatch/notify/{route}/{}", parts.join(","))
}

impl Grouper {
    pub fn new() -> Grouper {
        Grouper::default()
    }

    /// Records `alert`'s new state in its group on `route` (created when new and firing).
    pub fn insert(
        &mut self,
        now: f64,
        route: &Route,
        group_labels: BTreeMap<String, String>,
        alert: &Alert,
    ) {
        let key = group_key(&route.name, &group_labels);
        match self.groups.get_mut(&key) {
            Some(group) => {
                if alert.status == AlertStatus::Resolved && !group.alerts.contains_key(&alert.key) {
                    return;
                }
                group.alerts.insert(alert.key.clone(), alert.clone());
            }
            None => {
                if alert.status == AlertStatus::Resolved {
                    return;
                }
                self.groups.insert(
                    key,
                    AggrGroup {
                        route: route.name.clone(),
                        receivers: route.receivers.clone(),
                        grouping: route.grouping.clone(),
                        labels: group_labels,
                        alerts: BTreeMap::from([(alert.key.clone(), alert.clone())]),
                        next_flush: now + route.grouping.group_wait.as_secs_f64(),
                        sent: BTreeSet::new(),
                        last_notified: None,
                        first_notified: None,
                        escalate: route.escalate.clone(),
                        escalated: 0,
                        acked: None,
                    },
                );
            }
        }
    }

    /// When [`Grouper::flush_due`] has work next.
    pub fn next_flush(&self) -> Option<f64> {
        self.groups
            .values()
            .map(|g| match g.next_escalation() {
                Some(at) => g.next_flush.min(at),
                None => g.next_flush,
            })
            .min_by(|a, b| a.total_cmp(b))
    }

    /// The notifications due at `now`. `muted` says why a firing member must not be notified
    /// (`None`: notify it).
    pub fn flush_due(
        &mut self,
        now: f64,
        muted: &dyn Fn(&Alert) -> Option<String>,
    ) -> Vec<Notification> {
        let mut out = Vec::new();
        let mut finished = Vec::new();
        for (key, group) in self.groups.iter_mut() {
            if group.next_flush <= now {
                out.extend(group.flush(key, now, muted));
                if group.alerts.is_empty() {
                    finished.push(key.clone());
                    continue;
                }
            }
            while group.next_escalation().is_some_and(|at| at <= now) {
                out.extend(group.escalate(key, now, muted));
            }
        }
        for key in finished {
            self.groups.remove(&key);
        }
        out
    }

    /// Input: someone acknowledged the group `key`: its escalation stops (its resolve is still
    /// sent). False when no such group fires.
    pub fn acknowledge(&mut self, key: &str, by: &str, now: f64) -> bool {
        match self.groups.get_mut(key) {
            Some(group) => {
                group.acked = Some((by.to_string(), now));
                true
            }
            None => false,
        }
    }

    /// The acknowledged groups: `(group key, by, at)`.
    pub fn acks(&self) -> Vec<(String, String, f64)> {
        self.groups
            .iter()
            .filter_map(|(k, g)| {
                g.acked
                    .as_ref()
                    .map(|(by, at)| (k.clone(), by.clone(), *at))
            })
            .collect()
    }

    /// After a restart: the group `key` was already notified (its notification is still open
    /// in the outbox), so its current firing members count as sent and the next notification
    /// waits for a change or the repeat interval. False when no such group exists.
    pub fn mark_notified(&mut self, key: &str, now: f64) -> bool {
        match self.groups.get_mut(key) {
            Some(group) => {
                group.sent = group
                    .alerts
                    .values()
                    .filter(|a| a.status == AlertStatus::Firing)
                    .map(|a| a.key.clone())
                    .collect();
                group.last_notified = Some(now);
                group.first_notified = Some(now);
                group.next_flush = now + group.grouping.group_interval.as_secs_f64();
                true
            }
            None => false,
        }
    }

    /// Every member of every group as last seen, with its group key.
    pub fn members(&self) -> impl Iterator<Item = (&str, &Alert)> {
        self.groups
            .iter()
            .flat_map(|(k, g)| g.alerts.values().map(move |a| (k.as_str(), a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;
    use crate::route::Routes;
    use std::time::Duration;

    fn node(i: usize, status: AlertStatus) -> Alert {
        Alert {
            key: format!("sipwatch/probe/fe-{i}/10.0.0.{i}:5060"),
            status,
            severity: Severity::Critical,
            summary: format!("fe-{i} is down"),
            description: String::new(),
            source: "d".into(),
            labels: BTreeMap::from([
                ("group".to_string(), "frontends".to_string()),
                ("target".to_string(), format!("fe-{i}")),
            ]),
            at: 0.0,
            url: None,
        }
    }

    fn route() -> Route {
        let grouping = Grouping {
            group_by: vec!["group".into()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
        };
        Routes::everyone(&["mail".into()], &grouping)
            .get("default")
            .unwrap()
            .clone()
    }

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("group".to_string(), "frontends".to_string())])
    }

    fn unmuted(_: &Alert) -> Option<String> {
        None
    }

    #[test]
    fn forty_nodes_in_group_wait_make_one_notification_then_one_resolve() {
        let r = route();
        let mut g = Grouper::new();
        for i in 0..40 {
            g.insert(
                1000.0 + i as f64 * 0.5,
                &r,
                labels(),
                &node(i, AlertStatus::Firing),
            );
        }
        assert_eq!(g.next_flush(), Some(1030.0));
        assert!(g.flush_due(1029.9, &unmuted).is_empty());
        let n = g.flush_due(1030.0, &unmuted);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].firing.len(), 40);
        assert_eq!(n[0].status, AlertStatus::Firing);
        assert_eq!(n[0].group_key, "sipwatch/notify/default/group=frontends");
        // Nothing changes: nothing sent at the next intervals.
        assert!(g.flush_due(1330.0, &unmuted).is_empty());
        // All resolve at once: one resolve at the next interval.
        for i in 0..40 {
            g.insert(1400.0, &r, labels(), &node(i, AlertStatus::Resolved));
        }
        assert!(
            g.flush_due(1500.0, &unmuted).is_empty(),
            "waits for group_interval"
        );
        let n = g.flush_due(1630.0, &unmuted);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].status, AlertStatus::Resolved);
        assert_eq!(n[0].resolved.len(), 40);
        assert_eq!(g.next_flush(), None, "the group ended");
    }

    #[test]
    fn member_changes_update_and_unchanged_groups_repeat() {
        let r = route();
        let mut g = Grouper::new();
        g.insert(0.0, &r, labels(), &node(1, AlertStatus::Firing));
        assert_eq!(g.flush_due(30.0, &unmuted).len(), 1);
        g.insert(40.0, &r, labels(), &node(2, AlertStatus::Firing));
        let n = g.flush_due(330.0, &unmuted);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].firing.len(), 2);
        assert!(!n[0].repeat);
        g.insert(400.0, &r, labels(), &node(1, AlertStatus::Resolved));
        let n = g.flush_due(630.0, &unmuted);
        assert_eq!(n[0].status, AlertStatus::Firing);
        assert_eq!(n[0].resolved.len(), 1);
        assert_eq!(n[0].firing.len(), 1);
        // Repeat 4 h after the last notification.
        let mut t = 630.0;
        let mut repeats = Vec::new();
        while t < 630.0 + 4.0 * 3600.0 + 600.0 {
            t += 300.0;
            repeats.extend(g.flush_due(t, &unmuted));
        }
        assert_eq!(repeats.len(), 1);
        assert!(repeats[0].repeat);
        assert!(repeats[0].at >= 630.0 + 4.0 * 3600.0);
    }

    #[test]
    fn muted_members_are_listed_not_sent_and_sent_when_unmuted() {
        let r = route();
        let mut g = Grouper::new();
        g.insert(0.0, &r, labels(), &node(1, AlertStatus::Firing));
        let silenced = |_: &Alert| Some("silenced by s1".to_string());
        assert!(g.flush_due(30.0, &silenced).is_empty());
        assert!(g.flush_due(330.0, &silenced).is_empty());
        let n = g.flush_due(630.0, &unmuted);
        assert_eq!(n.len(), 1, "sent once the silence ended");
        assert_eq!(n[0].firing.len(), 1);
    }

    #[test]
    fn a_group_restored_as_notified_waits_for_a_change() {
        let r = route();
        let mut g = Grouper::new();
        g.insert(0.0, &r, labels(), &node(1, AlertStatus::Firing));
        assert!(g.mark_notified("sipwatch/notify/default/group=frontends", 0.0));
        assert!(!g.mark_notified("sipwatch/notify/default/group=other", 0.0));
        assert!(g.flush_due(300.0, &unmuted).is_empty(), "no duplicate page");
        g.insert(310.0, &r, labels(), &node(1, AlertStatus::Resolved));
        let n = g.flush_due(600.0, &unmuted);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].status, AlertStatus::Resolved);
    }

    fn escalating_route() -> Route {
        let mut r = route();
        r.escalate = vec![
            EscalationLevel {
                after: Duration::from_secs(900),
                receivers: vec!["secondary".into()],
            },
            EscalationLevel {
                after: Duration::from_secs(1800),
                receivers: vec!["duty-manager".into()],
            },
        ];
        r
    }

    #[test]
    fn unacknowledged_groups_escalate_level_by_level_and_resolve_to_everyone() {
        let r = escalating_route();
        let mut g = Grouper::new();
        g.insert(0.0, &r, labels(), &node(1, AlertStatus::Firing));
        let n = g.flush_due(30.0, &unmuted);
        assert_eq!(n[0].receivers, ["mail"]);
        assert_eq!(g.next_flush(), Some(330.0));
        let mut sent = Vec::new();
        let mut t = 30.0;
        while t < 2000.0 {
            t = g.next_flush().unwrap();
            sent.extend(g.flush_due(t, &unmuted));
        }
        let escalations: Vec<(f64, Vec<String>, Option<usize>)> = sent
            .iter()
            .map(|n| (n.at, n.receivers.clone(), n.escalation))
            .collect();
        assert_eq!(
            escalations,
            [
                (930.0, vec!["secondary".to_string()], Some(1)),
                (1830.0, vec!["duty-manager".to_string()], Some(2)),
            ]
        );
        g.insert(2000.0, &r, labels(), &node(1, AlertStatus::Resolved));
        let n = g.flush_due(g.next_flush().unwrap(), &unmuted);
        assert_eq!(n[0].status, AlertStatus::Resolved);
        assert_eq!(n[0].receivers, ["mail", "secondary", "duty-manager"]);
    }

    #[test]
    fn an_acknowledged_group_does_not_escalate_but_still_resolves() {
        let r = escalating_route();
        let mut g = Grouper::new();
        g.insert(0.0, &r, labels(), &node(1, AlertStatus::Firing));
        g.flush_due(30.0, &unmuted);
        assert!(g.acknowledge("sipwatch/notify/default/group=frontends", "alice", 100.0));
        assert!(!g.acknowledge("sipwatch/notify/default/group=nope", "alice", 100.0));
        assert_eq!(g.acks()[0].1, "alice");
        let mut sent = Vec::new();
        let mut t = 30.0;
        while t < 4000.0 {
            t = g.next_flush().unwrap();
            sent.extend(g.flush_due(t, &unmuted));
        }
        assert!(sent.iter().all(|n| n.escalation.is_none()), "{sent:?}");
        g.insert(4000.0, &r, labels(), &node(1, AlertStatus::Resolved));
        let n = g.flush_due(g.next_flush().unwrap(), &unmuted);
        assert_eq!(n[0].status, AlertStatus::Resolved);
        assert_eq!(n[0].receivers, ["mail"]);
    }

    #[test]
    fn a_resolve_never_notified_is_not_sent() {
        let r = route();
        let mut g = Grouper::new();
        g.insert(0.0, &r, labels(), &node(1, AlertStatus::Firing));
        g.insert(10.0, &r, labels(), &node(1, AlertStatus::Resolved));
        assert!(g.flush_due(30.0, &unmuted).is_empty());
        assert_eq!(g.next_flush(), None);
        // A lone resolve for an unknown group does nothing.
        g.insert(40.0, &r, labels(), &node(2, AlertStatus::Resolved));
        assert_eq!(g.next_flush(), None);
    }
}
