//! The daemon's config file (`sipwatch run -c sipwatch.toml`), its shape and its checks.
//!
//! ```toml
//! [http]
//! listen = "127.0.0.1:8479"         # the default
//! [store]
//! path = "/var/lib/sipwatch/state.db"
//! retention = "30d"
//! [defaults]                 # optional, for every target
//! interval = "10s"
//! timeout = "5s"
//! fail_threshold = 3
//! ok_threshold = 2
//! [[target]]
//! name = "edge-1"
//! uri = "sip:10.0.0.1"
//! probe = "options"          # or "register" with username, password_file, realm
//! group = "edges"
//! [[group]]
//! name = "edges"
//! min_up = 2
//! [[maintenance]]            # windows: calendar + duration, for targets and/or groups
//! schedule = "Tue,Fri 03:00"
//! duration = "30m"
//! targets = ["edge-1"]
//! ```
//!
//! Unknown keys are errors. Every semantic problem (bad duration, duplicate target, unknown group,
//! `min_up` larger than the group) is collected and reported at once with file:line:column.
//! Loading reads password files; the passwords only live in [`TargetSettings::credentials`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sipwatch_probes::digest::Credentials;
use sipwatch_probes::message::{Method, TargetUri, Transport};
use toml::Spanned;

use crate::calendar::Calendar;
use crate::config_error::{parse_toml, ConfigErrors, Problems};
use sipwatch_alerting::duration::parse_duration;

/// Where the status page and /metrics listen when `[http] listen` is not given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8479";

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    http: Option<RawHttp>,
    store: Option<RawStore>,
    #[serde(default)]
    defaults: RawDefaults,
    scheduler: Option<RawScheduler>,
    #[serde(default, rename = "target")]
    targets: Vec<RawTarget>,
    #[serde(default, rename = "group")]
    groups: Vec<RawGroup>,
    #[serde(default)]
    maintenance: Vec<RawMaintenance>,
    status: Option<RawStatus>,
    alerting: Option<sipwatch_alerting::AlertingConfig>,
    agents: Option<RawAgents>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawAgents {
    token_file: Spanned<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Spanned<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Spanned<String>,
    retention: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    fail_threshold: Option<Spanned<u32>>,
    ok_threshold: Option<Spanned<u32>>,
    flap_window: Option<Spanned<String>>,
    flap_max_changes: Option<u32>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawScheduler {
    max_in_flight: Option<Spanned<usize>>,
    udp_sockets: Option<Spanned<usize>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    page_name: Option<String>,
    time_zone: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Spanned<String>,
    uri: Spanned<String>,
    probe: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    transport: Option<Spanned<String>>,
    username: Option<String>,
    password: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    realm: Option<String>,
    domain: Option<String>,
    fail_threshold: Option<Spanned<u32>>,
    ok_threshold: Option<Spanned<u32>>,
    flap_window: Option<Spanned<String>>,
    flap_max_changes: Option<u32>,
    expect: Option<Vec<u16>>,
    warn_rtt: Option<Spanned<String>>,
    crit_rtt: Option<Spanned<String>>,
    max_forwards: Option<u8>,
    ca: Option<String>,
    #[serde(default)]
    insecure: bool,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    min_up: Spanned<usize>,
    /// Restart leases out at once in the group (the watchdog's quorum leases).
    max_parallel: Option<Spanned<usize>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    schedule: Spanned<String>,
    duration: Spanned<String>,
    #[serde(default)]
    targets: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
}

/// The checked config.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub path: PathBuf,
    pub listen: SocketAddr,
    pub store_path: PathBuf,
    pub retention: Duration,
    pub max_in_flight: usize,
    pub udp_sockets: usize,
    pub page_name: String,
    /// `[status] time_zone`: page and incident times, and maintenance calendars, in this zone
    /// (None: page in UTC, calendars in the machine's local time).
    pub time_zone: Option<chrono_tz::Tz>,
    pub targets: Vec<TargetSettings>,
    pub groups: Vec<GroupSettings>,
    pub maintenance: Vec<MaintenanceWindow>,
    /// `[alerting]`: the outbox and receivers (none: alerts are only logged).
    pub alerting: sipwatch_alerting::AlertingConfig,
    /// `[agents] token_file`: the bearer token node agents present; None: agent reports refused.
    pub agent_token: Option<sipwatch_alerting::Secret>,
}

/// One target, with defaults applied.
#[derive(Clone, Debug)]
pub struct TargetSettings {
    pub name: String,
    pub uri: TargetUri,
    pub method: Method,
    pub transport: Option<Transport>,
    pub interval: Duration,
    pub timeout: Duration,
    pub group: Option<String>,
    pub credentials: Option<Credentials>,
    pub domain: Option<String>,
    /// REGISTER: the only digest realm answered (`realm`); None answers any.
    pub realm: Option<String>,
    pub fail_threshold: u32,
    pub ok_threshold: u32,
    pub flap_window: Duration,
    pub flap_max_changes: u32,
    pub expect: Option<Vec<u16>>,
    pub warn_rtt: Option<Duration>,
    pub crit_rtt: Option<Duration>,
    pub max_forwards: u8,
    pub ca: Option<PathBuf>,
    pub insecure: bool,
}

impl TargetSettings {
    /// Whether a reload may keep this target's running worker and state.
    pub fn same_probe_as(&self, other: &TargetSettings) -> bool {
        self.name == other.name
            && self.uri == other.uri
            && self.method == other.method
            && self.transport == other.transport
            && self.interval == other.interval
            && self.timeout == other.timeout
            && self.group == other.group
            && self.credentials == other.credentials
            && self.domain == other.domain
            && self.realm == other.realm
            && self.expect == other.expect
            && self.warn_rtt == other.warn_rtt
            && self.crit_rtt == other.crit_rtt
            && self.max_forwards == other.max_forwards
            && self.ca == other.ca
            && self.insecure == other.insecure
    }

    /// A digest of everything [`same_probe_as`](Self::same_probe_as) compares: the scheduler
    /// keeps this for the UDP lane's targets instead of a copy of their settings (a reload
    /// compares it; two different settings share one with odds of 2^-64).
    pub fn probe_fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            &self.name,
            &self.uri,
            self.method,
            self.transport,
            self.interval,
            self.timeout,
            &self.group,
            &self.credentials,
        )
            .hash(&mut h);
        (
            &self.domain,
            &self.realm,
            &self.expect,
            self.warn_rtt,
            self.crit_rtt,
            self.max_forwards,
            &self.ca,
            self.insecure,
        )
            .hash(&mut h);
        h.finish()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupSettings {
    pub name: String,
    pub min_up: usize,
    /// Restart leases granted at once in the group (default 1).
    pub max_parallel: usize,
}

#[derive(Clone, Debug)]
pub struct MaintenanceWindow {
    pub calendar: Calendar,
    pub duration: Duration,
    pub targets: Vec<String>,
    pub groups: Vec<String>,
}

impl DaemonConfig {
    /// Reads, parses and checks a config file.
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigErrors> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            let mut p = Problems::new(path, "");
            p.at(None, format!("cannot read the file: {e}"));
            match p.finish() {
                Err(e) => e,
                Ok(()) => ConfigErrors(vec![]),
            }
        })?;
        Self::from_source(path, &source)
    }

    /// Parses and checks `source` (the text of `path`), one section at a time; every problem of
    /// every section is reported at once.
    pub fn from_source(path: &Path, source: &str) -> Result<DaemonConfig, ConfigErrors> {
        let raw: RawConfig = parse_toml(path, source)?;
        let mut p = Problems::new(path, source);
        let base_dir = path.parent().unwrap_or(Path::new("."));

        let listen = Self::http_section(&mut p, &raw);
        let (store_path, retention) = Self::store_section(&mut p, &raw, base_dir);
        let defaults = Self::defaults_section(&mut p, &raw);
        let (max_in_flight, udp_sockets) = Self::scheduler_section(&mut p, &raw);
        let (groups, group_lines) = Self::group_sections(&mut p, &raw);
        let (targets, target_lines) =
            Self::target_sections(&mut p, &raw, &defaults, &group_lines, base_dir);
        Self::check_group_quorums(&mut p, &raw);
        let time_zone = Self::status_time_zone(&mut p, &raw);
        let maintenance = Self::maintenance_sections(&mut p, &raw, &target_lines, &group_lines);
        let alerting = Self::alerting_section(&mut p, &raw, source, base_dir, &store_path);
        let agent_token = Self::agents_section(&mut p, &raw, base_dir);
        if raw.targets.is_empty() {
            p.at(
                None,
                "no [[target]] defined; add at least one with name and uri",
            );
        }
        p.finish()?;
        Ok(DaemonConfig {
            path: path.to_path_buf(),
            listen,
            store_path,
            retention,
            max_in_flight,
            udp_sockets,
            time_zone,
            page_name: raw
                .status
                .and_then(|s| s.page_name)
                .unwrap_or_else(|| "SIP services".into()),
            targets,
            groups,
            maintenance,
            alerting,
            agent_token,
        })
    }

    /// `[http] listen`.
    fn http_section(p: &mut Problems, raw: &RawConfig) -> SocketAddr {
        let listen = match &raw.http {
            Some(h) => match h.listen.get_ref().parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    p.at(
                        Some(h.listen.span()),
                        format!(
                            "[http] listen {:?} is not IP:PORT; write e.g. \"127.0.0.1:8479\"",
                            h.listen.get_ref()
                        ),
                    );
                    "127.0.0.1:0".parse().expect("literal")
                }
            },
            // 8479: not Prometheus's 9090 (a prober often runs next to one), outside the
            // exporters' 9100-9999 (fully allocated), not in /etc/services.
            None => DEFAULT_LISTEN.parse().expect("literal"),
        };
        listen
    }

    /// `[store] path` and `retention`; the section is required.
    fn store_section(p: &mut Problems, raw: &RawConfig, base_dir: &Path) -> (PathBuf, Duration) {
        let (store_path, retention) = match &raw.store {
            Some(s) => {
                let retention = dur(
                    p,
                    s.retention.as_ref(),
                    "[store] retention",
                    Duration::from_secs(30 * 86400),
                );
                (resolve(base_dir, s.path.get_ref()), retention)
            }
            None => {
                p.at(
                    None,
                    "missing [store] section; add [store] path = \"/var/lib/sipwatch/state.db\"",
                );
                (PathBuf::new(), Duration::ZERO)
            }
        };
        (store_path, retention)
    }

    /// `[defaults]`: what every target inherits.
    fn defaults_section(p: &mut Problems, raw: &RawConfig) -> Defaults {
        let d = &raw.defaults;
        let def_interval = dur(
            p,
            d.interval.as_ref(),
            "[defaults] interval",
            Duration::from_secs(10),
        );
        let def_timeout = dur(
            p,
            d.timeout.as_ref(),
            "[defaults] timeout",
            Duration::from_secs(5),
        );
        let def_fail = threshold(p, d.fail_threshold.as_ref(), "[defaults] fail_threshold", 3);
        let def_ok = threshold(p, d.ok_threshold.as_ref(), "[defaults] ok_threshold", 2);
        let flap_window = dur(
            p,
            d.flap_window.as_ref(),
            "[defaults] flap_window",
            Duration::from_secs(600),
        );
        let flap_max_changes = d.flap_max_changes.unwrap_or(4);
        Defaults {
            interval: def_interval,
            timeout: def_timeout,
            fail: def_fail,
            ok: def_ok,
            flap_window,
            flap_max_changes,
        }
    }

    /// `[scheduler] max_in_flight` and `udp_sockets`.
    fn scheduler_section(p: &mut Problems, raw: &RawConfig) -> (usize, usize) {
        let (max_in_flight, udp_sockets) = match &raw.scheduler {
            Some(s) => (
                positive(
                    p,
                    s.max_in_flight.as_ref(),
                    "[scheduler] max_in_flight",
                    1024,
                ),
                positive(p, s.udp_sockets.as_ref(), "[scheduler] udp_sockets", 4),
            ),
            None => (1024, 4),
        };

        (max_in_flight, udp_sockets)
    }

    /// `[[group]]`s, and where each name is defined (for duplicates and references).
    fn group_sections(
        p: &mut Problems,
        raw: &RawConfig,
    ) -> (Vec<GroupSettings>, HashMap<String, usize>) {
        let mut groups = Vec::new();
        let mut group_lines: HashMap<String, usize> = HashMap::new();
        for g in &raw.groups {
            let name = g.name.get_ref().clone();
            // Offsets, turned into lines only for a duplicate (line_of walks the text).
            if let Some(first) = group_lines.get(&name) {
                let line = p.line_of(*first);
                p.at(Some(g.name.span()), format!("duplicate group {name:?} (first defined at line {line}); give each [[group]] its own name"));
                continue;
            }
            group_lines.insert(name.clone(), g.name.span().start);
            if *g.min_up.get_ref() == 0 {
                p.at(
                    Some(g.min_up.span()),
                    format!("group {name:?}: min_up must be at least 1"),
                );
            }
            if let Some(m) = &g.max_parallel {
                if *m.get_ref() == 0 {
                    p.at(
                        Some(m.span()),
                        format!("group {name:?}: max_parallel must be at least 1 (restart leases granted at once)"),
                    );
                }
            }
            groups.push(GroupSettings {
                name,
                min_up: *g.min_up.get_ref(),
                max_parallel: g.max_parallel.as_ref().map_or(1, |m| *m.get_ref()),
            });
        }

        (groups, group_lines)
    }

    /// `[[target]]`s with `[defaults]` applied, and where each name is defined.
    fn target_sections(
        p: &mut Problems,
        raw: &RawConfig,
        defaults: &Defaults,
        group_lines: &HashMap<String, usize>,
        base_dir: &Path,
    ) -> (Vec<TargetSettings>, HashMap<String, usize>) {
        let mut targets = Vec::with_capacity(raw.targets.len());
        let mut target_lines: HashMap<String, usize> = HashMap::new();
        for t in &raw.targets {
            let name = t.name.get_ref().clone();
            let what = format!("target {name:?}");
            if name.trim().is_empty() {
                p.at(
                    Some(t.name.span()),
                    "target name is empty; give every [[target]] a name",
                );
            }
            if let Some(first) = target_lines.get(&name) {
                let line = p.line_of(*first);
                p.at(Some(t.name.span()), format!("duplicate {what} (first defined at line {line}); target names must be unique"));
                continue;
            }
            target_lines.insert(name.clone(), t.name.span().start);
            let uri = match TargetUri::parse(t.uri.get_ref()) {
                Ok(u) => Some(u),
                Err(e) => {
                    p.at(Some(t.uri.span()), format!("{what}: {e}"));
                    None
                }
            };
            let method = match t.probe.as_ref().map(|s| s.get_ref().as_str()) {
                None | Some("options") => Method::Options,
                Some("register") => Method::Register,
                Some(other) => {
                    p.at(
                        t.probe.as_ref().map(|s| s.span()),
                        format!(
                            "{what}: probe {other:?} is unknown; use \"options\" or \"register\""
                        ),
                    );
                    Method::Options
                }
            };
            let transport = match &t.transport {
                Some(s) => match Transport::parse(s.get_ref()) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        p.at(Some(s.span()), format!("{what}: {e}"));
                        None
                    }
                },
                None => None,
            };
            let interval = dur(
                p,
                t.interval.as_ref(),
                &format!("{what}: interval"),
                defaults.interval,
            );
            let timeout = dur(
                p,
                t.timeout.as_ref(),
                &format!("{what}: timeout"),
                defaults.timeout,
            );
            if interval.is_zero() {
                p.at(
                    t.interval.as_ref().map(|s| s.span()),
                    format!("{what}: interval must be more than 0s"),
                );
            }
            if timeout > interval {
                p.at(
                    t.timeout.as_ref().or(t.interval.as_ref()).map(|s| s.span()),
                    format!("{what}: timeout {timeout:?} is longer than the interval {interval:?}; probes would overlap: shorten the timeout or lengthen the interval"),
                );
            }
            if let Some(g) = &t.group {
                if !group_lines.contains_key(g.get_ref()) {
                    p.at(Some(g.span()), format!("{what}: group {:?} is not defined; add [[group]] name = {:?} with its min_up", g.get_ref(), g.get_ref()));
                }
            }
            let credentials = if method == Method::Register {
                let Some(user) = t.username.clone() else {
                    p.at(Some(t.name.span()), format!("{what}: probe = \"register\" needs username and password_file (or password)"));
                    continue;
                };
                let password = match (&t.password, &t.password_file) {
                    (Some(pw), None) => Some(pw.get_ref().clone()),
                    (None, Some(file)) => {
                        let path = resolve(base_dir, file.get_ref());
                        match std::fs::read_to_string(&path) {
                            Ok(text) => match text.lines().next() {
                                Some(l) if !l.is_empty() => Some(l.to_string()),
                                _ => {
                                    p.at(
                                        Some(file.span()),
                                        format!(
                                            "{what}: password file {} is empty",
                                            path.display()
                                        ),
                                    );
                                    None
                                }
                            },
                            Err(e) => {
                                p.at(Some(file.span()), format!("{what}: cannot read password file {}: {e}; check the path and that the sipwatch user may read it", path.display()));
                                None
                            }
                        }
                    }
                    (Some(pw), Some(_)) => {
                        p.at(
                            Some(pw.span()),
                            format!("{what}: give password or password_file, not both"),
                        );
                        None
                    }
                    (None, None) => {
                        p.at(
                            Some(t.name.span()),
                            format!(
                                "{what}: probe = \"register\" needs password_file (or password)"
                            ),
                        );
                        None
                    }
                };
                password.map(|pw| Credentials::new(user, pw))
            } else {
                if t.username.is_some() || t.password.is_some() || t.password_file.is_some() {
                    p.at(
                        Some(t.name.span()),
                        format!(
                            "{what}: username/password are only used with probe = \"register\""
                        ),
                    );
                }
                None
            };
            let Some(uri) = uri else { continue };
            targets.push(TargetSettings {
                name,
                uri,
                method,
                transport,
                interval,
                timeout,
                group: t.group.as_ref().map(|g| g.get_ref().clone()),
                credentials,
                domain: t.domain.clone().or_else(|| t.realm.clone()),
                realm: t.realm.clone(),
                fail_threshold: threshold(
                    p,
                    t.fail_threshold.as_ref(),
                    &format!("{what}: fail_threshold"),
                    defaults.fail,
                ),
                ok_threshold: threshold(
                    p,
                    t.ok_threshold.as_ref(),
                    &format!("{what}: ok_threshold"),
                    defaults.ok,
                ),
                flap_window: dur(
                    p,
                    t.flap_window.as_ref(),
                    &format!("{what}: flap_window"),
                    defaults.flap_window,
                ),
                flap_max_changes: t.flap_max_changes.unwrap_or(defaults.flap_max_changes),
                expect: t.expect.clone(),
                warn_rtt: t
                    .warn_rtt
                    .as_ref()
                    .map(|s| dur(p, Some(s), &format!("{what}: warn_rtt"), Duration::ZERO)),
                crit_rtt: t
                    .crit_rtt
                    .as_ref()
                    .map(|s| dur(p, Some(s), &format!("{what}: crit_rtt"), Duration::ZERO)),
                max_forwards: t.max_forwards.unwrap_or(70),
                ca: t.ca.as_ref().map(|c| resolve(base_dir, c)),
                insecure: t.insecure,
            });
        }
        (targets, target_lines)
    }

    /// Every group's `min_up` against the targets that name it.
    fn check_group_quorums(p: &mut Problems, raw: &RawConfig) {
        for g in &raw.groups {
            let members = raw
                .targets
                .iter()
                .filter(|t| t.group.as_ref().map(|x| x.get_ref()) == Some(g.name.get_ref()))
                .count();
            if *g.min_up.get_ref() > members {
                p.at(
                    Some(g.min_up.span()),
                    format!(
                        "group {:?}: min_up = {} but it has only {members} member target(s); lower min_up or add targets with group = {:?}",
                        g.name.get_ref(),
                        g.min_up.get_ref(),
                        g.name.get_ref()
                    ),
                );
            }
        }
    }

    /// `[status] time_zone`.
    fn status_time_zone(p: &mut Problems, raw: &RawConfig) -> Option<chrono_tz::Tz> {
        let time_zone = raw
            .status
            .as_ref()
            .and_then(|s| s.time_zone.as_ref())
            .and_then(|z| match super::timefmt::parse_zone(z.get_ref()) {
                Ok(tz) => Some(tz),
                Err(e) => {
                    p.at(Some(z.span()), format!("[status] {e}"));
                    None
                }
            });
        time_zone
    }

    /// `[[maintenance]]` windows, naming defined targets and groups.
    fn maintenance_sections(
        p: &mut Problems,
        raw: &RawConfig,
        target_lines: &HashMap<String, usize>,
        group_lines: &HashMap<String, usize>,
    ) -> Vec<MaintenanceWindow> {
        let mut maintenance = Vec::new();
        for m in &raw.maintenance {
            let calendar = match Calendar::parse(m.schedule.get_ref()) {
                Ok(c) => Some(c),
                Err(e) => {
                    p.at(Some(m.schedule.span()), format!("maintenance: {e}"));
                    None
                }
            };
            let duration = dur(
                p,
                Some(&m.duration),
                "maintenance: duration",
                Duration::ZERO,
            );
            for t in &m.targets {
                if !target_lines.contains_key(t.get_ref()) {
                    p.at(
                        Some(t.span()),
                        format!("maintenance: target {:?} is not defined", t.get_ref()),
                    );
                }
            }
            for g in &m.groups {
                if !group_lines.contains_key(g.get_ref()) {
                    p.at(
                        Some(g.span()),
                        format!("maintenance: group {:?} is not defined", g.get_ref()),
                    );
                }
            }
            if m.targets.is_empty() && m.groups.is_empty() {
                p.at(Some(m.schedule.span()), "maintenance: name the targets and/or groups it covers (targets = [...], groups = [...])");
            }
            if let Some(calendar) = calendar {
                maintenance.push(MaintenanceWindow {
                    calendar,
                    duration,
                    targets: m.targets.iter().map(|t| t.get_ref().clone()).collect(),
                    groups: m.groups.iter().map(|g| g.get_ref().clone()).collect(),
                });
            }
        }
        maintenance
    }

    /// `[alerting]`: receivers, control API and the outbox (never the store's file).
    fn alerting_section(
        p: &mut Problems,
        raw: &RawConfig,
        source: &str,
        base_dir: &Path,
        store_path: &Path,
    ) -> sipwatch_alerting::AlertingConfig {
        let alerting_span = crate::config_error::table_span(source, "alerting");
        let mut alerting = raw.alerting.clone().unwrap_or_default();
        if let Some(file) = &alerting.api_token_file {
            alerting.api_token_file = Some(base_dir.join(file));
        }
        if let Err(e) = sipwatch_alerting::build(&alerting.receiver) {
            for line in e.to_string().lines() {
                p.at(alerting_span.clone(), format!("[alerting]: {line}"));
            }
        }
        for problem in alerting.control_problems() {
            p.at(alerting_span.clone(), problem);
        }
        if let Some(outbox) = &alerting.outbox {
            if outbox == store_path {
                p.at(
                    alerting_span.clone(),
                    format!(
                        "[alerting] outbox {} is the [store] path too; they must be two files \
                         (leave outbox out to use {})",
                        outbox.display(),
                        derived_outbox_path(store_path).display()
                    ),
                );
            }
        }
        alerting
    }

    /// `[agents] token_file`.
    fn agents_section(
        p: &mut Problems,
        raw: &RawConfig,
        base_dir: &Path,
    ) -> Option<sipwatch_alerting::Secret> {
        let agent_token = match &raw.agents {
            Some(a) => {
                let path = resolve(base_dir, a.token_file.get_ref());
                match sipwatch_alerting::Secret::from_file(&path) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        p.at(
                            Some(a.token_file.span()),
                            format!("[agents] token_file: {e}"),
                        );
                        None
                    }
                }
            }
            None => None,
        };
        agent_token
    }
}

/// `[defaults]`, checked: what a target without its own setting gets.
#[derive(Clone, Copy, Debug)]
struct Defaults {
    interval: Duration,
    timeout: Duration,
    fail: u32,
    ok: u32,
    flap_window: Duration,
    flap_max_changes: u32,
}

impl DaemonConfig {
    /// The outbox of a daemon config: `[alerting] outbox`, or derived from the store's file name
    /// (`/var/lib/sipwatch/state.db` -> `/var/lib/sipwatch/state.outbox.db`), so two daemons
    /// whose stores share a folder never share an outbox.
    pub fn outbox_path(&self) -> PathBuf {
        self.alerting
            .outbox
            .clone()
            .unwrap_or_else(|| derived_outbox_path(&self.store_path))
    }
}

/// `DIR/STEM.outbox.db` for the store `DIR/STEM.EXT`.
pub fn derived_outbox_path(store: &Path) -> PathBuf {
    let stem = store
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sipwatch".into());
    store
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("{stem}.outbox.db"))
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

fn dur(p: &mut Problems, v: Option<&Spanned<String>>, what: &str, default: Duration) -> Duration {
    match v {
        None => default,
        Some(s) => match parse_duration(s.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                p.at(Some(s.span()), format!("{what}: {e}"));
                default
            }
        },
    }
}

fn threshold(p: &mut Problems, v: Option<&Spanned<u32>>, what: &str, default: u32) -> u32 {
    match v {
        None => default,
        Some(s) if *s.get_ref() == 0 => {
            p.at(Some(s.span()), format!("{what} must be at least 1"));
            default
        }
        Some(s) => *s.get_ref(),
    }
}

fn positive(p: &mut Problems, v: Option<&Spanned<usize>>, what: &str, default: usize) -> usize {
    match v {
        None => default,
        Some(s) if *s.get_ref() == 0 => {
            p.at(Some(s.span()), format!("{what} must be at least 1"));
            default
        }
        Some(s) => *s.get_ref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> Result<DaemonConfig, String> {
        DaemonConfig::from_source(Path::new("sipwatch.toml"), src).map_err(|e| e.to_string())
    }

    #[test]
    fn alerting_errors_name_the_alerting_line() {
        let src = format!(
            "{GOOD}\n[[alerting.receiver]]\nname = \"x\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\
             [[alerting.receiver]]\nname = \"x\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n"
        );
        let header = GOOD.lines().count() + 2;
        let e = load(&src).unwrap_err();
        assert!(
            e.contains(&format!("sipwatch.toml:{header}:")) && e.contains("[alerting]"),
            "{e}"
        );
    }

    const GOOD: &str = r#"
[http]
listen = "127.0.0.1:9090"
[store]
path = "/tmp/x.db"
[[target]]
name = "edge-1"
uri = "sip:127.0.0.1:5060"
group = "edges"
[[target]]
name = "edge-2"
uri = "sip:127.0.0.2:5060"
group = "edges"
interval = "2s"
timeout = "1s"
[[group]]
name = "edges"
min_up = 1
[[maintenance]]
schedule = "Tue,Fri 03:00"
duration = "30m"
groups = ["edges"]
"#;

    #[test]
    fn a_target_may_override_the_flap_settings_and_the_listen_default_is_8479() {
        let src = GOOD
            .replace("[http]\nlisten = \"127.0.0.1:9090\"\n", "")
            .replace(
                "interval = \"2s\"",
                "interval = \"2s\"\nflap_window = \"30m\"\nflap_max_changes = 8",
            );
        let c = load(&src).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8479");
        assert_eq!(c.targets[0].flap_window, Duration::from_secs(600));
        assert_eq!(c.targets[0].flap_max_changes, 4);
        assert_eq!(c.targets[1].flap_window, Duration::from_secs(1800));
        assert_eq!(c.targets[1].flap_max_changes, 8);
        let e = load(&GOOD.replace(
            "interval = \"2s\"",
            "interval = \"2s\"\nflap_window = \"x\"",
        ))
        .unwrap_err();
        assert!(e.contains("target \"edge-2\": flap_window"), "{e}");
    }

    #[test]
    fn a_good_config_loads_with_defaults() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.targets[0].interval, Duration::from_secs(10));
        assert_eq!(c.targets[1].interval, Duration::from_secs(2));
        assert_eq!(c.targets[0].fail_threshold, 3);
        assert_eq!(c.targets[0].ok_threshold, 2);
        assert_eq!(c.groups[0].min_up, 1);
        assert_eq!(c.maintenance.len(), 1);
    }

    #[test]
    fn each_problem_is_named_with_its_line() {
        let e = load(&GOOD.replace("interval = \"2s\"", "interval = \"5\"")).unwrap_err();
        assert!(e.contains("sipwatch.toml:14:12: target \"edge-2\": interval: duration \"5\" has no unit; write \"5s\""), "{e}");

        let e = load(&GOOD.replace("group = \"edges\"\ninterval", "colour = \"red\"\ninterval"))
            .unwrap_err();
        assert!(
            e.contains("sipwatch.toml:13:1: unknown field `colour`"),
            "{e}"
        );

        let e = load(&GOOD.replace("name = \"edge-2\"", "name = \"edge-1\"")).unwrap_err();
        assert!(
            e.contains("duplicate target \"edge-1\" (first defined at line 7)"),
            "{e}"
        );

        let e = load(&GOOD.replace("min_up = 1", "min_up = 3")).unwrap_err();
        assert!(
            e.contains("group \"edges\": min_up = 3 but it has only 2 member target(s)"),
            "{e}"
        );

        let e = load(&GOOD.replace(
            "group = \"edges\"\n[[target]]",
            "group = \"edgez\"\n[[target]]",
        ))
        .unwrap_err();
        assert!(e.contains("group \"edgez\" is not defined"), "{e}");
    }

    #[test]
    fn all_problems_at_once() {
        let bad = GOOD
            .replace("interval = \"2s\"", "interval = \"2\"")
            .replace("min_up = 1", "min_up = 5")
            .replace("Tue,Fri 03:00", "Someday");
        let e = load(&bad).unwrap_err();
        assert_eq!(e.lines().count(), 3, "{e}");
    }

    #[test]
    fn register_targets_need_credentials() {
        let e = load(&GOOD.replace(
            "group = \"edges\"\ninterval",
            "probe = \"register\"\ngroup = \"edges\"\ninterval",
        ))
        .unwrap_err();
        assert!(e.contains("needs username"), "{e}");
    }
}
