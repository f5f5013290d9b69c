//! A gauge's history on disk, so that an agent restart does not forget a slow leak: on start the
//! stored samples are replayed through the leak detector before the first live one.
//!
//! Two append-only text files per gauge under `STATE_DIR/SERVICE/`: `GAUGE.raw` holds every sample
//! for `history_raw` (hours), `GAUGE.min` one average per minute for `history_minutes` (days). A
//! line is `UNIX_SECONDS VALUE`, or `UNIX_SECONDS restart` when the service was restarted (the
//! detector starts a new segment there). A line cut short by a crash is skipped. Raw samples are
//! written in batches, once a minute, at a restart and when the agent stops: a crash loses at most
//! the last minute of samples, which a detector looking at hours does not miss. Old lines are
//! dropped by rewriting a file (write to a temporary file, then rename) when the agent starts and
//! then once an hour. Replay takes the minute averages older than the oldest raw sample, then the
//! raw samples: a bounded, time-ordered series.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One stored entry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HistoryEntry {
    /// A sample: unix seconds and value.
    Sample { t: f64, value: f64 },
    /// The service was restarted at this time.
    Restart { t: f64 },
}

impl HistoryEntry {
    /// The entry's time.
    pub fn t(&self) -> f64 {
        match *self {
            HistoryEntry::Sample { t, .. } | HistoryEntry::Restart { t } => t,
        }
    }

    /// Parses one line; `None` for a damaged line.
    pub fn parse(line: &str) -> Option<Self> {
        let mut parts = line.split_whitespace();
        let t: f64 = parts.next()?.parse().ok().filter(|t: &f64| t.is_finite())?;
        let second = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        if second == "restart" {
            return Some(HistoryEntry::Restart { t });
        }
        let value: f64 = second.parse().ok().filter(|v: &f64| v.is_finite())?;
        Some(HistoryEntry::Sample { t, value })
    }

    /// The line for this entry (with its newline).
    pub fn line(&self) -> String {
        let mut line = String::new();
        self.write_line(&mut line);
        line
    }

    /// Appends the line for this entry (with its newline) to `out`.
    pub fn write_line(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = match *self {
            HistoryEntry::Sample { t, value } => writeln!(out, "{t:.3} {value}"),
            HistoryEntry::Restart { t } => writeln!(out, "{t:.3} restart"),
        };
    }
}

/// How long each tier is kept.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub raw: Duration,
    pub minutes: Duration,
}

/// Averages samples per minute.
#[derive(Clone, Debug, Default)]
pub struct MinuteBucket {
    minute: Option<i64>,
    sum: f64,
    count: u32,
}

impl MinuteBucket {
    /// Adds a sample; returns the finished average of the previous minute when `t` starts a new one.
    pub fn add(&mut self, t: f64, value: f64) -> Option<HistoryEntry> {
        let minute = (t / 60.0).floor() as i64;
        let done = match self.minute {
            Some(m) if m != minute => self.take(),
            _ => None,
        };
        if self.minute != Some(minute) {
            self.minute = Some(minute);
            self.sum = 0.0;
            self.count = 0;
        }
        self.sum += value;
        self.count += 1;
        done
    }

    /// Ends the current minute early (at a restart); returns its average if it had samples.
    pub fn take(&mut self) -> Option<HistoryEntry> {
        let minute = self.minute.take()?;
        (self.count > 0).then(|| HistoryEntry::Sample {
            t: minute as f64 * 60.0 + 30.0,
            value: self.sum / f64::from(self.count),
        })
    }
}

/// The replay series: minute entries older than the first raw entry, then the raw entries; all
/// within retention of `now` and not in the future.
pub fn replay_series(
    minutes: &[HistoryEntry],
    raw: &[HistoryEntry],
    now: f64,
    retention: Retention,
) -> Vec<HistoryEntry> {
    let raw_from = now - retention.raw.as_secs_f64();
    let min_from = now - retention.minutes.as_secs_f64();
    let raw: Vec<HistoryEntry> = raw
        .iter()
        .copied()
        .filter(|e| e.t() >= raw_from && e.t() <= now + 60.0)
        .collect();
    let first_raw = raw.first().map_or(f64::INFINITY, HistoryEntry::t);
    let mut out: Vec<HistoryEntry> = minutes
        .iter()
        .copied()
        .filter(|e| e.t() >= min_from && e.t() < first_raw)
        .collect();
    out.extend(raw);
    // Files are appended in time order; a clock step backwards must not unsort the series.
    out.sort_by(|a, b| a.t().total_cmp(&b.t()));
    out
}

/// The stored history of one gauge.
pub struct GaugeHistory {
    raw_path: PathBuf,
    min_path: PathBuf,
    raw: File,
    min: File,
    /// Raw lines not written yet.
    pending: String,
    /// When the raw lines were last written.
    last_write: f64,
    bucket: MinuteBucket,
    retention: Retention,
    last_compaction: f64,
}

const COMPACT_EVERY_SECS: f64 = 3600.0;

/// Raw samples are written in batches, one `write` per this many seconds of samples.
pub const WRITE_EVERY_SECS: f64 = 60.0;

impl GaugeHistory {
    /// Opens (creating) the files of `gauge` in `dir`, drops entries past retention, and returns the
    /// history with the series to replay.
    pub fn open(
        dir: &Path,
        gauge: &str,
        retention: Retention,
        now: f64,
    ) -> io::Result<(Self, Vec<HistoryEntry>)> {
        std::fs::create_dir_all(dir)?;
        let raw_path = dir.join(format!("{gauge}.raw"));
        let min_path = dir.join(format!("{gauge}.min"));
        let raw_entries = compact(&raw_path, now - retention.raw.as_secs_f64(), now)?;
        let min_entries = compact(&min_path, now - retention.minutes.as_secs_f64(), now)?;
        let series = replay_series(&min_entries, &raw_entries, now, retention);
        let history = GaugeHistory {
            raw: append_handle(&raw_path)?,
            min: append_handle(&min_path)?,
            raw_path,
            min_path,
            pending: String::new(),
            // The first sample is written at once.
            last_write: f64::NEG_INFINITY,
            bucket: MinuteBucket::default(),
            retention,
            last_compaction: now,
        };
        Ok((history, series))
    }

    /// Stores a sample (written with the others of the last [`WRITE_EVERY_SECS`]).
    pub fn append(&mut self, t: f64, value: f64) -> io::Result<()> {
        HistoryEntry::Sample { t, value }.write_line(&mut self.pending);
        if let Some(done) = self.bucket.add(t, value) {
            self.min.write_all(done.line().as_bytes())?;
        }
        // A clock stepped back does not hold the batch back either.
        if (t - self.last_write).abs() >= WRITE_EVERY_SECS {
            self.last_write = t;
            self.write_pending()?;
        }
        self.maybe_compact(t)
    }

    /// Stores a restart of the service (written at once, with the samples before it).
    pub fn append_restart(&mut self, t: f64) -> io::Result<()> {
        if let Some(done) = self.bucket.take() {
            self.min.write_all(done.line().as_bytes())?;
        }
        let entry = HistoryEntry::Restart { t };
        entry.write_line(&mut self.pending);
        self.write_pending()?;
        self.min.write_all(entry.line().as_bytes())
    }

    /// Writes the raw lines not written yet (dropped if that fails: the error is reported, and the
    /// batch does not grow while the disk refuses).
    fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = self.raw.write_all(self.pending.as_bytes());
        self.pending.clear();
        written
    }

    fn maybe_compact(&mut self, now: f64) -> io::Result<()> {
        if now - self.last_compaction < COMPACT_EVERY_SECS {
            return Ok(());
        }
        self.last_compaction = now;
        self.write_pending()?;
        compact(&self.raw_path, now - self.retention.raw.as_secs_f64(), now)?;
        compact(
            &self.min_path,
            now - self.retention.minutes.as_secs_f64(),
            now,
        )?;
        self.raw = append_handle(&self.raw_path)?;
        self.min = append_handle(&self.min_path)?;
        Ok(())
    }
}

impl Drop for GaugeHistory {
    /// The samples of the last minute are written when the agent stops.
    fn drop(&mut self) {
        let _ = self.write_pending();
    }
}

fn append_handle(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Keeps the entries of `path` from `from` on (and not in the future), rewriting the file; returns
/// them.
fn compact(path: &Path, from: f64, now: f64) -> io::Result<Vec<HistoryEntry>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut kept = Vec::new();
    let mut dropped = false;
    for line in BufReader::new(file).split(b'\n') {
        let line = line?;
        match std::str::from_utf8(&line)
            .ok()
            .and_then(HistoryEntry::parse)
        {
            Some(entry) if entry.t() >= from && entry.t() <= now + 60.0 => kept.push(entry),
            _ => dropped = true,
        }
    }
    if dropped {
        let tmp = path.with_extension("tmp");
        {
            let mut out = io::BufWriter::new(File::create(&tmp)?);
            for entry in &kept {
                out.write_all(entry.line().as_bytes())?;
            }
            out.flush()?;
        }
        std::fs::rename(&tmp, path)?;
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(raw_h: u64, min_d: u64) -> Retention {
        Retention {
            raw: Duration::from_secs(raw_h * 3600),
            minutes: Duration::from_secs(min_d * 86400),
        }
    }

    #[test]
    fn lines_round_trip_and_damaged_lines_are_skipped() {
        let e = HistoryEntry::Sample {
            t: 1700000000.25,
            value: 123456789.0,
        };
        assert_eq!(HistoryEntry::parse(e.line().trim_end()), Some(e));
        let r = HistoryEntry::Restart { t: 1700000000.0 };
        assert_eq!(HistoryEntry::parse(r.line().trim_end()), Some(r));
        assert_eq!(HistoryEntry::parse("1700000000.2"), None);
        assert_eq!(HistoryEntry::parse("17000 12 1700"), None);
    }

    #[test]
    fn minute_buckets_average() {
        let mut b = MinuteBucket::default();
        assert_eq!(b.add(60.0, 10.0), None);
        assert_eq!(b.add(90.0, 20.0), None);
        assert_eq!(
            b.add(125.0, 5.0),
            Some(HistoryEntry::Sample {
                t: 90.0,
                value: 15.0
            })
        );
        assert_eq!(
            b.take(),
            Some(HistoryEntry::Sample {
                t: 150.0,
                value: 5.0
            })
        );
        assert_eq!(b.take(), None);
    }

    #[test]
    fn store_survives_reopen_with_both_tiers() {
        let dir = tempfile::tempdir().unwrap();
        let ret = retention(1, 2);
        let start = 1_700_000_000.0;
        let (mut h, series) = GaugeHistory::open(dir.path(), "pss", ret, start).unwrap();
        assert!(series.is_empty());
        // Three hours of samples every 10 s, a restart in the middle.
        let mut t = start;
        while t < start + 3.0 * 3600.0 {
            h.append(t, t - start).unwrap();
            if (t - start - 5400.0).abs() < 1e-6 {
                h.append_restart(t).unwrap();
            }
            t += 10.0;
        }
        drop(h);
        let now = t;
        let (_h, series) = GaugeHistory::open(dir.path(), "pss", ret, now).unwrap();
        // Minute averages for the first two hours, raw samples for the last hour.
        let first_raw = now - 3600.0;
        let minutes = series.iter().filter(|e| e.t() < first_raw).count();
        let raw = series.iter().filter(|e| e.t() >= first_raw).count();
        assert!(
            (115..=125).contains(&minutes),
            "about 120 minute entries: {minutes}"
        );
        assert!((355..=361).contains(&raw), "an hour of raw samples: {raw}");
        assert!(
            series.windows(2).all(|w| w[0].t() <= w[1].t()),
            "time-ordered"
        );
        assert!(series.iter().any(
            |e| matches!(e, HistoryEntry::Restart { t } if (*t - start - 5400.0).abs() < 1.0)
        ));
        // The raw file was compacted to its retention.
        let raw_lines = std::fs::read_to_string(dir.path().join("pss.raw"))
            .unwrap()
            .lines()
            .count();
        assert!(raw_lines <= 362, "{raw_lines}");
    }

    #[test]
    fn samples_are_written_once_a_minute_and_at_restarts_and_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let lines = || {
            std::fs::read_to_string(dir.path().join("g.raw"))
                .unwrap()
                .lines()
                .count()
        };
        let (mut h, _) = GaugeHistory::open(dir.path(), "g", retention(1, 1), 1000.0).unwrap();
        h.append(1000.0, 1.0).unwrap();
        assert_eq!(lines(), 1, "the first sample at once");
        for i in 1..6 {
            h.append(1000.0 + 10.0 * f64::from(i), 1.0).unwrap();
        }
        assert_eq!(lines(), 1, "the next ones wait for the minute");
        h.append(1060.0, 1.0).unwrap();
        assert_eq!(lines(), 7, "a minute later, all of them");
        h.append(1070.0, 1.0).unwrap();
        h.append_restart(1075.0).unwrap();
        assert_eq!(
            lines(),
            9,
            "a restart is written at once, with what came before"
        );
        h.append(1080.0, 1.0).unwrap();
        drop(h);
        assert_eq!(lines(), 10, "the rest when the agent stops");
        let (_h, series) = GaugeHistory::open(dir.path(), "g", retention(1, 1), 1090.0).unwrap();
        assert_eq!(series.iter().filter(|e| e.t() >= 1000.0).count(), 10);
    }

    #[test]
    fn torn_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("g.raw"), "100.000 5\n110.000 6\n120.0").unwrap();
        let (mut h, series) = GaugeHistory::open(dir.path(), "g", retention(1, 1), 130.0).unwrap();
        assert_eq!(series.len(), 2);
        h.append(130.0, 7.0).unwrap();
        let text = std::fs::read_to_string(dir.path().join("g.raw")).unwrap();
        assert_eq!(text, "100.000 5\n110.000 6\n130.000 7\n");
    }
}
