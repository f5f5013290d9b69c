//! sipwatch-alerting: how an alert leaves sipwatch and reaches on-call, exactly once per change.
//!
//! The daemon and the agent decide *that* something is wrong; this crate carries the news out.
//! An [`Alert`] has a deterministic `key` that every receiver uses for its own dedup (PagerDuty
//! `dedup_key`, Opsgenie `alias`, Alertmanager labels), so several daemons probing the same
//! targets never double-page. The [`Outbox`] is a durable queue in SQLite: an alert is stored
//! once per receiver before anything is sent, a re-raised alert that is already firing is
//! dropped, and pending deliveries survive a restart and a receiver outage.
//!
//! ```text
//! Alert --Outbox::enqueue--> SQLite (one delivery per receiver) --Outbox::run--> Notifier::notify
//!                                                                  \-- RetryPolicy on failure
//! ```
//!
//! Rooms:
//! - [`alert`]: the alert model (key, status, severity, labels).
//! - [`config`]: `[[alerting.receiver]]` tables as written by users.
//! - [`config_error`]: the located config errors (`file:line:col: what; fix`) of every config
//!   file of the workspace: the daemon's, the agent's, and `[alerting]` in both.
//! - [`section`]: the whole `[alerting]` section of the daemon's and the agent's config, and
//!   [`host_name`].
//! - [`receivers`]: [`build`] turns those tables into notifiers and reports every problem at once
//!   ([`problems`]: what can be wrong with a receiver table).
//! - [`secret`]: secrets read from files, redacted everywhere they could leak.
//! - [`duration`]: the workspace's one duration syntax (`"10s"`, `"1h30m"`), used by every config.
//! - [`notifier`]: the one contract every receiver kind implements, and its error classes.
//! - [`notifiers`]: one file per receiver kind (email, webhook, PagerDuty, Opsgenie, Alertmanager).
//! - [`outbox`]: the durable queue with dedup, ordering per key and counters.
//! - [`retry`]: the pure retry policy (back-off, when to give up) the outbox follows.
//! - [`matcher`]: label matchers (`severity=critical`, `group=~front.*`).
//! - [`route`]: `[[alerting.route]]`: which receivers, which grouping.
//! - [`group`]: the grouper (group_wait, group_interval, repeat_interval), sans-IO.
//! - [`inhibit`]: `[[alerting.inhibit]]` rules and the defaults.
//! - [`silence`]: silences and whether one mutes an alert now.
//! - [`test_send`]: `sipwatch alert test`: a marked test notification and its outcome.
//! - [`control`]: routing, grouping, inhibition and silences composed: alerts in,
//!   notifications out, virtual time.

pub mod alert;
pub mod config;
pub mod config_error;
pub mod control;
pub mod duration;
pub mod group;
pub mod inhibit;
pub mod matcher;
pub mod notifier;
pub mod notifiers;
pub mod outbox;
pub mod problems;
pub mod receivers;
pub mod retry;
pub mod route;
pub mod secret;
pub mod section;
pub mod silence;
pub mod test_send;

/// Implement [`Notifier`] with `#[sipwatch_alerting::async_trait]`.
pub use async_trait::async_trait;

pub use alert::{Alert, AlertStatus, Severity};
pub use config::{
    AlertmanagerConfig, EmailConfig, OpsgenieConfig, PagerDutyConfig, ReceiverConfig, WebhookConfig,
};
pub use control::{AlertControl, AlertView};
pub use group::Notification;
pub use notifier::{ErrorClass, Notifier, NotifyError};
pub use outbox::{
    DeliveryRecord, Enqueued, Outbox, OutboxError, OutboxHealth, OutboxOptions, OutboxStats,
    ReceiverStats,
};
pub use problems::{ReceiverProblem, ReceiverProblems};
pub use receivers::build;
pub use retry::RetryPolicy;
pub use secret::Secret;
pub use section::{host_name, AlertingConfig, SilenceConfig};
