//! The state store: one SQLite file (WAL, `synchronous=NORMAL`) holding state changes, group
//! changes, incidents, per-minute probe rollups and each node's state for restarts.
//!
//! [`Store`] is the single writer, owned by the state task. Probes are counted in memory
//! ([`Store::record_probe`], O(1), never fails) and written by [`Store::flush`] in one transaction;
//! board events are written as they come ([`Store::record_events`]). When the file cannot be
//! written (read-only, disk full, locked) every call returns a [`StoreError`] that says what to do,
//! and what was not written stays in memory (bounded: beyond [`MAX_BACKLOG`] rows the oldest are
//! dropped and counted) to be written by the next successful call. Probing never waits on this.
//!
//! [`StoreReader`] is a separate read-only connection (WAL lets it read while the writer writes)
//! that answers the status page's questions through [`History`].
//!
//! Not here: deciding states (`state/`), rendering (`http/`), scheduling flushes (the daemon).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

mod acks;
mod silences;

use super::history::History;
use super::model::{ComponentStatus, GroupState, Incident, NodeState, Observation, UnixTime};
use super::state::{BoardEvent, NodeRecord, SaveMode};

/// SQLite's page cache per connection, as `PRAGMA cache_size` takes it (negative: KiB).
const CACHE_KIB: i64 = -1024;

/// Schema version, kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i32 = 1;

/// Most unwritten rollup rows, and separately unwritten events, kept in memory while the store
/// cannot be written. Beyond it the oldest are dropped (and counted in [`Backlog`]).
pub const MAX_BACKLOG: usize = 100_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS state_changes (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    target TEXT NOT NULL,
    node TEXT NOT NULL,
    grp TEXT,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    notify INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS state_changes_at ON state_changes(at);
CREATE INDEX IF NOT EXISTS state_changes_target ON state_changes(target, at);
CREATE TABLE IF NOT EXISTS group_changes (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    grp TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    serving INTEGER NOT NULL,
    min_up INTEGER NOT NULL,
    notify INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS group_changes_at ON group_changes(at);
CREATE TABLE IF NOT EXISTS board_events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS board_events_at ON board_events(at);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    title TEXT NOT NULL,
    impact TEXT NOT NULL,
    opened_at REAL NOT NULL,
    resolved_at REAL,
    affected TEXT NOT NULL,
    updates TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_opened ON incidents(opened_at);
CREATE INDEX IF NOT EXISTS incidents_resolved ON incidents(resolved_at);
CREATE TABLE IF NOT EXISTS rollups (
    target TEXT NOT NULL,
    node TEXT NOT NULL,
    minute INTEGER NOT NULL,
    probes INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    warning INTEGER NOT NULL,
    rtt_sum REAL NOT NULL,
    rtt_count INTEGER NOT NULL,
    rtt_max REAL NOT NULL,
    PRIMARY KEY (target, minute, node)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollups_minute ON rollups(minute);
CREATE TABLE IF NOT EXISTS nodes (
    target TEXT NOT NULL,
    node TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (target, node)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Why the store could not do what was asked, and what the operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the state store {}: its directory {} does not exist; create it \
         (e.g. `install -d -o sipwatch {}`) or set [store] path to a writable place",
        .path.display(), .dir.display(), .dir.display()
    )]
    MissingDir { path: PathBuf, dir: PathBuf },
    #[error(
        "cannot open the state store {}: {} is not a directory; set [store] path to a file \
         inside a directory",
        .path.display(), .dir.display()
    )]
    NotADirectory { path: PathBuf, dir: PathBuf },
    #[error(
        "cannot open the state store {}: {detail}; check that the path is right and that the \
         sipwatch user may read and write it and its directory",
        .path.display()
    )]
    CannotOpen { path: PathBuf, detail: String },
    #[error(
        "cannot write {}: disk full (SQLITE_FULL); probing goes on, history is kept in memory \
         until it can be written; free space on that filesystem",
        .path.display()
    )]
    Full { path: PathBuf },
    #[error(
        "cannot write {}: it is read-only ({detail}); make the file, its -wal/-shm files and its \
         directory writable by the sipwatch user; probing goes on, history is kept in memory \
         until it can be written",
        .path.display()
    )]
    ReadOnly { path: PathBuf, detail: String },
    #[error(
        "cannot write {}: the database is locked ({detail}); is another `sipwatch run` using the \
         same [store] path? Probing goes on, history is kept in memory until it can be written",
        .path.display()
    )]
    Busy { path: PathBuf, detail: String },
    #[error(
        "cannot write {}: disk I/O error ({detail}); check the disk and the kernel log; probing \
         goes on, history is kept in memory until it can be written",
        .path.display()
    )]
    Io { path: PathBuf, detail: String },
    #[error(
        "{} is not a sipwatch state database or it is corrupt ({detail}); move it aside and \
         restart (a new one is created), or set [store] path to another file",
        .path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{} was written by a newer sipwatch (schema version {found}, this one knows up to \
         {known}); upgrade sipwatch or set [store] path to another file",
        .path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i32,
        known: i32,
    },
    #[error(
        "{} has no sipwatch tables yet; start `sipwatch run` (which creates them) before reading \
         it",
        .path.display()
    )]
    NotInitialized { path: PathBuf },
    #[error("state store {}: {op} failed: {source}", .path.display())]
    Sqlite {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

impl StoreError {
    fn from_sqlite(path: &Path, op: &'static str, e: rusqlite::Error) -> StoreError {
        let path = path.to_path_buf();
        let code = e.sqlite_error_code();
        let detail = e.to_string();
        match code {
            Some(ErrorCode::DiskFull) => StoreError::Full { path },
            Some(ErrorCode::ReadOnly) | Some(ErrorCode::PermissionDenied) => {
                StoreError::ReadOnly { path, detail }
            }
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                StoreError::Busy { path, detail }
            }
            Some(ErrorCode::SystemIoFailure) => StoreError::Io { path, detail },
            Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt { path, detail }
            }
            Some(ErrorCode::CannotOpen) => StoreError::CannotOpen { path, detail },
            _ => StoreError::Sqlite {
                path,
                op,
                source: e,
            },
        }
    }
}

/// What is waiting in memory to be written, and what was lost to the bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    pub rollup_rows: usize,
    pub events: usize,
    pub dropped_rollup_rows: u64,
    pub dropped_events: u64,
}

/// Probe counts of one node in one minute, not yet written.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Rollup {
    probes: u32,
    ok: u32,
    warning: u32,
    rtt_count: u32,
    rtt_sum: f64,
    rtt_max: f64,
}

/// Which row a [`Rollup`] adds to: the target and node names are shared with the caller (the
/// scheduler's names), not copied per row.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RowKey {
    target: Arc<str>,
    node: Arc<str>,
    /// Unix seconds / 60.
    minute: i64,
}

/// Unwritten rollups, one entry per row: a flat table (72 bytes a row) instead of maps nested
/// per target and node (about 1 KB a row with their strings and tree nodes).
/// FxHash: the key (two names from the config and a minute) is hashed on every probe.
type Rollups = rustc_hash::FxHashMap<RowKey, Rollup>;

/// The writer. Not `Sync`: one task owns it.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    retention_secs: f64,
    rollups: Rollups,
    rollup_rows: usize,
    /// Unwritten rollup rows per minute, to find the oldest when the backlog is full.
    rows_per_minute: BTreeMap<i64, usize>,
    events: VecDeque<BoardEvent>,
    dropped_rollup_rows: u64,
    dropped_events: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("backlog", &self.backlog())
            .finish()
    }
}

/// The directory must exist: the daemon does not guess where state should live.
fn check_dir(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(StoreError::NotADirectory {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::MissingDir {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
        }),
        Err(e) if e.raw_os_error() == Some(20) => Err(StoreError::NotADirectory {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
        }),
        Err(e) => Err(StoreError::CannotOpen {
            path: path.to_path_buf(),
            detail: format!("{}: {e}", dir.display()),
        }),
    }
}

fn user_version(conn: &Connection, path: &Path) -> Result<i32, StoreError> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| StoreError::from_sqlite(path, "reading the schema version", e))
}

impl Store {
    /// Opens (creating if needed) the store at `path`. The directory must exist. Creates or
    /// checks the schema; history older than `retention_secs` is removed by [`Store::prune`].
    pub fn open(path: &Path, retention_secs: f64) -> Result<Store, StoreError> {
        Self::open_with_flags(path, retention_secs, OpenFlags::default())
    }

    fn open_with_flags(
        path: &Path,
        retention_secs: f64,
        flags: OpenFlags,
    ) -> Result<Store, StoreError> {
        check_dir(path)?;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| StoreError::from_sqlite(path, "opening", e))?;
        let sql = |op: &'static str| move |e| StoreError::from_sqlite(path, op, e);
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sql("setting the busy timeout"))?;
        let found = user_version(&conn, path)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(sql("switching to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "state store is not in WAL mode; readers may wait for writes");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql("setting synchronous=NORMAL"))?;
        // 1 MiB of page cache instead of SQLite's 2 MiB: the writes are appends and the
        // file is in the kernel's cache anyway (a third of the daemon's heap at 10,000 targets
        // went to SQLite's two caches).
        conn.pragma_update(None, "cache_size", CACHE_KIB)
            .map_err(sql("setting the cache size"))?;
        if found < SCHEMA_VERSION {
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                StoreError::from_sqlite(path, "creating the schema", e)
            })?;
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            retention_secs,
            rollups: Rollups::default(),
            rollup_rows: 0,
            rows_per_minute: BTreeMap::new(),
            events: VecDeque::new(),
            dropped_rollup_rows: 0,
            dropped_events: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What waits in memory to be written (for metrics and the status page's store warning).
    pub fn backlog(&self) -> Backlog {
        Backlog {
            rollup_rows: self.rollup_rows,
            events: self.events.len(),
            dropped_rollup_rows: self.dropped_rollup_rows,
            dropped_events: self.dropped_events,
        }
    }

    /// Writes the events (after any still waiting from a failed write), in one transaction. On
    /// error they all stay in memory and are written by the next successful call or flush.
    pub fn record_events(&mut self, events: &[BoardEvent]) -> Result<(), StoreError> {
        for e in events {
            if self.events.len() >= MAX_BACKLOG {
                self.events.pop_front();
                self.dropped_events += 1;
                if self.dropped_events.is_power_of_two() {
                    tracing::warn!(path = %self.path.display(), dropped = self.dropped_events,
                        "state store backlog full: dropping the oldest unwritten events");
                }
            }
            self.events.push_back(e.clone());
        }
        if self.events.is_empty() {
            return Ok(());
        }
        let mut write = || -> rusqlite::Result<()> {
            let tx = self.conn.transaction()?;
            write_events(&tx, &self.events)?;
            tx.commit()
        };
        write().map_err(|e| StoreError::from_sqlite(&self.path, "writing events", e))?;
        self.events.clear();
        Ok(())
    }

    /// Counts one probe in its node's minute. O(1), in memory, never fails.
    /// `target` and `node` are kept as given when they are `Arc<str>` (no copy), copied from a
    /// `&str`.
    pub fn record_probe(
        &mut self,
        target: impl Into<Arc<str>>,
        node: impl Into<Arc<str>>,
        obs: &Observation,
    ) {
        let minute = minute_of(obs.at);
        let key = RowKey {
            target: target.into(),
            node: node.into(),
            minute,
        };
        let mut new_row = false;
        let r = self.rollups.entry(key).or_insert_with(|| {
            new_row = true;
            Rollup::default()
        });
        r.probes = r.probes.saturating_add(1);
        if obs.is_ok() {
            r.ok = r.ok.saturating_add(1);
        } else if obs.is_warning() {
            r.warning = r.warning.saturating_add(1);
        }
        if let Some(rtt) = obs.rtt_ms.filter(|v| v.is_finite()) {
            r.rtt_sum += rtt;
            r.rtt_count = r.rtt_count.saturating_add(1);
            r.rtt_max = r.rtt_max.max(rtt);
        }
        if new_row {
            self.rollup_rows += 1;
            *self.rows_per_minute.entry(minute).or_insert(0) += 1;
            if self.rollup_rows > MAX_BACKLOG {
                self.drop_oldest_minute();
            }
        }
    }

    fn drop_oldest_minute(&mut self) {
        let Some((minute, rows)) = self.rows_per_minute.pop_first() else {
            return;
        };
        self.rollups.retain(|k, _| k.minute != minute);
        self.rollup_rows -= rows;
        self.dropped_rollup_rows += rows as u64;
        tracing::warn!(path = %self.path.display(), minute = minute * 60, rows,
            dropped = self.dropped_rollup_rows,
            "state store backlog full: dropping the oldest unwritten probe rollups");
    }

    /// Writes every counted minute (finished ones and the current one; counts are added to what
    /// is already stored) and any waiting events, in one transaction. On success memory is
    /// emptied; on error everything stays for the next flush. Rows older than the retention are
    /// discarded instead of written.
    pub fn flush(&mut self, now: UnixTime) -> Result<(), StoreError> {
        let cutoff = minute_of(now - self.retention_secs);
        let stale: Vec<i64> = self
            .rows_per_minute
            .range(..cutoff)
            .map(|(m, _)| *m)
            .collect();
        for m in stale {
            if let Some(rows) = self.rows_per_minute.remove(&m) {
                self.rollup_rows -= rows;
            }
            self.rollups.retain(|k, _| k.minute != m);
        }
        if self.rollup_rows == 0 && self.events.is_empty() {
            self.rollups.clear();
            return Ok(());
        }
        let mut write = || -> rusqlite::Result<()> {
            let tx = self.conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO rollups (target, node, minute, probes, ok, warning, rtt_sum, rtt_count, rtt_max)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (target, minute, node) DO UPDATE SET
                        probes = probes + excluded.probes,
                        ok = ok + excluded.ok,
                        warning = warning + excluded.warning,
                        rtt_sum = rtt_sum + excluded.rtt_sum,
                        rtt_count = rtt_count + excluded.rtt_count,
                        rtt_max = max(rtt_max, excluded.rtt_max)",
                )?;
                for (k, r) in &self.rollups {
                    stmt.execute(params![
                        &*k.target,
                        &*k.node,
                        k.minute,
                        i64::from(r.probes),
                        i64::from(r.ok),
                        i64::from(r.warning),
                        r.rtt_sum,
                        i64::from(r.rtt_count),
                        r.rtt_max,
                    ])?;
                }
            }
            write_events(&tx, &self.events)?;
            tx.commit()
        };
        write().map_err(|e| StoreError::from_sqlite(&self.path, "writing probe rollups", e))?;
        self.rollups.clear();
        self.rows_per_minute.clear();
        self.rollup_rows = 0;
        self.events.clear();
        Ok(())
    }

    /// Saves these node states in one transaction: [`SaveMode::All`] replaces every saved one
    /// (rows of nodes not among them go), [`SaveMode::Changed`] writes these and leaves the other
    /// rows as they are.
    pub fn save_nodes(&mut self, nodes: &[NodeRecord], mode: SaveMode) -> Result<(), StoreError> {
        let path = self.path.clone();
        let mut write = || -> rusqlite::Result<()> {
            let tx = self.conn.transaction()?;
            if mode == SaveMode::All {
                tx.execute("DELETE FROM nodes", [])?;
            }
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR REPLACE INTO nodes (target, node, record) VALUES (?1, ?2, ?3)",
                )?;
                for rec in nodes {
                    match serde_json::to_string(rec) {
                        Ok(json) => {
                            stmt.execute(params![rec.target, rec.node, json])?;
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), target = %rec.target, node = %rec.node,
                                error = %e, "node state not saved: cannot encode it");
                        }
                    }
                }
            }
            tx.commit()
        };
        write().map_err(|e| StoreError::from_sqlite(&self.path, "saving node states", e))
    }

    /// What a restart needs: saved node states, open incidents, the next incident id. Rows that
    /// cannot be decoded are skipped with a warning (the node starts `Unknown`).
    pub fn load(&self) -> Result<(Vec<NodeRecord>, Vec<Incident>, i64), StoreError> {
        let sql = |op: &'static str| {
            let path = self.path.clone();
            move |e| StoreError::from_sqlite(&path, op, e)
        };
        let mut nodes = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT target, node, record FROM nodes ORDER BY target, node")
                .map_err(sql("loading node states"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(sql("loading node states"))?;
            for row in rows {
                let (target, node, json) = row.map_err(sql("loading node states"))?;
                match serde_json::from_str::<NodeRecord>(&json) {
                    Ok(rec) => nodes.push(rec),
                    Err(e) => tracing::warn!(path = %self.path.display(), target, node, error = %e,
                        "saved node state cannot be decoded; the node starts unknown"),
                }
            }
        }
        let open = query_incidents(
            &self.conn,
            &self.path,
            "WHERE resolved_at IS NULL ORDER BY id",
            params![],
        )?;
        let max_id: Option<i64> = self
            .conn
            .query_row("SELECT max(id) FROM incidents", [], |r| r.get(0))
            .map_err(sql("loading incidents"))?;
        let saved_next: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'next_incident_id'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("loading incidents"))?;
        let next = saved_next.unwrap_or(1).max(max_id.unwrap_or(0) + 1).max(1);
        Ok((nodes, open, next))
    }

    /// Deletes rollups, changes, events and resolved incidents older than the retention. Returns
    /// how many rows went.
    pub fn prune(&mut self, now: UnixTime) -> Result<usize, StoreError> {
        let cutoff = now - self.retention_secs;
        let cutoff_minute = minute_of(cutoff);
        let mut write = || -> rusqlite::Result<usize> {
            let tx = self.conn.transaction()?;
            let mut n = tx.execute("DELETE FROM rollups WHERE minute < ?1", [cutoff_minute])?;
            n += tx.execute("DELETE FROM state_changes WHERE at < ?1", [cutoff])?;
            n += tx.execute("DELETE FROM group_changes WHERE at < ?1", [cutoff])?;
            n += tx.execute("DELETE FROM board_events WHERE at < ?1", [cutoff])?;
            n += tx.execute(
                "DELETE FROM incidents WHERE resolved_at IS NOT NULL AND resolved_at < ?1",
                [cutoff],
            )?;
            tx.commit()?;
            Ok(n)
        };
        write().map_err(|e| StoreError::from_sqlite(&self.path, "pruning old history", e))
    }
}

fn minute_of(at: UnixTime) -> i64 {
    (at / 60.0).floor() as i64
}

fn node_state_str(s: NodeState) -> &'static str {
    s.as_str()
}

fn group_state_str(s: GroupState) -> &'static str {
    match s {
        GroupState::Up => "up",
        GroupState::Degraded => "degraded",
        GroupState::Down => "down",
    }
}

fn parse_status(s: &str) -> Option<ComponentStatus> {
    [
        ComponentStatus::Operational,
        ComponentStatus::UnderMaintenance,
        ComponentStatus::DegradedPerformance,
        ComponentStatus::PartialOutage,
        ComponentStatus::MajorOutage,
    ]
    .into_iter()
    .find(|c| c.as_str() == s)
}

fn to_json<T: serde::Serialize>(v: &T) -> rusqlite::Result<String> {
    serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn write_events(conn: &Connection, events: &VecDeque<BoardEvent>) -> rusqlite::Result<()> {
    for e in events {
        match e {
            BoardEvent::Changed(c) => {
                conn.prepare_cached(
                    "INSERT INTO state_changes (at, target, node, grp, from_state, to_state, reason, notify)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    c.at,
                    c.target,
                    c.node,
                    c.group,
                    node_state_str(c.from),
                    node_state_str(c.to),
                    c.reason,
                    c.notify,
                ])?;
            }
            BoardEvent::GroupChanged {
                at,
                group,
                from,
                to,
                serving,
                min_up,
                notify,
            } => {
                conn.prepare_cached(
                    "INSERT INTO group_changes (at, grp, from_state, to_state, serving, min_up, notify)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    at,
                    group,
                    group_state_str(*from),
                    group_state_str(*to),
                    *serving as i64,
                    *min_up as i64,
                    notify,
                ])?;
            }
            BoardEvent::IncidentOpened(i)
            | BoardEvent::IncidentUpdated(i)
            | BoardEvent::IncidentResolved(i) => {
                conn.prepare_cached(
                    "INSERT INTO incidents (id, key, title, impact, opened_at, resolved_at, affected, updates)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (id) DO UPDATE SET key = excluded.key, title = excluded.title,
                        impact = excluded.impact, opened_at = excluded.opened_at,
                        resolved_at = excluded.resolved_at, affected = excluded.affected,
                        updates = excluded.updates",
                )?
                .execute(params![
                    i.id,
                    i.key,
                    i.title,
                    i.impact.as_str(),
                    i.opened_at,
                    i.resolved_at,
                    to_json(&i.affected)?,
                    to_json(&i.updates)?,
                ])?;
                conn.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES ('next_incident_id', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                )?
                .execute([i.id + 1])?;
            }
            BoardEvent::FlapStarted {
                at, target, node, ..
            }
            | BoardEvent::FlapEnded {
                at, target, node, ..
            } => {
                insert_board_event(conn, *at, e, &format!("{target} {node}"))?;
            }
            BoardEvent::DnsChanged { at, target, .. } => {
                insert_board_event(conn, *at, e, target)?;
            }
            BoardEvent::MaintenanceChanged { at, key, .. } => {
                insert_board_event(conn, *at, e, key)?;
            }
        }
    }
    Ok(())
}

fn insert_board_event(
    conn: &Connection,
    at: UnixTime,
    e: &BoardEvent,
    subject: &str,
) -> rusqlite::Result<()> {
    let detail = serde_json::to_value(e)
        .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
    let kind = detail
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("event")
        .to_string();
    conn.prepare_cached(
        "INSERT INTO board_events (at, kind, subject, detail) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![at, kind, subject, detail.to_string()])?;
    Ok(())
}

fn query_incidents(
    conn: &Connection,
    path: &Path,
    tail: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Incident>, StoreError> {
    let err = |e| StoreError::from_sqlite(path, "reading incidents", e);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT id, key, title, impact, opened_at, resolved_at, affected, updates FROM incidents {tail}"
        ))
        .map_err(err)?;
    let rows = stmt
        .query_map(args, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, f64>(4)?,
                r.get::<_, Option<f64>>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })
        .map_err(err)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, key, title, impact, opened_at, resolved_at, affected, updates) =
            row.map_err(err)?;
        let decoded = (|| -> Result<Incident, String> {
            Ok(Incident {
                id,
                key,
                title,
                impact: parse_status(&impact).ok_or_else(|| format!("impact {impact:?}"))?,
                opened_at,
                resolved_at,
                affected: serde_json::from_str(&affected).map_err(|e| format!("affected: {e}"))?,
                updates: serde_json::from_str(&updates).map_err(|e| format!("updates: {e}"))?,
            })
        })();
        match decoded {
            Ok(i) => out.push(i),
            Err(e) => tracing::warn!(path = %path.display(), incident = id, error = %e,
                "stored incident cannot be decoded; skipped"),
        }
    }
    Ok(out)
}

/// A read-only connection for the HTTP layer. `Send + Sync`; queries are blocking.
pub struct StoreReader {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReader")
            .field("path", &self.path)
            .finish()
    }
}

impl StoreReader {
    /// Opens the store that [`Store::open`] created, read-only.
    pub fn open(path: &Path) -> Result<StoreReader, StoreError> {
        check_dir(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| StoreError::from_sqlite(path, "opening for reading", e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| StoreError::from_sqlite(path, "setting the busy timeout", e))?;
        conn.pragma_update(None, "cache_size", CACHE_KIB)
            .map_err(|e| StoreError::from_sqlite(path, "setting the cache size", e))?;
        let found = user_version(&conn, path)?;
        if found == 0 {
            return Err(StoreError::NotInitialized {
                path: path.to_path_buf(),
            });
        }
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        Ok(StoreReader {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, String> {
        // A panic in another query cannot leave a SQLite connection half-used: reuse it.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|e| e.to_string())
    }
}

impl History for StoreReader {
    fn uptime(&self, target: &str, since: UnixTime) -> Result<Option<f64>, String> {
        self.with_conn(|conn| {
            let (probes, serving): (Option<i64>, Option<i64>) = conn
                .prepare_cached(
                    "SELECT sum(probes), sum(ok) + sum(warning) FROM rollups
                     WHERE target = ?1 AND minute >= ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![target, minute_of(since)], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                })
                .map_err(|e| StoreError::from_sqlite(&self.path, "computing uptime", e))?;
            Ok(match (probes, serving) {
                (Some(p), Some(s)) if p > 0 => Some(s as f64 / p as f64),
                _ => None,
            })
        })
    }

    /// Per minute, the mean of every RTT measured on any node of the target in that minute.
    fn rtt_series(&self, target: &str, since: UnixTime) -> Result<Vec<(UnixTime, f64)>, String> {
        self.with_conn(|conn| {
            let err = |e| StoreError::from_sqlite(&self.path, "reading RTT history", e);
            let mut stmt = conn
                .prepare_cached(
                    "SELECT minute, sum(rtt_sum) / sum(rtt_count) FROM rollups
                     WHERE target = ?1 AND minute >= ?2 AND rtt_count > 0
                     GROUP BY minute ORDER BY minute",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(params![target, minute_of(since)], |r| {
                    Ok((r.get::<_, i64>(0)? as f64 * 60.0, r.get::<_, f64>(1)?))
                })
                .map_err(err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)
        })
    }

    /// Every target's uptimes and RTT series in two passes over the rollups.
    fn page_history(
        &self,
        names: &[String],
        now: UnixTime,
    ) -> HashMap<String, crate::daemon::http::page::TargetHistory> {
        use crate::daemon::http::page::TargetHistory;
        let day = minute_of(now - 86400.0);
        let week = minute_of(now - 7.0 * 86400.0);
        type Counts = (i64, i64, i64, i64);
        let gathered = self.with_conn(|conn| {
            let err = |e| StoreError::from_sqlite(&self.path, "reading the page's history", e);
            let mut counts: HashMap<String, Counts> = HashMap::new();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT target, sum(probes), sum(ok) + sum(warning),
                            sum(CASE WHEN minute >= ?1 THEN probes ELSE 0 END),
                            sum(CASE WHEN minute >= ?1 THEN ok + warning ELSE 0 END)
                     FROM rollups WHERE minute >= ?2 GROUP BY target",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(params![day, week], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
                    ))
                })
                .map_err(err)?;
            for row in rows {
                let (target, c) = row.map_err(err)?;
                counts.insert(target, c);
            }
            let mut series: HashMap<String, Vec<(UnixTime, f64)>> = HashMap::new();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT target, minute, sum(rtt_sum) / sum(rtt_count) FROM rollups
                     WHERE minute >= ?1 AND rtt_count > 0
                     GROUP BY target, minute ORDER BY target, minute",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(params![day], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)? as f64 * 60.0,
                        r.get::<_, f64>(2)?,
                    ))
                })
                .map_err(err)?;
            for row in rows {
                let (target, at, rtt) = row.map_err(err)?;
                series.entry(target).or_default().push((at, rtt));
            }
            Ok((counts, series))
        });
        let share =
            |probes: i64, serving: i64| (probes > 0).then(|| serving as f64 / probes as f64);
        names
            .iter()
            .map(|name| {
                let h = match &gathered {
                    Ok((counts, series)) => {
                        let (p7, s7, p1, s1) = counts.get(name).copied().unwrap_or_default();
                        TargetHistory {
                            uptime_24h: Ok(share(p1, s1)),
                            uptime_7d: Ok(share(p7, s7)),
                            rtt_24h: Ok(series.get(name).cloned().unwrap_or_default()),
                        }
                    }
                    Err(e) => TargetHistory {
                        uptime_24h: Err(e.clone()),
                        uptime_7d: Err(e.clone()),
                        rtt_24h: Err(e.clone()),
                    },
                };
                (name.clone(), h)
            })
            .collect()
    }

    /// Incidents opened or resolved since `since`, plus those still open, newest first.
    fn incidents(&self, since: UnixTime, limit: usize) -> Result<Vec<Incident>, String> {
        self.with_conn(|conn| {
            query_incidents(
                conn,
                &self.path,
                "WHERE opened_at >= ?1 OR resolved_at >= ?1 OR resolved_at IS NULL
                 ORDER BY opened_at DESC, id DESC LIMIT ?2",
                params![since, limit.min(i64::MAX as usize) as i64],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::state::{Board, GroupSpec, TargetSpec, Thresholds};
    use sipwatch_probes::outcome::{ResultKind, Status};

    fn obs(at: UnixTime, status: &str, rtt: Option<f64>) -> Observation {
        let (status, result) = match status {
            "ok" => (Status::Ok, ResultKind::Ok),
            "warning" => (Status::Warning, ResultKind::Timeout),
            "critical" => (Status::Critical, ResultKind::Timeout),
            other => panic!("no probe status {other:?}"),
        };
        Observation {
            at,
            status,
            result,
            code: None,
            rtt_ms: rtt,
            reason: String::new(),
            cert_days_left: None,
        }
    }

    fn count(store: &Store, table: &str) -> i64 {
        store
            .conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    }

    /// Target `name` of group `core`, default thresholds.
    fn spec(name: &str) -> TargetSpec {
        TargetSpec {
            name: name.to_string(),
            uri: format!("sip:{name}.example.net"),
            method: "OPTIONS".to_string(),
            group: Some("core".to_string()),
            thresholds: Thresholds::default(),
        }
    }

    /// A board that produced real events: a node down (incident), a group change, a recovery.
    fn board_events() -> (Board, Vec<BoardEvent>, f64) {
        let mut b = Board::new(
            "S".into(),
            vec![spec("a"), spec("b")],
            vec![GroupSpec {
                name: "core".into(),
                min_up: 2,
            }],
        );
        let mut ev = Vec::new();
        let nodes = vec![
            ("10.0.0.1:5060".to_string(), "udp".to_string()),
            ("10.0.0.2:5060".to_string(), "udp".to_string()),
        ];
        ev.extend(b.set_nodes("a", &nodes, 0.0));
        ev.extend(b.set_nodes("b", &nodes[..1], 0.0));
        let mut at = 1000.0;
        let mut feed =
            |b: &mut Board, t: &str, n: &str, s: &str, k: usize, ev: &mut Vec<BoardEvent>| {
                for _ in 0..k {
                    at += 10.0;
                    ev.extend(b.observe(t, n, obs(at, s, Some(10.0))));
                }
            };
        feed(&mut b, "a", "10.0.0.1:5060", "ok", 2, &mut ev);
        feed(&mut b, "a", "10.0.0.2:5060", "ok", 2, &mut ev);
        feed(&mut b, "b", "10.0.0.1:5060", "ok", 2, &mut ev);
        feed(&mut b, "b", "10.0.0.1:5060", "critical", 3, &mut ev); // b down: incident + group down
        feed(&mut b, "a", "10.0.0.2:5060", "critical", 3, &mut ev); // a: 1 of 2 down
        feed(&mut b, "b", "10.0.0.1:5060", "ok", 2, &mut ev); // b back: resolved, group degraded
        ev.extend(b.set_maintenance(&["a".to_string()], &[], 2000.0));
        (b, ev, 2000.0)
    }

    #[test]
    fn events_incidents_and_nodes_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let mut store = Store::open(&path, 86400.0).expect("open");
        let (board, events, now) = board_events();
        store.record_events(&events).expect("record");
        store
            .save_nodes(&board.node_records(), SaveMode::All)
            .expect("save");
        let n_changes = events
            .iter()
            .filter(|e| matches!(e, BoardEvent::Changed(_)))
            .count();
        let n_groups = events
            .iter()
            .filter(|e| matches!(e, BoardEvent::GroupChanged { .. }))
            .count();
        assert_eq!(count(&store, "state_changes"), n_changes as i64);
        assert_eq!(count(&store, "group_changes"), n_groups as i64);
        assert!(n_groups >= 2);
        assert_eq!(count(&store, "board_events"), 1, "the maintenance event");
        // Two target incidents (b resolved, a open), one group incident (resolved).
        assert_eq!(count(&store, "incidents"), 3);
        drop(store);

        // A restart: everything comes back, and a new board resumes silently.
        let store = Store::open(&path, 86400.0).expect("reopen");
        let (nodes, open, next) = store.load().expect("load");
        assert_eq!(nodes, board.node_records());
        assert_eq!(open, board.snapshot(now).open_incidents);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].key, "target:a");
        assert_eq!(next, board.next_incident_id());

        let reader = StoreReader::open(&path).expect("reader");
        let all = reader.incidents(0.0, 10).expect("incidents");
        assert_eq!(all.len(), 3);
        assert!(
            all.windows(2).all(|w| w[0].opened_at >= w[1].opened_at),
            "newest first"
        );
        let resolved_b = all.iter().find(|i| i.key == "target:b").expect("b");
        assert!(resolved_b.resolved_at.is_some());
        assert_eq!(
            resolved_b.updates.last().map(|u| u.status.as_str()),
            Some("resolved")
        );
        assert_eq!(reader.incidents(0.0, 1).expect("limit").len(), 1);
        // Since after everything: only the still-open one.
        let recent = reader.incidents(now + 1.0, 10).expect("recent");
        assert_eq!(
            recent.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            vec!["target:a"]
        );
    }

    #[test]
    fn next_incident_id_survives_pruning_every_incident() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let mut store = Store::open(&path, 10.0).expect("open");
        let (_, events, _) = board_events();
        store.record_events(&events).expect("record");
        let (_, _, next) = store.load().expect("load");
        store
            .conn
            .execute("UPDATE incidents SET resolved_at = 1.0", [])
            .expect("resolve all");
        assert!(store.prune(100_000.0).expect("prune") >= 3);
        assert_eq!(count(&store, "incidents"), 0);
        assert_eq!(store.load().expect("load").2, next);
    }

    #[test]
    fn probes_roll_up_per_minute_into_uptime_and_rtt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let mut store = Store::open(&path, 86400.0).expect("open");
        let reader = StoreReader::open(&path).expect("reader");
        let t0 = 6000.0; // minute 100
                         // Minute 100: node 1 ok 10ms + ok 20ms, node 2 warning 30ms + critical (no rtt).
        store.record_probe("edge", "n1", &obs(t0 + 1.0, "ok", Some(10.0)));
        store.record_probe("edge", "n1", &obs(t0 + 31.0, "ok", Some(20.0)));
        store.record_probe("edge", "n2", &obs(t0 + 2.0, "warning", Some(30.0)));
        store.record_probe("edge", "n2", &obs(t0 + 32.0, "critical", None));
        store.record_probe("other", "n1", &obs(t0 + 1.0, "critical", None));
        // Minute 101, flushed mid-minute, then more of the same minute.
        store.record_probe("edge", "n1", &obs(t0 + 61.0, "critical", Some(100.0)));
        assert_eq!(store.backlog().rollup_rows, 4);
        store.flush(t0 + 62.0).expect("flush");
        assert_eq!(store.backlog(), Backlog::default());
        store.record_probe("edge", "n1", &obs(t0 + 91.0, "ok", Some(200.0)));
        store.flush(t0 + 92.0).expect("flush");
        assert_eq!(count(&store, "rollups"), 4);
        let (probes, max): (i64, f64) = store
            .conn
            .query_row(
                "SELECT probes, rtt_max FROM rollups WHERE target='edge' AND node='n1' AND minute=101",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("row");
        assert_eq!(
            (probes, max),
            (2, 200.0),
            "the current minute is added to, not replaced"
        );

        // edge: 6 probes, ok/warning: n1 ok, ok, ok(101) + n2 warning = 4.
        assert_eq!(reader.uptime("edge", t0).expect("uptime"), Some(4.0 / 6.0));
        assert_eq!(reader.uptime("edge", t0 + 60.0).expect("uptime"), Some(0.5));
        assert_eq!(reader.uptime("other", t0).expect("uptime"), Some(0.0));
        assert_eq!(reader.uptime("nobody", t0).expect("uptime"), None);
        let series = reader.rtt_series("edge", t0).expect("rtt");
        assert_eq!(series, vec![(t0, 20.0), (t0 + 60.0, 150.0)]);
        assert!(reader.rtt_series("other", t0).expect("rtt").is_empty());

        // The status page's batched answer is the per-target answers, for every target asked.
        let names: Vec<String> = ["edge", "other", "nobody"].map(String::from).to_vec();
        for now in [t0 + 86400.0, t0 + 86400.0 + 60.0, t0 + 7.0 * 86400.0] {
            let batch = reader.page_history(&names, now);
            assert_eq!(batch.len(), 3);
            for name in &names {
                let h = &batch[name];
                assert_eq!(
                    h.uptime_24h,
                    reader.uptime(name, now - 86400.0),
                    "{name} at {now}"
                );
                assert_eq!(h.uptime_7d, reader.uptime(name, now - 7.0 * 86400.0));
                assert_eq!(h.rtt_24h, reader.rtt_series(name, now - 86400.0));
            }
        }
    }

    #[test]
    fn flush_without_anything_to_write_is_quiet_and_stale_rows_are_not_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("s.db"), 3600.0).expect("open");
        store.flush(10.0).expect("empty flush");
        store.record_probe("edge", "n1", &obs(0.0, "ok", None));
        store.record_probe("edge", "n1", &obs(7200.0, "ok", None));
        store.flush(7200.0).expect("flush");
        let minutes: Vec<i64> = store
            .conn
            .prepare("SELECT minute FROM rollups")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("minutes");
        assert_eq!(minutes, vec![120]);
    }

    #[test]
    fn prune_deletes_what_is_older_than_the_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let mut store = Store::open(&path, 3600.0).expect("open");
        let (_, events, _) = board_events(); // times around 1000..2000
        store.record_events(&events).expect("record");
        store.record_probe("edge", "n1", &obs(1000.0, "ok", Some(1.0)));
        store.record_probe("edge", "n1", &obs(5000.0, "ok", Some(1.0)));
        store.flush(5000.0).expect("flush");
        let before_changes = count(&store, "state_changes");
        assert!(before_changes > 0);
        // now - retention = 4000: rollup of minute 16 goes, minute 83 stays; every change goes;
        // resolved incidents go, the open one stays.
        let deleted = store.prune(7600.0).expect("prune");
        assert_eq!(count(&store, "rollups"), 1);
        assert_eq!(count(&store, "state_changes"), 0);
        assert_eq!(count(&store, "group_changes"), 0);
        assert_eq!(count(&store, "board_events"), 0);
        assert_eq!(count(&store, "incidents"), 1);
        let (_, open, _) = store.load().expect("load");
        assert_eq!(open.len(), 1);
        assert!(deleted as i64 >= 1 + before_changes + 2);
        assert_eq!(store.prune(7600.0).expect("again"), 0);
    }

    #[test]
    fn a_full_disk_keeps_history_in_memory_and_writes_it_once_space_is_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let mut store = Store::open(&path, 86400.0).expect("open");
        let reader = StoreReader::open(&path).expect("reader");
        let pages: i64 = store
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .expect("page_count");
        store
            .conn
            .pragma_update(None, "max_page_count", pages)
            .expect("limit");
        for n in 0..3000 {
            store.record_probe(
                "edge",
                format!("10.0.{}.{}:5060", n / 250, n % 250),
                &obs(6000.0, "ok", Some(5.0)),
            );
        }
        let err = store.flush(6000.0).expect_err("must not fit");
        assert!(matches!(err, StoreError::Full { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("disk full (SQLITE_FULL)"), "{msg}");
        assert!(msg.contains("kept in memory"), "{msg}");
        assert_eq!(store.backlog().rollup_rows, 3000);
        assert_eq!(
            count(&store, "rollups"),
            0,
            "the failed transaction left nothing half-written"
        );
        // Events fail the same way and wait too.
        let (_, events, _) = board_events();
        let many: Vec<BoardEvent> = events
            .iter()
            .cycle()
            .take(events.len() * 50)
            .cloned()
            .collect();
        let err = store.record_events(&many).expect_err("must not fit");
        assert!(matches!(err, StoreError::Full { .. }), "{err:?}");
        assert_eq!(store.backlog().events, many.len());
        // Probes keep coming while the disk is full.
        store.record_probe("edge", "10.0.0.0:5060", &obs(6001.0, "critical", None));

        store
            .conn
            .pragma_update(None, "max_page_count", 1_000_000_000i64)
            .expect("lift");
        store.flush(6002.0).expect("flush after space is back");
        assert_eq!(store.backlog(), Backlog::default());
        assert_eq!(count(&store, "rollups"), 3000);
        assert_eq!(
            count(&store, "state_changes"),
            50 * events
                .iter()
                .filter(|e| matches!(e, BoardEvent::Changed(_)))
                .count() as i64
        );
        assert_eq!(
            reader.uptime("edge", 0.0).expect("uptime"),
            Some(3000.0 / 3001.0)
        );
    }

    #[test]
    fn a_read_only_store_says_so_and_keeps_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        drop(Store::open(&path, 86400.0).expect("create"));
        // Root ignores file modes: open the writer read-only the way a read-only mount would.
        let mut store = Store::open_with_flags(&path, 86400.0, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("opening an existing store read-only succeeds");
        let (board, events, _) = board_events();
        let err = store.record_events(&events).expect_err("read-only");
        assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("read-only") && msg.contains(&path.display().to_string()),
            "{msg}"
        );
        assert_eq!(store.backlog().events, events.len());
        assert!(matches!(
            store.save_nodes(&board.node_records(), SaveMode::All),
            Err(StoreError::ReadOnly { .. })
        ));
        store.record_probe("edge", "n1", &obs(60.0, "ok", None));
        assert!(matches!(
            store.flush(61.0),
            Err(StoreError::ReadOnly { .. })
        ));
        assert_eq!(store.backlog().rollup_rows, 1);
        assert!(matches!(store.prune(1e9), Err(StoreError::ReadOnly { .. })));
        // A fresh file cannot even get its schema.
        let fresh = dir.path().join("fresh.db");
        std::fs::write(&fresh, b"").expect("empty file");
        let err = Store::open_with_flags(&fresh, 1.0, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect_err("no schema on a read-only file");
        assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
    }

    #[test]
    fn opening_errors_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-dir").join("state.db");
        let err = Store::open(&missing, 1.0).expect_err("missing dir");
        assert!(matches!(err, StoreError::MissingDir { .. }), "{err:?}");
        assert!(
            err.to_string().contains("does not exist; create it"),
            "{err}"
        );
        assert!(
            !missing.parent().map(Path::exists).unwrap_or(true),
            "no directory created"
        );

        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").expect("file");
        let err = Store::open(&file.join("state.db"), 1.0).expect_err("parent is a file");
        assert!(matches!(err, StoreError::NotADirectory { .. }), "{err:?}");
        assert!(err.to_string().contains("is not a directory"), "{err}");

        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![b'z'; 4096]).expect("garbage");
        let err = Store::open(&garbage, 1.0).expect_err("not a database");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("move it aside"), "{err}");

        let newer = dir.path().join("newer.db");
        drop(Store::open(&newer, 1.0).expect("create"));
        Connection::open(&newer)
            .and_then(|c| c.pragma_update(None, "user_version", 99))
            .expect("bump version");
        let err = Store::open(&newer, 1.0).expect_err("newer schema");
        assert!(
            matches!(err, StoreError::NewerSchema { found: 99, .. }),
            "{err:?}"
        );
        assert!(matches!(
            StoreReader::open(&newer),
            Err(StoreError::NewerSchema { .. })
        ));

        let empty = dir.path().join("empty.db");
        Connection::open(&empty)
            .and_then(|c| c.execute_batch("CREATE TABLE x (y)"))
            .expect("db");
        assert!(matches!(
            StoreReader::open(&empty),
            Err(StoreError::NotInitialized { .. })
        ));
        assert!(matches!(
            StoreReader::open(&dir.path().join("absent.db")),
            Err(StoreError::CannotOpen { .. })
        ));
    }

    #[test]
    fn the_backlog_is_bounded_and_drops_the_oldest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("s.db"), 1e12).expect("open");
        // MAX_BACKLOG rows: 1000 nodes x 100 minutes.
        for m in 0..100 {
            for n in 0..1000 {
                store.record_probe("edge", format!("n{n}"), &obs(m as f64 * 60.0, "ok", None));
            }
        }
        assert_eq!(store.backlog().rollup_rows, MAX_BACKLOG);
        assert_eq!(store.backlog().dropped_rollup_rows, 0);
        // More probes in existing rows cost nothing; a new row drops the oldest minute.
        store.record_probe("edge", "n0", &obs(30.0, "ok", None));
        assert_eq!(store.backlog().rollup_rows, MAX_BACKLOG);
        store.record_probe("edge", "n0", &obs(100.0 * 60.0, "ok", None));
        assert_eq!(store.backlog().rollup_rows, MAX_BACKLOG + 1 - 1000);
        assert_eq!(store.backlog().dropped_rollup_rows, 1000);
        store.flush(6000.0).expect("flush");
        let oldest: i64 = store
            .conn
            .query_row("SELECT min(minute) FROM rollups", [], |r| r.get(0))
            .expect("min");
        assert_eq!(oldest, 1, "minute 0 was dropped");

        // Events: a read-only writer keeps at most MAX_BACKLOG.
        let path = dir.path().join("s.db");
        let mut ro =
            Store::open_with_flags(&path, 1.0, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("ro");
        let ev = BoardEvent::MaintenanceChanged {
            at: 1.0,
            key: "target:a".into(),
            active: true,
        };
        let batch = vec![ev; MAX_BACKLOG + 5];
        assert!(ro.record_events(&batch).is_err());
        assert_eq!(ro.backlog().events, MAX_BACKLOG);
        assert_eq!(ro.backlog().dropped_events, 5);
    }

    #[test]
    fn undecodable_node_rows_are_skipped_on_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("s.db"), 1.0).expect("open");
        let (board, _, _) = board_events();
        let records = board.node_records();
        store.save_nodes(&records, SaveMode::All).expect("save");
        store
            .conn
            .execute("UPDATE nodes SET record = '{' WHERE target = 'b'", [])
            .expect("corrupt one");
        let (nodes, _, _) = store.load().expect("load");
        let expected: Vec<NodeRecord> = records.into_iter().filter(|r| r.target != "b").collect();
        assert_eq!(nodes, expected);
        // save_nodes replaces, it does not accumulate.
        store
            .save_nodes(&expected[..1], SaveMode::All)
            .expect("save");
        assert_eq!(store.load().expect("load").0.len(), 1);
    }

    /// The saved node rows, as stored.
    fn node_rows(store: &Store) -> BTreeMap<(String, String), String> {
        let mut stmt = store
            .conn
            .prepare("SELECT target, node, record FROM nodes")
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
            .expect("query");
        rows.collect::<rusqlite::Result<_>>().expect("rows")
    }

    fn key(target: &str, node: &str) -> (String, String) {
        (target.to_string(), node.to_string())
    }

    /// Takes the board's records for a save at `now` and writes them.
    fn save_board(store: &mut Store, board: &mut Board, now: f64) -> Result<SaveMode, StoreError> {
        let (mode, records) = board.records_to_save(now, SaveMode::Changed);
        store.save_nodes(&records, mode).map(|()| mode)
    }

    #[test]
    fn a_changed_save_writes_only_changed_nodes_and_leaves_the_other_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("s.db"), 86400.0).expect("open");
        let (mut board, _, now) = board_events();
        assert_eq!(
            save_board(&mut store, &mut board, now).expect("save"),
            SaveMode::All
        );
        let before = node_rows(&store);
        assert_eq!(before.len(), 3);

        // a/1 answers again (its count grows, `last` changes: not durable); a/2, down, answers
        // (its streak of failures ends: durable).
        board.observe("a", "10.0.0.1:5060", obs(now + 1.0, "ok", Some(10.0)));
        board.observe("a", "10.0.0.2:5060", obs(now + 1.0, "ok", Some(10.0)));
        assert_eq!(
            save_board(&mut store, &mut board, now + 5.0).expect("save"),
            SaveMode::Changed
        );
        let after = node_rows(&store);
        let current: BTreeMap<_, _> = board
            .node_records()
            .into_iter()
            .map(|r| ((r.target.clone(), r.node.clone()), r))
            .collect();
        let a2 = key("a", "10.0.0.2:5060");
        assert_ne!(after[&a2], before[&a2]);
        let saved: NodeRecord = serde_json::from_str(&after[&a2]).expect("decode");
        assert_eq!(saved, current[&a2]);
        assert_eq!(saved.consecutive_successes, 1);
        // The others' rows are untouched, although a/1's record in memory moved on.
        let a1 = key("a", "10.0.0.1:5060");
        assert_eq!(after[&a1], before[&a1]);
        assert_ne!(
            serde_json::from_str::<NodeRecord>(&before[&a1]).expect("decode"),
            current[&a1]
        );
        let b1 = key("b", "10.0.0.1:5060");
        assert_eq!(after[&b1], before[&b1]);
        // A restart loads the three.
        assert_eq!(store.load().expect("load").0.len(), 3);
    }

    #[test]
    fn a_full_save_removes_rows_of_nodes_no_longer_on_the_board() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("s.db"), 86400.0).expect("open");
        let (mut board, _, now) = board_events();
        save_board(&mut store, &mut board, now).expect("save");
        // A changed-records save deletes nothing.
        store.save_nodes(&[], SaveMode::Changed).expect("save");
        assert_eq!(node_rows(&store).len(), 3);

        // a now resolves to one node, and b leaves the configuration.
        board.set_nodes(
            "a",
            &[("10.0.0.1:5060".to_string(), "udp".to_string())],
            now,
        );
        let groups = vec![GroupSpec {
            name: "core".into(),
            min_up: 1,
        }];
        board.reconfigure(vec![spec("a")], groups, now);
        assert_eq!(
            save_board(&mut store, &mut board, now + 5.0).expect("save"),
            SaveMode::All
        );
        let rows: Vec<_> = node_rows(&store).into_keys().collect();
        assert_eq!(rows, [key("a", "10.0.0.1:5060")]);
        assert_eq!(store.load().expect("load").0, board.node_records());
    }

    #[test]
    fn a_failed_node_save_does_not_lose_the_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let mut store = Store::open(&path, 86400.0).expect("open");
        let (mut board, _, now) = board_events();
        save_board(&mut store, &mut board, now).expect("save");
        drop(store);

        // b/1 goes down while the store cannot be written.
        for i in 1..=3 {
            board.observe(
                "b",
                "10.0.0.1:5060",
                obs(now + f64::from(i), "critical", None),
            );
        }
        let mut ro = Store::open_with_flags(&path, 86400.0, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("opening read-only");
        let err = save_board(&mut ro, &mut board, now + 5.0).expect_err("read-only");
        assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
        board.node_save_failed();
        drop(ro);

        // Writable again: the next save writes it (a save of every record).
        let mut store = Store::open(&path, 86400.0).expect("reopen");
        assert_eq!(
            save_board(&mut store, &mut board, now + 10.0).expect("save"),
            SaveMode::All
        );
        let (nodes, _, _) = store.load().expect("load");
        let b1 = nodes
            .iter()
            .find(|r| r.target == "b")
            .expect("b's node saved");
        assert_eq!(b1.state, NodeState::Down);
        assert_eq!(nodes, board.node_records());
    }

    #[test]
    fn the_reader_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<StoreReader>();
        fn assert_send<T: Send>() {}
        assert_send::<Store>();
    }

    /// 2,000 nodes probed every second for a minute: record_probe stays in memory, one flush.
    #[test]
    fn a_minute_of_two_thousand_nodes_flushes_in_one_transaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let mut store = Store::open(&path, 86400.0).expect("open");
        let nodes: Vec<String> = (0..2000)
            .map(|n| format!("10.1.{}.{}:5060", n / 250, n % 250))
            .collect();
        let started = std::time::Instant::now();
        for s in 0..60 {
            for (i, n) in nodes.iter().enumerate() {
                let target = format!("t{}", i / 2);
                store.record_probe(
                    target.as_str(),
                    n.as_str(),
                    &obs(60_000.0 + s as f64, "ok", Some(3.0)),
                );
            }
        }
        let recorded = started.elapsed();
        let started = std::time::Instant::now();
        store.flush(60_060.0).expect("flush");
        let flushed = started.elapsed();
        eprintln!("120000 record_probe: {recorded:?}; flush of 2000 rows: {flushed:?}");
        assert_eq!(count(&store, "rollups"), 2000);
        let probes: i64 = store
            .conn
            .query_row("SELECT sum(probes) FROM rollups", [], |r| r.get(0))
            .expect("sum");
        assert_eq!(probes, 120_000);
    }
}
