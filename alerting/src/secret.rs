//! Secrets (SMTP passwords, PagerDuty routing keys, Opsgenie API keys, bearer tokens).
//!
//! A [`Secret`] is read from a file (or, for PagerDuty, written inline) and can only be looked at
//! through [`Secret::expose`], at the one place it goes on the wire. Its `Debug` prints
//! `<redacted>`, it has no `Display` and no `Serialize`, and [`Secret::scrub`] removes it from
//! text that came back from a server (an error body echoing the request) before that text is
//! logged or stored. This file does not decide where secrets live; configs name the files.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer};

/// A credential that must never reach a log line, debug output or error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// What is printed instead of a secret.
pub const REDACTED: &str = "<redacted>";

impl Secret {
    /// Wraps a value that is already in memory (tests, inline config).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Reads a secret file: surrounding whitespace and the trailing newline are trimmed. The
    /// error names the file and what to do, never the content.
    pub fn from_file(path: &Path) -> Result<Secret, String> {
        let raw = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read secret file {}: {e}; create it (one line, mode 0600, readable by the \
                 sipwatch user) or correct the path",
                path.display()
            )
        })?;
        let value = raw.trim();
        if value.is_empty() {
            return Err(format!(
                "secret file {} is empty; write the secret on its first line",
                path.display()
            ));
        }
        Ok(Secret(value.to_string()))
    }

    /// The secret itself, for the one header or body field that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of this secret replaced by `<redacted>`.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        text.replace(&self.0, REDACTED)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        let value = String::deserialize(deserializer)?;
        Ok(Secret(value.trim().to_string()))
    }
}

/// `text` with every one of `secrets` scrubbed.
pub(crate) fn scrub_all(text: &str, secrets: &[&Secret]) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |acc, secret| secret.scrub(&acc))
}

/// A URL fit for logs: user info (`user:password@`) and the query string are replaced, since
/// webhook URLs often carry tokens there.
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if !parsed.username().is_empty() || parsed.password().is_some() {
                let _ = parsed.set_username("redacted");
                let _ = parsed.set_password(None);
            }
            if parsed.query().is_some() {
                parsed.set_query(Some(REDACTED));
            }
            parsed.to_string()
        }
        Err(_) => REDACTED.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2-routing-key");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
    }

    #[test]
    fn file_is_trimmed_and_errors_do_not_leak() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "  abc123\n").unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose(), "abc123");

        std::fs::write(&path, "\n").unwrap();
        let err = Secret::from_file(&path).unwrap_err();
        assert!(err.contains("is empty"), "{err}");

        let err = Secret::from_file(&dir.path().join("missing")).unwrap_err();
        assert!(err.contains("cannot read secret file"), "{err}");
        assert!(err.contains("correct the path"), "{err}");
    }

    #[test]
    fn scrub_removes_every_occurrence() {
        let a = Secret::new("AAA");
        let b = Secret::new("BBB");
        assert_eq!(
            scrub_all("x AAA y BBB AAA", &[&a, &b]),
            "x <redacted> y <redacted> <redacted>"
        );
    }

    #[test]
    fn urls_lose_credentials_and_queries() {
        let shown = redact_url("https://bob:pw@hooks.example/x?token=abc");
        assert!(!shown.contains("pw") && !shown.contains("abc"), "{shown}");
        assert!(shown.contains("hooks.example/x"), "{shown}");
        assert_eq!(redact_url("not a url"), "<redacted>");
    }
}

/// Values shorter than this are not treated as secrets when scrubbing (they would blank out
/// ordinary words and numbers); real tokens and passwords are longer.
const MIN_SCRUBBED: usize = 4;

/// The secrets a request carries besides the configured ones: the URL's user name and password,
/// every query value (a `?token=...` webhook), and the `Authorization` header's credentials (an
/// Alertmanager URL with `user:pass@` becomes a Basic header). A receiver that echoes the request
/// in its error answer must not put them in the log or the outbox.
pub(crate) fn request_secrets(
    url: &reqwest::Url,
    headers: &reqwest::header::HeaderMap,
) -> Vec<Secret> {
    let mut found: Vec<String> = Vec::new();
    if let Some(password) = url.password() {
        found.push(password.to_string());
        found.push(url.username().to_string());
    }
    if let Some(query) = url.query() {
        found.push(query.to_string());
    }
    for (_, value) in url.query_pairs() {
        found.push(value.into_owned());
    }
    if let Some(query) = url.query() {
        found.extend(
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(_, v)| v.to_string()),
        );
    }
    for value in headers.get_all(reqwest::header::AUTHORIZATION) {
        if let Ok(v) = value.to_str() {
            found.push(v.to_string());
            if let Some((scheme, credentials)) = v.split_once(' ') {
                let credentials = credentials.trim();
                found.push(credentials.to_string());
                // Basic: the user name and password themselves, as an echo may show them.
                if scheme.eq_ignore_ascii_case("basic") {
                    use base64::Engine as _;
                    if let Some(pair) = base64::engine::general_purpose::STANDARD
                        .decode(credentials)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                    {
                        if let Some((_, password)) = pair.split_once(':') {
                            found.push(password.to_string());
                        }
                        found.push(pair);
                    }
                }
            }
        }
    }
    // Longest first, so a value is scrubbed whole before any part of it.
    found.retain(|v| v.len() >= MIN_SCRUBBED);
    found.sort_by_key(|v| std::cmp::Reverse(v.len()));
    found.dedup();
    found.into_iter().map(Secret).collect()
}

/// Blanks the credentials after `Basic ` or `Bearer ` (any case) in a text, whatever they are.
pub(crate) fn scrub_auth_schemes(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        let next = ["basic ", "bearer "]
            .iter()
            .filter_map(|scheme| lower[at..].find(scheme).map(|i| (at + i, scheme.len())))
            .min();
        let Some((start, len)) = next else {
            break;
        };
        let creds_start = start + len;
        let creds_end = text[creds_start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || "+/=-._~:".contains(c)))
            .map_or(text.len(), |i| creds_start + i);
        out.push_str(&text[at..creds_start]);
        if creds_end - creds_start >= MIN_SCRUBBED {
            out.push_str(REDACTED);
        } else {
            out.push_str(&text[creds_start..creds_end]);
        }
        at = creds_end.max(creds_start);
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod request_secret_tests {
    use super::*;

    #[test]
    fn url_and_header_secrets_are_scrubbed_from_an_echo() {
        let url = reqwest::Url::parse("http://am:s3cr3tpw@127.0.0.1:9093/hook?token=T0KEN-abc&x=1")
            .unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            "Basic YW06czNjcjN0cHc=".parse().unwrap(),
        );
        let secrets = request_secrets(&url, &headers);
        let refs: Vec<&Secret> = secrets.iter().collect();
        let echo = "you sent /hook?token=T0KEN-abc&x=1 with Authorization: Basic YW06czNjcjN0cHc= \
                    from am:s3cr3tpw";
        let scrubbed = scrub_all(echo, &refs);
        for leaked in ["T0KEN-abc", "YW06czNjcjN0cHc=", "s3cr3tpw"] {
            assert!(!scrubbed.contains(leaked), "{scrubbed}");
        }
        assert!(scrubbed.starts_with("you sent /hook?"), "{scrubbed}");
    }

    #[test]
    fn auth_scheme_credentials_are_blanked() {
        assert_eq!(
            scrub_auth_schemes("authorization: Bearer abc.DEF-123 rest; BASIC dXNlcjpw=="),
            "authorization: Bearer <redacted> rest; BASIC <redacted>"
        );
        assert_eq!(scrub_auth_schemes("basic ok"), "basic ok");
        assert_eq!(
            scrub_auth_schemes("no credentials here"),
            "no credentials here"
        );
    }
}
