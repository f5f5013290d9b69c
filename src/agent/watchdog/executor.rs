//! One restart, carried out: lease (from the daemon, when the service stands for a target) ->
//! drain (an action, then wait until a gauge condition holds or `max_wait` passes) -> restart by
//! the method -> verify (new processes, a SIP probe answering within `within`, the memory drop) ->
//! undrain -> release the lease. The lease is renewed while this runs and released only after the
//! verification passed; after a failed one the node stays drained and the lease is kept until its
//! TTL, so no second node of the group goes down meanwhile.
//!
//! The executor reads the service's state through [`ServiceView`] (the agent's latest report,
//! refreshed by the service's own tick) and decides nothing: what to do next is the policy's.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::audit::RestartRecord;
use super::config::{DrainTimeout, Level, RestartConfig};
use super::leases::LeaseClient;
use super::method;
use super::policy::{fmt_value, DecisionKind, Finished, Input, RestartOrder};
use crate::agent::report::ServiceReport;

/// The latest report of the service.
pub type ServiceView = Arc<dyn Fn() -> Option<ServiceReport> + Send + Sync>;

/// What the restart came to.
pub struct Executed {
    /// For the policy: [`Input::Finished`] or [`Input::Refused`].
    pub input: Input,
    /// For the audit (none when refused: the policy records that).
    pub record: Option<RestartRecord>,
    /// Whether the one-line alert is critical (a failed restart or verification).
    pub critical: bool,
    /// A lease kept after a failed restart (released when a person resumes, else by its TTL).
    pub held_lease: Option<super::leases::Lease>,
}

/// What the executor needs besides the policy.
pub struct Executor {
    pub service: String,
    /// Where the service runs, for people (`fe-2`, or the host name).
    pub place: String,
    pub config: Arc<RestartConfig>,
    pub view: ServiceView,
    pub client: reqwest::Client,
    pub leases: Option<LeaseClient>,
    /// Set from the restart until the verification is over.
    pub restarting: Arc<std::sync::atomic::AtomicBool>,
}

/// Clears the "restarting" flag when dropped.
struct Restarting<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Restarting<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

fn secs(d: f64) -> String {
    if d >= 90.0 {
        format!("{:.0} min", d / 60.0)
    } else {
        format!("{d:.0} s")
    }
}

fn gauge_value(report: &ServiceReport, name: &str) -> Option<(f64, Option<f64>, Option<f64>)> {
    report
        .gauges
        .iter()
        .find(|g| g.name == name)
        .and_then(|g| Some((g.value?, g.limit, g.sampled_at)))
}

/// Retry interval after a refused lease.
pub const LEASE_RETRY: f64 = 15.0;

impl Executor {
    /// Carries out `order` (started at unix time `now`).
    pub async fn run(&self, order: &RestartOrder, now: f64) -> Executed {
        let cfg = &self.config;
        let before = (self.view)();
        let old_pid = before.as_ref().and_then(|r| r.main_pid);
        let old_pids: BTreeSet<i32> = before
            .as_ref()
            .map(|r| r.pids.iter().copied().collect())
            .unwrap_or_default();
        let mut record = RestartRecord::decision(
            &self.service,
            now,
            order.trigger,
            DecisionKind::Restarted,
            "ok",
            String::new(),
        );
        record.old_pid = old_pid;
        if order.forced {
            record.forced_by = Some(order.reason.trim_start_matches("forced by ").to_owned());
        }

        // 1. The lease.
        let mut lease = None;
        if let Some(target) = &cfg.target {
            let Some(client) = &self.leases else {
                return Executed {
                    input: Input::Refused {
                        why: "no_daemon".into(),
                        retry_in: 300.0,
                    },
                    record: None,
                    critical: false,
                    held_lease: None,
                };
            };
            match client.acquire(target, &self.service, cfg.lease_ttl).await {
                Ok(l) => lease = Some(l),
                Err(refusal) => {
                    tracing::info!(
                        service = self.service,
                        target,
                        why = refusal.why,
                        reason = refusal.reason,
                        "restart lease refused"
                    );
                    return Executed {
                        input: Input::Refused {
                            why: refusal.why,
                            retry_in: LEASE_RETRY,
                        },
                        record: None,
                        critical: false,
                        held_lease: None,
                    };
                }
            }
        }
        let renewer = lease
            .as_ref()
            .zip(self.leases.as_ref())
            .map(|(l, c)| c.keep_renewed(l.clone(), cfg.lease_ttl));

        let finish = |record: RestartRecord,
                      restarted: bool,
                      verified: bool,
                      why: Option<&str>,
                      critical: bool| Executed {
            input: Input::Finished(Finished {
                restarted,
                verified,
                why: why.map(str::to_owned),
            }),
            record: Some(record),
            critical,
            held_lease: None,
        };

        // 2. Drain.
        let mut drain_note = String::new();
        if let Some(drain) = &cfg.drain {
            let started = Instant::now();
            if let Some(action) = &drain.action {
                if let Err(e) = method::run_action(&self.client, action, drain.timeout).await {
                    self.undrain().await;
                    self.release(lease.as_ref(), renewer).await;
                    record.decision = DecisionKind::Failed;
                    record.why = "drain_failed".into();
                    record.summary = format!(
                        "did not restart {} on {}: {}; draining failed: {e}",
                        self.service, self.place, order.reason
                    );
                    return finish(record, false, false, Some("drain_failed"), true);
                }
            }
            let mut drained = drain.until.is_none();
            if let Some(until) = &drain.until {
                let deadline = started + drain.max_wait;
                loop {
                    let holds = (self.view)().and_then(|r| {
                        let (v, limit, _) = gauge_value(&r, &until.gauge)?;
                        Some(until.op.holds(v, until.level.resolve(limit)?))
                    });
                    if holds == Some(true) {
                        drained = true;
                        break;
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            let took = started.elapsed().as_secs_f64();
            record.drained_seconds = Some(took);
            if drained {
                drain_note = format!("; drained in {}", secs(took));
            } else if drain.on_timeout == DrainTimeout::GiveUp {
                self.undrain().await;
                self.release(lease.as_ref(), renewer).await;
                record.decision = DecisionKind::Skipped;
                record.why = "drain_timeout".into();
                record.summary = format!(
                    "did not restart {} on {}: {}; draining did not finish within {} ({}), gave up and undrained",
                    self.service,
                    self.place,
                    order.reason,
                    secs(took),
                    drain.until.as_ref().map_or("", |u| u.source.as_str())
                );
                return finish(record, false, false, Some("drain_timeout"), false);
            } else {
                drain_note = format!(
                    "; drain not finished after {}, restarted anyway",
                    secs(took)
                );
            }
        }

        // 3. Restart.
        self.restarting
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _restarting = Restarting(&self.restarting);
        let restarted_at = Instant::now();
        let restarted_unix = crate::agent::clock::unix_now();
        if let Err(e) = method::restart(&cfg.method, old_pid).await {
            // The service may be half down: no automatic retry (the policy pauses), the lease is kept.
            if let Some(r) = renewer {
                r.abort();
            }
            record.decision = DecisionKind::Failed;
            record.why = "method_failed".into();
            record.verify = Some("failed".into());
            record.summary = format!(
                "restart of {} on {} FAILED: {}{drain_note}; {e}; automatic restarts paused until `sipwatch restart resume {}`",
                self.service, self.place, order.reason, self.service
            );
            let mut done = finish(record, true, false, Some("method_failed"), true);
            done.held_lease = lease;
            return done;
        }

        // 4. Verify.
        let deadline = restarted_at + cfg.verify.within;
        let mut failures = Vec::new();
        let mut new_pid = None;
        loop {
            if let Some(r) = (self.view)() {
                let fresh = r.up
                    && r.main_pid.is_some()
                    && r.main_pid != old_pid
                    && !r.pids.iter().any(|p| old_pids.contains(p));
                if fresh {
                    new_pid = r.main_pid;
                    break;
                }
            }
            if Instant::now() >= deadline {
                failures.push("the old processes were still running or none came back".to_owned());
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        record.new_pid = new_pid;
        let mut sip_note = String::new();
        if let (Some(uri), true) = (&cfg.verify.uri, failures.is_empty()) {
            match self.probe_until(uri, deadline).await {
                Ok(()) => {
                    sip_note = format!(
                        "; SIP OK {} after",
                        secs(restarted_at.elapsed().as_secs_f64())
                    )
                }
                Err(e) => failures.push(format!(
                    "{uri} did not answer {} within {}: {e}",
                    if cfg.verify.register.is_some() {
                        "REGISTER"
                    } else {
                        "OPTIONS"
                    },
                    secs(cfg.verify.within.as_secs_f64())
                )),
            }
        }
        let mut drop_note = String::new();
        if let (Some(level), Some(gauge), true) = (
            cfg.verify.memory_drop,
            &cfg.verify.gauge,
            failures.is_empty(),
        ) {
            let before_value = before
                .as_ref()
                .and_then(|r| gauge_value(r, gauge))
                .map(|g| g.0);
            if let Some(b) = before_value {
                let need = match level {
                    Level::Absolute(x) => x,
                    Level::PercentOfLimit(p) => b * p / 100.0,
                };
                let mut after = None;
                loop {
                    if let Some((v, _, Some(at))) =
                        (self.view)().and_then(|r| gauge_value(&r, gauge))
                    {
                        if at > restarted_unix {
                            after = Some(v);
                            if b - v >= need {
                                break;
                            }
                        }
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                match after {
                    Some(v) if b - v >= need => {
                        drop_note = format!("; {gauge} {} -> {}", fmt_value(b), fmt_value(v))
                    }
                    Some(v) => failures.push(format!(
                        "{gauge} fell only from {} to {} (memory_drop needs {})",
                        fmt_value(b),
                        fmt_value(v),
                        fmt_value(need)
                    )),
                    None => {
                        failures.push(format!("{gauge} was not sampled again after the restart"))
                    }
                }
            }
        }

        if failures.is_empty() {
            record.verified_at = Some(super::audit::rfc3339(crate::agent::clock::unix_now()));
            self.undrain().await;
            self.release(lease.as_ref(), renewer).await;
            record.verify = Some("ok".into());
            record.summary = format!(
                "restarted {} on {}: {}{drain_note}{sip_note}{drop_note}",
                self.service, self.place, order.reason
            );
            finish(record, true, true, None, false)
        } else {
            if let Some(r) = renewer {
                r.abort();
            }
            record.decision = DecisionKind::Failed;
            record.why = "verify_failed".into();
            record.verify = Some("failed".into());
            record.summary = format!(
                "restarted {} on {} ({}{drain_note}) but verification FAILED: {}; left drained{}, automatic restarts paused until `sipwatch restart resume {}`",
                self.service,
                self.place,
                order.reason,
                failures.join("; "),
                if lease.is_some() { ", lease kept" } else { "" },
                self.service
            );
            let mut done = finish(record, true, false, Some("verify_failed"), true);
            done.held_lease = lease;
            done
        }
    }

    async fn undrain(&self) {
        if let Some(action) = self.config.drain.as_ref().and_then(|d| d.undrain.as_ref()) {
            if let Err(e) = method::run_action(
                &self.client,
                action,
                self.config
                    .drain
                    .as_ref()
                    .map_or(Duration::from_secs(30), |d| d.timeout),
            )
            .await
            {
                tracing::error!(
                    service = self.service,
                    error = e,
                    "undrain failed; undrain the node by hand"
                );
            }
        }
    }

    async fn release(
        &self,
        lease: Option<&super::leases::Lease>,
        renewer: Option<tokio::task::JoinHandle<()>>,
    ) {
        if let Some(r) = renewer {
            r.abort();
        }
        if let (Some(l), Some(c)) = (lease, &self.leases) {
            if let Err(e) = c.release(l).await {
                tracing::warn!(
                    service = self.service,
                    error = e,
                    "cannot release the restart lease; it expires with its TTL"
                );
            }
        }
    }

    /// Probes `uri` with OPTIONS until it answers OK or `deadline` passes.
    async fn probe_until(&self, uri: &str, deadline: Instant) -> Result<(), String> {
        use sipwatch_probes::locate::Locator;
        use sipwatch_probes::message::TargetUri;
        use sipwatch_probes::outcome::Status;
        use sipwatch_probes::probe::{ProbeSpec, Prober};
        let target = TargetUri::parse(uri).map_err(|e| e.to_string())?;
        let prober = Prober::new(Locator::new(None).map_err(|e| e.to_string())?, None);
        let mut spec = ProbeSpec::options(target);
        if let Some(reg) = &self.config.verify.register {
            spec.method = sipwatch_probes::message::Method::Register;
            spec.credentials = Some(sipwatch_probes::digest::Credentials::new(
                reg.username.clone(),
                reg.password.expose().to_owned(),
            ));
            spec.domain = reg.domain.clone();
        }
        let mut last = String::from("no answer");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(last);
            }
            let started = Instant::now();
            match tokio::time::timeout(left.min(Duration::from_secs(4)), prober.probe(&spec)).await
            {
                Ok(outcomes) => {
                    if outcomes.iter().any(|o| o.status == Status::Ok) {
                        return Ok(());
                    }
                    last = outcomes
                        .first()
                        .map(|o| {
                            format!(
                                "{} {}",
                                o.result.as_str(),
                                o.code.map(|c| c.to_string()).unwrap_or_default()
                            )
                        })
                        .unwrap_or_else(|| "no outcome".into());
                }
                Err(_) => last = "timeout".into(),
            }
            let spent = started.elapsed();
            if spent < Duration::from_millis(300) {
                tokio::time::sleep(Duration::from_millis(300) - spent).await;
            }
        }
    }
}
