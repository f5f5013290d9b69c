//! sipwatch-probes: everything needed to ask a SIP node "are you there?".
//!
//! Table of contents, from the wire up:
//! - [`message`]: builds OPTIONS and REGISTER requests and parses responses (rsip underneath).
//! - [`transaction`]: the RFC 3261 §17.1.2 client non-INVITE transaction as a sans-IO state machine.
//! - [`digest`]: HTTP digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760).
//! - [`transport`]: UDP, TCP and TLS connections that move bytes and report the peer certificate.
//! - [`locate`]: RFC 3263 server location (NAPTR, SRV, A/AAAA) with hickory-resolver.
//! - [`outcome`]: what a probe found, its status and result, and the Nagios exit code.
//! - [`endpoint`]: a UDP socket shared by many probes, answers routed by Via branch.
//! - [`mmsg`]: batched `sendmmsg`/`recvmmsg` on one UDP socket (the daemon's UDP lane).
//! - [`probe`]: runs one probe (OPTIONS ping or REGISTER) against every located address.
//! - [`text`]: text from the network made safe to print (control characters escaped).
//!
//! Pure parts (message, transaction, digest, outcome) take time and bytes as inputs; only
//! `transport`, `locate` and `probe` touch sockets and clocks.

pub mod digest;
pub mod endpoint;
pub mod locate;
pub mod message;
pub mod mmsg;
pub mod outcome;
pub mod probe;
pub mod text;
pub mod transaction;
pub mod transport;
