//! Calendar expressions for the daemon's maintenance windows (`[[maintenance]] schedule`), as
//! operators write them: `"Tue,Fri 03:00"` (the twice-weekly workaround), `"Mon-Fri 22:30"`,
//! `"daily 04:15"`, `"03:00"`, or a 5-field cron expression (`"0 3 * * 2,5"`). Times are in the
//! zone the caller gives: the daemon's `[status] time_zone`, else the machine's local time. (The
//! watchdog's restart schedules, which name their own zone, are `watchdog::schedule`.)
//!
//! Pure: takes a time, returns times. Uses croner underneath; the short form is translated to cron.

use chrono::{DateTime, TimeZone};
use croner::Cron;

/// A parsed calendar expression.
#[derive(Clone, Debug)]
pub struct Calendar {
    source: String,
    cron: Cron,
}

impl PartialEq for Calendar {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Calendar {
    /// Parses an expression; the error says what is wrong and shows accepted forms.
    pub fn parse(expr: &str) -> Result<Calendar, String> {
        let e = expr.trim();
        let fields: Vec<&str> = e.split_whitespace().collect();
        let cron_text = if fields.len() == 5 {
            e.to_string()
        } else {
            short_form_to_cron(&fields).map_err(|why| {
                format!("calendar {expr:?}: {why}; write it like \"Tue,Fri 03:00\", \"daily 04:15\" or cron \"0 3 * * 2,5\"")
            })?
        };
        let cron = Cron::new(&cron_text).parse().map_err(|err| {
            format!(
                "calendar {expr:?}: {err}; write it like \"Tue,Fri 03:00\" or cron \"0 3 * * 2,5\""
            )
        })?;
        Ok(Calendar {
            source: e.to_string(),
            cron,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first occurrence at or after `t`.
    pub fn next_from<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.cron.find_next_occurrence(t, true).ok()
    }

    /// Whether `t` falls inside a window that opens at an occurrence and lasts `length`.
    pub fn in_window<Tz: TimeZone>(&self, t: &DateTime<Tz>, length: std::time::Duration) -> bool {
        let Ok(len) = chrono::Duration::from_std(length) else {
            return false;
        };
        let start = t.clone() - len;
        match self.next_from(&start) {
            Some(open) => open <= *t && *t < open + len,
            None => false,
        }
    }
}

fn short_form_to_cron(fields: &[&str]) -> Result<String, String> {
    let (days, time) = match fields {
        [time] => ("*".to_string(), *time),
        [day, time] if day.eq_ignore_ascii_case("daily") => ("*".to_string(), *time),
        [days, time] => (parse_days(days)?, *time),
        _ => return Err("expected [DAYS] HH:MM".into()),
    };
    let mut parts = time.split(':');
    let hour: u32 = parts
        .next()
        .and_then(|h| h.parse().ok())
        .filter(|h| *h < 24)
        .ok_or_else(|| format!("bad hour in {time:?}"))?;
    let minute: u32 = parts
        .next()
        .and_then(|m| m.parse().ok())
        .filter(|m| *m < 60)
        .ok_or_else(|| format!("bad minute in {time:?}"))?;
    if parts.next().is_some_and(|s| s != "00") {
        return Err("seconds other than :00 are not supported".into());
    }
    Ok(format!("{minute} {hour} * * {days}"))
}

fn parse_days(spec: &str) -> Result<String, String> {
    let day = |d: &str| -> Result<usize, String> {
        let d = d.trim().to_ascii_lowercase();
        DAYS.iter()
            .position(|x| d.starts_with(x) && d.len() >= 3)
            .ok_or_else(|| format!("unknown day {d:?} (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
    };
    let mut out = Vec::new();
    for item in spec.split(',') {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                if a <= b {
                    out.push(format!("{a}-{b}"));
                } else {
                    // Across the week end ("Fri-Sun", "Sat-Mon"): cron ranges cannot wrap, so
                    // list the days, Friday to Saturday then Sunday onwards.
                    out.extend((a..7).chain(0..=b).map(|d| d.to_string()));
                }
            }
            None => out.push(day(item)?.to_string()),
        }
    }
    Ok(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn day_ranges_wrap_across_the_week_end() {
        let c = Calendar::parse("Fri-Sun 03:00").unwrap();
        // 2024-06-06 is a Thursday.
        let mut t = at("2024-06-06T12:00:00Z");
        let mut days = Vec::new();
        for _ in 0..4 {
            let next = c.next_from(&t).unwrap();
            days.push(next.format("%a %H:%M").to_string());
            t = next + chrono::Duration::minutes(1);
        }
        assert_eq!(days, ["Fri 03:00", "Sat 03:00", "Sun 03:00", "Fri 03:00"]);
        let c = Calendar::parse("Sat-Mon,Wed 01:30").unwrap();
        let next = c.next_from(&at("2024-06-09T02:00:00Z")).unwrap();
        assert_eq!(next.format("%a %H:%M").to_string(), "Mon 01:30");
    }

    #[test]
    fn twice_weekly() {
        let c = Calendar::parse("Tue,Fri 03:00").unwrap();
        // 2026-11-23 is a Monday.
        assert_eq!(
            c.next_from(&at("2026-11-23T12:00:00Z")).unwrap(),
            at("2026-11-24T03:00:00Z")
        );
        assert_eq!(
            c.next_from(&at("2026-11-24T03:00:01Z")).unwrap(),
            at("2026-11-27T03:00:00Z")
        );
    }

    #[test]
    fn forms() {
        assert!(Calendar::parse("daily 04:15").is_ok());
        assert!(Calendar::parse("04:15").is_ok());
        assert!(Calendar::parse("Mon-Fri 22:30").is_ok());
        assert!(Calendar::parse("0 3 * * 2,5").is_ok());
        let e = Calendar::parse("Tues 3").unwrap_err();
        assert!(e.contains("Tue,Fri 03:00"), "{e}");
        assert!(Calendar::parse("Funday 03:00")
            .unwrap_err()
            .contains("unknown day"));
        assert!(Calendar::parse("25:00").is_err());
    }

    #[test]
    fn windows() {
        let c = Calendar::parse("Tue 03:00").unwrap();
        let len = std::time::Duration::from_secs(1800);
        assert!(!c.in_window(&at("2026-11-24T02:59:59Z"), len));
        assert!(c.in_window(&at("2026-11-24T03:00:00Z"), len));
        assert!(c.in_window(&at("2026-11-24T03:29:59Z"), len));
        assert!(!c.in_window(&at("2026-11-24T03:30:00Z"), len));
    }
}
