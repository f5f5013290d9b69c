//! `[service.restart]` of the agent config: the restart policy of one service, as written
//! ([`RawRestart`], read by serde inside the agent's config) and as checked ([`RestartConfig`]).
//!
//! Validation reports every problem with the span of the value, for the agent config to place in
//! the file; it needs the service's gauge names (thresholds, `on_log`, `until` and `memory_drop`
//! name gauges). This module reads no file and touches no process.

use std::ops::Range;
use std::time::Duration;

use chrono_tz::Tz;
use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::schedule::{host_zone, Schedule, Window, Windows};
use crate::agent::units::{ConfigDuration, Quantity};

/// One string or a list of strings.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A JSON-RPC call over HTTP (e.g. Kamailio's `dispatcher.set_state` on the balancer).
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RpcCall {
    pub url: String,
    pub method: String,
    #[serde(default)]
    pub params: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestart {
    schedule: Option<Spanned<OneOrMany>>,
    threshold: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    on_leak: bool,
    margin: Option<ConfigDuration>,
    emergency_horizon: Option<ConfigDuration>,
    on_log: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    on_probe_failure: bool,
    target: Option<String>,
    windows: Option<Spanned<Vec<String>>>,
    cooldown: Option<ConfigDuration>,
    max_restarts: Option<Spanned<String>>,
    #[serde(default)]
    dry_run: bool,
    method: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
    timeout: Option<ConfigDuration>,
    signal: Option<Spanned<String>>,
    lease_ttl: Option<ConfigDuration>,
    drain: Option<Spanned<RawDrain>>,
    verify: Option<Spanned<RawVerify>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrain {
    command: Option<Vec<String>>,
    rpc: Option<RpcCall>,
    until: Option<Spanned<String>>,
    max_wait: Option<ConfigDuration>,
    on_drain_timeout: Option<Spanned<String>>,
    undrain_command: Option<Vec<String>>,
    undrain_rpc: Option<RpcCall>,
    timeout: Option<ConfigDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    uri: Option<Spanned<String>>,
    /// `options` (default) or `register` (with digest: `username`, `password_file`, `domain`).
    probe: Option<Spanned<String>>,
    username: Option<String>,
    password_file: Option<Spanned<std::path::PathBuf>>,
    domain: Option<String>,
    within: Option<ConfigDuration>,
    memory_drop: Option<Spanned<String>>,
    gauge: Option<Spanned<String>>,
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Lt => a < b,
            Op::Le => a <= b,
        }
    }
}

/// A value in the gauge's unit, or a share of its limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Level {
    Absolute(f64),
    PercentOfLimit(f64),
}

impl Level {
    /// The level for a gauge with this limit (None: a percentage without a known limit).
    pub fn resolve(self, limit: Option<f64>) -> Option<f64> {
        match self {
            Level::Absolute(v) => Some(v),
            Level::PercentOfLimit(p) => limit.map(|l| l * p / 100.0),
        }
    }
}

/// `GAUGE OP VALUE [for DURATION]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub source: String,
    pub gauge: String,
    pub op: Op,
    pub level: Level,
    pub hold: Duration,
}

impl Condition {
    /// Parses `"pss > 1.5GiB for 5m"`, `"kamailio_shm > 85% for 2m"`, `"active_dialogs <= 0"`.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let fix = "write it like \"kamailio_shm > 85% for 2m\" or \"pss > 1.5GiB for 5m\"";
        let (cond, hold) = match text.split_once(" for ") {
            Some((c, d)) => (
                c,
                ConfigDuration::parse(d.trim())
                    .map_err(|e| format!("condition {text:?}: {e}"))?
                    .get(),
            ),
            None => (text, Duration::ZERO),
        };
        let ops = [(">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt)];
        let (at, len, op) = ops
            .iter()
            .filter_map(|(s, op)| cond.find(s).map(|i| (i, s.len(), *op)))
            .min_by_key(|(i, len, _)| (*i, usize::MAX - len))
            .ok_or_else(|| format!("condition {text:?} has no comparison (>, >=, <, <=); {fix}"))?;
        let gauge = cond[..at].trim();
        let value = cond[at + len..].trim();
        if gauge.is_empty() || value.is_empty() {
            return Err(format!(
                "condition {text:?} needs a gauge and a value; {fix}"
            ));
        }
        let level = match value.strip_suffix('%') {
            Some(p) => Level::PercentOfLimit(p.trim().parse::<f64>().map_err(|_| {
                format!("condition {text:?}: {value:?} is not a percentage; {fix}")
            })?),
            None => Level::Absolute(
                value
                    .parse::<f64>()
                    .or_else(|_| Quantity::parse(value).map(|q| q.0))
                    .map_err(|e| format!("condition {text:?}: {e}"))?,
            ),
        };
        Ok(Condition {
            source: text.trim().to_owned(),
            gauge: gauge.to_owned(),
            op,
            level,
            hold,
        })
    }
}

/// `max_restarts = "N per DURATION"`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cap {
    pub count: usize,
    pub per: Duration,
}

impl Cap {
    pub fn parse(text: &str) -> Result<Cap, String> {
        let fix = "write it like \"3 per 1d\"";
        let (n, d) = text
            .split_once(" per ")
            .ok_or_else(|| format!("max_restarts {text:?}: {fix}"))?;
        let count: usize = n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!("max_restarts {text:?}: {n:?} is not a positive count; {fix}")
        })?;
        let per = ConfigDuration::parse(d.trim())
            .map_err(|e| format!("max_restarts {text:?}: {e}"))?
            .get();
        Ok(Cap { count, per })
    }
}

/// How the service is restarted.
#[derive(Clone, Debug, PartialEq)]
pub enum Method {
    /// `org.freedesktop.systemd1.Manager.RestartUnit(unit, "replace")` over D-Bus.
    Systemd { unit: String },
    /// A program run without a shell, killed after `timeout`.
    Command {
        argv: Vec<String>,
        timeout: Duration,
    },
    /// A signal to the main process; a supervisor brings it back.
    Signal { signal: i32, name: String },
}

/// What to do when draining does not finish within `max_wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainTimeout {
    Restart,
    GiveUp,
}

/// An action: a program, or a JSON-RPC call.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Command(Vec<String>),
    Rpc(RpcCall),
}

/// `[service.restart.drain]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DrainConfig {
    pub action: Option<Action>,
    pub until: Option<Condition>,
    pub max_wait: Duration,
    pub on_timeout: DrainTimeout,
    pub undrain: Option<Action>,
    pub timeout: Duration,
}

/// REGISTER credentials for the verification probe (the password redacted in Debug).
#[derive(Clone, Debug, PartialEq)]
pub struct RegisterAs {
    pub username: String,
    pub password: sipwatch_alerting::Secret,
    pub domain: Option<String>,
}

/// `[service.restart.verify]`.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyConfig {
    pub uri: Option<String>,
    /// Verify by REGISTER with digest instead of OPTIONS.
    pub register: Option<RegisterAs>,
    pub within: Duration,
    pub memory_drop: Option<Level>,
    pub gauge: Option<String>,
}

/// A service's checked restart policy.
#[derive(Clone, Debug)]
pub struct RestartConfig {
    pub schedule: Vec<Schedule>,
    pub thresholds: Vec<Condition>,
    pub on_leak: bool,
    pub margin: Duration,
    pub emergency_horizon: Duration,
    /// Names of log gauges, and patterns matched against their lines.
    pub on_log_gauges: Vec<String>,
    pub on_log_patterns: Vec<Regex>,
    pub on_probe_failure: bool,
    pub target: Option<String>,
    pub windows: Windows,
    pub cooldown: Duration,
    pub cap: Option<Cap>,
    pub dry_run: bool,
    pub method: Method,
    pub lease_ttl: Duration,
    pub drain: Option<DrainConfig>,
    pub verify: VerifyConfig,
}

/// The signals a `signal` method may send.
const SIGNALS: [(&str, i32); 6] = [
    ("TERM", libc::SIGTERM),
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
];

fn action(
    command: Option<Vec<String>>,
    rpc: Option<RpcCall>,
    what: &str,
    span: &Range<usize>,
    errors: &mut Vec<(Range<usize>, String)>,
) -> Option<Action> {
    match (command, rpc) {
        (Some(_), Some(_)) => {
            errors.push((
                span.clone(),
                format!("[service.restart.drain] sets both {what}command and {what}rpc; keep one"),
            ));
            None
        }
        (Some(argv), None) if argv.is_empty() => {
            errors.push((span.clone(), format!("{what}command is empty; write the program and its arguments, e.g. [\"/usr/local/bin/drain\", \"fe-2\"]")));
            None
        }
        (Some(argv), None) => Some(Action::Command(argv)),
        (None, Some(rpc))
            if !(rpc.url.starts_with("http://") || rpc.url.starts_with("https://")) =>
        {
            errors.push((
                span.clone(),
                format!(
                    "{what}rpc url = {:?} must start with http:// or https://",
                    rpc.url
                ),
            ));
            None
        }
        (None, Some(rpc)) => Some(Action::Rpc(rpc)),
        (None, None) => None,
    }
}

/// Checks a raw policy; `unit` is the service's systemd unit (for `method = "systemd"`),
/// `gauges` its gauge names; problems are pushed with their spans.
pub fn validate(
    raw: RawRestart,
    span: Range<usize>,
    service: &str,
    unit: Option<&str>,
    gauges: &[String],
    errors: &mut Vec<(Range<usize>, String)>,
) -> Option<RestartConfig> {
    let before = errors.len();
    let zone: Tz = host_zone();
    let known = |g: &str| gauges.iter().any(|n| n == g);
    let mut schedule = Vec::new();
    if let Some(s) = &raw.schedule {
        for item in s.get_ref().items() {
            match Schedule::parse(&item, zone) {
                Ok(x) => schedule.push(x),
                Err(e) => errors.push((s.span(), e)),
            }
        }
    }
    let mut thresholds = Vec::new();
    if let Some(t) = &raw.threshold {
        for item in t.get_ref().items() {
            match Condition::parse(&item) {
                Ok(c) if !known(&c.gauge) => errors.push((
                    t.span(),
                    format!(
                        "threshold {item:?}: service \"{service}\" has no gauge \"{}\"; its gauges are {}",
                        c.gauge,
                        gauges.join(", ")
                    ),
                )),
                Ok(c) => thresholds.push(c),
                Err(e) => errors.push((t.span(), e)),
            }
        }
    }
    let (mut on_log_gauges, mut on_log_patterns) = (Vec::new(), Vec::new());
    if let Some(list) = &raw.on_log {
        for item in list.get_ref() {
            if known(item) {
                on_log_gauges.push(item.clone());
            } else {
                match Regex::new(item) {
                    Ok(re) => on_log_patterns.push(re),
                    Err(e) => errors.push((list.span(), format!("on_log {item:?} is neither a gauge of \"{service}\" nor a valid regex: {}", e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")))),
                }
            }
        }
    }
    let mut windows = Vec::new();
    if let Some(w) = &raw.windows {
        for item in w.get_ref() {
            match Window::parse(item, zone) {
                Ok(x) => windows.push(x),
                Err(e) => errors.push((w.span(), e)),
            }
        }
    }
    let cap = raw.max_restarts.as_ref().and_then(|m| {
        Cap::parse(m.get_ref())
            .map_err(|e| errors.push((m.span(), e)))
            .ok()
    });
    if raw.on_probe_failure && raw.target.is_none() {
        errors.push((span.clone(), "on_probe_failure = true needs target = \"NAME\" (the daemon target that stands for this service)".to_owned()));
    }
    let timeout = raw
        .timeout
        .map_or(Duration::from_secs(90), ConfigDuration::get);
    let method_name = raw
        .method
        .as_ref()
        .map(|m| m.get_ref().clone())
        .unwrap_or_else(|| if unit.is_some() { "systemd" } else { "command" }.to_owned());
    let method_span = raw.method.as_ref().map_or(span.clone(), |m| m.span());
    let method = match method_name.as_str() {
        "systemd" => match unit {
            Some(u) => Some(Method::Systemd { unit: u.to_owned() }),
            None => {
                errors.push((method_span, format!("method = \"systemd\" needs the service to be found by systemd_unit = \"NAME.service\"; service \"{service}\" is not: use method = \"command\" or \"signal\"")));
                None
            }
        },
        "command" => match &raw.command {
            Some(c) if !c.get_ref().is_empty() => Some(Method::Command {
                argv: c.get_ref().clone(),
                timeout,
            }),
            Some(c) => {
                errors.push((c.span(), "command is empty; write the program and its arguments, e.g. [\"/usr/sbin/kamctl\", \"restart\"]".to_owned()));
                None
            }
            None => {
                errors.push((method_span, "method = \"command\" needs command = [\"PROGRAM\", \"ARG\", ...] (run without a shell)".to_owned()));
                None
            }
        },
        "signal" => {
            let name = raw.signal.as_ref().map_or("TERM".to_owned(), |s| {
                s.get_ref().trim_start_matches("SIG").to_ascii_uppercase()
            });
            match SIGNALS.iter().find(|(n, _)| *n == name) {
                Some((n, sig)) => Some(Method::Signal {
                    signal: *sig,
                    name: (*n).to_owned(),
                }),
                None => {
                    errors.push((
                        raw.signal.as_ref().map_or(method_span, |s| s.span()),
                        format!("signal = {name:?} is not one of TERM, HUP, INT, QUIT, USR1, USR2"),
                    ));
                    None
                }
            }
        }
        other => {
            errors.push((method_span, format!("method = \"{other}\" is not a restart method; use \"systemd\", \"command\" or \"signal\"")));
            None
        }
    };
    let drain = raw.drain.map(|d| {
        let span = d.span();
        let d = d.into_inner();
        let until = d.until.as_ref().and_then(|u| match Condition::parse(u.get_ref()) {
            Ok(c) if !known(&c.gauge) => {
                errors.push((u.span(), format!("until {:?}: service \"{service}\" has no gauge \"{}\"; add it as a [[service.gauge]] (e.g. kind = \"http_json\")", u.get_ref(), c.gauge)));
                None
            }
            Ok(c) => Some(c),
            Err(e) => {
                errors.push((u.span(), e));
                None
            }
        });
        let on_timeout = match d.on_drain_timeout.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("restart") => DrainTimeout::Restart,
            Some("give_up") => DrainTimeout::GiveUp,
            Some(other) => {
                if let Some(s) = &d.on_drain_timeout {
                    errors.push((s.span(), format!("on_drain_timeout = {other:?}: use \"restart\" (restart anyway) or \"give_up\"")));
                }
                DrainTimeout::Restart
            }
        };
        DrainConfig {
            action: action(d.command, d.rpc, "", &span, errors),
            undrain: action(d.undrain_command, d.undrain_rpc, "undrain_", &span, errors),
            until,
            max_wait: d.max_wait.map_or(Duration::from_secs(300), ConfigDuration::get),
            on_timeout,
            timeout: d.timeout.map_or(Duration::from_secs(30), ConfigDuration::get),
        }
    });
    let verify = match raw.verify {
        None => VerifyConfig {
            uri: None,
            register: None,
            within: Duration::from_secs(60),
            memory_drop: None,
            gauge: None,
        },
        Some(v) => {
            let v = v.into_inner();
            let uri =
                v.uri.as_ref().and_then(|u| {
                    match sipwatch_probes::message::TargetUri::parse(u.get_ref()) {
                        Ok(_) => Some(u.get_ref().clone()),
                        Err(e) => {
                            errors.push((
                                u.span(),
                                format!(
                                    "verify uri {:?}: {e}; write e.g. \"sip:127.0.0.1:5060\"",
                                    u.get_ref()
                                ),
                            ));
                            None
                        }
                    }
                });
            let memory_drop = v.memory_drop.as_ref().and_then(|m| {
                let text = m.get_ref().trim();
                let parsed = match text.strip_suffix('%') {
                    Some(p) => p
                        .trim()
                        .parse::<f64>()
                        .map(Level::PercentOfLimit)
                        .map_err(|_| format!("memory_drop {text:?} is not a percentage")),
                    None => Quantity::parse(text).map(|q| Level::Absolute(q.0)),
                };
                parsed
                    .map_err(|e| {
                        errors.push((
                            m.span(),
                            format!("{e}; write e.g. \"30%\" (of the value before) or \"200MiB\""),
                        ))
                    })
                    .ok()
            });
            let gauge = v.gauge.as_ref().and_then(|g| {
                if known(g.get_ref()) {
                    Some(g.get_ref().clone())
                } else {
                    errors.push((g.span(), format!("verify gauge {:?}: service \"{service}\" has no such gauge; its gauges are {}", g.get_ref(), gauges.join(", "))));
                    None
                }
            });
            let register = match v.probe.as_ref().map(|p| p.get_ref().as_str()) {
                None | Some("options") => None,
                Some("register") => match (&v.username, &v.password_file) {
                    (Some(user), Some(file)) => {
                        match sipwatch_alerting::Secret::from_file(file.get_ref()) {
                            Ok(password) => Some(RegisterAs {
                                username: user.clone(),
                                password,
                                domain: v.domain.clone(),
                            }),
                            Err(e) => {
                                errors.push((file.span(), format!("verify password_file: {e}")));
                                None
                            }
                        }
                    }
                    _ => {
                        errors.push((
                            v.probe.as_ref().map_or(span.clone(), |p| p.span()),
                            "verify probe = \"register\" needs username = \"...\" and password_file = \"/etc/sipwatch/verify.pw\"".to_owned(),
                        ));
                        None
                    }
                },
                Some(other) => {
                    if let Some(p) = &v.probe {
                        errors.push((
                            p.span(),
                            format!("verify probe = {other:?}: use \"options\" or \"register\""),
                        ));
                    }
                    None
                }
            };
            VerifyConfig {
                uri,
                register,
                within: v
                    .within
                    .map_or(Duration::from_secs(60), ConfigDuration::get),
                memory_drop,
                gauge: gauge.or_else(|| memory_drop.and(gauges.first().cloned())),
            }
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(RestartConfig {
        schedule,
        thresholds,
        on_leak: raw.on_leak,
        margin: raw
            .margin
            .map_or(Duration::from_secs(3600), ConfigDuration::get),
        emergency_horizon: raw
            .emergency_horizon
            .map_or(Duration::from_secs(2 * 3600), ConfigDuration::get),
        on_log_gauges,
        on_log_patterns,
        on_probe_failure: raw.on_probe_failure,
        target: raw.target,
        windows: Windows(windows),
        cooldown: raw
            .cooldown
            .map_or(Duration::from_secs(3600), ConfigDuration::get),
        cap,
        dry_run: raw.dry_run,
        method: method?,
        lease_ttl: raw
            .lease_ttl
            .map_or(Duration::from_secs(600), ConfigDuration::get),
        drain,
        verify,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions() {
        let c = Condition::parse("kamailio_shm > 85% for 2m").unwrap();
        assert_eq!(c.gauge, "kamailio_shm");
        assert_eq!(c.op, Op::Gt);
        assert_eq!(c.level, Level::PercentOfLimit(85.0));
        assert_eq!(c.hold, Duration::from_secs(120));
        let c = Condition::parse("pss >= 1.5GiB for 5m").unwrap();
        assert_eq!(c.op, Op::Ge);
        assert_eq!(c.level, Level::Absolute(1.5 * 1024.0 * 1024.0 * 1024.0));
        let c = Condition::parse("active_dialogs <= 0").unwrap();
        assert_eq!((c.op, c.hold), (Op::Le, Duration::ZERO));
        assert!(Condition::parse("pss 5")
            .unwrap_err()
            .contains("no comparison"));
        assert!(Condition::parse("pss > 5 for 5")
            .unwrap_err()
            .contains("no unit"));
    }

    #[test]
    fn caps() {
        assert_eq!(
            Cap::parse("3 per 1d").unwrap(),
            Cap {
                count: 3,
                per: Duration::from_secs(86_400)
            }
        );
        assert!(Cap::parse("3/day").is_err());
        assert!(Cap::parse("0 per 1d").is_err());
    }
}
