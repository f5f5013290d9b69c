//! One file per receiver kind; each implements [`crate::Notifier`] and nothing else.
//!
//! `http` is the shared plumbing of the HTTP kinds (client, status classification, scrubbing).
//! Building from config and reading secret files happens in each kind's `from_config`, called by
//! [`crate::receivers::build`].

pub mod alertmanager;
pub mod email;
pub mod opsgenie;
pub mod pagerduty;
pub mod slack;
pub mod teams;
pub mod webhook;

mod http;

/// The webhook URL of a chat receiver: `url_file` (preferred) or inline `url`.
pub(crate) fn chat_url(
    config: &crate::config::ChatConfig,
    problems: &mut crate::problems::ReceiverCheck,
) -> Option<(reqwest::Url, crate::Secret)> {
    let secret = match (&config.url, &config.url_file) {
        (Some(url), None) => Some(url.clone()),
        (None, Some(path)) => problems.check("url_file", crate::Secret::from_file(path)),
        (Some(_), Some(_)) => {
            problems.add("url", "give url or url_file, not both");
            None
        }
        (None, None) => {
            problems.add(
                "url_file",
                "is missing; put the incoming-webhook URL in a file and set url_file = \"/etc/sipwatch/chat.url\"",
            );
            None
        }
    }?;
    let url = problems.check("url", http::parse_url(secret.expose()))?;
    Some((url, secret))
}

/// Everything of a chat webhook URL a server might echo back in an error: the whole URL,
/// every long path segment (Slack's `T000/B000/XXXX` token parts) and every query value
/// (Teams' `sig=`). All are scrubbed from errors and logs.
pub(crate) fn url_secrets(url: &reqwest::Url, whole: &crate::Secret) -> Vec<crate::Secret> {
    let mut secrets = vec![whole.clone()];
    if let Some(segments) = url.path_segments() {
        secrets.extend(segments.filter(|s| s.len() >= 8).map(crate::Secret::new));
    }
    secrets.extend(
        url.query_pairs()
            .filter(|(_, v)| v.len() >= 8)
            .map(|(_, v)| crate::Secret::new(v.into_owned())),
    );
    secrets
}

pub use alertmanager::AlertmanagerNotifier;
pub use email::EmailNotifier;
pub use opsgenie::OpsgenieNotifier;
pub use pagerduty::PagerDutyNotifier;
pub use slack::SlackNotifier;
pub use teams::TeamsNotifier;
pub use webhook::WebhookNotifier;
