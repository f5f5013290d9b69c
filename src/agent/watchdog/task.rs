//! The watchdog loop of one service: every second it feeds the policy the service's latest gauges
//! (from the agent's report), the log alerts of its gauges, the daemon's view of its target and
//! the commands people dropped, polls the policy, records its decisions, and runs a restart when
//! ordered (in its own task, so pause and resume are taken while a restart runs). The policy
//! state is written to disk whenever it changes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{broadcast, oneshot, watch};

use super::audit::{self, AuditLog, RestartRecord};
use super::config::RestartConfig;
use super::executor::{Executed, Executor, ServiceView};
use super::leases::LeaseClient;
use super::policy::{Decision, DecisionKind, GaugeObs, Input, Manual, Output, RestartPolicy};
use crate::agent::clock::unix_now;
use crate::agent::events::{AgentEvent, EventSink};
use crate::agent::metrics::{DecisionLabels, RestartLabels, WatchdogMetrics};
use crate::leak::VerdictState;

/// What one service's watchdog needs.
pub struct WatchdogTask {
    pub service: String,
    pub place: String,
    pub config: RestartConfig,
    pub state_dir: PathBuf,
    pub view: ServiceView,
    pub audit: Arc<AuditLog>,
    pub sink: EventSink,
    pub logs: broadcast::Receiver<AgentEvent>,
    pub client: reqwest::Client,
    pub leases: Option<LeaseClient>,
    /// The daemon's URL, to read this service's target state (`on_probe_failure`).
    pub daemon_url: Option<String>,
    pub restarts_total: Family<RestartLabels, Counter>,
    pub metrics: WatchdogMetrics,
    /// Bumped on each loop turn (the systemd watchdog checks progress).
    pub progress: Arc<std::sync::atomic::AtomicU64>,
    /// Set while this watchdog restarts the service (the service's tick then does not count the
    /// restart as observed).
    pub restarting: Arc<std::sync::atomic::AtomicBool>,
}

fn observe(view: &ServiceView) -> Option<Vec<GaugeObs>> {
    let report = view()?;
    report.last_tick_at?;
    Some(
        report
            .gauges
            .iter()
            .map(|g| {
                let leak = g.leak_suspected
                    && g.verdict
                        .as_ref()
                        .is_some_and(|v| v.state == VerdictState::Leak);
                GaugeObs {
                    name: g.name.clone(),
                    sampled_at: g.sampled_at,
                    value: g.value,
                    limit: g.limit,
                    leak_eta: if leak {
                        g.verdict.as_ref().and_then(|v| v.eta_to_limit_secs)
                    } else {
                        None
                    },
                    slope_per_hour: if leak {
                        g.verdict.as_ref().map(|v| v.slope_per_sec * 3600.0)
                    } else {
                        None
                    },
                }
            })
            .collect(),
    )
}

async fn target_down(client: &reqwest::Client, url: &str, target: &str) -> Option<bool> {
    let v: serde_json::Value = client
        .get(format!("{url}/api/v2/components.json"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let c = v
        .get("components")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(target))?;
    let status = c.get("status")?.as_str()?;
    Some(matches!(status, "major_outage" | "partial_outage"))
}

impl WatchdogTask {
    /// A decision of the policy that restarts nothing, into the audit.
    fn record_decision(&self, now: f64, d: Decision) {
        self.record(RestartRecord::decision(
            &self.service,
            now,
            d.trigger,
            d.decision,
            &d.why,
            d.summary,
        ));
    }

    fn record(&self, record: RestartRecord) {
        self.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                service: self.service.clone(),
                decision: record.decision.as_str().to_owned(),
            })
            .inc();
        self.audit.append(record);
    }

    fn save(&self, policy: &mut RestartPolicy) {
        if policy.take_dirty() {
            if let Err(e) = audit::save_state(&self.state_dir, &self.service, policy.state()) {
                tracing::error!(service = self.service, error = %e, "cannot save the watchdog state; a deferred restart may be lost if the agent restarts");
            }
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let state = audit::load_state(&self.state_dir, &self.service);
        if let Some(p) = &state.planned {
            tracing::info!(service = self.service, at = %audit::rfc3339(p.at), trigger = p.trigger.as_str(), "a deferred restart is still planned");
        }
        let config = Arc::new(self.config.clone());
        let mut policy = RestartPolicy::new(self.config.clone(), state);
        if config.target.is_some() && self.leases.is_none() {
            tracing::error!(service = self.service, "[service.restart] target is set but the agent has no [daemon]: this service will not be restarted (no lease can be had)");
        }
        let executor = Arc::new(Executor {
            service: self.service.clone(),
            place: self.place.clone(),
            config: config.clone(),
            view: self.view.clone(),
            client: self.client.clone(),
            leases: self.leases.clone(),
            restarting: self.restarting.clone(),
        });
        let mut running: Option<oneshot::Receiver<Executed>> = None;
        let mut held_lease: Option<super::leases::Lease> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_probe_check = 0.0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|v| *v) => break,
                done = async { match running.as_mut() { Some(rx) => rx.await.ok(), None => std::future::pending().await } } => {
                    running = None;
                    let now = unix_now();
                    if let Some(mut done) = done {
                        if let Some(l) = done.held_lease.take() {
                            tracing::warn!(service = self.service, target = l.target, "restart lease kept after the failure until its TTL or `sipwatch restart resume`");
                            held_lease = Some(l);
                        }
                        self.finish(&mut policy, done, now);
                    }
                }
            }
            self.progress
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let now = unix_now();
            let mut outputs = Vec::new();
            if let Some(gauges) = observe(&self.view) {
                outputs.extend(policy.handle(now, Input::Gauges(gauges)));
            }
            loop {
                match self.logs.try_recv() {
                    Ok(AgentEvent::LogAlert {
                        service,
                        gauge,
                        line,
                        ..
                    }) if service == self.service => {
                        outputs.extend(policy.handle(now, Input::LogLine { gauge, line }));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        tracing::warn!(
                            service = self.service,
                            lost = n,
                            "watchdog fell behind on log alerts"
                        );
                    }
                    Err(_) => break,
                }
            }
            for (cmd, by) in audit::take_commands(&self.state_dir, &self.service) {
                let manual = match cmd.command.as_str() {
                    "now" => Manual::Now {
                        force: cmd.force,
                        by,
                    },
                    "pause" => Manual::Pause { by },
                    "resume" => {
                        // A person takes over: the lease kept after a failure goes back.
                        if let (Some(l), Some(c)) = (held_lease.take(), &self.leases) {
                            if let Err(e) = c.release(&l).await {
                                tracing::warn!(
                                    service = self.service,
                                    error = e,
                                    "cannot release the kept lease; it expires with its TTL"
                                );
                            }
                        }
                        Manual::Resume { by }
                    }
                    other => {
                        tracing::warn!(
                            service = self.service,
                            command = other,
                            "unknown watchdog command ignored"
                        );
                        continue;
                    }
                };
                outputs.extend(policy.handle(now, Input::Manual(manual)));
            }
            if let (true, Some(url), Some(target)) =
                (config.on_probe_failure, &self.daemon_url, &config.target)
            {
                if now - last_probe_check >= 5.0 {
                    last_probe_check = now;
                    if let Some(down) = target_down(&self.client, url, target).await {
                        outputs.extend(policy.handle(now, Input::ProbeDown(down)));
                    }
                }
            }
            if running.is_none() {
                outputs.extend(policy.poll(now));
            }
            for output in outputs {
                match output {
                    Output::Record(d) => {
                        if d.why == "resumed" && d.summary.contains("_failed") {
                            self.sink.emit(AgentEvent::RestartFailureCleared {
                                service: self.service.clone(),
                                at: now,
                                summary: d.summary.clone(),
                            });
                        }
                        self.record_decision(now, d);
                    }
                    Output::Restart(order) => {
                        tracing::warn!(
                            service = self.service,
                            trigger = order.trigger.as_str(),
                            reason = order.reason,
                            "restarting"
                        );
                        let (tx, rx) = oneshot::channel();
                        let executor = executor.clone();
                        tokio::spawn(async move {
                            let done = executor.run(&order, now).await;
                            let _ = tx.send(done);
                        });
                        running = Some(rx);
                    }
                }
            }
            let next = policy.next_scheduled(now);
            let labels = crate::agent::metrics::ServiceLabels {
                service: self.service.clone(),
            };
            match next {
                Some(t) => {
                    self.metrics.next.get_or_create(&labels).set(t);
                }
                None => {
                    self.metrics.next.remove(&labels);
                }
            }
            self.save(&mut policy);
        }
        self.save(&mut policy);
    }

    fn finish(&mut self, policy: &mut RestartPolicy, done: Executed, now: f64) {
        let outputs = policy.handle(now, done.input.clone());
        if let Some(record) = done.record {
            if record.decision == DecisionKind::Restarted {
                self.restarts_total
                    .get_or_create(&crate::agent::metrics::RestartLabels {
                        service: self.service.clone(),
                        reason: record.trigger.as_str().to_owned(),
                    })
                    .inc();
            }
            if record.decision != DecisionKind::Skipped || done.critical {
                self.sink.emit(AgentEvent::Restart {
                    service: self.service.clone(),
                    at: now,
                    summary: record.summary.clone(),
                    critical: done.critical,
                });
            }
            self.record(record);
        }
        for output in outputs {
            if let Output::Record(d) = output {
                self.record_decision(now, d);
            }
        }
        self.save(policy);
    }
}
