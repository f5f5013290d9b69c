//! Reading a recorded gauge series from CSV for `leak analyze`: a header naming `timestamp` and
//! `value` columns (any order, other columns ignored), then one sample per line. Timestamps are unix
//! seconds (fractions allowed) or RFC 3339 (`2024-06-01T03:25:00Z`, `+02:00` offsets). Lines that are
//! empty or start with `#` are skipped. Fields may be quoted but may not contain the delimiter.
//!
//! Every problem is reported with the file, the line and what to write instead; the series must be
//! strictly increasing in time (the online detector never sees the past again, so a replay must not).

use std::path::{Path, PathBuf};

use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::leak::Sample;

/// A sample with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSample {
    pub sample: Sample,
    /// 1-based line number in the file.
    pub line: usize,
    /// The timestamp as written.
    pub timestamp_text: String,
}

/// Why a CSV could not be replayed. Each names the file and, where there is one, the line.
#[derive(Debug, Error)]
pub enum LeakInputError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the file is empty; expected a header line `timestamp,value` and one sample per line")]
    Empty { path: PathBuf },
    #[error("{path}:{line}: the header `{header}` has no `{column}` column; the header must name `timestamp` and `value` (e.g. `timestamp,value`)")]
    MissingColumn {
        path: PathBuf,
        line: usize,
        column: &'static str,
        header: String,
    },
    #[error("{path}: no samples after the header on line {header_line}; add lines like `1717200000,123456789`")]
    NoSamples { path: PathBuf, header_line: usize },
    #[error("{path}:{line}: the row has {found} fields but the `{column}` column is field {wanted} of the header")]
    MissingField {
        path: PathBuf,
        line: usize,
        column: &'static str,
        found: usize,
        wanted: usize,
    },
    #[error("{path}:{line}: bad timestamp `{text}`: {hint}")]
    BadTimestamp {
        path: PathBuf,
        line: usize,
        text: String,
        hint: String,
    },
    #[error("{path}:{line}: bad value `{text}`: write a plain number such as `123456789` or `1.5e9` (no units)")]
    BadValue {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{path}:{line}: timestamp `{text}` is {what} the previous sample's on line {previous_line}; sort the file by time with one sample per timestamp")]
    NotIncreasing {
        path: PathBuf,
        line: usize,
        text: String,
        previous_line: usize,
        what: &'static str,
    },
}

impl LeakInputError {
    /// The line the error is about, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            LeakInputError::MissingColumn { line, .. }
            | LeakInputError::MissingField { line, .. }
            | LeakInputError::BadTimestamp { line, .. }
            | LeakInputError::BadValue { line, .. }
            | LeakInputError::NotIncreasing { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// Reads and validates a CSV series.
pub fn read_series(path: &Path) -> Result<Vec<InputSample>, LeakInputError> {
    let text = std::fs::read_to_string(path).map_err(|source| LeakInputError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_series(path, &text)
}

/// Parses CSV text (see the module docs); `path` is only used in errors.
pub fn parse_series(path: &Path, text: &str) -> Result<Vec<InputSample>, LeakInputError> {
    let path_buf = || path.to_path_buf();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let Some((header_line, header)) = lines.next() else {
        return Err(LeakInputError::Empty { path: path_buf() });
    };
    let delimiter = [',', ';', '\t']
        .into_iter()
        .find(|d| header.contains(*d))
        .unwrap_or(',');
    let names: Vec<String> = header
        .split(delimiter)
        .map(|f| unquote(f).to_ascii_lowercase())
        .collect();
    let column = |name: &'static str| {
        names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| LeakInputError::MissingColumn {
                path: path_buf(),
                line: header_line,
                column: name,
                header: header.to_string(),
            })
    };
    let t_col = column("timestamp")?;
    let v_col = column("value")?;

    let mut out: Vec<InputSample> = Vec::new();
    for (line, row) in lines {
        let fields: Vec<&str> = row.split(delimiter).map(unquote).collect();
        let field = |index: usize, name: &'static str| {
            fields
                .get(index)
                .copied()
                .ok_or(LeakInputError::MissingField {
                    path: path_buf(),
                    line,
                    column: name,
                    found: fields.len(),
                    wanted: index + 1,
                })
        };
        let t_text = field(t_col, "timestamp")?;
        let v_text = field(v_col, "value")?;
        let t = parse_timestamp(t_text).map_err(|hint| LeakInputError::BadTimestamp {
            path: path_buf(),
            line,
            text: t_text.to_string(),
            hint,
        })?;
        let value = v_text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| LeakInputError::BadValue {
                path: path_buf(),
                line,
                text: v_text.to_string(),
            })?;
        if let Some(previous) = out.last() {
            if t <= previous.sample.t {
                return Err(LeakInputError::NotIncreasing {
                    path: path_buf(),
                    line,
                    text: t_text.to_string(),
                    previous_line: previous.line,
                    what: if t == previous.sample.t {
                        "the same as"
                    } else {
                        "earlier than"
                    },
                });
            }
        }
        out.push(InputSample {
            sample: Sample::new(t, value),
            line,
            timestamp_text: t_text.to_string(),
        });
    }
    if out.is_empty() {
        return Err(LeakInputError::NoSamples {
            path: path_buf(),
            header_line,
        });
    }
    Ok(out)
}

fn unquote(field: &str) -> &str {
    let field = field.trim();
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(field)
        .trim()
}

/// Unix seconds or RFC 3339; the error is a hint for the user.
pub fn parse_timestamp(text: &str) -> Result<f64, String> {
    if let Ok(secs) = text.parse::<f64>() {
        if !secs.is_finite() {
            return Err("not a finite number".into());
        }
        if secs.abs() > 1e11 {
            return Err(format!(
                "{text} looks like milliseconds; write unix seconds (e.g. {:.3})",
                secs / 1000.0
            ));
        }
        return Ok(secs);
    }
    // RFC 3339 allows a space instead of `T` between date and time.
    let normalised = match text.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &text[..10], &text[11..]),
        _ => text.to_string(),
    };
    OffsetDateTime::parse(&normalised, &Rfc3339)
        .map(|dt| dt.unix_timestamp_nanos() as f64 / 1e9)
        .map_err(|e| {
            format!("{e}; write unix seconds (1717200000) or RFC 3339 with a zone (2024-06-01T00:00:00Z)")
        })
}

/// Formats unix seconds as RFC 3339 (UTC, whole seconds).
pub fn format_rfc3339(t: f64) -> String {
    OffsetDateTime::from_unix_timestamp(t.floor() as i64)
        .ok()
        .and_then(|dt| dt.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{t}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<InputSample>, LeakInputError> {
        parse_series(Path::new("x.csv"), text)
    }

    #[test]
    fn reads_unix_and_rfc3339_with_any_column_order() {
        let s = parse("# recorded by hand\nvalue,host,timestamp\n10,a,1700000000\n\n12,a,2023-11-14T22:14:20Z\n13,a,\"2023-11-14 23:15:20+01:00\"\n")
            .expect("parses");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].sample, Sample::new(1_700_000_000.0, 10.0));
        assert_eq!(s[1].sample.t, 1_700_000_060.0);
        assert_eq!(s[2].sample.t, 1_700_000_120.0, "offset applied");
        assert_eq!(s[1].line, 5);
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let e = parse("").unwrap_err();
        assert!(matches!(e, LeakInputError::Empty { .. }), "{e}");
        let e = parse("time,value\n1,2\n").unwrap_err();
        assert!(
            e.to_string().contains("x.csv:1") && e.to_string().contains("`timestamp`"),
            "{e}"
        );
        let e = parse("timestamp,value\n").unwrap_err();
        assert!(matches!(e, LeakInputError::NoSamples { .. }), "{e}");
        let e = parse("timestamp,value\n1,2\n2,12MB\n").unwrap_err();
        assert_eq!(e.line(), Some(3));
        assert!(e.to_string().contains("12MB"), "{e}");
        let e = parse("timestamp,value\n1,2\nyesterday,3\n").unwrap_err();
        assert_eq!(e.line(), Some(3));
        assert!(e.to_string().contains("RFC 3339"), "{e}");
        let e = parse("timestamp,value\n5,2\n5,3\n").unwrap_err();
        assert!(
            e.to_string().contains("x.csv:3") && e.to_string().contains("same as"),
            "{e}"
        );
        let e = parse("timestamp,value\n5,2\n4,3\n").unwrap_err();
        assert!(
            e.to_string().contains("earlier than") && e.to_string().contains("line 2"),
            "{e}"
        );
        let e = parse("timestamp,value\n5\n").unwrap_err();
        assert_eq!(e.line(), Some(2));
        let e = parse("timestamp,value\n1700000000000,3\n").unwrap_err();
        assert!(e.to_string().contains("milliseconds"), "{e}");
        let e = parse("timestamp,value\n1,NaN\n").unwrap_err();
        assert!(matches!(e, LeakInputError::BadValue { .. }), "{e}");
    }
}
