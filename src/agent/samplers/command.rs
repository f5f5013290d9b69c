//! The output of a command: the first number it prints on stdout is the value. For services that
//! expose a counter only through their own tool (`webbridge stats`, `asterisk -rx ...`).
//!
//! The command runs through `/bin/sh -c` in its own process group; past the timeout, or when the
//! sample is abandoned (the future dropped), the whole group is killed, so a hung pipeline cannot
//! pile up. `check-config` refuses a timeout that is not below the service's interval. A non-zero exit is an error that quotes stderr.

use std::process::Stdio;
use std::time::Duration;

use regex::Regex;
use tokio::io::AsyncReadExt;

use super::kind::{BuildContext, GaugeCheck, GaugeKind, RawGauge};
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
        // Whatever happens to this future (done, timed out, or dropped by a tick that gave up),
        // the whole group goes: the shell and everything it started.
        let _group = ProcessGroup(child.id());
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

/// The process group of a command (its id is the shell's pid); dropping it kills the group.
struct ProcessGroup(Option<u32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self
            .0
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 1)
        {
            // SAFETY: kill(2) with a negative pid signals the process group we created with
            // process_group(0); it touches no memory. ESRCH (group already gone) is fine.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Sampler for CommandSampler {
    fn sample<'a>(&'a mut self, _ctx: &'a SampleContext) -> SampleFuture<'a> {
        Box::pin(async move { self.run().await.map(Reading::value) })
    }
}

/// `kind = "command"`: the first number printed by a shell command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandConfig {
    pub command: String,
    pub timeout: Duration,
}

impl GaugeKind for CommandConfig {
    const NAMES: &'static [&'static str] = &["command"];
    const KEYS: &'static [&'static str] = &["command", "timeout"];

    fn check(raw: &RawGauge, c: &mut GaugeCheck<'_, '_>) -> Option<Self> {
        let Some(command) = &raw.command else {
            c.missing(
                "command",
                "command = \"webbridge stats | tail -1\" (run by /bin/sh -c)",
            );
            return None;
        };
        Some(CommandConfig {
            command: command.get_ref().clone(),
            timeout: c.timeout,
        })
    }

    fn build(&self, _ctx: &BuildContext<'_>) -> Box<dyn Sampler> {
        Box::new(CommandSampler::new(self.command.clone(), self.timeout))
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` still runs (a zombie awaiting its reaper counts as gone).
    fn running(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                let state = s
                    .rsplit_once(')')
                    .map(|(_, r)| r.trim_start().chars().next());
                !matches!(state, Some(Some('Z' | 'X')))
            })
            .unwrap_or(false)
    }

    fn pids_in(file: &std::path::Path) -> Vec<i32> {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    async fn wait_gone(pids: &[i32]) -> bool {
        for _ in 0..100 {
            if !pids.iter().any(|p| running(*p)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// A tick that gives up on a hung command drops the sample; the whole group must go with it,
    /// not only the shell.
    #[tokio::test]
    async fn an_abandoned_sample_leaves_no_process_behind() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids");
        let command = format!(
            "sleep 300 & echo $! >> {f}; (sleep 300; echo 1) & echo $! >> {f}; echo $$ >> {f}; wait",
            f = file.display()
        );
        let sampler = CommandSampler::new(command, Duration::from_secs(60));
        let abandoned = tokio::time::timeout(Duration::from_millis(300), sampler.run()).await;
        assert!(abandoned.is_err(), "the command was meant to hang");
        let pids = pids_in(&file);
        assert_eq!(pids.len(), 3, "shell and two children recorded: {pids:?}");
        assert!(wait_gone(&pids).await, "left behind: {pids:?}");
    }

    /// Past its own timeout the command's group is killed, background children included.
    #[tokio::test]
    async fn a_timed_out_command_leaves_no_process_behind() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids");
        let command = format!(
            "sleep 300 >/dev/null 2>&1 & echo $! >> {f}; echo $$ >> {f}; sleep 300",
            f = file.display()
        );
        let sampler = CommandSampler::new(command, Duration::from_millis(300));
        let err = sampler.run().await.expect_err("timed out");
        assert!(err.0.contains("killed"), "{}", err.0);
        let pids = pids_in(&file);
        assert_eq!(pids.len(), 2, "{pids:?}");
        assert!(wait_gone(&pids).await, "left behind: {pids:?}");
    }

    #[test]
    fn first_number_in_text() {
        assert_eq!(first_number("sessions: 149 of 200"), Some(149.0));
        assert_eq!(first_number("temp -3.5C"), Some(-3.5));
        assert_eq!(first_number("1e6 bytes"), Some(1e6));
        assert_eq!(first_number("none"), None);
    }
}
