//! The daemon's Prometheus metrics: one registry, the metric names DESIGN.md promises, and the
//! two text encodings scrapers ask for.
//!
//! Names are a public contract (dashboards and alert rules use them): `sipwatch_probe_up`,
//! `sipwatch_probe_duration_seconds`, `sipwatch_probes_total`, `sipwatch_group_up`,
//! `sipwatch_cert_expiry_seconds`, plus the daemon's own health (`sipwatch_store_*`,
//! `sipwatch_probe_start_lateness_seconds`, `sipwatch_targets`, `sipwatch_nodes`).
//!
//! Added by the Prometheus naming best practices: `sipwatch_build_info{version}`,
//! `sipwatch_node_up{target,node}` (per resolved node, absent until the node has a verdict),
//! `sipwatch_cert_not_after_timestamp_seconds{target}` (alert on
//! `... - time() < 14 * 86400`). `sipwatch_cert_expiry_seconds` is deprecated (a timestamp does not
//! go stale between probes) and stays for one release. `sipwatch_probe_up` is absent until the
//! target has its first verdict, so an `== 0` rule does not fire while a daemon starts.
//!
//! [`Metrics::encode`] writes the Prometheus text format 0.0.4 (what `promtool check metrics`
//! checks, and what `curl` users expect); [`Metrics::encode_openmetrics`] writes OpenMetrics 1.0 as
//! prometheus-client produces it. The two differ only in counter family names (`x_total` in the
//! HELP/TYPE lines versus `x`) and the trailing `# EOF`. The HTTP layer picks one by `Accept`.
//!
//! This module only records and encodes; it decides nothing about states (that is the state
//! board's job) and holds no clock.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode as encode_openmetrics_text;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::model::NodeState;

/// Content type of [`Metrics::encode_openmetrics`], as prometheus-client documents it.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of [`Metrics::encode`] (Prometheus text exposition format 0.0.4).
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// SIP round trips: a loopback OPTIONS answers in well under a millisecond, a WAN one in tens of
/// milliseconds; Timer F gives up after 32 s on UDP, most configs time out in 1 to 5 s.
pub const PROBE_DURATION_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How late a probe started against its schedule: near zero when healthy, seconds when the
/// scheduler is starved (too many targets for the machine, or a blocked runtime).
pub const LATENESS_BUCKETS: [f64; 10] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

const NODE_STATES: [NodeState; 4] = [
    NodeState::Unknown,
    NodeState::Up,
    NodeState::Degraded,
    NodeState::Down,
];

/// A label value kept once and shared by every series that carries it (a target's name is in
/// five families; 10,000 targets made those copies a measurable share of the daemon's memory).
type Name = Arc<str>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetGroupLabels {
    target: Name,
    group: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetResultLabels {
    target: Name,
    result: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetNodeLabels {
    target: Name,
    node: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// A target's series, kept once created (clones share the series' storage), so that a probe or
/// a publish updates them without building label sets, and `remove_target` finds them all. The
/// target's name is the key it is kept under (the `target` label of every series below).
#[derive(Default)]
struct TargetHandles {
    /// `sipwatch_probes_total`, one per `result` seen.
    results: Box<[(Name, Counter)]>,
    duration: Option<DurationHistogram>,
    /// `sipwatch_probe_up` and its `group` label, while the target has a verdict.
    up: Option<(Name, Gauge)>,
    /// `sipwatch_node_up` of the nodes that have a verdict.
    nodes: Box<[(Name, Gauge)]>,
}

/// What [`Metrics`] keeps between calls, behind one lock.
#[derive(Default)]
struct Kept {
    /// FxHash: looked up on every probe; the names come from the config.
    targets: rustc_hash::FxHashMap<Name, TargetHandles>,
    /// Label values other than target names (`result`s, groups, `""`), each kept once.
    values: HashSet<Name>,
}

/// The target's kept name and handles, created at its first use.
fn handles<'a>(
    targets: &'a mut rustc_hash::FxHashMap<Name, TargetHandles>,
    target: &str,
) -> (Name, &'a mut TargetHandles) {
    let name = match targets.get_key_value(target) {
        Some((name, _)) => name.clone(),
        None => {
            let name: Name = target.into();
            targets.insert(name.clone(), TargetHandles::default());
            name
        }
    };
    let h = targets
        .get_mut(target)
        .expect("inserted above when missing");
    (name, h)
}

/// The shared copy of a label value.
fn value(values: &mut HashSet<Name>, v: &str) -> Name {
    if let Some(kept) = values.get(v) {
        return kept.clone();
    }
    let kept: Name = v.into();
    values.insert(kept.clone());
    kept
}

/// Appends to a list that holds one or two entries for the daemon's lifetime (a boxed slice
/// keeps no spare room and no capacity field, once per target).
fn push_kept<T>(list: &mut Box<[T]>, item: T) {
    let mut v = std::mem::take(list).into_vec();
    v.push(item);
    *list = v.into_boxed_slice();
}

/// Removes entry `i` of such a list (order is not kept).
fn remove_kept<T>(list: &mut Box<[T]>, i: usize) -> T {
    let mut v = std::mem::take(list).into_vec();
    let item = v.swap_remove(i);
    *list = v.into_boxed_slice();
    item
}

/// One target's `sipwatch_probe_duration_seconds`: the buckets of [`PROBE_DURATION_BUCKETS`]
/// and the exposition of prometheus-client's [`Histogram`], in 160 bytes instead of about 460
/// (its bucket bounds kept per series in a `Vec`, and a slot for native histograms), once per
/// target.
#[derive(Clone, Debug, Default)]
struct DurationHistogram(Arc<Mutex<DurationCounts>>);

#[derive(Debug, Default)]
struct DurationCounts {
    sum: f64,
    count: u64,
    /// Observations per bucket (not cumulative), the last one `+Inf`.
    buckets: [u64; PROBE_DURATION_BUCKETS.len() + 1],
}

impl DurationHistogram {
    fn observe(&self, v: f64) {
        let Ok(mut c) = self.0.lock() else {
            return;
        };
        c.sum += v;
        c.count += 1;
        // As prometheus-client does: the first bucket whose bound is at least `v`.
        let i = PROBE_DURATION_BUCKETS
            .iter()
            .position(|&bound| bound >= v)
            .unwrap_or(PROBE_DURATION_BUCKETS.len());
        c.buckets[i] += 1;
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, counts) = match self.0.lock() {
            Ok(c) => (c.sum, c.count, c.buckets),
            Err(_) => return Err(std::fmt::Error),
        };
        let mut buckets = [(f64::INFINITY, 0u64); PROBE_DURATION_BUCKETS.len() + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            *slot = (
                PROBE_DURATION_BUCKETS
                    .get(i)
                    .copied()
                    .unwrap_or(f64::INFINITY),
                counts[i],
            );
        }
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The daemon's metrics. `Send + Sync`; share it as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    probe_up: Family<TargetGroupLabels, Gauge>,
    probe_duration: Family<TargetLabels, DurationHistogram>,
    probes: Family<TargetResultLabels, Counter>,
    group_up: Family<GroupLabels, Gauge>,
    cert_expiry: Family<TargetLabels, F64Gauge>,
    store_errors: Counter,
    store_ok: Gauge,
    lateness: Histogram,
    targets: Gauge,
    nodes: Family<StateLabels, Gauge>,
    /// Per target, the handles of its series (see [`TargetHandles`]).
    kept: Mutex<Kept>,
    node_up: Family<TargetNodeLabels, Gauge>,
    cert_not_after: Family<TargetLabels, Gauge>,
    /// Alert delivery health (`sipwatch_notifications_total`, `sipwatch_outbox_*`).
    pub delivery: super::delivery_metrics::DeliveryMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let probe_up = Family::<TargetGroupLabels, Gauge>::default();
        registry.register(
            "sipwatch_probe_up",
            "Whether the target is serving (1) or not (0), after hysteresis; group is empty when the target has none",
            probe_up.clone(),
        );
        let probe_duration = Family::<TargetLabels, DurationHistogram>::default();
        registry.register(
            "sipwatch_probe_duration_seconds",
            "Round-trip time of answered SIP probes, in seconds",
            probe_duration.clone(),
        );
        let probes = Family::<TargetResultLabels, Counter>::default();
        registry.register(
            "sipwatch_probes",
            "Probes finished, by target and result (ok, timeout, transport_error, ...)",
            probes.clone(),
        );
        let group_up = Family::<GroupLabels, Gauge>::default();
        registry.register(
            "sipwatch_group_up",
            "Whether the group keeps its quorum (at least min_up members serving)",
            group_up.clone(),
        );
        let cert_expiry = Family::<TargetLabels, F64Gauge>::default();
        registry.register(
            "sipwatch_cert_expiry_seconds",
            "Deprecated, use sipwatch_cert_not_after_timestamp_seconds - time(): seconds until the TLS certificate presented by the target expires, as of the last probe",
            cert_expiry.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "sipwatch_store_errors",
            "Failed writes to the state store",
            store_errors.clone(),
        );
        let store_ok = Gauge::default();
        registry.register(
            "sipwatch_store_ok",
            "Whether the last write to the state store succeeded",
            store_ok.clone(),
        );
        let lateness = Histogram::new(LATENESS_BUCKETS);
        registry.register(
            "sipwatch_probe_start_lateness_seconds",
            "How late probes started compared with their schedule, in seconds",
            lateness.clone(),
        );
        let targets = Gauge::default();
        registry.register("sipwatch_targets", "Configured targets", targets.clone());
        let nodes = Family::<StateLabels, Gauge>::default();
        registry.register(
            "sipwatch_nodes",
            "Resolved target nodes by state",
            nodes.clone(),
        );
        let node_up = Family::<TargetNodeLabels, Gauge>::default();
        registry.register(
            "sipwatch_node_up",
            "Whether the resolved node (ip:port) of the target is serving (1) or not (0), after hysteresis; absent until the node has a verdict",
            node_up.clone(),
        );
        let cert_not_after = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "sipwatch_cert_not_after_timestamp_seconds",
            "notAfter of the TLS certificate the target presented last, as a unix timestamp",
            cert_not_after.clone(),
        );
        let build_info = Family::<VersionLabels, Gauge>::default();
        registry.register(
            "sipwatch_build_info",
            "Always 1; the version of sipwatch serving these metrics",
            build_info.clone(),
        );
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        let delivery = super::delivery_metrics::DeliveryMetrics::register(&mut registry);
        let metrics = Metrics {
            delivery,
            registry,
            probe_up,
            probe_duration,
            probes,
            group_up,
            cert_expiry,
            store_errors,
            store_ok,
            lateness,
            targets,
            nodes,
            kept: Mutex::new(Kept::default()),
            node_up,
            cert_not_after,
        };
        // Every state series exists from the first scrape.
        metrics.set_node_counts(&[]);
        metrics
    }

    /// A probe of `target` finished with `result` (`ok`, `timeout`, ...). `rtt_secs` is the round
    /// trip when the node answered; unanswered probes only count.
    ///
    /// Called once per probe: the target's counter and histogram handles are kept after their
    /// first use, so a probe costs one lookup by `&str` and no allocation (building the owned
    /// label sets per probe was a measurable share of the daemon's CPU).
    pub fn probe_finished(&self, target: &str, result: &str, rtt_secs: Option<f64>) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        let Kept { targets, values } = &mut *kept;
        let (name, h) = handles(targets, target);
        match h.results.iter().find(|(r, _)| &**r == result) {
            Some((_, counter)) => {
                counter.inc();
            }
            None => {
                let result = value(values, result);
                let counter = self.probes.get_or_create_owned(&TargetResultLabels {
                    target: name.clone(),
                    result: result.clone(),
                });
                counter.inc();
                push_kept(&mut h.results, (result, counter));
            }
        }
        if let Some(rtt) = rtt_secs.filter(|r| r.is_finite() && *r >= 0.0) {
            h.duration
                .get_or_insert_with(|| {
                    self.probe_duration
                        .get_or_create_owned(&TargetLabels { target: name })
                })
                .observe(rtt);
        }
    }

    /// The target's serving state after hysteresis.
    pub fn set_target_up(&self, target: &str, group: Option<&str>, up: bool) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        let group = group.unwrap_or("");
        let Kept { targets, values } = &mut *kept;
        let (name, h) = handles(targets, target);
        if let Some((_, gauge)) = h.up.as_ref().filter(|(g, _)| &**g == group) {
            gauge.set(i64::from(up));
            return;
        }
        // First verdict, or another group after a reload (the old group's series stays, as
        // the label set differs).
        let group = value(values, group);
        let gauge = self.probe_up.get_or_create_owned(&TargetGroupLabels {
            target: name,
            group: group.clone(),
        });
        gauge.set(i64::from(up));
        h.up = Some((group, gauge));
    }

    /// The group's quorum state.
    pub fn set_group_up(&self, group: &str, up: bool) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        let group = value(&mut kept.values, group);
        self.group_up
            .get_or_create(&GroupLabels { group })
            .set(i64::from(up));
    }

    /// Seconds until the target's TLS certificate expires (negative once expired).
    pub fn set_cert_expiry(&self, target: &str, secs: f64) {
        if let Some(labels) = self.target_labels(target) {
            self.cert_expiry.get_or_create(&labels).set(secs);
        }
    }

    /// The `notAfter` (unix seconds) of the target's TLS certificate.
    pub fn set_cert_not_after(&self, target: &str, unix_secs: i64) {
        if let Some(labels) = self.target_labels(target) {
            self.cert_not_after.get_or_create(&labels).set(unix_secs);
        }
    }

    /// `{target}` with the target's kept name.
    fn target_labels(&self, target: &str) -> Option<TargetLabels> {
        let mut kept = self.kept.lock().ok()?;
        let (name, _) = handles(&mut kept.targets, target);
        Some(TargetLabels { target: name })
    }

    /// The target has no verdict yet (every node unknown): no `sipwatch_probe_up` series, so an
    /// `== 0` rule cannot fire on a daemon that just started.
    pub fn clear_target_up(&self, target: &str, group: Option<&str>) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        let Kept { targets, values } = &mut *kept;
        let group = value(values, group.unwrap_or(""));
        let (name, h) = handles(targets, target);
        if h.up.as_ref().is_some_and(|(g, _)| *g == group) {
            h.up = None;
        }
        self.probe_up.remove(&TargetGroupLabels {
            target: name,
            group,
        });
    }

    /// Per-node serving state of a target: `Some(up)` once the node has a verdict, `None` before
    /// (no series). Nodes not in `nodes` (gone from DNS) lose their series.
    pub fn set_node_states(&self, target: &str, nodes: &[(&str, Option<bool>)]) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        let (name, h) = handles(&mut kept.targets, target);
        // Series of nodes gone from DNS or back to no verdict go first.
        let mut i = 0;
        while i < h.nodes.len() {
            let node = &h.nodes[i].0;
            let verdict = nodes
                .iter()
                .find(|(n, _)| *n == &**node)
                .and_then(|(_, v)| *v);
            if verdict.is_none() {
                let (node, _) = remove_kept(&mut h.nodes, i);
                self.node_up.remove(&TargetNodeLabels {
                    target: name.clone(),
                    node,
                });
            } else {
                i += 1;
            }
        }
        for (node, up) in nodes {
            let Some(up) = up else { continue };
            match h.nodes.iter().find(|(n, _)| &**n == *node) {
                Some((_, gauge)) => {
                    gauge.set(i64::from(*up));
                }
                None => {
                    let node: Name = (*node).into();
                    let gauge = self.node_up.get_or_create_owned(&TargetNodeLabels {
                        target: name.clone(),
                        node: node.clone(),
                    });
                    gauge.set(i64::from(*up));
                    push_kept(&mut h.nodes, (node, gauge));
                }
            }
        }
    }

    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    pub fn set_store_ok(&self, ok: bool) {
        self.store_ok.set(i64::from(ok));
    }

    /// How late (seconds) a probe started against its schedule.
    pub fn probe_lateness(&self, secs: f64) {
        if secs.is_finite() {
            self.lateness.observe(secs.max(0.0));
        }
    }

    /// Nodes per state; states missing from `counts` are set to 0, so every state series exists.
    pub fn set_node_counts(&self, counts: &[(NodeState, usize)]) {
        for state in NODE_STATES {
            let n: usize = counts
                .iter()
                .filter(|(s, _)| *s == state)
                .map(|(_, n)| *n)
                .sum();
            self.nodes
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn set_targets(&self, n: usize) {
        self.targets.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Drop every series of a target that left the configuration (on reload).
    pub fn remove_target(&self, target: &str, group: Option<&str>) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        let Kept { targets, values } = &mut *kept;
        let group = value(values, group.unwrap_or(""));
        let (name, _) = handles(targets, target);
        let Some(h) = targets.remove(target) else {
            return;
        };
        for group in h.up.map(|(g, _)| g).into_iter().chain([group]) {
            self.probe_up.remove(&TargetGroupLabels {
                target: name.clone(),
                group,
            });
        }
        let labels = TargetLabels {
            target: name.clone(),
        };
        self.probe_duration.remove(&labels);
        self.cert_expiry.remove(&labels);
        self.cert_not_after.remove(&labels);
        for (node, _) in h.nodes {
            self.node_up.remove(&TargetNodeLabels {
                target: name.clone(),
                node,
            });
        }
        for (result, _) in h.results {
            self.probes.remove(&TargetResultLabels {
                target: name.clone(),
                result,
            });
        }
    }

    /// Drop the series of a group that left the configuration (on reload).
    pub fn remove_group(&self, group: &str) {
        self.group_up.remove(&GroupLabels {
            group: group.into(),
        });
    }

    /// OpenMetrics 1.0 text, ending with `# EOF`; serve with [`OPENMETRICS_CONTENT_TYPE`].
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode_openmetrics_text(&mut out, &self.registry) {
            // Writing into a String cannot fail; keep the scrape alive if it ever does.
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// Prometheus text format 0.0.4 (passes `promtool check metrics`); serve with
    /// [`PROMETHEUS_TEXT_CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        crate::metrics_text::openmetrics_to_prometheus_text(&self.encode_openmetrics())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn exercised() -> Metrics {
        let m = Metrics::new();
        m.probe_finished("edge-1", "ok", Some(0.0123));
        m.probe_finished("edge-1", "timeout", None);
        m.probe_finished("rec \"quoted\"\\name", "ok", Some(0.0004));
        m.set_target_up("edge-1", Some("edges"), true);
        m.set_target_up("lonely", None, false);
        m.set_group_up("edges", true);
        m.set_cert_expiry("edge-1", 86400.0 * 30.0);
        m.store_error();
        m.set_store_ok(false);
        m.probe_lateness(0.002);
        m.set_node_counts(&[(NodeState::Up, 3), (NodeState::Down, 1)]);
        m.set_targets(3);
        m.set_cert_not_after("edge-1", 1_800_000_000);
        m.set_node_states(
            "edge-1",
            &[("10.0.0.1:5060", Some(true)), ("10.0.0.2:5060", None)],
        );
        m
    }

    /// Runs `promtool check metrics` on `text`; returns (success, output).
    pub(crate) fn promtool_check(text: &str) -> (bool, String) {
        let mut child = Command::new("/usr/bin/promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool missing: apt-get install -y prometheus");
        child
            .stdin
            .take()
            .expect("stdin piped")
            .write_all(text.as_bytes())
            .expect("write to promtool");
        let out = child.wait_with_output().expect("promtool ran");
        let mut msg = String::from_utf8_lossy(&out.stdout).into_owned();
        msg.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), msg)
    }

    #[test]
    fn prometheus_text_passes_promtool() {
        let text = exercised().encode();
        let (ok, msg) = promtool_check(&text);
        assert!(ok, "promtool check metrics failed: {msg}\n{text}");
        assert!(msg.trim().is_empty(), "promtool lint: {msg}");
    }

    #[test]
    fn raw_openmetrics_counters_fail_promtool_so_we_rewrite() {
        // Guards the reason for the rewrite: if prometheus-client ever names counter families
        // the 0.0.4 way, this fails and the rewrite can go.
        let (ok, _) = promtool_check(&exercised().encode_openmetrics());
        assert!(!ok);
    }

    #[test]
    fn contract_names_and_values() {
        let text = exercised().encode();
        for needle in [
            "# TYPE sipwatch_probe_up gauge",
            r#"sipwatch_probe_up{target="edge-1",group="edges"} 1"#,
            r#"sipwatch_probe_up{target="lonely",group=""} 0"#,
            "# TYPE sipwatch_probe_duration_seconds histogram",
            r#"sipwatch_probe_duration_seconds_bucket{le="0.0005",target="rec \"quoted\"\\name"} 1"#,
            r#"sipwatch_probe_duration_seconds_count{target="edge-1"} 1"#,
            "# TYPE sipwatch_probes_total counter",
            r#"sipwatch_probes_total{target="edge-1",result="timeout"} 1"#,
            r#"sipwatch_group_up{group="edges"} 1"#,
            r#"sipwatch_cert_expiry_seconds{target="edge-1"} 2592000"#,
            "# TYPE sipwatch_store_errors_total counter",
            "sipwatch_store_errors_total 1",
            "sipwatch_store_ok 0",
            "sipwatch_probe_start_lateness_seconds_count 1",
            "sipwatch_targets 3",
            r#"sipwatch_nodes{state="up"} 3"#,
            r#"sipwatch_nodes{state="down"} 1"#,
            r#"sipwatch_nodes{state="degraded"} 0"#,
            r#"sipwatch_nodes{state="unknown"} 0"#,
            r#"sipwatch_cert_not_after_timestamp_seconds{target="edge-1"} 1800000000"#,
            r#"sipwatch_node_up{target="edge-1",node="10.0.0.1:5060"} 1"#,
            &format!(
                "sipwatch_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(!text.contains("# EOF"));
        let om = exercised().encode_openmetrics();
        assert!(om.ends_with("# EOF\n"));
        assert!(om.contains("# TYPE sipwatch_probes counter"));
    }

    #[test]
    fn probe_up_and_node_up_are_absent_until_a_verdict() {
        let m = Metrics::new();
        m.set_node_states("edge-1", &[("10.0.0.1:5060", None)]);
        m.clear_target_up("edge-1", None);
        let text = m.encode();
        assert!(!text.contains("sipwatch_probe_up{"), "{text}");
        assert!(!text.contains("sipwatch_node_up{"), "{text}");
        m.set_node_states("edge-1", &[("10.0.0.1:5060", Some(false))]);
        m.set_target_up("edge-1", None, false);
        let text = m.encode();
        assert!(text.contains(r#"sipwatch_node_up{target="edge-1",node="10.0.0.1:5060"} 0"#));
        assert!(text.contains(r#"sipwatch_probe_up{target="edge-1",group=""} 0"#));
        // The node left DNS: its series goes.
        m.set_node_states("edge-1", &[("10.0.0.9:5060", Some(true))]);
        let text = m.encode();
        assert!(!text.contains("10.0.0.1:5060"), "{text}");
        assert!(text.contains(r#"node="10.0.0.9:5060"} 1"#), "{text}");
    }

    /// The compact duration histogram writes what prometheus-client's `Histogram` writes for the
    /// same observations (bounds themselves included: a bucket counts values up to its bound).
    #[test]
    fn duration_histogram_encodes_like_prometheus_clients() {
        let values = [
            0.0, 0.0005, 0.0007, 0.001, 0.012, 0.25, 0.3, 4.99, 5.0, 7.5, 120.0,
        ];
        let ours = DurationHistogram::default();
        let theirs = Histogram::new(PROBE_DURATION_BUCKETS);
        for v in values {
            ours.observe(v);
            theirs.observe(v);
        }
        fn text(metric: impl prometheus_client::registry::Metric) -> String {
            let mut registry = Registry::default();
            registry.register("sipwatch_probe_duration_seconds", "help", metric);
            let mut out = String::new();
            encode_openmetrics_text(&mut out, &registry).expect("encodes");
            out
        }
        let (ours, theirs) = (text(ours), text(theirs));
        assert_eq!(ours, theirs);
        assert!(
            ours.contains(r#"sipwatch_probe_duration_seconds_bucket{le="0.001"} 4"#),
            "{ours}"
        );
        assert!(
            ours.contains(r#"sipwatch_probe_duration_seconds_bucket{le="+Inf"} 11"#),
            "{ours}"
        );
    }

    #[test]
    fn remove_target_drops_every_series() {
        let m = exercised();
        m.remove_target("edge-1", Some("edges"));
        m.remove_group("edges");
        let text = m.encode();
        assert!(!text.contains(r#"target="edge-1""#), "{text}");
        assert!(!text.contains(r#"group="edges""#), "{text}");
        assert!(text.contains(r#"target="lonely""#));
        let (ok, msg) = promtool_check(&text);
        assert!(ok, "{msg}");
    }
}
