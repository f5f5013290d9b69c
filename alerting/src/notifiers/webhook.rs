//! `kind = "webhook"`: POSTs the [`Alert`] as JSON to a URL, optionally with a bearer token.
//!
//! The body is exactly the serde form of [`Alert`] (`key`, `status`, `severity`, `summary`,
//! `description`, `source`, `labels`, `at`, `url`), so a receiving script can dedup on `key`.

use std::fmt;

use async_trait::async_trait;

use crate::alert::Alert;
use crate::config::WebhookConfig;
use crate::notifier::{Notifier, NotifyError};
use crate::notifiers::http;
use crate::receivers::{ConfigProblem, Problems};
use crate::secret::{redact_url, Secret};

/// Sends alerts to an HTTP endpoint of the user's own.
pub struct WebhookNotifier {
    name: String,
    url: reqwest::Url,
    bearer_token: Option<Secret>,
    client: reqwest::Client,
}

impl WebhookNotifier {
    /// Checks the URL and reads the bearer token file.
    pub fn from_config(config: &WebhookConfig) -> Result<WebhookNotifier, Vec<ConfigProblem>> {
        let mut problems = Problems::new(&config.name, "webhook");
        let url = problems.check("url", http::parse_url(&config.url));
        let bearer_token = match &config.bearer_token_file {
            Some(path) => problems.check("bearer_token_file", Secret::from_file(path)),
            None => None,
        };
        let client = problems.check(
            "timeout",
            http::client(config.timeout.unwrap_or(http::DEFAULT_TIMEOUT)),
        );
        let built = match (url, client) {
            (Some(url), Some(client)) => Some(WebhookNotifier {
                name: config.name.clone(),
                url,
                bearer_token,
                client,
            }),
            _ => None,
        };
        problems.finish(built)
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        let mut request = self.client.post(self.url.clone()).json(alert);
        if let Some(token) = &self.bearer_token {
            request = request.bearer_auth(token.expose());
        }
        let secrets: Vec<&Secret> = self.bearer_token.iter().collect();
        http::send(request, &secrets).await
    }
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("name", &self.name)
            .field("url", &redact_url(self.url.as_str()))
            .field("bearer_token", &self.bearer_token)
            .finish()
    }
}
