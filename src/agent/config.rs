//! The agent's config file (`agent.toml`): what it may contain, and the checks that turn it into an
//! [`AgentConfig`] the agent can run without further questions.
//!
//! Parsing is two steps. Serde reads the TOML into "raw" structs that mirror the file (unknown keys
//! are refused; wrong durations, sizes and regexes fail with the value's position). Validation then
//! checks what serde cannot (one way to find each service, the fields each gauge kind needs, unique
//! names) and reports every problem at once, each with `file:line:col`, what is wrong and the fix.
//! This module does not touch `/proc`, the network or the state directory.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

pub use super::samplers::kind::Aggregate;
use super::samplers::kind::{one_line, GaugeCheck, RawGauge};
pub use super::samplers::memory::MemoryKind;
pub use super::samplers::GaugeSpec;
use super::samplers::{kind_names, KINDS};
use super::units::{ConfigDuration, Quantity};
use crate::config_error::{parse_all, table_span, ConfigErrors, Problems};
use crate::leak::DetectorConfig;

/// `pss_every` when the config does not say: a process whose `statm` did not move has its PSS read
/// again at least once a minute.
pub const DEFAULT_PSS_EVERY: Duration = Duration::from_secs(60);

/// The agent's validated configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Where `/metrics`, `/healthz` and `/api/v1/services` are served.
    pub listen: SocketAddr,
    /// Default time between two samples of a service.
    pub interval: Duration,
    /// Where gauge histories are kept across agent restarts.
    pub state_dir: PathBuf,
    /// Ticks between two full `/proc` scans for services found by process name or command line, and
    /// between two checks of every followed process's children for pidfile services.
    pub rescan_every: u32,
    /// The longest a process's PSS/USS is taken from an earlier `smaps_rollup` read while its
    /// `statm` (page counts, RSS among them) has not changed. `smaps_rollup` is read again at once
    /// when `statm` moves.
    pub pss_every: Duration,
    /// How long raw samples are kept.
    pub history_raw: Duration,
    /// How long per-minute averages are kept.
    pub history_minutes: Duration,
    /// The cgroup v2 mount (auto-detected when not set).
    pub cgroup_root: Option<PathBuf>,
    /// The services to watch.
    pub services: Vec<ServiceConfig>,
    /// `[daemon]`: report to a `sipwatch run` daemon, which also sends this agent's alerts.
    pub daemon: Option<DaemonLink>,
    /// `[alerting]`: this agent's own receivers (used when no `[daemon]` is configured).
    pub alerting: sipwatch_alerting::AlertingConfig,
}

/// Where and how the agent reports to the daemon.
#[derive(Clone, Debug)]
pub struct DaemonLink {
    /// The daemon's base URL, e.g. `http://prober.example.org:8479`.
    pub url: String,
    /// The bearer token (the daemon's `[agents] token_file`); redacted in Debug.
    pub token: sipwatch_alerting::Secret,
    /// Time between two reports.
    pub report_interval: Duration,
}

/// One watched service.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// The name used in metrics, logs, alerts and the state directory.
    pub name: String,
    /// How its processes are found.
    pub finder: Finder,
    /// Time between two samples.
    pub interval: Duration,
    /// The gauges sampled and fed to the leak detector.
    pub gauges: Vec<GaugeConfig>,
    /// `[service.restart]`: the watchdog's policy (none: never restarted by sipwatch).
    pub restart: Option<crate::agent::watchdog::config::RestartConfig>,
}

/// How the processes of a service are found.
#[derive(Clone, Debug)]
pub enum Finder {
    /// The processes of a systemd unit's cgroup (`/sys/fs/cgroup/system.slice/UNIT/cgroup.procs`).
    SystemdUnit(String),
    /// Processes whose name (`/proc/PID/comm`) is exactly this.
    ProcessName(String),
    /// Processes whose command line (arguments joined by spaces) matches this regex.
    Cmdline(Regex),
    /// The process whose pid is in this file, and its descendants.
    Pidfile(PathBuf),
}

impl fmt::Display for Finder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finder::SystemdUnit(unit) => write!(f, "systemd unit {unit}"),
            Finder::ProcessName(name) => write!(f, "process name \"{name}\""),
            Finder::Cmdline(re) => write!(f, "command line matching /{re}/"),
            Finder::Pidfile(path) => write!(f, "pidfile {}", path.display()),
        }
    }
}

/// One gauge of a service.
#[derive(Clone, Debug)]
pub struct GaugeConfig {
    /// Unique within the service (defaults to the kind's name).
    pub name: String,
    /// What is measured and how.
    pub spec: GaugeSpec,
    /// A limit written in the config (takes precedence over a limit found at run time).
    pub limit: Option<f64>,
    /// Whether the samples go through the leak detector.
    pub detect: bool,
    /// The leak detector's settings for this gauge.
    pub leak: DetectorConfig,
}

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    agent: RawAgent,
    #[serde(default)]
    service: Vec<Spanned<RawService>>,
    daemon: Option<RawDaemon>,
    alerting: Option<sipwatch_alerting::AlertingConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    url: Spanned<String>,
    token_file: Spanned<PathBuf>,
    report_interval: Option<ConfigDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    listen: Option<Spanned<String>>,
    interval: Option<ConfigDuration>,
    state_dir: Option<PathBuf>,
    rescan_every: Option<Spanned<i64>>,
    pss_every: Option<ConfigDuration>,
    history_raw: Option<ConfigDuration>,
    history_minutes: Option<ConfigDuration>,
    cgroup_root: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    systemd_unit: Option<Spanned<String>>,
    process: Option<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
    pidfile: Option<Spanned<PathBuf>>,
    interval: Option<ConfigDuration>,
    limit: Option<Quantity>,
    #[serde(default)]
    leak: DetectorConfig,
    #[serde(default)]
    gauge: Vec<Spanned<RawGauge>>,
    restart: Option<Spanned<crate::agent::watchdog::config::RawRestart>>,
}

// ---- validation ----

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.')
}

/// Reads and validates the agent config at `path`.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigErrors> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::unplaced(
            path,
            format!("cannot read the file: {e}; check the path given with -c"),
        )
    })?;
    parse(&source, path)
}

/// Validates config text; `path` only names the file in errors.
pub fn parse(source: &str, path: &Path) -> Result<AgentConfig, ConfigErrors> {
    let mut problems = Problems::new(path, source);
    let raw: RawFile = match parse_all(source) {
        Ok(raw) => raw,
        Err(found) => {
            for (span, message) in found {
                problems.at(span, explain_parse_error(&message));
            }
            return Err(problems
                .finish()
                .err()
                .unwrap_or_else(|| ConfigErrors(Vec::new())));
        }
    };
    let config = validate(raw, &mut problems);
    problems.finish().map(|()| config)
}

fn explain_parse_error(message: &str) -> String {
    let message = message.trim_end();
    if message.starts_with("unknown field") {
        return format!("{message}; remove it or fix its spelling");
    }
    if message.starts_with("missing field `name`") {
        return format!("{message}; every [[service]] needs name = \"...\"");
    }
    if message.starts_with("missing field `kind`") {
        return format!(
            "{message}; every [[service.gauge]] needs kind = one of {}",
            kind_names()
        );
    }
    message.to_owned()
}

fn validate(raw: RawFile, c: &mut Problems<'_>) -> AgentConfig {
    let agent = raw.agent;
    let listen = match &agent.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 9198)),
        Some(text) => match text.get_ref().parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                c.at(
                    text.span(),
                    format!(
                        "listen = \"{}\" is not an address:port; write e.g. \"127.0.0.1:9198\" or \"[::1]:9198\"",
                        text.get_ref()
                    ),
                );
                SocketAddr::from(([127, 0, 0, 1], 9198))
            }
        },
    };
    let interval = agent
        .interval
        .map_or(Duration::from_secs(10), ConfigDuration::get);
    let rescan_every = match &agent.rescan_every {
        None => 6,
        Some(n) if (1..=10_000).contains(n.get_ref()) => *n.get_ref() as u32,
        Some(n) => {
            c.at(
                n.span(),
                format!(
                    "rescan_every = {} must be between 1 and 10000 ticks",
                    n.get_ref()
                ),
            );
            6
        }
    };
    let pss_every = agent
        .pss_every
        .map_or(DEFAULT_PSS_EVERY, ConfigDuration::get);
    let history_raw = agent
        .history_raw
        .map_or(Duration::from_secs(6 * 3600), ConfigDuration::get);
    let history_minutes = agent
        .history_minutes
        .map_or(Duration::from_secs(14 * 86400), ConfigDuration::get);

    let mut services = Vec::new();
    let mut names = BTreeSet::new();
    for service in raw.service {
        let span = service.span();
        let name_span = service.get_ref().name.span();
        let name = service.get_ref().name.get_ref().clone();
        if !names.insert(name.clone()) {
            c.at(
                name_span,
                format!("two services are named \"{name}\"; service names must be unique"),
            );
        }
        let service = service.into_inner();
        if let Some(s) = validate_service(service, span, interval, c) {
            services.push(s);
        }
    }
    let daemon = raw.daemon.and_then(|d| {
        let url = d.url.get_ref().trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            c.at(
                d.url.span(),
                format!("[daemon] url = \"{url}\" is not an http(s) URL; write e.g. \"http://prober:8479\""),
            );
            return None;
        }
        match sipwatch_alerting::Secret::from_file(d.token_file.get_ref()) {
            Ok(token) => Some(DaemonLink {
                url,
                token,
                report_interval: d
                    .report_interval
                    .map_or(Duration::from_secs(30), ConfigDuration::get),
            }),
            Err(e) => {
                c.at(d.token_file.span(), format!("[daemon] token_file: {e}"));
                None
            }
        }
    });
    let alerting_span = table_span(c.source(), "alerting");
    let alerting = raw.alerting.unwrap_or_default();
    if let Err(e) = sipwatch_alerting::build(&alerting.receiver) {
        for line in e.to_string().lines() {
            c.at(alerting_span.clone(), format!("[alerting]: {line}"));
        }
    }
    AgentConfig {
        daemon,
        alerting,
        listen,
        interval,
        state_dir: agent
            .state_dir
            .unwrap_or_else(|| PathBuf::from("/var/lib/sipwatch/agent")),
        rescan_every,
        pss_every,
        history_raw,
        history_minutes,
        cgroup_root: agent.cgroup_root,
        services,
    }
}

fn validate_service(
    raw: RawService,
    span: Range<usize>,
    default_interval: Duration,
    c: &mut Problems<'_>,
) -> Option<ServiceConfig> {
    let name = raw.name.get_ref().clone();
    if !valid_name(&name) {
        c.at(
            raw.name.span(),
            format!(
                "service name \"{name}\" may only use letters, digits, '_', '-' and '.' (it names files and metric labels)"
            ),
        );
    }
    let mut finders = Vec::new();
    if let Some(unit) = raw.systemd_unit {
        let mut unit_name = unit.get_ref().trim().to_owned();
        if unit_name.is_empty() || unit_name.contains('/') {
            c.at(
                unit.span(),
                format!("systemd_unit = \"{unit_name}\" is not a unit name; write e.g. \"kamailio.service\""),
            );
        }
        if !unit_name.contains('.') {
            unit_name.push_str(".service");
        }
        finders.push((unit.span(), Finder::SystemdUnit(unit_name)));
    }
    if let Some(process) = raw.process {
        let p = process.get_ref();
        if p.is_empty() || p.contains('/') || p.contains(' ') {
            c.at(
                process.span(),
                format!(
                    "process = \"{p}\" must be a bare process name as in /proc/PID/comm (e.g. \"kamailio\"); \
                     to match a path or arguments use cmdline = \"regex\""
                ),
            );
        }
        finders.push((process.span(), Finder::ProcessName(p.clone())));
    }
    if let Some(cmdline) = raw.cmdline {
        match Regex::new(cmdline.get_ref()) {
            Ok(re) => finders.push((cmdline.span(), Finder::Cmdline(re))),
            Err(e) => c.at(
                cmdline.span(),
                format!("cmdline is not a valid regex: {}", one_line(&e.to_string())),
            ),
        }
    }
    if let Some(pidfile) = raw.pidfile {
        if !pidfile.get_ref().is_absolute() {
            c.at(
                pidfile.span(),
                format!(
                    "pidfile \"{}\" must be an absolute path, e.g. \"/run/kamailio/kamailio.pid\"",
                    pidfile.get_ref().display()
                ),
            );
        }
        finders.push((pidfile.span(), Finder::Pidfile(pidfile.get_ref().clone())));
    }
    let finder = match finders.len() {
        0 => {
            c.at(
                span.clone(),
                format!(
                    "service \"{name}\" has no way to find its processes; add one of systemd_unit = \"NAME.service\", \
                     process = \"NAME\", cmdline = \"REGEX\" or pidfile = \"/run/NAME.pid\""
                ),
            );
            None
        }
        1 => finders.pop().map(|(_, f)| f),
        _ => {
            let (second, _) = &finders[1];
            c.at(
                second.clone(),
                format!(
                    "service \"{name}\" sets more than one of systemd_unit, process, cmdline, pidfile; keep exactly one"
                ),
            );
            None
        }
    };

    let mut gauges = Vec::new();
    let mut gauge_names = BTreeSet::new();
    let raw_gauges = raw.gauge;
    let service_limit = raw.limit.map(|q| q.0);
    if raw_gauges.is_empty() {
        gauges.push(GaugeConfig {
            name: "pss".to_owned(),
            spec: GaugeSpec::Memory(MemoryKind::Pss),
            limit: service_limit,
            detect: true,
            leak: raw.leak.clone(),
        });
    }
    for gauge in raw_gauges {
        let span = gauge.span();
        let interval = raw.interval.map_or(default_interval, ConfigDuration::get);
        if let Some(g) = validate_gauge(
            gauge.into_inner(),
            span.clone(),
            &name,
            interval,
            service_limit,
            &raw.leak,
            c,
        ) {
            if let Some(timeout) = g.spec.timeout().filter(|t| *t >= interval) {
                c.at(
                    span.clone(),
                    format!(
                        "service \"{name}\": gauge \"{}\" has timeout = \"{timeout:?}\", not below the \
                         service's interval = \"{interval:?}\"; a sample must end before the next one \
                         starts (a hung one would pile up): lower timeout or raise interval",
                        g.name
                    ),
                );
            }
            if !gauge_names.insert(g.name.clone()) {
                c.at(
                    span,
                    format!(
                        "service \"{name}\" has two gauges named \"{}\"; give one a different name = \"...\"",
                        g.name
                    ),
                );
            }
            gauges.push(g);
        }
    }
    let restart = raw.restart.and_then(|r| {
        let span = r.span();
        let unit = match &finder {
            Some(Finder::SystemdUnit(u)) => Some(u.as_str()),
            _ => None,
        };
        let names: Vec<String> = gauges.iter().map(|g| g.name.clone()).collect();
        let mut errors = Vec::new();
        let checked = crate::agent::watchdog::config::validate(
            r.into_inner(),
            span,
            &name,
            unit,
            &names,
            &mut errors,
        );
        for (span, message) in errors {
            c.at(
                span,
                format!("service \"{name}\" [service.restart]: {message}"),
            );
        }
        checked
    });
    Some(ServiceConfig {
        name,
        finder: finder?,
        interval: raw.interval.map_or(default_interval, ConfigDuration::get),
        gauges,
        restart,
    })
}

fn validate_gauge(
    raw: RawGauge,
    span: Range<usize>,
    service: &str,
    interval: Duration,
    service_limit: Option<f64>,
    service_leak: &DetectorConfig,
    problems: &mut Problems<'_>,
) -> Option<GaugeConfig> {
    let kind = raw.kind.get_ref().as_str();
    let Some(entry) = KINDS.iter().find(|k| k.names.contains(&kind)) else {
        problems.at(
            raw.kind.span(),
            format!(
                "service \"{service}\": unknown gauge kind = \"{kind}\"; use one of {}",
                kind_names()
            ),
        );
        return None;
    };
    let mut check = GaugeCheck::new(&raw, service, span.clone(), interval, problems);
    let spec = (entry.check)(&raw, &mut check);
    // Keys that belong to another kind are mistakes worth pointing at.
    for (key, at) in raw.written_keys(&span) {
        if !entry.keys.contains(&key) {
            check.stray(key, at);
        }
    }

    let spec = spec?;
    let name = match &raw.name {
        Some(n) => {
            if !valid_name(n.get_ref()) {
                problems.at(
                    n.span(),
                    format!(
                        "gauge name \"{}\" may only use letters, digits, '_', '-' and '.'",
                        n.get_ref()
                    ),
                );
            }
            n.get_ref().clone()
        }
        None => kind.to_owned(),
    };
    let limit = raw.limit.map(|q| q.0).or(if spec.is_memory() {
        service_limit
    } else {
        None
    });
    let detect = raw.detect.unwrap_or(spec.detect_by_default());
    Some(GaugeConfig {
        name,
        spec,
        limit,
        detect,
        leak: raw.leak.unwrap_or_else(|| service_leak.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<crate::config_error::ConfigError> {
        match parse(text, Path::new("agent.toml")) {
            Ok(_) => panic!("config was accepted:\n{text}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn full_config_parses() {
        let text = r#"
[agent]
listen = "127.0.0.1:9300"
interval = "5s"
state_dir = "/tmp/x"

[[service]]
name = "kamailio"
process = "kamailio"
limit = "512MiB"

[[service.gauge]]
kind = "pss"

[[service.gauge]]
kind = "kamailio_shm"
url = "http://127.0.0.1:5071/RPC"

[[service.gauge]]
kind = "log_alert"
name = "shm_errors"
file = "/var/log/kamailio.log"
patterns = ["no more shm memory", "could not allocate shared memory"]

[[service]]
name = "webbridge"
cmdline = "webbridge\\s"
[[service.gauge]]
kind = "log_regex"
file = "/var/log/webbridge.log"
regex = 'Stats (\d+)'
limit = 149
"#;
        let config = parse(text, Path::new("agent.toml")).unwrap();
        assert_eq!(config.listen.port(), 9300);
        assert_eq!(config.interval, Duration::from_secs(5));
        assert_eq!(config.services.len(), 2);
        let kam = &config.services[0];
        assert_eq!(kam.gauges.len(), 3);
        assert_eq!(kam.gauges[0].limit, Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(
            kam.gauges[1].limit, None,
            "the service limit is for memory gauges only"
        );
        assert!(
            !kam.gauges[2].detect,
            "log alerts are not leak-detected by default"
        );
        assert_eq!(config.services[1].gauges[0].limit, Some(149.0));
    }

    #[test]
    fn default_gauge_is_pss_with_service_limit() {
        let config = parse(
            "[[service]]\nname = \"a\"\npidfile = \"/run/a.pid\"\nlimit = \"1GiB\"\n",
            Path::new("agent.toml"),
        )
        .unwrap();
        let g = &config.services[0].gauges[0];
        assert_eq!(g.name, "pss");
        assert_eq!(g.limit, Some(1024.0 * 1024.0 * 1024.0));
    }

    #[test]
    fn alerting_errors_point_into_the_alerting_table() {
        let e = errors(
            "[agent]\ninterval = \"5s\"\n\n[[alerting.receiver]]\nname = \"hook\"\nkind = \"webhook\"\n\
             url = \"http://127.0.0.1:9/a\"\n[[alerting.receiver]]\nname = \"hook\"\nkind = \"webhook\"\n\
             url = \"http://127.0.0.1:9/b\"\n",
        );
        assert!(e[0].message.contains("[alerting]"), "{}", e[0].message);
        assert!(e[0].line >= 4, "line {} is not in [alerting]", e[0].line);
    }

    #[test]
    fn duration_without_unit_names_line_and_fix() {
        let e = errors("[agent]\ninterval = \"5\"\n");
        assert_eq!((e[0].line, e[0].column), (2, 12));
        assert!(e[0].message.contains("write \"5s\""), "{}", e[0].message);
    }

    #[test]
    fn unknown_field_and_restart_table() {
        let e = errors("[[service]]\nname = \"a\"\nprocess = \"a\"\nintervall = \"5s\"\n");
        assert_eq!(e[0].line, 4);
        assert!(
            e[0].message.contains("unknown field `intervall`"),
            "{}",
            e[0].message
        );
        let e =
            errors("[[service]]\nname = \"a\"\nprocess = \"a\"\n[service.restart]\nat = \"x\"\n");
        assert!(
            e[0].message.contains("unknown field `at`"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn all_validation_errors_at_once() {
        let text = r#"[[service]]
name = "no finder"

[[service]]
name = "b"
process = "b"
[[service.gauge]]
kind = "log_regex"
regex = "("

[[service.gauge]]
kind = "sessions"
"#;
        let e = errors(text);
        let lines: Vec<usize> = e.iter().map(|e| e.line).collect();
        assert!(
            e.iter()
                .any(|e| e.line == 2 && e.message.contains("may only use letters")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.line == 1 && e.message.contains("no way to find its processes")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.line == 9 && e.message.contains("regex is not valid")),
            "{e:?}"
        );
        assert!(e.iter().any(|e| e.message.contains("needs file")), "{e:?}");
        assert!(
            e.iter()
                .any(|e| e.line == 12 && e.message.contains("unknown gauge kind")),
            "{e:?}"
        );
        assert!(
            lines.windows(2).all(|w| w[0] <= w[1]),
            "errors sorted by position: {lines:?}"
        );
    }

    #[test]
    fn two_finders_and_stray_fields() {
        let e = errors(
            "[[service]]\nname = \"a\"\nprocess = \"a\"\npidfile = \"/run/a.pid\"\n[[service.gauge]]\nkind = \"fds\"\nurl = \"http://x\"\n",
        );
        assert!(
            e.iter()
                .any(|e| e.line == 4 && e.message.contains("more than one")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.line == 7 && e.message.contains("url does not apply")),
            "{e:?}"
        );
    }
}
