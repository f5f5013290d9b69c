//! Acknowledgements in the state store, so an acknowledged page does not escalate again after
//! a restart. One row per acknowledged notification (group key); created on first use.

use rusqlite::params;

use super::Store;

const TABLE: &str = "CREATE TABLE IF NOT EXISTS acks (
    key TEXT PRIMARY KEY,
    by  TEXT NOT NULL,
    at  REAL NOT NULL
) WITHOUT ROWID;";

impl Store {
    pub fn save_ack(&self, key: &str, by: &str, at: f64) -> Result<(), String> {
        self.conn
            .execute_batch(TABLE)
            .and_then(|_| {
                self.conn.execute(
                    "INSERT INTO acks (key, by, at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET by = excluded.by, at = excluded.at",
                    params![key, by, at],
                )
            })
            .map(|_| ())
            .map_err(|e| format!("saving the acknowledgement of {key}: {e}"))
    }

    /// Every stored acknowledgement: `(key, by, at)`.
    pub fn load_acks(&self) -> Result<Vec<(String, String, f64)>, String> {
        let run = || -> Result<Vec<(String, String, f64)>, rusqlite::Error> {
            self.conn.execute_batch(TABLE)?;
            let mut stmt = self
                .conn
                .prepare("SELECT key, by, at FROM acks ORDER BY key")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        };
        run().map_err(|e| format!("loading acknowledgements: {e}"))
    }

    /// Forgets the acknowledgements of notifications that no longer fire.
    pub fn forget_acks_except(&self, keep: &[String]) -> Result<(), String> {
        let run = || -> Result<(), rusqlite::Error> {
            self.conn.execute_batch(TABLE)?;
            let all = self.load_acks().unwrap_or_default();
            for (key, _, _) in all {
                if !keep.contains(&key) {
                    self.conn
                        .execute("DELETE FROM acks WHERE key = ?1", params![key])?;
                }
            }
            Ok(())
        };
        run().map_err(|e| format!("pruning acknowledgements: {e}"))
    }
}
