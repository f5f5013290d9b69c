//! Durations in receiver configs, written like `"10s"`, `"2m"` (humantime syntax).
//!
//! A bare number is refused: "5" could mean seconds or milliseconds, and a wrong guess turns a
//! 5-second timeout into a 5-millisecond one. The daemon's own configs follow the same rule.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses `"500ms"`, `"10s"`, `"2m"`, `"1h"`; the error says how to write it.
pub(crate) fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "duration {s:?} has no unit; write \"{t}s\" or \"{t}ms\""
        ));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("bad duration {s:?} ({e}); write it like \"500ms\", \"10s\", \"2m\""))
}

/// `deserialize_with` for `Option<Duration>` fields (use with `#[serde(default)]`).
pub(crate) fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map(Some).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_required() {
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert!(parse("5").unwrap_err().contains("write \"5s\""));
        assert!(parse("soon").is_err());
    }
}
