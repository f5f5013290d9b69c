//! Alert control: routing, grouping, inhibition and silences composed into one sans-IO core.
//!
//! The daemon feeds every alert its rules raise or resolve into [`AlertControl::handle_alert`],
//! calls [`AlertControl::poll`] whenever [`AlertControl::poll_timeout`] has passed (a one-second
//! tick is fine), and puts each returned [`Notification`] into the outbox for its receivers
//! ([`Notification::to_alert`] renders it). Silences are added and expired through this type
//! too, so whether an alert is muted is decided in one place. Inputs never do I/O; `now` (unix
//! seconds) never goes backwards. Persisting run-time silences is the caller's job.
//!
//! What it deliberately does not do: deliver, retry or dedup across restarts (the outbox), or
//! decide that something is wrong (the daemon's alert rules).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::alert::{Alert, AlertStatus, Severity};
use crate::group::{Grouper, Notification};
use crate::inhibit::{inhibited_by, InhibitRule};
use crate::matcher::match_labels;
use crate::route::{group_labels, Routes};
use crate::silence::{Silence, Silences};

/// How a known firing alert stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    #[serde(flatten)]
    pub alert: Alert,
    /// `active` (notified), `silenced` or `inhibited`.
    pub state: &'static str,
    /// The silence id or the inhibiting alert's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The composed core (see the module docs).
#[derive(Debug, Clone)]
pub struct AlertControl {
    routes: Routes,
    inhibit: Vec<InhibitRule>,
    silences: Silences,
    grouper: Grouper,
    /// Alerts firing now, by key, with their match labels.
    firing: BTreeMap<String, (Alert, BTreeMap<String, String>)>,
}

impl AlertControl {
    pub fn new(routes: Routes, inhibit: Vec<InhibitRule>, silences: Vec<Silence>) -> AlertControl {
        AlertControl {
            routes,
            inhibit,
            silences: Silences::new(silences),
            grouper: Grouper::new(),
            firing: BTreeMap::new(),
        }
    }

    /// Input: an alert raised or resolved at `now`.
    pub fn handle_alert(&mut self, now: f64, alert: &Alert) {
        let labels = match_labels(alert);
        match alert.status {
            AlertStatus::Firing => {
                self.firing
                    .insert(alert.key.clone(), (alert.clone(), labels.clone()));
            }
            AlertStatus::Resolved => {
                self.firing.remove(&alert.key);
            }
        }
        for route in self.routes.select(&labels) {
            let group = group_labels(route, &labels, &alert.key);
            self.grouper.insert(now, route, group, alert);
        }
    }

    /// The receivers the routes give this alert (for receivers that group by themselves,
    /// like Alertmanager, which get single alerts rather than notifications).
    pub fn receivers_for(&self, alert: &Alert) -> Vec<String> {
        let labels = match_labels(alert);
        let mut out: Vec<String> = Vec::new();
        for route in self.routes.select(&labels) {
            for r in &route.receivers {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            }
        }
        out
    }

    /// After a restart, for each notification still open in the outbox: its group counts as
    /// notified. False when the group has no firing member any more (the caller resolves it).
    pub fn restore_notified(&mut self, group_key: &str, now: f64) -> bool {
        self.grouper.mark_notified(group_key, now)
    }

    /// Input: someone acknowledged the notification `group_key` (escalation stops). False
    /// when no such group fires.
    pub fn acknowledge(&mut self, group_key: &str, by: &str, now: f64) -> bool {
        self.grouper.acknowledge(group_key, by, now)
    }

    /// Acknowledged groups: `(group key, by, at)`.
    pub fn acks(&self) -> Vec<(String, String, f64)> {
        self.grouper.acks()
    }

    /// The receivers of the route named `name`.
    pub fn route_receivers(&self, name: &str) -> Option<Vec<String>> {
        self.routes.get(name).map(|r| r.receivers.clone())
    }

    /// Why a firing alert is muted at `now`, if it is.
    fn mute_reason(&self, alert: &Alert, now: f64) -> Option<(&'static str, String)> {
        let labels = match_labels(alert);
        if let Some(id) = self.silences.muting(&labels, now) {
            return Some(("silenced", id.to_string()));
        }
        let firing = self.firing.iter().map(|(k, (_, l))| (k.as_str(), l));
        inhibited_by(&self.inhibit, &alert.key, &labels, firing)
            .map(|key| ("inhibited", key.to_string()))
    }

    /// Output: the notifications due at `now`.
    pub fn poll(&mut self, now: f64) -> Vec<Notification> {
        let this = &*self;
        let reasons: BTreeMap<String, String> = self
            .grouper
            .members()
            .filter(|(_, a)| a.status == AlertStatus::Firing)
            .filter_map(|(_, a)| {
                this.mute_reason(a, now)
                    .map(|(what, by)| (a.key.clone(), format!("{what} by {by}")))
            })
            .collect();
        self.grouper
            .flush_due(now, &|a: &Alert| reasons.get(&a.key).cloned())
    }

    /// Output: when [`AlertControl::poll`] has work next (unix seconds).
    pub fn poll_timeout(&self) -> Option<f64> {
        self.grouper.next_flush()
    }

    /// Input: a new silence (or a changed one with the same id). Refused when invalid.
    pub fn add_silence(&mut self, silence: Silence) -> Result<(), String> {
        silence.validate()?;
        self.silences.upsert(silence);
        Ok(())
    }

    /// Input: ends a silence now. False when unknown or already over.
    pub fn expire_silence(&mut self, id: &str, now: f64) -> bool {
        self.silences.expire(id, now)
    }

    /// Drops silences over for more than a day.
    pub fn forget_expired(&mut self, now: f64) {
        self.silences.forget_expired(now, 86_400.0);
    }

    pub fn silences(&self) -> &[Silence] {
        self.silences.all()
    }

    pub fn silence(&self, id: &str) -> Option<&Silence> {
        self.silences.get(id)
    }

    /// Every firing alert and whether it is notified, silenced or inhibited at `now`.
    pub fn alerts(&self, now: f64) -> Vec<AlertView> {
        self.firing
            .values()
            .map(|(alert, _)| match self.mute_reason(alert, now) {
                Some((state, by)) => AlertView {
                    alert: alert.clone(),
                    state,
                    by: Some(by),
                },
                None => AlertView {
                    alert: alert.clone(),
                    state: "active",
                    by: None,
                },
            })
            .collect()
    }
}

/// How to say "N of these" for well-known alert names.
fn phrase(alertname: &str, n: usize) -> String {
    let (one, many) = match alertname {
        "SipNodeDown" => ("node down", "nodes down"),
        "SipNodeDegraded" => ("node degraded", "nodes degraded"),
        "SipNodeFlapping" => ("node flapping", "nodes flapping"),
        "SipGroupBelowQuorum" => ("group below quorum", "groups below quorum"),
        "ServiceLeak" => ("leak", "leaks"),
        "ServiceLogAlert" => ("log alert", "log alerts"),
        "ServiceMissing" => ("service not running", "services not running"),
        crate::inhibit::AGENT_SILENT => ("agent silent", "agents silent"),
        other => return format!("{n} {other}"),
    };
    format!("{n} {}", if n == 1 { one } else { many })
}

fn what(alerts: &[Alert]) -> String {
    if let [only] = alerts {
        return only.summary.clone();
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for a in alerts {
        *counts.entry(a.alertname().to_string()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(name, n)| phrase(name, *n))
        .collect::<Vec<_>>()
        .join(", ")
}

fn local_time(unix: f64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(unix.floor() as i64, 0) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.format("%Y-%m-%d %H:%M:%S %Z").to_string()
        }
        chrono::LocalResult::None => crate::alert::rfc3339(unix),
    }
}

impl Notification {
    /// The group's name for people: its label values (`frontends`, `fe-2`).
    pub fn group_name(&self) -> String {
        self.group_labels
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `[FIRING:40] frontends: 40 nodes down` / `[RESOLVED] frontends: 40 nodes down`;
    /// escalations start with `[ESCALATED]`.
    pub fn title(&self) -> String {
        if self.escalation.is_some() {
            return format!(
                "[ESCALATED] [FIRING:{}] {}: {}",
                self.firing.len(),
                self.group_name(),
                what(&self.firing)
            );
        }
        match self.status {
            AlertStatus::Firing => format!(
                "[FIRING:{}] {}: {}",
                self.firing.len(),
                self.group_name(),
                what(&self.firing)
            ),
            AlertStatus::Resolved => {
                format!("[RESOLVED] {}: {}", self.group_name(), what(&self.resolved))
            }
        }
    }

    /// The notification as one alert for the outbox and the notifiers: key = group key,
    /// summary = title, description = a body a person reads at 3 a.m.
    pub fn to_alert(&self, source: &str, url: Option<&str>) -> Alert {
        let mut body = String::new();
        let state = match self.status {
            AlertStatus::Firing if self.repeat => "still firing (reminder)",
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        };
        if let Some(level) = self.escalation {
            let _ = writeln!(
                body,
                "Escalated (level {level}): nobody acknowledged this in time.\n"
            );
        }
        let _ = writeln!(
            body,
            "Group {} is {state}: {} firing, {} resolved since the last notice, {} muted.",
            self.group_name(),
            self.firing.len(),
            self.resolved.len(),
            self.muted.len()
        );
        let section = |body: &mut String, title: &str, alerts: &[(&Alert, Option<&str>)]| {
            if alerts.is_empty() {
                return;
            }
            let _ = writeln!(body, "\n{title} ({}):", alerts.len());
            for (a, why) in alerts {
                let since = match a.status {
                    AlertStatus::Firing => "since",
                    AlertStatus::Resolved => "resolved",
                };
                let _ = write!(body, "- {} ({since} {})", a.summary, local_time(a.at));
                if let Some(why) = why {
                    let _ = write!(body, " [{why}]");
                }
                body.push('\n');
            }
        };
        let firing: Vec<_> = self.firing.iter().map(|a| (a, None)).collect();
        let resolved: Vec<_> = self.resolved.iter().map(|a| (a, None)).collect();
        let muted: Vec<_> = self
            .muted
            .iter()
            .map(|(a, why)| (a, Some(why.as_str())))
            .collect();
        section(&mut body, "Firing", &firing);
        section(&mut body, "Resolved", &resolved);
        section(&mut body, "Muted, not paged separately", &muted);
        if let Some(url) = url {
            let _ = writeln!(body, "\nStatus page: {url}");
        }
        let members: Vec<&Alert> = self
            .firing
            .iter()
            .chain(self.resolved.iter())
            .chain(self.muted.iter().map(|(a, _)| a))
            .collect();
        let severity = members
            .iter()
            .map(|a| a.severity)
            .min()
            .unwrap_or(Severity::Warning);
        let mut labels = self.group_labels.clone();
        let names: std::collections::BTreeSet<&str> =
            members.iter().map(|a| a.alertname()).collect();
        if let [name] = names.into_iter().collect::<Vec<_>>()[..] {
            labels.insert("alertname".into(), name.to_string());
        } else {
            labels.insert("alertname".into(), "SipwatchGroup".into());
        }
        labels.insert("route".into(), self.route.clone());
        labels.insert("grouped".into(), self.firing.len().to_string());
        if let Some(level) = self.escalation {
            labels.insert("escalation".into(), level.to_string());
        }
        let at = match self.status {
            AlertStatus::Firing => self
                .firing
                .iter()
                .map(|a| a.at)
                .min_by(|a, b| a.total_cmp(b))
                .unwrap_or(self.at),
            AlertStatus::Resolved => self.at,
        };
        Alert {
            key: self.group_key.clone(),
            status: self.status,
            severity,
            summary: self.title(),
            description: body,
            source: source.to_string(),
            labels,
            at,
            url: url.map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inhibit::default_rules;
    use crate::matcher::Matcher;
    use crate::route::Grouping;
    use std::time::Duration;

    fn grouping() -> Grouping {
        Grouping {
            group_by: vec!["group".into()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
        }
    }

    fn control() -> AlertControl {
        AlertControl::new(
            Routes::everyone(&["mail".into()], &grouping()),
            default_rules(),
            Vec::new(),
        )
    }

    fn node(i: usize, status: AlertStatus, at: f64) -> Alert {
        Alert {
            key: format!("sipwatch/probe/fe-{i}/10.0.0.{i}:5060"),
            status,
            severity: Severity::Critical,
            summary: format!("fe-{i} node 10.0.0.{i}:5060 is down: timeout"),
            description: String::new(),
            source: "d".into(),
            labels: BTreeMap::from([
                ("alertname".to_string(), "SipNodeDown".to_string()),
                ("group".to_string(), "frontends".to_string()),
                ("target".to_string(), format!("fe-{i}")),
            ]),
            at,
            url: None,
        }
    }

    fn group_alert(status: AlertStatus, at: f64) -> Alert {
        Alert {
            key: "sipwatch/group/frontends".into(),
            status,
            severity: Severity::Critical,
            summary: "group frontends is below quorum: 0 of min 2 serving".into(),
            description: String::new(),
            source: "d".into(),
            labels: BTreeMap::from([
                ("alertname".to_string(), "SipGroupBelowQuorum".to_string()),
                ("group".to_string(), "frontends".to_string()),
            ]),
            at,
            url: None,
        }
    }

    #[test]
    fn forty_nodes_down_read_as_one_grouped_page() {
        let mut c = control();
        for i in 0..40 {
            c.handle_alert(100.0, &node(i, AlertStatus::Firing, 100.0));
        }
        let n = c.poll(130.0);
        assert_eq!(n.len(), 1);
        let a = n[0].to_alert("prober", Some("http://status/"));
        assert_eq!(a.summary, "[FIRING:40] frontends: 40 nodes down");
        assert_eq!(a.key, "sipwatch/notify/default/group=frontends");
        assert_eq!(a.labels["alertname"], "SipNodeDown");
        assert!(a.description.contains("Firing (40):"), "{}", a.description);
        assert!(a.description.contains("fe-39 node"), "{}", a.description);
        assert!(a.description.contains("Status page: http://status/"));
    }

    #[test]
    fn a_group_below_quorum_pages_once_for_the_group_listing_its_nodes() {
        let mut c = control();
        for i in 0..3 {
            c.handle_alert(100.0, &node(i, AlertStatus::Firing, 100.0));
        }
        c.handle_alert(101.0, &group_alert(AlertStatus::Firing, 101.0));
        let n = c.poll(130.0);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].firing.len(), 1, "{n:?}");
        assert_eq!(n[0].firing[0].key, "sipwatch/group/frontends");
        assert_eq!(n[0].muted.len(), 3);
        let a = n[0].to_alert("p", None);
        assert!(
            a.summary
                .starts_with("[FIRING:1] frontends: group frontends is below quorum"),
            "{}",
            a.summary
        );
        assert!(a
            .description
            .contains("inhibited by sipwatch/group/frontends"));
        let views = c.alerts(130.0);
        assert_eq!(views.iter().filter(|v| v.state == "inhibited").count(), 3);
    }

    #[test]
    fn a_silence_holds_the_alert_and_its_end_releases_it() {
        let mut c = control();
        c.add_silence(Silence {
            id: "s1".into(),
            matchers: vec![Matcher::parse("target=fe-2").unwrap()],
            starts: 0.0,
            ends: 500.0,
            comment: "swap".into(),
            created_by: "test".into(),
        })
        .unwrap();
        c.handle_alert(100.0, &node(2, AlertStatus::Firing, 100.0));
        assert!(c.poll(130.0).is_empty());
        assert_eq!(c.alerts(130.0)[0].state, "silenced");
        assert!(c.poll(430.0).is_empty());
        let n = c.poll(730.0);
        assert_eq!(n.len(), 1, "released after the silence ended");
        // Expiring early releases at the next flush too.
        let mut c = control();
        c.add_silence(Silence {
            id: "s2".into(),
            matchers: vec![Matcher::parse("target=fe-3").unwrap()],
            starts: 0.0,
            ends: 10_000.0,
            comment: String::new(),
            created_by: "test".into(),
        })
        .unwrap();
        c.handle_alert(0.0, &node(3, AlertStatus::Firing, 0.0));
        assert!(c.poll(30.0).is_empty());
        assert!(c.expire_silence("s2", 100.0));
        assert_eq!(c.poll(330.0).len(), 1);
    }

    #[test]
    fn routes_split_receivers_and_groups() {
        let routes = Routes::new(
            &toml::from_str::<RouteDoc>(
                "[[route]]\nmatchers = [\"severity=critical\"]\nreceivers = [\"pager\"]\ngroup_wait = \"0s\"\n\
                 [[route]]\nreceivers = [\"mail\"]\n",
            )
            .unwrap()
            .route,
            &["pager".into(), "mail".into()],
            &grouping(),
        )
        .unwrap();
        let mut c = AlertControl::new(routes, default_rules(), Vec::new());
        c.handle_alert(0.0, &node(1, AlertStatus::Firing, 0.0));
        let mut warn = node(2, AlertStatus::Firing, 0.0);
        warn.severity = Severity::Warning;
        c.handle_alert(0.0, &warn);
        let n = c.poll(0.0);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].receivers, ["pager"]);
        let n = c.poll(30.0);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].receivers, ["mail"]);
    }

    #[derive(serde::Deserialize)]
    struct RouteDoc {
        route: Vec<crate::route::RouteConfig>,
    }
}
