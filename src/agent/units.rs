//! Units written in the agent's config: durations (`"10s"`, `"2m"`, `"1h"`, `"7d"`) and quantities
//! (`149`, `"512MiB"`, `"1.5GB"`).
//!
//! Pure parsing with messages that say what to write instead. Deserializing these types from TOML
//! makes a wrong value an error that carries the value's position in the file. This module does not
//! know which gauge a quantity belongs to: a bare number means "the gauge's own unit".

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration as written in the config: a number and a unit, `ms`, `s`, `m`, `h` or `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Parses `"10s"`, `"2m"`, `"1h"`, `"1.5h"`, `"7d"`, `"250ms"` (the workspace's one syntax,
    /// `sipwatch_alerting::duration`); zero is refused here, every agent duration is a period or a timeout.
    pub fn parse(text: &str) -> Result<Self, String> {
        let seconds = sipwatch_alerting::duration::parse_seconds(text)?;
        if seconds <= 0.0 {
            return Err(format!(
                "duration \"{}\" must be greater than zero",
                text.trim()
            ));
        }
        sipwatch_alerting::duration::parse_duration(text).map(ConfigDuration)
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&sipwatch_alerting::duration::format_seconds(
            self.0.as_secs_f64(),
        ))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration written as a string with a unit, e.g. \"10s\", \"2m\", \"1h\"",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ConfigDuration::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "duration {v} has no unit; write \"{v}s\" (or ms, m, h, d) in quotes"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "duration {v} has no unit; write \"{v}s\" (or ms, m, h, d) in quotes"
                )))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A limit or threshold: a bare number (the gauge's own unit: bytes, sessions, descriptors) or a
/// string with a byte unit (`B`, `kB`/`KB`, `KiB`, `MB`, `MiB`, `GB`, `GiB`, `TB`, `TiB`).
///
/// The one byte-size syntax of sipwatch (agent config, `leak analyze --limit`): `KB`, `MB`, `GB`,
/// `TB` (and `K`, `M`, `G`, `T`) are powers of 1000, `KiB`, `MiB`, `GiB`, `TiB` powers of 1024:
/// `"1GB"` is 1 000 000 000 bytes, `"1GiB"` 1 073 741 824.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Quantity(pub f64);

impl Quantity {
    /// Parses `"512MiB"`, `"1.5 GB"`, `"149"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number.parse().map_err(|_| {
            format!(
                "quantity \"{text}\" does not start with a number; write e.g. 149 or \"512MiB\""
            )
        })?;
        let factor = match unit.trim() {
            "" | "B" => 1.0,
            "kB" | "KB" | "k" | "K" => 1e3,
            "KiB" => 1024.0,
            "MB" | "M" => 1e6,
            "MiB" => 1024.0 * 1024.0,
            "GB" | "G" => 1e9,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            "TB" | "T" => 1e12,
            "TiB" => 1024.0_f64.powi(4),
            other => {
                return Err(format!(
                    "quantity \"{text}\": unknown unit \"{other}\"; use B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)"
                ))
            }
        };
        let value = value * factor;
        if !value.is_finite() || value < 0.0 {
            return Err(format!("quantity \"{text}\" must be a positive number"));
        }
        Ok(Quantity(value))
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuantityVisitor;
        impl Visitor<'_> for QuantityVisitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number (e.g. 149) or a size with a unit (e.g. \"512MiB\")")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Quantity::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                if v < 0 {
                    return Err(E::custom(format!("quantity {v} must not be negative")));
                }
                Ok(Quantity(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Quantity(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                if !v.is_finite() || v < 0.0 {
                    return Err(E::custom(format!("quantity {v} must be a positive number")));
                }
                Ok(Quantity(v))
            }
        }
        deserializer.deserialize_any(QuantityVisitor)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(
            ConfigDuration::parse("10s").unwrap().get(),
            Duration::from_secs(10)
        );
        assert_eq!(
            ConfigDuration::parse("2m").unwrap().get(),
            Duration::from_secs(120)
        );
        assert_eq!(
            ConfigDuration::parse("1h").unwrap().get(),
            Duration::from_secs(3600)
        );
        assert_eq!(
            ConfigDuration::parse("1.5h").unwrap().get(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            ConfigDuration::parse("7d").unwrap().get(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            ConfigDuration::parse("250ms").unwrap().get(),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn duration_errors_say_what_to_write() {
        let err = ConfigDuration::parse("5").unwrap_err();
        assert!(err.contains("write \"5s\""), "{err}");
        let err = ConfigDuration::parse("5 minutes").unwrap_err();
        assert!(err.contains("unknown unit \"minutes\""), "{err}");
        assert!(ConfigDuration::parse("0s").is_err());
        assert!(ConfigDuration::parse("s").is_err());
    }

    #[test]
    fn duration_display_round_trips() {
        for text in ["10s", "2m", "1h", "7d", "250ms"] {
            let d = ConfigDuration::parse(text).unwrap();
            assert_eq!(d.to_string(), text);
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(Quantity::parse("149").unwrap().0, 149.0);
        assert_eq!(
            Quantity::parse("512MiB").unwrap().0,
            512.0 * 1024.0 * 1024.0
        );
        assert_eq!(Quantity::parse("1.5 GB").unwrap().0, 1.5e9);
        assert!(Quantity::parse("12 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(Quantity::parse("lots").is_err());
    }
}
