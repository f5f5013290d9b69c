//! `kind = "pagerduty"`: PagerDuty Events API v2 (`POST /v2/enqueue`).
//!
//! A firing alert is `event_action = "trigger"` with a `payload`; a resolved one is
//! `event_action = "resolve"` (PagerDuty ignores a payload there, so none is sent). The alert key
//! is the `dedup_key`: PagerDuty folds triggers with the same key from several daemons into one
//! incident and resolves it with the first resolve. PagerDuty answers 202; 400 means the event
//! was invalid (permanent), 429 and 5xx are retried.

use std::fmt;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use crate::alert::{truncate_chars, Alert, AlertStatus};
use crate::config::PagerDutyConfig;
use crate::notifier::{Notifier, NotifyError};
use crate::notifiers::http;
use crate::problems::{ReceiverCheck, ReceiverProblem};
use crate::secret::Secret;

/// Where events go unless `url` says otherwise.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// PagerDuty cuts `payload.summary` at 1024 characters.
const SUMMARY_CHARS: usize = 1024;
/// PagerDuty's limit on `dedup_key`.
const DEDUP_KEY_CHARS: usize = 255;

/// Sends alerts as PagerDuty events.
pub struct PagerDutyNotifier {
    name: String,
    url: reqwest::Url,
    routing_key: Secret,
    client: reqwest::Client,
}

impl PagerDutyNotifier {
    /// Checks the URL and reads the routing key (file or inline, exactly one).
    pub fn from_config(
        config: &PagerDutyConfig,
    ) -> Result<PagerDutyNotifier, Vec<ReceiverProblem>> {
        let mut problems = ReceiverCheck::new(&config.name, "pagerduty");
        let url = problems.check(
            "url",
            http::parse_url(config.url.as_deref().unwrap_or(DEFAULT_URL)),
        );
        let routing_key = match (&config.routing_key_file, &config.routing_key) {
            (Some(path), None) => problems.check("routing_key_file", Secret::from_file(path)),
            (None, Some(key)) if !key.expose().is_empty() => Some(key.clone()),
            (None, Some(_)) => {
                problems.add(
                    "routing_key",
                    "is empty; paste the integration key of the service's Events API v2 \
                     integration, or use routing_key_file",
                );
                None
            }
            (Some(_), Some(_)) => {
                problems.add(
                    "routing_key",
                    "is set together with routing_key_file; keep only one (prefer the file)",
                );
                None
            }
            (None, None) => {
                problems.add(
                    "routing_key_file",
                    "is missing; write routing_key_file = \"/etc/sipwatch/pagerduty.key\" with \
                     the integration key of the service's Events API v2 integration",
                );
                None
            }
        };
        let client = problems.check(
            "timeout",
            http::client(config.timeout.unwrap_or(http::DEFAULT_TIMEOUT)),
        );
        let built = match (url, routing_key, client) {
            (Some(url), Some(routing_key), Some(client)) => Some(PagerDutyNotifier {
                name: config.name.clone(),
                url,
                routing_key,
                client,
            }),
            _ => None,
        };
        problems.finish(built)
    }
}

/// The Events API v2 body for `alert`.
pub fn event_body(alert: &Alert, routing_key: &Secret) -> Value {
    let dedup_key = truncate_chars(&alert.key, DEDUP_KEY_CHARS);
    let mut body = json!({
        "routing_key": routing_key.expose(),
        "dedup_key": dedup_key,
    });
    match alert.status {
        AlertStatus::Resolved => {
            body["event_action"] = json!("resolve");
        }
        AlertStatus::Firing => {
            body["event_action"] = json!("trigger");
            let mut details = Map::new();
            details.insert("key".into(), json!(alert.key));
            if !alert.description.is_empty() {
                details.insert("description".into(), json!(alert.description));
            }
            for (name, value) in &alert.labels {
                details.entry(name.clone()).or_insert_with(|| json!(value));
            }
            let source = if alert.source.is_empty() {
                "sipwatch"
            } else {
                &alert.source
            };
            let mut payload = json!({
                "summary": truncate_chars(&alert.summary, SUMMARY_CHARS),
                "source": source,
                "severity": alert.severity.as_str(),
                "timestamp": alert.at_rfc3339(),
                "class": alert.alertname(),
                "custom_details": details,
            });
            let component = alert
                .labels
                .get("component")
                .or_else(|| alert.labels.get("service"))
                .or_else(|| alert.labels.get("target"));
            if let Some(component) = component {
                payload["component"] = json!(component);
            }
            if let Some(group) = alert.labels.get("group") {
                payload["group"] = json!(group);
            }
            body["payload"] = payload;
            if let Some(url) = &alert.url {
                body["links"] = json!([{ "href": url, "text": "sipwatch" }]);
            }
        }
    }
    body
}

#[async_trait]
impl Notifier for PagerDutyNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        let request = self
            .client
            .post(self.url.clone())
            .json(&event_body(alert, &self.routing_key));
        http::send(request, &[&self.routing_key]).await
    }
}

impl fmt::Debug for PagerDutyNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagerDutyNotifier")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("routing_key", &self.routing_key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;
    use std::collections::BTreeMap;

    fn leak() -> Alert {
        Alert {
            key: "sipwatch/leak/host1/kamailio/pss".into(),
            status: AlertStatus::Firing,
            severity: Severity::Warning,
            summary: "kamailio pss grows 40 MiB/h".into(),
            description: "limit in 6h".into(),
            source: "host1".into(),
            labels: BTreeMap::from([
                ("service".into(), "kamailio".into()),
                ("group".into(), "edge".into()),
            ]),
            at: 0.0,
            url: Some("http://status/x".into()),
        }
    }

    #[test]
    fn trigger_carries_payload_and_links() {
        let body = event_body(&leak(), &Secret::new("RK"));
        assert_eq!(body["routing_key"], "RK");
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(body["dedup_key"], "sipwatch/leak/host1/kamailio/pss");
        let p = &body["payload"];
        assert_eq!(p["summary"], "kamailio pss grows 40 MiB/h");
        assert_eq!(p["source"], "host1");
        assert_eq!(p["severity"], "warning");
        assert_eq!(p["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(p["component"], "kamailio");
        assert_eq!(p["group"], "edge");
        assert_eq!(p["class"], "leak");
        assert_eq!(p["custom_details"]["description"], "limit in 6h");
        assert_eq!(body["links"][0]["href"], "http://status/x");
    }

    #[test]
    fn resolve_has_no_payload() {
        let body = event_body(&leak().resolved_at(10.0), &Secret::new("RK"));
        assert_eq!(body["event_action"], "resolve");
        assert_eq!(body["dedup_key"], "sipwatch/leak/host1/kamailio/pss");
        assert!(body.get("payload").is_none());
    }

    #[test]
    fn debug_hides_the_routing_key() {
        let n = PagerDutyNotifier::from_config(&PagerDutyConfig {
            name: "p".into(),
            routing_key_file: None,
            routing_key: Some(Secret::new("R0UT1NG")),
            url: None,
            timeout: None,
        })
        .unwrap();
        let shown = format!("{n:?}");
        assert!(!shown.contains("R0UT1NG"), "{shown}");
    }
}
