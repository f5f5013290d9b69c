//! The Atlassian Statuspage v2 JSON shapes (`summary.json`, `status.json`, `components.json`,
//! `incidents.json`), built from a [`Snapshot`] and a list of incidents.
//!
//! Every target is a component named as the target; every group is a component with
//! `group: true` and the ids of its members in `components`; members carry `group_id`. Ids are
//! derived from names (12 characters, like Statuspage's), so they survive restarts and reloads and
//! a dashboard may pin them. The page indicator is the worst component status
//! ([`page_indicator`]). Pure functions: no clock, no I/O; the router passes the time and the
//! page URL in.
//!
//! `scheduled_maintenances` lists every `[[maintenance]]` window, in progress or its next
//! occurrence (`scheduled_for`/`scheduled_until`, `impact: maintenance`); its `created_at` is the
//! occurrence's start (sipwatch does not store when a window was written). `page.time_zone` is
//! `[status] time_zone` (UTC when not set).
//!
//! What sipwatch does not have is left empty or null rather than invented:
//! `start_date` and tweet fields are null. A component's
//! `created_at`/`updated_at` are the oldest/newest state change of its nodes (sipwatch does not
//! store when a target entered the config).

use serde::Serialize;

use crate::daemon::model::{
    page_indicator, ComponentStatus, Incident, Snapshot, TargetView, UnixTime,
};

/// `page` object of every Statuspage feed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PageInfo {
    pub id: String,
    pub name: String,
    pub url: String,
    pub time_zone: String,
    pub updated_at: String,
}

/// `status` object: the page indicator and its words.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PageStatus {
    /// `none`, `minor`, `major` or `critical`.
    pub indicator: &'static str,
    pub description: &'static str,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Component {
    pub id: String,
    pub name: String,
    pub status: ComponentStatus,
    pub created_at: String,
    pub updated_at: String,
    /// 1-based, among the page's top level (groups and ungrouped targets) or within the group.
    pub position: usize,
    pub description: Option<String>,
    pub showcase: bool,
    pub start_date: Option<String>,
    pub group_id: Option<String>,
    pub page_id: String,
    pub group: bool,
    pub only_show_if_degraded: bool,
    /// Member component ids; present on groups only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentUpdateJson {
    pub id: String,
    /// `investigating`, `identified`, `monitoring` or `resolved`.
    pub status: String,
    pub body: String,
    pub incident_id: String,
    pub created_at: String,
    pub updated_at: String,
    pub display_at: String,
    pub affected_components: Option<Vec<serde_json::Value>>,
    pub deliver_notifications: bool,
    pub custom_tweet: Option<String>,
    pub tweet_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentJson {
    pub id: String,
    pub name: String,
    /// `investigating`, `identified`, `monitoring` or `resolved`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub monitoring_at: Option<String>,
    pub resolved_at: Option<String>,
    /// `none`, `minor`, `major` or `critical`.
    pub impact: &'static str,
    pub shortlink: String,
    pub started_at: String,
    pub page_id: String,
    /// Newest first, like Statuspage.
    pub incident_updates: Vec<IncidentUpdateJson>,
    pub components: Vec<Component>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub page: PageInfo,
    pub components: Vec<Component>,
    pub incidents: Vec<IncidentJson>,
    pub scheduled_maintenances: Vec<ScheduledMaintenanceJson>,
    pub status: PageStatus,
}

/// A scheduled maintenance in the Statuspage shape: an incident with `impact: maintenance`,
/// `status` `scheduled` or `in_progress`, and the window in `scheduled_for`/`scheduled_until`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduledMaintenanceJson {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub created_at: String,
    pub updated_at: String,
    pub monitoring_at: Option<String>,
    pub resolved_at: Option<String>,
    pub impact: &'static str,
    pub shortlink: String,
    pub started_at: String,
    pub page_id: String,
    pub incident_updates: Vec<IncidentUpdateJson>,
    pub components: Vec<Component>,
    pub scheduled_for: String,
    pub scheduled_until: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduledMaintenancesFeed {
    pub page: PageInfo,
    pub scheduled_maintenances: Vec<ScheduledMaintenanceJson>,
}

/// Which maintenances a feed lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaintenanceFilter {
    All,
    Upcoming,
    Active,
}

/// `scheduled-maintenances.json`, `.../upcoming.json` (not started) and `.../active.json` (in
/// progress).
pub fn scheduled_maintenances_feed(
    snapshot: &Snapshot,
    url: &str,
    filter: MaintenanceFilter,
) -> ScheduledMaintenancesFeed {
    let page = page_info(snapshot, url);
    let all = scheduled_maintenances(snapshot, &page);
    ScheduledMaintenancesFeed {
        scheduled_maintenances: all
            .into_iter()
            .filter(|m| match filter {
                MaintenanceFilter::All => true,
                MaintenanceFilter::Upcoming => m.status == "scheduled",
                MaintenanceFilter::Active => m.status == "in_progress",
            })
            .collect(),
        page,
    }
}

/// Every maintenance window of the snapshot in the Statuspage shape, soonest first.
pub fn scheduled_maintenances(
    snapshot: &Snapshot,
    page: &PageInfo,
) -> Vec<ScheduledMaintenanceJson> {
    let zone = crate::daemon::timefmt::zone_or_utc(&snapshot.time_zone);
    let all_components = components(snapshot);
    snapshot
        .scheduled_maintenances
        .iter()
        .map(|m| {
            let covered: Vec<&str> = m
                .targets
                .iter()
                .chain(m.groups.iter())
                .map(String::as_str)
                .collect();
            let id = stable_id("maintenance", &format!("{}@{}", m.schedule, m.starts_at));
            let status = if m.in_progress {
                "in_progress"
            } else {
                "scheduled"
            };
            let components: Vec<Component> = all_components
                .iter()
                .filter(|c| {
                    covered.contains(&c.name.as_str())
                        || c.group_id
                            .as_ref()
                            .is_some_and(|gid| m.groups.iter().any(|g| &group_id(g) == gid))
                })
                .cloned()
                .collect();
            let body = format!(
                "Maintenance of {} from {} to {} ({}, {}). Alerts are held; probing goes on.",
                covered.join(", "),
                crate::daemon::timefmt::date_time(m.starts_at, zone),
                crate::daemon::timefmt::clock(m.ends_at, m.starts_at, zone),
                m.schedule,
                crate::daemon::timefmt::duration(m.ends_at - m.starts_at),
            );
            ScheduledMaintenanceJson {
                name: format!("Maintenance: {}", covered.join(", ")),
                status,
                created_at: rfc3339(m.starts_at),
                updated_at: rfc3339(m.starts_at),
                monitoring_at: None,
                resolved_at: None,
                impact: "maintenance",
                shortlink: format!("{}#maintenance-{id}", page.url),
                started_at: rfc3339(m.starts_at),
                page_id: page.id.clone(),
                incident_updates: vec![IncidentUpdateJson {
                    id: stable_id("maintenance_update", &id),
                    status: status.to_string(),
                    body,
                    incident_id: id.clone(),
                    created_at: rfc3339(m.starts_at),
                    updated_at: rfc3339(m.starts_at),
                    display_at: rfc3339(m.starts_at),
                    affected_components: None,
                    deliver_notifications: true,
                    custom_tweet: None,
                    tweet_id: None,
                }],
                components,
                scheduled_for: rfc3339(m.starts_at),
                scheduled_until: rfc3339(m.ends_at),
                id,
            }
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusFeed {
    pub page: PageInfo,
    pub status: PageStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ComponentsFeed {
    pub page: PageInfo,
    pub components: Vec<Component>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentsFeed {
    pub page: PageInfo,
    pub incidents: Vec<IncidentJson>,
}

/// A stable 12-character id (`[0-9a-v]`) for `name` of `kind` (`page`, `component`, `group`,
/// `incident`, ...): FNV-1a 64 over kind and name, 60 bits in base 32.
pub fn stable_id(kind: &str, name: &str) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in kind.bytes().chain([0u8]).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..12)
        .map(|i| char::from(ALPHABET[((hash >> (i * 5)) & 31) as usize]))
        .collect()
}

/// Id of a target's component.
pub fn target_id(name: &str) -> String {
    stable_id("component", name)
}

/// Id of a group's component (a different kind, so a group may share a target's name).
pub fn group_id(name: &str) -> String {
    stable_id("group", name)
}

/// Id of an incident (from the store's row id, which never changes).
pub fn incident_id(incident: &Incident) -> String {
    stable_id("incident", &incident.id.to_string())
}

/// RFC 3339 in UTC with milliseconds, as Statuspage writes times (`2024-05-13T18:09:24.361Z`).
pub fn rfc3339(t: UnixTime) -> String {
    let millis = if t.is_finite() {
        (t * 1000.0).round() as i64
    } else {
        0
    };
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The page's name: the configured one, or "sipwatch".
pub fn page_name(snapshot: &Snapshot) -> &str {
    if snapshot.page_name.trim().is_empty() {
        "sipwatch"
    } else {
        &snapshot.page_name
    }
}

pub fn page_info(snapshot: &Snapshot, url: &str) -> PageInfo {
    let name = page_name(snapshot);
    PageInfo {
        id: stable_id("page", name),
        name: name.to_owned(),
        url: url.to_owned(),
        time_zone: if snapshot.time_zone.is_empty() || snapshot.time_zone == "UTC" {
            "Etc/UTC".to_owned()
        } else {
            snapshot.time_zone.clone()
        },
        updated_at: rfc3339(snapshot.generated_at),
    }
}

/// The worst status of any target or group; operational for an empty page.
pub fn worst_status(snapshot: &Snapshot) -> ComponentStatus {
    snapshot
        .targets
        .iter()
        .map(|t| t.status)
        .chain(snapshot.groups.iter().map(|g| g.status))
        .max()
        .unwrap_or(ComponentStatus::Operational)
}

/// Statuspage's words for an indicator; "under maintenance" when that is all there is.
pub fn indicator_description(worst: ComponentStatus) -> &'static str {
    match worst {
        ComponentStatus::Operational => "All Systems Operational",
        ComponentStatus::UnderMaintenance => "Service Under Maintenance",
        ComponentStatus::DegradedPerformance => "Minor Service Outage",
        ComponentStatus::PartialOutage => "Partial System Outage",
        ComponentStatus::MajorOutage => "Major System Outage",
    }
}

pub fn page_status(snapshot: &Snapshot) -> PageStatus {
    let worst = worst_status(snapshot);
    PageStatus {
        indicator: page_indicator(worst),
        description: indicator_description(worst),
    }
}

fn node_change_span(targets: &[&TargetView], fallback: UnixTime) -> (UnixTime, UnixTime) {
    let sinces = targets.iter().flat_map(|t| t.nodes.iter().map(|n| n.since));
    let (lo, hi) = sinces.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| {
        (lo.min(s), hi.max(s))
    });
    if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (fallback, fallback)
    }
}

fn target_component(
    t: &TargetView,
    position: usize,
    group_id: Option<String>,
    page_id: &str,
    generated_at: UnixTime,
) -> Component {
    let (created, updated) = node_change_span(&[t], generated_at);
    Component {
        id: target_id(&t.name),
        name: t.name.clone(),
        status: t.status,
        created_at: rfc3339(created),
        updated_at: rfc3339(updated),
        position,
        description: Some(format!("{} {}", t.method, t.uri)),
        showcase: false,
        start_date: None,
        group_id,
        page_id: page_id.to_owned(),
        group: false,
        only_show_if_degraded: false,
        components: None,
    }
}

/// Targets of `group` in the group's member order, then any target naming the group that the
/// member list misses.
pub fn group_members<'a>(snapshot: &'a Snapshot, group: &str) -> Vec<&'a TargetView> {
    let mut members: Vec<&TargetView> = Vec::new();
    if let Some(g) = snapshot.groups.iter().find(|g| g.name == group) {
        for m in &g.members {
            if let Some(t) = snapshot.targets.iter().find(|t| &t.name == m) {
                members.push(t);
            }
        }
    }
    for t in &snapshot.targets {
        if t.group.as_deref() == Some(group) && !members.iter().any(|m| m.name == t.name) {
            members.push(t);
        }
    }
    members
}

/// Targets whose group is not on the page (none configured, or unknown).
pub fn ungrouped_targets(snapshot: &Snapshot) -> Vec<&TargetView> {
    snapshot
        .targets
        .iter()
        .filter(|t| {
            !snapshot
                .groups
                .iter()
                .any(|g| t.group.as_deref() == Some(g.name.as_str()) || g.members.contains(&t.name))
        })
        .map(|t| &**t)
        .collect()
}

/// All components: each group followed by its members, then the ungrouped targets.
pub fn components(snapshot: &Snapshot) -> Vec<Component> {
    let page_id = stable_id("page", page_name(snapshot));
    let mut out = Vec::new();
    let mut top = 0;
    for g in &snapshot.groups {
        top += 1;
        let gid = group_id(&g.name);
        let members = group_members(snapshot, &g.name);
        let (created, updated) = node_change_span(&members, snapshot.generated_at);
        out.push(Component {
            id: gid.clone(),
            name: g.name.clone(),
            status: g.status,
            created_at: rfc3339(created),
            updated_at: rfc3339(updated),
            position: top,
            description: Some(format!(
                "{} of {} up, min {}",
                g.serving,
                g.members.len(),
                g.min_up
            )),
            showcase: false,
            start_date: None,
            group_id: None,
            page_id: page_id.clone(),
            group: true,
            only_show_if_degraded: false,
            components: Some(members.iter().map(|t| target_id(&t.name)).collect()),
        });
        for (i, t) in members.iter().enumerate() {
            out.push(target_component(
                t,
                i + 1,
                Some(gid.clone()),
                &page_id,
                snapshot.generated_at,
            ));
        }
    }
    for t in ungrouped_targets(snapshot) {
        top += 1;
        out.push(target_component(
            t,
            top,
            None,
            &page_id,
            snapshot.generated_at,
        ));
    }
    out
}

/// The incident's Statuspage status: `resolved` once resolved, else its latest update's status,
/// else `investigating`.
pub fn incident_status(incident: &Incident) -> String {
    if incident.resolved_at.is_some() {
        return "resolved".to_owned();
    }
    incident
        .updates
        .iter()
        .max_by(|a, b| a.at.total_cmp(&b.at))
        .map(|u| u.status.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "investigating".to_owned())
}

/// The name an incident's key (`target:NAME`, `group:NAME`) points at.
pub fn incident_subject(incident: &Incident) -> (&str, &str) {
    match incident.key.split_once(':') {
        Some((kind, name)) => (kind, name),
        None => ("", incident.key.as_str()),
    }
}

pub fn incident(
    incident: &Incident,
    all_components: &[Component],
    page: &PageInfo,
) -> IncidentJson {
    let id = incident_id(incident);
    let mut updates: Vec<(usize, &crate::daemon::model::IncidentUpdate)> =
        incident.updates.iter().enumerate().collect();
    updates.sort_by(|a, b| b.1.at.total_cmp(&a.1.at).then(b.0.cmp(&a.0)));
    let last_change = incident
        .updates
        .iter()
        .map(|u| u.at)
        .chain(incident.resolved_at)
        .fold(incident.opened_at, f64::max);
    let monitoring_at = incident
        .updates
        .iter()
        .filter(|u| u.status == "monitoring")
        .map(|u| u.at)
        .reduce(f64::min);
    let (kind, subject) = incident_subject(incident);
    let subject_id = match kind {
        "group" => Some(group_id(subject)),
        "target" => Some(target_id(subject)),
        _ => None,
    };
    let components = all_components
        .iter()
        .filter(|c| {
            Some(&c.id) == subject_id.as_ref() || (!c.group && incident.affected.contains(&c.name))
        })
        .cloned()
        .collect();
    IncidentJson {
        name: incident.title.clone(),
        status: incident_status(incident),
        created_at: rfc3339(incident.opened_at),
        updated_at: rfc3339(last_change),
        monitoring_at: monitoring_at.map(rfc3339),
        resolved_at: incident.resolved_at.map(rfc3339),
        impact: page_indicator(incident.impact),
        shortlink: format!("{}#incident-{}", page.url, id),
        started_at: rfc3339(incident.opened_at),
        page_id: page.id.clone(),
        incident_updates: updates
            .into_iter()
            .map(|(i, u)| IncidentUpdateJson {
                id: stable_id("incident_update", &format!("{}:{}", incident.id, i)),
                status: u.status.clone(),
                body: u.body.clone(),
                incident_id: id.clone(),
                created_at: rfc3339(u.at),
                updated_at: rfc3339(u.at),
                display_at: rfc3339(u.at),
                affected_components: None,
                deliver_notifications: true,
                custom_tweet: None,
                tweet_id: None,
            })
            .collect(),
        components,
        id,
    }
}

pub fn summary(snapshot: &Snapshot, url: &str) -> Summary {
    let page = page_info(snapshot, url);
    let page_for_maintenances = page.clone();
    let components = components(snapshot);
    let incidents = snapshot
        .open_incidents
        .iter()
        .filter(|i| i.resolved_at.is_none())
        .map(|i| incident(i, &components, &page))
        .collect();
    Summary {
        status: page_status(snapshot),
        page,
        components,
        incidents,
        scheduled_maintenances: scheduled_maintenances(snapshot, &page_for_maintenances),
    }
}

pub fn status_feed(snapshot: &Snapshot, url: &str) -> StatusFeed {
    StatusFeed {
        page: page_info(snapshot, url),
        status: page_status(snapshot),
    }
}

pub fn components_feed(snapshot: &Snapshot, url: &str) -> ComponentsFeed {
    ComponentsFeed {
        page: page_info(snapshot, url),
        components: components(snapshot),
    }
}

/// `incidents` newest first (the caller merges open and past ones, see `merge_incidents`).
pub fn incidents_feed(snapshot: &Snapshot, url: &str, incidents: &[Incident]) -> IncidentsFeed {
    let page = page_info(snapshot, url);
    let components = components(snapshot);
    IncidentsFeed {
        incidents: incidents
            .iter()
            .map(|i| incident(i, &components, &page))
            .collect(),
        page,
    }
}

/// Open incidents from the snapshot (fresher) and past ones from the history, deduplicated by id,
/// newest opened first, at most `limit`.
pub fn merge_incidents(open: &[Incident], past: &[Incident], limit: usize) -> Vec<Incident> {
    let mut all: Vec<Incident> = open.to_vec();
    for p in past {
        if !all.iter().any(|o| o.id == p.id) {
            all.push(p.clone());
        }
    }
    all.sort_by(|a, b| b.opened_at.total_cmp(&a.opened_at).then(b.id.cmp(&a.id)));
    all.truncate(limit);
    all
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::daemon::model::{
        GroupState, GroupView, IncidentUpdate, NodeState, NodeView, Observation,
    };
    use serde_json::Value;
    use std::sync::Arc;

    pub(crate) fn node(addr: &str, state: NodeState, since: UnixTime) -> NodeView {
        NodeView {
            node: addr.to_owned(),
            transport: "udp".to_owned(),
            state,
            since,
            flapping: false,
            consecutive_failures: 0,
            consecutive_successes: 3,
            last: Some(Observation {
                at: since + 10.0,
                status: sipwatch_probes::outcome::Status::Ok,
                result: sipwatch_probes::outcome::ResultKind::Ok,
                code: Some(200),
                rtt_ms: Some(1.5),
                reason: "OK".to_owned(),
                cert_days_left: None,
            }),
        }
    }

    pub(crate) fn target(
        name: &str,
        group: Option<&str>,
        status: ComponentStatus,
        nodes: Vec<NodeView>,
    ) -> Arc<TargetView> {
        Arc::new(TargetView {
            name: name.to_owned(),
            uri: format!("sip:{name}.example.net"),
            method: "OPTIONS".to_owned(),
            group: group.map(str::to_owned),
            nodes,
            status,
            in_maintenance: false,
            dns_error: None,
        })
    }

    pub(crate) fn snapshot() -> Snapshot {
        Snapshot {
            generated_at: 1_700_000_000.0,
            page_name: "Voice platform".to_owned(),
            targets: vec![
                target(
                    "rec-1",
                    Some("recorders"),
                    ComponentStatus::Operational,
                    vec![node("10.0.0.1:5060", NodeState::Up, 1_699_990_000.0)],
                ),
                target(
                    "rec-2",
                    Some("recorders"),
                    ComponentStatus::MajorOutage,
                    vec![node("10.0.0.2:5060", NodeState::Down, 1_699_999_000.0)],
                ),
                target(
                    "edge",
                    None,
                    ComponentStatus::Operational,
                    vec![node("10.0.1.1:5060", NodeState::Up, 1_699_000_000.0)],
                ),
            ],
            groups: vec![GroupView {
                name: "recorders".to_owned(),
                min_up: 1,
                members: vec!["rec-1".to_owned(), "rec-2".to_owned()],
                serving: 1,
                state: GroupState::Degraded,
                status: ComponentStatus::PartialOutage,
                in_maintenance: false,
            }],
            open_incidents: vec![Incident {
                id: 7,
                key: "target:rec-2".to_owned(),
                title: "rec-2 is down".to_owned(),
                impact: ComponentStatus::MajorOutage,
                opened_at: 1_699_999_000.0,
                resolved_at: None,
                affected: vec!["rec-2 10.0.0.2:5060".to_owned()],
                updates: vec![
                    IncidentUpdate {
                        at: 1_699_999_000.0,
                        status: "investigating".to_owned(),
                        body: "10.0.0.2:5060 timed out".to_owned(),
                    },
                    IncidentUpdate {
                        at: 1_699_999_500.0,
                        status: "identified".to_owned(),
                        body: "still down".to_owned(),
                    },
                ],
            }],
            store_error: None,
            agents: Vec::new(),
            time_zone: String::new(),
            scheduled_maintenances: Vec::new(),
            alerting: Default::default(),
        }
    }

    fn json<T: Serialize>(v: &T) -> Value {
        serde_json::to_value(v).expect("serializes")
    }

    #[test]
    fn summary_has_statuspage_shape() {
        let v = json(&summary(&snapshot(), "http://status.example/"));
        let page = &v["page"];
        for k in ["id", "name", "url", "time_zone", "updated_at"] {
            assert!(page[k].is_string(), "page.{k}: {page}");
        }
        assert_eq!(page["name"], "Voice platform");
        assert_eq!(page["url"], "http://status.example/");
        assert_eq!(page["updated_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["status"]["indicator"], "critical");
        assert_eq!(v["status"]["description"], "Major System Outage");
        assert_eq!(v["scheduled_maintenances"], Value::Array(vec![]));

        let comps = v["components"].as_array().expect("components");
        assert_eq!(comps.len(), 4);
        let names: Vec<&str> = comps
            .iter()
            .map(|c| c["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(names, ["recorders", "rec-1", "rec-2", "edge"]);
        let group = &comps[0];
        assert_eq!(group["group"], true);
        assert_eq!(group["status"], "partial_outage");
        assert_eq!(group["group_id"], Value::Null);
        assert_eq!(group["description"], "1 of 2 up, min 1");
        let member_ids: Vec<&Value> = group["components"]
            .as_array()
            .expect("ids")
            .iter()
            .collect();
        assert_eq!(member_ids, [&comps[1]["id"], &comps[2]["id"]]);
        for c in &comps[1..3] {
            assert_eq!(c["group_id"], group["id"]);
            assert_eq!(c["group"], false);
            assert!(c.get("components").is_none());
        }
        assert_eq!(comps[2]["status"], "major_outage");
        assert_eq!(comps[3]["group_id"], Value::Null);
        assert_eq!(
            [
                &comps[0]["position"],
                &comps[1]["position"],
                &comps[2]["position"],
                &comps[3]["position"]
            ],
            [1, 1, 2, 2]
        );
        for c in comps {
            for k in [
                "id",
                "name",
                "status",
                "created_at",
                "updated_at",
                "page_id",
            ] {
                assert!(c[k].is_string(), "{k} in {c}");
            }
            assert_eq!(c["only_show_if_degraded"], false);
            assert_eq!(c["id"].as_str().map(str::len), Some(12));
        }
        assert_eq!(comps[2]["updated_at"], "2023-11-14T21:56:40.000Z");

        let incidents = v["incidents"].as_array().expect("incidents");
        assert_eq!(incidents.len(), 1);
        let inc = &incidents[0];
        assert_eq!(inc["name"], "rec-2 is down");
        assert_eq!(inc["status"], "identified");
        assert_eq!(inc["impact"], "critical");
        assert_eq!(inc["resolved_at"], Value::Null);
        assert_eq!(inc["created_at"], "2023-11-14T21:56:40.000Z");
        assert_eq!(inc["updated_at"], "2023-11-14T22:05:00.000Z");
        assert_eq!(
            inc["shortlink"],
            format!(
                "http://status.example/#incident-{}",
                inc["id"].as_str().unwrap_or("")
            )
        );
        let ups = inc["incident_updates"].as_array().expect("updates");
        assert_eq!(ups[0]["status"], "identified");
        assert_eq!(ups[1]["body"], "10.0.0.2:5060 timed out");
        assert_eq!(ups[0]["incident_id"], inc["id"]);
        assert_ne!(ups[0]["id"], ups[1]["id"]);
        let inc_comps = inc["components"].as_array().expect("components");
        assert_eq!(inc_comps.len(), 1);
        assert_eq!(inc_comps[0]["name"], "rec-2");
    }

    #[test]
    fn indicator_is_the_worst_component() {
        let mut s = snapshot();
        for (target_status, group_status, indicator) in [
            (
                ComponentStatus::Operational,
                ComponentStatus::Operational,
                "none",
            ),
            (
                ComponentStatus::UnderMaintenance,
                ComponentStatus::Operational,
                "none",
            ),
            (
                ComponentStatus::DegradedPerformance,
                ComponentStatus::Operational,
                "minor",
            ),
            (
                ComponentStatus::Operational,
                ComponentStatus::PartialOutage,
                "major",
            ),
            (
                ComponentStatus::PartialOutage,
                ComponentStatus::DegradedPerformance,
                "major",
            ),
            (
                ComponentStatus::MajorOutage,
                ComponentStatus::Operational,
                "critical",
            ),
        ] {
            for t in &mut s.targets {
                Arc::make_mut(t).status = ComponentStatus::Operational;
            }
            Arc::make_mut(&mut s.targets[1]).status = target_status;
            s.groups[0].status = group_status;
            assert_eq!(
                page_status(&s).indicator,
                indicator,
                "{target_status:?} {group_status:?}"
            );
        }
        let empty = Snapshot::default();
        assert_eq!(page_status(&empty).indicator, "none");
        assert_eq!(page_status(&empty).description, "All Systems Operational");
        assert_eq!(page_info(&empty, "u").name, "sipwatch");
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(target_id("edge"), target_id("edge"));
        assert_ne!(target_id("edge"), group_id("edge"));
        assert_ne!(target_id("edge-1"), target_id("edge-2"));
        assert!(target_id("x")
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b)));
        // Pinned: dashboards may hard-code component ids.
        assert_eq!(target_id("edge"), "l2i0ck96sp8n");
        assert_eq!(stable_id("component", "edge").len(), 12);
    }

    #[test]
    fn resolved_incident_and_merge() {
        let s = snapshot();
        let mut past = s.open_incidents[0].clone();
        past.resolved_at = Some(1_700_000_100.0);
        let older = Incident {
            id: 3,
            key: "group:recorders".to_owned(),
            title: "recorders below quorum".to_owned(),
            impact: ComponentStatus::PartialOutage,
            opened_at: 1_600_000_000.0,
            resolved_at: Some(1_600_000_600.0),
            affected: vec!["rec-1".to_owned(), "rec-2".to_owned()],
            updates: vec![],
        };
        // The snapshot's copy of incident 7 wins over the history's.
        let merged = merge_incidents(&s.open_incidents, &[past, older.clone()], 10);
        assert_eq!(merged.iter().map(|i| i.id).collect::<Vec<_>>(), [7, 3]);
        assert_eq!(merged[0].resolved_at, None);
        let feed = json(&incidents_feed(&s, "http://x/", &merged));
        let inc = &feed["incidents"][1];
        assert_eq!(inc["status"], "resolved");
        assert_eq!(inc["impact"], "major");
        assert_eq!(inc["resolved_at"], "2020-09-13T12:36:40.000Z");
        let names: Vec<&str> = inc["components"]
            .as_array()
            .expect("components")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["recorders", "rec-1", "rec-2"]);
        assert_eq!(merge_incidents(&s.open_incidents, &[older], 1).len(), 1);
    }

    #[test]
    fn scheduled_maintenances_in_the_statuspage_shape() {
        use crate::daemon::model::MaintenanceView;
        let mut s = snapshot();
        s.time_zone = "Europe/Berlin".to_owned();
        // 2023-11-17 03:00 CET, Friday.
        let start = 1_700_186_400.0;
        s.scheduled_maintenances = vec![
            MaintenanceView {
                schedule: "Tue,Fri 03:00".to_owned(),
                starts_at: start,
                ends_at: start + 1800.0,
                in_progress: false,
                targets: vec![],
                groups: vec!["recorders".to_owned()],
            },
            MaintenanceView {
                schedule: "daily 01:00".to_owned(),
                starts_at: start - 7200.0,
                ends_at: start + 3600.0,
                in_progress: true,
                targets: vec!["edge <&> proxy".to_owned()],
                groups: vec![],
            },
        ];
        let v = serde_json::to_value(summary(&s, "http://status.example/")).unwrap();
        assert_eq!(v["page"]["time_zone"], "Europe/Berlin");
        let m = &v["scheduled_maintenances"][0];
        assert_eq!(m["status"], "scheduled");
        assert_eq!(m["impact"], "maintenance");
        assert_eq!(m["scheduled_for"], "2023-11-17T02:00:00.000Z");
        assert_eq!(m["scheduled_until"], "2023-11-17T02:30:00.000Z");
        let names: Vec<&str> = m["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"recorders") && names.contains(&"rec-1"),
            "{names:?}"
        );
        let body = m["incident_updates"][0]["body"].as_str().unwrap();
        assert!(
            body.contains("from 2023-11-17 03:00 CET to 03:30 CET (Tue,Fri 03:00, 30 min)"),
            "{body}"
        );
        let upcoming = scheduled_maintenances_feed(&s, "http://x/", MaintenanceFilter::Upcoming);
        assert_eq!(upcoming.scheduled_maintenances.len(), 1);
        let active = scheduled_maintenances_feed(&s, "http://x/", MaintenanceFilter::Active);
        assert_eq!(active.scheduled_maintenances.len(), 1);
        assert_eq!(active.scheduled_maintenances[0].status, "in_progress");
        let all = scheduled_maintenances_feed(&s, "http://x/", MaintenanceFilter::All);
        assert_eq!(all.scheduled_maintenances.len(), 2);
    }
}
