//! The samplers, one file per gauge kind, and [`build`], which makes the sampler a gauge's config
//! asks for. Each implements [`crate::agent::sampler::Sampler`].

pub mod cgroup_memory;
pub mod command;
pub mod fds;
pub mod filesystem;
pub mod http_json;
pub mod kamailio;
pub mod log_alert;
pub mod log_regex;
pub mod memory;
pub mod threads;

use std::path::Path;

use super::config::GaugeSpec;
use super::log_tail::LogTail;
use super::sampler::Sampler;

/// The sampler for a gauge. `client` is shared by the HTTP samplers; `cgroup_root` is the cgroup v2
/// mount.
pub fn build(spec: &GaugeSpec, client: &reqwest::Client, cgroup_root: &Path) -> Box<dyn Sampler> {
    match spec {
        GaugeSpec::Memory(kind) => Box::new(memory::MemorySampler::new(*kind)),
        GaugeSpec::CgroupMemory => Box::new(cgroup_memory::CgroupMemorySampler::new(
            cgroup_root.to_owned(),
        )),
        GaugeSpec::Fds => Box::new(fds::FdSampler),
        GaugeSpec::Threads => Box::new(threads::ThreadSampler),
        GaugeSpec::KamailioShm {
            url,
            field,
            timeout,
        } => Box::new(kamailio::KamailioSampler::new(
            client.clone(),
            url.clone(),
            kamailio::Pool::Shared,
            field.clone(),
            *timeout,
        )),
        GaugeSpec::KamailioPkg {
            url,
            field,
            aggregate,
            timeout,
        } => Box::new(kamailio::KamailioSampler::new(
            client.clone(),
            url.clone(),
            kamailio::Pool::Private(*aggregate),
            field.clone(),
            *timeout,
        )),
        GaugeSpec::HttpJson {
            url,
            pointer,
            timeout,
        } => Box::new(http_json::HttpJsonSampler::new(
            client.clone(),
            url.clone(),
            pointer.clone(),
            *timeout,
        )),
        GaugeSpec::LogRegex { file, regex } => Box::new(log_regex::LogRegexSampler::new(
            LogTail::new(file),
            regex.clone(),
        )),
        GaugeSpec::LogAlert { file, patterns } => Box::new(log_alert::LogAlertSampler::new(
            LogTail::new(file),
            patterns.clone(),
        )),
        GaugeSpec::Command { command, timeout } => {
            Box::new(command::CommandSampler::new(command.clone(), *timeout))
        }
        GaugeSpec::Filesystem { path } => {
            Box::new(filesystem::FilesystemSampler::new(path.clone()))
        }
    }
}
