//! Invariant checks shared by the fuzz targets and the corpus replay test.
//!
//! Each function takes arbitrary bytes, runs one part of the library on them and panics only if
//! an invariant is broken (never because the input is invalid). The cargo-fuzz targets in `fuzz/`
//! are one-line calls into this module, and `tests/corpus_replay.rs` runs every committed corpus
//! and crash file through the same functions in the normal test run: [`codec`] (object, stream
//! and zstd decoding), [`merge`] (three-way merge of listings), [`content`] (three-way merge of
//! file contents) and [`accept`] (the push acceptor over an
//! in-memory store). [`noise`] is the test data the workspace's tests share.

pub mod accept;
pub mod codec;
pub mod content;
pub mod merge;

/// `len` deterministic pseudo-random bytes (xorshift64 from `seed`): incompressible enough to be
/// cut into several chunks, the same on every run, and no rand crate needed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.max(1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}
