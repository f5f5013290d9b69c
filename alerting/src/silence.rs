//! Silences: "do not tell anyone about alerts matching these labels until then".
//!
//! A [`Silence`] has matchers, a start, an end and a comment (who and why). Silences come from
//! the config (`[[alerting.silence]]`) or are added at run time (HTTP API, `sipwatch silence
//! add`); the daemon keeps the run-time ones in its store. A silenced alert is still recorded and
//! shown, only not sent; when the silence ends and the alert still fires, the grouper sends it at
//! its group's next flush. This file is pure: it answers "is this muted at `now`", nothing else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::matcher::{all_match, Matcher};

/// One silence. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Stable id: `cfg-N` for config silences, random hex for run-time ones.
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts: f64,
    pub ends: f64,
    #[serde(default)]
    pub comment: String,
    /// Who added it (`config`, `api`, `cli`, or a name given by the caller).
    #[serde(default)]
    pub created_by: String,
}

/// The state of a silence at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl Silence {
    pub fn state(&self, now: f64) -> SilenceState {
        if now < self.starts {
            SilenceState::Pending
        } else if now < self.ends {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    /// Whether it mutes alerts with these labels at `now`.
    pub fn mutes(&self, labels: &BTreeMap<String, String>, now: f64) -> bool {
        self.state(now) == SilenceState::Active && all_match(&self.matchers, labels)
    }

    /// Checks a silence before it is accepted: matchers present and not matching everything,
    /// an end after the start.
    pub fn validate(&self) -> Result<(), String> {
        if self.matchers.is_empty() {
            return Err(
                "a silence needs at least one matcher, e.g. target=fe-2 (a silence without \
                 matchers would mute every alert)"
                    .into(),
            );
        }
        if all_match(&self.matchers, &BTreeMap::new()) {
            return Err(format!(
                "the matchers {} match an alert with no labels, so they would mute every alert; \
                 add a matcher on a label that must be set, e.g. target=fe-2",
                self.matchers
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        if self.ends.partial_cmp(&self.starts) != Some(std::cmp::Ordering::Greater) {
            return Err("a silence must end after it starts".into());
        }
        Ok(())
    }
}

/// The set of known silences.
#[derive(Debug, Clone, Default)]
pub struct Silences {
    list: Vec<Silence>,
}

impl Silences {
    pub fn new(list: Vec<Silence>) -> Silences {
        Silences { list }
    }

    /// Adds or replaces (same id) a silence.
    pub fn upsert(&mut self, silence: Silence) {
        self.list.retain(|s| s.id != silence.id);
        self.list.push(silence);
    }

    /// Ends a silence at `now`; false when no silence has this id or it already ended.
    pub fn expire(&mut self, id: &str, now: f64) -> bool {
        match self.list.iter_mut().find(|s| s.id == id) {
            Some(s) if s.ends > now => {
                s.ends = now.max(s.starts);
                true
            }
            _ => false,
        }
    }

    /// The id of the first silence muting these labels at `now`.
    pub fn muting(&self, labels: &BTreeMap<String, String>, now: f64) -> Option<&str> {
        self.list
            .iter()
            .find(|s| s.mutes(labels, now))
            .map(|s| s.id.as_str())
    }

    /// When something changes next after `now`: the nearest start or end in the future.
    pub fn next_change(&self, now: f64) -> Option<f64> {
        self.list
            .iter()
            .flat_map(|s| [s.starts, s.ends])
            .filter(|t| *t > now)
            .min_by(|a, b| a.total_cmp(b))
    }

    /// Drops silences that ended more than `keep` seconds before `now`.
    pub fn forget_expired(&mut self, now: f64, keep: f64) {
        self.list.retain(|s| s.ends + keep > now);
    }

    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.list.iter().find(|s| s.id == id)
    }

    pub fn all(&self) -> &[Silence] {
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence(id: &str, matchers: &[&str], starts: f64, ends: f64) -> Silence {
        Silence {
            id: id.into(),
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).unwrap())
                .collect(),
            starts,
            ends,
            comment: "maintenance".into(),
            created_by: "test".into(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_silence_mutes_only_while_active_and_only_what_matches() {
        let mut set = Silences::new(vec![silence("s1", &["target=fe-2"], 100.0, 200.0)]);
        let fe2 = labels(&[("target", "fe-2")]);
        let fe3 = labels(&[("target", "fe-3")]);
        assert_eq!(set.muting(&fe2, 99.0), None);
        assert_eq!(set.muting(&fe2, 100.0), Some("s1"));
        assert_eq!(set.muting(&fe3, 150.0), None);
        assert_eq!(set.muting(&fe2, 200.0), None);
        assert_eq!(set.next_change(50.0), Some(100.0));
        assert_eq!(set.next_change(150.0), Some(200.0));
        assert!(set.expire("s1", 150.0));
        assert_eq!(set.muting(&fe2, 150.0), None);
        assert!(!set.expire("s1", 160.0), "already expired");
        assert!(!set.expire("nope", 160.0));
        set.forget_expired(1000.0, 100.0);
        assert!(set.all().is_empty());
    }

    #[test]
    fn silences_that_would_mute_everything_are_refused() {
        assert!(silence("a", &[], 0.0, 1.0).validate().is_err());
        let e = silence("a", &["target!=x"], 0.0, 1.0)
            .validate()
            .unwrap_err();
        assert!(e.contains("every alert"), "{e}");
        assert!(silence("a", &["target=x"], 1.0, 1.0).validate().is_err());
        assert!(silence("a", &["target=x"], 0.0, 1.0).validate().is_ok());
    }
}
