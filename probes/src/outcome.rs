//! What one probe of one node found, and how that maps to a status (the Nagios plugin convention).
//!
//! [`ProbeOutcome`] is the contract of `sipwatch probe --json` (see DESIGN.md): field names here are
//! public and must not be renamed. [`Policy`] turns a raw observation (a final code, an RTT, a
//! certificate's age) into a [`Status`] and a [`ResultKind`]. Pure: no I/O, no clock.

use serde::{Deserialize, Serialize};

use crate::message::{Method, Transport};

/// Nagios plugin status. Ordered so that the worst one is the maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Unknown,
    Critical,
}

impl Status {
    /// The process exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    /// Across several probes the worst wins; CRITICAL outranks UNKNOWN (a node known to be down
    /// is worse news than a name we could not resolve).
    pub fn worst(self, other: Status) -> Status {
        self.max(other)
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

/// Why the status is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    /// A final answer that proves the node alive and well.
    Ok,
    /// Timer F fired with no final answer.
    Timeout,
    /// Credentials rejected (401/407 after we answered the challenge, or 403).
    AuthFailed,
    /// A final answer the policy counts against the node (503, 5xx, 6xx, or not in `--expect`).
    ErrorResponse,
    /// Connection refused, ICMP port unreachable, reset, TLS handshake failure.
    TransportError,
    /// The name could not be resolved.
    DnsError,
    /// Answered well, but slower than `--warn-rtt`/`--crit-rtt`.
    Slow,
    /// The TLS certificate expires within `--cert-warn-days`/`--cert-crit-days` or does not name the host.
    CertProblem,
    /// REGISTER succeeded but our Contact was not among the bindings in the 200 OK.
    BindingMissing,
    /// What came back could not be parsed as a SIP response to our request.
    BadResponse,
}

impl ResultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultKind::Ok => "ok",
            ResultKind::Timeout => "timeout",
            ResultKind::AuthFailed => "auth_failed",
            ResultKind::ErrorResponse => "error_response",
            ResultKind::TransportError => "transport_error",
            ResultKind::DnsError => "dns_error",
            ResultKind::Slow => "slow",
            ResultKind::CertProblem => "cert_problem",
            ResultKind::BindingMissing => "binding_missing",
            ResultKind::BadResponse => "bad_response",
        }
    }
}

/// One line of `probe --json`: one probe of one resolved address.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeOutcome {
    /// The URI as the user gave it.
    pub target: String,
    pub method: Method,
    pub transport: Transport,
    /// `ip:port` actually used; null when resolution failed.
    pub remote: Option<String>,
    pub status: Status,
    pub result: ResultKind,
    /// The final SIP status code, or null.
    pub code: Option<u16>,
    /// The reason phrase of the final answer, or an explanation of the failure.
    pub reason: String,
    pub rtt_ms: Option<f64>,
    pub retransmissions: u32,
    /// `Server` (or `User-Agent`) header of the answer.
    pub server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_days_left: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_name_matches: Option<bool>,
    /// The certificate's `notAfter`, unix seconds (TLS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_not_after: Option<i64>,
    /// Responses that did not match our transaction and were dropped (RFC 3261 §17.1.3).
    pub mismatched_responses: u32,
    /// Provisional codes seen before the final answer.
    pub provisional: Vec<u16>,
    /// How the address was found: `literal`, `a`, `srv`, `naptr`.
    pub located_by: Option<String>,
    /// REGISTER only: whether our Contact was in the 200 OK, and whether we removed it afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding_confirmed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unregistered: Option<bool>,
    /// Unix time (seconds) the probe started.
    pub started_at: f64,
    /// The messages exchanged, for `--verbose` (never serialised: they can be large).
    #[serde(skip)]
    pub exchange: Vec<ExchangedMessage>,
}

/// One message on the wire, for `--verbose` (the sipsak -vv view).
#[derive(Clone, Debug)]
pub struct ExchangedMessage {
    pub sent: bool,
    pub peer: String,
    pub at_ms: f64,
    pub text: String,
}

/// The rules that turn what was seen into a status. Built from the probe command's flags.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// `--expect`: when set, only these final codes are ok; anything else is critical.
    pub expect: Option<Vec<u16>>,
    pub warn_rtt_ms: Option<f64>,
    pub crit_rtt_ms: Option<f64>,
    pub cert_warn_days: i64,
    pub cert_crit_days: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            expect: None,
            warn_rtt_ms: None,
            crit_rtt_ms: None,
            cert_warn_days: 14,
            cert_crit_days: 3,
        }
    }
}

/// The verdict on a final answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub result: ResultKind,
}

impl Policy {
    /// Judges a final answer to OPTIONS. Default: 2xx ok; any other answer proves the node alive
    /// (a 404, a 405 or a 483 after `--max-forwards 0` all come from a working SIP stack) except
    /// 503 (warning: overloaded or in maintenance) and other 5xx/6xx (critical).
    pub fn judge_options(&self, code: u16) -> Verdict {
        if let Some(expect) = &self.expect {
            return if expect.contains(&code) {
                Verdict {
                    status: Status::Ok,
                    result: ResultKind::Ok,
                }
            } else {
                Verdict {
                    status: Status::Critical,
                    result: ResultKind::ErrorResponse,
                }
            };
        }
        match code {
            200..=499 => Verdict {
                status: Status::Ok,
                result: ResultKind::Ok,
            },
            503 => Verdict {
                status: Status::Warning,
                result: ResultKind::ErrorResponse,
            },
            _ => Verdict {
                status: Status::Critical,
                result: ResultKind::ErrorResponse,
            },
        }
    }

    /// Judges the last final answer of a REGISTER exchange. `answered_challenge` says whether our
    /// credentials were in the request that got this answer.
    pub fn judge_register(&self, code: u16, answered_challenge: bool) -> Verdict {
        if let Some(expect) = &self.expect {
            if expect.contains(&code) {
                return Verdict {
                    status: Status::Ok,
                    result: ResultKind::Ok,
                };
            }
        }
        match code {
            200..=299 if self.expect.is_none() => Verdict {
                status: Status::Ok,
                result: ResultKind::Ok,
            },
            401 | 407 if answered_challenge => Verdict {
                status: Status::Critical,
                result: ResultKind::AuthFailed,
            },
            401 | 407 | 403 => Verdict {
                status: Status::Critical,
                result: ResultKind::AuthFailed,
            },
            503 if self.expect.is_none() => Verdict {
                status: Status::Warning,
                result: ResultKind::ErrorResponse,
            },
            _ => Verdict {
                status: Status::Critical,
                result: ResultKind::ErrorResponse,
            },
        }
    }

    /// Raises a good verdict when the answer was slow.
    pub fn judge_rtt(&self, verdict: Verdict, rtt_ms: f64) -> Verdict {
        if verdict.status != Status::Ok {
            return verdict;
        }
        if self.crit_rtt_ms.is_some_and(|c| rtt_ms > c) {
            return Verdict {
                status: Status::Critical,
                result: ResultKind::Slow,
            };
        }
        if self.warn_rtt_ms.is_some_and(|w| rtt_ms > w) {
            return Verdict {
                status: Status::Warning,
                result: ResultKind::Slow,
            };
        }
        verdict
    }

    /// Raises a good verdict when the TLS certificate is close to expiry or does not name the host.
    pub fn judge_cert(&self, verdict: Verdict, days_left: i64, name_matches: bool) -> Verdict {
        if verdict.status == Status::Critical {
            return verdict;
        }
        if days_left <= self.cert_crit_days || !name_matches {
            return Verdict {
                status: Status::Critical,
                result: ResultKind::CertProblem,
            };
        }
        if days_left <= self.cert_warn_days {
            return Verdict {
                status: verdict.status.worst(Status::Warning),
                result: if verdict.status == Status::Ok {
                    ResultKind::CertProblem
                } else {
                    verdict.result
                },
            };
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_nagios() {
        assert_eq!(Status::Ok.exit_code(), 0);
        assert_eq!(Status::Warning.exit_code(), 1);
        assert_eq!(Status::Critical.exit_code(), 2);
        assert_eq!(Status::Unknown.exit_code(), 3);
        assert_eq!(Status::Ok.worst(Status::Warning), Status::Warning);
        assert_eq!(Status::Unknown.worst(Status::Critical), Status::Critical);
        assert_eq!(Status::Warning.worst(Status::Unknown), Status::Unknown);
    }

    #[test]
    fn options_default_policy() {
        let p = Policy::default();
        assert_eq!(p.judge_options(200).status, Status::Ok);
        assert_eq!(p.judge_options(404).status, Status::Ok);
        assert_eq!(p.judge_options(483).status, Status::Ok);
        assert_eq!(
            p.judge_options(503),
            Verdict {
                status: Status::Warning,
                result: ResultKind::ErrorResponse
            }
        );
        assert_eq!(p.judge_options(500).status, Status::Critical);
        assert_eq!(p.judge_options(603).status, Status::Critical);
    }

    #[test]
    fn expect_makes_it_strict() {
        let p = Policy {
            expect: Some(vec![200]),
            ..Policy::default()
        };
        assert_eq!(p.judge_options(200).status, Status::Ok);
        assert_eq!(p.judge_options(404).status, Status::Critical);
        assert_eq!(p.judge_options(503).status, Status::Critical);
    }

    #[test]
    fn register_policy() {
        let p = Policy::default();
        assert_eq!(p.judge_register(200, true).status, Status::Ok);
        assert_eq!(p.judge_register(401, true).result, ResultKind::AuthFailed);
        assert_eq!(p.judge_register(407, true).result, ResultKind::AuthFailed);
        assert_eq!(p.judge_register(403, false).result, ResultKind::AuthFailed);
        assert_eq!(p.judge_register(503, true).status, Status::Warning);
        assert_eq!(p.judge_register(404, true).status, Status::Critical);
    }

    #[test]
    fn slow_and_cert() {
        let p = Policy {
            warn_rtt_ms: Some(10.0),
            crit_rtt_ms: Some(100.0),
            ..Policy::default()
        };
        let ok = Verdict {
            status: Status::Ok,
            result: ResultKind::Ok,
        };
        assert_eq!(p.judge_rtt(ok, 5.0), ok);
        assert_eq!(
            p.judge_rtt(ok, 50.0),
            Verdict {
                status: Status::Warning,
                result: ResultKind::Slow
            }
        );
        assert_eq!(p.judge_rtt(ok, 500.0).status, Status::Critical);
        assert_eq!(p.judge_cert(ok, 365, true), ok);
        assert_eq!(p.judge_cert(ok, 10, true).status, Status::Warning);
        assert_eq!(p.judge_cert(ok, 2, true).status, Status::Critical);
        assert_eq!(p.judge_cert(ok, -5, true).status, Status::Critical);
        assert_eq!(p.judge_cert(ok, 365, false).result, ResultKind::CertProblem);
    }
}
