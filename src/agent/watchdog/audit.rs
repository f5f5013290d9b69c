//! What the watchdog keeps on disk, in the agent's state dir:
//! - `restarts.jsonl`: every decision ([`RestartRecord`]), one JSON object a line, appended and
//!   synced (rotated to `restarts.jsonl.1` past 4 MiB); the newest are kept in memory for
//!   `GET /api/v1/restarts`;
//! - `SERVICE/watchdog.json`: the policy state (restarts for the cap, pause, deferred plan),
//!   written whole and renamed into place;
//! - `SERVICE/commands/*.json`: a person's commands (`sipwatch restart now|pause|resume`),
//!   dropped by the CLI and taken (then deleted) by the agent. Who may write there may command:
//!   the directory is the agent user's; the owner's uid is recorded with the command.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::policy::{DecisionKind, PolicyState, Trigger};

/// Records kept in memory (and served).
const KEEP: usize = 500;
/// The audit file is rotated to `restarts.jsonl.1` past this size (one older file is kept).
const ROTATE_BYTES: u64 = 4 << 20;

/// One audited decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestartRecord {
    pub service: String,
    /// RFC 3339.
    pub at: String,
    pub trigger: Trigger,
    pub decision: DecisionKind,
    /// A token: `window`, `cooldown`, `cap`, `quorum`, `lease`, `paused`, `drain_timeout`,
    /// `verify_failed`, `dry_run`, `ok`, ...
    pub why: String,
    /// One line a person understands.
    pub summary: String,
    pub drained_seconds: Option<f64>,
    /// `ok`, `failed`, or null when nothing was verified.
    pub verify: Option<String>,
    pub old_pid: Option<i32>,
    pub new_pid: Option<i32>,
    /// When the verification passed (RFC 3339), for restarts.
    #[serde(default)]
    pub verified_at: Option<String>,
    /// Set on a forced manual restart: who forced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_by: Option<String>,
}

impl RestartRecord {
    /// A record with nothing measured.
    pub fn decision(
        service: &str,
        now: f64,
        trigger: Trigger,
        decision: DecisionKind,
        why: &str,
        summary: String,
    ) -> Self {
        RestartRecord {
            service: service.to_owned(),
            at: rfc3339(now),
            trigger,
            decision,
            why: why.to_owned(),
            summary,
            drained_seconds: None,
            verify: None,
            old_pid: None,
            new_pid: None,
            verified_at: None,
            forced_by: None,
        }
    }
}

/// Unix seconds as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(t: f64) -> String {
    chrono::DateTime::from_timestamp_millis((t * 1000.0) as i64)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The audit file and its newest records.
pub struct AuditLog {
    path: PathBuf,
    recent: Mutex<VecDeque<RestartRecord>>,
}

impl AuditLog {
    /// Opens `STATE_DIR/restarts.jsonl`, reading its newest records.
    pub fn open(state_dir: &Path) -> AuditLog {
        let path = state_dir.join("restarts.jsonl");
        let mut recent = VecDeque::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                if let Ok(r) = serde_json::from_str::<RestartRecord>(line) {
                    if recent.len() == KEEP {
                        recent.pop_front();
                    }
                    recent.push_back(r);
                }
            }
        }
        AuditLog {
            path,
            recent: Mutex::new(recent),
        }
    }

    /// Appends a record (synced to disk; a failure is logged, the record still served).
    pub fn append(&self, record: RestartRecord) {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() > ROTATE_BYTES) {
            let _ = std::fs::rename(&self.path, self.path.with_extension("jsonl.1"));
        }
        let written = serde_json::to_string(&record)
            .map_err(std::io::Error::other)
            .and_then(|line| {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?;
                writeln!(f, "{line}")?;
                f.sync_data()
            });
        if let Err(e) = written {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write the restart audit");
        }
        tracing::info!(
            service = record.service,
            trigger = record.trigger.as_str(),
            decision = record.decision.as_str(),
            why = record.why,
            summary = record.summary,
            "watchdog decision"
        );
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == KEEP {
                recent.pop_front();
            }
            recent.push_back(record);
        }
    }

    /// The newest records first.
    pub fn newest_first(&self) -> Vec<RestartRecord> {
        self.recent
            .lock()
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

fn state_path(state_dir: &Path, service: &str) -> PathBuf {
    state_dir.join(service).join("watchdog.json")
}

/// The policy state kept for `service` (default when none or unreadable, which is logged).
pub fn load_state(state_dir: &Path, service: &str) -> PolicyState {
    let path = state_path(state_dir, service);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::error!(service, path = %path.display(), error = %e, "watchdog state unreadable; starting without it");
            PolicyState::default()
        }),
        Err(_) => PolicyState::default(),
    }
}

/// Writes the policy state (temp file, then rename).
pub fn save_state(state_dir: &Path, service: &str, state: &PolicyState) -> std::io::Result<()> {
    let path = state_path(state_dir, service);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(state).map_err(std::io::Error::other)?;
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)
}

/// A person's command, as the CLI writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandFile {
    /// `now`, `pause` or `resume`.
    pub command: String,
    #[serde(default)]
    pub force: bool,
    /// The login name the CLI ran under (shown; the file's owner uid is what counts).
    #[serde(default)]
    pub user: String,
}

/// The commands directory of a service.
pub fn commands_dir(state_dir: &Path, service: &str) -> PathBuf {
    state_dir.join(service).join("commands")
}

/// Takes the pending commands of a service, oldest first, with who wrote them
/// (`"alice (uid 1000)"`); each file is deleted once read.
pub fn take_commands(state_dir: &Path, service: &str) -> Vec<(CommandFile, String)> {
    let dir = commands_dir(state_dir, service);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let uid = std::fs::metadata(&path).map(|m| m.uid()).ok();
        let text = std::fs::read_to_string(&path);
        let _ = std::fs::remove_file(&path);
        match text
            .ok()
            .and_then(|t| serde_json::from_str::<CommandFile>(&t).ok())
        {
            Some(cmd) => {
                let who = match uid {
                    Some(uid) if cmd.user.is_empty() => format!("uid {uid}"),
                    Some(uid) => format!("{} (uid {uid})", cmd.user),
                    None => cmd.user.clone(),
                };
                out.push((cmd, who));
            }
            None => {
                tracing::warn!(service, path = %path.display(), "unreadable watchdog command file ignored")
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_survives_reopen_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path());
        for i in 0..3 {
            log.append(RestartRecord::decision(
                "k",
                1_000_000.0 + f64::from(i),
                Trigger::Threshold,
                DecisionKind::Skipped,
                "cooldown",
                format!("n{i}"),
            ));
        }
        let log = AuditLog::open(dir.path());
        let all = log.newest_first();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].summary, "n2");
        assert_eq!(all[0].at, "1970-01-12T13:46:42.000Z");
    }

    #[test]
    fn state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = PolicyState::default();
        s.restarts.push(5.0);
        save_state(dir.path(), "k", &s).unwrap();
        assert_eq!(load_state(dir.path(), "k"), s);
    }
}
