//! The working copy: a folder of project files with a `.cairn/` state folder, and everything
//! done to its files: [`scan`](mod@scan) turns the folder into a listing (reading only files whose stat
//! changed, storing their objects), [`status`](mod@status) compares listings, [`apply`](mod@apply) writes a new tree
//! into the folder without losing a local edit, and [`WorkingCopy`] ties them to the state
//! folder (`stores::StateFolder`): the base, the stat cache, the object cache, the lock.
//!
//! This layer knows the disk and the stores, never the network: the operations above it
//! (`operations`) bring the objects and decide what to push.

use std::fs;
use std::path::{Path as FsPath, PathBuf};

use sync_protocol::tree::Path as TreePath;

pub mod apply;
pub mod content_merge;
pub mod scan;
mod snapshot;
pub mod status;
mod update;

pub use crate::stores::config::WorkingCopyConfig;
pub use crate::stores::lock::WorkingCopyLock;
pub use snapshot::Snapshot;

use crate::error::{ClientError, io_error};
use crate::stores::object_cache::ObjectCache;
use crate::stores::state::{Base, Mtime, StatCache, StatEntry};
use crate::stores::{LoadedStatCache, StateFolder};
use crate::timing::{free_in_background, timed};
use scan::{Scan, scan};
use status::{PathChange, changes};

/// What `status` found.
#[derive(Debug, Clone)]
pub struct Status {
    pub base_version: Option<u64>,
    pub changes: Vec<PathChange>,
    /// Paths the last pull could not bring up to date (see `Base::pending`).
    pub pending: Vec<sync_protocol::tree::Path>,
    pub scan: Scan,
    /// Set when the stat cache was damaged and discarded (everything was hashed again).
    pub stat_cache_discarded: Option<String>,
}

/// A scan with what it started from.
struct Scanned {
    scan: Scan,
    /// The stat cache as loaded before the scan.
    loaded: StatCache,
    /// Why the stored stat cache was discarded, if it was.
    discarded: Option<String>,
    /// The file system's clock just before the walk: entries not older than it are racy.
    clock: Mtime,
}

/// About how many bytes one stat cache entry takes on disk (a prefix-compressed path, the stat,
/// the id): rewriting the cache costs about this much per entry.
const STAT_ENTRY_BYTES: u64 = 64;
/// Opening, reading and closing a small file costs about as much as reading this many more
/// bytes: the least a stat cache entry spares.
const FILE_READ_BYTES: u64 = 16 * 1024;

impl Scanned {
    /// True when the stat cache this scan would keep is worth writing (see
    /// [`stat_cache_pays`]); racy entries are not kept.
    fn stat_cache_pays(&self) -> bool {
        let kept = self
            .scan
            .stats
            .iter()
            .filter(|(_, entry)| entry.mtime < self.clock);
        stat_cache_pays(kept, self.scan.stats.len(), &self.loaded)
    }
}

/// True when a stat cache of `len` entries, `kept`, is worth writing over `loaded`: reading
/// again the files it learned (each counted as at least [`FILE_READ_BYTES`]) would cost more
/// than writing the cache file. On 10,000 files, that is 40 small files edited since the cache
/// was written. Until then each of them is simply hashed again by the next scan, as is a file
/// whose entry was dropped (edited or removed since): a stale entry costs nothing where it is, a
/// stat that no longer matches is a miss, and the next write leaves it out. A damaged or missing
/// cache learns every file.
fn stat_cache_pays<'a>(
    kept: impl Iterator<Item = (&'a TreePath, &'a StatEntry)>,
    len: usize,
    loaded: &StatCache,
) -> bool {
    let learned: u64 = kept
        .filter(|(path, entry)| loaded.get(path) != Some(*entry))
        .map(|(_, entry)| entry.size.max(FILE_READ_BYTES))
        .sum();
    learned > 0 && learned >= len as u64 * STAT_ENTRY_BYTES
}

/// An open working copy.
#[derive(Debug, Clone)]
pub struct WorkingCopy {
    root: PathBuf,
    state: StateFolder,
    config: WorkingCopyConfig,
}

impl WorkingCopy {
    /// Makes `root` a working copy of `config`'s project, never synced.
    pub fn init(root: &FsPath, config: WorkingCopyConfig) -> Result<Self, ClientError> {
        if StateFolder::of(root).dir().exists() {
            return Err(ClientError::AlreadyAWorkingCopy {
                root: root.to_path_buf(),
            });
        }
        fs::create_dir_all(root).map_err(io_error("create folder", root))?;
        let state = StateFolder::create(root, &config)?;
        Ok(Self {
            root: root.to_path_buf(),
            state,
            config,
        })
    }

    /// Opens the working copy whose root is exactly `root`.
    pub fn open(root: &FsPath) -> Result<Self, ClientError> {
        let state = StateFolder::of(root);
        if !state.exists() {
            return Err(ClientError::NotAWorkingCopy {
                start: root.to_path_buf(),
            });
        }
        let config = state.config()?;
        Ok(Self {
            root: root.to_path_buf(),
            state,
            config,
        })
    }

    /// Opens the working copy holding `start`: `start` or its nearest ancestor with `.cairn/`.
    pub fn discover(start: &FsPath) -> Result<Self, ClientError> {
        let start = fs::canonicalize(start).map_err(io_error("open", start))?;
        let mut candidate = Some(start.as_path());
        while let Some(dir) = candidate {
            if StateFolder::of(dir).exists() {
                return Self::open(dir);
            }
            candidate = dir.parent();
        }
        Err(ClientError::NotAWorkingCopy { start })
    }

    pub fn root(&self) -> &FsPath {
        &self.root
    }

    pub fn config(&self) -> &WorkingCopyConfig {
        &self.config
    }

    /// The `.cairn/` folder and its files.
    pub fn state(&self) -> &StateFolder {
        &self.state
    }

    pub fn objects(&self) -> ObjectCache {
        self.state.objects()
    }

    pub fn base(&self) -> Result<Base, ClientError> {
        self.state.base()
    }

    /// Records a new base. The operations call this after a push commits (with the pushed
    /// tree) or, through [`WorkingCopy::apply`], after a pull.
    pub fn set_base(&self, base: &Base) -> Result<(), ClientError> {
        self.state.set_base(base)
    }

    pub fn stat_cache(&self) -> Result<LoadedStatCache, ClientError> {
        self.state.stat_cache()
    }

    /// The base and the stat cache, decoded side by side: on a large project each is a file of
    /// 10,000 paths, and every scan needs both.
    pub fn base_and_stat_cache(&self) -> Result<(Base, LoadedStatCache), ClientError> {
        let (base, stat_cache) = rayon::join(
            || timed("load base", || self.base()),
            || timed("load stat cache", || self.stat_cache()),
        );
        Ok((base?, stat_cache?))
    }

    /// Scans the working copy, storing new objects and refreshing the stat cache.
    pub fn scan(&self) -> Result<(Scan, Option<String>), ClientError> {
        let (base, stat_cache) = self.base_and_stat_cache()?;
        self.scan_with(&base, stat_cache)
    }

    /// [`WorkingCopy::scan`] with the base and stat cache already loaded.
    fn scan_with(
        &self,
        base: &Base,
        (loaded, discarded): LoadedStatCache,
    ) -> Result<(Scan, Option<String>), ClientError> {
        let scanned = self.scan_from(base, loaded, discarded)?;
        // Rewriting the cache for a few small files would cost more than hashing them again.
        if scanned.stat_cache_pays() {
            let fresh = scanned.scan.stat_cache(scanned.clock);
            timed("save stat cache", || self.state.save_stat_cache(&fresh))?;
            free_in_background(fresh);
        }
        free_in_background(scanned.loaded);
        Ok((scanned.scan, scanned.discarded))
    }

    /// Scans without saving the stat cache: the caller decides what to keep.
    fn scan_from(
        &self,
        base: &Base,
        loaded: StatCache,
        discarded: Option<String>,
    ) -> Result<Scanned, ClientError> {
        let clock = timed("file system clock", || self.state.file_system_clock());
        let scan = timed("scan", || {
            scan(&self.root, &loaded, &self.objects(), &base.listing)
        })?;
        Ok(Scanned {
            scan,
            loaded,
            discarded,
            clock,
        })
    }

    /// Takes the working copy's lock, failing at once with `Busy` if another process holds it.
    pub fn lock(&self) -> Result<WorkingCopyLock, ClientError> {
        self.state.lock(&self.root)
    }

    /// The changes since the base.
    pub fn status(&self) -> Result<Status, ClientError> {
        let (base, stat_cache) = self.base_and_stat_cache()?;
        let (scan, stat_cache_discarded) = self.scan_with(&base, stat_cache)?;
        let changes = changes(&base.listing, &scan.listing, &scan.unsettled);
        let Base {
            version,
            listing,
            pending,
            ..
        } = base;
        free_in_background(listing);
        Ok(Status {
            base_version: version,
            changes,
            pending: pending.into_iter().collect(),
            scan,
            stat_cache_discarded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_open_and_refuse_twice() {
        let dir = tempfile::tempdir().unwrap();
        let config = WorkingCopyConfig::new("https://x.test", "p").unwrap();
        WorkingCopy::init(dir.path(), config.clone()).unwrap();
        let opened = WorkingCopy::open(dir.path()).unwrap();
        assert_eq!(opened.config(), &config);
        assert_eq!(opened.base().unwrap(), Base::never_synced());
        assert!(matches!(
            WorkingCopy::init(dir.path(), config),
            Err(ClientError::AlreadyAWorkingCopy { .. })
        ));
        let nested = dir.path().join("a/b");
        fs::create_dir_all(&nested).unwrap();
        let found = WorkingCopy::discover(&nested).unwrap();
        assert_eq!(found.root(), fs::canonicalize(dir.path()).unwrap());
    }

    #[test]
    fn damaged_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = WorkingCopyConfig::new("https://x.test", "p").unwrap();
        let copy = WorkingCopy::init(dir.path(), config).unwrap();
        fs::write(dir.path().join(".cairn/base"), b"garbage").unwrap();
        let error = copy.base().unwrap_err();
        assert!(matches!(error, ClientError::CorruptState { .. }));
        assert!(error.to_string().contains("corrupted"));
        fs::write(dir.path().join(".cairn/config.toml"), b"server = 1").unwrap();
        assert!(matches!(
            WorkingCopy::open(dir.path()),
            Err(ClientError::CorruptState { .. })
        ));
    }

    #[test]
    fn the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let config = WorkingCopyConfig::new("https://x.test", "p").unwrap();
        let copy = WorkingCopy::init(dir.path(), config).unwrap();
        let held = copy.lock().unwrap();
        assert!(matches!(copy.lock(), Err(ClientError::Busy { .. })));
        drop(held);
        copy.lock().unwrap();
    }

    #[test]
    fn not_a_working_copy() {
        let dir = tempfile::tempdir().unwrap();
        let error = WorkingCopy::open(dir.path()).unwrap_err();
        assert!(matches!(error, ClientError::NotAWorkingCopy { .. }));
    }
}
