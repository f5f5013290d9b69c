//! Any number a service publishes as JSON over HTTP: `GET url`, then the value at a JSON pointer
//! (RFC 6901, e.g. `/sessions/active` or `/workers/0/queue`). Numbers and numeric strings are
//! accepted; `true`/`false` read as 1/0.
//!
//! The request has a timeout; redirects are followed. The response body is never logged (it may
//! hold secrets); errors quote at most the start of a non-JSON body.

use std::time::Duration;

use serde_json::Value;

use super::kind::{BuildContext, GaugeCheck, GaugeKind, RawGauge};
use crate::agent::sampler::{Reading, SampleContext, SampleError, SampleFuture, Sampler};

/// Most bytes of body accepted.
pub const MAX_BODY: usize = 4 << 20;

/// The number at `pointer` in `doc`.
pub fn number_at(doc: &Value, pointer: &str) -> Result<f64, String> {
    let value = doc
        .pointer(pointer)
        .ok_or_else(|| format!("the JSON has nothing at pointer \"{pointer}\""))?;
    as_number(value).ok_or_else(|| {
        let shown: String = value.to_string().chars().take(60).collect();
        format!("the value at \"{pointer}\" is not a number: {shown}")
    })
}

/// A JSON value read as a number.
pub fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
    .filter(|v| v.is_finite())
}

/// Fetches and decodes a JSON document (a GET, or a POST of `body`).
pub async fn fetch_json(
    client: &reqwest::Client,
    url: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, SampleError> {
    let request = match body {
        Some(body) => client.post(url).json(body),
        None => client.get(url),
    };
    let mut response = request
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| SampleError::new(format!("request to {url} failed: {}", describe(&e))))?;
    let status = response.status();
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| SampleError::new(format!("reading the answer of {url}: {}", describe(&e))))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_BODY {
            return Err(SampleError::new(format!(
                "{url} answered more than {MAX_BODY} bytes"
            )));
        }
    }
    if !status.is_success() {
        return Err(SampleError::new(format!("{url} answered HTTP {status}")));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        SampleError::new(format!(
            "{url} did not answer JSON ({e}); the body begins with \"{}\"",
            String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).trim()
        ))
    })
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection refused or unreachable".to_owned()
    } else {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

/// Samples a number from an HTTP JSON endpoint.
pub struct HttpJsonSampler {
    client: reqwest::Client,
    url: String,
    pointer: String,
    timeout: Duration,
}

impl HttpJsonSampler {
    pub fn new(client: reqwest::Client, url: String, pointer: String, timeout: Duration) -> Self {
        HttpJsonSampler {
            client,
            url,
            pointer,
            timeout,
        }
    }
}

impl Sampler for HttpJsonSampler {
    fn sample<'a>(&'a mut self, _ctx: &'a SampleContext) -> SampleFuture<'a> {
        Box::pin(async move {
            let doc = fetch_json(&self.client, &self.url, None, self.timeout).await?;
            let value = number_at(&doc, &self.pointer)
                .map_err(|e| SampleError::new(format!("{}: {e}", self.url)))?;
            Ok(Reading::value(value))
        })
    }
}

/// `kind = "http_json"`: a number in the JSON document served at `url`, found by a JSON pointer
/// (RFC 6901).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpJsonConfig {
    pub url: String,
    pub pointer: String,
    pub timeout: Duration,
}

impl GaugeKind for HttpJsonConfig {
    const NAMES: &'static [&'static str] = &["http_json"];
    const KEYS: &'static [&'static str] = &["url", "pointer", "timeout"];

    fn check(raw: &RawGauge, c: &mut GaugeCheck<'_, '_>) -> Option<Self> {
        let url = c.url(&raw.url, "url = \"http://127.0.0.1:8080/stats\"");
        let pointer = match &raw.pointer {
            None => {
                c.missing(
                    "pointer",
                    "pointer = \"/sessions/active\" (a JSON pointer, RFC 6901)",
                );
                None
            }
            Some(p) if !p.get_ref().is_empty() && !p.get_ref().starts_with('/') => {
                c.error(
                    p.span(),
                    format!(
                        "pointer = \"{}\" is not a JSON pointer; it starts with '/', e.g. \"/{}\"",
                        p.get_ref(),
                        p.get_ref().replace('.', "/")
                    ),
                );
                None
            }
            Some(p) => Some(p.get_ref().clone()),
        };
        Some(HttpJsonConfig {
            url: url?,
            pointer: pointer?,
            timeout: c.timeout,
        })
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Box<dyn Sampler> {
        Box::new(HttpJsonSampler::new(
            ctx.client.clone(),
            self.url.clone(),
            self.pointer.clone(),
            self.timeout,
        ))
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_and_numbers() {
        let doc: Value = serde_json::json!({"sessions": {"active": 149, "list": [1, "2.5", true]}});
        assert_eq!(number_at(&doc, "/sessions/active"), Ok(149.0));
        assert_eq!(number_at(&doc, "/sessions/list/1"), Ok(2.5));
        assert_eq!(number_at(&doc, "/sessions/list/2"), Ok(1.0));
        assert!(number_at(&doc, "/sessions/missing")
            .unwrap_err()
            .contains("nothing at pointer"));
        assert!(number_at(&doc, "/sessions")
            .unwrap_err()
            .contains("not a number"));
    }
}
