//! `kind = "teams"`: Microsoft Teams through a Workflows incoming webhook, which takes a
//! `message` with one Adaptive Card attachment (the format Microsoft documents for "Post to a
//! channel when a webhook request is received").
//!
//! The card has the title (`[FIRING:40] frontends: 40 nodes down`), the body text, facts
//! (status, severity, source, since) and an "Open status page" action when a URL is known. The
//! webhook URL is a secret: never logged, scrubbed from errors.

use std::fmt;

use async_trait::async_trait;

use crate::alert::{truncate_chars, Alert, AlertStatus};
use crate::config::ChatConfig;
use crate::notifier::{Notifier, NotifyError};
use crate::notifiers::{chat_url, email, http, url_secrets};
use crate::problems::{ReceiverCheck, ReceiverProblem};
use crate::secret::Secret;

const MAX_TEXT: usize = 3_500;

pub struct TeamsNotifier {
    name: String,
    url: reqwest::Url,
    secrets: Vec<Secret>,
    client: reqwest::Client,
}

impl TeamsNotifier {
    pub fn from_config(config: &ChatConfig) -> Result<TeamsNotifier, Vec<ReceiverProblem>> {
        let mut problems = ReceiverCheck::new(&config.name, "teams");
        let url = chat_url(config, &mut problems);
        let client = problems.check(
            "timeout",
            http::client(config.timeout.unwrap_or(http::DEFAULT_TIMEOUT)),
        );
        let built = match (url, client) {
            (Some((url, secret)), Some(client)) => Some(TeamsNotifier {
                name: config.name.clone(),
                secrets: url_secrets(&url, &secret),
                url,
                client,
            }),
            _ => None,
        };
        problems.finish(built)
    }
}

/// The JSON body for `alert`.
pub fn payload(alert: &Alert) -> serde_json::Value {
    let body_text = if alert.labels.contains_key("grouped") || !alert.description.is_empty() {
        alert.description.trim_end().to_string()
    } else {
        alert.summary.clone()
    };
    let color = match alert.status {
        AlertStatus::Firing => "Attention",
        AlertStatus::Resolved => "Good",
    };
    let mut card = serde_json::json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": email::subject(alert),
                "weight": "Bolder",
                "size": "Medium",
                "color": color,
                "wrap": true
            },
            {
                "type": "TextBlock",
                "text": truncate_chars(&body_text, MAX_TEXT),
                "wrap": true
            },
            {
                "type": "FactSet",
                "facts": [
                    {"title": "Status", "value": alert.status.as_str()},
                    {"title": "Severity", "value": alert.severity.as_str()},
                    {"title": "Source", "value": alert.source},
                    {"title": "Since", "value": alert.at_rfc3339()},
                    {"title": "Key", "value": alert.key}
                ]
            }
        ]
    });
    if let Some(url) = &alert.url {
        card["actions"] = serde_json::json!([
            {"type": "Action.OpenUrl", "title": "Open status page", "url": url}
        ]);
    }
    serde_json::json!({
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card
            }
        ]
    })
}

#[async_trait]
impl Notifier for TeamsNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "teams"
    }

    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        let request = self.client.post(self.url.clone()).json(&payload(alert));
        let secrets: Vec<&Secret> = self.secrets.iter().collect();
        http::send(request, &secrets).await
    }
}

impl fmt::Debug for TeamsNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeamsNotifier")
            .field("name", &self.name)
            .field("url", &"<redacted>")
            .finish()
    }
}
