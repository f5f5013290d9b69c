//! The restart policy of one service, sans-IO: [`RestartPolicy`] takes `(now, Input)` and returns
//! what to do ([`Output`]): run a restart now, or record a decision that restarts nothing
//! (`would_restart`, `deferred`, `skipped`). No clock, no file, no process here: the watchdog task
//! feeds it the service's gauges, log lines, probe state, manual commands and the executor's
//! outcomes, and carries out its orders. Tests drive it with virtual time.
//!
//! Order of calls: [`RestartPolicy::handle`] for each input as it arrives, then
//! [`RestartPolicy::poll`] (at least every few seconds); `now` never goes backwards. After a
//! [`Output::Restart`] the policy is busy until it gets [`Input::Finished`] or [`Input::Refused`].
//!
//! Triggers: thresholds and probe failure are levels (they ask again while they hold); log lines,
//! manual requests and schedule occurrences are edges (asked once). A leak forecast is planned into
//! the last window that opens before the exhaustion minus `margin`, or taken now when none comes in
//! time or less than `emergency_horizon` is left. Guards, in order: pause, cap, cooldown, window
//! (a closed window defers to its next opening, kept on disk in [`PolicyState`]), dry run. A
//! decision that blocks the same trigger for the same reason is recorded once, not every poll.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::RestartConfig;
use super::schedule::Unix;

/// What asked for the restart (the audit's `trigger`, the `reason` label of `sipwatch_restarts_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Threshold,
    Forecast,
    Log,
    Probe,
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Threshold => "threshold",
            Trigger::Forecast => "forecast",
            Trigger::Log => "log",
            Trigger::Probe => "probe",
            Trigger::Manual => "manual",
        }
    }
}

/// The audit's `decision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Restarted,
    WouldRestart,
    Deferred,
    Skipped,
    Failed,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Restarted => "restarted",
            DecisionKind::WouldRestart => "would_restart",
            DecisionKind::Deferred => "deferred",
            DecisionKind::Skipped => "skipped",
            DecisionKind::Failed => "failed",
        }
    }
}

/// One gauge as last sampled.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GaugeObs {
    pub name: String,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    /// Seconds to the limit while the leak detector raises a leak.
    pub leak_eta: Option<f64>,
    /// Growth per hour while a leak is raised (for the summary).
    pub slope_per_hour: Option<f64>,
    /// When the value was sampled (values from before the last restart are not acted on).
    pub sampled_at: Option<Unix>,
}

/// A person's command (`sipwatch restart now|pause|resume SERVICE`).
#[derive(Clone, Debug, PartialEq)]
pub enum Manual {
    Now { force: bool, by: String },
    Pause { by: String },
    Resume { by: String },
}

/// What the executor reports back.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    /// Whether the service was restarted (whatever the verification said).
    pub restarted: bool,
    /// Whether the verification passed (false also when not restarted).
    pub verified: bool,
    /// The token of what went wrong (`verify_failed`, `drain_timeout`, `method_failed`).
    pub why: Option<String>,
}

/// An input to the policy.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Every gauge of the service, after a tick.
    Gauges(Vec<GaugeObs>),
    /// A line of a log gauge matched an alert pattern.
    LogLine {
        gauge: String,
        line: String,
    },
    /// The daemon's view of this service's target: down or not.
    ProbeDown(bool),
    Manual(Manual),
    Finished(Finished),
    /// The restart could not start (lease refused: `quorum`, `lease`; no daemon: `no_daemon`); ask again
    /// after `retry_in` seconds.
    Refused {
        why: String,
        retry_in: f64,
    },
}

/// A restart to carry out now.
#[derive(Clone, Debug, PartialEq)]
pub struct RestartOrder {
    pub trigger: Trigger,
    /// Why, in words (`"kamailio_shm 87% of its limit for 2m"`).
    pub reason: String,
    pub forced: bool,
}

/// A decision that restarts nothing, for the audit.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub trigger: Trigger,
    pub decision: DecisionKind,
    pub why: String,
    pub summary: String,
}

/// What the policy asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Restart(RestartOrder),
    Record(Decision),
}

/// A restart deferred to a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    pub at: Unix,
    pub trigger: Trigger,
    pub reason: String,
}

/// Automatic restarts paused (by a person, or after a failed verification).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Paused {
    pub at: Unix,
    pub why: String,
    pub by: String,
}

/// What survives an agent restart (`STATE_DIR/SERVICE/watchdog.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyState {
    /// Restarts done (or, in a dry run, that would have been), for the cap and the cooldown.
    #[serde(default)]
    pub restarts: Vec<Unix>,
    /// The last attempt that did not restart (a drain given up), for the cooldown.
    #[serde(default)]
    pub last_attempt: Option<Unix>,
    #[serde(default)]
    pub paused: Option<Paused>,
    #[serde(default)]
    pub planned: Option<Planned>,
    /// The schedule occurrences up to here are done.
    #[serde(default)]
    pub schedule_cursor: Option<Unix>,
}

#[derive(Clone, Debug)]
struct Want {
    trigger: Trigger,
    reason: String,
    emergency: bool,
    force: bool,
    /// Edge triggers are consumed by a decision; levels ask again.
    edge: bool,
    from_plan: bool,
}

/// The plan for `sipwatch restart plan`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    pub next_scheduled: Option<Unix>,
    pub window_open: bool,
    pub would_restart_now: bool,
    pub why: String,
    pub planned: Option<Planned>,
    pub paused: bool,
    pub restarts_in_cap_span: usize,
}

/// The policy of one service.
pub struct RestartPolicy {
    config: RestartConfig,
    state: PolicyState,
    /// When each threshold condition started to hold.
    since: Vec<Option<Unix>>,
    gauges: Vec<GaugeObs>,
    probe_down: bool,
    logs: Vec<(String, String)>,
    manual: Option<(bool, String)>,
    busy: Option<Want>,
    held: Option<Want>,
    retry_at: Option<Unix>,
    last_block: Option<(Trigger, String)>,
    dirty: bool,
    /// Samples older than this (the last restart) are stale.
    fresh_after: Option<Unix>,
    /// A probe failure acts only after the daemon saw the target up since the last restart.
    probe_armed: bool,
}

fn fmt_secs(secs: f64) -> String {
    sipwatch_alerting::duration::format_seconds(secs.max(0.0).round())
}

fn fmt_at(t: Unix) -> String {
    chrono::DateTime::from_timestamp(t as i64, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A value for a person: bytes in MB/GB for memory gauges, else the number.
pub fn fmt_value(v: f64) -> String {
    if v.abs() >= 1e9 {
        format!("{:.1} GB", v / 1e9)
    } else if v.abs() >= 1e6 {
        format!("{:.0} MB", v / 1e6)
    } else if v.fract() == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.2}")
    }
}

impl RestartPolicy {
    /// A policy resuming from `state` (default for a first start).
    pub fn new(config: RestartConfig, state: PolicyState) -> Self {
        let since = vec![None; config.thresholds.len()];
        RestartPolicy {
            config,
            state,
            since,
            gauges: Vec::new(),
            probe_down: false,
            logs: Vec::new(),
            manual: None,
            busy: None,
            held: None,
            retry_at: None,
            last_block: None,
            dirty: false,
            fresh_after: None,
            probe_armed: true,
        }
    }

    pub fn config(&self) -> &RestartConfig {
        &self.config
    }

    /// The state to keep on disk.
    pub fn state(&self) -> &PolicyState {
        &self.state
    }

    /// True once after the state changed (then write it).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn is_busy(&self) -> bool {
        self.busy.is_some()
    }

    /// Takes in one input; returns the decisions it makes at once (pause and resume).
    pub fn handle(&mut self, now: Unix, input: Input) -> Vec<Output> {
        match input {
            Input::Gauges(mut gauges) => {
                if let Some(fresh) = self.fresh_after {
                    for g in &mut gauges {
                        if g.sampled_at.is_none_or(|t| t < fresh) {
                            g.value = None;
                            g.leak_eta = None;
                        }
                    }
                }
                for (i, c) in self.config.thresholds.iter().enumerate() {
                    let holds = gauges.iter().find(|g| g.name == c.gauge).and_then(|g| {
                        let level = c.level.resolve(g.limit)?;
                        Some(c.op.holds(g.value?, level))
                    });
                    self.since[i] = match (holds, self.since[i]) {
                        (Some(true), Some(s)) => Some(s),
                        (Some(true), None) => Some(now),
                        _ => None,
                    };
                }
                self.gauges = gauges;
                Vec::new()
            }
            Input::LogLine { gauge, line } => {
                let wanted = self.config.on_log_gauges.contains(&gauge)
                    || self
                        .config
                        .on_log_patterns
                        .iter()
                        .any(|re| re.is_match(&line));
                if wanted {
                    self.logs.push((gauge, line));
                }
                Vec::new()
            }
            Input::ProbeDown(down) => {
                if !down {
                    self.probe_armed = true;
                }
                self.probe_down = down && self.config.on_probe_failure && self.probe_armed;
                Vec::new()
            }
            Input::Manual(Manual::Now { force, by }) => {
                self.manual = Some((force, by));
                Vec::new()
            }
            Input::Manual(Manual::Pause { by }) => {
                self.state.paused = Some(Paused {
                    at: now,
                    why: "paused".into(),
                    by: by.clone(),
                });
                self.dirty = true;
                vec![Output::Record(Decision {
                    trigger: Trigger::Manual,
                    decision: DecisionKind::Skipped,
                    why: "paused".into(),
                    summary: format!("automatic restarts paused by {by}"),
                })]
            }
            Input::Manual(Manual::Resume { by }) => {
                let was = self.state.paused.take();
                self.dirty = true;
                self.last_block = None;
                vec![Output::Record(Decision {
                    trigger: Trigger::Manual,
                    decision: DecisionKind::Skipped,
                    why: "resumed".into(),
                    summary: match was {
                        Some(p) => format!(
                            "automatic restarts resumed by {by} (paused since {}: {})",
                            fmt_at(p.at),
                            p.why
                        ),
                        None => format!("resume by {by}: automatic restarts were not paused"),
                    },
                })]
            }
            Input::Finished(f) => {
                self.busy = None;
                self.last_block = None;
                if f.restarted {
                    self.state.restarts.push(now);
                    // What was seen before the restart no longer holds.
                    self.fresh_after = Some(now);
                    self.since.iter_mut().for_each(|s| *s = None);
                    self.probe_armed = false;
                    self.probe_down = false;
                } else {
                    self.state.last_attempt = Some(now);
                }
                if f.restarted && !f.verified {
                    self.state.paused = Some(Paused {
                        at: now,
                        why: f.why.unwrap_or_else(|| "verify_failed".into()),
                        by: "the watchdog".into(),
                    });
                }
                self.prune(now);
                self.dirty = true;
                Vec::new()
            }
            Input::Refused { why, retry_in } => {
                let want = self.busy.take();
                self.retry_at = Some(now + retry_in);
                let mut out = Vec::new();
                if let Some(want) = want {
                    if self.last_block.as_ref() != Some(&(want.trigger, why.clone())) {
                        self.last_block = Some((want.trigger, why.clone()));
                        out.push(Output::Record(Decision {
                            trigger: want.trigger,
                            decision: DecisionKind::Deferred,
                            why: why.clone(),
                            summary: format!(
                                "{}; waiting ({why}), asking again every {}",
                                want.reason,
                                fmt_secs(retry_in)
                            ),
                        }));
                    }
                    self.held = Some(want);
                }
                out
            }
        }
    }

    fn prune(&mut self, now: Unix) {
        let keep = self
            .config
            .cap
            .map_or(self.config.cooldown, |c| c.per.max(self.config.cooldown))
            .as_secs_f64();
        self.state.restarts.retain(|t| now - *t <= keep);
    }

    fn last_restart(&self) -> Option<Unix> {
        self.state
            .restarts
            .iter()
            .copied()
            .fold(None, |a, t| Some(a.map_or(t, |a: f64| a.max(t))))
    }

    /// The first guard that blocks a restart now (not counting windows), as a token and words.
    fn blocked(&self, now: Unix, force: bool) -> Option<(String, String)> {
        if force {
            return None;
        }
        if let Some(p) = &self.state.paused {
            return Some((
                "paused".into(),
                format!("automatic restarts are paused ({} by {} at {}); resume with `sipwatch restart resume`", p.why, p.by, fmt_at(p.at)),
            ));
        }
        if let Some(cap) = self.config.cap {
            let span = cap.per.as_secs_f64();
            let recent: Vec<Unix> = self
                .state
                .restarts
                .iter()
                .copied()
                .filter(|t| now - t < span)
                .collect();
            if recent.len() >= cap.count {
                let oldest = recent.iter().copied().fold(f64::INFINITY, f64::min);
                return Some((
                    "cap".into(),
                    format!(
                        "{} restarts within {} already (max_restarts); the next is allowed after {}",
                        recent.len(),
                        fmt_secs(span),
                        fmt_at(oldest + span)
                    ),
                ));
            }
        }
        let last = match (self.last_restart(), self.state.last_attempt) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(last) = last {
            let cooldown = self.config.cooldown.as_secs_f64();
            if now - last < cooldown {
                return Some((
                    "cooldown".into(),
                    format!(
                        "the last restart was {} ago (cooldown {})",
                        fmt_secs(now - last),
                        fmt_secs(cooldown)
                    ),
                ));
            }
        }
        None
    }

    /// The next scheduled restart: a schedule occurrence or a deferred plan.
    pub fn next_scheduled(&self, now: Unix) -> Option<Unix> {
        let cursor = self.state.schedule_cursor.unwrap_or(now).max(now - 1.0);
        let sched = self
            .config
            .schedule
            .iter()
            .filter_map(|s| s.next_after(cursor))
            .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.min(t))));
        match (sched, self.state.planned.as_ref().map(|p| p.at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What the watchdog would do now with a restart asked by a person (not forced), and why.
    pub fn explain(&self, now: Unix) -> Explanation {
        let window_open = self.config.windows.open_at(now).is_some();
        let (would, why) = match self.blocked(now, false) {
            Some((token, words)) => (false, format!("{token}: {words}")),
            None if !window_open => (
                false,
                match self.config.windows.next_open(now) {
                    Some(t) => {
                        format!("window: no window is open; the next opens at {}", fmt_at(t))
                    }
                    None => "window: no window opens in the next 15 days".into(),
                },
            ),
            None if self.config.dry_run => {
                (false, "dry_run: would restart, but dry_run = true".into())
            }
            None => (
                true,
                if self.config.windows.is_empty() {
                    "ok: no guard blocks a restart (no windows: any time)".into()
                } else {
                    "ok: a window is open and no guard blocks a restart".into()
                },
            ),
        };
        let span = self.config.cap.map_or(0.0, |c| c.per.as_secs_f64());
        Explanation {
            next_scheduled: self.next_scheduled(now),
            window_open,
            would_restart_now: would,
            why,
            planned: self.state.planned.clone(),
            paused: self.state.paused.is_some(),
            restarts_in_cap_span: self
                .state
                .restarts
                .iter()
                .filter(|t| now - **t < span)
                .count(),
        }
    }

    /// The forecast: a restart now (emergency), or the instant to plan it at.
    fn forecast(&self, now: Unix) -> Option<(Result<Unix, String>, String)> {
        if !self.config.on_leak {
            return None;
        }
        let g = self
            .gauges
            .iter()
            .filter(|g| g.leak_eta.is_some())
            .min_by(|a, b| {
                a.leak_eta
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.leak_eta.unwrap_or(f64::MAX))
            })?;
        let eta = g.leak_eta?;
        let exhaustion = now + eta;
        let mut reason = format!("{} leaking", g.name);
        if let (Some(v), Some(l)) = (g.value, g.limit) {
            if l > 0.0 {
                reason = format!("{} {:.0}%", g.name, 100.0 * v / l);
            }
        }
        if let Some(s) = g.slope_per_hour {
            reason.push_str(&format!(" rising {}/h", fmt_value(s)));
        }
        reason.push_str(&format!(", {} left", fmt_secs(eta)));
        if eta < self.config.emergency_horizon.as_secs_f64() {
            return Some((Err("emergency_horizon".into()), reason));
        }
        let deadline = exhaustion - self.config.margin.as_secs_f64();
        if self.config.windows.is_empty() {
            return Some((Ok(deadline.max(now)), reason));
        }
        let mut last = self
            .config
            .windows
            .openings(now, deadline)
            .last()
            .map(|o| o.0);
        if last.is_none() && self.config.windows.open_at(now).is_some() && now <= deadline {
            last = Some(now);
        }
        match last {
            Some(t) => Some((Ok(t), reason)),
            None => Some((Err("no_window".into()), reason)),
        }
    }

    fn want(&mut self, now: Unix, out: &mut Vec<Output>) -> Option<Want> {
        if let Some(w) = self.held.take() {
            return Some(w);
        }
        if let Some((force, by)) = self.manual.take() {
            return Some(Want {
                trigger: Trigger::Manual,
                reason: if force {
                    format!("forced by {by}")
                } else {
                    format!("asked by {by}")
                },
                emergency: false,
                force,
                edge: true,
                from_plan: false,
            });
        }
        if let Some(p) = self.state.planned.clone() {
            if p.at <= now {
                self.state.planned = None;
                self.dirty = true;
                return Some(Want {
                    trigger: p.trigger,
                    reason: p.reason,
                    emergency: false,
                    force: false,
                    edge: true,
                    from_plan: true,
                });
            }
        }
        if let Some((gauge, line)) = self.logs.first().cloned() {
            self.logs.remove(0);
            return Some(Want {
                trigger: Trigger::Log,
                reason: format!(
                    "{gauge} logged {:?}",
                    line.chars().take(120).collect::<String>()
                ),
                emergency: false,
                force: false,
                edge: true,
                from_plan: false,
            });
        }
        for (i, c) in self.config.thresholds.iter().enumerate() {
            if let Some(s) = self.since[i] {
                if now - s >= c.hold.as_secs_f64() {
                    let g = self.gauges.iter().find(|g| g.name == c.gauge);
                    let shown = match g.and_then(|g| Some((g.value?, g.limit))) {
                        Some((v, Some(l))) if l > 0.0 => {
                            format!("{} {:.0}% of its limit", c.gauge, 100.0 * v / l)
                        }
                        Some((v, _)) => format!("{} {}", c.gauge, fmt_value(v)),
                        None => c.gauge.clone(),
                    };
                    return Some(Want {
                        trigger: Trigger::Threshold,
                        reason: format!("{shown} ({})", c.source),
                        emergency: false,
                        force: false,
                        edge: false,
                        from_plan: false,
                    });
                }
            }
        }
        if self.probe_down {
            return Some(Want {
                trigger: Trigger::Probe,
                reason: format!(
                    "the daemon reports target {} down",
                    self.config.target.as_deref().unwrap_or("?")
                ),
                emergency: false,
                force: false,
                edge: false,
                from_plan: false,
            });
        }
        let cursor = *self.state.schedule_cursor.get_or_insert(now);
        let due = self
            .config
            .schedule
            .iter()
            .filter_map(|s| s.next_after(cursor).map(|t| (t, s.as_str().to_owned())))
            .filter(|(t, _)| *t <= now)
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((t, expr)) = due {
            self.state.schedule_cursor = Some(t);
            self.dirty = true;
            return Some(Want {
                trigger: Trigger::Schedule,
                reason: format!("scheduled \"{expr}\""),
                emergency: false,
                force: false,
                edge: true,
                from_plan: false,
            });
        }
        if let Some((plan, reason)) = self.forecast(now) {
            match plan {
                Err(token) => {
                    return Some(Want {
                        trigger: Trigger::Forecast,
                        reason: format!(
                            "{reason}; {}",
                            if token == "no_window" {
                                "no window opens before the forecast exhaustion"
                            } else {
                                "under the emergency horizon"
                            }
                        ),
                        emergency: true,
                        force: false,
                        edge: false,
                        from_plan: false,
                    })
                }
                Ok(at) if at <= now => {
                    return Some(Want {
                        trigger: Trigger::Forecast,
                        reason,
                        emergency: false,
                        force: false,
                        edge: false,
                        from_plan: false,
                    })
                }
                Ok(at) => {
                    let replan = match &self.state.planned {
                        None => true,
                        Some(p) => p.at > at + 300.0,
                    };
                    if replan {
                        self.state.planned = Some(Planned {
                            at,
                            trigger: Trigger::Forecast,
                            reason: reason.clone(),
                        });
                        self.dirty = true;
                        out.push(Output::Record(Decision {
                            trigger: Trigger::Forecast,
                            decision: DecisionKind::Deferred,
                            why: "forecast".into(),
                            summary: format!("{reason}: restart planned at {}", fmt_at(at)),
                        }));
                    }
                }
            }
        }
        None
    }

    /// Evaluates the triggers and guards at `now`.
    pub fn poll(&mut self, now: Unix) -> Vec<Output> {
        let mut out = Vec::new();
        if self.busy.is_some() || self.retry_at.is_some_and(|t| now < t) {
            return out;
        }
        self.retry_at = None;
        let Some(want) = self.want(now, &mut out) else {
            return out;
        };
        let block = |policy: &mut Self,
                     out: &mut Vec<Output>,
                     want: &Want,
                     kind: DecisionKind,
                     why: String,
                     words: String| {
            if !want.edge && policy.last_block.as_ref() == Some(&(want.trigger, why.clone())) {
                return;
            }
            policy.last_block = Some((want.trigger, why.clone()));
            out.push(Output::Record(Decision {
                trigger: want.trigger,
                decision: kind,
                why,
                summary: format!("{}; not restarted: {words}", want.reason),
            }));
        };
        if let Some((token, words)) = self.blocked(now, want.force) {
            block(self, &mut out, &want, DecisionKind::Skipped, token, words);
            return out;
        }
        let open = self.config.windows.open_at(now).is_some();
        if !open && !want.emergency && !want.force && !want.from_plan {
            match self.config.windows.next_open(now) {
                Some(at) => {
                    if self.state.planned.as_ref().is_none_or(|p| p.at > at) {
                        self.state.planned = Some(Planned {
                            at,
                            trigger: want.trigger,
                            reason: want.reason.clone(),
                        });
                        self.dirty = true;
                        out.push(Output::Record(Decision {
                            trigger: want.trigger,
                            decision: DecisionKind::Deferred,
                            why: "window".into(),
                            summary: format!(
                                "{}; deferred to the next window, at {}",
                                want.reason,
                                fmt_at(at)
                            ),
                        }));
                    }
                }
                None => block(
                    self,
                    &mut out,
                    &want,
                    DecisionKind::Skipped,
                    "window".into(),
                    "no window opens in the next 15 days".into(),
                ),
            }
            return out;
        }
        if self.config.dry_run && !want.force {
            self.last_block = None;
            self.state.restarts.push(now);
            self.prune(now);
            self.dirty = true;
            out.push(Output::Record(Decision {
                trigger: want.trigger,
                decision: DecisionKind::WouldRestart,
                why: "dry_run".into(),
                summary: format!("{}; would restart (dry_run = true)", want.reason),
            }));
            return out;
        }
        if self
            .state
            .planned
            .as_ref()
            .is_some_and(|p| p.trigger == want.trigger)
        {
            self.state.planned = None;
            self.dirty = true;
        }
        out.push(Output::Restart(RestartOrder {
            trigger: want.trigger,
            reason: want.reason.clone(),
            forced: want.force,
        }));
        self.busy = Some(want);
        out
    }

    /// How long until the policy needs a poll without new input (for timers), at most `max`.
    pub fn poll_timeout(&self, now: Unix, max: Duration) -> Duration {
        let mut next = now + max.as_secs_f64();
        if let Some(t) = self.retry_at {
            next = next.min(t);
        }
        if let Some(t) = self.next_scheduled(now) {
            next = next.min(t);
        }
        Duration::from_secs_f64((next - now).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::watchdog::config::{Cap, Condition, Method, VerifyConfig};
    use crate::agent::watchdog::schedule::{Schedule, Window, Windows};
    use chrono_tz::Tz;

    fn at(s: &str) -> Unix {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp() as f64
    }

    fn config() -> RestartConfig {
        RestartConfig {
            schedule: vec![],
            thresholds: vec![],
            on_leak: false,
            margin: Duration::from_secs(3600),
            emergency_horizon: Duration::from_secs(2 * 3600),
            on_log_gauges: vec![],
            on_log_patterns: vec![],
            on_probe_failure: false,
            target: None,
            windows: Windows::default(),
            cooldown: Duration::from_secs(600),
            cap: None,
            dry_run: false,
            method: Method::Command {
                argv: vec!["true".into()],
                timeout: Duration::from_secs(5),
            },
            lease_ttl: Duration::from_secs(600),
            drain: None,
            verify: VerifyConfig {
                uri: None,
                register: None,
                within: Duration::from_secs(30),
                memory_drop: None,
                gauge: None,
            },
        }
    }

    fn shm(value: f64, limit: f64) -> Input {
        Input::Gauges(vec![GaugeObs {
            name: "kamailio_shm".into(),
            value: Some(value),
            limit: Some(limit),
            sampled_at: Some(f64::MAX),
            ..Default::default()
        }])
    }

    fn restarts(out: &[Output]) -> usize {
        out.iter()
            .filter(|o| matches!(o, Output::Restart(_)))
            .count()
    }

    fn done(p: &mut RestartPolicy, now: Unix, verified: bool) {
        p.handle(
            now,
            Input::Finished(Finished {
                restarted: true,
                verified,
                why: (!verified).then(|| "verify_failed".into()),
            }),
        );
    }

    #[test]
    fn threshold_holds_for_its_duration_then_restarts_once() {
        let mut c = config();
        c.thresholds = vec![Condition::parse("kamailio_shm > 85% for 2m").unwrap()];
        let mut p = RestartPolicy::new(c, PolicyState::default());
        let t0 = 1_000_000.0;
        p.handle(t0, shm(90.0, 100.0));
        assert!(p.poll(t0).is_empty());
        p.handle(t0 + 60.0, shm(80.0, 100.0));
        p.handle(t0 + 70.0, shm(90.0, 100.0));
        assert!(
            p.poll(t0 + 180.0).is_empty(),
            "held only 110 s since it rose again"
        );
        let out = p.poll(t0 + 190.0);
        assert_eq!(restarts(&out), 1, "{out:?}");
        assert!(p.poll(t0 + 191.0).is_empty(), "busy while the restart runs");
        done(&mut p, t0 + 200.0, true);
        p.handle(t0 + 210.0, shm(20.0, 100.0));
        assert!(p.poll(t0 + 400.0).is_empty());
    }

    #[test]
    fn samples_from_before_the_restart_are_not_acted_on() {
        let mut c = config();
        c.thresholds = vec![Condition::parse("kamailio_shm > 50").unwrap()];
        c.cooldown = Duration::from_secs(1);
        c.on_probe_failure = true;
        c.target = Some("fe-1".into());
        let mut p = RestartPolicy::new(c, PolicyState::default());
        let stale = |t: f64| {
            Input::Gauges(vec![GaugeObs {
                name: "kamailio_shm".into(),
                value: Some(90.0),
                limit: Some(100.0),
                sampled_at: Some(t),
                ..Default::default()
            }])
        };
        p.handle(10.0, stale(9.0));
        assert_eq!(restarts(&p.poll(10.0)), 1);
        done(&mut p, 20.0, true);
        p.handle(25.0, stale(19.0));
        p.handle(25.0, Input::ProbeDown(true));
        assert!(
            p.poll(25.0).is_empty(),
            "the last sample and the probe state are from before the restart"
        );
        p.handle(26.0, stale(25.5));
        assert_eq!(
            restarts(&p.poll(26.0)),
            1,
            "a fresh sample over the threshold acts"
        );
    }

    #[test]
    fn cooldown_and_cap_record_once_and_persist() {
        let mut c = config();
        c.thresholds = vec![Condition::parse("kamailio_shm > 50 for 1m").unwrap()];
        c.cooldown = Duration::from_secs(600);
        c.cap = Some(Cap::parse("2 per 1d").unwrap());
        let mut p = RestartPolicy::new(c.clone(), PolicyState::default());
        let mut t = 0.0;
        let order = |p: &mut RestartPolicy, t: f64| {
            p.handle(t, shm(60.0, 100.0));
            p.handle(t + 61.0, shm(60.0, 100.0));
            p.poll(t + 61.0)
        };
        assert_eq!(restarts(&order(&mut p, t)), 1);
        done(&mut p, t + 70.0, true);
        t += 100.0;
        let out = order(&mut p, t);
        assert!(
            matches!(&out[..], [Output::Record(d)] if d.why == "cooldown"),
            "{out:?}"
        );
        assert!(
            p.poll(t + 62.0).is_empty(),
            "the same block is recorded once"
        );
        t = 2000.0;
        assert_eq!(restarts(&order(&mut p, t)), 1, "after the cooldown");
        done(&mut p, t + 70.0, true);
        // An agent restart: the state comes back from disk.
        let saved = serde_json::to_string(p.state()).unwrap();
        let mut p = RestartPolicy::new(c, serde_json::from_str(&saved).unwrap());
        t = 5000.0;
        let out = order(&mut p, t);
        assert!(
            matches!(&out[..], [Output::Record(d)] if d.why == "cap"),
            "{out:?}"
        );
        t = 86_400.0 + 100.0;
        assert_eq!(
            restarts(&order(&mut p, t)),
            1,
            "the first restart left the sliding day"
        );
    }

    #[test]
    fn failed_verification_pauses_until_resumed() {
        let mut c = config();
        c.thresholds = vec![Condition::parse("kamailio_shm > 50").unwrap()];
        c.cooldown = Duration::from_secs(60);
        let mut p = RestartPolicy::new(c, PolicyState::default());
        p.handle(0.0, shm(60.0, 100.0));
        assert_eq!(restarts(&p.poll(0.0)), 1);
        done(&mut p, 10.0, false);
        p.handle(100.0, shm(60.0, 100.0));
        let out = p.poll(100.0);
        assert!(
            matches!(&out[..], [Output::Record(d)] if d.why == "paused"),
            "{out:?}"
        );
        for i in 0..100 {
            assert!(p.poll(200.0 + f64::from(i)).is_empty(), "no loop");
        }
        p.handle(400.0, Input::Manual(Manual::Resume { by: "alice".into() }));
        assert_eq!(restarts(&p.poll(401.0)), 1);
    }

    #[test]
    fn dry_run_records_would_restart_and_restarts_nothing() {
        let mut c = config();
        c.dry_run = true;
        c.on_log_gauges = vec!["shm_exhausted".into()];
        let mut p = RestartPolicy::new(c, PolicyState::default());
        p.handle(
            0.0,
            Input::LogLine {
                gauge: "shm_exhausted".into(),
                line: "no more shm memory".into(),
            },
        );
        let out = p.poll(0.0);
        assert!(
            matches!(&out[..], [Output::Record(d)] if d.decision == DecisionKind::WouldRestart && d.trigger == Trigger::Log),
            "{out:?}"
        );
        assert!(p.poll(1.0).is_empty(), "the log line was consumed");
    }

    #[test]
    fn closed_window_defers_and_the_plan_survives_a_restart() {
        let mut c = config();
        c.windows = Windows(vec![
            Window::parse("daily 01:00-05:00 UTC", Tz::UTC).unwrap()
        ]);
        c.on_log_patterns = vec![regex::Regex::new("no more shm").unwrap()];
        let mut p = RestartPolicy::new(c.clone(), PolicyState::default());
        let noon = at("2026-11-24T12:00:00Z");
        p.handle(
            noon,
            Input::LogLine {
                gauge: "log".into(),
                line: "ERROR: no more shm memory".into(),
            },
        );
        let out = p.poll(noon);
        assert!(
            matches!(&out[..], [Output::Record(d)] if d.decision == DecisionKind::Deferred && d.why == "window"),
            "{out:?}"
        );
        let state = p.state().clone();
        assert_eq!(
            state.planned.as_ref().unwrap().at,
            at("2026-11-25T01:00:00Z")
        );
        let mut p = RestartPolicy::new(c, state);
        assert!(p.poll(at("2026-11-25T00:59:00Z")).is_empty());
        let out = p.poll(at("2026-11-25T01:00:05Z"));
        assert!(
            matches!(&out[..], [Output::Restart(o)] if o.trigger == Trigger::Log),
            "{out:?}"
        );
    }

    #[test]
    fn forecast_plans_into_the_last_window_before_exhaustion() {
        let mut c = config();
        c.on_leak = true;
        c.margin = Duration::from_secs(3600);
        c.windows = Windows(vec![
            Window::parse("daily 02:00-04:00 UTC", Tz::UTC).unwrap()
        ]);
        let mut p = RestartPolicy::new(c.clone(), PolicyState::default());
        let now = at("2026-11-24T12:00:00Z");
        // Exhaustion in 40 h: 2026-11-26T04:00Z; minus 1 h margin: 03:00. Windows open on the
        // 25th and 26th at 02:00; the last one opening before 03:00 on the 26th is chosen.
        let leak = |eta: f64| {
            Input::Gauges(vec![GaugeObs {
                name: "kamailio_shm".into(),
                value: Some(86.0),
                limit: Some(100.0),
                leak_eta: Some(eta),
                slope_per_hour: Some(1.0),
                sampled_at: Some(f64::MAX),
            }])
        };
        p.handle(now, leak(40.0 * 3600.0));
        let out = p.poll(now);
        assert!(
            matches!(&out[..], [Output::Record(d)] if d.decision == DecisionKind::Deferred),
            "{out:?}"
        );
        assert_eq!(
            p.state().planned.as_ref().unwrap().at,
            at("2026-11-26T02:00:00Z")
        );
        assert!(p.poll(now + 60.0).is_empty(), "planned once");
        // Under the emergency horizon: now, whatever the windows.
        let mut p = RestartPolicy::new(c, PolicyState::default());
        p.handle(now, leak(3600.0));
        let out = p.poll(now);
        assert!(
            matches!(&out[..], [Output::Restart(o)] if o.trigger == Trigger::Forecast),
            "{out:?}"
        );
    }

    #[test]
    fn schedule_in_zurich_across_spring_forward_with_virtual_time() {
        let mut c = config();
        c.schedule = vec![Schedule::parse("daily 02:30 Europe/Zurich", Tz::UTC).unwrap()];
        c.cooldown = Duration::from_secs(60);
        let mut p = RestartPolicy::new(c, PolicyState::default());
        let mut t = at("2026-03-28T00:00:00Z");
        let mut fired = Vec::new();
        while t < at("2026-03-31T00:00:00Z") {
            for o in p.poll(t) {
                if let Output::Restart(_) = o {
                    fired.push(t);
                    done(&mut p, t, true);
                }
            }
            t += 60.0;
        }
        assert_eq!(
            fired,
            vec![
                at("2026-03-28T01:30:00Z"),
                at("2026-03-29T01:00:00Z"),
                at("2026-03-30T00:30:00Z")
            ],
            "02:30 CET, then the jump to 03:00 CEST (once), then 02:30 CEST"
        );
    }

    #[test]
    fn lease_refusal_waits_and_asks_again() {
        let mut c = config();
        c.thresholds = vec![Condition::parse("kamailio_shm > 50").unwrap()];
        let mut p = RestartPolicy::new(c, PolicyState::default());
        p.handle(0.0, shm(60.0, 100.0));
        assert_eq!(restarts(&p.poll(0.0)), 1);
        let out = p.handle(
            1.0,
            Input::Refused {
                why: "quorum".into(),
                retry_in: 5.0,
            },
        );
        assert!(
            matches!(&out[..], [Output::Record(d)] if d.why == "quorum"),
            "{out:?}"
        );
        assert!(p.poll(3.0).is_empty());
        assert_eq!(restarts(&p.poll(6.0)), 1);
        let out = p.handle(
            7.0,
            Input::Refused {
                why: "quorum".into(),
                retry_in: 5.0,
            },
        );
        assert!(out.is_empty(), "the same refusal is recorded once");
    }

    #[test]
    fn manual_force_passes_guards_and_pause_blocks_automatic() {
        let mut p = RestartPolicy::new(config(), PolicyState::default());
        p.handle(0.0, Input::Manual(Manual::Pause { by: "bob".into() }));
        p.handle(
            1.0,
            Input::Manual(Manual::Now {
                force: false,
                by: "bob".into(),
            }),
        );
        let out = p.poll(1.0);
        assert!(
            matches!(&out[..], [Output::Record(d)] if d.why == "paused"),
            "{out:?}"
        );
        p.handle(
            2.0,
            Input::Manual(Manual::Now {
                force: true,
                by: "bob".into(),
            }),
        );
        let out = p.poll(2.0);
        assert!(
            matches!(&out[..], [Output::Restart(o)] if o.forced),
            "{out:?}"
        );
    }
}
