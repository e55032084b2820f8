//! End-to-end tests of the real `sync-server` and `cairn` binaries live in `tests/e2e.rs`; this
//! library is empty.
