//! The UDP lane: every target pinged with OPTIONS over UDP, driven by one task.
//!
//! Most targets of a SIP platform are OPTIONS pings over UDP, and a daemon probes thousands of
//! them every few seconds. A task per target cost about 3.5 KB each and a thread wake-up per
//! probe; here one task keeps every such target in a vector (an entry's index is its id), its
//! ticks and the transactions' timers in one schedule (batched by instant), and one socket:
//!
//! - A tick starts one RFC 3261 §17.1.2 client transaction ([`ClientTransaction`]) per node; the
//!   request is the node's [`RequestTemplate`] with fresh identifiers written in. Every request
//!   due at the same instant (targets share 20 ms grid slots, `ticks::PHASE_GRID_MS`) goes out in one `sendmmsg`.
//! - The top Via branch of a request names its target and probe (`z9hG4bK` + id + sequence +
//!   random), so an answer, read in batches by `recvmmsg`, finds its transaction by index; the
//!   transaction then checks the whole key (branch, CSeq method, Call-ID, From tag).
//! - ICMP errors (`IP_RECVERR`): the error queue hands back the datagram that drew the error,
//!   whose branch names the probe, which fails at once ("connection refused").
//! - The heap holds each target's next tick and each transaction's next timer (E, F); stale
//!   entries (a finished probe, a removed target) are skipped when they come up.
//! - Ticks follow the same grid as the workers' (`ticks.rs`): a tick never waits for the previous
//!   tick's probes, a late one runs once and the missed ones are skipped, and a probe that ends
//!   after a newer one of the same node is not reported.
//! - Names are located (RFC 3263) by a short task of their own when their answer expires; the
//!   lane keeps probing the nodes it has meanwhile.
//!
//! Not here: REGISTER, TCP and TLS targets (a worker each, `scheduler.rs`), and what a result
//! means (`state/`).

use std::cmp::Reverse;
use std::collections::{hash_map, BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use rand::Rng;
use sipwatch_probes::endpoint::{is_async_icmp_error, recv_error, top_via_branch, SEND_RETRIES};
use sipwatch_probes::locate::{Located, Locator};
use sipwatch_probes::message::{
    build_request, parse_response, Method, RequestTemplate, ResponseHead, TargetUri, Transport,
};
use sipwatch_probes::mmsg::{enable_timestamps, send_batch, RecvBatch};
use sipwatch_probes::outcome::{Policy, ProbeOutcome, ResultKind, Status};
use sipwatch_probes::probe::{
    garbage_reason, hand_over, judge_options_final, nothing_observed, options_request,
    timeout_reason, unix_now,
};
use sipwatch_probes::transaction::{
    ClientTransaction, Reliability, Timers, TransactionEvent, TransactionKey,
};
use sipwatch_probes::transport::{enable_icmp_errors, MAX_MESSAGE};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::config::TargetSettings;
use super::ticks::{first_tick, next_tick, phase, ProbeReport, SchedulerMsg};

/// Whether the lane drives `t`: an OPTIONS ping whose transport is UDP for sure (forced, or a
/// numeric host without `transport=`, RFC 3263 §4.1). A name without a forced transport may
/// locate to TCP or TLS, so it gets a worker of its own.
pub fn takes(t: &TargetSettings) -> bool {
    let transport = t
        .transport
        .or(t.uri.transport)
        .or(t.uri.ip().map(|_| Transport::Udp));
    t.method == Method::Options && !t.uri.secure && transport == Some(Transport::Udp)
}

/// The branch prefix (RFC 3261 magic cookie) and the hex digits after it: 8 of target id, 8 of
/// probe sequence, 8 random; as long as `message::new_branch`'s, which the template was made with.
const COOKIE: &str = "z9hG4bK";

/// One grid slot. Answers do not wake the lane: while any probe awaits one, it reads at every
/// slot boundary, which with targets in every slot is the wake-up it makes for its ticks anyway.
/// It reads the answers to the last slot's pings in one system call, then sends this slot's in
/// another. RTTs do not grow: they end at the kernel's arrival stamp. An answer is acted on at
/// most this much later (a detection time of seconds does not notice).
const READ_COALESCE: Duration = Duration::from_millis(super::ticks::PHASE_GRID_MS);
const BRANCH_HEX: usize = 24;

/// The lane, as its owner (the scheduler) sees it.
pub struct Lane {
    cmds: mpsc::UnboundedSender<Cmd>,
    unrouted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

enum Cmd {
    Add(Box<TargetSettings>),
    Remove(String),
    /// A name located again (by a task of its own): the target's id and generation, the answer.
    Located {
        id: u32,
        gen: u32,
        answer: Result<Located, String>,
    },
}

impl Lane {
    /// Binds the lane's socket (IPv4, any port, ICMP errors on) and starts its task.
    pub fn start(
        tx: mpsc::Sender<SchedulerMsg>,
        epoch: Instant,
        locator: Locator,
        permits: Arc<Semaphore>,
    ) -> io::Result<Lane> {
        let std_socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        std_socket.set_nonblocking(true)?;
        enable_icmp_errors(&std_socket, false);
        enable_timestamps(std_socket.as_raw_fd())?;
        let port = std_socket.local_addr()?.port();
        // Registered so that an answer arriving does not wake the thread (at 2,000 answers a
        // second that was three wake-ups per slot); the lane reads on its grid. epoll reports
        // errors (EPOLLERR: an ICMP message in the error queue) whatever the interest, and
        // tokio's ERROR interest would add EPOLLIN, so the interest is PRIORITY (EPOLLPRI, which
        // UDP never raises).
        // SAFETY: the socket owns its fd, and the lane neither closes nor replaces it while the
        // AsyncFd holds it (it is dropped with it).
        let socket = unsafe { AsyncFd::register_with_interest(std_socket, Interest::PRIORITY)? };
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let unrouted = Arc::new(AtomicU64::new(0));
        let run = LaneTask {
            socket,
            port,
            outstanding: Arc::new(()),
            cmds: cmd_rx,
            self_tx: cmd_tx.clone(),
            tx,
            epoch,
            locator,
            permits,
            targets: Vec::new(),
            free: Vec::new(),
            gens: Vec::new(),
            by_name: HashMap::new(),
            timers: Schedule::default(),
            waiting: std::collections::VecDeque::new(),
            routes: HashMap::new(),
            sends: Vec::new(),
            reports: Vec::new(),
            batch_room: 0,
            unrouted: unrouted.clone(),
        };
        Ok(Lane {
            cmds: cmd_tx,
            unrouted,
            task: tokio::spawn(run.run()),
        })
    }

    pub fn add(&self, t: &TargetSettings) {
        let _ = self.cmds.send(Cmd::Add(Box::new(t.clone())));
    }

    pub fn remove(&self, name: &str) {
        let _ = self.cmds.send(Cmd::Remove(name.to_string()));
    }

    /// Datagrams on the lane's socket that no probe was waiting for.
    pub fn unrouted(&self) -> u64 {
        self.unrouted.load(Ordering::Relaxed)
    }

    pub async fn shutdown(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// One target of the lane.
struct Target {
    name: Arc<str>,
    /// Bumped when the entry is reused for another target: older timers and answers are stale.
    gen: u32,
    /// Kept while it may be located again: a numeric host is located once and drops it.
    uri: Option<Box<TargetUri>>,
    transport: Option<Transport>,
    interval: Duration,
    timers: Timers,
    policy: Policy,
    max_forwards: u8,
    /// The probe sequence; also in the branch.
    seq: u32,
    nodes: Vec<Node>,
    /// When the located answer expires (None: a numeric host, never).
    dns_valid_until: Option<Instant>,
    dns_failing: bool,
    locating: bool,
}

/// One located node of a target.
struct Node {
    /// `ip:port`, made once: every report of this node carries it.
    name: Arc<str>,
    addr: SocketAddr,
    /// The request with the identifiers to overwrite, or why none could be built.
    template: Result<RequestTemplate, String>,
    /// Debug builds check every request against rsip's rendering of the same identifiers.
    #[cfg(debug_assertions)]
    spec: Option<sipwatch_probes::message::RequestSpec>,
    local_ip: IpAddr,
    probes: Vec<InFlight>,
    /// Sequence number of the newest probe reported: an older probe that ends after a newer
    /// one is stale and not reported.
    reported: u32,
}

/// One probe in flight.
struct InFlight {
    seq: u32,
    tx: ClientTransaction<ResponseHead>,
    scheduled: Instant,
    lateness: Duration,
    started_at: f64,
    first_send: Option<std::time::Instant>,
    garbage: Option<String>,
    garbage_count: u32,
    /// Datagrams with our branch from another address.
    foreign: u32,
    _permit: OwnedSemaphorePermit,
    /// Counts this probe in [`LaneTask::outstanding`].
    _outstanding: Arc<()>,
}

/// A heap entry: at `at`, target `id` of generation `gen` ticks (`seq` 0) or probe `seq`'s
/// transaction has a timer due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Instant,
    id: u32,
    gen: u32,
    seq: u32,
}

/// The lane's timers, batched by instant: targets in one grid slot tick at the very same instant,
/// and their probes' transaction timers come up together too, so a heap of distinct instants and
/// a list per instant take far fewer heap operations than one heap entry each (a heap entry per
/// tick and per timer was 3 % of the daemon's CPU at 2,000 probes a second).
#[derive(Default)]
struct Schedule {
    instants: BinaryHeap<Reverse<Instant>>,
    due: HashMap<Instant, Vec<Due>>,
    /// Emptied lists, kept for reuse.
    spare: Vec<Vec<Due>>,
}

impl Schedule {
    fn push(&mut self, d: Due) {
        match self.due.entry(d.at) {
            hash_map::Entry::Occupied(mut e) => e.get_mut().push(d),
            hash_map::Entry::Vacant(v) => {
                self.instants.push(Reverse(d.at));
                let mut list = self.spare.pop().unwrap_or_default();
                list.push(d);
                v.insert(list);
            }
        }
    }

    /// The earliest instant with something due.
    fn next(&self) -> Option<Instant> {
        self.instants.peek().map(|Reverse(at)| *at)
    }

    /// Everything due at the earliest instant, if that is not after `now`.
    fn pop_due(&mut self, now: Instant) -> Option<Vec<Due>> {
        let at = self.next().filter(|at| *at <= now)?;
        self.instants.pop();
        self.due.remove(&at)
    }

    fn recycle(&mut self, mut list: Vec<Due>) {
        if self.spare.len() < 64 {
            list.clear();
            self.spare.push(list);
        }
    }
}

struct LaneTask {
    /// Nonblocking; the reactor reports only its errors (ICMP, `IP_RECVERR`).
    socket: AsyncFd<std::net::UdpSocket>,
    port: u16,
    /// One clone per probe awaiting its answer: while there is any, the lane reads every slot.
    outstanding: Arc<()>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    self_tx: mpsc::UnboundedSender<Cmd>,
    tx: mpsc::Sender<SchedulerMsg>,
    epoch: Instant,
    locator: Locator,
    permits: Arc<Semaphore>,
    /// Indexed by id; None for a free entry.
    targets: Vec<Option<Target>>,
    free: Vec<u32>,
    /// The generation of each entry, bumped when its target is removed.
    gens: Vec<u32>,
    by_name: HashMap<Arc<str>, u32>,
    timers: Schedule,
    /// Ticks waiting for a permit (`[scheduler] max_in_flight`), first come first served.
    waiting: std::collections::VecDeque<(u32, u32, Instant)>,
    /// The local address each destination address is reached from (for Via and Call-ID).
    routes: HashMap<IpAddr, IpAddr>,
    /// Requests to send at the end of this turn: destination, bytes, and whose (id, seq).
    sends: Vec<(SocketAddr, bytes::Bytes, u32, u32)>,
    /// Reports to hand to the state task at the end of this turn.
    reports: Vec<SchedulerMsg>,
    /// Room for the next batch of probe reports: the last batch's size and a quarter.
    batch_room: usize,
    unrouted: Arc<AtomicU64>,
}

impl LaneTask {
    async fn run(mut self) {
        let mut batch = RecvBatch::new(MAX_MESSAGE);
        let far = Duration::from_secs(3600);
        let sleep = tokio::time::sleep(far);
        tokio::pin!(sleep);
        // When to read next: the next grid slot, while any probe awaits its answer.
        let mut read_at: Option<Instant> = None;
        loop {
            let next = self.timers.next();
            let wake = match (next, read_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            sleep
                .as_mut()
                .reset(wake.unwrap_or_else(|| Instant::now() + far));
            tokio::select! {
                cmd = self.cmds.recv() => {
                    let Some(cmd) = cmd else { return };
                    self.command(cmd);
                    while let Ok(cmd) = self.cmds.try_recv() {
                        self.command(cmd);
                    }
                    // After a burst of targets (start-up, a reload), no doubling slack.
                    if self.targets.capacity() > self.targets.len() + self.targets.len() / 8 + 16 {
                        self.targets.shrink_to_fit();
                        self.gens.shrink_to_fit();
                    }
                }
                // An ICMP error: the probe it names fails now, not at its timeout. An error
                // here means the reactor is gone (the runtime is shutting down): stop, rather
                // than spin on a future that is always ready.
                ready = self.socket.ready(Interest::ERROR) => {
                    if ready.is_err() {
                        return;
                    }
                }
                _ = &mut sleep => {}
            }
            let now = Instant::now();
            let timer_due = self.timers.next().is_some_and(|at| at <= now);
            if read_at.is_some_and(|at| at <= now) || timer_due {
                read_at = None;
                self.read_answers(&mut batch);
            }
            // ICMP errors wait in the error queue; ask whether any came without waiting.
            self.check_errors();
            self.fire_due();
            self.start_waiting();
            self.flush_sends();
            // Answers are read on the grid of slots (where the ticks are), so a wake-up to read
            // is usually one the lane makes for its ticks anyway. The kernel stamps each
            // answer's arrival, so reading it up to a slot later does not lengthen its RTT.
            if read_at.is_none()
                && (Arc::strong_count(&self.outstanding) > 1 || !self.sends.is_empty())
            {
                read_at = Some(self.next_slot(Instant::now()));
            }
            for msg in self.reports.drain(..) {
                if let SchedulerMsg::Probes(batch) = &msg {
                    self.batch_room = batch.len() + batch.len() / 4;
                }
                if self.tx.send(msg).await.is_err() {
                    return;
                }
            }
        }
    }

    /// The first grid slot (`epoch` + a whole number of [`READ_COALESCE`]) after `now`.
    fn next_slot(&self, now: Instant) -> Instant {
        let slot = READ_COALESCE.as_nanos();
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        let k = since / slot + 1;
        self.epoch + Duration::from_nanos((k * slot).min(u128::from(u64::MAX)) as u64)
    }

    /// Reads the error queue when the reactor saw an error on the socket (no waiting).
    fn check_errors(&mut self) {
        let seen = match self.socket.ready(Interest::ERROR).now_or_never() {
            Some(Ok(mut guard)) => {
                // Cleared before draining: an error queued meanwhile is seen next time.
                guard.clear_ready_matching(Ready::ERROR);
                true
            }
            _ => false,
        };
        if seen {
            self.read_errors();
        }
    }

    fn target(&mut self, id: u32, gen: u32) -> Option<&mut Target> {
        entry(&mut self.targets, id, gen)
    }

    /// The generation of the target at `id`, if any.
    fn gen_of(&self, id: u32) -> Option<u32> {
        self.targets.get(id as usize)?.as_ref().map(|t| t.gen)
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Add(t) => self.add(*t),
            Cmd::Remove(name) => {
                if let Some(id) = self.by_name.remove(name.as_str()) {
                    // In-flight probes and timers go with it; its permits come back.
                    self.targets[id as usize] = None;
                    self.gens[id as usize] = self.gens[id as usize].wrapping_add(1);
                    self.free.push(id);
                }
            }
            Cmd::Located { id, gen, answer } => self.located(id, gen, answer),
        }
    }

    fn add(&mut self, t: TargetSettings) {
        if self.by_name.contains_key(t.name.as_str()) {
            return;
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.targets.push(None);
                self.gens.push(0);
                (self.targets.len() - 1) as u32
            }
        };
        let gen = self.gens[id as usize];
        let name: Arc<str> = Arc::from(t.name.as_str());
        let interval = t.interval.max(Duration::from_millis(1));
        let policy = Policy {
            expect: t.expect.clone(),
            warn_rtt_ms: t.warn_rtt.map(|d| d.as_secs_f64() * 1e3),
            crit_rtt_ms: t.crit_rtt.map(|d| d.as_secs_f64() * 1e3),
            ..Policy::default()
        };
        let first = first_tick(self.epoch, phase(&t.name, interval), interval);
        self.targets[id as usize] = Some(Target {
            name: name.clone(),
            gen,
            uri: Some(Box::new(t.uri)),
            transport: t.transport,
            interval,
            timers: Timers::with_timer_f(t.timeout),
            policy,
            max_forwards: t.max_forwards,
            seq: 0,
            nodes: Vec::new(),
            dns_valid_until: None,
            dns_failing: false,
            locating: false,
        });
        self.by_name.insert(name, id);
        self.locate(id, gen);
        self.timers.push(Due {
            at: first,
            id,
            gen,
            seq: 0,
        });
    }

    /// Locates the target's name: at once for a numeric host, else in a task of its own whose
    /// answer comes back as a command.
    fn locate(&mut self, id: u32, gen: u32) {
        let Some(t) = self.target(id, gen) else {
            return;
        };
        let Some(uri) = t.uri.clone() else {
            return;
        };
        t.locating = true;
        let forced = t.transport;
        let locator = self.locator.clone();
        let lookup = async move {
            locator
                .locate(&uri, forced)
                .await
                .map_err(|e| e.to_string())
        };
        let mut lookup = Box::pin(lookup);
        match (&mut lookup).now_or_never() {
            Some(answer) => self.located(id, gen, answer),
            None => {
                let back = self.self_tx.clone();
                tokio::spawn(async move {
                    let answer = lookup.await;
                    let _ = back.send(Cmd::Located { id, gen, answer });
                });
            }
        }
    }

    fn located(&mut self, id: u32, gen: u32, answer: Result<Located, String>) {
        let port = self.port;
        let (nodes_changed, dns_error, dns_ok, name) = {
            let Some(t) = self.targets.get(id as usize).and_then(|t| t.as_ref()) else {
                return;
            };
            if t.gen != gen {
                return;
            }
            match answer {
                Ok(located) => {
                    let mut routes = std::mem::take(&mut self.routes);
                    let t = self.target(id, gen).expect("the target was just looked up");
                    t.locating = false;
                    let floor = Instant::now() + Duration::from_secs(5);
                    t.dns_valid_until =
                        located.valid_until.map(|u| Instant::from_std(u).max(floor));
                    let wanted: Vec<SocketAddr> = located
                        .destinations
                        .iter()
                        .filter(|d| d.transport == Transport::Udp)
                        .map(|d| d.addr)
                        .collect();
                    let changed = wanted.len() != t.nodes.len()
                        || wanted.iter().zip(&t.nodes).any(|(a, n)| *a != n.addr);
                    if let (true, Some(uri)) = (changed, t.uri.as_deref()) {
                        let mut old: HashMap<SocketAddr, Node> =
                            t.nodes.drain(..).map(|n| (n.addr, n)).collect();
                        t.nodes = Vec::with_capacity(wanted.len());
                        for addr in wanted {
                            let node = old.remove(&addr).unwrap_or_else(|| {
                                new_node(uri, t.max_forwards, addr, port, &mut routes)
                            });
                            t.nodes.push(node);
                        }
                    }
                    if t.dns_valid_until.is_none() {
                        // A numeric host: never located again.
                        t.uri = None;
                    }
                    let dns_ok = std::mem::replace(&mut t.dns_failing, false);
                    let name = t.name.clone();
                    let list = changed.then(|| {
                        t.nodes
                            .iter()
                            .map(|n| (n.name.to_string(), Transport::Udp.to_string()))
                            .collect::<Vec<_>>()
                    });
                    self.routes = routes;
                    (list, None, dns_ok, name)
                }
                Err(error) => {
                    let t = self.target(id, gen).expect("the target was just looked up");
                    t.locating = false;
                    t.dns_failing = true;
                    t.dns_valid_until = Some(Instant::now() + Duration::from_secs(5));
                    tracing::warn!(target = %t.name, error = %error, "DNS lookup failed");
                    (None, Some(error), false, t.name.clone())
                }
            }
        };
        let target = name.to_string();
        if let Some(nodes) = nodes_changed {
            self.reports.push(SchedulerMsg::Nodes {
                target: target.clone(),
                nodes,
            });
        }
        if let Some(error) = dns_error {
            self.reports.push(SchedulerMsg::DnsError { target, error });
        } else if dns_ok {
            self.reports.push(SchedulerMsg::DnsOk { target });
        }
    }

    /// Runs every entry that is due: ticks start probes, transaction timers fire.
    fn fire_due(&mut self) {
        let now = Instant::now();
        while let Some(batch) = self.timers.pop_due(now) {
            for &due in &batch {
                if due.seq == 0 {
                    self.tick(due, now);
                } else {
                    self.transaction_timer(due, now);
                }
            }
            self.timers.recycle(batch);
        }
    }

    /// One tick of a target: relocate when the answer expired, probe every node, and schedule
    /// the next tick on the grid.
    fn tick(&mut self, due: Due, now: Instant) {
        let Some(t) = self.target(due.id, due.gen) else {
            return;
        };
        let relocate = !t.locating && t.dns_valid_until.is_some_and(|u| u <= now);
        let next = next_tick(due.at, t.interval, now);
        if relocate {
            self.locate(due.id, due.gen);
        }
        self.waiting.push_back((due.id, due.gen, due.at));
        self.timers.push(Due { at: next, ..due });
    }

    /// Starts the waiting ticks' probes while permits last.
    fn start_waiting(&mut self) {
        while let Some(&(id, gen, scheduled)) = self.waiting.front() {
            let nodes = match self.target(id, gen) {
                Some(t) => t.nodes.len(),
                None => {
                    self.waiting.pop_front();
                    continue;
                }
            };
            if self.permits.available_permits() < nodes.max(1) {
                return;
            }
            self.waiting.pop_front();
            for i in 0..nodes {
                let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                    return;
                };
                self.start_probe(id, gen, i, scheduled, permit);
            }
        }
    }

    fn start_probe(
        &mut self,
        id: u32,
        gen: u32,
        node: usize,
        scheduled: Instant,
        permit: OwnedSemaphorePermit,
    ) {
        let now = Instant::now();
        let Some(t) = entry(&mut self.targets, id, gen) else {
            return;
        };
        t.seq = t.seq.wrapping_add(1).max(1);
        let seq = t.seq;
        let timers = t.timers;
        let Some(n) = t.nodes.get_mut(node) else {
            return;
        };
        let ids = Identifiers::new(id, seq, n.local_ip);
        let mut bytes = Vec::with_capacity(n.template.as_ref().map_or(0, |t| t.len()));
        let built = match &n.template {
            Ok(template) => {
                if template.fill(&mut bytes, ids.branch(), ids.tag(), ids.call_id()) {
                    Ok(())
                } else {
                    Err("the request template does not fit its identifiers".to_string())
                }
            }
            Err(e) => Err(e.clone()),
        };
        #[cfg(debug_assertions)]
        if let Some(spec) = n.spec.as_mut() {
            spec.branch = ids.branch().to_string();
            spec.from_tag = ids.tag().to_string();
            spec.call_id = ids.call_id().to_string();
            debug_assert!(
                build_request(spec).is_ok_and(|r| r.to_string().as_bytes() == bytes.as_slice()),
                "a lane request differs from rsip's rendering in more than its identifiers"
            );
        }
        let key = TransactionKey {
            branch: ids.branch().to_string(),
            method: Method::Options.as_str().to_string(),
            call_id: ids.call_id().to_string(),
            from_tag: ids.tag().to_string(),
        };
        // The transaction's clock starts on the grid instant (when on time, give or take a
        // slot), so its Timer E and F land on the grid too and wake the lane together with
        // the ticks due then, not once more each. What was sent when is `first_send`.
        let start = if now.saturating_duration_since(scheduled) < READ_COALESCE {
            scheduled.into_std()
        } else {
            now.into_std()
        };
        let mut tx = ClientTransaction::new(
            key,
            bytes::Bytes::from(bytes),
            Reliability::Unreliable,
            timers,
            start,
        );
        let addr = n.addr;
        let mut probe = InFlight {
            seq,
            scheduled,
            lateness: now.saturating_duration_since(scheduled),
            started_at: unix_now(),
            first_send: None,
            garbage: None,
            garbage_count: 0,
            foreign: 0,
            _permit: permit,
            _outstanding: self.outstanding.clone(),
            tx: {
                if let Err(e) = &built {
                    tx.handle_transport_error(start, format!("cannot build the request: {e}"));
                }
                tx
            },
        };
        while let Some(out) = probe.tx.poll_transmit() {
            probe.first_send.get_or_insert(now.into_std());
            self.sends.push((addr, out, id, seq));
        }
        let deadline = probe.tx.poll_timeout();
        // Room for one: most nodes have at most one probe out, and none between ticks.
        n.probes.reserve_exact(1);
        n.probes.push(probe);
        if let Some(at) = deadline {
            self.timers.push(Due {
                at: Instant::from_std(at),
                id,
                gen,
                seq,
            });
        }
        self.settle(id, gen, seq);
    }

    /// A transaction timer came up: fire it, send what it retransmits, settle what it decided.
    fn transaction_timer(&mut self, due: Due, now: Instant) {
        let Some((t, n, p)) = self.find(due.id, due.gen, due.seq) else {
            return;
        };
        let target = self.targets[t].as_mut().expect("found");
        let node = &mut target.nodes[n];
        let addr = node.addr;
        let probe = &mut node.probes[p];
        // A stale entry (the timer was re-armed, or the transaction ended) is skipped.
        if probe
            .tx
            .poll_timeout()
            .is_none_or(|at| Instant::from_std(at) > now)
        {
            return;
        }
        probe.tx.handle_timeout(now.into_std());
        while let Some(out) = probe.tx.poll_transmit() {
            self.sends.push((addr, out, due.id, due.seq));
        }
        if let Some(at) = probe.tx.poll_timeout() {
            self.timers.push(Due {
                at: Instant::from_std(at),
                ..due
            });
        }
        self.settle(due.id, due.gen, due.seq);
    }

    /// Where probe `seq` of target `id` is: (target index, node index, probe index).
    fn find(&self, id: u32, gen: u32, seq: u32) -> Option<(usize, usize, usize)> {
        let t = self.targets.get(id as usize)?.as_ref()?;
        if t.gen != gen {
            return None;
        }
        t.nodes.iter().enumerate().find_map(|(n, node)| {
            node.probes
                .iter()
                .position(|p| p.seq == seq)
                .map(|p| (id as usize, n, p))
        })
    }

    /// Hands the transaction's events to the probe; a final answer, a timeout or a transport
    /// error ends it and reports it.
    fn settle(&mut self, id: u32, gen: u32, seq: u32) {
        let Some((ti, ni, pi)) = self.find(id, gen, seq) else {
            return;
        };
        let t = self.targets[ti].as_mut().expect("found");
        let node = &mut t.nodes[ni];
        let mut end = None;
        while let Some(event) = node.probes[pi].tx.poll_event() {
            match event {
                TransactionEvent::Provisional { .. } => {}
                TransactionEvent::Final { response, at, .. } => {
                    end = Some(End::Final(Box::new(response), at));
                    break;
                }
                TransactionEvent::Timeout { .. } => {
                    end = Some(End::Timeout);
                    break;
                }
                TransactionEvent::TransportError { error, .. } => {
                    end = Some(End::Transport(error));
                    break;
                }
            }
        }
        let Some(end) = end else {
            return;
        };
        let probe = node.probes.swap_remove(pi);
        if node.probes.is_empty() {
            // An idle node keeps no room for probes (a probe is half a kilobyte).
            node.probes = Vec::new();
        }
        let stale = probe.seq < node.reported && node.reported - probe.seq < u32::MAX / 2;
        if !stale {
            node.reported = probe.seq;
        }
        let mut o = nothing_observed(Method::Options, Transport::Udp);
        o.started_at = probe.started_at;
        o.retransmissions = probe.tx.retransmissions();
        o.mismatched_responses = probe.tx.mismatched() + probe.foreign;
        let verdict = match end {
            End::Final(head, at) => {
                let rtt = at.saturating_duration_since(probe.first_send.unwrap_or(at));
                judge_options_final(&mut o, &t.policy, &head, rtt)
            }
            End::Timeout => {
                let (result, reason) = match &probe.garbage {
                    Some(first) => (
                        ResultKind::BadResponse,
                        garbage_reason(node.addr, t.timers.timer_f, probe.garbage_count, first),
                    ),
                    None => (
                        ResultKind::Timeout,
                        timeout_reason(
                            node.addr,
                            t.timers.timer_f,
                            o.retransmissions,
                            probe.foreign,
                        ),
                    ),
                };
                o.reason = reason;
                sipwatch_probes::outcome::Verdict {
                    status: Status::Critical,
                    result,
                }
            }
            End::Transport(error) => {
                o.reason = error;
                sipwatch_probes::outcome::Verdict {
                    status: Status::Critical,
                    result: ResultKind::TransportError,
                }
            }
        };
        o.status = verdict.status;
        o.result = verdict.result;
        if !stale {
            push_probe(
                &mut self.reports,
                self.batch_room,
                report(t.name.clone(), node.name.clone(), o, &probe),
            );
        }
    }

    /// Reads every answer waiting on the socket, in batches.
    fn read_answers(&mut self, batch: &mut RecvBatch) {
        let fd = self.socket.as_raw_fd();
        loop {
            match batch.receive(fd) {
                Ok(_) => {
                    let (now, wall) = (Instant::now(), std::time::SystemTime::now());
                    for d in batch.datagrams() {
                        // When it arrived, by the kernel's stamp (read up to a moment later).
                        let at = d
                            .arrived
                            .and_then(|a| wall.duration_since(a).ok())
                            .and_then(|ago| now.checked_sub(ago))
                            .unwrap_or(now);
                        self.answer(d.bytes, d.from, d.cut, at);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // The pending error of an ICMP message: the error queue says for whom.
                Err(e) if is_async_icmp_error(&e) => self.read_errors(),
                Err(e) => {
                    tracing::debug!(error = %e, "UDP lane receive error");
                    return;
                }
            }
        }
    }

    /// One datagram: routed by its top Via branch to its probe's transaction.
    fn answer(&mut self, bytes: &[u8], from: Option<SocketAddr>, cut: bool, now: Instant) {
        // Parsed first: the head names the branch; garbage is routed by a scan for its Via, so
        // it counts against the probe it claims to answer.
        let parsed = if cut {
            Err(format!("a datagram longer than {MAX_MESSAGE} bytes (cut)"))
        } else {
            parse_response(bytes).map_err(|e| e.to_string())
        };
        let branch = match &parsed {
            Ok(head) => head.branch.as_deref().and_then(decode_branch),
            Err(_) => top_via_branch(bytes).and_then(decode_branch),
        };
        let Some((id, seq)) = branch else {
            self.unrouted.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(gen) = self.gen_of(id) else {
            self.unrouted.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some((ti, ni, pi)) = self.find(id, gen, seq) else {
            self.unrouted.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let node = &mut self.targets[ti].as_mut().expect("found").nodes[ni];
        let probe = &mut node.probes[pi];
        if from != Some(node.addr) {
            probe.foreign += 1;
            return;
        }
        match parsed {
            Ok(head) => {
                let _ = hand_over(&mut probe.tx, now.into_std(), head);
                // A provisional answer moves Timer E to T2: re-arm (a final one ends the probe).
                if let Some(at) = probe
                    .tx
                    .poll_timeout()
                    .filter(|_| probe.tx.final_code().is_none())
                {
                    self.timers.push(Due {
                        at: Instant::from_std(at),
                        id,
                        gen,
                        seq,
                    });
                }
            }
            Err(e) => {
                probe.garbage_count += 1;
                tracing::debug!(peer = %node.addr, error = %e, "dropped an unparseable response");
                probe.garbage.get_or_insert(e);
            }
        }
        self.settle(id, gen, seq);
    }

    /// Drains the socket's error queue: each entry fails the probe that sent the datagram.
    fn read_errors(&mut self) {
        let mut buf = vec![0u8; 2048];
        // Bounded: the queue is bounded by the receive buffer, but never spin here.
        for _ in 0..1024 {
            let Some((len, errno)) = recv_error(self.socket.get_ref(), &mut buf) else {
                break;
            };
            let Some((id, seq)) = top_via_branch(&buf[..len]).and_then(decode_branch) else {
                continue;
            };
            let Some(gen) = self.gen_of(id) else {
                continue;
            };
            let Some((ti, ni, pi)) = self.find(id, gen, seq) else {
                continue;
            };
            let node = &mut self.targets[ti].as_mut().expect("found").nodes[ni];
            let error = sipwatch_probes::transport::TransportError::io(
                node.addr,
                io::Error::from_raw_os_error(errno),
            );
            node.probes[pi]
                .tx
                .handle_transport_error(Instant::now().into_std(), error.to_string());
            self.settle(id, gen, seq);
        }
    }

    /// Sends this turn's requests, as many per system call as the kernel takes. When the socket's
    /// send buffer is full the rest wait for the next slot (the lane wakes for it while any
    /// request waits), in order.
    fn flush_sends(&mut self) {
        if self.sends.is_empty() {
            return;
        }
        let sends = std::mem::take(&mut self.sends);
        let fd = self.socket.as_raw_fd();
        let mut done = 0;
        let mut retries = 0;
        let mut icmp = false;
        while done < sends.len() {
            let chunk: Vec<(SocketAddr, &[u8])> = sends[done..]
                .iter()
                .take(sipwatch_probes::mmsg::BATCH)
                .map(|(to, bytes, _, _)| (*to, bytes.as_ref()))
                .collect();
            match send_batch(fd, &chunk) {
                Ok(n) => {
                    done += n.max(1);
                    retries = 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // An ICMP error for an earlier datagram, reported by this call: the error
                // queue routes it; send again.
                Err(e) if is_async_icmp_error(&e) && retries < SEND_RETRIES => {
                    retries += 1;
                    icmp = true;
                }
                Err(e) => {
                    // The first of the chunk could not be sent: its transaction fails.
                    let (to, _, id, seq) = &sends[done];
                    let error = sipwatch_probes::transport::TransportError::io(*to, e);
                    if let Some(gen) = self.gen_of(*id) {
                        if let Some((ti, ni, pi)) = self.find(*id, gen, *seq) {
                            self.targets[ti].as_mut().expect("found").nodes[ni].probes[pi]
                                .tx
                                .handle_transport_error(
                                    Instant::now().into_std(),
                                    error.to_string(),
                                );
                            self.settle(*id, gen, *seq);
                        }
                    }
                    done += 1;
                    retries = 0;
                }
            }
        }
        let mut sends = sends;
        sends.drain(..done);
        self.sends = sends;
        if icmp {
            self.read_errors();
        }
    }
}

enum End {
    Final(Box<ResponseHead>, std::time::Instant),
    Timeout,
    Transport(String),
}

/// The target at `id` when it is still of generation `gen`.
fn entry(targets: &mut [Option<Target>], id: u32, gen: u32) -> Option<&mut Target> {
    targets
        .get_mut(id as usize)?
        .as_mut()
        .filter(|t| t.gen == gen)
}

fn report(target: Arc<str>, node: Arc<str>, outcome: ProbeOutcome, p: &InFlight) -> ProbeReport {
    ProbeReport {
        target,
        node,
        outcome,
        lateness: p.lateness,
        scheduled: p.scheduled,
    }
}

/// Appends a probe's report to this turn's messages: to the batch at their end, or in a new one
/// after a node list or DNS message (so the state task sees them in the order they came). A new
/// batch has room for as many as the last turn's (growing it report by report was 3 % of the
/// daemon's CPU at 2,000 probes a second).
fn push_probe(reports: &mut Vec<SchedulerMsg>, room: usize, r: ProbeReport) {
    match reports.last_mut() {
        Some(SchedulerMsg::Probes(batch)) => batch.push(r),
        _ => {
            let mut batch = Vec::with_capacity(room.clamp(1, 256));
            batch.push(r);
            reports.push(SchedulerMsg::Probes(batch));
        }
    }
}

/// A node of `uri` at `addr`: its local address (cached per destination address) and the
/// request template rsip renders once for it.
fn new_node(
    uri: &TargetUri,
    max_forwards: u8,
    addr: SocketAddr,
    port: u16,
    routes: &mut HashMap<IpAddr, IpAddr>,
) -> Node {
    let local_ip = match routes.get(&addr.ip()) {
        Some(ip) => *ip,
        None => {
            let ip = route_ip(addr).unwrap_or(IpAddr::from([0, 0, 0, 0]));
            routes.insert(addr.ip(), ip);
            ip
        }
    };
    let spec = options_request(
        uri,
        Transport::Udp,
        SocketAddr::new(local_ip, port),
        max_forwards,
    );
    let template = match build_request(&spec) {
        Ok(r) => RequestTemplate::learn(&spec, &r.to_string())
            .ok_or_else(|| "the request has no room for new identifiers".to_string()),
        Err(e) => Err(e.to_string()),
    };
    Node {
        name: Arc::from(addr.to_string()),
        addr,
        template,
        #[cfg(debug_assertions)]
        spec: Some(spec),
        local_ip,
        probes: Vec::new(),
        reported: 0,
    }
}

/// The local address the kernel sends to `peer` from (a connected socket, no datagram sent).
fn route_ip(peer: SocketAddr) -> io::Result<IpAddr> {
    let any: SocketAddr = if peer.is_ipv6() {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0u8; 4], 0))
    };
    let probe = std::net::UdpSocket::bind(any)?;
    probe.connect(peer)?;
    Ok(probe.local_addr()?.ip())
}

/// A probe's fresh identifiers, spelt into one buffer: the branch (naming target and probe), the
/// From tag (64 random bits) and the Call-ID (128 random bits at our address), each as long as
/// `message`'s own.
struct Identifiers {
    text: String,
    branch_end: usize,
    tag_end: usize,
}

impl Identifiers {
    fn new(id: u32, seq: u32, local: IpAddr) -> Identifiers {
        let mut rng = rand::thread_rng();
        let mut random = [0u8; 28];
        rng.fill(&mut random);
        let mut text = String::with_capacity(COOKIE.len() + BRANCH_HEX + 16 + 48);
        text.push_str(COOKIE);
        push_hex(&mut text, &id.to_be_bytes());
        push_hex(&mut text, &seq.to_be_bytes());
        push_hex(&mut text, &random[..4]);
        let branch_end = text.len();
        push_hex(&mut text, &random[4..12]);
        let tag_end = text.len();
        push_hex(&mut text, &random[12..28]);
        text.push('@');
        let _ = std::fmt::Write::write_fmt(&mut text, format_args!("{local}"));
        Identifiers {
            text,
            branch_end,
            tag_end,
        }
    }

    fn branch(&self) -> &str {
        &self.text[..self.branch_end]
    }

    fn tag(&self) -> &str {
        &self.text[self.branch_end..self.tag_end]
    }

    fn call_id(&self) -> &str {
        &self.text[self.tag_end..]
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
}

/// The target id and probe sequence a lane branch carries; None for any other branch.
fn decode_branch(branch: &str) -> Option<(u32, u32)> {
    let hex = branch.strip_prefix(COOKIE)?;
    if hex.len() != BRANCH_HEX || !hex.is_ascii() {
        return None;
    }
    let id = u32::from_str_radix(&hex[..8], 16).ok()?;
    let seq = u32::from_str_radix(&hex[8..16], 16).ok()?;
    Some((id, seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipwatch_probes::message::{new_branch, new_call_id, new_tag};

    #[test]
    fn identifiers_are_as_long_as_the_probes_own_and_the_branch_names_the_probe() {
        let local: IpAddr = "192.0.2.7".parse().unwrap();
        let ids = Identifiers::new(0x0102_0304, 0xfffe_0001, local);
        assert_eq!(ids.branch().len(), new_branch().len());
        assert_eq!(ids.tag().len(), new_tag().len());
        assert_eq!(ids.call_id().len(), new_call_id(local).len());
        assert!(ids.call_id().ends_with("@192.0.2.7"));
        assert_eq!(
            decode_branch(ids.branch()),
            Some((0x0102_0304, 0xfffe_0001))
        );
        // Fresh random parts every time.
        let again = Identifiers::new(0x0102_0304, 0xfffe_0001, local);
        assert_ne!(ids.branch(), again.branch());
        assert_ne!(ids.tag(), again.tag());
        assert_ne!(ids.call_id(), again.call_id());
        // Another sender's branch, or garbage, names no probe.
        assert_eq!(decode_branch(&new_branch()[..20]), None);
        assert_eq!(decode_branch("z9hG4bKnothex0000000000000000"), None);
        assert_eq!(decode_branch("branch"), None);
    }

    #[test]
    fn the_lane_takes_udp_options_targets_only() {
        let target = |uri: &str, method: &str, transport: Option<&str>| {
            let src = format!(
                "[http]\nlisten = \"127.0.0.1:9\"\n[store]\npath = \"unused.db\"\n\
                 [[target]]\nname = \"t\"\nuri = \"{uri}\"\nprobe = \"{method}\"\n{}{}",
                transport.map_or(String::new(), |t| format!("transport = \"{t}\"\n")),
                if method == "register" {
                    "username = \"u\"\npassword = \"p\"\n"
                } else {
                    ""
                }
            );
            super::super::config::DaemonConfig::from_source(std::path::Path::new("s.toml"), &src)
                .expect("a valid config")
                .targets
                .remove(0)
        };
        assert!(takes(&target("sip:127.0.0.1:5060", "options", None)));
        assert!(takes(&target(
            "sip:edge.example.com",
            "options",
            Some("udp")
        )));
        assert!(takes(&target(
            "sip:edge.example.com;transport=udp",
            "options",
            None
        )));
        // A name may locate to TCP or TLS; REGISTER, TCP and TLS have workers of their own.
        assert!(!takes(&target("sip:edge.example.com", "options", None)));
        assert!(!takes(&target("sip:127.0.0.1:5060", "register", None)));
        assert!(!takes(&target(
            "sip:127.0.0.1:5060",
            "options",
            Some("tcp")
        )));
        assert!(!takes(&target("sips:127.0.0.1:5061", "options", None)));
    }
}
