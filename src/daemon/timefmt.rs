//! Times as the people reading the status page and the incidents want them: in the page's time
//! zone (`[status] time_zone`, an IANA name such as `Europe/Berlin`; UTC when not set), with the
//! zone's abbreviation (`03:12 CET`), and durations in words (`14 min`).
//!
//! Pure: the caller passes the time and "now".

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::model::UnixTime;

/// Parses an IANA zone name (`Europe/Berlin`, `UTC`, `Etc/UTC`); the error says what to write.
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.trim().parse::<Tz>().map_err(|_| {
        format!(
            "time_zone {name:?} is not an IANA time zone name; write e.g. \"Europe/Berlin\", \
             \"America/New_York\" or \"UTC\""
        )
    })
}

/// The zone a snapshot names (empty or unknown: UTC).
pub fn zone_or_utc(name: &str) -> Tz {
    parse_zone(name).unwrap_or(chrono_tz::UTC)
}

fn at(t: UnixTime, zone: Tz) -> DateTime<Tz> {
    let secs = if t.is_finite() { t.floor() as i64 } else { 0 };
    Utc.timestamp_opt(secs, 0)
        .single()
        .unwrap_or_default()
        .with_timezone(&zone)
}

/// `2023-11-14 23:13 CET`. Written field by field: the status page writes two per node, and
/// chrono's `format` parsed its pattern each time (a tenth of a 10,000-target page's time).
pub fn date_time(t: UnixTime, zone: Tz) -> String {
    use chrono::{Datelike, Timelike};
    let d = at(t, zone);
    // `%Z` is the offset's own display: the zone's abbreviation.
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} {}",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute(),
        d.offset()
    )
}

/// `03:12 CET` when `t` is on the same day as `now` in `zone`, else `2023-11-14 03:12 CET`.
pub fn clock(t: UnixTime, now: UnixTime, zone: Tz) -> String {
    let then = at(t, zone);
    if then.date_naive() == at(now, zone).date_naive() {
        then.format("%H:%M %Z").to_string()
    } else {
        then.format("%Y-%m-%d %H:%M %Z").to_string()
    }
}

/// `45 s`, `12 min`, `3 h 12 min`, `2 d 4 h`.
pub fn duration(secs: f64) -> String {
    let s = if secs.is_finite() {
        secs.max(0.0) as u64
    } else {
        0
    };
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min")
    } else {
        format!("{s} s")
    }
}

/// `down since 03:12 CET, 14 min` (the duration only once it is a minute or more).
pub fn since(t: UnixTime, now: UnixTime, zone: Tz) -> String {
    let elapsed = now - t;
    if elapsed >= 60.0 {
        format!("since {}, {}", clock(t, now, zone), duration(elapsed))
    } else {
        format!("since {}", clock(t, now, zone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_the_page_zone_with_its_abbreviation() {
        let berlin = parse_zone("Europe/Berlin").unwrap();
        // 2026-11-30 02:12 UTC is 03:12 CET.
        let t = 1_796_004_720.0;
        assert_eq!(date_time(t, berlin), "2026-11-30 03:12 CET");
        assert_eq!(date_time(t, chrono_tz::UTC), "2026-11-30 02:12 UTC");
        assert_eq!(clock(t, t + 840.0, berlin), "03:12 CET");
        assert_eq!(since(t, t + 840.0, berlin), "since 03:12 CET, 14 min");
        assert_eq!(since(t, t + 5.0, berlin), "since 03:12 CET");
        assert_eq!(clock(t, t + 86_400.0, berlin), "2026-11-30 03:12 CET");
        // Summer time.
        assert_eq!(date_time(1_782_871_920.0, berlin), "2026-07-01 04:12 CEST");
        assert!(parse_zone("Europe/Berln")
            .unwrap_err()
            .contains("Europe/Berlin"));
        assert_eq!(zone_or_utc(""), chrono_tz::UTC);
    }

    #[test]
    fn durations_in_words() {
        assert_eq!(duration(45.0), "45 s");
        assert_eq!(duration(14.0 * 60.0 + 5.0), "14 min");
        assert_eq!(duration(3.0 * 3600.0 + 12.0 * 60.0), "3 h 12 min");
        assert_eq!(duration(2.0 * 86_400.0 + 4.0 * 3600.0), "2 d 4 h");
    }
}
