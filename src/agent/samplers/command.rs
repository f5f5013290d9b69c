//! The output of a command: the first number it prints on stdout is the value. For services that
//! expose a counter only through their own tool (`webbridge stats`, `asterisk -rx ...`).
//!
//! The command runs through `/bin/sh -c` in its own process group; past the timeout the whole group
//! is killed, so a hung pipeline cannot pile up. A non-zero exit is an error that quotes stderr.

use std::process::Stdio;
use std::time::Duration;

use regex::Regex;
use tokio::io::AsyncReadExt;

use crate::agent::sampler::{Reading, SampleContext, SampleError, SampleFuture, Sampler};

/// Most bytes of output read.
const MAX_OUTPUT: u64 = 1 << 20;

/// The first number in a text (`-12`, `3.5`, `1e6`).
pub fn first_number(text: &str) -> Option<f64> {
    static NUMBER: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = NUMBER.get_or_init(|| {
        Regex::new(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
            .unwrap_or_else(|_| unreachable!("constant regex"))
    });
    re.find_iter(text)
        .find_map(|m| m.as_str().parse::<f64>().ok().filter(|v| v.is_finite()))
}

/// Samples a command's output.
pub struct CommandSampler {
    command: String,
    timeout: Duration,
}

impl CommandSampler {
    pub fn new(command: String, timeout: Duration) -> Self {
        CommandSampler { command, timeout }
    }

    async fn run(&self) -> Result<f64, SampleError> {
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SampleError::new(format!("cannot start /bin/sh: {e}")))?;
        let pgid = child.id();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let work = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let read_out = async {
                if let Some(s) = stdout.as_mut() {
                    s.take(MAX_OUTPUT).read_to_end(&mut out).await.ok();
                }
            };
            let read_err = async {
                if let Some(s) = stderr.as_mut() {
                    s.take(MAX_OUTPUT).read_to_end(&mut err).await.ok();
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(self.timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                if let Some(pgid) = pgid {
                    // SAFETY: kill(2) with a negative pid signals the process group we created.
                    unsafe {
                        libc::kill(-(pgid as i32), libc::SIGKILL);
                    }
                }
                return Err(SampleError::new(format!(
                    "command did not finish within {:?}; killed",
                    self.timeout
                )));
            }
        };
        let status =
            status.map_err(|e| SampleError::new(format!("waiting for the command: {e}")))?;
        if !status.success() {
            let err = String::from_utf8_lossy(&err);
            let first = err
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect::<String>();
            return Err(SampleError::new(format!(
                "command failed ({status}): {first}"
            )));
        }
        let out = String::from_utf8_lossy(&out);
        first_number(&out).ok_or_else(|| {
            SampleError::new(format!(
                "command printed no number (stdout began with \"{}\")",
                out.chars().take(80).collect::<String>().trim()
            ))
        })
    }
}

impl Sampler for CommandSampler {
    fn sample<'a>(&'a mut self, _ctx: &'a SampleContext) -> SampleFuture<'a> {
        Box::pin(async move { self.run().await.map(Reading::value) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_number_in_text() {
        assert_eq!(first_number("sessions: 149 of 200"), Some(149.0));
        assert_eq!(first_number("temp -3.5C"), Some(-3.5));
        assert_eq!(first_number("1e6 bytes"), Some(1e6));
        assert_eq!(first_number("none"), None);
    }
}
