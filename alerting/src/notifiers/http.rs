//! Shared plumbing of the HTTP notifiers: one client per receiver, one way to send a request and
//! turn the outcome into `Ok` or a classified, scrubbed [`NotifyError`].
//!
//! Error messages never carry the request URL (webhook URLs hold tokens) nor a secret that the
//! server echoed back in its error body.

use std::error::Error as _;
use std::time::Duration;

use crate::notifier::NotifyError;
use crate::secret::{request_secrets, scrub_all, scrub_auth_schemes, Secret};

/// Used when a receiver sets no `timeout`.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an error body is kept for the log.
const DETAIL_CHARS: usize = 300;

/// A client with the receiver's timeout (rustls with ring, webpki roots).
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("sipwatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Parses an `http://` or `https://` URL; the error says what is wrong without echoing
/// credentials that might be in it.
pub(crate) fn parse_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| format!("not a valid URL ({e}); write it like \"https://host:port/path\""))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!(
            "scheme \"{other}\" is not supported; use http:// or https://"
        )),
    }
}

/// Sends `request`; any 2xx is success. `secrets` are scrubbed from every error message.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    secrets: &[&Secret],
) -> Result<(), NotifyError> {
    let (client, request) = request.build_split();
    let request = request.map_err(|e| transport_error(e, secrets))?;
    // Credentials in the URL and the Authorization header are scrubbed too (an echoing
    // receiver would otherwise put them in the log and the outbox).
    let carried = request_secrets(request.url(), request.headers());
    let mut all: Vec<&Secret> = secrets.to_vec();
    all.extend(carried.iter());
    let secrets = all.as_slice();
    let response = client
        .execute(request)
        .await
        .map_err(|e| transport_error(e, secrets))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.text().await.unwrap_or_default();
    // Scrubbed whole, then cut: a secret at the cut would otherwise leak in part.
    let detail = scrub_auth_schemes(&scrub_all(body.trim(), secrets));
    let detail: String = detail.chars().take(DETAIL_CHARS).collect();
    Err(NotifyError::from_http_status(
        status.as_u16(),
        &detail,
        retry_after,
    ))
}

/// A request that got no HTTP answer. Building the request wrong is permanent; everything else
/// (refused, reset, timed out, TLS handshake) is retryable.
fn transport_error(err: reqwest::Error, secrets: &[&Secret]) -> NotifyError {
    let permanent = err.is_builder();
    let timeout = err.is_timeout();
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if timeout && !message.contains("timed out") {
        message.push_str(" (timed out)");
    }
    let message = scrub_auth_schemes(&scrub_all(&message, secrets));
    if permanent {
        NotifyError::permanent(message)
    } else {
        NotifyError::retryable(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(parse_url("https://events.pagerduty.com/v2/enqueue").is_ok());
        assert!(parse_url("ftp://x/").unwrap_err().contains("http://"));
        assert!(parse_url("events.pagerduty.com").is_err());
    }

    #[tokio::test]
    async fn connection_refused_is_retryable_and_has_no_url() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = client(Duration::from_secs(2)).unwrap();
        let secret = Secret::new("tok3n");
        let err = send(
            c.post(format!("http://127.0.0.1:{port}/hook?token=tok3n")),
            &[&secret],
        )
        .await
        .unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        assert!(!err.message.contains("tok3n"), "{err}");
        assert!(!err.message.contains("/hook"), "{err}");
    }
}
