//! Benchmarks live in src/bin; this library holds what they share.
