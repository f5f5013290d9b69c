//! One observation of a gauge: a unix time in seconds and a value in the gauge's unit (bytes, fds,
//! sessions). Samplers produce them, the CSV replay reads them, the detector consumes them.

use serde::{Deserialize, Serialize};

/// A gauge reading at time `t` (unix seconds, fractional allowed).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Unix time in seconds.
    pub t: f64,
    /// The gauge's value (bytes for memory).
    pub value: f64,
}

impl Sample {
    pub fn new(t: f64, value: f64) -> Self {
        Sample { t, value }
    }
}
