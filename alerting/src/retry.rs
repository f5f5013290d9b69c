//! What the outbox does after a failed send: pure policy, no clock, no I/O.
//!
//! A retryable failure (receiver down, slow, overloaded) pauses the whole receiver with
//! exponential back-off (`initial`, doubled per consecutive failure, capped at `max`, never
//! shorter than the receiver's `Retry-After` up to `max`), and the delivery is kept forever:
//! alerts are not lost to an outage. `max` is 30 s: one attempt per receiver every 30 s is no
//! load on anyone, and a page leaves within 30 s of the SMTP relay or pager API coming back
//! (with 300 s it could arrive five minutes late). A permanent failure (the receiver refused this request) only delays
//! that one delivery, and after `permanent_attempts` the delivery is dropped (and counted).

use std::time::Duration;

use crate::notifier::NotifyError;

/// Back-off and give-up rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Pause after the first failure.
    pub initial: Duration,
    /// Longest pause.
    pub max: Duration,
    /// Attempts before a delivery refused as permanent is dropped.
    pub permanent_attempts: u32,
}

/// The outbox's next step for one failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Keep the delivery; pause every delivery of this receiver for `after`.
    PauseReceiver { after: Duration },
    /// Keep the delivery; try it (and later deliveries with the same key) again after `after`.
    RetryDelivery { after: Duration },
    /// Give the delivery up.
    Drop,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            permanent_attempts: 3,
        }
    }
}

impl RetryPolicy {
    /// The pause after `failures` consecutive failures (1 → `initial`, doubling, capped).
    pub fn delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << exponent).min(self.max)
    }

    /// Decides after a failure. `attempts` counts this delivery's attempts including this one;
    /// `receiver_failures` the receiver's consecutive retryable failures including this one.
    pub fn after_failure(
        &self,
        error: &NotifyError,
        attempts: u32,
        receiver_failures: u32,
    ) -> NextStep {
        if error.is_retryable() {
            let mut after = self.delay(receiver_failures.max(1));
            if let Some(asked) = error.retry_after {
                after = after.max(asked.min(self.max));
            }
            NextStep::PauseReceiver { after }
        } else if attempts >= self.permanent_attempts {
            NextStep::Drop
        } else {
            NextStep::RetryDelivery {
                after: self.delay(attempts.max(1)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            permanent_attempts: 3,
        }
    }

    #[test]
    fn the_default_waits_at_most_30_s_so_pages_leave_soon_after_a_receiver_returns() {
        let p = RetryPolicy::default();
        assert_eq!(p.max, Duration::from_secs(30));
        let delays: Vec<u64> = (1..=8).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        let e = NotifyError::from_http_status(429, "", Some(Duration::from_secs(3600)));
        assert_eq!(
            p.after_failure(&e, 1, 1),
            NextStep::PauseReceiver {
                after: Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn delay_doubles_and_caps() {
        let p = policy();
        let delays: Vec<u64> = (1..=11).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(p.delay(0).as_secs(), 1);
        assert_eq!(p.delay(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn retryable_pauses_the_receiver_and_never_drops() {
        let p = policy();
        let e = NotifyError::retryable("connection refused");
        assert_eq!(
            p.after_failure(&e, 1000, 3),
            NextStep::PauseReceiver {
                after: Duration::from_secs(4)
            }
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = policy();
        let mut e = NotifyError::from_http_status(429, "", Some(Duration::from_secs(30)));
        assert_eq!(
            p.after_failure(&e, 1, 1),
            NextStep::PauseReceiver {
                after: Duration::from_secs(30)
            }
        );
        e.retry_after = Some(Duration::from_secs(86_400));
        assert_eq!(
            p.after_failure(&e, 1, 1),
            NextStep::PauseReceiver {
                after: Duration::from_secs(300)
            }
        );
    }

    #[test]
    fn permanent_is_retried_then_dropped() {
        let p = policy();
        let e = NotifyError::from_http_status(400, "invalid routing key", None);
        assert_eq!(
            p.after_failure(&e, 1, 0),
            NextStep::RetryDelivery {
                after: Duration::from_secs(1)
            }
        );
        assert_eq!(
            p.after_failure(&e, 2, 0),
            NextStep::RetryDelivery {
                after: Duration::from_secs(2)
            }
        );
        assert_eq!(p.after_failure(&e, 3, 0), NextStep::Drop);
    }
}
