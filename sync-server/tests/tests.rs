//! sync-server's one integration-test binary (one link step on a 2-core machine). Each area is
//! a module; shared helpers live beside them.
//!
//! Tests that need PostgreSQL or S3 read `CAIRN_TEST_DATABASE_URL` and `CAIRN_TEST_S3_*`, which
//! `scripts/test` sets. Without them they print "skipped" and pass, unless `CAIRN_TEST_STRICT=1`
//! (also set by `scripts/test`), when they fail.

mod storage_support;

mod catalog_conformance;
mod convert_layout;
mod http;
mod object_store;
mod s3_faults;
