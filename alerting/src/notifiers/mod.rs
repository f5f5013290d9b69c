//! One file per receiver kind; each implements [`crate::Notifier`] and nothing else.
//!
//! `http` is the shared plumbing of the HTTP kinds (client, status classification, scrubbing).
//! Building from config and reading secret files happens in each kind's `from_config`, called by
//! [`crate::receivers::build`].

pub mod alertmanager;
pub mod email;
pub mod opsgenie;
pub mod pagerduty;
pub mod webhook;

mod http;

pub use alertmanager::AlertmanagerNotifier;
pub use email::EmailNotifier;
pub use opsgenie::OpsgenieNotifier;
pub use pagerduty::PagerDutyNotifier;
pub use webhook::WebhookNotifier;
