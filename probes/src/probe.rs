//! Runs a probe: locate the target's nodes, then for each node send an OPTIONS ping or a REGISTER
//! exchange (challenge, authenticated retry, binding check, unregister) and judge what came back.
//!
//! This is the tokio layer around the pure parts: it owns the sockets and the clock and feeds
//! [`ClientTransaction`] with `Instant::now()`, received responses and timer expiries. Every node
//! gets its own [`ProbeOutcome`]; nothing here decides exit codes or prints.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::digest::{self, Credentials};
use crate::locate::{Destination, Locator};
use crate::message::{
    self, build_request, contact_uri, parse_response, same_contact, AuthHeader, Method,
    RequestSpec, RequestTemplate, ResponseHead, TargetUri, Transport,
};
use crate::outcome::{ExchangedMessage, Policy, ProbeOutcome, ResultKind, Status, Verdict};
use crate::transaction::{
    ClientTransaction, Reliability, ResponseKey, Timers, TransactionEvent, TransactionKey,
};
use crate::transport::{Connection, TlsContext, TransportError, Wire};

/// What to probe and how. Built by the CLI (or, later, the daemon's scheduler).
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    pub target: TargetUri,
    pub method: Method,
    /// A transport forced on the command line (`--transport`).
    pub transport: Option<Transport>,
    pub timers: Timers,
    pub max_forwards: u8,
    pub policy: Policy,
    /// REGISTER: the user and password. The password never reaches a log or an error.
    pub credentials: Option<Credentials>,
    /// REGISTER: the domain of the address of record (defaults to the target's host).
    pub domain: Option<String>,
    /// REGISTER: the only digest realm answered. A challenge for another realm fails the probe
    /// (`auth_failed`) and nothing is sent; None answers any realm.
    pub realm: Option<String>,
    pub expires: u32,
    pub keep_binding: bool,
    /// Keep the messages exchanged for `--verbose`.
    pub record_exchange: bool,
    /// OPTIONS: the request rendered last, reused with new identifiers (a clone starts empty).
    pub request_template: TemplateCache,
}

/// The [`RequestTemplate`] of a spec's OPTIONS requests, learnt from the first one rendered.
#[derive(Default)]
pub struct TemplateCache(std::sync::Mutex<Option<RequestTemplate>>);

impl TemplateCache {
    fn render(&self, req: &RequestSpec) -> Option<Vec<u8>> {
        self.0.lock().ok()?.as_ref()?.render(req)
    }

    fn learn(&self, req: &RequestSpec, text: &str) {
        if let Ok(mut t) = self.0.lock() {
            *t = RequestTemplate::learn(req, text);
        }
    }
}

impl Clone for TemplateCache {
    fn clone(&self) -> Self {
        TemplateCache::default()
    }
}

impl std::fmt::Debug for TemplateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TemplateCache")
    }
}

impl ProbeSpec {
    /// A plain OPTIONS ping with default timers and policy.
    pub fn options(target: TargetUri) -> ProbeSpec {
        ProbeSpec {
            target,
            method: Method::Options,
            transport: None,
            timers: Timers::default(),
            max_forwards: 70,
            policy: Policy::default(),
            credentials: None,
            domain: None,
            realm: None,
            expires: 60,
            keep_binding: false,
            record_exchange: false,
            request_template: TemplateCache::default(),
        }
    }
}

/// Shared machinery for many probes: the resolver and the TLS context.
#[derive(Clone)]
pub struct Prober {
    locator: Locator,
    tls: Option<TlsContext>,
}

impl Prober {
    pub fn new(locator: Locator, tls: Option<TlsContext>) -> Prober {
        Prober { locator, tls }
    }

    /// Probes every node behind the target, concurrently. A DNS failure yields one outcome with
    /// status UNKNOWN and result `dns_error`.
    pub async fn probe(&self, spec: &ProbeSpec) -> Vec<ProbeOutcome> {
        let started_at = unix_now();
        let located = match self.locator.locate(&spec.target, spec.transport).await {
            Ok(l) => l,
            Err(e) => {
                let mut o = blank_outcome(spec, spec.transport.unwrap_or(Transport::Udp), None);
                o.started_at = started_at;
                o.status = Status::Unknown;
                o.result = ResultKind::DnsError;
                o.reason = e.to_string();
                return vec![o];
            }
        };
        let spec = Arc::new(spec.clone());
        let mut set = tokio::task::JoinSet::new();
        for (i, dest) in located.destinations.into_iter().enumerate() {
            let prober = self.clone();
            let spec = spec.clone();
            set.spawn(async move { (i, prober.probe_destination(&spec, &dest).await) });
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(pair) => out.push(pair),
                Err(e) => tracing::error!(error = %e, "probe task failed"),
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, o)| o).collect()
    }

    /// Opens a dedicated connection to a node (for callers that keep it between probes).
    pub async fn open(
        &self,
        dest: &Destination,
        connect_timeout: Duration,
    ) -> Result<Connection, TransportError> {
        Connection::open(
            dest.transport,
            dest.addr,
            &dest.server_name,
            self.tls.as_ref(),
            connect_timeout,
        )
        .await
    }

    /// Probes one node.
    pub async fn probe_destination(&self, spec: &ProbeSpec, dest: &Destination) -> ProbeOutcome {
        let mut o = blank_outcome(spec, dest.transport, Some(dest));
        let mut conn = match Connection::open(
            dest.transport,
            dest.addr,
            &dest.server_name,
            self.tls.as_ref(),
            spec.timers.timer_f,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                o.status = Status::Critical;
                o.result = ResultKind::TransportError;
                o.reason = e.to_string();
                return o;
            }
        };
        self.probe_on(spec, dest, &mut conn, o).await
    }

    /// Probes one node over a path the caller owns (a kept TCP/TLS connection, a shared UDP
    /// socket slot). `o` comes from [`Prober::blank_outcome`].
    pub async fn probe_on<W: Wire>(
        &self,
        spec: &ProbeSpec,
        dest: &Destination,
        conn: &mut W,
        mut o: ProbeOutcome,
    ) -> ProbeOutcome {
        let clock = clock_now();
        o.started_at = unix_now();
        let mut run = Exchange {
            conn: &mut *conn,
            spec,
            outcome: &mut o,
            clock,
        };
        let verdict = match spec.method {
            Method::Options => run.options().await,
            // Boxed: the REGISTER exchange's future is several times the size of an OPTIONS
            // ping's, and every probe in flight would carry that size otherwise.
            Method::Register => Box::pin(run.register()).await,
        };
        let mut verdict = verdict;
        if let Some(cert) = conn.peer_certificate() {
            o.cert_days_left = Some(cert.days_left);
            o.cert_not_after = cert.not_after;
            o.cert_name_matches = Some(cert.name_matches);
            if o.code.is_some() {
                verdict = spec
                    .policy
                    .judge_cert(verdict, cert.days_left, cert.name_matches);
                if verdict.result == ResultKind::CertProblem {
                    o.reason = format!(
                        "{} (certificate of {}: {} days left, {})",
                        o.reason,
                        dest.server_name,
                        cert.days_left,
                        if cert.name_matches {
                            "name matches"
                        } else {
                            "name does NOT match"
                        }
                    );
                }
            }
        }
        o.mismatched_responses += conn.foreign_datagrams();
        o.status = verdict.status;
        o.result = verdict.result;
        o
    }
}

/// The OPTIONS ping of `target` sent from `local` over `transport`, with fresh identifiers (RFC
/// 3261 §11: To and From are the target's address of record, `sipwatch` when it names no user).
/// The daemon's UDP lane builds its pings here too, so both send the very same request.
pub fn options_request(
    target: &TargetUri,
    transport: Transport,
    local: std::net::SocketAddr,
    max_forwards: u8,
) -> RequestSpec {
    let aor = format!(
        "{}:{}@{}",
        if target.secure { "sips" } else { "sip" },
        target.user.as_deref().unwrap_or("sipwatch"),
        message::host_for_uri(&target.host)
    );
    RequestSpec {
        method: Method::Options,
        request_uri: target.request_uri(true),
        aor,
        transport,
        local,
        branch: message::new_branch(),
        from_tag: message::new_tag(),
        call_id: message::new_call_id(local.ip()),
        cseq: 1,
        max_forwards,
        contact: None,
        expires: None,
        authorization: None,
        user_agent: message::user_agent(),
    }
}

/// Hands a parsed response to its transaction, the matching keys moved out of it (the
/// transaction keeps the rest; nothing reads the keys after the match).
pub fn hand_over(
    tx: &mut ClientTransaction<ResponseHead>,
    now: Instant,
    mut head: ResponseHead,
) -> crate::transaction::MatchResult {
    let key = ResponseKey {
        branch: head.branch.take(),
        cseq_method: head.cseq_method.take(),
        call_id: head.call_id.take(),
        from_tag: head.from_tag.take(),
    };
    let code = head.code;
    tx.handle_response(now, &key, code, head)
}

/// Writes a final answer's code, reason, RTT and `Server` into `o`.
pub fn record_final(o: &mut ProbeOutcome, head: &ResponseHead, rtt: Duration) {
    o.code = Some(head.code);
    o.reason.clone_from(&head.reason);
    o.rtt_ms = Some(rtt.as_secs_f64() * 1e3);
    if head.server.is_some() {
        o.server.clone_from(&head.server);
    }
}

/// An OPTIONS ping's final answer: recorded into `o`, and judged by its code and RTT.
pub fn judge_options_final(
    o: &mut ProbeOutcome,
    policy: &Policy,
    head: &ResponseHead,
    rtt: Duration,
) -> Verdict {
    record_final(o, head, rtt);
    let v = policy.judge_options(head.code);
    policy.judge_rtt(v, rtt.as_secs_f64() * 1e3)
}

/// Why a probe timed out: Timer F, the retransmissions sent, and datagrams from elsewhere.
pub fn timeout_reason(
    peer: std::net::SocketAddr,
    timer_f: Duration,
    retransmissions: u32,
    foreign: u32,
) -> String {
    let mut reason = format!(
        "no final answer from {peer} within {timer_f:?} ({retransmissions} retransmissions)"
    );
    if foreign > 0 {
        reason.push_str(&format!(
            "; {foreign} datagram(s) from other addresses ignored"
        ));
    }
    reason
}

/// Why a probe that heard only garbage failed (`bad_response`): how much, and the first error.
pub fn garbage_reason(
    peer: std::net::SocketAddr,
    timer_f: Duration,
    count: u32,
    first: &str,
) -> String {
    format!(
        "no valid answer from {peer} within {timer_f:?}: {count} unparseable response(s) dropped, first: {first}"
    )
}

/// Room reserved for a rendered request: an OPTIONS ping is 350 to 500 bytes.
const REQUEST_CAPACITY: usize = 768;

/// The transactions' clock: tokio's, as a std `Instant`. On a running runtime it is
/// `Instant::now()`; under a paused test clock it follows virtual time, so Timer F, the
/// retransmissions and the RTT do too (the daemon's scheduler is tested that way).
fn clock_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// An outcome with nothing observed yet, for [`Prober::probe_on`].
pub fn blank_outcome(
    spec: &ProbeSpec,
    transport: Transport,
    dest: Option<&Destination>,
) -> ProbeOutcome {
    let mut o = nothing_observed(spec.method, transport);
    o.target.clone_from(&spec.target.original);
    o.remote = dest.map(|d| d.addr.to_string());
    o.located_by = dest.map(|d| d.located_by.to_string());
    o
}

/// An outcome with nothing observed and nothing named (no target, no remote), started now: the
/// daemon names the node itself and never reads those.
pub fn nothing_observed(method: Method, transport: Transport) -> ProbeOutcome {
    ProbeOutcome {
        target: String::new(),
        method,
        transport,
        remote: None,
        status: Status::Unknown,
        result: ResultKind::TransportError,
        code: None,
        reason: String::new(),
        rtt_ms: None,
        retransmissions: 0,
        server: None,
        cert_days_left: None,
        cert_name_matches: None,
        cert_not_after: None,
        mismatched_responses: 0,
        provisional: Vec::new(),
        located_by: None,
        binding_confirmed: None,
        unregistered: None,
        started_at: unix_now(),
        exchange: Vec::new(),
    }
}

/// Now, in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// How one transaction ended.
enum TxEnd {
    Final {
        head: Box<ResponseHead>,
        rtt: Duration,
    },
    Timeout,
    Transport(String),
    /// Only garbage came back before Timer F (or the stream could not be framed).
    Garbage(String),
}

/// One node's exchange: the connection, the spec and the outcome being filled in.
struct Exchange<'a, W: Wire> {
    conn: &'a mut W,
    spec: &'a ProbeSpec,
    outcome: &'a mut ProbeOutcome,
    clock: Instant,
}

/// Identifiers that stay the same across the requests of one REGISTER dialog-less exchange.
struct Ids {
    call_id: String,
    from_tag: String,
    cseq: u32,
}

impl<W: Wire> Exchange<'_, W> {
    fn request_spec(&self, ids: &Ids, method: Method, aor: &str) -> RequestSpec {
        let keep_user = method == Method::Options;
        RequestSpec {
            method,
            request_uri: self.spec.target.request_uri(keep_user),
            aor: aor.to_string(),
            transport: self.conn.transport(),
            local: self.conn.local_addr(),
            branch: message::new_branch(),
            from_tag: ids.from_tag.clone(),
            call_id: ids.call_id.clone(),
            cseq: ids.cseq,
            max_forwards: self.spec.max_forwards,
            contact: None,
            expires: None,
            authorization: None,
            user_agent: message::user_agent(),
        }
    }

    async fn options(&mut self) -> Verdict {
        let req = options_request(
            &self.spec.target,
            self.conn.transport(),
            self.conn.local_addr(),
            self.spec.max_forwards,
        );
        match self.transact(&req).await {
            TxEnd::Final { head, rtt } => {
                judge_options_final(self.outcome, &self.spec.policy, &head, rtt)
            }
            end => self.failure(end),
        }
    }

    async fn register(&mut self) -> Verdict {
        let Some(creds) = self.spec.credentials.clone() else {
            self.outcome.reason =
                "REGISTER needs a user: give --username (and --password-file or SIPWATCH_PASSWORD)"
                    .into();
            return Verdict {
                status: Status::Unknown,
                result: ResultKind::AuthFailed,
            };
        };
        let domain = self
            .spec
            .domain
            .clone()
            .unwrap_or_else(|| self.spec.target.host.clone());
        let scheme = if self.spec.target.secure {
            "sips"
        } else {
            "sip"
        };
        let aor = format!(
            "{scheme}:{}@{}",
            creds.username,
            message::host_for_uri(&domain)
        );
        let contact = contact_uri(
            &creds.username,
            self.conn.local_addr(),
            self.conn.transport(),
        );
        let mut ids = Ids {
            call_id: message::new_call_id(self.conn.local_addr().ip()),
            from_tag: message::new_tag(),
            cseq: 1,
        };
        let mut auth = AuthState::default();
        let mut expires = self.spec.expires;
        let mut interval_retried = false;

        // The registration itself: at most one challenge, one stale retry and one 423 retry.
        let head = loop {
            let mut req = self.request_spec(&ids, Method::Register, &aor);
            req.contact = Some(contact.clone());
            req.expires = Some(expires);
            req.authorization = auth.header(&creds, &req.request_uri);
            let answered = req.authorization.is_some();
            let (head, rtt) = match self.transact(&req).await {
                TxEnd::Final { head, rtt } => (head, rtt),
                end => return self.failure(end),
            };
            self.record_final(&head, rtt);
            ids.cseq += 1;
            match head.code {
                401 | 407 => match auth.on_challenge(&head, answered, self.spec.realm.as_deref()) {
                    Ok(()) => continue,
                    Err(why) => {
                        self.outcome.reason = format!("{}: {why}", head.reason);
                        return Verdict {
                            status: Status::Critical,
                            result: ResultKind::AuthFailed,
                        };
                    }
                },
                423 if !interval_retried => {
                    // RFC 3261 §10.2.8: retry once with the registrar's Min-Expires.
                    interval_retried = true;
                    match head.min_expires {
                        Some(min) if min > expires => {
                            expires = min;
                            continue;
                        }
                        _ => break head,
                    }
                }
                _ => {
                    let _ = answered;
                    break head;
                }
            }
        };

        let rtt_ms = self.outcome.rtt_ms.unwrap_or(0.0);
        let mut verdict = self
            .spec
            .policy
            .judge_register(head.code, auth.answered_once);
        if verdict.result == ResultKind::AuthFailed && head.code == 403 {
            self.outcome.reason = format!("{}: credentials refused", head.reason);
        }
        if !(200..300).contains(&head.code) {
            return verdict;
        }
        let confirmed = head.bindings.iter().any(|b| same_contact(&b.uri, &contact));
        self.outcome.binding_confirmed = Some(confirmed);
        if !confirmed {
            self.outcome.reason = format!(
                "{} {} but our Contact {contact} is not among its {} binding(s)",
                head.code,
                head.reason,
                head.bindings.len()
            );
            verdict = Verdict {
                status: Status::Critical,
                result: ResultKind::BindingMissing,
            };
        } else {
            verdict = self.spec.policy.judge_rtt(verdict, rtt_ms);
        }
        if !self.spec.keep_binding {
            let removed = self
                .unregister(&mut ids, &aor, &contact, &creds, &mut auth)
                .await;
            self.outcome.unregistered = Some(removed);
        }
        verdict
    }

    /// Removes our binding (Expires: 0), answering one challenge if the registrar asks again.
    async fn unregister(
        &mut self,
        ids: &mut Ids,
        aor: &str,
        contact: &str,
        creds: &Credentials,
        auth: &mut AuthState,
    ) -> bool {
        for _ in 0..3 {
            let mut req = self.request_spec(ids, Method::Register, aor);
            req.contact = Some(contact.to_string());
            req.expires = Some(0);
            req.authorization = auth.header(creds, &req.request_uri);
            ids.cseq += 1;
            match self.transact(&req).await {
                // Removed when the registrar says so and no longer lists our Contact.
                TxEnd::Final { head, .. } if (200..300).contains(&head.code) => {
                    return !head.bindings.iter().any(|b| same_contact(&b.uri, contact));
                }
                TxEnd::Final { head, .. } if head.code == 401 || head.code == 407 => {
                    let realm = self.spec.realm.clone();
                    if auth.on_challenge(&head, false, realm.as_deref()).is_err() {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        false
    }

    fn record_final(&mut self, head: &ResponseHead, rtt: Duration) {
        record_final(self.outcome, head, rtt);
    }

    fn failure(&mut self, end: TxEnd) -> Verdict {
        let (result, reason) = match end {
            TxEnd::Timeout => (
                ResultKind::Timeout,
                timeout_reason(
                    self.conn.peer_addr(),
                    self.spec.timers.timer_f,
                    self.outcome.retransmissions,
                    self.conn.foreign_datagrams(),
                ),
            ),
            TxEnd::Transport(e) => (ResultKind::TransportError, e),
            TxEnd::Garbage(e) => (ResultKind::BadResponse, e),
            TxEnd::Final { .. } => (ResultKind::Ok, String::new()),
        };
        self.outcome.reason = reason;
        Verdict {
            status: Status::Critical,
            result,
        }
    }

    /// Keeps a copy of a message sent or received when the spec asks for the exchange (text made
    /// only then: a probe of the daemon records nothing and copies nothing).
    fn log(&mut self, sent: bool, bytes: &[u8]) {
        if self.spec.record_exchange {
            let text = String::from_utf8_lossy(bytes).into_owned();
            self.outcome.exchange.push(ExchangedMessage {
                sent,
                peer: self.conn.peer_addr().to_string(),
                at_ms: self.clock.elapsed().as_secs_f64() * 1e3,
                text,
            });
        }
    }

    /// Runs one client transaction to its end.
    async fn transact(&mut self, req: &RequestSpec) -> TxEnd {
        // An OPTIONS ping is the same request every time but for its identifiers: after the
        // first, a copy of the rendering with the new ones written in (see `RequestTemplate`).
        let bytes = match self.spec.request_template.render(req) {
            Some(b) => bytes::Bytes::from(b),
            None => {
                let request = match build_request(req) {
                    Ok(r) => r,
                    Err(e) => return TxEnd::Transport(format!("cannot build the request: {e}")),
                };
                // Rendered into room for a whole OPTIONS request at once (`to_string` grew the
                // text by doubling). Below 1 KB, glibc's small-chunk size.
                let mut text = String::with_capacity(REQUEST_CAPACITY);
                let _ = std::fmt::Write::write_fmt(&mut text, format_args!("{request}"));
                if req.method == Method::Options {
                    self.spec.request_template.learn(req, &text);
                }
                bytes::Bytes::from(text)
            }
        };
        self.conn.expect_branch(&req.branch);
        let key = TransactionKey {
            branch: req.branch.clone(),
            method: req.method.as_str().to_string(),
            call_id: req.call_id.clone(),
            from_tag: req.from_tag.clone(),
        };
        let reliability = if self.conn.transport().is_reliable() {
            Reliability::Reliable
        } else {
            Reliability::Unreliable
        };
        let start = clock_now();
        let mut tx: ClientTransaction<ResponseHead> =
            ClientTransaction::new(key, bytes, reliability, self.spec.timers, start);
        let mut first_send: Option<Instant> = None;
        let mut garbage: Option<String> = None;
        let mut garbage_count = 0u32;
        loop {
            while let Some(out) = tx.poll_transmit() {
                let now = clock_now();
                first_send.get_or_insert(now);
                self.log(true, &out);
                if let Err(e) = self.conn.send(&out).await {
                    tx.handle_transport_error(clock_now(), e.to_string());
                }
            }
            while let Some(event) = tx.poll_event() {
                match event {
                    TransactionEvent::Provisional { code, .. } => {
                        self.outcome.provisional.push(code);
                    }
                    TransactionEvent::Final { response, at, .. } => {
                        self.outcome.retransmissions += tx.retransmissions();
                        self.outcome.mismatched_responses += tx.mismatched();
                        let rtt = at.saturating_duration_since(first_send.unwrap_or(start));
                        return TxEnd::Final {
                            head: Box::new(response),
                            rtt,
                        };
                    }
                    TransactionEvent::Timeout { .. } => {
                        self.outcome.retransmissions += tx.retransmissions();
                        self.outcome.mismatched_responses += tx.mismatched();
                        if let Some(g) = garbage {
                            return TxEnd::Garbage(garbage_reason(
                                self.conn.peer_addr(),
                                self.spec.timers.timer_f,
                                garbage_count,
                                &g,
                            ));
                        }
                        return TxEnd::Timeout;
                    }
                    TransactionEvent::TransportError { error, .. } => {
                        self.outcome.retransmissions += tx.retransmissions();
                        self.outcome.mismatched_responses += tx.mismatched();
                        return TxEnd::Transport(error);
                    }
                }
            }
            let Some(deadline) = tx.poll_timeout() else {
                return TxEnd::Timeout;
            };
            tokio::select! {
                received = self.conn.recv() => {
                    let now = clock_now();
                    match received {
                        Ok(bytes) => {
                            self.log(false, &bytes);
                            match parse_response(&bytes) {
                                Ok(head) => {
                                    let _ = hand_over(&mut tx, now, head);
                                }
                                Err(e) => {
                                    garbage_count += 1;
                                    tracing::debug!(peer = %self.conn.peer_addr(), error = %e, "dropped an unparseable response");
                                    garbage.get_or_insert_with(|| e.to_string());
                                }
                            }
                        }
                        Err(TransportError::Framing { peer, detail }) => {
                            self.outcome.retransmissions += tx.retransmissions();
                            return TxEnd::Garbage(format!("{peer} sent a response that cannot be framed: {detail}"));
                        }
                        Err(e) => tx.handle_transport_error(now, e.to_string()),
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    tx.handle_timeout(clock_now());
                }
            }
        }
    }
}

/// The digest state of one REGISTER exchange: the challenge we answer and its nonce count.
#[derive(Default)]
struct AuthState {
    challenge: Option<(AuthHeader, digest::Challenge)>,
    nc: u32,
    answered_once: bool,
    stale_retried: bool,
}

impl AuthState {
    /// The credentials header for the next request, if we hold a challenge.
    fn header(&mut self, creds: &Credentials, uri: &str) -> Option<(AuthHeader, String)> {
        let (which, ch) = self.challenge.as_ref()?;
        self.nc += 1;
        self.answered_once = true;
        let auth = digest::authorize(
            ch,
            creds,
            "REGISTER",
            uri,
            b"",
            self.nc,
            &digest::new_cnonce(),
        );
        Some((*which, auth.header_value()))
    }

    /// Takes a 401/407. `answered` says whether the request carried our credentials. Errors say
    /// why we give up (wrong password, nothing we can answer).
    fn on_challenge(
        &mut self,
        head: &ResponseHead,
        answered: bool,
        realm: Option<&str>,
    ) -> Result<(), String> {
        let (which, values) = if head.code == 407 {
            (AuthHeader::ProxyAuthorization, &head.proxy_authenticate)
        } else {
            (AuthHeader::Authorization, &head.www_authenticate)
        };
        let chosen = digest::choose_for_realm(values.iter().map(String::as_str), realm)
            .map_err(|e| e.to_string())?;
        if answered {
            // RFC 7616 §3.3: stale=true means the password was right but the nonce old: retry once.
            if chosen.stale && !self.stale_retried {
                self.stale_retried = true;
            } else {
                return Err("credentials rejected (wrong user name or password?)".into());
            }
        }
        self.challenge = Some((which, chosen));
        self.nc = 0;
        Ok(())
    }
}
