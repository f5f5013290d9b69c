//! Receiver configuration as users write it: `[[alerting.receiver]]` tables, one per receiver.
//!
//! ```toml
//! [[alerting.receiver]]
//! kind = "pagerduty"
//! name = "oncall"
//! routing_key_file = "/etc/sipwatch/pagerduty.key"
//!
//! [[alerting.receiver]]
//! kind = "email"
//! name = "noc-mail"
//! smtp = "mail.example.net:587"
//! starttls = true
//! from = "sipwatch@example.net"
//! to = ["noc@example.net"]
//! username = "sipwatch"
//! password_file = "/etc/sipwatch/smtp.password"
//! ```
//!
//! This file only describes the shape (serde rejects unknown fields and kinds with their names);
//! checking values, reading secret files and building notifiers is [`crate::receivers::build`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::{redact_url, Secret};

/// One `[[alerting.receiver]]` table; `kind` picks the variant.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReceiverConfig {
    Email(EmailConfig),
    Webhook(WebhookConfig),
    #[serde(rename = "pagerduty")]
    PagerDuty(PagerDutyConfig),
    Opsgenie(OpsgenieConfig),
    Alertmanager(AlertmanagerConfig),
    Slack(ChatConfig),
    Teams(ChatConfig),
}

/// `kind = "email"`: mail over SMTP (plain or STARTTLS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub name: String,
    /// `"host:port"`, e.g. `"mail.example.net:587"`.
    pub smtp: String,
    pub from: String,
    pub to: Vec<String>,
    /// Upgrade the connection with STARTTLS (required, not opportunistic) before sending.
    #[serde(default)]
    pub starttls: bool,
    /// Implicit TLS from the first byte (SMTPS, usually port 465).
    #[serde(default)]
    pub tls: bool,
    /// Allow SMTP AUTH without TLS to a server that is not on loopback (the password then
    /// crosses the network in clear text). Default false: refused.
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    /// PEM file with the CA that signed the SMTP server's certificate, when it is a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
}

/// `kind = "webhook"`: POSTs the [`crate::Alert`] as JSON. `Debug` hides credentials and
/// query strings in `url` (tokens often live there).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    /// Sent as `Authorization: Bearer TOKEN`.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Shared secret for `X-Sipwatch-Signature: sha256=HEX`, an HMAC-SHA256 over
    /// `TIMESTAMP.BODY` with `TIMESTAMP` sent as `X-Sipwatch-Timestamp` (unix seconds).
    #[serde(default)]
    pub signing_secret_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
}

/// `kind = "slack"` (Slack, Mattermost, Rocket.Chat incoming webhooks: a `text` payload) and
/// `kind = "teams"` (Microsoft Teams workflow webhooks: an Adaptive Card). The webhook URL is a
/// secret (it holds the token): give it in `url_file`, or inline as `url`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatConfig {
    pub name: String,
    #[serde(default)]
    pub url: Option<Secret>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
}

impl fmt::Debug for ChatConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("url_file", &self.url_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `kind = "pagerduty"`: PagerDuty Events API v2.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    pub name: String,
    /// File holding the integration's routing key (preferred).
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    /// The routing key inline (when the config file itself is protected).
    #[serde(default)]
    pub routing_key: Option<Secret>,
    /// Default `https://events.pagerduty.com/v2/enqueue`.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
}

/// `kind = "opsgenie"`: Opsgenie Alert API v2.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsgenieConfig {
    pub name: String,
    pub api_key_file: PathBuf,
    /// Default `https://api.opsgenie.com/v2/alerts` (EU: `https://api.eu.opsgenie.com/v2/alerts`).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
}

/// `kind = "alertmanager"`: Prometheus Alertmanager API v2; several URLs for an HA cluster.
/// `Debug` hides credentials in the URLs.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    pub name: String,
    /// `"http://am1:9093"` or `["http://am1:9093", "http://am2:9093"]`; every instance is sent
    /// every alert (the cluster dedups by labels).
    pub url: OneOrMany,
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
    /// How often a firing alert is re-sent so Alertmanager keeps it active (default `"1m"`);
    /// Alertmanager resolves it by itself 4 intervals after the last re-send.
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub resend: Option<Duration>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

impl ReceiverConfig {
    /// The receiver's name, unique among receivers (outbox rows are keyed by it).
    pub fn name(&self) -> &str {
        match self {
            ReceiverConfig::Email(c) => &c.name,
            ReceiverConfig::Webhook(c) => &c.name,
            ReceiverConfig::PagerDuty(c) => &c.name,
            ReceiverConfig::Opsgenie(c) => &c.name,
            ReceiverConfig::Alertmanager(c) => &c.name,
            ReceiverConfig::Slack(c) | ReceiverConfig::Teams(c) => &c.name,
        }
    }

    /// The `kind` as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            ReceiverConfig::Email(_) => "email",
            ReceiverConfig::Webhook(_) => "webhook",
            ReceiverConfig::PagerDuty(_) => "pagerduty",
            ReceiverConfig::Opsgenie(_) => "opsgenie",
            ReceiverConfig::Alertmanager(_) => "alertmanager",
            ReceiverConfig::Slack(_) => "slack",
            ReceiverConfig::Teams(_) => "teams",
        }
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("bearer_token_file", &self.bearer_token_file)
            .field("signing_secret_file", &self.signing_secret_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl fmt::Debug for AlertmanagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.url.to_vec().iter().map(|u| redact_url(u)).collect();
        f.debug_struct("AlertmanagerConfig")
            .field("name", &self.name)
            .field("url", &urls)
            .field("timeout", &self.timeout)
            .field("resend", &self.resend)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        receiver: Vec<ReceiverConfig>,
    }

    fn parse(text: &str) -> Result<Vec<ReceiverConfig>, String> {
        serde_json::from_str::<Doc>(text)
            .map(|d| d.receiver)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_kind_parses() {
        let r = parse(
            r#"{"receiver": [
            {"kind": "email", "name": "m", "smtp": "127.0.0.1:25", "from": "a@b.c", "to": ["d@e.f"], "timeout": "5s"},
            {"kind": "webhook", "name": "w", "url": "http://x/"},
            {"kind": "pagerduty", "name": "p", "routing_key": "R"},
            {"kind": "opsgenie", "name": "o", "api_key_file": "/k"},
            {"kind": "alertmanager", "name": "a", "url": ["http://a:9093", "http://b:9093"], "resend": "30s"}
        ]}"#,
        )
        .unwrap();
        let kinds: Vec<_> = r.iter().map(|c| (c.kind(), c.name())).collect();
        assert_eq!(
            kinds,
            [
                ("email", "m"),
                ("webhook", "w"),
                ("pagerduty", "p"),
                ("opsgenie", "o"),
                ("alertmanager", "a")
            ]
        );
        match &r[0] {
            ReceiverConfig::Email(c) => assert_eq!(c.timeout, Some(Duration::from_secs(5))),
            other => panic!("{other:?}"),
        }
        match &r[4] {
            ReceiverConfig::Alertmanager(c) => assert_eq!(c.url.to_vec().len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_fields_kinds_and_unitless_durations_are_refused() {
        let err =
            parse(r#"{"receiver": [{"kind": "webhook", "name": "w", "url": "u", "uri": "x"}]}"#)
                .unwrap_err();
        assert!(err.contains("unknown field `uri`"), "{err}");
        let err = parse(r#"{"receiver": [{"kind": "pager", "name": "w"}]}"#).unwrap_err();
        assert!(err.contains("unknown variant `pager`"), "{err}");
        let err = parse(
            r#"{"receiver": [{"kind": "webhook", "name": "w", "url": "u", "timeout": "5"}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("write \"5s\""), "{err}");
    }

    #[test]
    fn inline_routing_key_is_redacted_in_debug() {
        let r = parse(
            r#"{"receiver": [{"kind": "pagerduty", "name": "p", "routing_key": "R0UT1NGKEY"}]}"#,
        )
        .unwrap();
        let shown = format!("{r:?}");
        assert!(!shown.contains("R0UT1NGKEY"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
