//! The stores: what the client keeps on disk besides the project's files. The `.cairn/` state
//! folder of a working copy ([`StateFolder`]) and the user's token file ([`user_config`]).
//!
//! ```text
//! .cairn/
//!   config.toml     server URL and project id (TOML, written by `cairn init` / `cairn clone`)
//!   base            the version and tree last synced (binary, checksummed; see `state::Base`)
//!   stat-cache      path → size, mtime, inode, id (binary, checksummed; a cache)
//!   clock           touched at each scan: the file system's "now" (StateFolder::file_system_clock)
//!   lock            locked (flock) while a command changes the working copy
//!   push-journal    a push whose objects may be partly on the server (see `journal`)
//!   objects/ab/…    zstd frames keyed by object id (see `object_cache`)
//!   objects/pack/   a large pull's objects in one file each (see `pack`)
//! ```
//!
//! Every file is replaced atomically ([`atomic`]). The base and config are fsynced; the stat
//! cache and the objects are caches, verified on read and rebuilt when damaged.
//!
//! This layer knows files, not the working copy's contents (scanning and applying are
//! `working_copy`'s) nor the network (`transport`'s): it imports only the lowest layer.

use std::fs;
use std::path::{Path as FsPath, PathBuf};

use sync_protocol::{Dir, Object};

pub mod atomic;
mod codec;
pub mod config;
pub mod journal;
pub mod lock;
pub mod monitor;
pub mod object_cache;
pub mod pack;
pub mod state;
pub mod user_config;

use crate::error::{ClientError, io_error};
use config::WorkingCopyConfig;
use journal::PushJournal;
use lock::WorkingCopyLock;
use object_cache::ObjectCache;
use state::{Base, Mtime, StatCache};

/// The folder that holds a working copy's state.
pub const META_DIR: &str = ".cairn";

/// The stat cache as read from disk, and why it was discarded if it was damaged.
pub type LoadedStatCache = (StatCache, Option<String>);

/// A working copy's `.cairn/` folder: where each of its files is, and reading and writing them.
#[derive(Debug, Clone)]
pub struct StateFolder {
    dir: PathBuf,
}

impl StateFolder {
    /// The state folder of the working copy at `root` (which may not have one).
    pub fn of(root: &FsPath) -> Self {
        Self {
            dir: root.join(META_DIR),
        }
    }

    pub fn dir(&self) -> &FsPath {
        &self.dir
    }

    /// True when the folder exists (`root` is a working copy).
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Makes the state folder of a never-synced working copy of `config` at `root`, which must
    /// exist and have none.
    pub fn create(root: &FsPath, config: &WorkingCopyConfig) -> Result<Self, ClientError> {
        let folder = Self::of(root);
        // Created under a temp name and renamed, so a half-made `.cairn/` never exists.
        // The name is a temp name (`atomic::is_temp_name`), so a scan never lists a leftover one.
        let staging = Self {
            dir: root.join(format!(
                "{META_DIR}{}init-{}",
                atomic::TEMP_MARKER,
                std::process::id()
            )),
        };
        let _ = fs::remove_dir_all(&staging.dir);
        fs::create_dir(&staging.dir).map_err(io_error("create folder", &staging.dir))?;
        let made = (|| {
            let objects = staging.file("objects");
            fs::create_dir(&objects).map_err(io_error("create folder", &objects))?;
            config::write(&staging.file("config.toml"), config)?;
            // The never-synced base is the empty project: its root must be readable like any
            // other base root when the first push is planned.
            staging.objects().put_object(&Object::Dir(Dir::empty()))?;
            staging.set_base(&Base::never_synced())?;
            fs::rename(&staging.dir, &folder.dir).map_err(io_error("create", &folder.dir))?;
            atomic::sync_dir(root)
        })();
        if let Err(error) = made {
            let _ = fs::remove_dir_all(&staging.dir);
            return Err(error);
        }
        Ok(folder)
    }

    /// `config.toml`.
    pub fn config(&self) -> Result<WorkingCopyConfig, ClientError> {
        config::read(&self.file("config.toml"))
    }

    pub fn objects(&self) -> ObjectCache {
        ObjectCache::new(self.file("objects"))
    }

    pub fn base(&self) -> Result<Base, ClientError> {
        Base::load(&self.file("base"))
    }

    pub fn set_base(&self, base: &Base) -> Result<(), ClientError> {
        base.save(&self.file("base"))
    }

    pub fn stat_cache(&self) -> Result<LoadedStatCache, ClientError> {
        StatCache::load(&self.file("stat-cache"))
    }

    pub fn save_stat_cache(&self, cache: &StatCache) -> Result<(), ClientError> {
        cache.save(&self.file("stat-cache"))
    }

    /// Takes the lock of the working copy at `root`, failing at once with `Busy` if another
    /// process holds it.
    pub fn lock(&self, root: &FsPath) -> Result<WorkingCopyLock, ClientError> {
        lock::lock(root, &self.file("lock"))
    }

    /// The file system's idea of "now", read from the mtime of `clock`, touched for the
    /// purpose, so a skewed clock on a network file system cannot make a racy entry look old.
    /// Falls back to the local clock less two seconds (the coarsest mtime granularity in use)
    /// when it cannot write.
    pub fn file_system_clock(&self) -> Mtime {
        let clock = self.file("clock");
        let touched = fs::write(&clock, b"").and_then(|()| fs::metadata(&clock));
        match touched {
            Ok(metadata) => Mtime::of(&metadata),
            Err(_) => Mtime::from_system_time(std::time::SystemTime::now())
                .minus(std::time::Duration::from_secs(2)),
        }
    }

    /// The journal of an unfinished push, if any.
    pub fn journal(&self) -> Result<Option<PushJournal>, ClientError> {
        PushJournal::load(&self.file("push-journal"))
    }

    pub fn save_journal(&self, journal: &PushJournal) -> Result<(), ClientError> {
        journal.save(&self.file("push-journal"))
    }

    pub fn remove_journal(&self) -> Result<(), ClientError> {
        PushJournal::remove(&self.file("push-journal"))
    }
}
