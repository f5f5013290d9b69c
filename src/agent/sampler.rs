//! The one contract every gauge implements at run time: [`Sampler`]. A sampler reads its gauge
//! once per tick and returns a [`Reading`]: a value (or none this tick), a limit it found on its
//! own (cgroup `memory.max`, `RLIMIT_NOFILE`, Kamailio's shm total, a filesystem's size) and
//! immediate alerts.
//!
//! Samplers know nothing of history, leak detection or metrics: [`super::gauge`] does that with
//! what they return. Adding a gauge kind is one new file in `samplers/` (its config struct with
//! its checks, implementing `samplers::kind::GaugeKind`, and its sampler) plus, in
//! [`super::samplers`], its `mod` line and one line in the `gauge_kinds!` table; nothing else
//! changes (see there). The per-tick [`SampleContext`] carries the service's processes and
//! caches the figures several samplers share (one `smaps_rollup` read per process per tick,
//! however many memory gauges ask), read by [`super::proc`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::OnceLock;

use super::proc::{self, FdTotals, MemoryTotals, ProcFigures, ProcId};

/// What one sample of a gauge gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    /// The value, or `None` when there is nothing to record this tick (no process, no new log line).
    pub value: Option<f64>,
    /// A limit found by the sampler itself.
    pub found_limit: Option<f64>,
    /// Log lines that must alert at once.
    pub alerts: Vec<LogAlertLine>,
}

impl Reading {
    /// A plain value.
    pub fn value(value: f64) -> Self {
        Reading {
            value: Some(value),
            ..Reading::default()
        }
    }

    /// Nothing this tick.
    pub fn nothing() -> Self {
        Reading::default()
    }
}

/// A log line that matched an alerting pattern.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LogAlertLine {
    /// The pattern that matched.
    pub pattern: String,
    /// The line (cut to 1000 characters).
    pub line: String,
}

/// Why a sample failed, in words for the log and the report.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SampleError(pub String);

impl SampleError {
    /// An error from anything displayable.
    pub fn new(message: impl Into<String>) -> Self {
        SampleError(message.into())
    }
}

/// The future a sampler returns.
pub type SampleFuture<'a> = Pin<Box<dyn Future<Output = Result<Reading, SampleError>> + Send + 'a>>;

/// A gauge's way of reading itself.
pub trait Sampler: Send {
    /// Reads the gauge once. Must finish in bounded time (samplers that wait on others carry their
    /// own timeout).
    fn sample<'a>(&'a mut self, ctx: &'a SampleContext) -> SampleFuture<'a>;
}

/// What a sampler knows about the service at this tick.
pub struct SampleContext {
    /// The service's name.
    pub service: String,
    /// Its processes (main process first when known); empty when it is missing.
    pub procs: Vec<ProcId>,
    /// Its cgroup directory, when it is a systemd unit.
    pub cgroup: Option<PathBuf>,
    memory: OnceLock<MemoryTotals>,
    fds: OnceLock<FdTotals>,
    threads: OnceLock<u64>,
}

impl SampleContext {
    /// The context of one tick.
    pub fn new(service: &str, procs: Vec<ProcId>, cgroup: Option<PathBuf>) -> Self {
        SampleContext {
            service: service.to_owned(),
            procs,
            cgroup,
            memory: OnceLock::new(),
            fds: OnceLock::new(),
            threads: OnceLock::new(),
        }
    }

    /// The context of one tick whose processes' figures were already read (by the locator, whose
    /// read of each process is also what finds it alive).
    pub fn with_figures(self, figures: &ProcFigures) -> Self {
        let _ = self.memory.set(figures.memory);
        let _ = self.fds.set(figures.fds);
        let _ = self.threads.set(figures.threads);
        self
    }

    /// The cgroup directory, if known.
    pub fn cgroup(&self) -> Option<&Path> {
        self.cgroup.as_deref()
    }

    /// RSS, PSS and USS summed over the processes (read once per tick).
    pub fn memory(&self) -> &MemoryTotals {
        self.memory
            .get_or_init(|| proc::read_memory_totals(&self.procs))
    }

    /// Open descriptors and their limits over the processes (read once per tick).
    pub fn fds(&self) -> &FdTotals {
        self.fds.get_or_init(|| proc::read_fd_totals(&self.procs))
    }

    /// Threads summed over the processes (read once per tick).
    pub fn threads(&self) -> u64 {
        *self
            .threads
            .get_or_init(|| proc::read_thread_total(&self.procs))
    }
}
