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
