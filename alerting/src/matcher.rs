//! Label matchers, as routes, inhibition rules and silences write them: `severity=critical`,
//! `target!=lab-1`, `group=~"front.*"`, `service!~"test-.*"`.
//!
//! The syntax is Alertmanager's (`=`, `!=`, `=~`, `!~`; regexes are anchored at both ends), so a
//! rule copied from an Alertmanager config means the same here. A matcher sees an alert's labels
//! plus two derived ones: `severity` and `kind` (the key's category: `probe`, `group`, `leak`,
//! `service`, `log`, `flap`, `agent`, ...). This file only parses and matches; it holds no policy.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::alert::Alert;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// One `label OP value` condition.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.label == other.label && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    /// Parses `label=value`, `label!=value`, `label=~regex` or `label!~regex` (the value may be
    /// quoted with `"`).
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let text = text.trim();
        let (at, op, len) = ["!~", "=~", "!=", "="]
            .iter()
            .filter_map(|sym| text.find(sym).map(|at| (at, *sym)))
            .min_by_key(|(at, sym)| (*at, std::cmp::Reverse(sym.len())))
            .map(|(at, sym)| {
                let op = match sym {
                    "!~" => MatchOp::NotRegex,
                    "=~" => MatchOp::Regex,
                    "!=" => MatchOp::NotEqual,
                    _ => MatchOp::Equal,
                };
                (at, op, sym.len())
            })
            .ok_or_else(|| {
                format!(
                    "matcher {text:?} has no operator; write label=value, label!=value, \
                     label=~regex or label!~regex"
                )
            })?;
        let label = text[..at].trim();
        if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "matcher {text:?}: {label:?} is not a label name (letters, digits, _), e.g. \
                 severity=critical"
            ));
        }
        let mut value = text[at + len..].trim();
        if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            value = &value[1..value.len() - 1];
        }
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("matcher {text:?}: bad regex: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            label: label.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Whether `labels` satisfy this matcher (a missing label reads as the empty string).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let got = labels.get(&self.label).map(String::as_str).unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => got == self.value,
            (MatchOp::NotEqual, _) => got != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(got),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(got),
            _ => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        };
        write!(f, "{}{}{}", self.label, op, self.value)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Matcher, D::Error> {
        let text = String::deserialize(d)?;
        Matcher::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Whether every matcher holds (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// The labels matchers see: the alert's own plus `severity`, `kind` and `alertname`.
pub fn match_labels(alert: &Alert) -> BTreeMap<String, String> {
    let mut labels = alert.labels.clone();
    labels.insert("severity".into(), alert.severity.as_str().into());
    labels
        .entry("alertname".into())
        .or_insert_with(|| alert.alertname().to_string());
    labels.entry("kind".into()).or_insert_with(|| kind(alert));
    labels
}

/// The key's category: `"sipwatch/probe/edge-1/n"` gives `"probe"`.
pub fn kind(alert: &Alert) -> String {
    let mut segments = alert.key.split('/').filter(|s| !s.is_empty());
    match (segments.next(), segments.next()) {
        (Some("sipwatch"), Some(category)) => category.to_string(),
        (Some(first), _) => first.to_string(),
        (None, _) => String::new(),
    }
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
    fn operators_parse_and_match() {
        let l = labels(&[("severity", "critical"), ("group", "frontends")]);
        assert!(Matcher::parse("severity=critical").unwrap().matches(&l));
        assert!(!Matcher::parse("severity!=critical").unwrap().matches(&l));
        assert!(Matcher::parse("group=~front.*").unwrap().matches(&l));
        assert!(Matcher::parse("group=~\"front.*\"").unwrap().matches(&l));
        assert!(!Matcher::parse("group!~front.*").unwrap().matches(&l));
        // Anchored: a part does not match.
        assert!(!Matcher::parse("group=~front").unwrap().matches(&l));
        // Missing label reads as "".
        assert!(Matcher::parse("node=").unwrap().matches(&l));
        assert!(Matcher::parse("node!=x").unwrap().matches(&l));
        assert_eq!(
            Matcher::parse("group =~ a|b").unwrap().to_string(),
            "group=~a|b"
        );
    }

    #[test]
    fn bad_matchers_say_how_to_write_them() {
        let e = Matcher::parse("severity").unwrap_err();
        assert!(e.contains("label=value"), "{e}");
        let e = Matcher::parse("=x").unwrap_err();
        assert!(e.contains("not a label name"), "{e}");
        let e = Matcher::parse("a=~(").unwrap_err();
        assert!(e.contains("bad regex"), "{e}");
    }
}
