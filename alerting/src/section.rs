//! The `[alerting]` section, shared by the daemon's and the agent's config files: where the
//! durable outbox lives, who gets told ([`ReceiverConfig`]), routes, inhibition, config silences
//! and grouping defaults. It only describes and checks the section; building notifiers is
//! [`crate::receivers::build`], composing routes and silences at run time is [`crate::control`].
//! [`host_name`] names the host in alert sources and agent keys.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ReceiverConfig;

/// `[alerting]`: where the durable outbox lives and who gets told.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// The outbox file (SQLite). Default: next to the daemon's store, or in the agent's state_dir.
    pub outbox: Option<PathBuf>,
    /// Names this daemon or agent in alerts (`source`). Default: the host name.
    pub source: Option<String>,
    /// Base URL of the status page, linked from alerts.
    pub url: Option<String>,
    #[serde(default)]
    pub receiver: Vec<ReceiverConfig>,
    /// `[[alerting.route]]` (daemon): which receivers hear about which alerts, and grouping.
    #[serde(default)]
    pub route: Vec<crate::route::RouteConfig>,
    /// `[[alerting.inhibit]]` (daemon): added to the default rules.
    #[serde(default)]
    pub inhibit: Vec<crate::inhibit::InhibitRule>,
    /// Turn the default inhibition rules off (default true: on).
    #[serde(default)]
    pub inhibit_defaults: Option<bool>,
    /// `[[alerting.silence]]` (daemon): silences written in the config.
    #[serde(default)]
    pub silence: Vec<SilenceConfig>,
    /// Default grouping of every route (each route may override it).
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub group_wait: Option<std::time::Duration>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub group_interval: Option<std::time::Duration>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub repeat_interval: Option<std::time::Duration>,
    /// Bearer token for the silences and notifications API (`/api/v1/silences`, ...).
    pub api_token_file: Option<PathBuf>,
    /// A receiver failing longer than this is reported unhealthy (default 10m).
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub unhealthy_after: Option<std::time::Duration>,
    /// A node agent that has not reported for this long raises `AgentSilent` (default 3m; agents
    /// report every 30 s by default).
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub agent_silent_after: Option<std::time::Duration>,
}

/// One `[[alerting.silence]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceConfig {
    pub matchers: Vec<crate::matcher::Matcher>,
    /// RFC 3339 (`2026-12-01T02:00:00+01:00`); default: always started.
    pub starts: Option<String>,
    /// RFC 3339.
    pub ends: String,
    #[serde(default)]
    pub comment: String,
}

impl AlertingConfig {
    /// The default grouping of routes, from `[alerting]` over the built-in defaults.
    pub fn grouping(&self) -> crate::route::Grouping {
        crate::route::GroupingConfig {
            group_by: self.group_by.clone(),
            group_wait: self.group_wait,
            group_interval: self.group_interval,
            repeat_interval: self.repeat_interval,
        }
        .over(&Default::default())
    }

    /// The routing table for these receivers.
    pub fn routes(&self) -> Result<crate::route::Routes, Vec<String>> {
        let names: Vec<String> = self.receiver.iter().map(|r| r.name().to_string()).collect();
        crate::route::Routes::new(&self.route, &names, &self.grouping())
    }

    /// Default rules (unless turned off) plus the configured ones.
    pub fn inhibit_rules(&self) -> Vec<crate::inhibit::InhibitRule> {
        let mut rules = if self.inhibit_defaults.unwrap_or(true) {
            crate::inhibit::default_rules()
        } else {
            Vec::new()
        };
        rules.extend(self.inhibit.iter().cloned());
        rules
    }

    /// The config silences, checked; every problem reported.
    pub fn silences(&self) -> Result<Vec<crate::silence::Silence>, Vec<String>> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for (i, c) in self.silence.iter().enumerate() {
            let at = format!("[[alerting.silence]] #{}", i + 1);
            let parse = |field: &str, text: &str| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| t.timestamp_millis() as f64 / 1000.0)
                    .map_err(|e| {
                        format!(
                            "{at}: {field} {text:?} is not an RFC 3339 time ({e}); write e.g. \
                             \"2026-12-01T02:00:00+01:00\""
                        )
                    })
            };
            let starts = match c.starts.as_deref().map(|t| parse("starts", t)).transpose() {
                Ok(t) => t.unwrap_or(0.0),
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            let ends = match parse("ends", &c.ends) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            let silence = crate::silence::Silence {
                id: format!("cfg-{}", i + 1),
                matchers: c.matchers.clone(),
                starts,
                ends,
                comment: c.comment.clone(),
                created_by: "config".into(),
            };
            match silence.validate() {
                Ok(()) => out.push(silence),
                Err(e) => problems.push(format!("{at}: {e}")),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }

    /// Every problem of the alert-control keys (routes, silences, api token), for
    /// `check-config` and start-up.
    pub fn control_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.routes() {
            problems.extend(e);
        }
        if let Err(e) = self.silences() {
            problems.extend(e);
        }
        if let Some(path) = &self.api_token_file {
            if let Err(e) = crate::Secret::from_file(path) {
                problems.push(format!("[alerting] api_token_file: {e}"));
            }
        }
        problems
    }
}

/// The host name, for alert sources and agent keys.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
