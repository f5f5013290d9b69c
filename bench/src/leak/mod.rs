//! The leak-detection benchmark: a labelled corpus (`corpus.rs`, seeded `rng.rs`), the baselines
//! (`baselines.rs`) and the scoring (`score.rs`). The `leak_corpus` binary wires them together.

pub mod baselines;
pub mod corpus;
pub mod rng;
pub mod score;
