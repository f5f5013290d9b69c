//! sipwatch: the binary's parts, wired together by `main.rs`.
//!
//! - [`leak`]: the online leak detector (pure: samples in, verdicts out).
//! - [`agent`]: the node agent: finds services, samples their gauges, runs the detector.
//! - `probe_cmd`: the `sipwatch probe` command (flags, human and JSON output, exit codes).

pub mod leak;
pub mod leak_cmd;
