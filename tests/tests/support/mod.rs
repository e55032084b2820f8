//! What every scenario starts from: the production services, a server, alice logged in with
//! `cairn login`, a project, and two working copies of it. Databases, buckets, the binaries and
//! files on disk come from `cairn_test_support`.

pub mod client;
pub mod cluster;
pub mod server;

use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use cairn_test_support::Services;
use cairn_test_support::files::write;
use client::Cairn;
use server::Server;

/// Scenarios share the machine; the one with a latency requirement runs alone. Others hold
/// this lock shared, the watch scenario exclusively, so no 50 MB push competes with it for the
/// CPU inside this test binary.
static MACHINE: RwLock<()> = RwLock::new(());

/// A scenario's hold on the machine, released when its setup is dropped.
#[derive(Debug)]
enum Machine {
    Shared {
        _guard: RwLockReadGuard<'static, ()>,
    },
    Alone {
        _guard: RwLockWriteGuard<'static, ()>,
    },
}

/// Holds the machine alone, as [`Setup::start_alone`] does, for a scenario that starts its own
/// servers: no scenario that takes the lock runs until the guard is dropped.
pub fn machine_alone() -> RwLockWriteGuard<'static, ()> {
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
    _machine: Machine,
}

impl Setup {
    /// Starts a scenario that shares the machine with the others. `None` (the test then
    /// passes as skipped) when the services are not configured.
    pub fn start() -> Option<Setup> {
        let _guard = MACHINE
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Setup::start_holding(Machine::Shared { _guard })
    }

    /// Starts a scenario that has the machine to itself (no other scenario of this binary runs
    /// meanwhile), like `start`.
    pub fn start_alone() -> Option<Setup> {
        let _guard = MACHINE
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Setup::start_holding(Machine::Alone { _guard })
    }

    fn start_holding(machine: Machine) -> Option<Setup> {
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
            _machine: machine,
        })
    }

    /// Writes `files` into `a`, pushes them as version 1 and pulls that into `b`.
    pub fn first_version(&self, files: &[(&str, &[u8])]) {
        for (path, bytes) in files {
            write(&self.a, path, bytes);
        }
        let pushed = self.cairn.json(&self.a, &["push"]);
        assert_eq!(pushed["push"]["version"], 1, "{pushed}");
        let pulled = self.cairn.json(&self.b, &["pull"]);
        assert_eq!(pulled["version"], 1, "{pulled}");
    }
}
