use super::*;
use crate::daemon::model::{ComponentStatus, NodeView};
use sipwatch_probes::outcome::{ResultKind, Status};

fn obs(at: UnixTime, status: &str) -> Observation {
    let (status, result, code) = match status {
        "ok" => (Status::Ok, ResultKind::Ok, Some(200)),
        "warning" => (Status::Warning, ResultKind::ErrorResponse, Some(503)),
        "unknown" => (Status::Unknown, ResultKind::Timeout, None),
        "critical" => (Status::Critical, ResultKind::Timeout, None),
        other => panic!("no probe status {other:?}"),
    };
    Observation {
        at,
        status,
        result,
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
    tv.nodes
        .iter()
        .find(|n| n.node == node)
        .cloned()
        .expect("node")
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

/// A board whose targets are all in the group `core`, which needs `min_up` serving.
fn core_board(targets: Vec<TargetSpec>, min_up: usize) -> Board {
    Board::new(
        "S".into(),
        targets,
        vec![GroupSpec {
            name: "core".into(),
            min_up,
        }],
    )
}

fn group_board(min_up: usize) -> (Board, f64) {
    let targets = ["a", "b", "c"]
        .iter()
        .map(|n| target(n, Some("core"), Thresholds::default()))
        .collect();
    let mut b = core_board(targets, min_up);
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
    let mut b = core_board(targets, 1);
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
    let mut b = core_board(targets, 1);
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
    let mut b = core_board(targets, 1);
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

/// A snapshot reuses the view of every target no input touched since the previous one (that is
/// what keeps two snapshots alive at once cheap), and renders again those that changed: a
/// probe result, a DNS answer, a maintenance window, a reload.
#[test]
fn snapshots_share_the_targets_that_did_not_change() {
    let th = Thresholds::default();
    let specs = vec![target("a", Some("core"), th), target("b", None, th)];
    let groups = vec![GroupSpec {
        name: "core".into(),
        min_up: 1,
    }];
    let mut b = Board::new("Status".into(), specs.clone(), groups.clone());
    b.set_nodes("a", &nodes(1), 0.0);
    b.set_nodes("b", &nodes(1), 0.0);
    let same =
        |x: &Snapshot, y: &Snapshot, i: usize| std::sync::Arc::ptr_eq(&x.targets[i], &y.targets[i]);

    let s1 = b.snapshot(1.0);
    let s2 = b.snapshot(2.0);
    assert!(same(&s1, &s2, 0) && same(&s1, &s2, 1), "nothing changed");

    b.observe("a", &node(1), obs(3.0, "ok"));
    let s3 = b.snapshot(3.0);
    assert!(
        !same(&s2, &s3, 0),
        "a probe result renders its target again"
    );
    assert!(same(&s2, &s3, 1), "the other target is shared");
    let last = s3.targets[0].nodes[0].last.as_ref().expect("observed");
    assert_eq!(last.at, 3.0);

    b.set_dns_error("b", Some("NXDOMAIN".into()), 4.0);
    let s4 = b.snapshot(4.0);
    assert!(same(&s3, &s4, 0) && !same(&s3, &s4, 1));
    assert_eq!(s4.targets[1].dns_error.as_deref(), Some("NXDOMAIN"));

    b.set_maintenance(&[], &["core".to_string()], 5.0);
    let s5 = b.snapshot(5.0);
    assert!(s5.targets[0].in_maintenance);
    assert_eq!(s5.targets[0].status, ComponentStatus::UnderMaintenance);
    b.set_maintenance(&[], &["core".to_string()], 6.0);
    assert!(
        same(&s5, &b.snapshot(6.0), 0),
        "the same window: nothing to render"
    );

    let mut moved = specs;
    moved[0].group = None;
    b.reconfigure(moved, groups, 7.0);
    let s7 = b.snapshot(7.0);
    assert_eq!(
        s7.targets[0].group, None,
        "a reload renders the target again"
    );
    assert!(!s7.targets[0].in_maintenance);
}

/// The saved table as the store keeps it: a save of every record replaces it, a save of changed
/// records writes those and leaves the other rows.
fn apply_save(
    saved: &mut BTreeMap<(String, String), NodeRecord>,
    save: (SaveMode, Vec<NodeRecord>),
) {
    let (mode, records) = save;
    if mode == SaveMode::All {
        saved.clear();
    }
    for r in records {
        saved.insert((r.target.clone(), r.node.clone()), r);
    }
}

fn saved_nodes(save: &(SaveMode, Vec<NodeRecord>)) -> Vec<&str> {
    save.1.iter().map(|r| r.node.as_str()).collect()
}

#[test]
fn saves_write_changed_records_every_time_and_every_record_every_minute() {
    // `now` of the saves (every 5 s) is independent of the probes' times here.
    let mut b = board_with(3, Thresholds::default());
    let mut at = 0.0;
    // Nothing saved yet: everything, whatever was asked.
    let first = b.records_to_save(0.0, SaveMode::Changed);
    assert_eq!(first.0, SaveMode::All);
    assert_eq!(first.1, b.node_records());
    // Nothing changed since: nothing to write.
    assert_eq!(
        b.records_to_save(5.0, SaveMode::Changed),
        (SaveMode::Changed, vec![])
    );

    // Node 1 comes up (a state change): the next save writes it, and only it.
    feed(&mut b, "edge", &node(1), &mut at, "ok", 2);
    let save = b.records_to_save(10.0, SaveMode::Changed);
    assert_eq!(save.0, SaveMode::Changed);
    assert_eq!(saved_nodes(&save), [node(1)]);
    assert_eq!(save.1[0].state, NodeState::Up);
    assert_eq!(save.1[0].since, at);

    // More oks only grow its counters and change `last`: not written until the full save.
    feed(&mut b, "edge", &node(1), &mut at, "ok", 1);
    assert_eq!(b.records_to_save(15.0, SaveMode::Changed).1, vec![]);
    // A warning ends its streak of oks: written (a restored count of oks must not outlive it).
    feed(&mut b, "edge", &node(1), &mut at, "warning", 1);
    let save = b.records_to_save(20.0, SaveMode::Changed);
    assert_eq!(saved_nodes(&save), [node(1)]);
    assert_eq!(
        (save.1[0].consecutive_oks, save.1[0].consecutive_warnings),
        (0, 1)
    );
    // A first failure starts a streak: written; the second only grows it.
    feed(&mut b, "edge", &node(2), &mut at, "critical", 1);
    assert_eq!(
        saved_nodes(&b.records_to_save(25.0, SaveMode::Changed)),
        [node(2)]
    );
    feed(&mut b, "edge", &node(2), &mut at, "critical", 1);
    assert_eq!(b.records_to_save(30.0, SaveMode::Changed).1, vec![]);
    // The third completes the transition to down (no streak starts or ends): written.
    feed(&mut b, "edge", &node(2), &mut at, "critical", 1);
    let save = b.records_to_save(35.0, SaveMode::Changed);
    assert_eq!(saved_nodes(&save), [node(2)]);
    assert_eq!((save.1[0].state, save.1[0].since), (NodeState::Down, at));
    feed(&mut b, "edge", &node(2), &mut at, "critical", 1);

    // A minute after the last full save, every record with its exact counters.
    let full = b.records_to_save(FULL_NODE_SAVE_EVERY_SECS, SaveMode::Changed);
    assert_eq!(full.0, SaveMode::All);
    assert_eq!(full.1, b.node_records());
    assert_eq!(full.1[1].consecutive_failures, 4);
    assert_eq!(
        b.records_to_save(FULL_NODE_SAVE_EVERY_SECS + 5.0, SaveMode::Changed),
        (SaveMode::Changed, vec![])
    );
    // Asked for everything (shutdown): everything.
    let all = b.records_to_save(FULL_NODE_SAVE_EVERY_SECS + 6.0, SaveMode::All);
    assert_eq!(all, (SaveMode::All, b.node_records()));
    // A clock that went back does not stop full saves.
    assert_eq!(b.records_to_save(1.0, SaveMode::Changed).0, SaveMode::All);
}

#[test]
fn flapping_and_changes_leaving_the_window_are_saved() {
    let th = Thresholds {
        fail: 1,
        ok: 1,
        flap_window_secs: 100.0,
        flap_max_changes: 2,
    };
    let mut b = board_with(1, th);
    let mut at = 0.0;
    // The saves' `now` (every 5 s) is independent of the probes' times here.
    b.records_to_save(0.0, SaveMode::All);
    feed(&mut b, "edge", &node(1), &mut at, "ok", 1);
    for status in ["critical", "ok", "critical"] {
        feed(&mut b, "edge", &node(1), &mut at, status, 1);
    }
    let save = b.records_to_save(5.0, SaveMode::Changed);
    assert_eq!(save.0, SaveMode::Changed);
    assert!(save.1[0].flapping, "{save:?}");
    assert_eq!(save.1[0].recent_changes.len(), 3);
    // Stays down; the changes leave the window and flapping ends: saved.
    feed(&mut b, "edge", &node(1), &mut at, "critical", 10);
    let save = b.records_to_save(10.0, SaveMode::Changed);
    assert_eq!(save.0, SaveMode::Changed);
    assert_eq!(saved_nodes(&save), [node(1)]);
    assert!(!save.1[0].flapping);
    assert!(save.1[0].recent_changes.is_empty());
}

#[test]
fn a_failed_save_makes_the_next_one_write_every_record() {
    let mut b = board_with(2, Thresholds::default());
    let mut at = 0.0;
    b.records_to_save(at, SaveMode::All);
    feed(&mut b, "edge", &node(1), &mut at, "critical", 3);
    let lost = b.records_to_save(at, SaveMode::Changed);
    assert_eq!(saved_nodes(&lost), [node(1)]);
    // Writing them failed: the next save must not forget node 1 going down.
    b.node_save_failed();
    let again = b.records_to_save(at + 5.0, SaveMode::Changed);
    assert_eq!(again.0, SaveMode::All);
    assert_eq!(again.1, b.node_records());
    assert_eq!(again.1[0].state, NodeState::Down);
    // Back to normal after that.
    assert_eq!(
        b.records_to_save(at + 10.0, SaveMode::Changed),
        (SaveMode::Changed, vec![])
    );
}

#[test]
fn nodes_or_targets_leaving_the_board_make_the_next_save_full() {
    let mut b = board_with(3, Thresholds::default());
    let mut saved = BTreeMap::new();
    apply_save(&mut saved, b.records_to_save(0.0, SaveMode::Changed));
    assert_eq!(saved.len(), 3);
    // DNS now gives two nodes: the third one's row must go.
    b.set_nodes("edge", &nodes(2), 1.0);
    let save = b.records_to_save(2.0, SaveMode::Changed);
    assert_eq!(save.0, SaveMode::All);
    apply_save(&mut saved, save);
    assert_eq!(
        saved.values().cloned().collect::<Vec<_>>(),
        b.node_records()
    );
    assert_eq!(saved.len(), 2);
    // Same nodes again: nothing left, nothing to write.
    b.set_nodes("edge", &nodes(2), 3.0);
    assert_eq!(
        b.records_to_save(4.0, SaveMode::Changed),
        (SaveMode::Changed, vec![])
    );
    // The target leaves the configuration: its rows go.
    b.reconfigure(
        vec![target("core", None, Thresholds::default())],
        vec![],
        5.0,
    );
    let save = b.records_to_save(6.0, SaveMode::Changed);
    assert_eq!(save, (SaveMode::All, vec![]));
    apply_save(&mut saved, save);
    assert!(saved.is_empty());
}

#[test]
fn a_restart_from_changed_saves_never_completes_a_transition_early() {
    // fail = 3. Two failures, saved by a full save; then an ok and one failure before the next
    // (changed-records) save. The true streak is one failure: a restart must need two more.
    let mut b = board_with(1, Thresholds::default());
    let mut at = 0.0;
    let mut saved = BTreeMap::new();
    feed(&mut b, "edge", &node(1), &mut at, "ok", 2);
    feed(&mut b, "edge", &node(1), &mut at, "critical", 2);
    apply_save(&mut saved, b.records_to_save(at, SaveMode::All));
    feed(&mut b, "edge", &node(1), &mut at, "ok", 1);
    feed(&mut b, "edge", &node(1), &mut at, "critical", 1);
    let save = b.records_to_save(at, SaveMode::Changed);
    assert_eq!(save.0, SaveMode::Changed);
    apply_save(&mut saved, save);

    let mut b2 = board_with(1, Thresholds::default());
    b2.restore(saved.into_values().collect(), vec![], 1);
    assert_eq!(node_state(&b2, "edge", &node(1), at).state, NodeState::Up);
    assert!(changes(&feed(&mut b2, "edge", &node(1), &mut at, "critical", 1)).is_empty());
    let ev = feed(&mut b2, "edge", &node(1), &mut at, "critical", 1);
    assert_eq!(changes(&ev)[0].to, NodeState::Down);
}
