//! What Cairn's test suites set up, in one place: sync-server's, sync-client's and the
//! end-to-end tests (`cairn-tests`) take this crate as a dev-dependency.
//!
//! - [`services`]: where PostgreSQL and S3 are (the `CAIRN_TEST_*` variables `scripts/test`
//!   exports), and the rule for a test that finds them unset: skip, or fail when
//!   `CAIRN_TEST_STRICT=1`.
//! - [`TestDatabase`] and [`TestBucket`]: a fresh PostgreSQL database and a fresh S3 bucket per
//!   test, removed when dropped, so also when the test panics.
//! - [`binaries`]: the real `sync-server` and `cairn` binaries, found and never built.
//! - [`server`]: `sync-server` as a process, embedded (a temp data folder) or production (a
//!   database and a bucket), on a free port; [`client`]: `cairn` run as one person.
//! - [`haproxy`]: HAProxy with the shipped `deploy/haproxy.cfg` in front of a cluster's nodes.
//! - [`s3_faults`]: [`FaultyS3`], a proxy in front of S3 that injects S3's faults at a seeded rate.
//! - [`trees`]: trees built in memory from `(path, bytes)` pairs; [`files`]: trees on disk.
//!
//! It depends on no crate of the workspace but sync-protocol: sync-server and sync-client take
//! it as a dev-dependency, and a cycle would compile a second copy of them whose types do not
//! match the first. Turning a [`TestDatabase`] into a catalog or a [`TestBucket`] into an object
//! store is a few lines of glue in sync-server's tests.

pub mod binaries;
pub mod bucket;
pub mod client;
pub mod database;
pub mod files;
pub mod haproxy;
pub mod s3_faults;
pub mod server;
pub mod services;
pub mod trees;

use std::future::Future;

pub use bucket::TestBucket;
pub use client::ClientHome;
pub use database::TestDatabase;
pub use haproxy::Haproxy;
pub use s3_faults::{Fault, FaultPlan, FaultyS3};
pub use server::{Mode, PASSWORD, ServerEnvironment, ServerProcess, admin_field};
pub use services::{PostgresService, S3Service, Services};
pub use sync_protocol::checks::noise;
pub use trees::{FramedObject, Tree, tree};

/// A name no other test or run uses: `prefix` and 64 random bits in hex.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

/// Runs the future `work` makes on a thread of its own, with a runtime of its own, and waits
/// for it. Setup and cleanup go through here: a test's own runtime cannot be blocked on from
/// inside, a `Drop` cannot await, and a sync test has no runtime at all. A panic on that thread
/// comes back as the `Err`, so a `Drop` can report it instead of panicking while unwinding.
fn on_own_thread<T, F, Fut>(work: F) -> std::thread::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(work())
    })
    .join()
}

/// Runs a cleanup on a thread of its own (see [`on_own_thread`]) from a `Drop`, which may run
/// while a failed test unwinds and so must never panic: a failure is printed, naming `what`.
fn clean_up_on_own_thread<E, F, Fut>(what: &str, work: F)
where
    E: std::fmt::Display + Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>>,
{
    match on_own_thread(work) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("could not remove {what}: {error}"),
        Err(_) => eprintln!("could not remove {what}: its cleanup thread panicked"),
    }
}

/// [`on_own_thread`] for setup: a panic there is the caller's panic.
fn setup_on_own_thread<T, F, Fut>(work: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    on_own_thread(work).unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
