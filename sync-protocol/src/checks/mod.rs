//! Invariant checks shared by the fuzz targets and the corpus replay test.
//!
//! Each function takes arbitrary bytes, runs one part of the library on them and panics only if
//! an invariant is broken (never because the input is invalid). The cargo-fuzz targets in `fuzz/`
//! are one-line calls into this module, and `tests/corpus_replay.rs` runs every committed corpus
//! and crash file through the same functions in the normal test run.

pub mod codec;
pub mod merge;
