//! Durations as people write them in flags and configs: `500ms`, `5s`, `2m`, `1h30m`.
//!
//! A bare number is refused on purpose: "5" could mean seconds or milliseconds, and a wrong guess
//! turns a 5-second timeout into a 5-millisecond one.

use std::time::Duration;

/// Parses `"10s"`, `"500ms"`, `"2m"`, `"1h"` (humantime syntax). The error says how to fix it.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "duration {s:?} has no unit; write \"{t}s\" or \"{t}ms\""
        ));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("bad duration {s:?} ({e}); write it like \"500ms\", \"10s\", \"2m\", \"1h\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_required() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5").unwrap_err().contains("write \"5s\""));
        assert!(parse_duration("fast").is_err());
    }
}
