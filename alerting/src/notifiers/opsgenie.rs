//! `kind = "opsgenie"`: Opsgenie Alert API v2.
//!
//! Firing: `POST /v2/alerts` with the key as `alias`; Opsgenie keeps one open alert per alias, so
//! the same alert from several daemons only bumps its count. Resolved:
//! `POST /v2/alerts/{alias}/close?identifierType=alias`. Both authenticate with
//! `Authorization: GenieKey KEY` and answer 202. Opsgenie's field limits (message 130 chars,
//! alias 512, description 15000, tag 50) are applied here rather than rejected there.

use std::fmt;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use crate::alert::{truncate_chars, Alert, AlertStatus, Severity};
use crate::config::OpsgenieConfig;
use crate::notifier::{Notifier, NotifyError};
use crate::notifiers::http;
use crate::problems::{ReceiverCheck, ReceiverProblem};
use crate::secret::Secret;

/// Where alerts go unless `url` says otherwise.
pub const DEFAULT_URL: &str = "https://api.opsgenie.com/v2/alerts";

const MESSAGE_CHARS: usize = 130;
const ALIAS_CHARS: usize = 512;
const DESCRIPTION_CHARS: usize = 15_000;
const TAG_CHARS: usize = 50;
const MAX_TAGS: usize = 20;

/// Sends alerts to Opsgenie.
pub struct OpsgenieNotifier {
    name: String,
    url: reqwest::Url,
    api_key: Secret,
    client: reqwest::Client,
}

impl OpsgenieNotifier {
    /// Checks the URL and reads the API key file.
    pub fn from_config(config: &OpsgenieConfig) -> Result<OpsgenieNotifier, Vec<ReceiverProblem>> {
        let mut problems = ReceiverCheck::new(&config.name, "opsgenie");
        let url = problems.check(
            "url",
            http::parse_url(config.url.as_deref().unwrap_or(DEFAULT_URL)).and_then(|u| {
                if u.cannot_be_a_base() {
                    Err(
                        "cannot carry a path; write it like \"https://api.opsgenie.com/v2/alerts\""
                            .to_string(),
                    )
                } else {
                    Ok(u)
                }
            }),
        );
        let api_key = problems.check("api_key_file", Secret::from_file(&config.api_key_file));
        let client = problems.check(
            "timeout",
            http::client(config.timeout.unwrap_or(http::DEFAULT_TIMEOUT)),
        );
        let built = match (url, api_key, client) {
            (Some(url), Some(api_key), Some(client)) => Some(OpsgenieNotifier {
                name: config.name.clone(),
                url,
                api_key,
                client,
            }),
            _ => None,
        };
        problems.finish(built)
    }

    /// `{url}/{alias}/close?identifierType=alias`, the alias percent-encoded as one segment.
    fn close_url(&self, alias: &str) -> reqwest::Url {
        let mut url = self.url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push(alias).push("close");
        }
        url.query_pairs_mut()
            .clear()
            .append_pair("identifierType", "alias");
        url
    }
}

/// Opsgenie priority: P1 critical, P3 warning, P5 info.
pub fn priority(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "P1",
        Severity::Warning => "P3",
        Severity::Info => "P5",
    }
}

/// The alias Opsgenie dedups on: the alert key (cut to Opsgenie's limit).
pub fn alias(alert: &Alert) -> String {
    truncate_chars(&alert.key, ALIAS_CHARS)
}

/// The body of `POST /v2/alerts` for a firing alert.
pub fn create_body(alert: &Alert) -> Value {
    let mut details = Map::new();
    details.insert("key".into(), json!(alert.key));
    details.insert("severity".into(), json!(alert.severity.as_str()));
    if let Some(url) = &alert.url {
        details.insert("url".into(), json!(url));
    }
    for (name, value) in &alert.labels {
        details.entry(name.clone()).or_insert_with(|| json!(value));
    }
    let mut tags = vec![
        "sipwatch".to_string(),
        alert.severity.as_str().to_string(),
        truncate_chars(alert.alertname(), TAG_CHARS),
    ];
    for (name, value) in &alert.labels {
        if tags.len() >= MAX_TAGS {
            break;
        }
        tags.push(truncate_chars(&format!("{name}:{value}"), TAG_CHARS));
    }
    tags.dedup();
    json!({
        "message": truncate_chars(&alert.summary, MESSAGE_CHARS),
        "alias": alias(alert),
        "description": truncate_chars(&alert.description, DESCRIPTION_CHARS),
        "priority": priority(alert.severity),
        "source": alert.source,
        "tags": tags,
        "details": details,
    })
}

/// The body of `POST /v2/alerts/{alias}/close`.
pub fn close_body(alert: &Alert) -> Value {
    json!({
        "source": alert.source,
        "note": format!("resolved at {}: {}", alert.at_rfc3339(), alert.summary),
    })
}

#[async_trait]
impl Notifier for OpsgenieNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "opsgenie"
    }

    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        let request = match alert.status {
            AlertStatus::Firing => self.client.post(self.url.clone()).json(&create_body(alert)),
            AlertStatus::Resolved => self
                .client
                .post(self.close_url(&alias(alert)))
                .json(&close_body(alert)),
        };
        let request = request.header(
            reqwest::header::AUTHORIZATION,
            format!("GenieKey {}", self.api_key.expose()),
        );
        http::send(request, &[&self.api_key]).await
    }
}

impl fmt::Debug for OpsgenieNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpsgenieNotifier")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("api_key", &self.api_key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn alert() -> Alert {
        Alert {
            key: "sipwatch/probe/edge-1".into(),
            status: AlertStatus::Firing,
            severity: Severity::Critical,
            summary: "x".repeat(200),
            description: "no answer to OPTIONS".into(),
            source: "daemon-a".into(),
            labels: BTreeMap::from([("target".into(), "edge-1".into())]),
            at: 0.0,
            url: None,
        }
    }

    #[test]
    fn create_body_respects_limits_and_maps_priority() {
        let body = create_body(&alert());
        assert_eq!(body["message"].as_str().unwrap().chars().count(), 130);
        assert_eq!(body["alias"], "sipwatch/probe/edge-1");
        assert_eq!(body["priority"], "P1");
        assert_eq!(body["source"], "daemon-a");
        assert_eq!(body["details"]["target"], "edge-1");
        let tags: Vec<&str> = body["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(
            tags.contains(&"sipwatch") && tags.contains(&"target:edge-1"),
            "{tags:?}"
        );
    }

    #[test]
    fn close_url_encodes_the_alias_as_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "GK\n").unwrap();
        let n = OpsgenieNotifier::from_config(&OpsgenieConfig {
            name: "o".into(),
            api_key_file: key,
            url: Some("http://127.0.0.1:1/v2/alerts/".into()),
            timeout: None,
        })
        .unwrap();
        assert_eq!(
            n.close_url("sipwatch/probe/edge 1").as_str(),
            "http://127.0.0.1:1/v2/alerts/sipwatch%2Fprobe%2Fedge%201/close?identifierType=alias"
        );
        assert!(!format!("{n:?}").contains("GK"));
    }
}
