//! Calendar times in a time zone, for the watchdog: restart schedules (`"Tue,Fri 03:00
//! Europe/Zurich"`, or cron `"0 3 * * 2,5 Europe/Zurich"` read by croner) and allowed windows (`"Mon-Fri 01:00-05:00 Europe/Zurich"`). The days and
//! times are written as for maintenance windows; the zone is an IANA name (chrono-tz), the host's
//! zone when left out.
//!
//! Daylight-saving changes are decided here, once: a wall-clock time that does not exist that day
//! (02:30 when clocks jump from 02:00 to 03:00) happens at the next valid instant (the jump); one
//! that exists twice (02:30 when clocks fall back) happens at its first instance only. Pure: takes
//! unix seconds, returns unix seconds.

use chrono::{Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;

/// Unix seconds.
pub type Unix = f64;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A set of weekdays (bit 0 = Monday).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Days(u8);

impl Days {
    fn all() -> Days {
        Days(0x7f)
    }

    fn contains(self, date: NaiveDate) -> bool {
        self.0 & (1 << date.weekday().num_days_from_monday()) != 0
    }

    fn parse(spec: &str) -> Result<Days, String> {
        if spec.eq_ignore_ascii_case("daily") || spec == "*" {
            return Ok(Days::all());
        }
        let day = |d: &str| -> Result<u32, String> {
            let d = d.trim().to_ascii_lowercase();
            DAYS.iter()
                .position(|x| d.len() >= 3 && d.starts_with(x))
                .map(|p| p as u32)
                .ok_or_else(|| format!("unknown day {d:?} (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
        };
        let mut bits = 0u8;
        for item in spec.split(',') {
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    let mut d = a;
                    loop {
                        bits |= 1 << d;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => bits |= 1 << day(item)?,
            }
        }
        Ok(Days(bits))
    }
}

fn parse_hhmm(text: &str) -> Result<NaiveTime, String> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not HH:MM"))?;
    let h: u32 = h.parse().map_err(|_| format!("bad hour in {text:?}"))?;
    let m: u32 = m.parse().map_err(|_| format!("bad minute in {text:?}"))?;
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(|| format!("{text:?} is not a time of day"))
}

fn parse_zone(text: &str) -> Result<Tz, String> {
    text.parse::<Tz>().map_err(|_| {
        format!(
            "unknown time zone {text:?}; write an IANA name such as \"Europe/Zurich\" or \"UTC\""
        )
    })
}

/// The host's time zone: `TZ`, else what the system says (`iana-time-zone`, the crate chrono
/// itself uses: `/etc/localtime` and its relatives), else UTC.
pub fn host_zone() -> Tz {
    if let Ok(tz) = std::env::var("TZ") {
        if let Ok(z) = tz.trim_start_matches(':').parse::<Tz>() {
            return z;
        }
    }
    iana_time_zone::get_timezone()
        .ok()
        .and_then(|name| name.parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
}

/// Splits `"DAYS TIME ZONE"` forms: the zone is the last field when it names a zone.
fn split_zone(expr: &str) -> Result<(Vec<&str>, Option<Tz>), String> {
    let mut fields: Vec<&str> = expr.split_whitespace().collect();
    let zone = match fields.last() {
        Some(last) if last.contains('/') || last.eq_ignore_ascii_case("utc") => {
            let z = parse_zone(last)?;
            fields.pop();
            Some(z)
        }
        _ => None,
    };
    Ok((fields, zone))
}

/// The instant a wall-clock time of a date happens in `tz`: the first of two when it repeats,
/// the next valid instant when it does not exist.
pub fn resolve(tz: Tz, date: NaiveDate, time: NaiveTime) -> Option<Unix> {
    let mut local = NaiveDateTime::new(date, time);
    // A gap is at most a few hours; walk minute by minute to its end.
    for _ in 0..(24 * 60) {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return Some(t.timestamp() as f64),
            LocalResult::Ambiguous(first, _) => return Some(first.timestamp() as f64),
            LocalResult::None => {
                local += Duration::minutes(1);
                // The first minute that exists is the transition instant itself.
            }
        }
    }
    None
}

fn local_date(tz: Tz, t: Unix) -> NaiveDate {
    match tz.timestamp_opt(t.floor() as i64, 0) {
        LocalResult::Single(d) | LocalResult::Ambiguous(d, _) => d.date_naive(),
        LocalResult::None => chrono::DateTime::from_timestamp(t as i64, 0)
            .map(|d| d.date_naive())
            .unwrap_or_default(),
    }
}

/// A restart schedule: on these days at this time (or a 5-field cron expression), in this zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    source: String,
    days: Days,
    time: NaiveTime,
    cron: Option<croner::Cron>,
    zone: Tz,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.zone == other.zone
    }
}

impl Schedule {
    /// Parses `"[DAYS] HH:MM [ZONE]"`; DAYS like `Tue,Fri`, `Mon-Fri` or `daily`.
    pub fn parse(expr: &str, default_zone: Tz) -> Result<Schedule, String> {
        let fix = "write it like \"Tue,Fri 03:00 Europe/Zurich\" or \"daily 04:15\"";
        let (fields, zone) = split_zone(expr).map_err(|e| format!("schedule {expr:?}: {e}"))?;
        if fields.len() == 5 {
            let cron = croner::Cron::new(&fields.join(" ")).parse().map_err(|e| {
                format!("schedule {expr:?}: {e}; {fix}, or cron \"0 3 * * 2,5 Europe/Zurich\"")
            })?;
            return Ok(Schedule {
                source: expr.trim().to_owned(),
                days: Days::all(),
                time: NaiveTime::MIN,
                cron: Some(cron),
                zone: zone.unwrap_or(default_zone),
            });
        }
        let (days, time) = match fields.as_slice() {
            [time] => (Days::all(), *time),
            [days, time] => (
                Days::parse(days).map_err(|e| format!("schedule {expr:?}: {e}; {fix}"))?,
                *time,
            ),
            _ => {
                return Err(format!(
                    "schedule {expr:?}: expected [DAYS] HH:MM [ZONE]; {fix}"
                ))
            }
        };
        let time = parse_hhmm(time).map_err(|e| format!("schedule {expr:?}: {e}; {fix}"))?;
        Ok(Schedule {
            source: expr.trim().to_owned(),
            days,
            time,
            cron: None,
            zone: zone.unwrap_or(default_zone),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: Unix) -> Option<Unix> {
        if let Some(cron) = &self.cron {
            // Minute by minute in local time through croner, each resolved here so that
            // daylight saving is decided as for the short form.
            let start = local_date(self.zone, t) - Duration::days(1);
            let from = NaiveDateTime::new(start, NaiveTime::MIN);
            let mut local = chrono::Utc.from_utc_datetime(&from);
            for _ in 0..400 {
                let next = cron.find_next_occurrence(&local, false).ok()?;
                let naive = next.naive_utc();
                if let Some(at) = resolve(self.zone, naive.date(), naive.time()) {
                    if at > t {
                        return Some(at);
                    }
                }
                local = next;
            }
            return None;
        }
        let start = local_date(self.zone, t) - Duration::days(1);
        (0..16)
            .map(|i| start + Duration::days(i))
            .filter(|d| self.days.contains(*d))
            .filter_map(|d| resolve(self.zone, d, self.time))
            .find(|at| *at > t)
    }
}

/// An allowed window: on these days between these times, in this zone (an end before the start
/// crosses midnight).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    source: String,
    days: Days,
    start: NaiveTime,
    end: NaiveTime,
    zone: Tz,
}

impl Window {
    /// Parses `"[DAYS] HH:MM-HH:MM [ZONE]"`.
    pub fn parse(expr: &str, default_zone: Tz) -> Result<Window, String> {
        let fix = "write it like \"Mon-Fri 01:00-05:00 Europe/Zurich\" or \"daily 02:00-04:00\"";
        let (fields, zone) = split_zone(expr).map_err(|e| format!("window {expr:?}: {e}"))?;
        let (days, span) = match fields.as_slice() {
            [span] => (Days::all(), *span),
            [days, span] => (
                Days::parse(days).map_err(|e| format!("window {expr:?}: {e}; {fix}"))?,
                *span,
            ),
            _ => {
                return Err(format!(
                    "window {expr:?}: expected [DAYS] HH:MM-HH:MM [ZONE]; {fix}"
                ))
            }
        };
        let (a, b) = span
            .split_once('-')
            .ok_or_else(|| format!("window {expr:?}: {span:?} has no end time; {fix}"))?;
        let start = parse_hhmm(a).map_err(|e| format!("window {expr:?}: {e}; {fix}"))?;
        let end = parse_hhmm(b).map_err(|e| format!("window {expr:?}: {e}; {fix}"))?;
        if start == end {
            return Err(format!(
                "window {expr:?}: starts and ends at the same time; {fix}"
            ));
        }
        Ok(Window {
            source: expr.trim().to_owned(),
            days,
            start,
            end,
            zone: zone.unwrap_or(default_zone),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The window's openings whose start lies in `[from - 2 days, to]`, as `(start, end)`.
    fn spans(&self, from: Unix, to: Unix) -> Vec<(Unix, Unix)> {
        let first = local_date(self.zone, from) - Duration::days(2);
        let last = local_date(self.zone, to) + Duration::days(1);
        let mut out = Vec::new();
        let mut d = first;
        while d <= last {
            if self.days.contains(d) {
                let end_date = if self.end <= self.start {
                    d + Duration::days(1)
                } else {
                    d
                };
                if let (Some(s), Some(e)) = (
                    resolve(self.zone, d, self.start),
                    resolve(self.zone, end_date, self.end),
                ) {
                    if e > s && s <= to {
                        out.push((s, e));
                    }
                }
            }
            d += Duration::days(1);
        }
        out
    }
}

/// Several windows; none means "any time".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Windows(pub Vec<Window>);

impl Windows {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The open window containing `t`, as `(start, end)`; with no windows, always open.
    pub fn open_at(&self, t: Unix) -> Option<(Unix, Unix)> {
        if self.0.is_empty() {
            return Some((t, f64::INFINITY));
        }
        self.0
            .iter()
            .flat_map(|w| w.spans(t, t))
            .filter(|(s, e)| *s <= t && t < *e)
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Every opening `(start, end)` with `start` in `(t, until]`, in time order (open windows at
    /// `t` not included).
    pub fn openings(&self, t: Unix, until: Unix) -> Vec<(Unix, Unix)> {
        let mut out: Vec<(Unix, Unix)> = self
            .0
            .iter()
            .flat_map(|w| w.spans(t, until))
            .filter(|(s, _)| *s > t && *s <= until)
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// When a window is next open at or after `t` (`t` itself when one is open), looking 15 days ahead.
    pub fn next_open(&self, t: Unix) -> Option<Unix> {
        if self.open_at(t).is_some() {
            return Some(t);
        }
        self.openings(t, t + 15.0 * 86_400.0).first().map(|o| o.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Unix {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp() as f64
    }

    #[test]
    fn twice_weekly_in_zurich() {
        let s = Schedule::parse("Tue,Fri 03:00 Europe/Zurich", Tz::UTC).unwrap();
        // 2026-11-23 is a Monday; Zurich is UTC+1 in winter.
        assert_eq!(
            s.next_after(at("2026-11-23T12:00:00Z")),
            Some(at("2026-11-24T02:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-11-24T02:00:00Z")),
            Some(at("2026-11-27T02:00:00Z"))
        );
    }

    #[test]
    fn spring_forward_gap_runs_once_at_the_next_valid_instant() {
        // 2026-03-29: Zurich jumps from 02:00 CET to 03:00 CEST (01:00 UTC).
        let s = Schedule::parse("daily 02:30 Europe/Zurich", Tz::UTC).unwrap();
        let first = s.next_after(at("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(first, at("2026-03-29T01:00:00Z"), "03:00 CEST, the jump");
        let second = s.next_after(first).unwrap();
        assert_eq!(
            second,
            at("2026-03-30T00:30:00Z"),
            "02:30 CEST the next day"
        );
    }

    #[test]
    fn fall_back_repeat_runs_once() {
        // 2026-10-25: Zurich falls back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
        let s = Schedule::parse("Sun 02:30 Europe/Zurich", Tz::UTC).unwrap();
        let first = s.next_after(at("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, at("2026-10-25T00:30:00Z"), "the first 02:30 (CEST)");
        let next = s.next_after(first).unwrap();
        assert_eq!(
            next,
            at("2026-11-01T01:30:00Z"),
            "not the second 02:30, a week later"
        );
    }

    #[test]
    fn windows_cross_midnight_and_zone() {
        let w = Windows(vec![Window::parse("Fri 23:00-02:00 UTC", Tz::UTC).unwrap()]);
        // 2026-11-27 is a Friday.
        assert!(w.open_at(at("2026-11-27T23:30:00Z")).is_some());
        assert!(w.open_at(at("2026-11-28T01:59:00Z")).is_some());
        assert!(w.open_at(at("2026-11-28T02:00:00Z")).is_none());
        assert_eq!(
            w.next_open(at("2026-11-28T03:00:00Z")),
            Some(at("2026-12-04T23:00:00Z"))
        );
        let z = Windows(vec![Window::parse(
            "Mon-Fri 01:00-05:00 Europe/Zurich",
            Tz::UTC,
        )
        .unwrap()]);
        assert!(
            z.open_at(at("2026-11-24T00:30:00Z")).is_some(),
            "01:30 in Zurich"
        );
        assert!(
            z.open_at(at("2026-11-24T04:30:00Z")).is_none(),
            "05:30 in Zurich"
        );
        assert!(z.open_at(at("2026-11-28T02:00:00Z")).is_none(), "Saturday");
    }

    #[test]
    fn cron_form_in_a_zone_decides_daylight_saving_like_the_short_form() {
        let s = Schedule::parse("30 2 * * * Europe/Zurich", Tz::UTC).unwrap();
        let first = s.next_after(at("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(first, at("2026-03-29T01:00:00Z"), "the jump, once");
        assert_eq!(s.next_after(first), Some(at("2026-03-30T00:30:00Z")));
        let s = Schedule::parse("30 2 * * 0 Europe/Zurich", Tz::UTC).unwrap();
        let first = s.next_after(at("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, at("2026-10-25T00:30:00Z"));
        assert_eq!(s.next_after(first), Some(at("2026-11-01T01:30:00Z")));
        let twice = Schedule::parse("0 3 * * 2,5 UTC", Tz::UTC).unwrap();
        assert_eq!(
            twice.next_after(at("2026-11-23T12:00:00Z")),
            Some(at("2026-11-24T03:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_explain() {
        let e = Schedule::parse("Tue 03:00 Mars/Olympus", Tz::UTC).unwrap_err();
        assert!(e.contains("unknown time zone"), "{e}");
        let e = Window::parse("Mon 01:00", Tz::UTC).unwrap_err();
        assert!(e.contains("no end time"), "{e}");
        let e = Schedule::parse("Funday 03:00", Tz::UTC).unwrap_err();
        assert!(e.contains("unknown day"), "{e}");
    }
}
