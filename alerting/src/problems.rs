//! What is wrong with `[[alerting.receiver]]` tables: one [`ReceiverProblem`] per receiver and
//! field, all of them in one [`ReceiverProblems`], and the [`ReceiverCheck`] each receiver kind
//! fills while it checks its own fields (in `notifiers/`). A leaf: the receiver kinds and
//! [`crate::receivers::build`] both use it, it uses neither.
//!
//! Receiver tables are deserialised through a tagged enum, which carries no positions; the
//! daemon's and the agent's config checks place these problems at the `[alerting]` header (see
//! [`crate::config_error`], the located errors of every config file).

use std::fmt;

/// One thing wrong with one receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverProblem {
    /// The receiver's `name` (or `#N` when it has none).
    pub receiver: String,
    pub kind: &'static str,
    /// The offending field, as written in the config.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every problem found in the receiver tables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ReceiverProblems {
    pub problems: Vec<ReceiverProblem>,
}

impl fmt::Display for ReceiverProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[[alerting.receiver]] \"{}\" (kind = \"{}\"): {}: {}",
            self.receiver, self.kind, self.field, self.message
        )
    }
}

impl fmt::Display for ReceiverProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{n} problem{} in the alert receivers:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Collects the problems of one receiver while its kind checks its fields.
pub(crate) struct ReceiverCheck {
    receiver: String,
    kind: &'static str,
    list: Vec<ReceiverProblem>,
}

impl ReceiverCheck {
    pub(crate) fn new(receiver: &str, kind: &'static str) -> ReceiverCheck {
        ReceiverCheck {
            receiver: receiver.to_string(),
            kind,
            list: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.list.push(ReceiverProblem {
            receiver: self.receiver.clone(),
            kind: self.kind,
            field,
            message: message.into(),
        });
    }

    /// Keeps the `Ok` value, or records the error under `field`.
    pub(crate) fn check<T>(&mut self, field: &'static str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.add(field, message);
                None
            }
        }
    }

    /// `Ok(value)` when nothing was found wrong.
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, Vec<ReceiverProblem>> {
        match value {
            Some(value) if self.list.is_empty() => Ok(value),
            Some(_) | None if !self.list.is_empty() => Err(self.list),
            _ => Err(vec![ReceiverProblem {
                receiver: self.receiver,
                kind: self.kind,
                field: "kind",
                message: "could not be built (no details); please report this".into(),
            }]),
        }
    }
}
