//! End-to-end tests: the real `sync-server` binary in production mode (a fresh PostgreSQL
//! database and a fresh S3 bucket per test) and the real `cairn` binary, as processes.
//!
//! They need `CAIRN_TEST_DATABASE_URL` and `CAIRN_TEST_S3_{ENDPOINT,ACCESS_KEY,SECRET_KEY}`;
//! without them each test prints `skipped: ...` and passes, unless `CAIRN_TEST_STRICT=1`. The
//! binaries come from `CAIRN_SERVER_BIN` and `CAIRN_CLIENT_BIN`, else from beside this test
//! executable (`target/<profile>/`, where any `cargo test --workspace` builds them); these tests
//! do not build them. `scripts/test` provides all of it (see `cairn_test_support`).

mod support;

mod clone;
mod cluster;
mod content_merge;
mod contract;
mod crash_campaign;
mod large;
mod pages;
mod s3_faults;
mod sync;
mod watch;
mod writers;
