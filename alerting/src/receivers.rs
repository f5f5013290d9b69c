//! From `[[alerting.receiver]]` tables to ready notifiers, with every problem reported at once.
//!
//! [`build`] checks names (present, unique), asks each kind to check its own fields and read its
//! secret files, and collects all problems into one [`ConfigError`] whose lines say which
//! receiver, which field, what is wrong and how to fix it. It opens no connection: a receiver
//! that is down at start-up is the outbox's business, not a config error.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use crate::config::ReceiverConfig;
use crate::notifier::Notifier;
use crate::notifiers::{
    AlertmanagerNotifier, EmailNotifier, OpsgenieNotifier, PagerDutyNotifier, SlackNotifier,
    TeamsNotifier, WebhookNotifier,
};

/// One thing wrong with one receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The receiver's `name` (or `#N` when it has none).
    pub receiver: String,
    pub kind: &'static str,
    /// The offending field, as written in the config.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every problem found in the receiver tables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[[alerting.receiver]] \"{}\" (kind = \"{}\"): {}: {}",
            self.receiver, self.kind, self.field, self.message
        )
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{n} problem{} in the alert receivers:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Builds one notifier per config, in order. Secrets are read here, once.
pub fn build(configs: &[ReceiverConfig]) -> Result<Vec<Arc<dyn Notifier>>, ConfigError> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut notifiers: Vec<Arc<dyn Notifier>> = Vec::new();
    for (index, config) in configs.iter().enumerate() {
        let name = config.name().trim();
        let label = if name.is_empty() {
            format!("#{}", index + 1)
        } else {
            name.to_string()
        };
        if name.is_empty() {
            problems.push(ConfigProblem {
                receiver: label.clone(),
                kind: config.kind(),
                field: "name",
                message:
                    "is empty; give every receiver a short unique name, e.g. name = \"oncall\""
                        .into(),
            });
        } else if !seen.insert(name.to_string()) {
            problems.push(ConfigProblem {
                receiver: label.clone(),
                kind: config.kind(),
                field: "name",
                message: "is used by an earlier receiver too; names must be unique because \
                          queued deliveries are kept per receiver name"
                    .into(),
            });
        }
        let built: Result<Arc<dyn Notifier>, Vec<ConfigProblem>> = match config {
            ReceiverConfig::Email(c) => EmailNotifier::from_config(c).map(|n| Arc::new(n) as _),
            ReceiverConfig::Webhook(c) => WebhookNotifier::from_config(c).map(|n| Arc::new(n) as _),
            ReceiverConfig::PagerDuty(c) => {
                PagerDutyNotifier::from_config(c).map(|n| Arc::new(n) as _)
            }
            ReceiverConfig::Opsgenie(c) => {
                OpsgenieNotifier::from_config(c).map(|n| Arc::new(n) as _)
            }
            ReceiverConfig::Alertmanager(c) => {
                AlertmanagerNotifier::from_config(c).map(|n| Arc::new(n) as _)
            }
            ReceiverConfig::Slack(c) => SlackNotifier::from_config(c).map(|n| Arc::new(n) as _),
            ReceiverConfig::Teams(c) => TeamsNotifier::from_config(c).map(|n| Arc::new(n) as _),
        };
        match built {
            Ok(notifier) => notifiers.push(notifier),
            Err(found) => problems.extend(found.into_iter().map(|mut p| {
                p.receiver = label.clone();
                p
            })),
        }
    }
    if problems.is_empty() {
        Ok(notifiers)
    } else {
        Err(ConfigError { problems })
    }
}

/// Collects the problems of one receiver while its kind checks its fields.
pub(crate) struct Problems {
    receiver: String,
    kind: &'static str,
    list: Vec<ConfigProblem>,
}

impl Problems {
    pub(crate) fn new(receiver: &str, kind: &'static str) -> Problems {
        Problems {
            receiver: receiver.to_string(),
            kind,
            list: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.list.push(ConfigProblem {
            receiver: self.receiver.clone(),
            kind: self.kind,
            field,
            message: message.into(),
        });
    }

    /// Keeps the `Ok` value, or records the error under `field`.
    pub(crate) fn check<T>(&mut self, field: &'static str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.add(field, message);
                None
            }
        }
    }

    /// `Ok(value)` when nothing was found wrong.
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, Vec<ConfigProblem>> {
        match value {
            Some(value) if self.list.is_empty() => Ok(value),
            Some(_) | None if !self.list.is_empty() => Err(self.list),
            _ => Err(vec![ConfigProblem {
                receiver: self.receiver,
                kind: self.kind,
                field: "kind",
                message: "could not be built (no details); please report this".into(),
            }]),
        }
    }
}
