//! `kind = "alertmanager"`: Prometheus Alertmanager API v2 (`POST /api/v2/alerts`).
//!
//! Alertmanager identifies an alert by its label set, so every daemon sends the same labels for
//! the same key (`alertname`, `key`, `severity`, plus the alert's labels; `source` is an
//! annotation, so two daemons reporting one problem make one alert) and the
//! cluster shows it once. Like Prometheus, we give a firing alert an `endsAt` a few resend
//! intervals ahead and re-send it while it fires ([`Notifier::resend_interval`]); otherwise
//! Alertmanager would resolve it by itself after its `resolve_timeout`. A resolved alert is sent
//! with `endsAt` = the time it resolved. For an HA cluster every URL gets every alert, in
//! parallel; one instance accepting is success (the cluster gossips the rest).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use crate::alert::{rfc3339, Alert, AlertStatus};
use crate::config::AlertmanagerConfig;
use crate::notifier::{ErrorClass, Notifier, NotifyError};
use crate::notifiers::http;
use crate::problems::{ReceiverCheck, ReceiverProblem};
use crate::secret::redact_url;

/// How often a firing alert is re-sent unless `resend` says otherwise.
pub const DEFAULT_RESEND: Duration = Duration::from_secs(60);

/// `endsAt` of a firing alert lies this many resend intervals ahead (Prometheus uses 4 too).
const ENDS_AFTER_RESENDS: u32 = 4;

/// Sends alerts to one Alertmanager or every instance of an HA cluster.
pub struct AlertmanagerNotifier {
    name: String,
    endpoints: Vec<reqwest::Url>,
    resend: Duration,
    client: reqwest::Client,
}

impl AlertmanagerNotifier {
    /// Checks every URL; `http://am:9093` and `http://am:9093/api/v2/alerts` both work.
    pub fn from_config(
        config: &AlertmanagerConfig,
    ) -> Result<AlertmanagerNotifier, Vec<ReceiverProblem>> {
        let mut problems = ReceiverCheck::new(&config.name, "alertmanager");
        let urls = config.url.to_vec();
        if urls.is_empty() {
            problems.add(
                "url",
                "is an empty list; write url = \"http://127.0.0.1:9093\" or list every instance \
                 of the cluster",
            );
        }
        let mut endpoints = Vec::new();
        for raw in &urls {
            if let Some(url) = problems.check("url", http::parse_url(raw).and_then(alerts_endpoint))
            {
                endpoints.push(url);
            }
        }
        let resend = config.resend.unwrap_or(DEFAULT_RESEND);
        if resend.is_zero() {
            problems.add("resend", "must be more than zero; write resend = \"1m\"");
        }
        let client = problems.check(
            "timeout",
            http::client(config.timeout.unwrap_or(http::DEFAULT_TIMEOUT)),
        );
        let built = client.map(|client| AlertmanagerNotifier {
            name: config.name.clone(),
            endpoints,
            resend,
            client,
        });
        problems.finish(built)
    }
}

/// `http://am:9093` -> `http://am:9093/api/v2/alerts`; a URL already ending so is kept.
fn alerts_endpoint(mut url: reqwest::Url) -> Result<reqwest::Url, String> {
    if url.path().trim_end_matches('/').ends_with("/api/v2/alerts") {
        return Ok(url);
    }
    match url.path_segments_mut() {
        Ok(mut segments) => {
            segments.pop_if_empty().extend(["api", "v2", "alerts"]);
        }
        Err(()) => return Err("cannot carry a path; write it like \"http://am:9093\"".into()),
    }
    Ok(url)
}

/// A label name Alertmanager accepts (`[a-zA-Z_][a-zA-Z0-9_]*`); other characters become `_`.
fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The labels that identify `alert` in Alertmanager; identical on every daemon for one key.
pub fn labels(alert: &Alert) -> Map<String, Value> {
    let mut labels = Map::new();
    for (name, value) in &alert.labels {
        if !value.is_empty() {
            labels.insert(label_name(name), json!(value));
        }
    }
    labels.insert("alertname".into(), json!(alert.alertname()));
    labels.insert("key".into(), json!(alert.key));
    labels.insert("severity".into(), json!(alert.severity.as_str()));
    labels
}

/// The `POST /api/v2/alerts` body for `alert`, sent at unix time `now`.
pub fn postable_alerts(alert: &Alert, now: f64, resend: Duration) -> Value {
    let ends_at = match alert.status {
        AlertStatus::Firing => now + (resend * ENDS_AFTER_RESENDS).as_secs_f64(),
        AlertStatus::Resolved => alert.at,
    };
    let mut annotations = Map::new();
    annotations.insert("summary".into(), json!(alert.summary));
    annotations.insert("source".into(), json!(alert.source));
    if !alert.description.is_empty() {
        annotations.insert("description".into(), json!(alert.description));
    }
    let mut postable = json!({
        "labels": labels(alert),
        "annotations": annotations,
        "startsAt": alert.at_rfc3339(),
        "endsAt": rfc3339(ends_at),
    });
    // Alertmanager rejects the whole alert when generatorURL is not a URL.
    if let Some(url) = alert
        .url
        .as_deref()
        .filter(|u| reqwest::Url::parse(u).is_ok())
    {
        postable["generatorURL"] = json!(url);
    }
    json!([postable])
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[async_trait]
impl Notifier for AlertmanagerNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "alertmanager"
    }

    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        let body = postable_alerts(alert, unix_now(), self.resend);
        let mut sends = tokio::task::JoinSet::new();
        for endpoint in &self.endpoints {
            let request = self.client.post(endpoint.clone()).json(&body);
            let shown = redact_url(endpoint.as_str());
            sends.spawn(async move { (shown, http::send(request, &[]).await) });
        }
        let mut accepted = 0;
        let mut failures = Vec::new();
        while let Some(joined) = sends.join_next().await {
            match joined {
                Ok((_, Ok(()))) => accepted += 1,
                Ok((endpoint, Err(e))) => failures.push((endpoint, e)),
                Err(e) => failures.push((
                    "task".to_string(),
                    NotifyError::retryable(format!("send task failed: {e}")),
                )),
            }
        }
        if accepted > 0 {
            for (endpoint, error) in &failures {
                tracing::warn!(receiver = %self.name, endpoint = %endpoint, %error,
                    "an Alertmanager instance refused the alert; the others accepted it");
            }
            return Ok(());
        }
        let class = if failures.iter().any(|(_, e)| e.is_retryable()) {
            ErrorClass::Retryable
        } else {
            ErrorClass::Permanent
        };
        let retry_after = failures.iter().filter_map(|(_, e)| e.retry_after).max();
        let message = failures
            .iter()
            .map(|(endpoint, e)| format!("{endpoint}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        Err(NotifyError {
            class,
            message,
            retry_after,
        })
    }

    fn resend_interval(&self) -> Option<Duration> {
        Some(self.resend)
    }
}

impl fmt::Debug for AlertmanagerNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self
            .endpoints
            .iter()
            .map(|u| redact_url(u.as_str()))
            .collect();
        f.debug_struct("AlertmanagerNotifier")
            .field("name", &self.name)
            .field("endpoints", &shown)
            .field("resend", &self.resend)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;
    use std::collections::BTreeMap;

    fn alert() -> Alert {
        Alert {
            key: "sipwatch/leak/host1/kamailio/pss".into(),
            status: AlertStatus::Firing,
            severity: Severity::Critical,
            summary: "leak".into(),
            description: "grows".into(),
            source: "host1".into(),
            labels: BTreeMap::from([
                ("service".into(), "kamailio".into()),
                ("severity".into(), "ignored".into()),
                ("gauge.name".into(), "pss".into()),
            ]),
            at: 100.0,
            url: Some("not a url".into()),
        }
    }

    #[test]
    fn endpoints_get_the_api_path_once() {
        let e = |s: &str| {
            alerts_endpoint(reqwest::Url::parse(s).unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(e("http://am:9093"), "http://am:9093/api/v2/alerts");
        assert_eq!(e("http://am:9093/"), "http://am:9093/api/v2/alerts");
        assert_eq!(e("http://am:9093/am/"), "http://am:9093/am/api/v2/alerts");
        assert_eq!(
            e("http://am:9093/api/v2/alerts"),
            "http://am:9093/api/v2/alerts"
        );
    }

    #[test]
    fn firing_ends_ahead_and_resolved_ends_when_resolved() {
        let firing = postable_alerts(&alert(), 1000.0, Duration::from_secs(60));
        let a = &firing[0];
        assert_eq!(a["labels"]["alertname"], "leak");
        assert_eq!(a["labels"]["key"], "sipwatch/leak/host1/kamailio/pss");
        assert_eq!(a["labels"]["severity"], "critical");
        assert!(a["labels"].get("source").is_none(), "source is not a label");
        assert_eq!(a["annotations"]["source"], "host1");
        assert_eq!(a["labels"]["service"], "kamailio");
        assert_eq!(a["labels"]["gauge_name"], "pss");
        assert_eq!(a["annotations"]["summary"], "leak");
        assert_eq!(a["startsAt"], "1970-01-01T00:01:40.000Z");
        assert_eq!(a["endsAt"], rfc3339(1240.0));
        assert!(a.get("generatorURL").is_none());

        let resolved = postable_alerts(&alert().resolved_at(500.0), 1000.0, DEFAULT_RESEND);
        assert_eq!(resolved[0]["endsAt"], rfc3339(500.0));
        assert_eq!(resolved[0]["labels"], a["labels"]);
    }

    #[test]
    fn label_names_are_sanitized() {
        assert_eq!(label_name("a.b-c"), "a_b_c");
        assert_eq!(label_name("9x"), "_9x");
        assert_eq!(label_name(""), "_");
    }
}
