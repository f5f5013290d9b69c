//! Durations as people write them in sipwatch's flags and configs: `500ms`, `10s`, `2m`, `1.5h`,
//! `1h30m`, `7d`, `2w`. The one parser every crate of the workspace uses (the daemon, the agent, the
//! alert receivers, the leak detector), so a duration that works in one file works in all of them.
//! It lives here because this is the lowest crate that reads configs; the binary crate depends on it.
//!
//! A unit is always required: "5" could mean seconds or milliseconds, and a wrong guess turns a
//! 5-second timeout into a 5-millisecond one. Units are the short ones only (`ms`, `s`, `m`, `h`,
//! `d`, `w`): `"10sec"` or `"2 minutes"` is an error that says what to write. Pure functions, no I/O.

use std::time::Duration;

/// Seconds per unit, longest spelling first so `ms` is not read as `m` then `s`.
const UNITS: [(&str, f64); 6] = [
    ("ms", 0.001),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86_400.0),
    ("w", 604_800.0),
];

/// Parses a duration in seconds; see the module doc for the syntax. The error quotes the text and
/// says how to fix it.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration; write e.g. \"10s\", \"2m\", \"1h\"".into());
    }
    if t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "duration {t:?} has no unit; write \"{t}s\" or \"{t}ms\""
        ));
    }
    let mut total = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(format!(
                "duration {t:?}: expected a number at {after:?}; write e.g. \"10s\", \"1h30m\""
            ));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| format!("duration {t:?}: {number:?} is not a number"))?;
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!(
                "duration {t:?} has no unit after {number:?}; write \"{number}s\" or \"{number}m\""
            ));
        }
        let Some(&(_, per)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!(
                "duration {t:?}: unknown unit {unit:?}; use ms, s, m, h, d or w, e.g. \"{number}s\""
            ));
        };
        total += value * per;
        rest = tail.trim_start();
    }
    if !total.is_finite() {
        return Err(format!("duration {t:?} is too large"));
    }
    Ok(total)
}

/// [`parse_seconds`] as a [`Duration`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let seconds = parse_seconds(text)?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("duration {text:?} is too large"))
}

/// The shortest exact spelling of a number of seconds in the largest whole unit up to days: `"7d"`, `"90m"`,
/// `"1.5s"`, `"250ms"`. [`parse_seconds`] reads it back to the same value.
pub fn format_seconds(secs: f64) -> String {
    for (unit, size) in [("d", 86_400.0), ("h", 3600.0), ("m", 60.0)] {
        if secs >= size && (secs / size).fract() == 0.0 {
            return format!("{}{unit}", secs / size);
        }
    }
    if secs > 0.0 && secs < 1.0 {
        return format!("{}ms", secs * 1000.0);
    }
    format!("{secs}s")
}

/// Serde `deserialize_with` for `Option<Duration>` fields written as strings (use with
/// `#[serde(default)]`).
/// Serde helper for a required duration field.
pub fn deserialize<'de, D>(d: D) -> Result<Duration, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = <String as serde::Deserialize>::deserialize(d)?;
    parse_duration(&text).map_err(<D::Error as serde::de::Error>::custom)
}

pub fn deserialize_option<'de, D>(d: D) -> Result<Option<Duration>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = <String as serde::Deserialize>::deserialize(d)?;
    parse_duration(&text)
        .map(Some)
        .map_err(<D::Error as serde::de::Error>::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_units_compounds_and_fractions() {
        assert_eq!(parse_seconds("10s"), Ok(10.0));
        assert_eq!(parse_seconds("500ms"), Ok(0.5));
        assert_eq!(parse_seconds("2m"), Ok(120.0));
        assert_eq!(parse_seconds("1.5h"), Ok(5400.0));
        assert_eq!(parse_seconds("1h30m"), Ok(5400.0));
        assert_eq!(parse_seconds(" 1h 30m "), Ok(5400.0));
        assert_eq!(parse_seconds("7d"), Ok(604_800.0));
        assert_eq!(parse_seconds("2w"), Ok(1_209_600.0));
        assert_eq!(parse_seconds("0s"), Ok(0.0));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn errors_say_what_to_write() {
        let e = parse_seconds("5").unwrap_err();
        assert!(
            e.contains("duration \"5\" has no unit; write \"5s\""),
            "{e}"
        );
        let e = parse_seconds("10sec").unwrap_err();
        assert!(e.contains("unknown unit \"sec\""), "{e}");
        let e = parse_seconds("2 minutes").unwrap_err();
        assert!(e.contains("unknown unit \"minutes\""), "{e}");
        assert!(parse_seconds("1h30")
            .unwrap_err()
            .contains("no unit after \"30\""));
        assert!(parse_seconds("fast")
            .unwrap_err()
            .contains("expected a number"));
        assert!(parse_seconds("").is_err());
        assert!(parse_seconds("1..5s").unwrap_err().contains("not a number"));
    }

    #[test]
    fn format_reads_back() {
        for secs in [
            604_800.0,
            86_400.0 * 3.0,
            5400.0,
            3600.0,
            90.0,
            1.5,
            0.25,
            0.0,
        ] {
            assert_eq!(parse_seconds(&format_seconds(secs)), Ok(secs), "{secs}");
        }
        assert_eq!(format_seconds(5400.0), "90m");
        assert_eq!(format_seconds(1800.0), "30m");
        assert_eq!(format_seconds(604_800.0), "7d");
    }
}
