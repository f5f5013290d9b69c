//! `kind = "webhook"`: POSTs the [`Alert`] as JSON to a URL, optionally with a bearer token.
//!
//! The body is exactly the serde form of [`Alert`] (`key`, `status`, `severity`, `summary`,
//! `description`, `source`, `labels`, `at`, `url`), so a receiving script can dedup on `key`.
//!
//! With `signing_secret_file`, every request carries `X-Sipwatch-Timestamp: UNIX_SECONDS` and
//! `X-Sipwatch-Signature: sha256=HEX`, the HMAC-SHA256 (key: the secret) of
//! `TIMESTAMP.BODY` (the timestamp, a dot, the exact body bytes). A receiver recomputes it,
//! compares in constant time, and refuses old timestamps, so a captured request cannot be
//! replayed later.

use std::fmt;

use async_trait::async_trait;

use crate::alert::Alert;
use crate::config::WebhookConfig;
use crate::notifier::{Notifier, NotifyError};
use crate::notifiers::http;
use crate::problems::{ReceiverCheck, ReceiverProblem};
use crate::secret::{redact_url, Secret};

/// Sends alerts to an HTTP endpoint of the user's own.
pub struct WebhookNotifier {
    name: String,
    url: reqwest::Url,
    bearer_token: Option<Secret>,
    signing_secret: Option<Secret>,
    client: reqwest::Client,
}

/// `sha256=HEX` of HMAC-SHA256(`secret`, `TIMESTAMP.BODY`).
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl WebhookNotifier {
    /// Checks the URL and reads the bearer token file.
    pub fn from_config(config: &WebhookConfig) -> Result<WebhookNotifier, Vec<ReceiverProblem>> {
        let mut problems = ReceiverCheck::new(&config.name, "webhook");
        let url = problems.check("url", http::parse_url(&config.url));
        let bearer_token = match &config.bearer_token_file {
            Some(path) => problems.check("bearer_token_file", Secret::from_file(path)),
            None => None,
        };
        let signing_secret = match &config.signing_secret_file {
            Some(path) => problems.check("signing_secret_file", Secret::from_file(path)),
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
                signing_secret,
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
        let body = serde_json::to_vec(alert)
            .map_err(|e| NotifyError::permanent(format!("cannot encode the alert: {e}")))?;
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.signing_secret {
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            request = request
                .header("X-Sipwatch-Timestamp", timestamp.to_string())
                .header(
                    "X-Sipwatch-Signature",
                    signature(secret.expose(), timestamp, &body),
                );
        }
        let mut request = request.body(body);
        if let Some(token) = &self.bearer_token {
            request = request.bearer_auth(token.expose());
        }
        let secrets: Vec<&Secret> = self
            .bearer_token
            .iter()
            .chain(self.signing_secret.iter())
            .collect();
        http::send(request, &secrets).await
    }
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("name", &self.name)
            .field("url", &redact_url(self.url.as_str()))
            .field("bearer_token", &self.bearer_token)
            .field("signing_secret", &self.signing_secret)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        let sig = signature("Jefe", 1700000000, b"{}");
        assert!(sig.starts_with("sha256="));
        assert_eq!(sig.len(), "sha256=".len() + 64);
        assert_ne!(sig, signature("Jefe", 1700000001, b"{}"));
        assert_ne!(sig, signature("Jeff", 1700000000, b"{}"));
        // Known value, computed with: printf '1700000000.{}' | openssl dgst -sha256 -hmac Jefe
        assert_eq!(
            sig,
            "sha256=d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207"
        );
    }
}
