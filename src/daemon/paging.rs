//! Paging: the daemon's alert rules -> alert control (routes, grouping, inhibition, silences)
//! -> the durable outbox; and the delivery health people look at.
//!
//! [`Paging`] is owned by the state task, like the board. Every alert the rules raise goes in
//! through [`Paging::raise`]; the one-second tick calls [`Paging::tick`], which queues the
//! notifications the grouper says are due. Receivers that group by themselves (Alertmanager)
//! get the routed single alerts instead, as before routes existed, so an Alertmanager cluster
//! still sees identical labels from every daemon. Run-time silences are written to the state
//! store as they change. An alert raised less than `group_wait` before the daemon stops is held
//! in memory only; the outbox is durable from the moment a notification is queued.

use std::collections::BTreeSet;

use sipwatch_alerting::silence::Silence;
use sipwatch_alerting::{Alert, AlertControl, Outbox};

use super::model::{AckView, AlertStateView, AlertingView, ReceiverHealth, SilenceView, UnixTime};
use sipwatch_alerting::AlertingConfig;

/// The state task's alerting part (see the module docs).
pub struct Paging {
    control: AlertControl,
    outbox: Option<Outbox>,
    /// Receivers that get single routed alerts (Alertmanager).
    passthrough: BTreeSet<String>,
    source: String,
    url: Option<String>,
    unhealthy_after: f64,
    /// Signs one-click acknowledgement links (the API token); None: no links.
    ack_key: Option<sipwatch_alerting::Secret>,
}

/// How long a one-click acknowledgement link works.
pub const ACK_LINK_TTL: f64 = 24.0 * 3600.0;

/// The signature of an acknowledgement link for `key` expiring at `exp` (unix seconds).
pub fn ack_signature(secret: &str, key: &str, exp: u64) -> String {
    sipwatch_alerting::notifiers::webhook::signature(
        &format!("sipwatch-ack:{secret}"),
        exp,
        key.as_bytes(),
    )
}

/// Checks a link's signature (constant time) and expiry.
pub fn ack_link_valid(secret: &str, key: &str, exp: u64, sig: &str, now: UnixTime) -> bool {
    let want = ack_signature(secret, key, exp);
    let same = want.len() == sig.len()
        && want
            .bytes()
            .zip(sig.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    same && (exp as f64) >= now
}

impl Paging {
    /// Builds the control core from the config (already checked) plus stored silences.
    pub fn new(
        cfg: &AlertingConfig,
        outbox: Option<Outbox>,
        source: String,
        stored: Vec<Silence>,
    ) -> Result<Paging, String> {
        let routes = cfg.routes().map_err(|p| p.join("\n"))?;
        let mut silences = cfg.silences().map_err(|p| p.join("\n"))?;
        silences.extend(stored);
        let passthrough = cfg
            .receiver
            .iter()
            .filter(|r| r.kind() == "alertmanager")
            .map(|r| r.name().to_string())
            .collect();
        Ok(Paging {
            control: AlertControl::new(routes, cfg.inhibit_rules(), silences),
            outbox,
            passthrough,
            source,
            url: cfg.url.clone(),
            unhealthy_after: cfg
                .unhealthy_after
                .map(|d| d.as_secs_f64())
                .unwrap_or(600.0),
            ack_key: None,
        })
    }

    /// Enables one-click acknowledgement links, signed with `key`.
    pub fn with_ack_key(mut self, key: Option<sipwatch_alerting::Secret>) -> Paging {
        self.ack_key = key;
        self
    }

    /// The one-click link acknowledging `group_key`, when the status page URL and a key are
    /// known.
    fn ack_link(&self, group_key: &str, now: UnixTime) -> Option<String> {
        let secret = self.ack_key.as_ref()?;
        let base = reqwest::Url::parse(self.url.as_deref()?).ok()?;
        let mut url = base.join("ack").ok()?;
        let exp = (now + ACK_LINK_TTL) as u64;
        url.query_pairs_mut()
            .append_pair("key", group_key)
            .append_pair("exp", &exp.to_string())
            .append_pair("sig", &ack_signature(secret.expose(), group_key, exp));
        Some(url.to_string())
    }

    /// Input: someone acknowledged a notification.
    pub fn acknowledge(&mut self, key: &str, by: &str, now: UnixTime) -> Result<(), String> {
        if self.control.acknowledge(key, by, now) {
            tracing::info!(key = %key, by = %by, "notification acknowledged; escalation stops");
            Ok(())
        } else {
            Err(format!(
                "no firing notification has the key {key}; the key is in the notification \
                 (e.g. sipwatch/notify/default/group=frontends)"
            ))
        }
    }

    /// After a restart: the stored acknowledgements of groups that still fire. Returns the
    /// keys that were applied.
    pub fn restore_acks(&mut self, acks: Vec<(String, String, f64)>) -> Vec<String> {
        acks.into_iter()
            .filter(|(key, by, at)| self.control.acknowledge(key, by, *at))
            .map(|(key, _, _)| key)
            .collect()
    }

    pub fn outbox(&self) -> Option<&Outbox> {
        self.outbox.as_ref()
    }

    /// Input: an alert raised or resolved by the daemon's rules or an agent.
    pub fn raise(&mut self, now: UnixTime, mut alert: Alert) -> Result<(), String> {
        if alert.url.is_none() {
            alert.url = self.url.clone();
        }
        self.control.handle_alert(now, &alert);
        if let Some(outbox) = &self.outbox {
            let single: Vec<String> = self
                .control
                .receivers_for(&alert)
                .into_iter()
                .filter(|r| self.passthrough.contains(r))
                .collect();
            if !single.is_empty() {
                outbox
                    .enqueue_for(&alert, &single)
                    .map_err(|e| format!("cannot queue the alert: {e}"))?;
            }
        }
        Ok(())
    }

    /// After a restart: `firing` are the alerts the restored board says fire now. Groups whose
    /// notification is still open in the outbox count as notified (no second page); an open
    /// notification whose group no longer fires is resolved now.
    pub fn restore(&mut self, now: UnixTime, firing: Vec<Alert>) {
        for mut alert in firing {
            if alert.url.is_none() {
                alert.url = self.url.clone();
            }
            self.control.handle_alert(now, &alert);
        }
        let Some(outbox) = self.outbox.clone() else {
            return;
        };
        let open = match outbox.firing() {
            Ok(open) => open,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the open notifications from the outbox");
                return;
            }
        };
        for notification in open
            .into_iter()
            .filter(|a| a.key.starts_with("sipwatch/notify/"))
        {
            if self.control.restore_notified(&notification.key, now) {
                continue;
            }
            let receivers: Vec<String> = notification
                .labels
                .get("route")
                .and_then(|r| self.control.route_receivers(r))
                .unwrap_or_default()
                .into_iter()
                .filter(|r| !self.passthrough.contains(r))
                .collect();
            let mut resolved = notification.resolved_at(now);
            resolved.summary = match resolved.summary.split_once("] ") {
                Some((_, rest)) => format!("[RESOLVED] {rest}"),
                None => format!("[RESOLVED] {}", resolved.summary),
            };
            resolved.description =
                "Resolved while sipwatch was not running: nothing of this group fires any more.\n"
                    .into();
            tracing::info!(key = %resolved.key, "resolving a notification that cleared while stopped");
            if let Err(e) = outbox.enqueue_notification(&resolved, &receivers) {
                tracing::error!(key = %resolved.key, error = %e, "cannot queue the resolve");
            }
        }
    }

    /// Queues the notifications due at `now`. Returns how many were queued.
    pub fn tick(&mut self, now: UnixTime) -> usize {
        if self.control.poll_timeout().is_none_or(|t| t > now) {
            return 0;
        }
        let mut queued = 0;
        for n in self.control.poll(now) {
            let mut alert = n.to_alert(&self.source, self.url.as_deref());
            if n.status == sipwatch_alerting::AlertStatus::Firing {
                if let Some(link) = self.ack_link(&n.group_key, now) {
                    alert.description.push_str(&format!(
                        "\nAcknowledge (stops escalation): {link}\nor: sipwatch alert ack '{}'\n",
                        n.group_key
                    ));
                }
            }
            let receivers: Vec<String> = n
                .receivers
                .iter()
                .filter(|r| !self.passthrough.contains(*r))
                .cloned()
                .collect();
            tracing::warn!(key = %alert.key, status = alert.status.as_str(),
                firing = n.firing.len(), resolved = n.resolved.len(), muted = n.muted.len(),
                receivers = ?receivers, title = %alert.summary, "notification");
            if receivers.is_empty() {
                continue;
            }
            if let Some(outbox) = &self.outbox {
                match outbox.enqueue_notification(&alert, &receivers) {
                    Ok(_) => queued += 1,
                    Err(e) => {
                        tracing::error!(key = %alert.key, error = %e, "cannot queue the notification")
                    }
                }
            }
        }
        self.control.forget_expired(now);
        queued
    }

    /// Adds a run-time silence (validated). The caller stores it.
    pub fn add_silence(&mut self, silence: Silence) -> Result<Silence, String> {
        self.control.add_silence(silence.clone())?;
        tracing::info!(id = %silence.id, matchers = ?silence.matchers.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            ends = silence.ends, comment = %silence.comment, "silence added");
        Ok(silence)
    }

    /// Ends a silence now; returns it (for the store) or why not.
    pub fn expire_silence(&mut self, id: &str, now: UnixTime) -> Result<Silence, String> {
        if !self.control.expire_silence(id, now) {
            return Err(match self.control.silence(id) {
                Some(_) => format!("silence {id} has already ended"),
                None => format!("no silence has the id {id}; `sipwatch silence list` shows them"),
            });
        }
        tracing::info!(id = %id, "silence expired");
        self.control
            .silence(id)
            .cloned()
            .ok_or_else(|| format!("silence {id} vanished"))
    }

    pub fn silence_views(&self, now: UnixTime) -> Vec<SilenceView> {
        self.control
            .silences()
            .iter()
            .map(|s| SilenceView {
                id: s.id.clone(),
                matchers: s.matchers.iter().map(|m| m.to_string()).collect(),
                starts: s.starts,
                ends: s.ends,
                comment: s.comment.clone(),
                created_by: s.created_by.clone(),
                state: match s.state(now) {
                    sipwatch_alerting::silence::SilenceState::Pending => "pending",
                    sipwatch_alerting::silence::SilenceState::Active => "active",
                    sipwatch_alerting::silence::SilenceState::Expired => "expired",
                }
                .into(),
            })
            .collect()
    }

    /// Delivery health, silences and alert states for the snapshot.
    pub fn view(&self, now: UnixTime) -> AlertingView {
        let receivers = match &self.outbox {
            Some(outbox) => outbox
                .stats()
                .receivers
                .into_iter()
                .map(|r| ReceiverHealth {
                    unhealthy: r
                        .failing_since
                        .is_some_and(|since| now - since > self.unhealthy_after),
                    name: r.receiver,
                    kind: r.kind.to_string(),
                    pending: r.pending,
                    oldest_pending_seconds: r.oldest_pending_at.map(|t| (now - t).max(0.0)),
                    failing_since: r.failing_since,
                    failed: r.refused,
                })
                .collect(),
            None => Vec::new(),
        };
        AlertingView {
            receivers,
            silences: self.silence_views(now),
            alerts: self
                .control
                .alerts(now)
                .into_iter()
                .map(|v| AlertStateView {
                    key: v.alert.key,
                    summary: v.alert.summary,
                    severity: v.alert.severity.as_str().into(),
                    since: v.alert.at,
                    state: v.state.into(),
                    by: v.by,
                })
                .collect(),
            acks: self
                .control
                .acks()
                .into_iter()
                .map(|(key, by, at)| AckView { key, by, at })
                .collect(),
        }
    }
}
