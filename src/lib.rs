//! sipwatch: the binary's parts, wired together by `main.rs`.
//!
//! - [`probe_cmd`]: the `sipwatch probe` command (flags, human and JSON output, exit codes).
//! - [`leak`]: the online leak detector (pure: samples in, verdicts out).
//! - [`duration`]: durations as people write them ("10s", "2m").

pub mod calendar;
pub mod config_error;
pub mod daemon;
pub mod duration;
pub mod leak;
pub mod probe_cmd;
