//! Restart leases: the daemon's yes or no when an agent wants to take a node down for a restart.
//!
//! [`LeaseBook`] is pure: it is given the group's members and which of them serve now (the
//! daemon's probe state after hysteresis), and grants a lease only when the group keeps at least
//! `min_up` serving nodes without this one (and without the nodes already leased), and fewer
//! than `max_parallel` (default 1) leases of the group are out. A lease lasts its TTL unless
//! renewed; the holder releases it after its verification passed. The book is kept in a JSON
//! file beside the store (`STORE.leases.json`, written whole and renamed), so a daemon restart
//! does not forget who is down for a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::agent::watchdog::leases::{Lease, Refusal};

/// What an agent asks of the book (through the state task).
#[derive(Debug)]
pub enum LeaseOp {
    Acquire(crate::agent::watchdog::leases::LeaseRequest),
    Renew { id: String, ttl_seconds: f64 },
    Release { id: String },
}

/// One lease out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseEntry {
    pub id: String,
    pub target: String,
    pub group: Option<String>,
    pub holder: String,
    pub granted_at: f64,
    pub expires_at: f64,
}

/// What the book needs to know of the target's group.
pub struct GroupView<'a> {
    pub name: &'a str,
    pub min_up: usize,
    pub max_parallel: usize,
    /// Every member of the group and whether it serves now.
    pub members: Vec<(&'a str, bool)>,
}

/// The leases out, by id.
#[derive(Debug, Default)]
pub struct LeaseBook {
    leases: BTreeMap<String, LeaseEntry>,
    path: Option<PathBuf>,
}

fn fmt_secs(s: f64) -> String {
    sipwatch_alerting::duration::format_seconds(s.max(0.0).round())
}

impl LeaseBook {
    /// A book kept at `path` (none: in memory only), with what it held before.
    pub fn open(path: Option<PathBuf>) -> LeaseBook {
        let leases = path
            .as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str::<Vec<LeaseEntry>>(&t).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|l| (l.id.clone(), l))
            .collect();
        LeaseBook { leases, path }
    }

    /// The file beside a store.
    pub fn path_for_store(store: &Path) -> Option<PathBuf> {
        if store.as_os_str().is_empty() {
            return None;
        }
        let mut name = store.file_name()?.to_os_string();
        name.push(".leases.json");
        Some(store.with_file_name(name))
    }

    pub fn leases(&self) -> Vec<LeaseEntry> {
        self.leases.values().cloned().collect()
    }

    fn save(&self) {
        let Some(path) = &self.path else { return };
        let leases: Vec<&LeaseEntry> = self.leases.values().collect();
        let tmp = path.with_extension("tmp");
        let written = serde_json::to_vec_pretty(&leases)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::error!(path = %path.display(), error = %e, "cannot save the restart leases; a daemon restart would forget them");
        }
    }

    /// Drops leases whose TTL passed.
    pub fn expire(&mut self, now: f64) {
        let before = self.leases.len();
        self.leases.retain(|_, l| {
            let keep = l.expires_at > now;
            if !keep {
                tracing::warn!(
                    target = l.target,
                    holder = l.holder,
                    "restart lease expired without release"
                );
            }
            keep
        });
        if self.leases.len() != before {
            self.save();
        }
    }

    /// Grants a lease on `target` (in `group`, if any) to `holder`, or says why not.
    pub fn grant(
        &mut self,
        now: f64,
        target: &str,
        holder: &str,
        ttl: f64,
        group: Option<GroupView<'_>>,
        id: String,
    ) -> Result<Lease, Refusal> {
        self.expire(now);
        if let Some(l) = self.leases.values_mut().find(|l| l.target == target) {
            if l.holder == holder {
                l.expires_at = now + ttl;
                let lease = Lease {
                    id: l.id.clone(),
                    target: l.target.clone(),
                    expires_at: l.expires_at,
                };
                self.save();
                return Ok(lease);
            }
            return Err(Refusal {
                why: "lease".into(),
                reason: format!(
                    "{target} is already leased to {} (for {} more)",
                    l.holder,
                    fmt_secs(l.expires_at - now)
                ),
            });
        }
        if let Some(g) = &group {
            let out: Vec<&LeaseEntry> = self
                .leases
                .values()
                .filter(|l| l.group.as_deref() == Some(g.name))
                .collect();
            if out.len() >= g.max_parallel {
                let names: Vec<&str> = out.iter().map(|l| l.target.as_str()).collect();
                return Err(Refusal {
                    why: "lease".into(),
                    reason: format!(
                        "group {} allows {} restart(s) at a time and {} is restarting",
                        g.name,
                        g.max_parallel,
                        names.join(", ")
                    ),
                });
            }
            let serving = g
                .members
                .iter()
                .filter(|(name, up)| {
                    *up && *name != target && !out.iter().any(|l| l.target == *name)
                })
                .count();
            if serving < g.min_up {
                return Err(Refusal {
                    why: "quorum".into(),
                    reason: format!("without {target}, group {} would have {serving} node(s) serving, under its min_up of {}", g.name, g.min_up),
                });
            }
        }
        let entry = LeaseEntry {
            id: id.clone(),
            target: target.to_owned(),
            group: group.map(|g| g.name.to_owned()),
            holder: holder.to_owned(),
            granted_at: now,
            expires_at: now + ttl,
        };
        let lease = Lease {
            id,
            target: target.to_owned(),
            expires_at: entry.expires_at,
        };
        self.leases.insert(entry.id.clone(), entry);
        self.save();
        Ok(lease)
    }

    /// Extends a lease; false when it is unknown (expired or released).
    pub fn renew(&mut self, now: f64, id: &str, ttl: f64) -> bool {
        self.expire(now);
        let found = match self.leases.get_mut(id) {
            Some(l) => {
                l.expires_at = now + ttl;
                true
            }
            None => false,
        };
        if found {
            self.save();
        }
        found
    }

    /// Releases a lease; false when it is unknown.
    pub fn release(&mut self, id: &str) -> bool {
        let found = self.leases.remove(id).is_some();
        if found {
            self.save();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group<'a>(members: Vec<(&'a str, bool)>) -> GroupView<'a> {
        GroupView {
            name: "fe",
            min_up: 2,
            max_parallel: 1,
            members,
        }
    }

    #[test]
    fn one_at_a_time_and_never_under_min_up() {
        let mut book = LeaseBook::open(None);
        let all_up = || group(vec![("fe-1", true), ("fe-2", true), ("fe-3", true)]);
        let a = book
            .grant(0.0, "fe-1", "h1/k", 60.0, Some(all_up()), "a".into())
            .unwrap();
        let e = book
            .grant(1.0, "fe-2", "h2/k", 60.0, Some(all_up()), "b".into())
            .unwrap_err();
        assert_eq!(e.why, "lease", "{e:?}");
        assert!(book.release(&a.id));
        // fe-1 is still down by the probes: without fe-2 only fe-3 serves.
        let e = book
            .grant(
                2.0,
                "fe-2",
                "h2/k",
                60.0,
                Some(group(vec![("fe-1", false), ("fe-2", true), ("fe-3", true)])),
                "b".into(),
            )
            .unwrap_err();
        assert_eq!(e.why, "quorum", "{e:?}");
        assert!(book
            .grant(3.0, "fe-2", "h2/k", 60.0, Some(all_up()), "b".into())
            .is_ok());
    }

    #[test]
    fn ttl_expiry_renewal_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = LeaseBook::path_for_store(&dir.path().join("sipwatch.db")).unwrap();
        let mut book = LeaseBook::open(Some(path.clone()));
        let g = || group(vec![("fe-1", true), ("fe-2", true), ("fe-3", true)]);
        let a = book
            .grant(0.0, "fe-1", "h1/k", 60.0, Some(g()), "a".into())
            .unwrap();
        assert!(book.renew(50.0, &a.id, 60.0));
        let mut book = LeaseBook::open(Some(path));
        assert_eq!(book.leases().len(), 1, "kept across a daemon restart");
        assert!(
            book.grant(100.0, "fe-2", "h2/k", 60.0, Some(g()), "b".into())
                .is_err(),
            "renewed to 110"
        );
        assert!(
            book.grant(111.0, "fe-2", "h2/k", 60.0, Some(g()), "b".into())
                .is_ok(),
            "expired"
        );
    }
}
