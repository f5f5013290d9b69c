//! The dispatcher's retry and back-off in virtual time (tokio's paused clock): a receiver that is
//! down is paused for `initial`, doubling up to `max` (or longer when it asks with
//! `Retry-After`), and new alerts wait with the rest while it is paused; a delivery the receiver
//! refuses is retried on its own schedule without holding up the others, then dropped. Minutes
//! of back-off take milliseconds.
//!
//! In unit tests the outbox's [`unix_now`] follows tokio's clock, so the due times the store
//! keeps move with the virtual sleeps.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::alert::{Alert, AlertStatus, Severity};
use crate::notifier::{Notifier, NotifyError};
use crate::outbox::{Outbox, OutboxOptions};
use crate::retry::RetryPolicy;

/// Unix seconds on tokio's clock: the wall clock when first asked, plus how far tokio's clock
/// (virtual when paused) has moved since.
pub(crate) fn unix_now() -> f64 {
    static ANCHOR: OnceLock<(f64, std::time::Instant)> = OnceLock::new();
    let (wall, at) = *ANCHOR.get_or_init(|| {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        (wall, std::time::Instant::now())
    });
    let now = Instant::now().into_std();
    match now.checked_duration_since(at) {
        Some(ahead) => wall + ahead.as_secs_f64(),
        None => wall - at.duration_since(now).as_secs_f64(),
    }
}

/// A receiver that answers from a script (then accepts) and notes when each attempt came.
#[derive(Debug, Default)]
struct Scripted {
    answers: Mutex<VecDeque<(String, Result<(), NotifyError>)>>,
    attempts: Mutex<Vec<(String, Instant)>>,
}

impl Scripted {
    /// The next attempt for `key` gets `answer` (in the order given).
    fn answer(&self, key: &str, answer: Result<(), NotifyError>) {
        lock(&self.answers).push_back((key.to_string(), answer));
    }

    /// Seconds from `origin` of every attempt for `key`, in order, to the millisecond.
    fn attempts(&self, key: &str, origin: Instant) -> Vec<f64> {
        lock(&self.attempts)
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, at)| ((*at - origin).as_millis() as f64) / 1000.0)
            .collect()
    }

    fn count(&self) -> usize {
        lock(&self.attempts).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Notifier for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        lock(&self.attempts).push((alert.key.clone(), Instant::now()));
        let mut answers = lock(&self.answers);
        match answers.iter().position(|(k, _)| *k == alert.key) {
            Some(i) => answers.remove(i).map_or(Ok(()), |(_, a)| a),
            None => Ok(()),
        }
    }
}

fn alert(key: &str) -> Alert {
    Alert {
        key: key.to_string(),
        status: AlertStatus::Firing,
        severity: Severity::Critical,
        summary: format!("{key} is down"),
        description: String::new(),
        source: "host1".to_string(),
        labels: BTreeMap::new(),
        at: unix_now(),
        url: None,
    }
}

/// An outbox with one scripted receiver and the given policy, its dispatcher running.
struct Rig {
    outbox: Outbox,
    receiver: Arc<Scripted>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// Back-off from `initial` seconds, doubling up to `max`; refused deliveries dropped after
    /// three attempts.
    fn start(initial: u64, max: u64) -> Rig {
        let dir = tempfile::tempdir().expect("a temp dir");
        let receiver = Arc::new(Scripted::default());
        let options = OutboxOptions {
            retry: RetryPolicy {
                initial: Duration::from_secs(initial),
                max: Duration::from_secs(max),
                permanent_attempts: 3,
            },
            ..OutboxOptions::default()
        };
        let outbox = Outbox::open(
            dir.path().join("outbox.db"),
            vec![receiver.clone()],
            options,
        )
        .expect("open the outbox");
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(outbox.clone().run(stopped));
        Rig {
            outbox,
            receiver,
            stop,
            task,
            _dir: dir,
        }
    }

    /// Lets virtual time run until the receiver has seen `n` attempts (at most a virtual hour).
    async fn until_attempts(&self, n: usize) {
        let waited = tokio::time::timeout(Duration::from_secs(3600), async {
            while self.receiver.count() < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "only {} of {n} attempts within a virtual hour",
            self.receiver.count()
        );
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("the dispatcher does not panic");
    }
}

fn down() -> Result<(), NotifyError> {
    Err(NotifyError::retryable("connection refused"))
}

#[tokio::test(start_paused = true)]
async fn a_receiver_that_is_down_is_retried_with_doubling_pauses_up_to_the_cap() {
    let rig = Rig::start(1, 8);
    for _ in 0..6 {
        rig.receiver.answer("k/down", down());
    }
    let origin = Instant::now();
    rig.outbox.enqueue(&alert("k/down")).expect("enqueue");
    rig.until_attempts(7).await;
    // Sent at once; paused 1, 2, 4, 8, then 8 and 8 s (the cap); the seventh try is accepted.
    assert_eq!(
        rig.receiver.attempts("k/down", origin),
        [0.0, 1.0, 3.0, 7.0, 15.0, 23.0, 31.0]
    );
    let stats = rig.outbox.stats();
    let r = stats.receiver("scripted").expect("the receiver's stats");
    assert_eq!((r.sent, r.failed, r.retried, r.pending), (1, 6, 6, 0));
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_receiver_holds_new_alerts_until_the_pause_ends_and_keeps_their_order() {
    let rig = Rig::start(10, 60);
    rig.receiver.answer("k/first", down());
    let origin = Instant::now();
    rig.outbox.enqueue(&alert("k/first")).expect("enqueue");
    rig.until_attempts(1).await;
    // Queued 3 s into the 10 s pause: its bell does not cut the pause short.
    tokio::time::sleep(Duration::from_secs(3)).await;
    rig.outbox.enqueue(&alert("k/second")).expect("enqueue");
    rig.until_attempts(3).await;
    assert_eq!(rig.receiver.attempts("k/first", origin), [0.0, 10.0]);
    assert_eq!(rig.receiver.attempts("k/second", origin), [10.0]);
    let order: Vec<String> = lock(&rig.receiver.attempts)
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(order, ["k/first", "k/first", "k/second"]);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_lengthens_the_pause_but_never_past_the_cap() {
    let rig = Rig::start(1, 30);
    let asked = |secs| {
        Err(NotifyError::from_http_status(
            429,
            "slow down",
            Some(Duration::from_secs(secs)),
        ))
    };
    rig.receiver.answer("k/busy", asked(5));
    rig.receiver.answer("k/busy", asked(3600));
    let origin = Instant::now();
    rig.outbox.enqueue(&alert("k/busy")).expect("enqueue");
    rig.until_attempts(3).await;
    // 5 s as asked (not the 1 s of the back-off); an hour asked is capped at 30 s.
    assert_eq!(rig.receiver.attempts("k/busy", origin), [0.0, 5.0, 35.0]);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_delivery_backs_off_alone_then_is_dropped_while_others_go_out() {
    let rig = Rig::start(2, 60);
    for _ in 0..3 {
        rig.receiver.answer(
            "k/refused",
            Err(NotifyError::permanent("HTTP 400: bad key")),
        );
    }
    let origin = Instant::now();
    rig.outbox.enqueue(&alert("k/refused")).expect("enqueue");
    rig.outbox.enqueue(&alert("k/fine")).expect("enqueue");
    rig.until_attempts(4).await;
    // Tried after 2 s, then 4 s more (its own back-off), then given up after the third refusal;
    // the other alert is not held behind it.
    assert_eq!(rig.receiver.attempts("k/refused", origin), [0.0, 2.0, 6.0]);
    assert_eq!(rig.receiver.attempts("k/fine", origin), [0.0]);
    // Nothing more is tried for it, however long we wait.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(rig.receiver.count(), 4);
    let stats = rig.outbox.stats();
    let r = stats.receiver("scripted").expect("the receiver's stats");
    assert_eq!((r.sent, r.refused, r.pending), (1, 1, 0));
    rig.stop().await;
}
