//! Config errors that teach: each names the file, line and column, what is wrong and the fix,
//! e.g. `config error at sipwatch.toml:14:9: target "edge-2": interval "5" has no unit; write "5s"`.
//! Validation collects every problem before reporting, so one run shows them all.
//!
//! The one machinery for every config file of the workspace: the daemon's (`sipwatch.toml`), the
//! agent's (`agent.toml`) and the `[alerting]` section both carry. It lives in this crate, the
//! lowest that all three reach (`sipwatch` depends on `sipwatch-alerting`, never the other way),
//! and the binary re-exports it as `sipwatch::config_error`. One name per meaning: a
//! [`ConfigError`] is one located problem, [`ConfigErrors`] every problem of one file, [`Problems`]
//! collects them while a file is checked. (A receiver table's own problems, found without a
//! position, are [`crate::problems::ReceiverProblems`]; the config checks place them here.)

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no place (a missing section).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(
                f,
                "config error in {}: {}",
                self.file.display(),
                self.message
            )
        } else {
            write!(
                f,
                "config error at {}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Every problem found in one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// One problem of `file` that has no place in it (the file cannot be read).
    pub fn unplaced(file: &Path, message: impl Into<String>) -> ConfigErrors {
        ConfigErrors(vec![ConfigError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
        }])
    }
}

/// Collects problems against one source text.
pub struct Problems<'a> {
    file: &'a Path,
    source: &'a str,
    found: Vec<ConfigError>,
    /// Byte offsets where lines start, built on first use: locating many problems in a big
    /// file stays linear.
    line_starts: std::cell::OnceCell<Vec<usize>>,
}

impl<'a> Problems<'a> {
    pub fn new(file: &'a Path, source: &'a str) -> Problems<'a> {
        Problems {
            file,
            source,
            found: Vec::new(),
            line_starts: std::cell::OnceCell::new(),
        }
    }

    /// A problem at a byte span of the source (None: no place).
    pub fn at(&mut self, span: impl Into<Option<Range<usize>>>, message: impl Into<String>) {
        let (line, column) = match span.into() {
            Some(s) => self.line_col(s.start),
            None => (0, 0),
        };
        self.found.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
    }

    /// The text being checked.
    pub fn source(&self) -> &'a str {
        self.source
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.found.is_empty() {
            Ok(())
        } else {
            self.found.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(self.found))
        }
    }

    /// Line (1-based) of a byte offset, for "first defined at line N" hints.
    pub fn line_of(&self, offset: usize) -> usize {
        self.line_col(offset).0
    }

    /// Line and column (1-based; the column counts characters, as editors do) of a byte offset,
    /// by binary search over the line starts.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.source.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        let offset = offset.min(self.source.len());
        let line = starts.partition_point(|&s| s <= offset);
        let start = starts.get(line.saturating_sub(1)).copied().unwrap_or(0);
        let column = self
            .source
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line.max(1), column + 1)
    }
}

/// Where the first `[name]` or `[[name...]]` header line of a table is, for problems found in a
/// table that was deserialised without spans (a tagged enum inside cannot carry them).
pub fn table_span(source: &str, name: &str) -> Option<Range<usize>> {
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let header = line.trim_start().trim_start_matches('[').trim_start();
        if line.trim_start().starts_with('[')
            && header.starts_with(name)
            && header[name.len()..].starts_with([']', '.'])
        {
            let start = offset + (line.len() - line.trim_start().len());
            return Some(start..offset + line.trim_end().len());
        }
        offset += line.len();
    }
    None
}

/// Parses TOML into `T`, turning a syntax or shape error (unknown key, wrong type) into a
/// located [`ConfigErrors`], every unknown key included (see [`parse_all`]).
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &Path,
    source: &str,
) -> Result<T, ConfigErrors> {
    parse_all(source).map_err(|found| {
        let mut p = Problems::new(file, source);
        for (span, mut msg) in found {
            if msg.starts_with("unknown field") {
                msg.push_str("; remove it or check its spelling");
            }
            p.at(span, msg);
        }
        ConfigErrors(p.found)
    })
}

/// Parses TOML into `T`; on failure, every problem as (span, serde's message). Every unknown
/// key is reported, not only the first: each key found wrong is blanked out (offsets kept) and
/// the text parsed again, at most [`MAX_UNKNOWN_KEYS`] times; after the first problem that is
/// not an unknown key only unknown keys are added (blanking a key may cause "missing field"
/// errors that are not the user's). The value of a secret-looking key (`password`, `token`,
/// `secret`, `..._key`) is never quoted.
#[allow(clippy::type_complexity)]
pub fn parse_all<T: serde::de::DeserializeOwned>(
    source: &str,
) -> Result<T, Vec<(Option<Range<usize>>, String)>> {
    let mut found = Vec::new();
    let mut text = std::borrow::Cow::Borrowed(source);
    let mut other_seen = false;
    for _ in 0..=MAX_UNKNOWN_KEYS {
        let e = match toml::from_str::<T>(&text) {
            Ok(value) if found.is_empty() => return Ok(value),
            Ok(_) => break,
            Err(e) => e,
        };
        let mut msg = e.message().trim().to_string();
        let span = e.span();
        let key_line = span.clone().and_then(|s| line_span(&text, s.start));
        if let Some(line) = &key_line {
            if is_secret_key(&text[line.clone()]) {
                msg = redact_backticks(&msg);
            }
        }
        let unknown = msg.starts_with("unknown field");
        if unknown || !other_seen {
            found.push((span, msg));
        }
        other_seen |= !unknown;
        let is_key_value = |l: &Range<usize>| {
            let line = text[l.clone()].trim_start();
            line.contains('=') && !line.starts_with('[')
        };
        match key_line.filter(is_key_value) {
            // Blank the line and look for more.
            Some(line) => {
                let mut owned = text.into_owned();
                let blank = " ".repeat(line.len());
                owned.replace_range(line, &blank);
                text = std::borrow::Cow::Owned(owned);
            }
            None => break,
        }
    }
    Err(found)
}

/// Most unknown keys reported from one file.
pub const MAX_UNKNOWN_KEYS: usize = 100;

/// The byte range of the line holding `offset`, without its newline.
fn line_span(text: &str, offset: usize) -> Option<Range<usize>> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    (start < end).then_some(start..end)
}

/// Whether a `key = value` line sets something secret.
fn is_secret_key(line: &str) -> bool {
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"')
        .to_ascii_lowercase();
    ["password", "passwd", "token", "secret", "key"]
        .iter()
        .any(|word| key.contains(word))
        && !key.ends_with("_file")
}

/// Replaces every `` `quoted` `` excerpt of a message (where serde quotes values) with
/// `<redacted>`.
fn redact_backticks(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for part in msg.split('`') {
        if inside {
            out.push_str("`<redacted>`");
        } else {
            out.push_str(part);
        }
        inside = !inside;
    }
    out
}

#[cfg(test)]
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        assert_eq!(line_col("abc\ndef", 0), (1, 1));
        assert_eq!(line_col("abc\ndef", 5), (2, 2));
        let p = Problems::new(Path::new("x"), "abc\ndef\n\ng");
        for offset in 0..12 {
            assert_eq!(
                p.line_col(offset),
                line_col("abc\ndef\n\ng", offset),
                "{offset}"
            );
        }
    }

    #[test]
    fn columns_count_characters() {
        let p = Problems::new(Path::new("x"), "ab\ncé = x");
        assert_eq!(p.line_col(8), (2, 5));
        assert_eq!(Problems::new(Path::new("x"), "").line_col(0), (1, 1));
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
    }

    #[test]
    fn unknown_keys_are_located() {
        let e = parse_toml::<T>(Path::new("x.toml"), "a = 1\nbee = 2\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("config error at x.toml:2:1: unknown field `bee`"),
            "{text}"
        );
    }

    #[test]
    fn every_unknown_key_is_reported_and_secrets_are_not_quoted() {
        let e = parse_toml::<T>(Path::new("x.toml"), "bee = 2\na = 1\ncee = 3\n").unwrap_err();
        let text = e.to_string();
        assert_eq!(e.0.len(), 2, "{text}");
        assert!(text.contains("x.toml:1:1: unknown field `bee`"), "{text}");
        assert!(text.contains("x.toml:3:1: unknown field `cee`"), "{text}");

        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct S {
            password: String,
        }
        let e = parse_toml::<S>(Path::new("x.toml"), "password = 98765432\n").unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("98765432"), "{text}");
        assert!(text.contains("x.toml:1:"), "{text}");
    }

    #[test]
    fn table_span_finds_the_first_header() {
        let src = "[agent]\nx = 1\n\n  [[alerting.receiver]]\nname = \"a\"\n[alerting]\n";
        let span = super::table_span(src, "alerting").expect("found");
        assert_eq!(&src[span], "[[alerting.receiver]]");
        assert_eq!(super::table_span(src, "alert"), None);
        assert_eq!(super::table_span(src, "daemon"), None);
    }
}
