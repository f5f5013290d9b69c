//! The dispatcher: one task per receiver moves pending deliveries from the store to the notifier.
//!
//! Each task loops: take the oldest due delivery (first of its key), send it, record the outcome,
//! and on failure do what the [`RetryPolicy`](crate::RetryPolicy) says. With nothing due it
//! sleeps until the next delivery is due, an enqueue rings its bell, a re-send is due
//! (Alertmanager) or shutdown is asked. It decides nothing itself beyond that loop: ordering is
//! the store's query, back-off is the policy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::notifier::NotifyError;
use crate::outbox::memory::Mark;
use crate::outbox::{lock, unix_now, Receiver, Shared};
use crate::retry::NextStep;

/// Longest sleep with nothing to do (a safety net; enqueues wake the task anyway).
const IDLE: Duration = Duration::from_secs(60);
/// Pause after the store itself failed (disk full, I/O error).
const STORE_RETRY: Duration = Duration::from_secs(5);
/// Finished rows are pruned after this many completions.
const PRUNE_EVERY: u64 = 100;
/// How often what waits in memory (disk full) is tried again.
const MEND_EVERY: Duration = Duration::from_secs(2);

pub(crate) async fn run(shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..shared.receivers.len() {
        tasks.spawn(deliver_loop(shared.clone(), index, shutdown.clone()));
    }
    tasks.spawn(mend_loop(shared.clone(), shutdown.clone()));
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            tracing::error!(error = %e, "an outbox delivery task ended abnormally");
        }
    }
    // Leave the file small for the next start.
    if let Err(e) = shared.store().prune(shared.options.keep_done) {
        tracing::warn!(error = %e, "could not prune the outbox");
    }
}

/// Writes what the store could not take (alerts, outcomes) once it can again.
async fn mend_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(MEND_EVERY) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
        if shared.needs_mending() {
            shared.mend();
        }
    }
    // A last try, so what can be written is not left to memory.
    if shared.needs_mending() {
        shared.mend();
    }
}

/// Why a wait ended.
enum Woke {
    Work,
    Shutdown,
}

/// Sleeps for `duration` unless the receiver's bell rings or shutdown is asked.
async fn wait(
    receiver: &Receiver,
    duration: Duration,
    shutdown: &mut watch::Receiver<bool>,
    bell: bool,
) -> Woke {
    if *shutdown.borrow() {
        return Woke::Shutdown;
    }
    let bell_rang = async {
        if bell {
            receiver.wake.notified().await
        } else {
            std::future::pending().await
        }
    };
    tokio::select! {
        _ = tokio::time::sleep(duration) => Woke::Work,
        _ = bell_rang => Woke::Work,
        changed = shutdown.changed() => match changed {
            Ok(()) if !*shutdown.borrow() => Woke::Work,
            _ => Woke::Shutdown,
        },
    }
}

fn decrement(counter: &AtomicU64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(1))
    });
}

async fn deliver_loop(shared: Arc<Shared>, index: usize, mut shutdown: watch::Receiver<bool>) {
    let receiver = &shared.receivers[index];
    let notifier = receiver.notifier.clone();
    let name = notifier.name().to_string();
    let kind = notifier.kind();
    let policy = shared.options.retry;
    let resend = notifier.resend_interval();
    let mut next_resend = resend.map(|every| Instant::now() + every);
    let mut failures: u32 = 0;
    let mut since_prune: u64 = 0;

    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = unix_now();
        // Deliveries whose outcome waits in memory (disk full) are not due: never re-sent.
        let (skip, done) = lock(&shared.marks).skip_lists(now);
        let due = shared.store().next_due(&name, now, &skip, &done);
        let delivery = match due {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(receiver = %name, error = %e, "cannot read the outbox; retrying");
                match wait(receiver, STORE_RETRY, &mut shutdown, false).await {
                    Woke::Work => continue,
                    Woke::Shutdown => break,
                }
            }
        };

        if let Some(delivery) = delivery {
            let known = lock(&shared.marks).attempts(delivery.id);
            let attempts = known.unwrap_or(delivery.attempts).saturating_add(1);
            let alert = match delivery.alert {
                Ok(alert) => alert,
                Err(reason) => {
                    tracing::error!(receiver = %name, key = %delivery.key, %reason,
                        "unreadable delivery in the outbox; dropping it");
                    let written = shared
                        .store()
                        .mark_dropped(delivery.id, attempts, now, &reason);
                    if let Err(e) = written {
                        let mark = Mark::Dropped {
                            attempts,
                            at: now,
                            error: reason.clone(),
                        };
                        shared.keep_mark(delivery.id, mark, &e);
                    } else {
                        lock(&shared.marks).0.remove(&delivery.id);
                    }
                    receiver.dropped.fetch_add(1, Ordering::Relaxed);
                    decrement(&receiver.pending);
                    continue;
                }
            };
            let result =
                match tokio::time::timeout(shared.options.send_timeout, notifier.notify(&alert))
                    .await
                {
                    Ok(result) => result,
                    Err(_) => Err(NotifyError::retryable(format!(
                        "no answer within {:?}",
                        shared.options.send_timeout
                    ))),
                };
            let done_at = unix_now();
            let pause = match result {
                Ok(()) => {
                    failures = 0;
                    receiver.attempt_worked();
                    let written = shared
                        .store()
                        .mark_delivered(delivery.id, attempts, done_at);
                    match written {
                        // Kept in memory and skipped until written: not sent again.
                        Err(e) => shared.keep_mark(
                            delivery.id,
                            Mark::Delivered {
                                attempts,
                                at: done_at,
                            },
                            &e,
                        ),
                        Ok(()) => {
                            lock(&shared.marks).0.remove(&delivery.id);
                        }
                    }
                    receiver.sent.fetch_add(1, Ordering::Relaxed);
                    decrement(&receiver.pending);
                    since_prune += 1;
                    tracing::info!(receiver = %name, kind, key = %alert.key,
                        status = alert.status.as_str(), attempts, "alert delivered");
                    None
                }
                Err(error) => {
                    receiver.failed.fetch_add(1, Ordering::Relaxed);
                    receiver.attempt_failed(done_at);
                    if error.is_retryable() {
                        failures = failures.saturating_add(1);
                    }
                    match policy.after_failure(&error, attempts, failures) {
                        NextStep::PauseReceiver { after } => {
                            tracing::warn!(receiver = %name, kind, key = %alert.key,
                                status = alert.status.as_str(), attempts, retry_in = ?after,
                                %error, "receiver unavailable; the alert stays queued");
                            receiver.retried.fetch_add(1, Ordering::Relaxed);
                            record_failure(
                                &shared,
                                delivery.id,
                                attempts,
                                done_at + after.as_secs_f64(),
                                &error.message,
                            );
                            Some(after)
                        }
                        NextStep::RetryDelivery { after } => {
                            tracing::error!(receiver = %name, kind, key = %alert.key,
                                status = alert.status.as_str(), attempts,
                                max_attempts = policy.permanent_attempts, retry_in = ?after,
                                %error, "receiver REFUSED the alert; check the receiver config");
                            receiver.retried.fetch_add(1, Ordering::Relaxed);
                            record_failure(
                                &shared,
                                delivery.id,
                                attempts,
                                done_at + after.as_secs_f64(),
                                &error.message,
                            );
                            None
                        }
                        NextStep::Drop => {
                            tracing::error!(receiver = %name, kind, key = %alert.key,
                                status = alert.status.as_str(), attempts, %error,
                                "receiver REFUSED the alert again; giving up (DROPPING it): \
                                 on-call was not told through this receiver; it is kept as \
                                 failed (GET /api/v1/notifications?state=failed), fix the \
                                 receiver config");
                            let written = shared.store().mark_failed(
                                delivery.id,
                                Some(attempts),
                                done_at,
                                &error.message,
                            );
                            match written {
                                Err(e) => shared.keep_mark(
                                    delivery.id,
                                    Mark::Failed {
                                        attempts,
                                        at: done_at,
                                        error: error.message.clone(),
                                    },
                                    &e,
                                ),
                                Ok(_) => {
                                    lock(&shared.marks).0.remove(&delivery.id);
                                }
                            }
                            receiver.refused.fetch_add(1, Ordering::Relaxed);
                            decrement(&receiver.pending);
                            since_prune += 1;
                            None
                        }
                    }
                }
            };
            if since_prune >= PRUNE_EVERY {
                since_prune = 0;
                if let Err(e) = shared.store().prune(shared.options.keep_done) {
                    tracing::warn!(receiver = %name, error = %e, "could not prune the outbox");
                }
            }
            if let Some(after) = pause {
                // The bell is ignored while paused: new alerts wait for the receiver like the rest.
                match wait(receiver, after, &mut shutdown, false).await {
                    Woke::Work => continue,
                    Woke::Shutdown => break,
                }
            }
            continue;
        }

        // Nothing due. Re-send firing alerts to receivers that forget them.
        if let (Some(every), Some(at)) = (resend, next_resend) {
            if Instant::now() >= at {
                resend_firing(&shared, receiver, &name).await;
                next_resend = Some(Instant::now() + every);
                continue;
            }
        }

        let (all_marked, next_retry, done) = {
            let marks = lock(&shared.marks);
            (marks.all(), marks.next_retry(), marks.skip_lists(now).1)
        };
        let next = shared.store().next_due_at(&name, &all_marked, &done);
        let until = |at: f64| Duration::from_secs_f64((at - unix_now()).clamp(0.0, 3600.0));
        let mut sleep = match next {
            Ok(Some(due_at)) => until(due_at),
            Ok(None) => IDLE,
            Err(_) => STORE_RETRY,
        };
        if let Some(at) = next_retry {
            // Never a busy loop: a retry kept in memory is at most polled every second.
            sleep = sleep.min(until(at).max(Duration::from_secs(1)));
        }
        sleep = sleep.min(IDLE);
        if let Some(at) = next_resend {
            sleep = sleep.min(at.saturating_duration_since(Instant::now()));
        }
        match wait(receiver, sleep, &mut shutdown, true).await {
            Woke::Work => continue,
            Woke::Shutdown => break,
        }
    }
    tracing::debug!(receiver = %name, "outbox delivery task stopped");
}

/// Records a failed attempt, or keeps it in memory when the store cannot.
fn record_failure(shared: &Shared, id: i64, attempts: u32, next_at: f64, error: &str) {
    let written = shared.store().record_failure(id, attempts, next_at, error);
    match written {
        Err(e) => shared.keep_mark(
            id,
            Mark::Retry {
                attempts,
                next_at,
                error: error.to_string(),
            },
            &e,
        ),
        Ok(()) => {
            lock(&shared.marks).0.remove(&id);
        }
    }
}

/// Re-sends every firing alert that has nothing pending for this receiver. Best effort: a
/// failure is logged and the next round tries again.
async fn resend_firing(shared: &Shared, receiver: &Receiver, name: &str) {
    let done = lock(&shared.marks).skip_lists(unix_now()).1;
    let alerts = match shared.store().firing_settled(name, &done) {
        Ok(alerts) => alerts,
        Err(e) => {
            tracing::warn!(receiver = %name, error = %e, "cannot read firing alerts to re-send");
            return;
        }
    };
    for alert in alerts {
        let result = tokio::time::timeout(
            shared.options.send_timeout,
            receiver.notifier.notify(&alert),
        )
        .await;
        match result {
            Ok(Ok(())) => {
                tracing::debug!(receiver = %name, key = %alert.key, "firing alert re-sent")
            }
            Ok(Err(error)) => {
                tracing::warn!(receiver = %name, key = %alert.key, %error,
                    "re-sending a firing alert failed; next round tries again");
                return;
            }
            Err(_) => {
                tracing::warn!(receiver = %name, key = %alert.key,
                    "re-sending a firing alert timed out; next round tries again");
                return;
            }
        }
    }
}
