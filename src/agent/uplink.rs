//! How the agent's news leaves the host: its events become alerts (rules in
//! [`super::alert_rules`]) in a
//! durable outbox under `state_dir`, delivered either to the daemon (`[daemon]`, which forwards
//! them to its receivers) or, without a daemon, straight to the agent's own `[alerting]`
//! receivers. With a daemon, a summary of every service (memory, leak verdicts, time left) is
//! also posted every `report_interval`, for the daemon's status page.
//!
//! The daemon is just one more receiver kind ([`DaemonNotifier`]): the outbox gives it the same
//! guarantees as a pager (kept across restarts and outages, retried with back-off, never
//! doubled). Reports are best effort: a lost report is replaced by the next one.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sipwatch_alerting::{Alert, Notifier, NotifyError, Outbox, OutboxOptions, Secret};
use tokio::sync::{mpsc, watch};

use super::config::{AgentConfig, DaemonLink};
use super::events::AgentEvent;
use super::report::Report;
use super::runtime::ReportHandle;
use super::summary::{AgentSummary, GaugeSummary, ServiceSummary};
use crate::leak::VerdictState;

/// Delivers alerts to a `sipwatch run` daemon (`POST /api/v1/agents/alert`, bearer token).
#[derive(Debug)]
pub struct DaemonNotifier {
    url: String,
    token: Secret,
    client: reqwest::Client,
}

impl DaemonNotifier {
    pub fn new(link: &DaemonLink) -> anyhow::Result<DaemonNotifier> {
        Ok(DaemonNotifier {
            url: link.url.clone(),
            token: link.token.clone(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }
}

#[async_trait]
impl Notifier for DaemonNotifier {
    fn name(&self) -> &str {
        "daemon"
    }

    fn kind(&self) -> &'static str {
        "sipwatch_daemon"
    }

    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        let response = self
            .client
            .post(format!("{}/api/v1/agents/alert", self.url))
            .bearer_auth(self.token.expose())
            .json(alert)
            .send()
            .await
            .map_err(|e| {
                NotifyError::retryable(self.token.scrub(&format!("daemon {}: {e}", self.url)))
            })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        if status == 401 || status == 403 {
            // Our token (or the daemon's [agents] setup) is wrong: a fix on our side, not a
            // refusal of this alert. Keep it queued, paused with back-off, until it is fixed.
            return Err(NotifyError::retryable(format!(
                "daemon {} refused this agent (HTTP {status}: {}); the alert is kept and retried: \
                 make [daemon] token_file hold the same token as the daemon's [agents] token_file",
                self.url,
                self.token.scrub(body.trim())
            )));
        }
        // 503: the daemon is up but cannot queue it yet (no receivers, stopping): keep retrying.
        Err(NotifyError::from_http_status(
            status,
            &self.token.scrub(body.trim()),
            None,
        ))
    }
}

/// A service report reduced to what the daemon's page shows.
pub fn summary_of(report: &Report) -> AgentSummary {
    AgentSummary {
        host: report.agent.host.clone(),
        received_at: report.generated_at,
        services: report
            .services
            .iter()
            .map(|s| ServiceSummary {
                name: s.name.clone(),
                up: s.up,
                processes: s.processes,
                pss_bytes: s.memory.map(|m| m.pss),
                restarts_observed: s.restarts_observed,
                gauges: s
                    .gauges
                    .iter()
                    .map(|g| GaugeSummary {
                        name: g.name.clone(),
                        unit: g.unit.clone(),
                        value: g.value,
                        limit: g.limit,
                        verdict: match g.verdict.as_ref().map(|v| v.state) {
                            Some(VerdictState::Leak) => "leak".into(),
                            Some(VerdictState::NoLeak) => "no_leak".into(),
                            Some(VerdictState::Learning) => "learning".into(),
                            None => String::new(),
                        },
                        slope_per_hour: g.verdict.as_ref().map(|v| v.slope_per_sec * 3600.0),
                        eta_seconds: g.verdict.as_ref().and_then(|v| v.eta_to_limit_secs),
                        error: g.error.clone(),
                    })
                    .collect(),
            })
            .collect(),
        restarts: report.restarts.iter().take(10).cloned().collect(),
    }
}

/// Starts the outbox, the event-to-alert bridge and (with a daemon) the report loop. Returns at
/// once; the tasks stop with `shutdown`.
pub fn start(
    config: &AgentConfig,
    mut events: mpsc::Receiver<AgentEvent>,
    reports: ReportHandle,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let notifiers: Vec<Arc<dyn Notifier>> = match &config.daemon {
        Some(link) => vec![Arc::new(DaemonNotifier::new(link)?)],
        None => sipwatch_alerting::build(&config.alerting.receiver)
            .map_err(|e| anyhow::anyhow!("[alerting]: {e}"))?,
    };
    let outbox = if notifiers.is_empty() {
        tracing::info!("no [daemon] and no [alerting] receivers: agent alerts are only logged");
        None
    } else {
        std::fs::create_dir_all(&config.state_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create state_dir {}: {e}",
                config.state_dir.display()
            )
        })?;
        let path = config
            .alerting
            .outbox
            .clone()
            .unwrap_or_else(|| config.state_dir.join("outbox.db"));
        let outbox = Outbox::open(&path, notifiers, OutboxOptions::default())
            .map_err(|e| anyhow::anyhow!("cannot open the alert outbox {}: {e}", path.display()))?;
        tokio::spawn(outbox.clone().run(shutdown.clone()));
        Some(outbox)
    };

    let host = config
        .alerting
        .source
        .clone()
        .unwrap_or_else(sipwatch_alerting::host_name);
    let url = config.alerting.url.clone();
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = stop.wait_for(|v| *v) => None,
            };
            let Some(event) = event else { break };
            let Some(mut alert) = super::alert_rules::agent_alert(&event, &host) else {
                continue;
            };
            if alert.url.is_none() {
                alert.url = url.clone();
            }
            tracing::warn!(key = %alert.key, status = ?alert.status, summary = %alert.summary, "alert");
            if let Some(outbox) = &outbox {
                if let Err(e) = outbox.enqueue(&alert) {
                    tracing::error!(key = %alert.key, error = %e, "cannot queue the alert");
                }
            }
        }
    });

    if let Some(link) = config.daemon.clone() {
        let mut stop = shutdown;
        tokio::spawn(async move {
            let client = match reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the HTTP client for daemon reports");
                    return;
                }
            };
            let mut tick = tokio::time::interval(link.report_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // What went wrong at the last report (None: it went through); logged on change.
            let mut problem: Option<&'static str> = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|v| *v) => break,
                }
                let summary = summary_of(&reports.report());
                let result = client
                    .post(format!("{}/api/v1/agents/report", link.url))
                    .bearer_auth(link.token.expose())
                    .json(&summary)
                    .send()
                    .await;
                let now = match &result {
                    Ok(r) if r.status().is_success() => None,
                    Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Some("token"),
                    Ok(_) => Some("refused"),
                    Err(_) => Some("unreachable"),
                };
                if now == problem {
                    continue;
                }
                problem = now;
                match result {
                    Ok(r) if r.status().is_success() => {
                        tracing::info!(daemon = %link.url, "reporting to the daemon again");
                    }
                    Ok(r) if now == Some("token") => {
                        tracing::error!(daemon = %link.url, status = r.status().as_u16(),
                            "the daemon refused this agent's token: reports and alerts do not \
                             reach it (alerts are kept and retried); make [daemon] token_file \
                             hold the same token as the daemon's [agents] token_file");
                    }
                    Ok(r) => {
                        tracing::warn!(daemon = %link.url, status = r.status().as_u16(), "the daemon refused the report");
                    }
                    Err(e) => {
                        tracing::warn!(daemon = %link.url, error = %link.token.scrub(&e.to_string()), "cannot reach the daemon");
                    }
                }
            }
        });
    }
    Ok(())
}
