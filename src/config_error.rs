//! Config errors that teach: each names the file, line and column, what is wrong and the fix,
//! e.g. `config error at sipwatch.toml:14:9: target "edge-2": interval "5" has no unit; write "5s"`.
//! Validation collects every problem before reporting, so one run shows them all.

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

/// Collects problems against one source text.
pub struct Problems<'a> {
    file: &'a Path,
    source: &'a str,
    found: Vec<ConfigError>,
}

impl<'a> Problems<'a> {
    pub fn new(file: &'a Path, source: &'a str) -> Problems<'a> {
        Problems {
            file,
            source,
            found: Vec::new(),
        }
    }

    /// A problem at a byte span of the source (None: no place).
    pub fn at(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let (line, column) = match span {
            Some(s) => line_col(self.source, s.start),
            None => (0, 0),
        };
        self.found.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
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
        line_col(self.source, offset).0
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
/// located [`ConfigErrors`].
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &Path,
    source: &str,
) -> Result<T, ConfigErrors> {
    toml::from_str(source).map_err(|e| {
        let mut p = Problems::new(file, source);
        let mut msg = e.message().trim().to_string();
        if msg.starts_with("unknown field") {
            msg.push_str("; remove it or check its spelling");
        }
        p.at(e.span(), msg);
        ConfigErrors(p.found)
    })
}

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
    fn table_span_finds_the_first_header() {
        let src = "[agent]\nx = 1\n\n  [[alerting.receiver]]\nname = \"a\"\n[alerting]\n";
        let span = super::table_span(src, "alerting").expect("found");
        assert_eq!(&src[span], "[[alerting.receiver]]");
        assert_eq!(super::table_span(src, "alert"), None);
        assert_eq!(super::table_span(src, "daemon"), None);
    }
}
