//! Memory of a service's processes: RSS, PSS and USS summed from `/proc/PID/smaps_rollup` (read
//! through held files by [`crate::agent::handle`] on every tick; by path in [`read_totals`]).
//!
//! PSS is the default memory gauge: shared pages (Kamailio's shared memory pool, libraries) are
//! divided among the processes that map them, so the sum over a forking service is its real
//! footprint, where summed RSS counts the shared pool once per process. USS (`Private_Clean +
//! Private_Dirty`) is what the processes would give back if they exited. For a systemd unit, the
//! cgroup's `memory.max` is the limit found.

use super::cgroup_memory;
use crate::agent::config::MemoryKind;
use crate::agent::proc::ProcId;
use crate::agent::sampler::{Reading, SampleContext, SampleError, SampleFuture, Sampler};

/// Memory summed over processes, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryTotals {
    pub rss: u64,
    pub pss: u64,
    pub uss: u64,
    /// Processes whose `smaps_rollup` could be read.
    pub processes: usize,
}

impl MemoryTotals {
    /// The figure of one kind.
    pub fn get(&self, kind: MemoryKind) -> u64 {
        match kind {
            MemoryKind::Rss => self.rss,
            MemoryKind::Pss => self.pss,
            MemoryKind::Uss => self.uss,
        }
    }
}

/// One process's figures from the text of its `smaps_rollup` (values in kB); `None` for a text
/// without them (a process that is gone reads as empty).
pub fn parse_smaps_rollup(text: &[u8]) -> Option<MemoryTotals> {
    let mut totals = MemoryTotals {
        processes: 1,
        ..MemoryTotals::default()
    };
    let mut seen = false;
    for line in text.split(|&b| b == b'\n') {
        // Only the lines wanted are parsed; `Pss_Dirty:` and the like are not `Pss:`.
        let (field, rest) = if let Some(rest) = line.strip_prefix(b"Rss:") {
            seen = true;
            (&mut totals.rss, rest)
        } else if let Some(rest) = line.strip_prefix(b"Pss:") {
            (&mut totals.pss, rest)
        } else if let Some(rest) = line
            .strip_prefix(b"Private_Clean:")
            .or_else(|| line.strip_prefix(b"Private_Dirty:"))
        {
            (&mut totals.uss, rest)
        } else {
            continue;
        };
        let digits = rest.trim_ascii_start();
        let end = digits
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(digits.len());
        let kb = digits[..end].iter().fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        *field += kb * 1024;
    }
    seen.then_some(totals)
}

/// Sums the figures over the processes; processes that exited meanwhile are skipped.
pub fn read_totals(procs: &[ProcId]) -> MemoryTotals {
    let mut totals = MemoryTotals::default();
    for id in procs {
        let Some(one) =
            crate::agent::proc::with_proc_file(id.pid, "smaps_rollup", parse_smaps_rollup)
        else {
            continue;
        };
        totals.rss += one.rss;
        totals.pss += one.pss;
        totals.uss += one.uss;
        totals.processes += 1;
    }
    totals
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
                value: Some(totals.get(self.kind) as f64),
                found_limit: ctx.cgroup().and_then(cgroup_memory::memory_max),
                alerts: Vec::new(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rollup() {
        let text = "55b30b3c4000-7ffc50734000 ---p 00000000 00:00 0 [rollup]\n\
                    Rss:                1728 kB\nPss:                 407 kB\nPss_Dirty:           112 kB\n\
                    Shared_Clean:       1576 kB\nPrivate_Clean:        40 kB\nPrivate_Dirty:       112 kB\n";
        let t = parse_smaps_rollup(text.as_bytes()).unwrap();
        assert_eq!(t.rss, 1728 * 1024);
        assert_eq!(t.pss, 407 * 1024, "Pss_Dirty is not Pss");
        assert_eq!(t.uss, 152 * 1024);
        assert_eq!(
            parse_smaps_rollup(b""),
            None,
            "a process gone reads as empty"
        );
    }

    #[test]
    fn own_process_is_plausible() {
        let me = crate::agent::proc::read(std::process::id() as i32).unwrap();
        let t = read_totals(&[me.id]);
        assert_eq!(t.processes, 1);
        assert!(t.rss > 1 << 20 && t.pss > 0 && t.uss > 0);
        assert!(t.uss <= t.pss && t.pss <= t.rss, "{t:?}");
    }
}
