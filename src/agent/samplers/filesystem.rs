//! Space on the filesystem holding a path (`statvfs`): recordings, logs and core dumps fill disks
//! slowly, and a full disk breaks a media server as surely as a memory leak.
//!
//! The value is the bytes used and the limit found is the size an unprivileged process can fill
//! (used + available), so the leak detector's "time to limit" is the time until the disk is full
//! for the service; free space is limit minus value. The call runs on the blocking pool with a
//! timeout: a hung network mount must not stall the agent.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::kind::{BuildContext, GaugeCheck, GaugeKind, RawGauge};
use crate::agent::sampler::{Reading, SampleContext, SampleError, SampleFuture, Sampler};

/// Bytes used and bytes usable on a filesystem.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Space {
    pub used: f64,
    pub usable: f64,
}

/// `statvfs` on `path`.
pub fn space(path: &Path) -> std::io::Result<Space> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte")
    })?;
    // SAFETY: statvfs writes into a zeroed struct we own; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as f64;
    let used = (st.f_blocks as f64 - st.f_bfree as f64) * frsize;
    let usable = used + st.f_bavail as f64 * frsize;
    Ok(Space { used, usable })
}

/// Samples a filesystem's used space.
pub struct FilesystemSampler {
    path: PathBuf,
}

impl FilesystemSampler {
    pub fn new(path: PathBuf) -> Self {
        FilesystemSampler { path }
    }
}

impl Sampler for FilesystemSampler {
    fn sample<'a>(&'a mut self, _ctx: &'a SampleContext) -> SampleFuture<'a> {
        Box::pin(async move {
            let path = self.path.clone();
            let call = tokio::task::spawn_blocking(move || space(&path));
            let space = match tokio::time::timeout(Duration::from_secs(5), call).await {
                Err(_) => {
                    return Err(SampleError::new(format!(
                        "statvfs on {} did not answer within 5s (hung mount?)",
                        self.path.display()
                    )))
                }
                Ok(Err(e)) => return Err(SampleError::new(format!("statvfs task failed: {e}"))),
                Ok(Ok(Err(e))) => {
                    return Err(SampleError::new(format!(
                        "statvfs on {}: {e}",
                        self.path.display()
                    )))
                }
                Ok(Ok(Ok(space))) => space,
            };
            Ok(Reading {
                value: Some(space.used),
                found_limit: Some(space.usable),
                alerts: Vec::new(),
            })
        })
    }
}

/// `kind = "filesystem"`: bytes used on the filesystem holding `path`; limit found from its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilesystemConfig {
    pub path: PathBuf,
}

impl GaugeKind for FilesystemConfig {
    const NAMES: &'static [&'static str] = &["filesystem"];
    const KEYS: &'static [&'static str] = &["path"];
    const UNIT: &'static str = "bytes";

    fn check(raw: &RawGauge, c: &mut GaugeCheck<'_, '_>) -> Option<Self> {
        let Some(path) = &raw.path else {
            c.missing("path", "path = \"/var/spool/recordings\"");
            return None;
        };
        Some(FilesystemConfig { path: path.clone() })
    }

    fn build(&self, _ctx: &BuildContext<'_>) -> Box<dyn Sampler> {
        Box::new(FilesystemSampler::new(self.path.clone()))
    }
}
