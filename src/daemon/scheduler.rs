//! The probe scheduler. Every OPTIONS-over-UDP target goes to the UDP lane (`lane.rs`: one task
//! for all of them); every other one (REGISTER, TCP, TLS, a name that may locate to either) gets
//! a lightweight task of its own, each ticking at its own interval with a phase derived from the
//! target's name so thousands of targets spread over the interval instead of firing together.
//!
//! On each tick a target worker re-resolves its name when the DNS answer has expired (RFC 3263, TTL
//! floored at 5 s), reports node-set changes, then probes every node at once: UDP over a small pool
//! of shared sockets (answers routed by Via branch), TCP and TLS over a connection kept per node and
//! reopened once when a kept connection turns out to be dead. A global semaphore bounds the probes
//! in flight; it is FIFO, so no target starves another. A tick never waits for the previous tick's
//! probes (a probe of a dead node runs to its timeout while the next ones start on time); a tick
//! that comes too late because the runtime was starved is skipped, not bunched up. Results go to
//! the state task over a bounded channel.
//!
//! Not here: deciding what a result means (`state/`) or keeping it (store.rs).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use sipwatch_probes::endpoint::UdpEndpoint;
use sipwatch_probes::locate::{Destination, Locator};
use sipwatch_probes::message::Transport;
use sipwatch_probes::outcome::{Policy, ProbeOutcome, ResultKind};
use sipwatch_probes::probe::{blank_outcome, ProbeSpec, Prober};
use sipwatch_probes::transaction::Timers;
use sipwatch_probes::transport::{route_ip, Connection, TlsContext, TlsOptions, TransportError};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use super::config::TargetSettings;
use super::lane::{self, Lane};
use super::ticks::{first_tick, next_tick, phase};
pub use super::ticks::{ProbeReport, SchedulerMsg};

/// Shared by every worker.
struct Shared {
    locator: Locator,
    /// The prober of every target without TLS.
    prober: Prober,
    endpoints: Vec<Arc<UdpEndpoint>>,
    tls: Mutex<HashMap<(Option<PathBuf>, bool), TlsContext>>,
    permits: Arc<Semaphore>,
    tx: mpsc::Sender<SchedulerMsg>,
    epoch: Instant,
}

struct Worker {
    settings: TargetSettings,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// All targets: the UDP lane's, and a worker for each of the others.
pub struct Scheduler {
    shared: Arc<Shared>,
    workers: HashMap<String, Worker>,
    /// Started with the first target it takes.
    lane: Option<Lane>,
    /// The lane's targets and the fingerprints of their settings (a reload compares them).
    lane_targets: HashMap<String, u64>,
}

impl Scheduler {
    /// Binds the shared UDP sockets (`udp_sockets` of them, IPv4) and prepares the resolver.
    pub async fn new(
        udp_sockets: usize,
        max_in_flight: usize,
        tx: mpsc::Sender<SchedulerMsg>,
    ) -> anyhow::Result<Scheduler> {
        let mut endpoints = Vec::new();
        for _ in 0..udp_sockets.max(1) {
            endpoints.push(UdpEndpoint::bind("0.0.0.0:0".parse()?).await?);
        }
        Ok(Scheduler {
            shared: Arc::new(Shared {
                prober: Prober::new(Locator::new(None)?, None),
                locator: Locator::new(None)?,
                endpoints,
                tls: Mutex::new(HashMap::new()),
                permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
                tx,
                epoch: Instant::now(),
            }),
            workers: HashMap::new(),
            lane: None,
            lane_targets: HashMap::new(),
        })
    }

    /// Uses `locator` for DNS instead of the system resolver (tests, `--dns-server`).
    pub fn with_locator(mut self, locator: Locator) -> Scheduler {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.prober = Prober::new(locator.clone(), None);
            shared.locator = locator;
        }
        self
    }

    /// Starts new targets (in the UDP lane, or a worker each), stops those removed, restarts
    /// those whose probe changed; unchanged targets keep running undisturbed.
    pub fn apply(&mut self, targets: &[TargetSettings]) {
        let wanted: HashMap<&str, &TargetSettings> =
            targets.iter().map(|t| (t.name.as_str(), t)).collect();
        let names: Vec<String> = self.workers.keys().cloned().collect();
        for name in names {
            let keep = wanted
                .get(name.as_str())
                .is_some_and(|t| self.workers[&name].settings.same_probe_as(t));
            if !keep {
                if let Some(w) = self.workers.remove(&name) {
                    let _ = w.stop.send(true);
                    w.task.abort();
                }
            }
        }
        let names: Vec<String> = self.lane_targets.keys().cloned().collect();
        for name in names {
            let keep = wanted
                .get(name.as_str())
                .is_some_and(|t| self.lane_targets[&name] == t.probe_fingerprint());
            if !keep {
                self.lane_targets.remove(&name);
                if let Some(lane) = &self.lane {
                    lane.remove(&name);
                }
            }
        }
        for t in targets {
            if self.workers.contains_key(&t.name) || self.lane_targets.contains_key(&t.name) {
                continue;
            }
            if lane::takes(t) {
                if let Some(lane) = self.lane() {
                    lane.add(t);
                    self.lane_targets
                        .insert(t.name.clone(), t.probe_fingerprint());
                    continue;
                }
            }
            let (stop_tx, stop_rx) = watch::channel(false);
            let shared = self.shared.clone();
            let settings = t.clone();
            let task = tokio::spawn(target_worker(shared, settings.clone(), stop_rx));
            self.workers.insert(
                t.name.clone(),
                Worker {
                    settings,
                    stop: stop_tx,
                    task,
                },
            );
        }
    }

    /// The UDP lane, started on first use; None (its targets get workers) if it cannot start.
    fn lane(&mut self) -> Option<&Lane> {
        if self.lane.is_none() {
            match Lane::start(
                self.shared.tx.clone(),
                self.shared.epoch,
                self.shared.locator.clone(),
                self.shared.permits.clone(),
            ) {
                Ok(lane) => self.lane = Some(lane),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the UDP lane; a worker per target instead");
                }
            }
        }
        self.lane.as_ref()
    }

    pub fn targets(&self) -> usize {
        self.workers.len() + self.lane_targets.len()
    }

    /// Datagrams on the shared sockets that no probe was waiting for.
    pub fn unrouted(&self) -> u64 {
        self.shared
            .endpoints
            .iter()
            .map(|e| e.unrouted())
            .sum::<u64>()
            + self.lane.as_ref().map_or(0, |l| l.unrouted())
    }

    /// Stops every worker and waits for them.
    pub async fn shutdown(self) {
        for w in self.workers.values() {
            let _ = w.stop.send(true);
        }
        for (_, w) in self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(2), w.task).await;
        }
        if let Some(lane) = self.lane {
            lane.shutdown().await;
        }
    }
}

/// The probe spec of a target (timers, policy, credentials).
pub fn spec_for(t: &TargetSettings) -> ProbeSpec {
    ProbeSpec {
        target: t.uri.clone(),
        method: t.method,
        transport: t.transport,
        timers: Timers::with_timer_f(t.timeout),
        max_forwards: t.max_forwards,
        policy: Policy {
            expect: t.expect.clone(),
            warn_rtt_ms: t.warn_rtt.map(|d| d.as_secs_f64() * 1e3),
            crit_rtt_ms: t.crit_rtt.map(|d| d.as_secs_f64() * 1e3),
            ..Policy::default()
        },
        credentials: t.credentials.clone(),
        domain: t.domain.clone(),
        realm: t.realm.clone(),
        expires: 60,
        keep_binding: false,
        record_exchange: false,
        request_template: Default::default(),
    }
}

fn tls_for(shared: &Shared, t: &TargetSettings) -> Option<TlsContext> {
    let key = (t.ca.clone(), t.insecure);
    let mut cache = shared.tls.lock().ok()?;
    if let Some(c) = cache.get(&key) {
        return Some(c.clone());
    }
    match TlsContext::new(&TlsOptions {
        ca_file: t.ca.clone(),
        insecure: t.insecure,
    }) {
        Ok(c) => {
            cache.insert(key, c.clone());
            Some(c)
        }
        Err(e) => {
            tracing::error!(target = %t.name, error = %e, "cannot set up TLS");
            None
        }
    }
}

/// A node's kept state between ticks.
struct NodeSlot {
    dest: Arc<Destination>,
    /// `ip:port`, made once: every report of this node carries it.
    name: Arc<str>,
    local_ip: Option<IpAddr>,
    /// The kept TCP/TLS connection, when no probe has it out (boxed: most nodes are UDP and
    /// never have one).
    conn: Option<Box<Connection>>,
    /// Sequence number of the newest probe reported for this node: an older probe that ends
    /// after a newer one (a timeout outliving the next tick's answer) is stale and not reported.
    reported: u64,
}

/// What one probe hands back to its target worker.
struct Finished {
    seq: u64,
    addr: SocketAddr,
    transport: Transport,
    local_ip: Option<IpAddr>,
    conn: Option<Box<Connection>>,
    report: Option<ProbeReport>,
}

/// A target's task. Built in two steps so the task keeps only what it needs between ticks (an
/// `async fn` would keep its arguments, the target's settings, for its whole life): the probe spec,
/// the prober (shared by every target without TLS: the resolver is large), the name.
fn target_worker(
    shared: Arc<Shared>,
    t: TargetSettings,
    mut stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> {
    let spec = spec_for(&t);
    let needs_tls = t.uri.secure
        || t.transport == Some(Transport::Tls)
        || t.uri.transport == Some(Transport::Tls)
        || (t.uri.ip().is_none() && t.transport.is_none());
    let own_prober = if needs_tls {
        tls_for(&shared, &t).map(|tls| Box::new(Prober::new(shared.locator.clone(), Some(tls))))
    } else {
        None
    };
    let endpoint = {
        let mut h = DefaultHasher::new();
        t.name.hash(&mut h);
        shared.endpoints[(h.finish() as usize) % shared.endpoints.len()].clone()
    };
    let target: Arc<str> = Arc::from(t.name.as_str());
    let interval = t.interval.max(Duration::from_millis(1));
    let ph = phase(&t.name, interval);
    drop(t);
    async move {
        let prober: &Prober = own_prober.as_deref().unwrap_or(&shared.prober);
        let mut nodes: Vec<NodeSlot> = Vec::new();
        let mut dns_valid_until: Option<Instant> = None;
        let mut dns_failing = false;
        let mut next = first_tick(shared.epoch, ph, interval);
        let mut seq: u64 = 0;
        // Probes in flight run inside this task (no task per probe). A tick never waits for the
        // previous tick's probes: a node that stopped answering is probed every interval while its
        // earlier probes run to their timeout, so it is down `fail_threshold x interval + timeout`
        // after it died at the latest.
        let mut in_flight = FuturesUnordered::new();
        let sleep = tokio::time::sleep_until(next);
        tokio::pin!(sleep);

        loop {
            tokio::select! {
                _ = &mut sleep => {}
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    let done: Finished = done;
                    let mut report = done.report;
                    if let Some(slot) = nodes
                        .iter_mut()
                        .find(|n| n.dest.addr == done.addr && n.dest.transport == done.transport)
                    {
                        if done.local_ip.is_some() {
                            slot.local_ip = done.local_ip;
                        }
                        if slot.conn.is_none() {
                            slot.conn = done.conn;
                        }
                        if done.seq < slot.reported {
                            report = None;
                        } else {
                            slot.reported = done.seq;
                        }
                    }
                    if let Some(r) = report {
                        if shared.tx.send(SchedulerMsg::Probe(Box::new(r))).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                _ = stop.changed() => return,
            }
            let scheduled = next;
            // DNS (RFC 3263) when the answer expired; literals never expire. Boxed: the resolver's
            // future is large and only needed now and then, and the task lives as long as the target.
            let now = Instant::now();
            if nodes.is_empty() || dns_valid_until.is_some_and(|u| u <= now) {
                let refreshed = Box::pin(locate_nodes(
                    &shared,
                    &spec,
                    &target,
                    &mut nodes,
                    &mut dns_valid_until,
                    &mut dns_failing,
                ))
                .await;
                if !refreshed {
                    return;
                }
            }

            // Probe every node at once; each holds a permit while in flight.
            for slot in nodes.iter_mut() {
                seq += 1;
                // Boxed, so the set's own bookkeeping (allocated for as long as the target lives)
                // does not take the size of a probe.
                in_flight.push(Box::pin(probe_node(
                    &shared,
                    prober,
                    &spec,
                    &endpoint,
                    target.clone(),
                    slot.name.clone(),
                    slot.dest.clone(),
                    slot.local_ip,
                    slot.conn.take(),
                    scheduled,
                    seq,
                )));
            }

            // Next tick; skip the ticks we are already past instead of bunching them.
            next = next_tick(scheduled, interval, Instant::now());
            sleep.as_mut().reset(next);
        }
    }
}

/// Locates the target's nodes again and reports what changed; false when the state task is gone.
async fn locate_nodes(
    shared: &Shared,
    spec: &ProbeSpec,
    name: &str,
    nodes: &mut Vec<NodeSlot>,
    dns_valid_until: &mut Option<Instant>,
    dns_failing: &mut bool,
) -> bool {
    match shared.locator.locate(&spec.target, spec.transport).await {
        Ok(located) => {
            let floor = Instant::now() + Duration::from_secs(5);
            *dns_valid_until = located.valid_until.map(|u| Instant::from_std(u).max(floor));
            let changed = located.destinations.len() != nodes.len()
                || located
                    .destinations
                    .iter()
                    .zip(nodes.iter())
                    .any(|(d, n)| d != &*n.dest);
            if changed {
                let mut old: HashMap<SocketAddr, NodeSlot> =
                    nodes.drain(..).map(|n| (n.dest.addr, n)).collect();
                *nodes = Vec::with_capacity(located.destinations.len());
                for d in located.destinations {
                    let slot = match old.remove(&d.addr) {
                        Some(mut s) if s.dest.transport == d.transport => {
                            s.dest = Arc::new(d);
                            s
                        }
                        _ => NodeSlot {
                            name: Arc::from(d.addr.to_string()),
                            dest: Arc::new(d),
                            local_ip: None,
                            conn: None,
                            reported: 0,
                        },
                    };
                    nodes.push(slot);
                }
                let list = nodes
                    .iter()
                    .map(|n| (n.name.to_string(), n.dest.transport.to_string()))
                    .collect();
                if shared
                    .tx
                    .send(SchedulerMsg::Nodes {
                        target: name.to_string(),
                        nodes: list,
                    })
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            if *dns_failing {
                *dns_failing = false;
                let _ = shared
                    .tx
                    .send(SchedulerMsg::DnsOk {
                        target: name.to_string(),
                    })
                    .await;
            }
        }
        Err(e) => {
            *dns_failing = true;
            *dns_valid_until = Some(Instant::now() + Duration::from_secs(5));
            tracing::warn!(target = %name, error = %e, "DNS lookup failed");
            if shared
                .tx
                .send(SchedulerMsg::DnsError {
                    target: name.to_string(),
                    error: e.to_string(),
                })
                .await
                .is_err()
            {
                return false;
            }
        }
    }
    true
}

/// One probe of one node, from waiting for its permit to its report.
#[allow(clippy::too_many_arguments)]
async fn probe_node(
    shared: &Shared,
    prober: &Prober,
    spec: &ProbeSpec,
    endpoint: &Arc<UdpEndpoint>,
    target: Arc<str>,
    node: Arc<str>,
    dest: Arc<Destination>,
    mut local_ip: Option<IpAddr>,
    mut conn: Option<Box<Connection>>,
    scheduled: Instant,
    seq: u64,
) -> Finished {
    let mut done = Finished {
        seq,
        addr: dest.addr,
        transport: dest.transport,
        local_ip: None,
        conn: None,
        report: None,
    };
    let Ok(_permit) = shared.permits.acquire().await else {
        done.conn = conn;
        return done;
    };
    let lateness = Instant::now().saturating_duration_since(scheduled);
    let outcome = probe_on_path(prober, spec, endpoint, &dest, &mut local_ip, &mut conn).await;
    done.local_ip = local_ip;
    done.conn = conn;
    done.report = Some(ProbeReport {
        target,
        node,
        outcome,
        lateness,
        scheduled,
    });
    done
}

/// One probe of one node over the right path: a shared UDP socket slot, or the node's kept
/// TCP/TLS connection (reopened once if it turned out to be dead).
async fn probe_on_path(
    prober: &Prober,
    spec: &ProbeSpec,
    endpoint: &Arc<UdpEndpoint>,
    dest: &Destination,
    slot_ip: &mut Option<IpAddr>,
    slot_conn: &mut Option<Box<Connection>>,
) -> ProbeOutcome {
    // Without `remote` and `located_by`: the daemon names the node itself (`ProbeReport::node`)
    // and never reads them, and spelling a socket address per probe is not free.
    let blank = blank_outcome(spec, dest.transport, None);
    match dest.transport {
        Transport::Udp => {
            let local_ip = match *slot_ip {
                Some(ip) => ip,
                None => match Box::pin(route_ip(dest.addr)).await {
                    Ok(ip) => {
                        *slot_ip = Some(ip);
                        ip
                    }
                    Err(e) => {
                        let mut o = blank;
                        o.status = sipwatch_probes::outcome::Status::Critical;
                        o.result = ResultKind::TransportError;
                        o.reason = format!("no route to {}: {e}", dest.addr);
                        return o;
                    }
                },
            };
            let mut wire = endpoint.slot(dest.addr, local_ip);
            prober.probe_on(spec, dest, &mut wire, blank).await
        }
        // Boxed: a TCP/TLS probe's future (connect, TLS handshake) is several times the size of
        // a UDP one, and every UDP probe in flight would carry that size otherwise.
        Transport::Tcp | Transport::Tls => {
            Box::pin(probe_stream(prober, spec, dest, slot_conn, blank)).await
        }
    }
}

/// A probe over the node's kept TCP/TLS connection, unless a probe of the previous tick still has
/// it out (then this one opens its own; the one handed back first is kept), reopened once if it
/// turned out to be dead.
async fn probe_stream(
    prober: &Prober,
    spec: &ProbeSpec,
    dest: &Destination,
    slot_conn: &mut Option<Box<Connection>>,
    blank: ProbeOutcome,
) -> ProbeOutcome {
    let reused = slot_conn.is_some();
    if let Some(conn) = slot_conn.as_mut() {
        let o = prober
            .probe_on(spec, dest, &mut **conn, blank.clone())
            .await;
        if o.result != ResultKind::TransportError && o.result != ResultKind::BadResponse {
            return o;
        }
        *slot_conn = None;
        if !reused {
            return o;
        }
        tracing::debug!(node = %dest.addr, "kept connection was dead; reconnecting");
    }
    match prober.open(dest, spec.timers.timer_f).await {
        Ok(mut conn) => {
            let o = prober.probe_on(spec, dest, &mut conn, blank).await;
            if o.result != ResultKind::TransportError && o.result != ResultKind::BadResponse {
                *slot_conn = Some(Box::new(conn));
            }
            o
        }
        Err(e) => failed(blank, e),
    }
}

fn failed(mut o: ProbeOutcome, e: TransportError) -> ProbeOutcome {
    o.status = sipwatch_probes::outcome::Status::Critical;
    o.result = ResultKind::TransportError;
    o.reason = e.to_string();
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_spread_and_are_stable() {
        let interval = Duration::from_secs(10);
        let mut buckets = [0usize; 10];
        for i in 0..10_000 {
            let p = phase(&format!("target-{i}"), interval);
            assert!(p < interval);
            buckets[(p.as_secs()) as usize] += 1;
        }
        // Roughly uniform: every second of the interval gets 7..13 % of the targets.
        assert!(
            buckets.iter().all(|b| (700..1300).contains(b)),
            "{buckets:?}"
        );
        assert_eq!(phase("edge-1", interval), phase("edge-1", interval));
    }
}

/// The scheduler's ticks under tokio's paused clock: time moves only when every task waits, and
/// then jumps straight to the next timer, so every instant below is exact (no margins).
#[cfg(test)]
mod virtual_time {
    use super::*;
    use crate::daemon::config::DaemonConfig;
    use std::path::Path;

    /// A node that never answers: the port is bound (so no ICMP error) and never read.
    fn silent_node() -> std::net::UdpSocket {
        std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP port")
    }

    fn target(node: &std::net::UdpSocket, interval: &str, timeout: &str) -> TargetSettings {
        let port = node.local_addr().expect("bound").port();
        let src = format!(
            "[http]\nlisten = \"127.0.0.1:9\"\n[store]\npath = \"unused.db\"\n\
             [[target]]\nname = \"t\"\nuri = \"sip:probe@127.0.0.1:{port}\"\n\
             interval = \"{interval}\"\ntimeout = \"{timeout}\"\n"
        );
        DaemonConfig::from_source(Path::new("sipwatch.toml"), &src)
            .expect("a valid config")
            .targets
            .remove(0)
    }

    /// One target running in a scheduler, and its reports.
    struct Run {
        _sched: Scheduler,
        /// The node probed, kept bound for the run.
        _node: Option<std::net::UdpSocket>,
        rx: mpsc::Receiver<SchedulerMsg>,
        /// Reports received in a batch and not yet looked at.
        pending: std::collections::VecDeque<ProbeReport>,
        /// `epoch + phase`: the target's ticks are this plus whole intervals.
        grid0: Instant,
        interval: Duration,
    }

    async fn start(t: TargetSettings) -> Run {
        let (tx, rx) = mpsc::channel(64);
        let mut sched = Scheduler::new(1, 16, tx)
            .await
            .expect("the scheduler starts");
        let grid0 = sched.shared.epoch + phase(&t.name, t.interval);
        let interval = t.interval;
        sched.apply(&[t]);
        Run {
            _sched: sched,
            _node: None,
            rx,
            pending: Default::default(),
            grid0,
            interval,
        }
    }

    impl Run {
        /// The next probe report (node lists skipped).
        async fn report(&mut self) -> ProbeReport {
            loop {
                if let Some(r) = self.pending.pop_front() {
                    return r;
                }
                match self.rx.recv().await.expect("the scheduler is running") {
                    SchedulerMsg::Probe(r) => return *r,
                    SchedulerMsg::Probes(batch) => self.pending.extend(batch),
                    SchedulerMsg::Nodes { .. } => {}
                    other => panic!("unexpected message {other:?}"),
                }
            }
        }

        /// Which tick of the target's grid `at` is; fails when `at` is off the grid.
        fn tick(&self, at: Instant) -> u128 {
            let off = at
                .checked_duration_since(self.grid0)
                .expect("a tick before the target's first grid instant");
            assert_eq!(
                off.as_nanos() % self.interval.as_nanos(),
                0,
                "a tick {off:?} after the grid's start is off the {:?} grid",
                self.interval
            );
            off.as_nanos() / self.interval.as_nanos()
        }
    }

    /// A silent node probed every `interval` with `timeout`: the run, its first report and tick.
    async fn first_tick(interval: &str, timeout: &str) -> (Run, ProbeReport, u128) {
        let node = silent_node();
        let mut run = start(target(&node, interval, timeout)).await;
        run._node = Some(node);
        let first = run.report().await;
        assert_eq!(first.outcome.result, ResultKind::Timeout);
        let k0 = run.tick(first.scheduled);
        (run, first, k0)
    }

    impl Run {
        /// The next reports are of ticks `ticks`, each started on time and timed out.
        async fn expect_ticks(&mut self, ticks: std::ops::Range<u128>, why: &str) {
            for k in ticks {
                let r = self.report().await;
                assert_eq!(r.outcome.result, ResultKind::Timeout);
                assert_eq!(self.tick(r.scheduled), k, "{why}");
                assert_eq!(r.lateness, Duration::ZERO, "tick {k} started late");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_land_on_the_interval_grid_every_interval() {
        let (mut run, first, k0) = first_tick("1s", "300ms").await;
        assert!(
            k0 <= 1,
            "the first tick is the first grid instant, not tick {k0}"
        );
        assert_eq!(first.lateness, Duration::ZERO);
        run.expect_ticks(k0 + 1..k0 + 6, "ticks follow each other")
            .await;
    }

    /// The detection-time rule: a probe of a dead node runs to its timeout (here the whole
    /// interval), and the next tick still starts on time, so a dead node is probed every interval
    /// and is down `fail_threshold x interval + timeout` after it died at the latest.
    #[tokio::test(start_paused = true)]
    async fn a_probe_running_to_its_timeout_does_not_skip_the_next_tick() {
        let (mut run, _, k0) = first_tick("1s", "1s").await;
        run.expect_ticks(
            k0 + 1..k0 + 5,
            "a tick was skipped while the previous probe ran to its timeout",
        )
        .await;
    }

    /// A tick that comes late (the thread was held up past it) still runs, once, with its
    /// lateness reported; the ticks missed meanwhile are skipped, not bunched up, and the next
    /// one is back on the grid.
    #[tokio::test(start_paused = true)]
    async fn a_late_tick_runs_once_and_the_missed_ones_are_skipped() {
        let (mut run, first, k0) = first_tick("1s", "300ms").await;
        // The report came at the probe's timeout, 300 ms after its tick: jump 2.5 s at once,
        // past ticks k0+1 and k0+2.
        assert_eq!(Instant::now() - first.scheduled, Duration::from_millis(300));
        tokio::time::advance(Duration::from_millis(2500)).await;
        let late = run.report().await;
        assert_eq!(run.tick(late.scheduled), k0 + 1, "the late tick runs");
        assert_eq!(late.lateness, Duration::from_millis(1800));
        let next = run.report().await;
        assert_eq!(
            run.tick(next.scheduled),
            k0 + 3,
            "tick k0+2, already past when the late one ran, is skipped and the next is on the grid"
        );
        assert_eq!(next.lateness, Duration::ZERO);
    }
}
