//! Following a log file like `tail -F`: from its end at start, line by line, across rotation
//! (the path now names a new file: the rest of the old one is read first, then the new one from its
//! start) and truncation (`copytruncate`: the file got shorter than what was read, or the bytes just
//! before the read position are no longer the ones read there, so read it again from its start).
//!
//! Only complete lines are returned; a line still being written waits for its newline. Each call
//! reads at most a bounded number of bytes so that a log flood cannot stall a tick; the rest is read
//! at the next call. This module does not interpret lines.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Most bytes read per call.
const MAX_READ: u64 = 8 << 20;
/// Longest line kept; longer lines are cut.
const MAX_LINE: usize = 64 << 10;

/// A followed log file.
pub struct LogTail {
    path: PathBuf,
    open: Option<OpenFile>,
    /// Whether a file that appears (or reappears) is read from its start: true once the file was
    /// missing or rotated, false only for the file found at start, which is read from its end.
    from_start: bool,
    partial: Vec<u8>,
}

struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    pos: u64,
    /// The last bytes read (up to [`SIG_LEN`]), to notice a file rewritten under the same name.
    sig: Vec<u8>,
}

/// Bytes remembered before the read position.
const SIG_LEN: usize = 64;

impl LogTail {
    /// Follows `path`; existing content is skipped.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LogTail {
            path: path.into(),
            open: None,
            from_start: false,
            partial: Vec::new(),
        }
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The complete lines appended since the last call. An error means the file cannot be read
    /// now (missing, no permission); following resumes when it can.
    pub fn read_lines(&mut self) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        let current = std::fs::metadata(&self.path);
        if let Some(open) = &self.open {
            let replaced = match &current {
                Ok(meta) => meta.dev() != open.dev || meta.ino() != open.ino,
                Err(_) => true,
            };
            if replaced {
                // Rotated (or removed): finish the old file, then start on the new one.
                self.read_available(&mut lines)?;
                self.flush_partial(&mut lines);
                self.open = None;
                self.from_start = true;
            }
        }
        if self.open.is_none() {
            let meta = match current {
                Ok(meta) => meta,
                Err(e) => {
                    self.from_start = true;
                    return if lines.is_empty() { Err(e) } else { Ok(lines) };
                }
            };
            let mut file = File::open(&self.path)?;
            let pos = if self.from_start {
                0
            } else {
                file.seek(SeekFrom::End(0))?
            };
            self.open = Some(OpenFile {
                file,
                dev: meta.dev(),
                ino: meta.ino(),
                pos,
                sig: Vec::new(),
            });
        }
        if let Some(open) = &mut self.open {
            if open.truncated()? {
                // Truncated or rewritten in place: what is there now is new.
                open.pos = 0;
                open.sig.clear();
                self.partial.clear();
            }
        }
        self.read_available(&mut lines)?;
        Ok(lines)
    }

    fn read_available(&mut self, lines: &mut Vec<String>) -> io::Result<()> {
        let Some(open) = &mut self.open else {
            return Ok(());
        };
        open.file.seek(SeekFrom::Start(open.pos))?;
        let mut buf = Vec::new();
        let read = (&mut open.file).take(MAX_READ).read_to_end(&mut buf)?;
        open.pos += read as u64;
        open.sig
            .extend_from_slice(&buf[buf.len().saturating_sub(SIG_LEN)..]);
        let excess = open.sig.len().saturating_sub(SIG_LEN);
        open.sig.drain(..excess);
        let mut rest = buf.as_slice();
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(nl);
            self.partial.extend_from_slice(line);
            let mut text = String::from_utf8_lossy(&self.partial).into_owned();
            if text.ends_with('\r') {
                text.pop();
            }
            lines.push(text);
            self.partial.clear();
            rest = &after[1..];
        }
        self.partial.extend_from_slice(rest);
        self.partial.truncate(MAX_LINE);
        Ok(())
    }

    fn flush_partial(&mut self, lines: &mut Vec<String>) {
        if !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
        }
    }
}

impl OpenFile {
    fn truncated(&mut self) -> io::Result<bool> {
        let len = self.file.metadata()?.len();
        if len < self.pos {
            return Ok(true);
        }
        if self.sig.is_empty() {
            return Ok(false);
        }
        let mut now = vec![0u8; self.sig.len()];
        self.file
            .seek(SeekFrom::Start(self.pos - self.sig.len() as u64))?;
        self.file.read_exact(&mut now)?;
        Ok(now != self.sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn starts_at_end_and_waits_for_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, "old line\n");
        let mut tail = LogTail::new(&path);
        assert!(
            tail.read_lines().unwrap().is_empty(),
            "existing content is skipped"
        );
        append(&path, "one\ntw");
        assert_eq!(tail.read_lines().unwrap(), vec!["one"]);
        append(&path, "o\r\n");
        assert_eq!(tail.read_lines().unwrap(), vec!["two"]);
    }

    #[test]
    fn follows_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, "");
        let mut tail = LogTail::new(&path);
        tail.read_lines().unwrap();
        append(&path, "a\n");
        // Rotation: the old file gets one more line after being renamed, then a new file appears.
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        append(&dir.path().join("app.log.1"), "b\n");
        append(&path, "c\n");
        assert_eq!(tail.read_lines().unwrap(), vec!["a", "b", "c"]);
        // Truncation in place.
        std::fs::write(&path, "").unwrap();
        append(&path, "d\n");
        assert_eq!(tail.read_lines().unwrap(), vec!["d"]);
    }

    #[test]
    fn missing_file_is_an_error_then_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later.log");
        let mut tail = LogTail::new(&path);
        assert!(tail.read_lines().is_err());
        append(&path, "first\n");
        assert_eq!(tail.read_lines().unwrap(), vec!["first"]);
    }
}
