//! One gauge of one service, from sample to verdict: its sampler, its limit (written in the config,
//! else found by the sampler), its on-disk history, its leak detector, and the events its changes
//! raise (leak raised or cleared, log alert, gauge failing or read again).
//!
//! At creation the stored history is replayed through the detector, so a slow leak seen before an
//! agent restart is still known after it. A service restart starts a new detector segment
//! (`mark_restart`) and is written to the history too. Samples whose time does not move forward
//! (a clock stepped back) are shown but not fed to the detector, which needs ordered time.

use std::path::Path;

use super::config::GaugeConfig;
use super::events::{AgentEvent, ClearReason, EventSink};
use super::history::{GaugeHistory, HistoryEntry};
use super::metrics::{gauge_labels, AgentMetrics};
use super::report::{GaugeReport, LimitSource};
use super::sampler::{Reading, SampleContext, SampleError, Sampler};
use crate::leak::{LeakDetector, LeakVerdict, Sample, VerdictState};

/// A gauge being watched.
pub struct GaugeTrack {
    service: String,
    config: GaugeConfig,
    sampler: Box<dyn Sampler>,
    detector: Option<LeakDetector>,
    history: Option<GaugeHistory>,
    history_failing: bool,
    limit: Option<f64>,
    limit_source: Option<LimitSource>,
    value: Option<f64>,
    sampled_at: Option<f64>,
    verdict: Option<LeakVerdict>,
    leak_raised: bool,
    error: Option<String>,
    replayed: usize,
    samples: u64,
    last_t: f64,
}

impl GaugeTrack {
    /// A gauge with its sampler; `history` is the opened store and the series to replay.
    pub fn new(
        service: &str,
        config: GaugeConfig,
        sampler: Box<dyn Sampler>,
        history: Option<(GaugeHistory, Vec<HistoryEntry>)>,
    ) -> Self {
        let mut detector = config
            .detect
            .then(|| LeakDetector::new(config.leak.clone(), config.limit));
        let mut replayed = 0;
        let mut last_t = f64::NEG_INFINITY;
        let mut verdict = None;
        let (history, series) = match history {
            Some((h, series)) => (Some(h), series),
            None => (None, Vec::new()),
        };
        if let Some(detector) = detector.as_mut() {
            for entry in &series {
                match *entry {
                    HistoryEntry::Sample { t, value } if t > last_t => {
                        verdict = Some(detector.push(Sample { t, value }));
                        last_t = t;
                        replayed += 1;
                    }
                    HistoryEntry::Restart { t } => {
                        detector.mark_restart(t);
                        verdict = Some(detector.verdict());
                    }
                    HistoryEntry::Sample { .. } => {}
                }
            }
        }
        if replayed > 0 {
            tracing::info!(
                service,
                gauge = config.name,
                replayed,
                "gauge history replayed"
            );
        }
        GaugeTrack {
            service: service.to_owned(),
            limit: config.limit,
            limit_source: config.limit.map(|_| LimitSource::Config),
            config,
            sampler,
            detector,
            history,
            history_failing: false,
            value: None,
            sampled_at: None,
            verdict,
            leak_raised: false,
            error: None,
            replayed,
            samples: 0,
            last_t,
        }
    }

    /// The gauge's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Reads the gauge once.
    pub async fn sample(&mut self, ctx: &SampleContext) -> Result<Reading, SampleError> {
        self.sampler.sample(ctx).await
    }

    /// Takes in one sample's outcome at `now` (unix seconds).
    pub fn record(
        &mut self,
        now: f64,
        outcome: Result<Reading, SampleError>,
        metrics: &AgentMetrics,
        sink: &EventSink,
    ) {
        let labels = gauge_labels(&self.service, &self.config.name);
        let reading = match outcome {
            Ok(reading) => {
                if self.error.take().is_some() {
                    sink.emit(AgentEvent::GaugeRecovered {
                        service: self.service.clone(),
                        gauge: self.config.name.clone(),
                        at: now,
                    });
                }
                reading
            }
            Err(e) => {
                metrics.gauge_errors.get_or_create(&labels).inc();
                if self.error.is_none() {
                    sink.emit(AgentEvent::GaugeFailed {
                        service: self.service.clone(),
                        gauge: self.config.name.clone(),
                        at: now,
                        error: e.0.clone(),
                    });
                } else {
                    tracing::debug!(
                        service = self.service,
                        gauge = self.config.name,
                        error = e.0,
                        "gauge still failing"
                    );
                }
                self.error = Some(e.0);
                return;
            }
        };

        for alert in reading.alerts {
            metrics.log_alerts.get_or_create(&labels).inc();
            let file = self
                .config
                .spec
                .log_file()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            sink.emit(AgentEvent::LogAlert {
                service: self.service.clone(),
                gauge: self.config.name.clone(),
                at: now,
                file,
                pattern: alert.pattern,
                line: alert.line,
            });
        }

        let Some(value) = reading.value else {
            if self.config.spec.reads_processes() {
                metrics.remove_gauge_value(&labels);
            }
            return;
        };
        let bytes = self.config.spec.unit() == "bytes";
        self.samples += 1;
        self.value = Some(value);
        self.sampled_at = Some(now);
        metrics.set_gauge_value(&labels, bytes, value);

        // The limit: written in the config, else what the sampler found.
        if self.config.limit.is_none() {
            let source = reading.found_limit.map(|_| LimitSource::Found);
            if reading.found_limit != self.limit {
                self.limit = reading.found_limit;
                if let Some(detector) = self.detector.as_mut() {
                    detector.set_limit(self.limit);
                }
            }
            self.limit_source = source;
        }
        match self.limit {
            Some(limit) => {
                metrics.set_gauge_limit(&labels, bytes, limit);
            }
            None => {
                metrics.remove_gauge_limit(&labels);
            }
        }

        if now <= self.last_t {
            tracing::debug!(
                service = self.service,
                gauge = self.config.name,
                "clock did not move forward; sample not fed to the detector"
            );
            return;
        }
        self.last_t = now;
        if let Some(history) = self.history.as_mut() {
            let written = history.append(now, value);
            self.note_history(written);
        }
        let Some(detector) = self.detector.as_mut() else {
            return;
        };
        let verdict = detector.push(Sample { t: now, value });
        metrics.set_leak_slope(&labels, bytes, verdict.slope_per_sec);
        let leak = verdict.state == VerdictState::Leak;
        metrics
            .leak_suspected
            .get_or_create(&labels)
            .set(i64::from(leak));
        match verdict.eta_to_limit_secs {
            Some(eta) if leak => {
                metrics.leak_eta.get_or_create(&labels).set(eta);
            }
            _ => {
                metrics.leak_eta.remove(&labels);
            }
        }
        if leak && !self.leak_raised {
            self.leak_raised = true;
            sink.emit(AgentEvent::LeakRaised {
                service: self.service.clone(),
                gauge: self.config.name.clone(),
                at: now,
                value,
                limit: self.limit,
                verdict: verdict.clone(),
            });
        } else if !leak && self.leak_raised {
            self.leak_raised = false;
            sink.emit(AgentEvent::LeakCleared {
                service: self.service.clone(),
                gauge: self.config.name.clone(),
                at: now,
                reason: ClearReason::Verdict,
                verdict: verdict.clone(),
            });
        }
        self.verdict = Some(verdict);
    }

    /// The service was restarted at `now`: a new detector segment.
    pub fn restart(&mut self, now: f64, metrics: &AgentMetrics, sink: &EventSink) {
        if let Some(history) = self.history.as_mut() {
            let written = history.append_restart(now);
            self.note_history(written);
        }
        let Some(detector) = self.detector.as_mut() else {
            return;
        };
        detector.mark_restart(now);
        let verdict = detector.verdict();
        let labels = gauge_labels(&self.service, &self.config.name);
        metrics.leak_suspected.get_or_create(&labels).set(0);
        metrics.leak_eta.remove(&labels);
        if self.leak_raised {
            self.leak_raised = false;
            sink.emit(AgentEvent::LeakCleared {
                service: self.service.clone(),
                gauge: self.config.name.clone(),
                at: now,
                reason: ClearReason::Restart,
                verdict: verdict.clone(),
            });
        }
        self.verdict = Some(verdict);
    }

    fn note_history(&mut self, written: std::io::Result<()>) {
        match written {
            Ok(()) => self.history_failing = false,
            Err(e) if !self.history_failing => {
                self.history_failing = true;
                tracing::error!(service = self.service, gauge = self.config.name, error = %e, "cannot write gauge history");
            }
            Err(_) => {}
        }
    }

    /// The gauge as reported.
    pub fn report(&self) -> GaugeReport {
        GaugeReport {
            name: self.config.name.clone(),
            kind: self.config.spec.kind().to_owned(),
            unit: self.config.spec.unit().to_owned(),
            value: self.value,
            sampled_at: self.sampled_at,
            limit: self.limit,
            limit_source: self.limit_source,
            detect: self.config.detect,
            verdict: self.verdict.clone(),
            leak_suspected: self.leak_raised,
            error: self.error.clone(),
            replayed: self.replayed,
            samples: self.samples,
        }
    }
}
