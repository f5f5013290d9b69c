//! The outbox on disk: one SQLite file, two tables, synchronous queries.
//!
//! `delivery` holds one row per (alert change, receiver): pending until sent, then `delivered`
//! or `dropped` (kept for a while for inspection, then pruned). `firing` holds the alerts that
//! are firing now, which is what makes enqueue idempotent: "firing" for a key already in it, or
//! "resolved" for a key not in it, is not queued again. Both tables change in one transaction,
//! with `synchronous = FULL`, so an enqueue that returned is on disk. The file is opened in
//! exclusive locking mode: a second process on the same outbox would send everything twice.
//!
//! No async, no clock: callers pass `now` (unix seconds).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::alert::{Alert, AlertStatus};
use crate::outbox::{Enqueued, OutboxError};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS delivery (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver        TEXT NOT NULL,
    alert_key       TEXT NOT NULL,
    status          TEXT NOT NULL,
    alert           TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    enqueued_at     REAL NOT NULL,
    done_at         REAL,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS delivery_by_receiver ON delivery (receiver, state, id);
CREATE INDEX IF NOT EXISTS delivery_by_key ON delivery (receiver, alert_key, state, id);
CREATE INDEX IF NOT EXISTS delivery_by_state ON delivery (state, id);
CREATE TABLE IF NOT EXISTS firing (
    alert_key TEXT PRIMARY KEY,
    alert     TEXT NOT NULL,
    since     REAL NOT NULL
);
";

/// One pending delivery, as handed to a notifier.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub id: i64,
    pub key: String,
    pub alert: Result<Alert, String>,
    pub attempts: u32,
}

/// One delivery as stored, for inspection (`GET /api/v1/notifications`) and test sends.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub receiver: String,
    pub key: String,
    pub status: String,
    /// `pending`, `delivered`, `failed` (refused by the receiver) or `dropped` (evicted).
    pub state: String,
    pub attempts: u32,
    pub enqueued_at: f64,
    pub done_at: Option<f64>,
    pub last_error: Option<String>,
    pub summary: Option<String>,
}

const RECORD_COLUMNS: &str =
    "id, receiver, alert_key, status, state, attempts, enqueued_at, done_at, last_error, alert";

fn record(row: &rusqlite::Row<'_>) -> Result<DeliveryRecord, rusqlite::Error> {
    let alert: String = row.get(9)?;
    Ok(DeliveryRecord {
        id: row.get(0)?,
        receiver: row.get(1)?,
        key: row.get(2)?,
        status: row.get(3)?,
        state: row.get(4)?,
        attempts: row.get::<_, i64>(5)?.clamp(0, u32::MAX as i64) as u32,
        enqueued_at: row.get(6)?,
        done_at: row.get(7)?,
        last_error: row.get(8)?,
        summary: serde_json::from_str::<Alert>(&alert)
            .ok()
            .map(|a| a.summary),
    })
}

/// What `enqueue` did, including pending deliveries evicted to stay within bounds.
pub(crate) struct EnqueueOutcome {
    pub enqueued: Enqueued,
    pub evicted: BTreeMap<String, u64>,
}

pub(crate) struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the outbox file and takes the exclusive lock.
    pub fn open(path: &Path) -> Result<Store, OutboxError> {
        let open_error = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                OutboxError::Locked {
                    path: path.to_path_buf(),
                }
            }
            _ => OutboxError::Open {
                path: path.to_path_buf(),
                reason: e.to_string(),
            },
        };
        let conn = Connection::open(path).map_err(open_error)?;
        conn.busy_timeout(Duration::from_secs(2))
            .map_err(open_error)?;
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(open_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        // Take the lock now rather than at the first enqueue.
        conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;")
            .map_err(open_error)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(open_error)?;
        if version > SCHEMA_VERSION {
            return Err(OutboxError::Open {
                path: path.to_path_buf(),
                reason: format!(
                    "it was written by a newer sipwatch (schema {version}, this one knows \
                     {SCHEMA_VERSION}); upgrade sipwatch or move the file away"
                ),
            });
        }
        conn.execute_batch(SCHEMA).map_err(open_error)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(open_error)?;
        Ok(Store { conn })
    }

    /// Queues `alert` for every receiver unless it repeats the key's current state. Receivers
    /// over `max_pending` lose their oldest pending deliveries (reported in `evicted`).
    pub fn enqueue(
        &mut self,
        alert: &Alert,
        receivers: &[String],
        now: f64,
        max_pending: usize,
    ) -> Result<EnqueueOutcome, rusqlite::Error> {
        let json = serde_json::to_string(alert)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let firing: bool = tx
            .query_row(
                "SELECT 1 FROM firing WHERE alert_key = ?1",
                params![alert.key],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        let mut evicted = BTreeMap::new();
        let enqueued = match (alert.status, firing) {
            (AlertStatus::Firing, true) => Enqueued::AlreadyFiring,
            (AlertStatus::Resolved, false) => Enqueued::NotFiring,
            (status, _) => {
                if status == AlertStatus::Firing {
                    tx.execute(
                        "INSERT INTO firing (alert_key, alert, since) VALUES (?1, ?2, ?3)",
                        params![alert.key, json, alert.at],
                    )?;
                } else {
                    tx.execute(
                        "DELETE FROM firing WHERE alert_key = ?1",
                        params![alert.key],
                    )?;
                }
                for receiver in receivers {
                    let pending: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM delivery WHERE receiver = ?1 AND state = 'pending'",
                        params![receiver],
                        |row| row.get(0),
                    )?;
                    let excess = (pending as u64 + 1).saturating_sub(max_pending.max(1) as u64);
                    if excess > 0 {
                        let n = tx.execute(
                            "UPDATE delivery SET state = 'dropped', done_at = ?3,
                                 last_error = 'outbox full: evicted to make room for newer alerts'
                             WHERE id IN (SELECT id FROM delivery
                                          WHERE receiver = ?1 AND state = 'pending'
                                          ORDER BY id LIMIT ?2)",
                            params![receiver, excess as i64, now],
                        )?;
                        evicted.insert(receiver.clone(), n as u64);
                    }
                    tx.execute(
                        "INSERT INTO delivery (receiver, alert_key, status, alert, next_attempt_at, enqueued_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                        params![receiver, alert.key, status.as_str(), json, now],
                    )?;
                }
                Enqueued::Queued {
                    deliveries: receivers.len(),
                }
            }
        };
        tx.commit()?;
        Ok(EnqueueOutcome { enqueued, evicted })
    }

    /// Queues `alert` for `receivers` without the firing-state dedup: grouped notifications
    /// (whose updates repeat "firing" on purpose) and test sends. With `track`, the key's firing
    /// state follows the alert (so a restart knows what is open); test sends pass `false`.
    /// Returns the new delivery ids per receiver.
    pub fn enqueue_always(
        &mut self,
        alert: &Alert,
        receivers: &[String],
        now: f64,
        track: bool,
    ) -> Result<Vec<(String, i64)>, rusqlite::Error> {
        let json = serde_json::to_string(alert)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if track {
            match alert.status {
                AlertStatus::Firing => tx.execute(
                    "INSERT INTO firing (alert_key, alert, since) VALUES (?1, ?2, ?3)
                     ON CONFLICT (alert_key) DO UPDATE SET alert = excluded.alert",
                    params![alert.key, json, alert.at],
                )?,
                AlertStatus::Resolved => tx.execute(
                    "DELETE FROM firing WHERE alert_key = ?1",
                    params![alert.key],
                )?,
            };
        }
        let mut ids = Vec::new();
        for receiver in receivers {
            tx.execute(
                "INSERT INTO delivery (receiver, alert_key, status, alert, next_attempt_at, enqueued_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![receiver, alert.key, alert.status.as_str(), json, now],
            )?;
            ids.push((receiver.clone(), tx.last_insert_rowid()));
        }
        tx.commit()?;
        Ok(ids)
    }

    /// One delivery row by id.
    pub fn delivery(&self, id: i64) -> Result<Option<DeliveryRecord>, rusqlite::Error> {
        self.conn
            .query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM delivery WHERE id = ?1"),
                params![id],
                record,
            )
            .optional()
    }

    /// The newest deliveries, optionally only those in `state`, newest first.
    pub fn deliveries(
        &self,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, rusqlite::Error> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {RECORD_COLUMNS} FROM delivery WHERE (?1 IS NULL OR state = ?1)
             ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![state, limit as i64], record)?;
        rows.collect()
    }

    /// When the oldest pending delivery of each receiver was queued (unix seconds).
    pub fn oldest_pending(&self) -> Result<BTreeMap<String, f64>, rusqlite::Error> {
        let mut stmt = self.conn.prepare(
            "SELECT receiver, MIN(enqueued_at) FROM delivery WHERE state = 'pending' GROUP BY receiver",
        )?;
        let rows = stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))?;
        rows.collect()
    }

    /// Marks a delivery failed (refused, or a test send abandoned); true when it was pending.
    pub fn mark_failed(
        &self,
        id: i64,
        attempts: Option<u32>,
        now: f64,
        error: &str,
    ) -> Result<bool, rusqlite::Error> {
        let n = self.conn.execute(
            "UPDATE delivery SET state = 'failed', attempts = COALESCE(?2, attempts),
                 done_at = ?3, last_error = ?4
             WHERE id = ?1 AND state = 'pending'",
            params![id, attempts, now, error],
        )?;
        Ok(n > 0)
    }

    /// The oldest pending delivery of `receiver` that is due and is the first pending one of
    /// its key (so a key's deliveries go out in order).
    /// `skip` (a JSON array of ids) is held back by the caller (outcome known in memory but not
    /// written yet); `done` (a JSON array, a subset of `skip`) no longer holds later deliveries
    /// of its key back.
    pub fn next_due(
        &self,
        receiver: &str,
        now: f64,
        skip: &str,
        done: &str,
    ) -> Result<Option<Delivery>, rusqlite::Error> {
        self.conn
            .query_row(
                "SELECT d.id, d.alert_key, d.alert, d.attempts FROM delivery d
                 WHERE d.receiver = ?1 AND d.state = 'pending' AND d.next_attempt_at <= ?2
                   AND d.id NOT IN (SELECT value FROM json_each(?3))
                   AND NOT EXISTS (SELECT 1 FROM delivery e
                                   WHERE e.receiver = d.receiver AND e.alert_key = d.alert_key
                                     AND e.state = 'pending' AND e.id < d.id
                                     AND e.id NOT IN (SELECT value FROM json_each(?4)))
                 ORDER BY d.id LIMIT 1",
                params![receiver, now, skip, done],
                |row| {
                    let json: String = row.get(2)?;
                    Ok(Delivery {
                        id: row.get(0)?,
                        key: row.get(1)?,
                        alert: serde_json::from_str(&json).map_err(|e| e.to_string()),
                        attempts: row.get::<_, i64>(3)?.clamp(0, u32::MAX as i64) as u32,
                    })
                },
            )
            .optional()
    }

    /// When the next delivery of `receiver` becomes due (unix seconds); only the first pending
    /// delivery of each key counts, the others wait for it.
    /// `skip` and `done` as in [`Store::next_due`].
    pub fn next_due_at(
        &self,
        receiver: &str,
        skip: &str,
        done: &str,
    ) -> Result<Option<f64>, rusqlite::Error> {
        self.conn.query_row(
            "SELECT MIN(d.next_attempt_at) FROM delivery d
             WHERE d.receiver = ?1 AND d.state = 'pending'
               AND d.id NOT IN (SELECT value FROM json_each(?2))
               AND NOT EXISTS (SELECT 1 FROM delivery e
                               WHERE e.receiver = d.receiver AND e.alert_key = d.alert_key
                                 AND e.state = 'pending' AND e.id < d.id
                                 AND e.id NOT IN (SELECT value FROM json_each(?3)))",
            params![receiver, skip, done],
            |row| row.get(0),
        )
    }

    pub fn mark_delivered(&self, id: i64, attempts: u32, now: f64) -> Result<(), rusqlite::Error> {
        self.conn.execute(
            "UPDATE delivery SET state = 'delivered', attempts = ?2, done_at = ?3 WHERE id = ?1",
            params![id, attempts, now],
        )?;
        Ok(())
    }

    pub fn mark_dropped(
        &self,
        id: i64,
        attempts: u32,
        now: f64,
        error: &str,
    ) -> Result<(), rusqlite::Error> {
        self.conn.execute(
            "UPDATE delivery SET state = 'dropped', attempts = ?2, done_at = ?3, last_error = ?4
             WHERE id = ?1",
            params![id, attempts, now, error],
        )?;
        Ok(())
    }

    pub fn record_failure(
        &self,
        id: i64,
        attempts: u32,
        next_attempt_at: f64,
        error: &str,
    ) -> Result<(), rusqlite::Error> {
        self.conn.execute(
            "UPDATE delivery SET attempts = ?2, next_attempt_at = ?3, last_error = ?4 WHERE id = ?1",
            params![id, attempts, next_attempt_at, error],
        )?;
        Ok(())
    }

    /// Makes every pending delivery due at `now` (after a restart, try at once).
    pub fn reschedule_pending(&self, now: f64) -> Result<(), rusqlite::Error> {
        self.conn.execute(
            "UPDATE delivery SET next_attempt_at = ?1 WHERE state = 'pending' AND next_attempt_at > ?1",
            params![now],
        )?;
        Ok(())
    }

    /// Pending deliveries per receiver name.
    pub fn pending_counts(&self) -> Result<BTreeMap<String, u64>, rusqlite::Error> {
        let mut stmt = self.conn.prepare(
            "SELECT receiver, COUNT(*) FROM delivery WHERE state = 'pending' GROUP BY receiver",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?.max(0) as u64,
            ))
        })?;
        rows.collect()
    }

    /// The alerts firing now, oldest first.
    pub fn firing(&self) -> Result<Vec<Alert>, rusqlite::Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT alert FROM firing ORDER BY since, alert_key")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        let mut alerts = Vec::new();
        for json in rows {
            if let Ok(alert) = serde_json::from_str(&json?) {
                alerts.push(alert);
            }
        }
        Ok(alerts)
    }

    /// Firing alerts with nothing pending for `receiver` (safe to re-send as they are).
    /// `done` as in [`Store::next_due`].
    pub fn firing_settled(
        &self,
        receiver: &str,
        done: &str,
    ) -> Result<Vec<Alert>, rusqlite::Error> {
        let mut stmt = self.conn.prepare(
            "SELECT f.alert FROM firing f
             WHERE NOT EXISTS (SELECT 1 FROM delivery d
                               WHERE d.receiver = ?1 AND d.alert_key = f.alert_key
                                 AND d.state = 'pending'
                                 AND d.id NOT IN (SELECT value FROM json_each(?2)))
             ORDER BY f.since, f.alert_key",
        )?;
        let rows = stmt.query_map(params![receiver, done], |row| row.get::<_, String>(0))?;
        let mut alerts = Vec::new();
        for json in rows {
            if let Ok(alert) = serde_json::from_str(&json?) {
                alerts.push(alert);
            }
        }
        Ok(alerts)
    }

    /// Deletes finished (delivered or dropped) rows beyond the newest `keep`.
    pub fn prune(&self, keep: usize) -> Result<usize, rusqlite::Error> {
        self.conn.execute(
            "DELETE FROM delivery WHERE state != 'pending' AND id <= (
                 SELECT id FROM delivery WHERE state != 'pending'
                 ORDER BY id DESC LIMIT 1 OFFSET ?1)",
            params![keep as i64],
        )
    }

    /// Rows per state, for tests and inspection.
    pub fn count_by_state(&self) -> Result<BTreeMap<String, u64>, rusqlite::Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT state, COUNT(*) FROM delivery GROUP BY state")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?.max(0) as u64,
            ))
        })?;
        rows.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;

    fn alert(key: &str, status: AlertStatus, at: f64) -> Alert {
        Alert {
            key: key.into(),
            status,
            severity: Severity::Critical,
            summary: "s".into(),
            description: String::new(),
            source: "h".into(),
            labels: Default::default(),
            at,
            url: None,
        }
    }

    fn receivers() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn firing_and_resolved_alternate_and_repeats_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("o.db")).unwrap();
        let r = receivers();
        let e = |s: &mut Store, st, at| {
            s.enqueue(&alert("k", st, at), &r, at, 100)
                .unwrap()
                .enqueued
        };
        assert_eq!(e(&mut s, AlertStatus::Resolved, 1.0), Enqueued::NotFiring);
        assert_eq!(
            e(&mut s, AlertStatus::Firing, 2.0),
            Enqueued::Queued { deliveries: 2 }
        );
        assert_eq!(e(&mut s, AlertStatus::Firing, 3.0), Enqueued::AlreadyFiring);
        assert_eq!(
            e(&mut s, AlertStatus::Resolved, 4.0),
            Enqueued::Queued { deliveries: 2 }
        );
        assert_eq!(e(&mut s, AlertStatus::Resolved, 5.0), Enqueued::NotFiring);
        assert_eq!(
            e(&mut s, AlertStatus::Firing, 6.0),
            Enqueued::Queued { deliveries: 2 }
        );
        assert_eq!(s.pending_counts().unwrap()["a"], 3);
        assert_eq!(s.firing().unwrap().len(), 1);
    }

    #[test]
    fn deliveries_of_one_key_go_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("o.db")).unwrap();
        let r = vec!["a".to_string()];
        s.enqueue(&alert("k1", AlertStatus::Firing, 1.0), &r, 1.0, 100)
            .unwrap();
        s.enqueue(&alert("k1", AlertStatus::Resolved, 2.0), &r, 2.0, 100)
            .unwrap();
        s.enqueue(&alert("k2", AlertStatus::Firing, 3.0), &r, 3.0, 100)
            .unwrap();
        let first = s.next_due("a", 10.0, "[]", "[]").unwrap().unwrap();
        assert_eq!(first.key, "k1");
        // k1's firing is delayed: k1's resolve must wait, k2 may go.
        s.record_failure(first.id, 1, 100.0, "refused").unwrap();
        let next = s.next_due("a", 10.0, "[]", "[]").unwrap().unwrap();
        assert_eq!(next.key, "k2");
        s.mark_delivered(next.id, 1, 10.0).unwrap();
        assert!(s.next_due("a", 10.0, "[]", "[]").unwrap().is_none());
        assert_eq!(s.next_due_at("a", "[]", "[]").unwrap(), Some(100.0));
        let again = s.next_due("a", 100.0, "[]", "[]").unwrap().unwrap();
        assert_eq!(again.id, first.id);
        assert_eq!(again.attempts, 1);
    }

    #[test]
    fn pending_is_bounded_and_done_rows_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("o.db")).unwrap();
        let r = vec!["a".to_string()];
        let mut evicted = 0;
        for i in 0..10 {
            let out = s
                .enqueue(
                    &alert(&format!("k{i}"), AlertStatus::Firing, i as f64),
                    &r,
                    0.0,
                    4,
                )
                .unwrap();
            evicted += out.evicted.get("a").copied().unwrap_or(0);
        }
        assert_eq!(evicted, 6);
        assert_eq!(s.pending_counts().unwrap()["a"], 4);
        assert_eq!(s.next_due("a", 0.0, "[]", "[]").unwrap().unwrap().key, "k6");
        assert_eq!(s.prune(2).unwrap(), 4);
        assert_eq!(s.count_by_state().unwrap()["dropped"], 2);
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let _first = Store::open(&path).unwrap();
        match Store::open(&path) {
            Err(OutboxError::Locked { .. }) => {}
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("second open succeeded"),
        }
    }
}
