//! Routes: which receivers hear about an alert, and how its notifications are grouped.
//!
//! ```toml
//! [[alerting.route]]
//! name = "pager"                      # optional; names the route in dedup keys and logs
//! matchers = ["severity=critical"]
//! receivers = ["oncall"]
//! continue = true                     # also try the routes below
//! escalate = [{ after = "15m", receivers = ["secondary"] }]
//! group_by = ["group"]
//! group_wait = "30s"
//! group_interval = "5m"
//! repeat_interval = "4h"
//! ```
//!
//! Routes are tried in order; the first that matches wins unless it says `continue = true`.
//! Without any route every alert goes to every receiver (as before routes existed). An alert no
//! route matches also goes to every receiver, and the log says so: an alert is never lost to a
//! routing gap. This file is pure: labels in, routes out.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::matcher::{all_match, Matcher};

/// Grouping of one route (Alertmanager's names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    /// Labels whose values form the group; when the alert has none of them, `target` is used,
    /// then `host`, and when it has neither the alert is a group of its own.
    pub group_by: Vec<String>,
    /// How long a new group waits for more members before its first notification.
    pub group_wait: Duration,
    /// How long after a notification a group waits before telling about changes.
    pub group_interval: Duration,
    /// How long after a notification an unchanged, still firing group is notified again.
    pub repeat_interval: Duration,
}

impl Default for Grouping {
    fn default() -> Grouping {
        Grouping {
            group_by: vec!["group".into()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
        }
    }
}

/// Grouping settings as written (each optional, falling back to `[alerting]`, then defaults).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupingConfig {
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub group_wait: Option<Duration>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub group_interval: Option<Duration>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub repeat_interval: Option<Duration>,
}

impl GroupingConfig {
    /// These settings over `base`.
    pub fn over(&self, base: &Grouping) -> Grouping {
        Grouping {
            group_by: self
                .group_by
                .clone()
                .unwrap_or_else(|| base.group_by.clone()),
            group_wait: self.group_wait.unwrap_or(base.group_wait),
            group_interval: self.group_interval.unwrap_or(base.group_interval),
            repeat_interval: self.repeat_interval.unwrap_or(base.repeat_interval),
        }
    }
}

/// One escalation level: receivers told when a firing group is not acknowledged in time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationLevel {
    /// Since the group's first notification.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub after: Duration,
    pub receivers: Vec<String>,
}

/// One `[[alerting.route]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    pub receivers: Vec<String>,
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub group_wait: Option<Duration>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub group_interval: Option<Duration>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub repeat_interval: Option<Duration>,
    /// Levels for email and chat receivers; PagerDuty and Opsgenie escalate by themselves.
    #[serde(default)]
    pub escalate: Vec<EscalationLevel>,
}

impl RouteConfig {
    /// This route's grouping settings as written.
    pub fn grouping(&self) -> GroupingConfig {
        GroupingConfig {
            group_by: self.group_by.clone(),
            group_wait: self.group_wait,
            group_interval: self.group_interval,
            repeat_interval: self.repeat_interval,
        }
    }
}

/// A checked route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Stable name: the configured one, or `route-N` (1-based position).
    pub name: String,
    pub matchers: Vec<Matcher>,
    pub receivers: Vec<String>,
    pub continue_matching: bool,
    pub grouping: Grouping,
    pub escalate: Vec<EscalationLevel>,
}

/// The routing table.
#[derive(Debug, Clone, PartialEq)]
pub struct Routes {
    routes: Vec<Route>,
    /// Every receiver; where alerts go that no route matches.
    fallback: Route,
}

impl Routes {
    /// Checks route tables against the receiver names; every problem is reported.
    pub fn new(
        configs: &[RouteConfig],
        receivers: &[String],
        base: &Grouping,
    ) -> Result<Routes, Vec<String>> {
        let mut problems = Vec::new();
        let mut routes = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, c) in configs.iter().enumerate() {
            let name = c
                .name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| format!("route-{}", i + 1));
            let at = format!("[[alerting.route]] #{} ({name})", i + 1);
            if !names.insert(name.clone()) {
                problems.push(format!(
                    "{at}: name is used twice; route names must be unique"
                ));
            }
            if c.receivers.is_empty() {
                problems.push(format!(
                    "{at}: receivers is empty; name at least one [[alerting.receiver]]"
                ));
            }
            let escalated = c.escalate.iter().flat_map(|l| l.receivers.iter());
            for r in c.receivers.iter().chain(escalated) {
                if !receivers.contains(r) {
                    problems.push(format!(
                        "{at}: receiver \"{r}\" is not defined; the receivers are: {}",
                        receivers.join(", ")
                    ));
                }
            }
            let grouping = c.grouping().over(base);
            if grouping.group_interval.is_zero() {
                problems.push(format!(
                    "{at}: group_interval must be more than 0, e.g. \"5m\""
                ));
            }
            routes.push(Route {
                name,
                matchers: c.matchers.clone(),
                receivers: c.receivers.clone(),
                continue_matching: c.continue_matching,
                grouping,
                escalate: {
                    let mut levels = c.escalate.clone();
                    levels.sort_by_key(|l| l.after);
                    levels
                },
            });
        }
        if base.group_interval.is_zero() {
            problems.push("[alerting] group_interval must be more than 0, e.g. \"5m\"".into());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Routes {
            routes,
            fallback: Route {
                name: "default".into(),
                matchers: Vec::new(),
                receivers: receivers.to_vec(),
                continue_matching: false,
                grouping: base.clone(),
                escalate: Vec::new(),
            },
        })
    }

    /// Every receiver, default grouping: no routes configured.
    pub fn everyone(receivers: &[String], base: &Grouping) -> Routes {
        Routes {
            routes: Vec::new(),
            fallback: Route {
                name: "default".into(),
                matchers: Vec::new(),
                receivers: receivers.to_vec(),
                continue_matching: false,
                grouping: base.clone(),
                escalate: Vec::new(),
            },
        }
    }

    /// The routes an alert with these labels takes, in order (never empty).
    pub fn select(&self, labels: &BTreeMap<String, String>) -> Vec<&Route> {
        let mut chosen = Vec::new();
        for route in &self.routes {
            if all_match(&route.matchers, labels) {
                chosen.push(route);
                if !route.continue_matching {
                    break;
                }
            }
        }
        if chosen.is_empty() {
            if !self.routes.is_empty() {
                tracing::warn!(labels = ?labels,
                    "no [[alerting.route]] matches this alert; it goes to every receiver");
            }
            chosen.push(&self.fallback);
        }
        chosen
    }

    /// A route by name (`default` is the fallback).
    pub fn get(&self, name: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.name == name)
            .or((name == self.fallback.name).then_some(&self.fallback))
    }
}

/// The group an alert joins on `route`: the `group_by` label values, else its `target`, else
/// its `host` (agent alerts), else its own key. Deterministic, so daemons configured alike build the same group keys.
pub fn group_labels(
    route: &Route,
    labels: &BTreeMap<String, String>,
    alert_key: &str,
) -> BTreeMap<String, String> {
    let pick = |names: &[String]| -> BTreeMap<String, String> {
        names
            .iter()
            .filter_map(|n| {
                labels
                    .get(n)
                    .filter(|v| !v.is_empty())
                    .map(|v| (n.clone(), v.clone()))
            })
            .collect()
    };
    let chosen = pick(&route.grouping.group_by);
    if !chosen.is_empty() {
        return chosen;
    }
    for fallback in ["target", "host"] {
        let by = pick(&[fallback.to_string()]);
        if !by.is_empty() {
            return by;
        }
    }
    BTreeMap::from([("key".to_string(), alert_key.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn config(toml_text: &str) -> Vec<RouteConfig> {
        #[derive(Deserialize)]
        struct Doc {
            route: Vec<RouteConfig>,
        }
        toml::from_str::<Doc>(toml_text).unwrap().route
    }

    fn receivers() -> Vec<String> {
        vec!["pager".into(), "mail".into(), "chat".into()]
    }

    #[test]
    fn first_match_wins_unless_continue() {
        let routes = Routes::new(
            &config(
                r#"
                [[route]]
                matchers = ["severity=critical"]
                receivers = ["pager"]
                continue = true
                [[route]]
                name = "frontends"
                matchers = ["group=~front.*"]
                receivers = ["chat"]
                [[route]]
                receivers = ["mail"]
                "#,
            ),
            &receivers(),
            &Grouping::default(),
        )
        .unwrap();
        let names = |l| {
            routes
                .select(&l)
                .iter()
                .map(|r| r.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(labels(&[("severity", "critical"), ("group", "frontends")])),
            ["route-1", "frontends"]
        );
        assert_eq!(
            names(labels(&[("severity", "warning"), ("group", "frontends")])),
            ["frontends"]
        );
        assert_eq!(names(labels(&[("severity", "warning")])), ["route-3"]);
    }

    #[test]
    fn no_routes_or_no_match_means_every_receiver() {
        let all = Routes::everyone(&receivers(), &Grouping::default());
        assert_eq!(all.select(&labels(&[]))[0].receivers, receivers());
        let some = Routes::new(
            &config("[[route]]\nmatchers = [\"severity=critical\"]\nreceivers = [\"pager\"]\n"),
            &receivers(),
            &Grouping::default(),
        )
        .unwrap();
        let chosen = some.select(&labels(&[("severity", "info")]));
        assert_eq!(chosen[0].name, "default");
        assert_eq!(chosen[0].receivers, receivers());
    }

    #[test]
    fn unknown_receivers_and_duplicate_names_are_all_reported() {
        let e = Routes::new(
            &config(
                "[[route]]\nname = \"a\"\nreceivers = [\"pagr\"]\n[[route]]\nname = \"a\"\nreceivers = []\n",
            ),
            &receivers(),
            &Grouping::default(),
        )
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("\"pagr\" is not defined"), "{e:?}");
    }

    #[test]
    fn group_labels_fall_back_to_target_then_key() {
        let r = Routes::everyone(&receivers(), &Grouping::default());
        let route = r.select(&labels(&[]))[0];
        assert_eq!(
            group_labels(route, &labels(&[("group", "fe"), ("target", "t")]), "k"),
            labels(&[("group", "fe")])
        );
        assert_eq!(
            group_labels(route, &labels(&[("target", "t")]), "k"),
            labels(&[("target", "t")])
        );
        assert_eq!(
            group_labels(route, &labels(&[("host", "sip1")]), "k"),
            labels(&[("host", "sip1")])
        );
        assert_eq!(
            group_labels(route, &labels(&[]), "k"),
            labels(&[("key", "k")])
        );
    }

    #[test]
    fn route_grouping_overrides_the_base() {
        let routes = Routes::new(
            &config("[[route]]\nreceivers = [\"mail\"]\ngroup_wait = \"1s\"\n"),
            &receivers(),
            &Grouping::default(),
        )
        .unwrap();
        let g = &routes.get("route-1").unwrap().grouping;
        assert_eq!(g.group_wait, Duration::from_secs(1));
        assert_eq!(g.group_interval, Duration::from_secs(300));
    }
}
