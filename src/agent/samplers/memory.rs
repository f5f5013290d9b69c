//! Memory of a service's processes: RSS, PSS and USS summed from `/proc/PID/smaps_rollup` (read
//! through held files by [`crate::agent::handle`] on every tick; by path in
//! [`crate::agent::proc::read_memory_totals`]).
//!
//! PSS is the default memory gauge: shared pages (Kamailio's shared memory pool, libraries) are
//! divided among the processes that map them, so the sum over a forking service is its real
//! footprint, where summed RSS counts the shared pool once per process. USS (`Private_Clean +
//! Private_Dirty`) is what the processes would give back if they exited. For a systemd unit, the
//! cgroup's `memory.max` is the limit found.

use super::cgroup_memory;
use super::kind::{BuildContext, GaugeCheck, GaugeKind, RawGauge};
use crate::agent::proc::MemoryTotals;
use crate::agent::sampler::{Reading, SampleContext, SampleError, SampleFuture, Sampler};

/// The figure of one kind.
fn figure(totals: &MemoryTotals, kind: MemoryKind) -> u64 {
    match kind {
        MemoryKind::Rss => totals.rss,
        MemoryKind::Pss => totals.pss,
        MemoryKind::Uss => totals.uss,
    }
}

/// Samples one memory figure.
pub struct MemorySampler {
    kind: MemoryKind,
}

impl MemorySampler {
    pub fn new(kind: MemoryKind) -> Self {
        MemorySampler { kind }
    }
}

impl Sampler for MemorySampler {
    fn sample<'a>(&'a mut self, ctx: &'a SampleContext) -> SampleFuture<'a> {
        Box::pin(async move {
            let totals = ctx.memory();
            if ctx.procs.is_empty() {
                return Ok(Reading::nothing());
            }
            if totals.processes == 0 {
                return Err(SampleError::new(format!(
                    "cannot read /proc/PID/smaps_rollup of any of the {} processes (permission? run the agent \
                     as root or as the service's user, or grant it CAP_SYS_PTRACE)",
                    ctx.procs.len()
                )));
            }
            Ok(Reading {
                value: Some(figure(totals, self.kind) as f64),
                found_limit: ctx.cgroup().and_then(cgroup_memory::memory_max),
                alerts: Vec::new(),
            })
        })
    }
}

/// `kind = "pss"`, `"rss"` or `"uss"`: which memory figure of the service's processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Resident set size (shared pages counted once per process).
    Rss,
    /// Proportional set size (shared pages divided among the processes sharing them).
    Pss,
    /// Unique set size (pages private to one process).
    Uss,
}

impl MemoryKind {
    /// The `kind` label of `sipwatch_service_memory_bytes`.
    pub fn label(self) -> &'static str {
        match self {
            MemoryKind::Rss => "rss",
            MemoryKind::Pss => "pss",
            MemoryKind::Uss => "uss",
        }
    }
}

impl GaugeKind for MemoryKind {
    const NAMES: &'static [&'static str] = &["pss", "rss", "uss"];
    const KEYS: &'static [&'static str] = &[];
    const UNIT: &'static str = "bytes";
    const IS_MEMORY: bool = true;
    const READS_PROCESSES: bool = true;

    fn check(raw: &RawGauge, _c: &mut GaugeCheck<'_, '_>) -> Option<Self> {
        match raw.kind.get_ref().as_str() {
            "rss" => Some(MemoryKind::Rss),
            "uss" => Some(MemoryKind::Uss),
            _ => Some(MemoryKind::Pss),
        }
    }

    fn build(&self, _ctx: &BuildContext<'_>) -> Box<dyn Sampler> {
        Box::new(MemorySampler::new(*self))
    }

    fn name(&self) -> &'static str {
        self.label()
    }
}
