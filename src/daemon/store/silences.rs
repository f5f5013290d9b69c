//! Run-time silences in the state store, so they survive a restart.
//!
//! One table, one JSON row per silence, written when a silence is added or expired. Config
//! silences are not stored (the config is their home). The table is created on first use, so
//! the store's schema version does not change.

use rusqlite::params;
use sipwatch_alerting::silence::Silence;

use super::Store;

const TABLE: &str = "CREATE TABLE IF NOT EXISTS silences (
    id   TEXT PRIMARY KEY,
    ends REAL NOT NULL,
    json TEXT NOT NULL
) WITHOUT ROWID;";

impl Store {
    /// Adds or replaces a silence (same id).
    pub fn save_silence(&self, silence: &Silence) -> Result<(), String> {
        let json = serde_json::to_string(silence).map_err(|e| e.to_string())?;
        self.conn
            .execute_batch(TABLE)
            .and_then(|_| {
                self.conn.execute(
                    "INSERT INTO silences (id, ends, json) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET ends = excluded.ends, json = excluded.json",
                    params![silence.id, silence.ends, json],
                )
            })
            .map(|_| ())
            .map_err(|e| format!("saving silence {}: {e}", silence.id))
    }

    /// Every stored silence that ended less than `keep_secs` before `now`; older ones are
    /// deleted.
    pub fn load_silences(&self, now: f64, keep_secs: f64) -> Result<Vec<Silence>, String> {
        let run = || -> Result<Vec<Silence>, rusqlite::Error> {
            self.conn.execute_batch(TABLE)?;
            self.conn.execute(
                "DELETE FROM silences WHERE ends < ?1",
                params![now - keep_secs],
            )?;
            let mut stmt = self.conn.prepare("SELECT json FROM silences ORDER BY id")?;
            let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
            let mut out = Vec::new();
            for json in rows {
                let json = json?;
                match serde_json::from_str::<Silence>(&json) {
                    Ok(s) => out.push(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable silence in the store; ignored")
                    }
                }
            }
            Ok(out)
        };
        run().map_err(|e| format!("loading silences: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipwatch_alerting::matcher::Matcher;

    #[test]
    fn silences_survive_a_reopen_and_old_ones_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = |id: &str, ends: f64| Silence {
            id: id.into(),
            matchers: vec![Matcher::parse("target=fe-2").unwrap()],
            starts: 0.0,
            ends,
            comment: "c".into(),
            created_by: "api".into(),
        };
        {
            let store = Store::open(&path, 86_400.0).unwrap();
            store.save_silence(&s("a", 1000.0)).unwrap();
            store.save_silence(&s("b", 10.0)).unwrap();
            store.save_silence(&s("a", 2000.0)).unwrap();
        }
        let store = Store::open(&path, 86_400.0).unwrap();
        let loaded = store.load_silences(500.0, 100.0).unwrap();
        assert_eq!(loaded, vec![s("a", 2000.0)]);
    }
}
