//! Benchmark harnesses; see BENCHMARKS.md.
