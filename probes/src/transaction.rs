//! The RFC 3261 §17.1.2 client non-INVITE transaction (OPTIONS, REGISTER) as a sans-IO state machine.
//!
//! A [`ClientTransaction`] decides *when* the request goes on the wire (the first send and every
//! Timer E retransmission), *which* responses belong to it (§17.1.3 matching, plus sipwatch's stricter
//! Call-ID and From-tag checks), and *when* it gives up (Timer F). It reports what happened as
//! [`TransactionEvent`]s.
//!
//! What it deliberately does not do: it never reads a clock, never sleeps and never touches a socket.
//! Time comes in as `now: Instant` on every input; bytes go out through
//! [`ClientTransaction::poll_transmit`] and the caller sends them. It does not parse SIP either: the
//! caller parses a response (see `message`) and hands over a [`ResponseKey`] plus its own parsed
//! value `R`, which the transaction passes back untouched in the event. INVITE transactions
//! (§17.1.1, ACK, Timers A/B/D) are out of scope: sipwatch never sends INVITE.
//!
//! Because it is pure, tests drive it through virtual time: a 32-second Timer F takes microseconds.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// The smallest Timer E interval the transaction will use; a configured T1 of zero is raised to this
/// so that a retransmission timer can never fire twice at the same instant.
pub const MIN_T1: Duration = Duration::from_millis(1);

/// The RFC 3261 timer values (§17.1.2.2, table in Appendix A) that drive a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate; the first Timer E interval on unreliable transports.
    pub t1: Duration,
    /// The cap on the Timer E interval, and the interval in Proceeding.
    pub t2: Duration,
    /// How long the network may still deliver copies of a response; Timer K on unreliable transports.
    pub t4: Duration,
    /// Timer F: the overall deadline for a final response.
    pub timer_f: Duration,
}

impl Default for Timers {
    /// RFC 3261 T1/T2/T4, but a 5-second Timer F: sipwatch's default probe timeout. A monitoring
    /// probe that waits the RFC's 32 seconds reports an outage half a minute late.
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_f: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// The RFC 3261 values exactly: T1 500 ms, T2 4 s, T4 5 s, Timer F = 64*T1 = 32 s.
    pub fn rfc3261() -> Self {
        let t1 = Duration::from_millis(500);
        Timers {
            t1,
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_f: t1 * 64,
        }
    }

    /// The default timers with another overall timeout (Timer F), e.g. from `--timeout`.
    pub fn with_timer_f(timer_f: Duration) -> Self {
        Timers {
            timer_f,
            ..Timers::default()
        }
    }

    /// Checks values that came from a user (config file, flags) and says how to fix them.
    ///
    /// [`ClientTransaction::new`] never fails: it repairs bad values instead (T1 raised to
    /// [`MIN_T1`], T2 raised to T1), so call this where the values are read to reject them early.
    pub fn validate(&self) -> Result<(), TimersError> {
        if self.t1 < MIN_T1 {
            return Err(TimersError::T1TooSmall { t1: self.t1 });
        }
        if self.t2 < self.t1 {
            return Err(TimersError::T2BelowT1 {
                t1: self.t1,
                t2: self.t2,
            });
        }
        if self.timer_f.is_zero() {
            return Err(TimersError::TimerFZero);
        }
        Ok(())
    }

    /// The values the transaction actually runs with (see [`Timers::validate`]).
    fn repaired(self) -> Self {
        let t1 = self.t1.max(MIN_T1);
        Timers {
            t1,
            t2: self.t2.max(t1),
            ..self
        }
    }
}

/// Why a set of [`Timers`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimersError {
    #[error("SIP timer T1 is {t1:?}; it must be at least 1ms (RFC 3261 uses 500ms)")]
    T1TooSmall { t1: Duration },
    #[error("SIP timer T2 ({t2:?}) is smaller than T1 ({t1:?}); T2 caps the retransmission interval, so it must be at least T1 (RFC 3261 uses T1=500ms, T2=4s)")]
    T2BelowT1 { t1: Duration, t2: Duration },
    #[error("SIP Timer F (the probe timeout) is 0s; a probe needs time to be answered, e.g. 5s")]
    TimerFZero,
}

/// Whether the transport may lose datagrams (§17.1.2.2: Timer E and Timer K only on unreliable ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    /// UDP: the transaction retransmits (Timer E) and absorbs duplicate responses (Timer K).
    Unreliable,
    /// TCP, TLS: the transport retransmits; the transaction only waits (Timer F).
    Reliable,
}

/// What identifies our request: the values we put in the top Via branch, CSeq method, Call-ID and
/// From tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    /// The top Via `branch` parameter (starts with the magic cookie `z9hG4bK`).
    pub branch: String,
    /// The request method, also the CSeq method (`OPTIONS`, `REGISTER`).
    pub method: String,
    pub call_id: String,
    pub from_tag: String,
}

/// What a received response says about itself, extracted by the caller from the parsed message
/// (fields may be missing in a garbled/foreign response).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseKey {
    /// The `branch` parameter of the top Via.
    pub branch: Option<String>,
    /// The method in the CSeq header.
    pub cseq_method: Option<String>,
    pub call_id: Option<String>,
    /// The `tag` parameter of the From header.
    pub from_tag: Option<String>,
}

/// Whether [`ClientTransaction::handle_response`] took a response as belonging to this transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchResult {
    /// The response is ours. It was reported as an event, or absorbed as a retransmitted response
    /// in Completed (see [`ClientTransaction::absorbed`]).
    Matched,
    /// The response was dropped and counted in [`ClientTransaction::mismatched`].
    Mismatched(MismatchReason),
}

/// Why a response was not taken as ours. A missing field counts as a wrong one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchReason {
    /// The top Via branch differs (compared case-sensitively, §17.1.3) or is absent.
    WrongBranch,
    /// The CSeq method differs (§17.1.3) or is absent.
    WrongMethod,
    /// The Call-ID differs or is absent (a sipwatch check beyond §17.1.3).
    WrongCallId,
    /// The From tag differs or is absent (a sipwatch check beyond §17.1.3).
    WrongFromTag,
    /// The status code is outside 100..=699, so it is not a SIP response code (§7.2).
    InvalidStatusCode,
    /// The transaction had already ended (timed out, failed, or done absorbing duplicates).
    AfterTermination,
}

impl fmt::Display for MismatchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MismatchReason::WrongBranch => {
                "top Via branch differs from the request's (a response to another request, or a proxy rewrote Via)"
            }
            MismatchReason::WrongMethod => "CSeq method differs from the request's",
            MismatchReason::WrongCallId => "Call-ID differs from the request's",
            MismatchReason::WrongFromTag => "From tag differs from the request's",
            MismatchReason::InvalidStatusCode => "status code is outside 100..=699",
            MismatchReason::AfterTermination => "arrived after the transaction ended",
        })
    }
}

/// The states of Figure 6 in RFC 3261 §17.1.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Request sent, nothing heard yet.
    Trying,
    /// A provisional (1xx) response arrived.
    Proceeding,
    /// A final response arrived; waiting out Timer K to absorb its retransmissions.
    Completed,
    /// Done: no timers, no transmissions, every further response is ignored.
    Terminated,
}

/// What the transaction reports to its user (the probe). `at` is the `now` of the input that
/// caused the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionEvent<R> {
    /// A 1xx arrived (each one is reported, including repeats).
    Provisional { code: u16, response: R, at: Instant },
    /// The first 2xx-6xx arrived: this is the answer. Reported once.
    Final { code: u16, response: R, at: Instant },
    /// Timer F fired before any final response: the peer did not answer in time.
    Timeout { at: Instant },
    /// The transport could not deliver the request (§17.1.4).
    TransportError { at: Instant, error: String },
}

/// One RFC 3261 §17.1.2 client non-INVITE transaction, generic over the caller's parsed response `R`.
///
/// # Inputs and outputs
///
/// Inputs (`handle_*`) change state; each takes `now`, which must never go backwards between
/// calls (an earlier `now` is treated as the latest one seen):
/// - [`handle_timeout`](Self::handle_timeout): call when `now` has reached [`poll_timeout`](Self::poll_timeout).
///   Calling it early does nothing; calling it late fires each due timer once (a late Timer E
///   retransmits once and re-arms from `now`, as a real timer would).
/// - [`handle_response`](Self::handle_response): every response that arrived on the transaction's
///   flow. It returns whether the response was ours; foreign ones are dropped and counted.
/// - [`handle_transport_error`](Self::handle_transport_error): the send failed or the connection broke.
///
/// Outputs (`poll_*`) never change state except to drain queues:
/// - [`poll_transmit`](Self::poll_transmit): request bytes to send now, until `None`.
/// - [`poll_event`](Self::poll_event): what happened, until `None`.
/// - [`poll_timeout`](Self::poll_timeout): when to call `handle_timeout` next; `None` once terminated.
///
/// # Order
///
/// 1. [`new`](Self::new) queues the first transmission.
/// 2. Drain `poll_transmit` (send each), then drain `poll_event`.
/// 3. Wait until `poll_timeout()` or until a response or transport error arrives, whichever comes
///    first, and feed it to the matching `handle_*` with the current `now`.
/// 4. Repeat from 2 until [`is_terminated`](Self::is_terminated) and the event queue is empty.
///
/// The first [`TransactionEvent::Final`], [`TransactionEvent::Timeout`] or
/// [`TransactionEvent::TransportError`] is the outcome; a probe may stop there, but on UDP keeping
/// the transaction until Terminated (Timer K) lets it absorb retransmitted responses instead of
/// counting them as strays.
///
/// ```
/// use std::time::{Duration, Instant};
/// use sipwatch_probes::transaction::*;
///
/// let t0 = Instant::now(); // any base: the transaction never reads the clock itself
/// let key = TransactionKey {
///     branch: "z9hG4bK1".into(), method: "OPTIONS".into(),
///     call_id: "c1".into(), from_tag: "f1".into(),
/// };
/// let mut tx: ClientTransaction<()> =
///     ClientTransaction::new(key, "OPTIONS ...".into(), Reliability::Unreliable, Timers::default(), t0);
/// let mut sent = vec![];
/// while let Some(deadline) = tx.poll_timeout() {
///     while tx.poll_transmit().is_some() { sent.push(deadline); }
///     tx.handle_timeout(deadline); // nobody answers: virtual time jumps to each deadline
/// }
/// assert!(matches!(tx.poll_event(), Some(TransactionEvent::Timeout { .. })));
/// assert_eq!(tx.retransmissions(), 3); // sends at 0, 0.5, 1.5, 3.5 s; Timer F at 5 s
/// ```
#[derive(Debug)]
pub struct ClientTransaction<R> {
    key: TransactionKey,
    request: Bytes,
    reliability: Reliability,
    timers: Timers,
    state: State,
    started_at: Instant,
    /// The latest `now` seen; guards against a clock that goes backwards.
    last_now: Instant,
    /// Timer E deadline (Trying/Proceeding, unreliable only).
    timer_e: Option<Instant>,
    /// The interval Timer E will be re-armed with when it next fires in Trying.
    timer_e_interval: Duration,
    /// Timer F deadline (Trying/Proceeding).
    timer_f: Option<Instant>,
    /// Timer K deadline (Completed, unreliable only).
    timer_k: Option<Instant>,
    /// Transmissions queued and not yet handed out by `poll_transmit`.
    pending_transmits: u32,
    retransmissions: u32,
    mismatched: u32,
    absorbed: u32,
    final_code: Option<u16>,
    events: VecDeque<TransactionEvent<R>>,
}

impl<R> ClientTransaction<R> {
    /// Starts the transaction at `now` in Trying: queues the first transmission, arms Timer F and,
    /// on unreliable transports, Timer E at T1 (§17.1.2.2).
    ///
    /// Invalid timers are repaired, never rejected: T1 is raised to [`MIN_T1`] and T2 to T1
    /// (check user input with [`Timers::validate`]). A timer so long that its deadline cannot be
    /// represented as an `Instant` never fires.
    pub fn new(
        key: TransactionKey,
        request: Bytes,
        reliability: Reliability,
        timers: Timers,
        now: Instant,
    ) -> Self {
        let timers = timers.repaired();
        let timer_e = match reliability {
            Reliability::Unreliable => now.checked_add(timers.t1),
            Reliability::Reliable => None,
        };
        ClientTransaction {
            key,
            request,
            reliability,
            timers,
            state: State::Trying,
            started_at: now,
            last_now: now,
            timer_e,
            timer_e_interval: timers.t1,
            timer_f: now.checked_add(timers.timer_f),
            timer_k: None,
            pending_transmits: 1,
            retransmissions: 0,
            mismatched: 0,
            absorbed: 0,
            final_code: None,
            // Room for a provisional and the final answer: an event holds the parsed response,
            // so the queue's default first growth (four) was a block over 1 KB per probe.
            events: VecDeque::with_capacity(2),
        }
    }

    // ----- inputs -----

    /// Fires the timers that are due at `now`: Timer F (timeout, wins a tie with Timer E), Timer E
    /// (retransmit) or Timer K (terminate). Does nothing before [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        match self.state {
            State::Trying | State::Proceeding => {
                if is_due(self.timer_f, now) {
                    // §17.1.2.2: Timer F fires -> inform the TU of the timeout, Terminated.
                    tracing::debug!(
                        branch = %self.key.branch,
                        method = %self.key.method,
                        retransmissions = self.retransmissions,
                        "SIP transaction timed out (Timer F)"
                    );
                    self.terminate();
                    self.events.push_back(TransactionEvent::Timeout { at: now });
                    return;
                }
                if is_due(self.timer_e, now) {
                    // §17.1.2.2: Timer E fires -> retransmit. In Trying the next interval is
                    // MIN(2*interval, T2); in Proceeding it is T2.
                    let interval = match self.state {
                        State::Trying => {
                            let this = self.timer_e_interval;
                            self.timer_e_interval =
                                this.saturating_mul(2).min(self.timers.t2).max(this);
                            self.timer_e_interval
                        }
                        _ => self.timers.t2,
                    };
                    self.timer_e = now.checked_add(interval);
                    self.pending_transmits += 1;
                    self.retransmissions += 1;
                }
            }
            State::Completed => {
                if is_due(self.timer_k, now) {
                    self.terminate();
                }
            }
            State::Terminated => {}
        }
    }

    /// Offers a received response. Returns [`MatchResult::Matched`] if it belongs to this
    /// transaction (§17.1.3: same top Via branch and CSeq method; sipwatch also requires the same
    /// Call-ID and From tag). A response that does not match is dropped, counted in
    /// [`mismatched`](Self::mismatched) and never taken as the answer.
    ///
    /// Matched responses: a 1xx in Trying/Proceeding emits `Provisional` (-> Proceeding); the first
    /// 2xx-6xx emits `Final` (-> Completed, or Terminated at once on reliable transports); anything
    /// arriving in Completed is a retransmission and is absorbed silently (counted in
    /// [`absorbed`](Self::absorbed)).
    pub fn handle_response(
        &mut self,
        now: Instant,
        key: &ResponseKey,
        code: u16,
        response: R,
    ) -> MatchResult {
        let now = self.advance(now);
        if let Err(reason) = self.check_match(key, code) {
            self.mismatched += 1;
            tracing::debug!(
                branch = %self.key.branch,
                method = %self.key.method,
                code,
                got_branch = key.branch.as_deref().unwrap_or("<none>"),
                %reason,
                "dropped SIP response that does not belong to the transaction"
            );
            return MatchResult::Mismatched(reason);
        }
        match self.state {
            State::Trying | State::Proceeding if code < 200 => {
                self.state = State::Proceeding;
                self.events.push_back(TransactionEvent::Provisional {
                    code,
                    response,
                    at: now,
                });
            }
            State::Trying | State::Proceeding => {
                // §17.1.2.2: final response -> TU, Completed, Timer K (T4 unreliable, 0 reliable).
                self.final_code = Some(code);
                self.timer_e = None;
                self.timer_f = None;
                self.pending_transmits = 0;
                let timer_k = match self.reliability {
                    Reliability::Unreliable => self.timers.t4,
                    Reliability::Reliable => Duration::ZERO,
                };
                if timer_k.is_zero() {
                    self.terminate();
                } else {
                    self.state = State::Completed;
                    self.timer_k = now.checked_add(timer_k);
                }
                self.events.push_back(TransactionEvent::Final {
                    code,
                    response,
                    at: now,
                });
            }
            State::Completed => self.absorbed += 1,
            // check_match rejects every response in Terminated (AfterTermination).
            State::Terminated => {}
        }
        MatchResult::Matched
    }

    /// The transport failed to send the request or lost its connection (§17.1.4): in Trying or
    /// Proceeding this emits `TransportError` and terminates. In Completed the answer is already
    /// in and nothing more is sent, so the error is ignored; after Terminated too.
    pub fn handle_transport_error(&mut self, now: Instant, error: String) {
        let now = self.advance(now);
        if matches!(self.state, State::Trying | State::Proceeding) {
            tracing::debug!(
                branch = %self.key.branch,
                method = %self.key.method,
                %error,
                "SIP transaction failed: transport error"
            );
            self.terminate();
            self.events
                .push_back(TransactionEvent::TransportError { at: now, error });
        }
    }

    // ----- outputs -----

    /// The request bytes to send now: the first transmission, then one per Timer E firing.
    /// Queued transmissions are discarded once a final response, timeout or error ends the wait.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.pending_transmits == 0 {
            return None;
        }
        self.pending_transmits -= 1;
        Some(self.request.clone())
    }

    /// The earliest armed timer: min(Timer E, Timer F) while waiting, Timer K in Completed, `None`
    /// once terminated.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.timer_e, self.timer_f, self.timer_k]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<TransactionEvent<R>> {
        self.events.pop_front()
    }

    // ----- introspection -----

    pub fn state(&self) -> State {
        self.state
    }

    /// How many times Timer E re-sent the request (the first transmission is not counted).
    pub fn retransmissions(&self) -> u32 {
        self.retransmissions
    }

    /// How many responses were dropped because they did not match (any [`MismatchReason`],
    /// including arrivals after termination).
    pub fn mismatched(&self) -> u32 {
        self.mismatched
    }

    /// How many matching responses arrived in Completed and were absorbed as retransmissions.
    pub fn absorbed(&self) -> u32 {
        self.absorbed
    }

    /// The status code of the final response, once one has arrived.
    pub fn final_code(&self) -> Option<u16> {
        self.final_code
    }

    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The request as it is (re)transmitted.
    pub fn request(&self) -> &Bytes {
        &self.request
    }

    pub fn reliability(&self) -> Reliability {
        self.reliability
    }

    /// The timers in effect (after repair, see [`new`](Self::new)).
    pub fn timers(&self) -> Timers {
        self.timers
    }

    /// The `now` given to [`new`](Self::new): when the first transmission was queued.
    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    // ----- internals -----

    /// Enforces "now never goes backwards" without panicking on a misbehaving caller.
    fn advance(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn check_match(&self, key: &ResponseKey, code: u16) -> Result<(), MismatchReason> {
        if self.state == State::Terminated {
            return Err(MismatchReason::AfterTermination);
        }
        if !(100..=699).contains(&code) {
            return Err(MismatchReason::InvalidStatusCode);
        }
        // §17.1.3: branch compared case-sensitively; methods are case-sensitive (§7.1). Call-ID
        // and tags are echoed verbatim by a conforming UAS, so exact comparison is safe.
        if key.branch.as_deref() != Some(self.key.branch.as_str()) {
            return Err(MismatchReason::WrongBranch);
        }
        if key.cseq_method.as_deref() != Some(self.key.method.as_str()) {
            return Err(MismatchReason::WrongMethod);
        }
        if key.call_id.as_deref() != Some(self.key.call_id.as_str()) {
            return Err(MismatchReason::WrongCallId);
        }
        if key.from_tag.as_deref() != Some(self.key.from_tag.as_str()) {
            return Err(MismatchReason::WrongFromTag);
        }
        Ok(())
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.timer_e = None;
        self.timer_f = None;
        self.timer_k = None;
        self.pending_transmits = 0;
    }
}

fn is_due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|d| d <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn key() -> TransactionKey {
        TransactionKey {
            branch: "z9hG4bK-probe-1".into(),
            method: "OPTIONS".into(),
            call_id: "call-1@sipwatch".into(),
            from_tag: "ftag1".into(),
        }
    }

    fn good() -> ResponseKey {
        let k = key();
        ResponseKey {
            branch: Some(k.branch),
            cseq_method: Some(k.method),
            call_id: Some(k.call_id),
            from_tag: Some(k.from_tag),
        }
    }

    fn timers(t1: u64, t2: u64, t4: u64, f: u64) -> Timers {
        Timers {
            t1: ms(t1),
            t2: ms(t2),
            t4: ms(t4),
            timer_f: ms(f),
        }
    }

    fn udp(t0: Instant, timers: Timers) -> ClientTransaction<&'static str> {
        ClientTransaction::new(
            key(),
            Bytes::from_static(b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
            Reliability::Unreliable,
            timers,
            t0,
        )
    }

    /// Drives the transaction with nobody answering: jumps virtual time to each deadline and
    /// records, relative to `t0`, when `poll_transmit` yields. Returns (send offsets, end offset).
    fn run_unanswered(
        t0: Instant,
        tx: &mut ClientTransaction<&'static str>,
    ) -> (Vec<Duration>, Duration) {
        let mut sends = Vec::new();
        let mut now = t0;
        loop {
            while tx.poll_transmit().is_some() {
                sends.push(now - t0);
            }
            match tx.poll_timeout() {
                Some(deadline) => {
                    assert!(deadline >= now, "timers never point into the past");
                    now = deadline;
                    tx.handle_timeout(now);
                }
                None => return (sends, now - t0),
            }
        }
    }

    /// Independent derivation of the §17.1.2.2 schedule: send at 0, then intervals T1, 2T1, 4T1...
    /// capped at T2, while the send time is strictly before Timer F.
    fn derived_schedule(t: Timers) -> Vec<Duration> {
        let mut out = vec![Duration::ZERO];
        let mut at = Duration::ZERO;
        let mut interval = t.t1;
        loop {
            at += interval;
            if at >= t.timer_f {
                return out;
            }
            out.push(at);
            interval = (interval * 2).min(t.t2);
        }
    }

    #[test]
    fn default_timers_schedule_and_timeout() {
        let t0 = Instant::now();
        let mut tx = udp(t0, Timers::default());
        assert_eq!(tx.state(), State::Trying);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(500)));
        let (sends, end) = run_unanswered(t0, &mut tx);
        assert_eq!(sends, vec![ms(0), ms(500), ms(1500), ms(3500)]);
        assert_eq!(end, ms(5000));
        assert_eq!(tx.retransmissions(), 3);
        assert_eq!(
            tx.poll_event(),
            Some(TransactionEvent::Timeout { at: t0 + ms(5000) })
        );
        assert_eq!(tx.poll_event(), None);
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(tx.final_code(), None);
    }

    #[test]
    fn custom_t1_t2_schedule() {
        let t0 = Instant::now();
        let mut tx = udp(t0, timers(100, 400, 5000, 2000));
        let (sends, end) = run_unanswered(t0, &mut tx);
        // intervals 100, 200, 400 (cap), 400, 400, 400
        let expected: Vec<_> = [0, 100, 300, 700, 1100, 1500, 1900]
            .into_iter()
            .map(ms)
            .collect();
        assert_eq!(sends, expected);
        assert_eq!(end, ms(2000));
        assert_eq!(tx.retransmissions(), 6);
    }

    #[test]
    fn rfc3261_timer_f_gives_ten_retransmissions() {
        // Sends at 0, .5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5; next would be
        // 35.5 > 32 = Timer F. So 11 transmissions, 10 retransmissions.
        let t = Timers::rfc3261();
        assert_eq!(t.timer_f, Duration::from_secs(32));
        let t0 = Instant::now();
        let wall = Instant::now();
        let mut tx = udp(t0, t);
        let (sends, end) = run_unanswered(t0, &mut tx);
        let expected: Vec<_> = [
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
        ]
        .into_iter()
        .map(ms)
        .collect();
        assert_eq!(sends, expected);
        assert_eq!(sends, derived_schedule(t));
        assert_eq!(end, Duration::from_secs(32));
        assert_eq!(tx.retransmissions(), 10);
        assert!(matches!(
            tx.poll_event(),
            Some(TransactionEvent::Timeout { .. })
        ));
        assert!(wall.elapsed() < Duration::from_secs(1), "virtual time only");
    }

    #[test]
    fn schedule_matches_derivation_for_many_timer_sets() {
        let t0 = Instant::now();
        for (t1, t2, f) in [
            (500, 4000, 5000),
            (500, 4000, 32000),
            (50, 50, 1000),
            (100, 250, 3000),
            (200, 8000, 60000),
            (1000, 4000, 999),
            (7, 100, 1234),
        ] {
            let t = timers(t1, t2, 5000, f);
            let mut tx = udp(t0, t);
            let (sends, end) = run_unanswered(t0, &mut tx);
            assert_eq!(sends, derived_schedule(t), "T1={t1} T2={t2} F={f}");
            assert_eq!(end, ms(f));
            assert_eq!(tx.retransmissions() as usize, sends.len() - 1);
        }
    }

    #[test]
    fn timer_f_wins_a_tie_with_timer_e() {
        // E would fire at 3.5 s, exactly when F fires: timeout, no retransmission at 3.5 s.
        let t0 = Instant::now();
        let mut tx = udp(t0, timers(500, 4000, 5000, 3500));
        let (sends, end) = run_unanswered(t0, &mut tx);
        assert_eq!(sends, vec![ms(0), ms(500), ms(1500)]);
        assert_eq!(end, ms(3500));
        assert_eq!(tx.retransmissions(), 2);
    }

    #[test]
    fn early_timeout_call_does_nothing_and_late_call_fires_once() {
        let t0 = Instant::now();
        let mut tx = udp(t0, Timers::rfc3261());
        assert!(tx.poll_transmit().is_some());
        tx.handle_timeout(t0 + ms(499));
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.retransmissions(), 0);
        // Late by 1.5 s (past the 0.5 s and 1.5 s deadlines): one retransmission, re-armed from now.
        tx.handle_timeout(t0 + ms(2000));
        assert!(tx.poll_transmit().is_some());
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.retransmissions(), 1);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(3000)));
    }

    #[test]
    fn provisional_then_final() {
        let t0 = Instant::now();
        let mut tx = udp(t0, Timers::default());
        assert!(tx.poll_transmit().is_some());
        let r = tx.handle_response(t0 + ms(20), &good(), 100, "trying");
        assert_eq!(r, MatchResult::Matched);
        assert_eq!(tx.state(), State::Proceeding);
        let r = tx.handle_response(t0 + ms(30), &good(), 183, "progress");
        assert_eq!(r, MatchResult::Matched);
        let r = tx.handle_response(t0 + ms(40), &good(), 200, "ok");
        assert_eq!(r, MatchResult::Matched);
        assert_eq!(tx.state(), State::Completed);
        assert_eq!(tx.final_code(), Some(200));
        assert_eq!(
            tx.poll_event(),
            Some(TransactionEvent::Provisional {
                code: 100,
                response: "trying",
                at: t0 + ms(20)
            })
        );
        assert_eq!(
            tx.poll_event(),
            Some(TransactionEvent::Provisional {
                code: 183,
                response: "progress",
                at: t0 + ms(30)
            })
        );
        assert_eq!(
            tx.poll_event(),
            Some(TransactionEvent::Final {
                code: 200,
                response: "ok",
                at: t0 + ms(40)
            })
        );
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn provisional_switches_timer_e_to_t2() {
        let t0 = Instant::now();
        let mut tx = udp(t0, Timers::rfc3261());
        assert!(tx.poll_transmit().is_some());
        tx.handle_timeout(t0 + ms(500));
        assert!(tx.poll_transmit().is_some());
        // Timer E now armed for 1.5 s. A 100 Trying at 0.6 s moves to Proceeding; the armed
        // timer still fires at 1.5 s, then every T2 = 4 s.
        tx.handle_response(t0 + ms(600), &good(), 100, "trying");
        assert_eq!(tx.state(), State::Proceeding);
        let mut sends = vec![];
        let mut now = t0 + ms(600);
        while now < t0 + ms(20_000) {
            let deadline = tx.poll_timeout().expect("armed");
            now = deadline;
            tx.handle_timeout(now);
            while tx.poll_transmit().is_some() {
                sends.push(now - t0);
            }
        }
        let expected: Vec<_> = [1500, 5500, 9500, 13500, 17500, 21500]
            .into_iter()
            .map(ms)
            .collect();
        assert_eq!(sends, expected);
        // Proceeding still times out with Timer F if no final comes.
        let (more, end) = run_unanswered(t0, &mut tx);
        assert_eq!(
            more.len() as u32 + 7,
            tx.retransmissions(),
            "1 at 0.5 s + 6 above"
        );
        assert_eq!(end, ms(32_000));
        assert!(matches!(
            tx.poll_event(),
            Some(TransactionEvent::Provisional { code: 100, .. })
        ));
        assert!(matches!(
            tx.poll_event(),
            Some(TransactionEvent::Timeout { .. })
        ));
    }

    #[test]
    fn final_stops_retransmissions_and_discards_queued_ones() {
        let t0 = Instant::now();
        let mut tx = udp(t0, Timers::rfc3261());
        assert!(tx.poll_transmit().is_some());
        tx.handle_timeout(t0 + ms(500)); // retransmission queued, not yet polled
        tx.handle_response(t0 + ms(510), &good(), 404, "not found");
        assert_eq!(tx.poll_transmit(), None, "queued retransmission dropped");
        // Only Timer K (T4 = 5 s) remains.
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(5510)));
        let mut now = t0 + ms(510);
        while let Some(d) = tx.poll_timeout() {
            now = d;
            tx.handle_timeout(now);
            assert_eq!(tx.poll_transmit(), None);
        }
        assert_eq!(now, t0 + ms(5510));
        assert_eq!(tx.retransmissions(), 1);
        assert!(matches!(
            tx.poll_event(),
            Some(TransactionEvent::Final { code: 404, .. })
        ));
        assert_eq!(tx.poll_event(), None, "no Timeout after a final");
    }

    #[test]
    fn duplicate_final_absorbed_in_completed_then_terminated_after_t4() {
        let t0 = Instant::now();
        let mut tx = udp(t0, Timers::default());
        assert!(tx.poll_transmit().is_some());
        assert_eq!(
            tx.handle_response(t0 + ms(50), &good(), 200, "first"),
            MatchResult::Matched
        );
        assert_eq!(
            tx.handle_response(t0 + ms(60), &good(), 200, "dup"),
            MatchResult::Matched
        );
        assert_eq!(
            tx.handle_response(t0 + ms(70), &good(), 100, "late 1xx"),
            MatchResult::Matched
        );
        assert_eq!(tx.absorbed(), 2);
        assert_eq!(tx.mismatched(), 0);
        assert!(matches!(
            tx.poll_event(),
            Some(TransactionEvent::Final {
                response: "first",
                ..
            })
        ));
        assert_eq!(tx.poll_event(), None, "duplicates emit nothing");
        tx.handle_timeout(t0 + ms(5049));
        assert_eq!(tx.state(), State::Completed);
        tx.handle_timeout(t0 + ms(5050));
        assert_eq!(tx.state(), State::Terminated);
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(
            tx.handle_response(t0 + ms(5100), &good(), 200, "too late"),
            MatchResult::Mismatched(MismatchReason::AfterTermination)
        );
        assert_eq!(tx.mismatched(), 1);
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn reliable_has_no_retransmissions_and_skips_completed() {
        let t0 = Instant::now();
        let mut tx: ClientTransaction<&str> = ClientTransaction::new(
            key(),
            Bytes::from_static(b"OPTIONS"),
            Reliability::Reliable,
            Timers::rfc3261(),
            t0,
        );
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        let (sends, end) = run_unanswered(t0, &mut tx);
        assert_eq!(sends, vec![Duration::ZERO]);
        assert_eq!(end, Duration::from_secs(32));
        assert_eq!(tx.retransmissions(), 0);
        assert!(matches!(
            tx.poll_event(),
            Some(TransactionEvent::Timeout { .. })
        ));

        let mut tx: ClientTransaction<&str> = ClientTransaction::new(
            key(),
            Bytes::from_static(b"OPTIONS"),
            Reliability::Reliable,
            Timers::default(),
            t0,
        );
        assert!(tx.poll_transmit().is_some());
        tx.handle_response(t0 + ms(5), &good(), 100, "trying");
        assert_eq!(
            tx.poll_timeout(),
            Some(t0 + ms(5000)),
            "no Timer E in Proceeding"
        );
        tx.handle_response(t0 + ms(9), &good(), 200, "ok");
        assert_eq!(tx.state(), State::Terminated, "Timer K is 0 on reliable");
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(
            tx.handle_response(t0 + ms(10), &good(), 200, "dup"),
            MatchResult::Mismatched(MismatchReason::AfterTermination)
        );
    }

    fn mismatches() -> Vec<(ResponseKey, u16, MismatchReason)> {
        let g = good();
        vec![
            (
                ResponseKey {
                    branch: Some("z9hG4bK-other".into()),
                    ..g.clone()
                },
                200,
                MismatchReason::WrongBranch,
            ),
            (
                ResponseKey {
                    branch: Some("Z9HG4BK-PROBE-1".into()),
                    ..g.clone()
                },
                200,
                MismatchReason::WrongBranch,
            ),
            (
                ResponseKey {
                    branch: None,
                    ..g.clone()
                },
                200,
                MismatchReason::WrongBranch,
            ),
            (
                ResponseKey {
                    cseq_method: Some("REGISTER".into()),
                    ..g.clone()
                },
                200,
                MismatchReason::WrongMethod,
            ),
            (
                ResponseKey {
                    cseq_method: Some("options".into()),
                    ..g.clone()
                },
                200,
                MismatchReason::WrongMethod,
            ),
            (
                ResponseKey {
                    cseq_method: None,
                    ..g.clone()
                },
                200,
                MismatchReason::WrongMethod,
            ),
            (
                ResponseKey {
                    call_id: Some("call-2@sipwatch".into()),
                    ..g.clone()
                },
                200,
                MismatchReason::WrongCallId,
            ),
            (
                ResponseKey {
                    call_id: None,
                    ..g.clone()
                },
                200,
                MismatchReason::WrongCallId,
            ),
            (
                ResponseKey {
                    from_tag: Some("ftag2".into()),
                    ..g.clone()
                },
                200,
                MismatchReason::WrongFromTag,
            ),
            (
                ResponseKey {
                    from_tag: None,
                    ..g.clone()
                },
                200,
                MismatchReason::WrongFromTag,
            ),
            (g.clone(), 99, MismatchReason::InvalidStatusCode),
            (g.clone(), 700, MismatchReason::InvalidStatusCode),
            (g.clone(), 0, MismatchReason::InvalidStatusCode),
            (ResponseKey::default(), 200, MismatchReason::WrongBranch),
        ]
    }

    #[test]
    fn mismatches_are_dropped_counted_and_the_right_response_still_wins() {
        let t0 = Instant::now();
        let mut tx = udp(t0, Timers::default());
        assert!(tx.poll_transmit().is_some());
        let cases = mismatches();
        for (i, (k, code, reason)) in cases.iter().enumerate() {
            let r = tx.handle_response(t0 + ms(10 + i as u64), k, *code, "stray");
            assert_eq!(
                r,
                MatchResult::Mismatched(*reason),
                "case {i}: {k:?} {code}"
            );
            assert_eq!(tx.state(), State::Trying, "a stray 2xx/1xx changes nothing");
            assert_eq!(tx.poll_event(), None);
        }
        assert_eq!(tx.mismatched() as usize, cases.len());
        // Timers untouched by strays.
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(500)));
        let r = tx.handle_response(t0 + ms(100), &good(), 200, "ours");
        assert_eq!(r, MatchResult::Matched);
        assert_eq!(
            tx.poll_event(),
            Some(TransactionEvent::Final {
                code: 200,
                response: "ours",
                at: t0 + ms(100)
            })
        );
        // Strays in Completed are still mismatches, not absorbed duplicates.
        let (k, code, reason) = &cases[0];
        assert_eq!(
            tx.handle_response(t0 + ms(200), k, *code, "stray"),
            MatchResult::Mismatched(*reason)
        );
        assert_eq!(tx.absorbed(), 0);
    }

    #[test]
    fn mismatches_do_not_stop_the_timeout() {
        let t0 = Instant::now();
        let mut tx = udp(t0, Timers::default());
        let mut now = t0;
        let cases = mismatches();
        let mut strays = cases.iter().cycle();
        while let Some(d) = tx.poll_timeout() {
            while tx.poll_transmit().is_some() {}
            // A stray right before every timer.
            let (k, code, _) = strays.next().expect("cycle");
            tx.handle_response(d - MS, k, *code, "stray");
            now = d;
            tx.handle_timeout(now);
        }
        assert_eq!(now, t0 + ms(5000));
        assert_eq!(
            tx.mismatched(),
            4,
            "3 before Timer E firings, 1 before Timer F"
        );
        assert_eq!(tx.retransmissions(), 3);
        assert_eq!(
            tx.poll_event(),
            Some(TransactionEvent::Timeout { at: t0 + ms(5000) })
        );
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn transport_error_terminates_with_event() {
        let t0 = Instant::now();
        let mut tx = udp(t0, Timers::default());
        assert!(tx.poll_transmit().is_some());
        tx.handle_timeout(t0 + ms(500));
        tx.handle_transport_error(t0 + ms(700), "ICMP port unreachable".into());
        assert_eq!(tx.state(), State::Terminated);
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(
            tx.poll_event(),
            Some(TransactionEvent::TransportError {
                at: t0 + ms(700),
                error: "ICMP port unreachable".into()
            })
        );
        assert_eq!(tx.poll_event(), None);
        // Nothing more happens: no timeout, no answer taken.
        tx.handle_timeout(t0 + ms(60_000));
        tx.handle_transport_error(t0 + ms(60_001), "again".into());
        assert_eq!(
            tx.handle_response(t0 + ms(60_002), &good(), 200, "late"),
            MatchResult::Mismatched(MismatchReason::AfterTermination)
        );
        assert_eq!(tx.poll_event(), None);

        // In Completed the answer is in: a transport error is ignored.
        let mut tx = udp(t0, Timers::default());
        tx.handle_response(t0 + ms(10), &good(), 200, "ok");
        tx.handle_transport_error(t0 + ms(20), "connection reset".into());
        assert_eq!(tx.state(), State::Completed);
        assert!(matches!(
            tx.poll_event(),
            Some(TransactionEvent::Final { .. })
        ));
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn clock_going_backwards_is_clamped() {
        let t0 = Instant::now();
        let mut tx = udp(t0, Timers::default());
        tx.handle_timeout(t0 + ms(500));
        tx.handle_response(t0 + ms(100), &good(), 200, "ok");
        assert_eq!(
            tx.poll_event(),
            Some(TransactionEvent::Final {
                code: 200,
                response: "ok",
                at: t0 + ms(500)
            })
        );
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(5500)));
    }

    #[test]
    fn timers_validate_and_repair() {
        assert_eq!(Timers::default().validate(), Ok(()));
        assert_eq!(Timers::rfc3261().validate(), Ok(()));
        assert_eq!(Timers::with_timer_f(ms(2000)).timer_f, ms(2000));
        let err = timers(0, 4000, 5000, 5000).validate().unwrap_err();
        assert!(err.to_string().contains("T1"), "{err}");
        let err = timers(500, 100, 5000, 5000).validate().unwrap_err();
        assert!(err.to_string().contains("at least T1"), "{err}");
        assert_eq!(
            timers(500, 4000, 5000, 0).validate(),
            Err(TimersError::TimerFZero)
        );
        // Repaired at run time: T1=0 becomes 1 ms, T2 raised to T1, no busy loop.
        let t0 = Instant::now();
        let mut tx = udp(t0, timers(0, 0, 0, 5));
        assert_eq!(tx.timers().t1, MIN_T1);
        assert_eq!(tx.timers().t2, MIN_T1);
        let (sends, end) = run_unanswered(t0, &mut tx);
        assert_eq!(
            sends,
            [0, 1, 2, 3, 4].into_iter().map(ms).collect::<Vec<_>>()
        );
        assert_eq!(end, ms(5));
        // T4 = 0 on UDP: straight to Terminated on the final.
        let mut tx = udp(t0, timers(500, 4000, 0, 5000));
        tx.handle_response(t0, &good(), 200, "ok");
        assert!(tx.is_terminated());
        // A Timer F too large for Instant never fires instead of panicking.
        let tx = udp(t0, Timers::with_timer_f(Duration::MAX));
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(500)));
    }

    // ----- simulated network: a fake UAS reached through a lossy link, in virtual time -----

    /// A non-INVITE server that answers every request it receives with a 200 (retransmitting its
    /// final response on request retransmissions, like §17.2.2). Losses are decided per direction
    /// by the number of the message (0-based).
    struct LossyLink {
        one_way: Duration,
        lose_requests: Vec<usize>,
        lose_responses: Vec<usize>,
        /// (arrival time at the client, response key, code)
        to_client: Vec<(Instant, ResponseKey, u16)>,
        requests_seen: usize,
        requests_received: usize,
        responses_sent: usize,
        /// Also answer with a 100 Trying before each 200.
        send_trying: bool,
    }

    impl LossyLink {
        fn new(one_way: Duration) -> Self {
            LossyLink {
                one_way,
                lose_requests: vec![],
                lose_responses: vec![],
                to_client: vec![],
                requests_seen: 0,
                requests_received: 0,
                responses_sent: 0,
                send_trying: false,
            }
        }

        /// The UAS reads the identifying fields back out of the request bytes, as a real one would.
        fn uas_receive(&mut self, sent_at: Instant, request: &[u8]) {
            let n = self.requests_seen;
            self.requests_seen += 1;
            if self.lose_requests.contains(&n) {
                return;
            }
            self.requests_received += 1;
            let text = std::str::from_utf8(request).expect("test request is ASCII");
            let field = |prefix: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(prefix))
                    .map(str::to_owned)
            };
            let key = ResponseKey {
                branch: field("Via: SIP/2.0/UDP probe;branch="),
                cseq_method: field("CSeq: 1 "),
                call_id: field("Call-ID: "),
                from_tag: field("From: <sip:probe>;tag="),
            };
            let arrives = sent_at + self.one_way * 2;
            let codes: &[u16] = if self.send_trying {
                &[100, 200]
            } else {
                &[200]
            };
            for &code in codes {
                let m = self.responses_sent;
                self.responses_sent += 1;
                if !self.lose_responses.contains(&m) {
                    self.to_client.push((arrives, key.clone(), code));
                }
            }
        }
    }

    fn sim_request() -> Bytes {
        Bytes::from(format!(
            "OPTIONS sip:uas SIP/2.0\r\nVia: SIP/2.0/UDP probe;branch={}\r\nFrom: <sip:probe>;tag={}\r\nCall-ID: {}\r\nCSeq: 1 {}\r\n\r\n",
            key().branch,
            key().from_tag,
            key().call_id,
            key().method
        ))
    }

    struct SimResult {
        outcome: TransactionEvent<u16>,
        provisionals: usize,
        retransmissions: u32,
        absorbed: u32,
        mismatched: u32,
        terminated_at: Duration,
        sends: Vec<Duration>,
    }

    /// Runs one transaction to Terminated against the link. Strays are (arrival offset, key, code)
    /// responses injected by a third party.
    fn simulate(
        link: &mut LossyLink,
        timers: Timers,
        strays: Vec<(Duration, ResponseKey, u16)>,
    ) -> SimResult {
        let t0 = Instant::now();
        let mut tx: ClientTransaction<u16> =
            ClientTransaction::new(key(), sim_request(), Reliability::Unreliable, timers, t0);
        link.to_client
            .extend(strays.into_iter().map(|(d, k, c)| (t0 + d, k, c)));
        let mut now = t0;
        let mut sends = vec![];
        let mut outcome = None;
        let mut provisionals = 0;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 10_000, "simulation does not converge");
            while let Some(bytes) = tx.poll_transmit() {
                sends.push(now - t0);
                link.uas_receive(now, &bytes);
            }
            while let Some(ev) = tx.poll_event() {
                match ev {
                    TransactionEvent::Provisional { .. } => provisionals += 1,
                    other => {
                        assert!(outcome.is_none(), "exactly one outcome, got {other:?} too");
                        outcome = Some(other);
                    }
                }
            }
            // Next thing to happen: a delivery or a timer, deliveries first on a tie.
            link.to_client.sort_by_key(|(at, _, _)| *at);
            let next_delivery = link.to_client.first().map(|(at, _, _)| *at);
            match (next_delivery, tx.poll_timeout()) {
                (Some(d), timer) if !matches!(timer, Some(t) if t < d) => {
                    let (at, k, code) = link.to_client.remove(0);
                    now = now.max(at);
                    tx.handle_response(now, &k, code, code);
                }
                (_, Some(t)) => {
                    now = t;
                    tx.handle_timeout(now);
                }
                (_, None) => break,
            }
            if tx.is_terminated() && link.to_client.is_empty() {
                while let Some(ev) = tx.poll_event() {
                    assert!(outcome.is_none(), "exactly one outcome, got {ev:?} too");
                    outcome = Some(ev);
                }
                break;
            }
        }
        SimResult {
            outcome: outcome.expect("an outcome"),
            provisionals,
            retransmissions: tx.retransmissions(),
            absorbed: tx.absorbed(),
            mismatched: tx.mismatched(),
            terminated_at: now - t0,
            sends,
        }
    }

    #[test]
    fn lossy_link_answer_arrives_after_n_retransmissions() {
        // Default timers: sends at 0, 0.5, 1.5, 3.5 s; one-way delay 20 ms.
        let send_times = [0u64, 500, 1500, 3500];
        for (lost, sent_at) in send_times.into_iter().enumerate() {
            let mut link = LossyLink::new(ms(20));
            link.lose_requests = (0..lost).collect();
            let r = simulate(&mut link, Timers::default(), vec![]);
            let answer_at = ms(sent_at + 40);
            match r.outcome {
                TransactionEvent::Final { code, response, .. } => {
                    assert_eq!((code, response), (200, 200))
                }
                other => panic!("lost {lost}: expected the 200, got {other:?}"),
            }
            assert_eq!(r.retransmissions, lost as u32, "lost {lost}");
            assert_eq!(r.sends.len(), lost + 1);
            assert_eq!(link.requests_received, 1);
            assert_eq!(r.mismatched, 0);
            // Completed for T4 after the answer, then Terminated.
            assert_eq!(r.terminated_at, answer_at + ms(5000), "lost {lost}");
        }
    }

    #[test]
    fn lossy_link_too_many_losses_times_out() {
        let mut link = LossyLink::new(ms(20));
        link.lose_requests = (0..4).collect(); // every transmission before Timer F
        let r = simulate(&mut link, Timers::default(), vec![]);
        assert!(
            matches!(r.outcome, TransactionEvent::Timeout { .. }),
            "{:?}",
            r.outcome
        );
        assert_eq!(r.retransmissions, 3);
        assert_eq!(r.terminated_at, ms(5000));
        assert_eq!(link.requests_received, 0);
    }

    #[test]
    fn lossy_link_lost_responses_and_duplicates_absorbed() {
        // Request 0 arrives but its 200 is lost; request 1 (0.5 s) gets a 200 back. With a long
        // one-way delay (600 ms) the 1.5 s retransmission also leaves before that 200 arrives,
        // so a duplicate 200 reaches the client in Completed and is absorbed.
        let mut link = LossyLink::new(ms(600));
        link.lose_responses = vec![0];
        let r = simulate(&mut link, Timers::rfc3261(), vec![]);
        assert!(matches!(
            r.outcome,
            TransactionEvent::Final { code: 200, .. }
        ));
        // sends at 0, 0.5 (answered at 1.7 s), 1.5 (answered at 2.7 s)
        assert_eq!(r.sends, vec![ms(0), ms(500), ms(1500)]);
        assert_eq!(r.retransmissions, 2);
        assert_eq!(r.absorbed, 1);
        assert_eq!(r.mismatched, 0);
        assert_eq!(r.terminated_at, ms(1700 + 5000));
    }

    #[test]
    fn lossy_link_with_provisionals_and_strays() {
        // The UAS sends 100 then 200; the first request is lost. A foreign 200 (another
        // transaction's branch) arrives first and must not be taken as the answer.
        let mut link = LossyLink::new(ms(20));
        link.send_trying = true;
        link.lose_requests = vec![0];
        let stray = ResponseKey {
            branch: Some("z9hG4bK-someone-else".into()),
            ..good()
        };
        let r = simulate(
            &mut link,
            Timers::default(),
            vec![(ms(100), stray, 200), (ms(200), good(), 700)],
        );
        match r.outcome {
            TransactionEvent::Final { code: 200, .. } => {}
            other => panic!("expected our 200, got {other:?}"),
        }
        assert_eq!(r.provisionals, 1);
        assert_eq!(r.retransmissions, 1);
        assert_eq!(r.mismatched, 2);
        assert_eq!(r.terminated_at, ms(540 + 5000));
    }
}
