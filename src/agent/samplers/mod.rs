//! The gauge kinds, one file each, and their registry: the `gauge_kinds!` table at the end of
//! this file is the one place that lists them.
//!
//! A kind's file holds its config struct (implementing [`kind::GaugeKind`]: the names of
//! `kind = "..."` it answers to, the keys it reads, its checks, its unit and the like, and
//! `build`, which makes its sampler) and its sampler (implementing
//! [`crate::agent::sampler::Sampler`]). To add a kind: write `samplers/NAME.rs` that way, then,
//! here, declare it (`pub mod NAME;`) and add one line `Variant(NAME::NameConfig),` to the table.
//! The config check, the reports, the metrics and the sampler's construction all follow from
//! that table. (Only a kind that needs a key no kind has yet also adds it to
//! [`kind::RawGauge`].)

pub mod cgroup_memory;
pub mod command;
pub mod fds;
pub mod filesystem;
pub mod http_json;
pub mod kamailio;
pub mod kind;
pub mod log_alert;
pub mod log_regex;
pub mod memory;
pub mod threads;

use std::path::Path;
use std::time::Duration;

use kind::{BuildContext, GaugeCheck, GaugeKind, RawGauge};

use super::sampler::Sampler;

/// One registered kind, as the config check finds it by name.
pub struct KindEntry {
    /// The names of `kind = "..."` it answers to.
    pub names: &'static [&'static str],
    /// The keys it reads beyond the common ones.
    pub keys: &'static [&'static str],
    /// Its checks.
    pub check: fn(&RawGauge, &mut GaugeCheck<'_, '_>) -> Option<GaugeSpec>,
}

/// Makes [`GaugeSpec`] (one variant per kind), [`KINDS`] and the dispatch of every
/// [`GaugeKind`] method from the table of kinds.
macro_rules! gauge_kinds {
    ($($variant:ident($config:ty),)*) => {
        /// What a gauge measures, with the settings its kind needs.
        #[derive(Clone, Debug)]
        pub enum GaugeSpec {
            $($variant($config),)*
        }

        /// Every kind, in the order `kind = "..."` errors list them.
        pub const KINDS: &[KindEntry] = &[$(KindEntry {
            names: <$config as GaugeKind>::NAMES,
            keys: <$config as GaugeKind>::KEYS,
            check: |raw, c| <$config as GaugeKind>::check(raw, c).map(GaugeSpec::$variant),
        },)*];

        impl GaugeSpec {
            /// The name of the kind, as written in `kind = "..."`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(GaugeSpec::$variant(k) => k.name(),)*
                }
            }

            /// The unit of the values, for reports.
            pub fn unit(&self) -> &'static str {
                match self {
                    $(GaugeSpec::$variant(_) => <$config as GaugeKind>::UNIT,)*
                }
            }

            /// Whether the gauge measures memory in bytes (the service's `limit` applies to it).
            pub fn is_memory(&self) -> bool {
                match self {
                    $(GaugeSpec::$variant(_) => <$config as GaugeKind>::IS_MEMORY,)*
                }
            }

            /// Whether the gauge reads the service's processes (and so has nothing while it is missing).
            pub fn reads_processes(&self) -> bool {
                match self {
                    $(GaugeSpec::$variant(_) => <$config as GaugeKind>::READS_PROCESSES,)*
                }
            }

            /// Whether samples go through the leak detector when `detect` is not written.
            pub fn detect_by_default(&self) -> bool {
                match self {
                    $(GaugeSpec::$variant(_) => <$config as GaugeKind>::DETECT_BY_DEFAULT,)*
                }
            }

            /// How long one sample may take, for the gauges that wait on something outside.
            pub fn timeout(&self) -> Option<Duration> {
                match self {
                    $(GaugeSpec::$variant(k) => k.timeout(),)*
                }
            }

            /// The log file the gauge follows, named in its log alerts.
            pub fn log_file(&self) -> Option<&Path> {
                match self {
                    $(GaugeSpec::$variant(k) => k.log_file(),)*
                }
            }

            /// The gauge's sampler.
            fn build(&self, ctx: &BuildContext<'_>) -> Box<dyn Sampler> {
                match self {
                    $(GaugeSpec::$variant(k) => k.build(ctx),)*
                }
            }
        }
    };
}

gauge_kinds! {
    Memory(memory::MemoryKind),
    CgroupMemory(cgroup_memory::CgroupMemoryConfig),
    Fds(fds::FdsConfig),
    Threads(threads::ThreadsConfig),
    Kamailio(kamailio::KamailioConfig),
    HttpJson(http_json::HttpJsonConfig),
    LogRegex(log_regex::LogRegexConfig),
    LogAlert(log_alert::LogAlertConfig),
    Command(command::CommandConfig),
    Filesystem(filesystem::FilesystemConfig),
}

/// The names of every kind, for errors: `pss, rss, uss, cgroup_memory, ...`.
pub fn kind_names() -> String {
    KINDS
        .iter()
        .flat_map(|k| k.names.iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sampler for a gauge. `client` is shared by the HTTP samplers; `cgroup_root` is the cgroup
/// v2 mount.
pub fn build(spec: &GaugeSpec, client: &reqwest::Client, cgroup_root: &Path) -> Box<dyn Sampler> {
    let ctx = BuildContext {
        client,
        cgroup_root,
    };
    spec.build(&ctx)
}
