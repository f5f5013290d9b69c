//! Open file descriptors of a service: entries of `/proc/PID/fd` summed over its processes, and
//! the soft `RLIMIT_NOFILE` of each from `/proc/PID/limits`.
//!
//! The limit is per process, so it is the limit found only for a single-process service (where the
//! sum is that process's count). For a forking service the report still shows the lowest
//! per-process limit and the fullest process, but the summed gauge gets no automatic limit.
//!
//! Per process and tick this costs one `fstat` of the held `/proc/PID/fd` (its size is the count
//! since Linux 6.2; older kernels list the directory; see [`crate::agent::handle`]) and one
//! `prlimit` call (reading `/proc/PID/limits` only when `prlimit` is not allowed on that process).

use std::os::unix::fs::MetadataExt;

use procfs::process::{LimitValue, Process};

use crate::agent::proc::ProcId;
use crate::agent::sampler::{Reading, SampleContext, SampleError, SampleFuture, Sampler};

/// Descriptor figures over a service's processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdTotals {
    /// Open descriptors, summed.
    pub open: u64,
    /// The lowest soft `RLIMIT_NOFILE` of the processes (`None` if unlimited or unreadable).
    pub min_limit: Option<u64>,
    /// The most descriptors any one process holds.
    pub max_open: u64,
    /// Processes whose descriptors could be counted.
    pub processes: usize,
}

/// Counts descriptors; processes that exited meanwhile are skipped.
pub fn read_totals(procs: &[ProcId]) -> FdTotals {
    let mut totals = FdTotals::default();
    for id in procs {
        let Some(count) = fd_count(id.pid) else {
            continue;
        };
        totals.open += count;
        totals.max_open = totals.max_open.max(count);
        totals.processes += 1;
        if let Some(soft) = soft_nofile(id.pid) {
            totals.min_limit = Some(totals.min_limit.map_or(soft, |m| m.min(soft)));
        }
    }
    totals
}

/// Open descriptors of a process; `None` if its `fd` directory cannot be read.
fn fd_count(pid: i32) -> Option<u64> {
    if crate::agent::handle::fd_size_is_count() {
        return Some(std::fs::metadata(format!("/proc/{pid}/fd")).ok()?.size());
    }
    count_by_listing(pid)
}

/// Open descriptors of a process, by listing `/proc/PID/fd` (kernels before 6.2, where the
/// directory's size is 0).
pub fn count_by_listing(pid: i32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The soft `RLIMIT_NOFILE` of a process; `None` when unlimited or unreadable.
pub fn soft_nofile(pid: i32) -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit with a null new limit only writes the current one into `limit`, which we own.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut limit) };
    if rc == 0 {
        return (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur);
    }
    // Not allowed (another user's process without CAP_SYS_RESOURCE): the world-readable file.
    match Process::new(pid)
        .ok()?
        .limits()
        .ok()?
        .max_open_files
        .soft_limit
    {
        LimitValue::Value(soft) => Some(soft),
        LimitValue::Unlimited => None,
    }
}

/// Samples the summed descriptor count.
pub struct FdSampler;

impl Sampler for FdSampler {
    fn sample<'a>(&'a mut self, ctx: &'a SampleContext) -> SampleFuture<'a> {
        Box::pin(async move {
            let totals = ctx.fds();
            if ctx.procs.is_empty() {
                return Ok(Reading::nothing());
            }
            if totals.processes == 0 {
                return Err(SampleError::new(format!(
                    "cannot list /proc/PID/fd of any of the {} processes (permission? run the agent as root \
                     or as the service's user, or grant it CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)",
                    ctx.procs.len()
                )));
            }
            Ok(Reading {
                value: Some(totals.open as f64),
                found_limit: if totals.processes == 1 {
                    totals.min_limit.map(|l| l as f64)
                } else {
                    None
                },
                alerts: Vec::new(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_descriptors_and_limit() {
        let me = crate::agent::proc::read(std::process::id() as i32).unwrap();
        let before = read_totals(&[me.id]);
        // Other tests in this process open and close files meanwhile: open many, demand most.
        let files: Vec<std::fs::File> = (0..64)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let after = read_totals(&[me.id]);
        assert!(after.open >= before.open + 48, "{before:?} -> {after:?}");
        assert!(after.min_limit.is_some_and(|l| l >= after.open));
        drop(files);
        // prlimit and /proc/PID/limits agree.
        let from_file = match Process::myself()
            .unwrap()
            .limits()
            .unwrap()
            .max_open_files
            .soft_limit
        {
            LimitValue::Value(v) => Some(v),
            LimitValue::Unlimited => None,
        };
        assert_eq!(soft_nofile(me.id.pid), from_file);
    }
}
