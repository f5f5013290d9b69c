//! Open file descriptors of a service: entries of `/proc/PID/fd` summed over its processes, and
//! the soft `RLIMIT_NOFILE` of each from `/proc/PID/limits`.
//!
//! The limit is per process, so it is the limit found only for a single-process service (where the
//! sum is that process's count). For a forking service the report still shows the lowest
//! per-process limit and the fullest process, but the summed gauge gets no automatic limit.
//!
//! Per process and tick this costs one `fstat` of the held `/proc/PID/fd` (its size is the count
//! since Linux 6.2; older kernels list the directory; see [`crate::agent::handle`]; the reads are in
//! [`crate::agent::proc`]) and one
//! `prlimit` call (reading `/proc/PID/limits` only when `prlimit` is not allowed on that process).

use super::kind::{BuildContext, GaugeCheck, GaugeKind, RawGauge};
use crate::agent::sampler::{Reading, SampleContext, SampleError, SampleFuture, Sampler};

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

/// `kind = "fds"`: open descriptors summed over the processes; limit found from `RLIMIT_NOFILE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdsConfig;

impl GaugeKind for FdsConfig {
    const NAMES: &'static [&'static str] = &["fds"];
    const KEYS: &'static [&'static str] = &[];
    const UNIT: &'static str = "descriptors";
    const READS_PROCESSES: bool = true;

    fn check(_raw: &RawGauge, _c: &mut GaugeCheck<'_, '_>) -> Option<Self> {
        Some(FdsConfig)
    }

    fn build(&self, _ctx: &BuildContext<'_>) -> Box<dyn Sampler> {
        Box::new(FdSampler)
    }
}
