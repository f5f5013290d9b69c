//! The one contract every receiver kind implements, and how a failed send is classified.
//!
//! A [`Notifier`] sends one [`Alert`] to one receiver and says whether it worked. It does not
//! retry, queue or dedup: the [`crate::Outbox`] does that for all kinds alike, guided by the
//! [`ErrorClass`] of a [`NotifyError`]: retryable (connection refused, timeouts, HTTP 5xx, 429,
//! SMTP 4xx) or permanent (HTTP 4xx, SMTP 5xx, a malformed message). Adding a receiver kind is
//! one file in `notifiers/` plus a variant in [`crate::ReceiverConfig`].

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::alert::Alert;

/// Sends alerts to one configured receiver.
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// The receiver's configured name (unique; outbox deliveries are keyed by it).
    fn name(&self) -> &str;

    /// The receiver kind as written in configs (`"email"`, `"pagerduty"`, ...).
    fn kind(&self) -> &'static str;

    /// Delivers one alert (firing or resolved). Must not log or return secrets.
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError>;

    /// For receivers that forget a firing alert unless it is repeated (Alertmanager): how often
    /// the outbox re-sends alerts that are still firing. `None` (the default): never.
    fn resend_interval(&self) -> Option<Duration> {
        None
    }
}

/// Whether trying again later can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The receiver is down, slow or overloaded: keep the delivery and retry with back-off.
    Retryable,
    /// The receiver refused this request (bad key, malformed payload): retrying will not help.
    Permanent,
}

/// Why a send failed. The message is safe to log: secrets are scrubbed before it is built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct NotifyError {
    pub class: ErrorClass,
    pub message: String,
    /// The receiver asked us to wait this long (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl NotifyError {
    pub fn retryable(message: impl Into<String>) -> NotifyError {
        NotifyError {
            class: ErrorClass::Retryable,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> NotifyError {
        NotifyError {
            class: ErrorClass::Permanent,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }

    /// Classifies an HTTP status that is not a success: 5xx, 429 and 408 are retryable, every
    /// other 4xx is permanent.
    pub fn from_http_status(status: u16, detail: &str, retry_after: Option<Duration>) -> Self {
        let class = if status >= 500 || status == 429 || status == 408 {
            ErrorClass::Retryable
        } else {
            ErrorClass::Permanent
        };
        let mut message = format!("HTTP {status}");
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        NotifyError {
            class,
            message,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_are_classified() {
        for retryable in [500, 502, 503, 504, 429, 408] {
            assert!(
                NotifyError::from_http_status(retryable, "", None).is_retryable(),
                "{retryable}"
            );
        }
        for permanent in [400, 401, 403, 404, 413, 422] {
            assert!(
                !NotifyError::from_http_status(permanent, "", None).is_retryable(),
                "{permanent}"
            );
        }
        assert_eq!(
            NotifyError::from_http_status(400, "bad key", None).to_string(),
            "HTTP 400: bad key"
        );
    }
}
