//! The stores: what the client keeps on disk besides the project's files. The `.cairn/` state
//! folder of a working copy ([`StateFolder`]) and the user's token file ([`user_config`]).
//!
//! ```text
//! .cairn/
//!   config.toml     server URL and project id (TOML, written by `cairn init` / `cairn clone`)
//!   index           the base listing and the last scan's stat data, records sorted by path
//!                   (binary, checksummed, read in place; see `index`)
//!   head            the base's version, root and pending paths: what rebuilds a damaged
//!                   index with the object cache (see `head`)
//!   clock           touched at each scan: the file system's "now" (StateFolder::file_system_clock)
//!   lock            locked (flock) while a command changes the working copy
//!   push-journal    a push whose objects may be partly on the server (see `journal`)
//!   objects/ab/…    zstd frames keyed by object id (see `object_cache`)
//!   objects/pack/   a large pull's objects in one file each (see `pack`)
//!   monitor.sock    the socket `cairn daemon` answers on, if one runs (see `monitor`)
//!   monitor.lock    locked (flock) while a monitor runs: one per working copy
//!   monitor-cookies/ the files a monitor's queries make to know its notifications caught up
//! ```
//!
//! Every file is replaced atomically ([`atomic`]). The config, the head, and the index when the
//! base changes are fsynced; an index write of stat data alone and the objects are not (caches,
//! verified on read and rebuilt when damaged).
//!
//! Working copies made before the index have `base` and `stat-cache` instead; the first open
//! converts them ([`StateFolder::index`]).
//!
//! This layer knows files, not the working copy's contents (scanning and applying are
//! `working_copy`'s) nor the network (`transport`'s): it imports only the lowest layer.

use std::fs;
use std::path::{Path as FsPath, PathBuf};

use sync_protocol::{Dir, Object};

pub mod atomic;
mod codec;
pub mod config;
pub mod head;
pub mod index;
pub mod journal;
pub mod lock;
pub mod monitor;
pub mod object_cache;
pub mod pack;
pub mod state;
pub mod user_config;

use crate::error::{ClientError, io_error};
use crate::timing::timed;
use config::WorkingCopyConfig;
use head::Head;
use index::{BaseSource, Index, IndexContents, Unsealed};
use journal::PushJournal;
use lock::WorkingCopyLock;
use object_cache::ObjectCache;
use state::{Base, Mtime, StatCache};

/// The folder that holds a working copy's state.
pub const META_DIR: &str = ".cairn";

/// The index as a command found it.
#[derive(Debug, Clone)]
pub struct LoadedIndex {
    pub index: Index,
    /// Set when the index was missing or damaged and was rebuilt: why.
    pub rebuilt: Option<String>,
}

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
            staging.set_base(&Base::never_synced(), &[])?;
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

    fn index_path(&self) -> PathBuf {
        self.file("index")
    }

    /// Reads the index. A working copy of the previous format (`base` and `stat-cache`) is
    /// converted first; a missing or damaged index is rebuilt from the head record and the
    /// object cache (the stat data is left empty: every file is hashed again), and `rebuilt`
    /// says why. Fails only when there is nothing to rebuild from.
    pub fn index(&self) -> Result<LoadedIndex, ClientError> {
        let damage = match Index::read(&self.index_path())? {
            Ok(index) => {
                return Ok(LoadedIndex {
                    index,
                    rebuilt: None,
                });
            }
            Err(damage) => damage,
        };
        let old_base = self.file("base");
        if !self.index_path().exists() && old_base.exists() {
            return self.convert_old_format(&old_base);
        }
        let head_path = self.file("head");
        let Some(head) = Head::load(&head_path)? else {
            return Err(ClientError::CorruptState {
                path: self.index_path(),
                detail: format!("{damage}, and there is no head record to rebuild it from"),
            });
        };
        let base = head.rebuild_base(&self.objects()).map_err(|error| {
            let missing = match error {
                sync_protocol::tree::TreeError::Missing { id, .. } => id,
                _ => head.root,
            };
            ClientError::IndexUnrecoverable {
                path: self.index_path(),
                detail: damage.to_string(),
                version: head.version,
                missing,
            }
        })?;
        let contents = IndexContents {
            base: BaseSource::New(&base),
            stats: &[],
            scan: None,
        };
        let index = Index::from_bytes(index::encode(&contents)).map_err(|damage| {
            ClientError::CorruptState {
                path: self.index_path(),
                detail: damage.0,
            }
        })?;
        index::write(&self.index_path(), &contents, atomic::Durability::Full)?;
        Ok(LoadedIndex {
            index,
            rebuilt: Some(damage.0),
        })
    }

    /// Reads the index as it is on disk, without converting or rebuilding anything.
    pub fn read_index(&self) -> Result<Result<Index, index::IndexDamage>, ClientError> {
        Index::read(&self.index_path())
    }

    /// Reads a working copy of the previous format (`base`, `stat-cache`), writes its index and
    /// head, and removes the old files.
    fn convert_old_format(&self, old_base: &FsPath) -> Result<LoadedIndex, ClientError> {
        let base = Base::load(old_base)?;
        let old_stats = self.file("stat-cache");
        let (cache, _) = StatCache::load(&old_stats)?;
        let mut stats: Vec<(&str, state::StatEntry)> = cache
            .iter()
            .map(|(path, entry)| (path.as_str(), *entry))
            .collect();
        stats.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.set_base(&base, &stats)?;
        for old in [old_base, old_stats.as_path()] {
            match fs::remove_file(old) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(ClientError::io("remove", old, error));
                }
                _ => {}
            }
        }
        atomic::sync_dir(&self.dir)?;
        let index =
            Index::read(&self.index_path())?.map_err(|damage| ClientError::CorruptState {
                path: self.index_path(),
                detail: damage.0,
            })?;
        Ok(LoadedIndex {
            index,
            rebuilt: None,
        })
    }

    /// Records a new base with `stats` (path order), without a scan: the index, fsynced, then
    /// the head record.
    pub fn set_base(
        &self,
        base: &Base,
        stats: &[(&str, state::StatEntry)],
    ) -> Result<(), ClientError> {
        self.write_index(&IndexContents {
            base: BaseSource::New(base),
            stats,
            scan: None,
        })
    }

    /// Writes the index. A new base makes it durable: the index file is fsynced, then the head
    /// record is written and fsynced with the folder, which makes both renames durable with
    /// one folder flush. Stat data alone is written without any.
    pub fn write_index(&self, contents: &IndexContents<'_>) -> Result<(), ClientError> {
        match contents.base {
            BaseSource::New(base) => {
                index::write(&self.index_path(), contents, atomic::Durability::FileOnly)?;
                timed("save head", || Head::of(base).save(&self.file("head")))
            }
            BaseSource::Kept(_) => {
                index::write(&self.index_path(), contents, atomic::Durability::Cache)
            }
        }
    }

    /// [`StateFolder::write_index`] of a new base encoded ahead (`index::encode_pushed`: the
    /// tree of a push, encoded while the push was out), committed as `version` with `root`:
    /// sealed with that version, and as durable.
    pub fn write_sealed_index(
        &self,
        unsealed: Unsealed,
        version: u64,
        root: sync_protocol::ObjectId,
    ) -> Result<(), ClientError> {
        let bytes = unsealed.seal(Some(version));
        index::write_bytes(&self.index_path(), &bytes, atomic::Durability::FileOnly)?;
        let head = Head {
            version: Some(version),
            root,
            pending: Vec::new(),
        };
        timed("save head", || head.save(&self.file("head")))
    }

    /// Takes the lock of the working copy at `root`, waiting [`lock::PATIENCE`] at most for
    /// another process to let it go, then failing with `Busy`.
    pub fn lock(&self, root: &FsPath) -> Result<WorkingCopyLock, ClientError> {
        lock::lock(root, &self.file("lock"), lock::PATIENCE)
    }

    /// Takes the lock of the working copy at `root` only if it is free: `Busy` at once.
    pub fn try_lock(&self, root: &FsPath) -> Result<WorkingCopyLock, ClientError> {
        lock::lock(root, &self.file("lock"), std::time::Duration::ZERO)
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
