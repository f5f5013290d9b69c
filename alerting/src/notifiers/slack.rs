//! `kind = "slack"`: Slack-compatible incoming webhooks (Slack, Mattermost, Rocket.Chat all take
//! a JSON body with a `text` field), so an alert lands where on-call already talks.
//!
//! The text is the mail subject on the first line (`[FIRING:40] frontends: 40 nodes down`, or
//! `[FIRING critical] summary (source)`), then the body: what, where, since when, and the
//! status-page link, which every one of these chats turns into a link. The webhook URL is a
//! secret: it is never logged and is scrubbed from errors.

use std::fmt;

use async_trait::async_trait;

use crate::alert::{truncate_chars, Alert};
use crate::config::ChatConfig;
use crate::notifier::{Notifier, NotifyError};
use crate::notifiers::{chat_url, email, http, url_secrets};
use crate::problems::{ReceiverCheck, ReceiverProblem};
use crate::secret::Secret;

/// Slack's documented limit for `text` is 40,000 characters; stay well below.
const MAX_TEXT: usize = 3_500;

pub struct SlackNotifier {
    name: String,
    url: reqwest::Url,
    secrets: Vec<Secret>,
    client: reqwest::Client,
}

impl SlackNotifier {
    pub fn from_config(config: &ChatConfig) -> Result<SlackNotifier, Vec<ReceiverProblem>> {
        let mut problems = ReceiverCheck::new(&config.name, "slack");
        let url = chat_url(config, &mut problems);
        let client = problems.check(
            "timeout",
            http::client(config.timeout.unwrap_or(http::DEFAULT_TIMEOUT)),
        );
        let built = match (url, client) {
            (Some((url, secret)), Some(client)) => Some(SlackNotifier {
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

/// The `text` sent for `alert`.
pub fn text(alert: &Alert) -> String {
    let mut text = email::subject(alert);
    text.push_str("\n\n");
    if alert.labels.contains_key("grouped") {
        text.push_str(alert.description.trim_end());
    } else {
        text.push_str(email::body(alert).trim_end());
    }
    truncate_chars(&text, MAX_TEXT)
}

/// The JSON body: `{"text": ...}`.
pub fn payload(alert: &Alert) -> serde_json::Value {
    serde_json::json!({ "text": text(alert) })
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "slack"
    }

    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        let request = self.client.post(self.url.clone()).json(&payload(alert));
        let secrets: Vec<&Secret> = self.secrets.iter().collect();
        http::send(request, &secrets).await
    }
}

impl fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackNotifier")
            .field("name", &self.name)
            .field("url", &"<redacted>")
            .finish()
    }
}
