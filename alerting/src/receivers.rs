//! From `[[alerting.receiver]]` tables to ready notifiers, with every problem reported at once.
//!
//! [`build`] checks names (present, unique), asks each kind to check its own fields and read its
//! secret files, and collects all problems into one [`ReceiverProblems`] whose lines say which
//! receiver, which field, what is wrong and how to fix it. It opens no connection: a receiver
//! that is down at start-up is the outbox's business, not a config error.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::config::ReceiverConfig;
use crate::notifier::Notifier;
use crate::notifiers::{
    AlertmanagerNotifier, EmailNotifier, OpsgenieNotifier, PagerDutyNotifier, SlackNotifier,
    TeamsNotifier, WebhookNotifier,
};
use crate::problems::{ReceiverProblem, ReceiverProblems};

/// Builds one notifier per config, in order. Secrets are read here, once.
pub fn build(configs: &[ReceiverConfig]) -> Result<Vec<Arc<dyn Notifier>>, ReceiverProblems> {
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
            problems.push(ReceiverProblem {
                receiver: label.clone(),
                kind: config.kind(),
                field: "name",
                message:
                    "is empty; give every receiver a short unique name, e.g. name = \"oncall\""
                        .into(),
            });
        } else if !seen.insert(name.to_string()) {
            problems.push(ReceiverProblem {
                receiver: label.clone(),
                kind: config.kind(),
                field: "name",
                message: "is used by an earlier receiver too; names must be unique because \
                          queued deliveries are kept per receiver name"
                    .into(),
            });
        }
        let built: Result<Arc<dyn Notifier>, Vec<ReceiverProblem>> = match config {
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
        Err(ReceiverProblems { problems })
    }
}
