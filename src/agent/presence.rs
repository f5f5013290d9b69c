//! Whether a service is up, gone, or was restarted, from the processes seen at each tick.
//!
//! Pure: process sets and times in, changes out. A restart is the replacement of the whole process
//! set: the main process (the earliest started) is gone, and none of the processes of the last
//! generation remain. The old processes of a service often linger for a tick while new ones start
//! (Kamailio's workers exit after the main process), so a missing main process alone is not yet a
//! restart; the generation shrinks to its survivors until none is left. A service that disappears
//! and comes back with new processes was restarted too (`down_secs` says for how long it was gone).

use std::collections::BTreeSet;

use super::proc::ProcId;

/// A change in a service's presence.
#[derive(Clone, Debug, PartialEq)]
pub enum PresenceChange {
    /// Processes found for the first time, or again with some of the old ones.
    Found { processes: usize },
    /// No process found.
    Missing,
    /// The process set was entirely replaced.
    Restarted {
        old_main: ProcId,
        new_main: ProcId,
        down_secs: Option<f64>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Unknown,
    Up,
    Missing,
}

/// Presence tracking of one service.
#[derive(Debug)]
pub struct Presence {
    state: State,
    generation: BTreeSet<ProcId>,
    main: Option<ProcId>,
    missing_since: Option<f64>,
}

impl Default for Presence {
    fn default() -> Self {
        Self::new()
    }
}

impl Presence {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Presence {
            state: State::Unknown,
            generation: BTreeSet::new(),
            main: None,
            missing_since: None,
        }
    }

    /// Resumes from the main process remembered by an earlier run of the agent, so that a restart
    /// of the service while the agent was down is still seen.
    pub fn resume(main: ProcId) -> Self {
        Presence {
            state: State::Unknown,
            generation: BTreeSet::from([main]),
            main: Some(main),
            missing_since: None,
        }
    }

    /// Whether the service had processes at the last observation.
    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// The main process of the current generation.
    pub fn main(&self) -> Option<ProcId> {
        self.main
    }

    /// Feeds the processes seen at `now` (unix seconds); returns what changed.
    pub fn observe(&mut self, now: f64, procs: &[ProcId]) -> Option<PresenceChange> {
        if procs.is_empty() {
            if self.state == State::Missing {
                return None;
            }
            self.state = State::Missing;
            self.missing_since = Some(now);
            return Some(PresenceChange::Missing);
        }
        let current: BTreeSet<ProcId> = procs.iter().copied().collect();
        let new_main = current.iter().copied().min_by_key(|id| (id.start, id.pid));
        let was_missing = self.state == State::Missing;
        let down_secs = self.missing_since.map(|since| now - since);

        let first = self.state == State::Unknown;
        let Some(main) = self.main else {
            // Never seen up before.
            self.generation = current;
            self.main = new_main;
            self.state = State::Up;
            self.missing_since = None;
            return Some(PresenceChange::Found {
                processes: procs.len(),
            });
        };
        self.state = State::Up;
        self.missing_since = None;

        if current.contains(&main) {
            self.generation = current;
            return (was_missing || first).then_some(PresenceChange::Found {
                processes: procs.len(),
            });
        }
        let survivors: BTreeSet<ProcId> = self.generation.intersection(&current).copied().collect();
        if survivors.is_empty() {
            self.generation = current;
            self.main = new_main;
            return new_main.map(|new_main| PresenceChange::Restarted {
                old_main: main,
                new_main,
                down_secs,
            });
        }
        // The main process is gone but some of its generation still runs: wait for them.
        self.generation = survivors;
        (was_missing || first).then_some(PresenceChange::Found {
            processes: procs.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, start: u64) -> ProcId {
        ProcId { pid, start }
    }

    #[test]
    fn first_sight_and_workers_coming_and_going() {
        let mut presence = Presence::new();
        assert_eq!(
            presence.observe(0.0, &[p(10, 1), p(11, 2)]),
            Some(PresenceChange::Found { processes: 2 })
        );
        assert_eq!(
            presence.observe(10.0, &[p(10, 1), p(11, 2), p(12, 3)]),
            None,
            "a new worker"
        );
        assert_eq!(
            presence.observe(20.0, &[p(10, 1), p(12, 3)]),
            None,
            "a worker exited"
        );
        assert_eq!(presence.main(), Some(p(10, 1)));
    }

    #[test]
    fn all_pids_replaced_is_a_restart() {
        let mut presence = Presence::new();
        presence.observe(0.0, &[p(10, 1), p(11, 2)]);
        let change = presence.observe(10.0, &[p(20, 100), p(21, 101)]);
        assert_eq!(
            change,
            Some(PresenceChange::Restarted {
                old_main: p(10, 1),
                new_main: p(20, 100),
                down_secs: None
            })
        );
        assert_eq!(presence.observe(20.0, &[p(20, 100), p(21, 101)]), None);
    }

    #[test]
    fn lingering_workers_delay_the_restart_but_do_not_hide_it() {
        let mut presence = Presence::new();
        presence.observe(0.0, &[p(10, 1), p(11, 2), p(12, 2)]);
        // Main gone, one old worker still exiting, new generation started.
        assert_eq!(
            presence.observe(10.0, &[p(11, 2), p(20, 100), p(21, 101)]),
            None
        );
        let change = presence.observe(20.0, &[p(20, 100), p(21, 101)]);
        assert!(
            matches!(change, Some(PresenceChange::Restarted { new_main, .. }) if new_main == p(20, 100)),
            "{change:?}"
        );
    }

    #[test]
    fn pid_reuse_is_not_the_same_process() {
        let mut presence = Presence::new();
        presence.observe(0.0, &[p(10, 1)]);
        let change = presence.observe(10.0, &[p(10, 500)]);
        assert!(
            matches!(change, Some(PresenceChange::Restarted { .. })),
            "{change:?}"
        );
    }

    #[test]
    fn missing_then_back_with_new_pids_is_a_restart_with_downtime() {
        let mut presence = Presence::new();
        assert_eq!(
            presence.observe(0.0, &[]),
            Some(PresenceChange::Missing),
            "missing from the start"
        );
        assert_eq!(presence.observe(5.0, &[]), None, "reported once");
        assert_eq!(
            presence.observe(10.0, &[p(10, 1)]),
            Some(PresenceChange::Found { processes: 1 })
        );
        assert_eq!(presence.observe(20.0, &[]), Some(PresenceChange::Missing));
        let change = presence.observe(50.0, &[p(30, 9)]);
        assert_eq!(
            change,
            Some(PresenceChange::Restarted {
                old_main: p(10, 1),
                new_main: p(30, 9),
                down_secs: Some(30.0)
            })
        );
    }

    #[test]
    fn resumed_presence_sees_a_restart_made_while_the_agent_was_down() {
        let mut presence = Presence::resume(p(10, 1));
        let change = presence.observe(0.0, &[p(20, 50)]);
        assert!(
            matches!(change, Some(PresenceChange::Restarted { old_main, .. }) if old_main == p(10, 1))
        );
        let mut presence = Presence::resume(p(10, 1));
        assert_eq!(
            presence.observe(0.0, &[p(10, 1), p(11, 2)]),
            Some(PresenceChange::Found { processes: 2 })
        );
    }

    #[test]
    fn back_with_the_same_main_is_not_a_restart() {
        let mut presence = Presence::new();
        presence.observe(0.0, &[p(10, 1)]);
        presence.observe(10.0, &[]);
        assert_eq!(
            presence.observe(20.0, &[p(10, 1)]),
            Some(PresenceChange::Found { processes: 1 })
        );
    }
}
