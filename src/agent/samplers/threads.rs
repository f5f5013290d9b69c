//! Threads of a service, summed over its processes (`num_threads` in `/proc/PID/stat`). A thread
//! leak (a pool that never shrinks, a thread per call that never joins) shows here long before
//! memory does. No limit is found automatically; write one in the config if it matters.

use super::kind::{BuildContext, GaugeCheck, GaugeKind, RawGauge};
use crate::agent::sampler::{Reading, SampleContext, SampleFuture, Sampler};

/// Samples the summed thread count.
pub struct ThreadSampler;

impl Sampler for ThreadSampler {
    fn sample<'a>(&'a mut self, ctx: &'a SampleContext) -> SampleFuture<'a> {
        Box::pin(async move {
            if ctx.procs.is_empty() {
                return Ok(Reading::nothing());
            }
            let threads = ctx.threads();
            if threads == 0 {
                return Ok(Reading::nothing());
            }
            Ok(Reading::value(threads as f64))
        })
    }
}

/// `kind = "threads"`: threads summed over the processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadsConfig;

impl GaugeKind for ThreadsConfig {
    const NAMES: &'static [&'static str] = &["threads"];
    const KEYS: &'static [&'static str] = &[];
    const UNIT: &'static str = "threads";
    const READS_PROCESSES: bool = true;

    fn check(_raw: &RawGauge, _c: &mut GaugeCheck<'_, '_>) -> Option<Self> {
        Some(ThreadsConfig)
    }

    fn build(&self, _ctx: &BuildContext<'_>) -> Box<dyn Sampler> {
        Box::new(ThreadSampler)
    }
}
