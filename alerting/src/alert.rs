//! The alert model: one change of one problem, named by a deterministic key.
//!
//! An [`Alert`] is what the daemon or the agent hands to the outbox: "key K is now firing" or
//! "key K is resolved". The key is the identity across processes and machines: two daemons that
//! see the same leak build the same key, and every receiver dedups on it. This file holds no
//! policy (grouping, repeat, silences live elsewhere) and does no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One state change of one problem, as receivers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic dedup key, e.g. `"sipwatch/leak/host1/kamailio/pss"`. Every notifier uses it
    /// (PagerDuty `dedup_key`, Opsgenie `alias`, Alertmanager label `key`).
    pub key: String,
    pub status: AlertStatus,
    pub severity: Severity,
    /// One line for a pager screen or a mail subject.
    pub summary: String,
    /// Details: what was measured, since when, what to look at first.
    #[serde(default)]
    pub description: String,
    /// The host or daemon that raised it.
    pub source: String,
    /// Extra dimensions (`service`, `target`, `group`, `alertname`, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Unix seconds: when it started firing, or when it resolved.
    pub at: f64,
    /// A link to more (status page, dashboard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Whether the problem is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// How urgently a human must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

impl AlertStatus {
    /// `"firing"` or `"resolved"`, as stored and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

impl Severity {
    /// `"critical"`, `"warning"` or `"info"` (also PagerDuty's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl Alert {
    /// An alert whose description is its summary; labels with an empty value are left out.
    pub fn new(
        key: String,
        status: AlertStatus,
        severity: Severity,
        summary: String,
        source: &str,
        at: f64,
        labels: &[(&str, &str)],
    ) -> Alert {
        Alert {
            key,
            status,
            severity,
            description: summary.clone(),
            summary,
            source: source.to_string(),
            labels: labels
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            at,
            url: None,
        }
    }

    /// The alert's name for grouping (Alertmanager `alertname`, PagerDuty `class`): the label
    /// `alertname` when set, otherwise the key's category, i.e. the first path segment after an
    /// optional `sipwatch/` prefix (`"sipwatch/leak/host1/kamailio/pss"` gives `"leak"`).
    pub fn alertname(&self) -> &str {
        if let Some(name) = self.labels.get("alertname").filter(|n| !n.is_empty()) {
            return name;
        }
        let mut segments = self.key.split('/').filter(|s| !s.is_empty());
        match (segments.next(), segments.next()) {
            (Some("sipwatch"), Some(category)) => category,
            (Some(first), _) => first,
            (None, _) => "sipwatch",
        }
    }

    /// The same alert, resolved at `at` (unix seconds).
    pub fn resolved_at(&self, at: f64) -> Alert {
        Alert {
            status: AlertStatus::Resolved,
            at,
            ..self.clone()
        }
    }

    /// `at` as RFC 3339 in UTC with milliseconds (`2024-05-01T03:12:00.000Z`).
    pub fn at_rfc3339(&self) -> String {
        rfc3339(self.at)
    }
}

/// Unix seconds as RFC 3339 UTC; out-of-range or NaN times print as the epoch rather than panic.
pub(crate) fn rfc3339(unix_seconds: f64) -> String {
    let secs = if unix_seconds.is_finite() {
        unix_seconds.floor()
    } else {
        0.0
    };
    let nanos = if unix_seconds.is_finite() {
        ((unix_seconds - secs) * 1e9).clamp(0.0, 999_999_999.0) as u32
    } else {
        0
    };
    chrono::DateTime::from_timestamp(secs as i64, nanos)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Cuts `text` to at most `max` characters on a char boundary, marking the cut with `…`.
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(key: &str) -> Alert {
        Alert {
            key: key.into(),
            status: AlertStatus::Firing,
            severity: Severity::Critical,
            summary: "s".into(),
            description: String::new(),
            source: "host1".into(),
            labels: BTreeMap::new(),
            at: 0.0,
            url: None,
        }
    }

    #[test]
    fn alertname_comes_from_label_or_key_category() {
        assert_eq!(
            alert("sipwatch/leak/host1/kamailio/pss").alertname(),
            "leak"
        );
        assert_eq!(alert("probe/edge-1").alertname(), "probe");
        assert_eq!(alert("").alertname(), "sipwatch");
        let mut a = alert("sipwatch/leak/x");
        a.labels.insert("alertname".into(), "KamailioLeak".into());
        assert_eq!(a.alertname(), "KamailioLeak");
    }

    #[test]
    fn times_print_as_rfc3339_utc() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_714_533_120.25), "2024-05-01T03:12:00.250Z");
        assert_eq!(rfc3339(f64::NAN), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn serde_uses_snake_case_and_roundtrips() {
        let a = alert("k");
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["status"], "firing");
        assert_eq!(json["severity"], "critical");
        let back: Alert = serde_json::from_value(json).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("äöüß", 3), "äö…");
        assert_eq!(truncate_chars("abcd", 3).chars().count(), 3);
    }
}
