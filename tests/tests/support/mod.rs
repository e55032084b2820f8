//! What every scenario starts from: the production services, a server, alice logged in with
//! `cairn login`, a project, and two working copies of it. Databases, buckets, the binaries and
//! files on disk come from `cairn_test_support`.

pub mod client;
pub mod server;

use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use cairn_test_support::Services;
use client::Cairn;
use server::Server;

/// Scenarios share the machine; the one with a latency requirement runs alone. Others hold
/// this lock shared, the watch scenario exclusively, so no 50 MB push competes with it for the
/// CPU inside this test binary.
static MACHINE: RwLock<()> = RwLock::new(());

pub fn share_machine() -> RwLockReadGuard<'static, ()> {
    MACHINE
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn own_machine() -> RwLockWriteGuard<'static, ()> {
    MACHINE
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A server, alice's machine, an empty project and two working copies: `a` made with
/// `cairn init`, `b` with `cairn clone`, both at version 0.
#[derive(Debug)]
pub struct Setup {
    pub cairn: Cairn,
    pub server: Server,
    pub a: PathBuf,
    pub b: PathBuf,
}

impl Setup {
    /// `None` (the test then passes as skipped) when the services are not configured.
    pub fn start() -> Option<Setup> {
        let services = Services::from_env()?;
        let server = Server::start(&services);
        let cairn = Cairn::login(&server);
        let project = cairn.create_project("api");
        let a = cairn.init(&server, &project, "a");
        let (b, cloned) = cairn.clone(&project, "b");
        assert_eq!(cloned["pull"]["version"], 0, "{cloned}");
        Some(Setup {
            cairn,
            server,
            a,
            b,
        })
    }
}
