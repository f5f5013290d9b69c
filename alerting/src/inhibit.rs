//! Inhibition: a firing alert that explains others mutes them.
//!
//! ```toml
//! [[alerting.inhibit]]
//! source_matchers = ["alertname=SipGroupBelowQuorum"]
//! target_matchers = ["alertname=~SipNode(Down|Degraded)"]
//! equal = ["group"]
//! ```
//!
//! A target alert is muted while some *other* firing alert matches the source matchers and
//! agrees with it on every `equal` label (Alertmanager's rule). Two rules are on by default
//! ([`default_rules`]): a group below quorum mutes its members' node alerts (the group alert
//! lists them instead), and an agent that stopped reporting mutes the leak, log and service
//! alerts of its host (it pages once for itself). The third default, a node in maintenance
//! muting its own alerts, is applied earlier by the daemon's state board, which holds alerts of
//! nodes in a maintenance window. Pure: labels in, yes or no out.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::matcher::{all_match, Matcher};

/// One `[[alerting.inhibit]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    pub source_matchers: Vec<Matcher>,
    pub target_matchers: Vec<Matcher>,
    #[serde(default)]
    pub equal: Vec<String>,
}

/// The alertname of the daemon's "agent stopped reporting" alert.
pub const AGENT_SILENT: &str = "AgentSilent";

/// The rules on by default (see the module docs).
pub fn default_rules() -> Vec<InhibitRule> {
    let m = |text: &str| Matcher::parse(text).expect("built-in matcher parses");
    vec![
        InhibitRule {
            source_matchers: vec![m("alertname=SipGroupBelowQuorum")],
            target_matchers: vec![m("alertname=~SipNode(Down|Degraded|Flapping)")],
            equal: vec!["group".into()],
        },
        InhibitRule {
            source_matchers: vec![m(&format!("alertname={AGENT_SILENT}"))],
            target_matchers: vec![m("kind=~leak|log|service")],
            equal: vec!["host".into()],
        },
    ]
}

impl InhibitRule {
    /// Whether `source` (a firing alert's labels) mutes `target` under this rule.
    pub fn mutes(
        &self,
        source: &BTreeMap<String, String>,
        target: &BTreeMap<String, String>,
    ) -> bool {
        all_match(&self.target_matchers, target)
            && all_match(&self.source_matchers, source)
            && self.equal.iter().all(|l| {
                let s = source.get(l).map(String::as_str).unwrap_or("");
                let t = target.get(l).map(String::as_str).unwrap_or("");
                s == t
            })
    }
}

/// The first firing alert (by key) that mutes `target` under any rule. `firing` holds
/// `(key, labels)` of the alerts firing now; an alert never mutes itself.
pub fn inhibited_by<'a>(
    rules: &[InhibitRule],
    target_key: &str,
    target: &BTreeMap<String, String>,
    firing: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
) -> Option<&'a str> {
    let firing: Vec<_> = firing.into_iter().collect();
    for rule in rules {
        if !all_match(&rule.target_matchers, target) {
            continue;
        }
        if let Some((key, _)) = firing
            .iter()
            .find(|(key, labels)| *key != target_key && rule.mutes(labels, target))
        {
            return Some(key);
        }
    }
    None
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

    #[test]
    fn a_group_below_quorum_mutes_its_own_nodes_only() {
        let rules = default_rules();
        let group = labels(&[("alertname", "SipGroupBelowQuorum"), ("group", "fe")]);
        let node_fe = labels(&[("alertname", "SipNodeDown"), ("group", "fe")]);
        let node_rec = labels(&[("alertname", "SipNodeDown"), ("group", "rec")]);
        let firing = [("g", &group), ("n1", &node_fe), ("n2", &node_rec)];
        assert_eq!(inhibited_by(&rules, "n1", &node_fe, firing), Some("g"));
        assert_eq!(inhibited_by(&rules, "n2", &node_rec, firing), None);
        assert_eq!(inhibited_by(&rules, "g", &group, firing), None);
    }

    #[test]
    fn a_silent_agent_mutes_its_hosts_gauge_alerts() {
        let rules = default_rules();
        let agent = labels(&[("alertname", AGENT_SILENT), ("host", "sip1")]);
        let leak = labels(&[("kind", "leak"), ("host", "sip1")]);
        let other = labels(&[("kind", "leak"), ("host", "sip2")]);
        let firing = [("a", &agent), ("l", &leak), ("o", &other)];
        assert_eq!(inhibited_by(&rules, "l", &leak, firing), Some("a"));
        assert_eq!(inhibited_by(&rules, "o", &other, firing), None);
    }

    #[test]
    fn rules_parse_from_config() {
        let r: InhibitRule = toml::from_str(
            "source_matchers = [\"severity=critical\"]\ntarget_matchers = [\"severity=warning\"]\nequal = [\"target\"]\n",
        )
        .unwrap();
        let crit = labels(&[("severity", "critical"), ("target", "a")]);
        let warn_a = labels(&[("severity", "warning"), ("target", "a")]);
        let warn_b = labels(&[("severity", "warning"), ("target", "b")]);
        assert!(r.mutes(&crit, &warn_a));
        assert!(!r.mutes(&crit, &warn_b));
    }
}
