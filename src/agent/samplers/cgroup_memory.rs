//! The memory a service's cgroup is charged for (`memory.current`), with `memory.max` as the limit
//! found: what the kernel's OOM killer looks at, page cache included.
//!
//! A systemd unit's cgroup is known from the locator; for other services it is read from the main
//! process's `/proc/PID/cgroup`. cgroup v2 first; on a cgroup v1 host the memory controller's
//! `memory.usage_in_bytes` and `memory.limit_in_bytes` are used instead.

use std::path::{Path, PathBuf};

use super::kind::{BuildContext, GaugeCheck, GaugeKind, RawGauge};
use crate::agent::sampler::{Reading, SampleContext, SampleError, SampleFuture, Sampler};

/// A `memory.max` (or v1 `memory.limit_in_bytes`) in bytes; `None` when unlimited or unreadable.
pub fn memory_max(dir: &Path) -> Option<f64> {
    let (text, v1) = match std::fs::read_to_string(dir.join("memory.max")) {
        Ok(text) => (text, false),
        Err(_) => (
            std::fs::read_to_string(dir.join("memory.limit_in_bytes")).ok()?,
            true,
        ),
    };
    let text = text.trim();
    if text == "max" {
        return None;
    }
    let bytes: u64 = text.parse().ok()?;
    // cgroup v1 writes "unlimited" as a page-rounded i64::MAX.
    if v1 && bytes >= 1 << 62 {
        return None;
    }
    Some(bytes as f64)
}

/// `memory.current` (or v1 `memory.usage_in_bytes`) in bytes.
pub fn memory_current(dir: &Path) -> Result<f64, SampleError> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name));
    let text = read("memory.current").or_else(|_| read("memory.usage_in_bytes")).map_err(|e| {
        SampleError::new(format!(
            "cannot read memory.current in {}: {e} (is the memory controller enabled for this cgroup?)",
            dir.display()
        ))
    })?;
    text.trim().parse::<u64>().map(|b| b as f64).map_err(|_| {
        SampleError::new(format!(
            "memory.current in {} is not a number",
            dir.display()
        ))
    })
}

/// The memory cgroup directory of a process, from `/proc/PID/cgroup` (`0::/path` for v2,
/// `N:memory:/path` for v1).
pub fn cgroup_of(pid: i32, v2_root: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut v2 = None;
    let mut v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            v2 = Some(v2_root.join(rel));
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(Path::new("/sys/fs/cgroup/memory").join(rel));
        }
    }
    [v2, v1].into_iter().flatten().find(|dir| {
        dir.join("memory.current").exists() || dir.join("memory.usage_in_bytes").exists()
    })
}

/// Samples the cgroup's memory.
pub struct CgroupMemorySampler {
    v2_root: PathBuf,
}

impl CgroupMemorySampler {
    pub fn new(v2_root: PathBuf) -> Self {
        CgroupMemorySampler { v2_root }
    }
}

impl Sampler for CgroupMemorySampler {
    fn sample<'a>(&'a mut self, ctx: &'a SampleContext) -> SampleFuture<'a> {
        Box::pin(async move {
            let dir = match ctx.cgroup() {
                Some(dir) => dir.to_owned(),
                None => {
                    let Some(main) = ctx.procs.first() else {
                        return Ok(Reading::nothing());
                    };
                    cgroup_of(main.pid, &self.v2_root).ok_or_else(|| {
                        SampleError::new(format!(
                            "pid {} has no memory cgroup with memory.current (memory controller not enabled?)",
                            main.pid
                        ))
                    })?
                }
            };
            Ok(Reading {
                value: Some(memory_current(&dir)?),
                found_limit: memory_max(&dir),
                alerts: Vec::new(),
            })
        })
    }
}

/// `kind = "cgroup_memory"`: the cgroup's `memory.current`; limit found from `memory.max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupMemoryConfig;

impl GaugeKind for CgroupMemoryConfig {
    const NAMES: &'static [&'static str] = &["cgroup_memory"];
    const KEYS: &'static [&'static str] = &[];
    const UNIT: &'static str = "bytes";
    const IS_MEMORY: bool = true;
    const READS_PROCESSES: bool = true;

    fn check(_raw: &RawGauge, _c: &mut GaugeCheck<'_, '_>) -> Option<Self> {
        Some(CgroupMemoryConfig)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Box<dyn Sampler> {
        Box::new(CgroupMemorySampler::new(ctx.cgroup_root.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_and_v1_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.current"), "12345\n").unwrap();
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(memory_current(dir.path()).unwrap(), 12345.0);
        assert_eq!(memory_max(dir.path()), None);
        std::fs::write(dir.path().join("memory.max"), "1048576\n").unwrap();
        assert_eq!(memory_max(dir.path()), Some(1048576.0));

        let v1 = tempfile::tempdir().unwrap();
        std::fs::write(v1.path().join("memory.usage_in_bytes"), "777\n").unwrap();
        std::fs::write(
            v1.path().join("memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        assert_eq!(memory_current(v1.path()).unwrap(), 777.0);
        assert_eq!(memory_max(v1.path()), None, "v1 unlimited");
        assert!(memory_current(Path::new("/nonexistent"))
            .unwrap_err()
            .0
            .contains("memory controller"));
    }
}
