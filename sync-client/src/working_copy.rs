//! A working copy: a folder with a `.cairn/` state folder.
//!
//! ```text
//! .cairn/
//!   config.toml     server URL and project id (TOML, written by `cairn init` / `cairn clone`)
//!   base            the version and tree last synced (binary, checksummed; see `state::Base`)
//!   stat-cache      path → size, mtime, inode, id (binary, checksummed; a cache)
//!   clock           touched at each scan: the file system's "now" (see `scan::file_system_clock`)
//!   lock            locked (flock) while a command changes the working copy
//!   objects/ab/…    zstd frames keyed by object id (see `object_cache`)
//! ```
//!
//! Every file is replaced atomically. The base and config are fsynced; the stat cache and the
//! objects are caches, verified on read and rebuilt when damaged.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path as FsPath, PathBuf};

use serde::{Deserialize, Serialize};
use sync_protocol::diff::{apply_changes, diff};
use sync_protocol::patch::patch_tree;
use sync_protocol::tree::{FileRef, Listing, Path as TreePath, TreeError, build_dirs, flatten};
use sync_protocol::{Dir, Object, ObjectId};

use crate::apply::{ApplyReport, apply_clean, apply_tree};
use crate::atomic::{Mode, Replace, write_atomic};
use crate::error::{ClientError, io_error};
use crate::object_cache::ObjectCache;
use crate::scan::{CleanPaths, META_DIR, Scan, clean_paths, file_system_clock, scan};
use crate::state::{Base, Mtime, StatCache, StatEntry};
use crate::status::{PathChange, changed_paths, changes};
use crate::timing::{free_in_background, timed};

/// The version of the `.cairn/` layout this client writes and reads.
pub const LAYOUT_VERSION: u32 = 1;

/// `.cairn/config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkingCopyConfig {
    /// The `.cairn/` layout version.
    pub layout: u32,
    /// The server's base URL, e.g. `https://cairn.example.com`.
    pub server: String,
    /// The project's id on that server.
    pub project: String,
}

impl WorkingCopyConfig {
    /// Checks a server URL and project id as given on the command line.
    pub fn new(server: &str, project: &str) -> Result<Self, ClientError> {
        let server = server.trim_end_matches('/');
        let valid_scheme = server.starts_with("https://") || server.starts_with("http://");
        let has_host = server
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty());
        if !valid_scheme || !has_host || server.chars().any(char::is_whitespace) {
            return Err(ClientError::InvalidServerUrl {
                server: server.to_owned(),
            });
        }
        if project.is_empty()
            || project.len() > 128
            || !project
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ClientError::InvalidProjectId {
                project: project.to_owned(),
            });
        }
        Ok(Self {
            layout: LAYOUT_VERSION,
            server: server.to_owned(),
            project: project.to_owned(),
        })
    }
}

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

/// The working copy as a tree: what a push uploads.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub scan: Scan,
    /// The root dir of `scan.listing`; it and every dir under it are in the object cache (the
    /// dirs of subtrees unchanged since the base are the base's, stored when it was pushed or
    /// pulled).
    pub root: ObjectId,
}

/// What an apply knows of the disk before it starts.
enum Found {
    /// Only the changed paths were looked at, and they are as the base has them.
    Clean(CleanPaths),
    Scanned(Scan),
}

/// The stat cache as read from disk, and why it was discarded if it was damaged.
pub type LoadedStatCache = (StatCache, Option<String>);

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

/// Held while a command changes the working copy; released on drop (or when the process dies).
#[derive(Debug)]
pub struct WorkingCopyLock {
    _file: fs::File,
}

/// An open working copy.
#[derive(Debug, Clone)]
pub struct WorkingCopy {
    root: PathBuf,
    config: WorkingCopyConfig,
}

impl WorkingCopy {
    /// Makes `root` a working copy of `config`'s project, never synced.
    pub fn init(root: &FsPath, config: WorkingCopyConfig) -> Result<Self, ClientError> {
        let meta = root.join(META_DIR);
        if meta.exists() {
            return Err(ClientError::AlreadyAWorkingCopy {
                root: root.to_path_buf(),
            });
        }
        fs::create_dir_all(root).map_err(io_error("create folder", root))?;
        // Created under a temp name and renamed, so a half-made `.cairn/` never exists.
        // The name is a temp name (`atomic::is_temp_name`), so a scan never lists a leftover one.
        let staging = root.join(format!(
            ".cairn{}init-{}",
            crate::atomic::TEMP_MARKER,
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir(&staging).map_err(io_error("create folder", &staging))?;
        let made = (|| {
            fs::create_dir(staging.join("objects"))
                .map_err(io_error("create folder", staging.join("objects")))?;
            write_config(&staging.join("config.toml"), &config)?;
            // The never-synced base is the empty project: its root must be readable like any
            // other base root when the first push is planned.
            ObjectCache::new(staging.join("objects")).put_object(&Object::Dir(Dir::empty()))?;
            Base::never_synced().save(&staging.join("base"))?;
            fs::rename(&staging, &meta).map_err(io_error("create", &meta))?;
            crate::atomic::sync_dir(root)
        })();
        if let Err(error) = made {
            let _ = fs::remove_dir_all(&staging);
            return Err(error);
        }
        Ok(Self {
            root: root.to_path_buf(),
            config,
        })
    }

    /// Opens the working copy whose root is exactly `root`.
    pub fn open(root: &FsPath) -> Result<Self, ClientError> {
        let meta = root.join(META_DIR);
        if !meta.is_dir() {
            return Err(ClientError::NotAWorkingCopy {
                start: root.to_path_buf(),
            });
        }
        let config = read_config(&meta.join("config.toml"))?;
        Ok(Self {
            root: root.to_path_buf(),
            config,
        })
    }

    /// Opens the working copy holding `start`: `start` or its nearest ancestor with `.cairn/`.
    pub fn discover(start: &FsPath) -> Result<Self, ClientError> {
        let start = fs::canonicalize(start).map_err(io_error("open", start))?;
        let mut candidate = Some(start.as_path());
        while let Some(dir) = candidate {
            if dir.join(META_DIR).is_dir() {
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

    fn meta(&self, name: &str) -> PathBuf {
        self.root.join(META_DIR).join(name)
    }

    pub fn objects(&self) -> ObjectCache {
        ObjectCache::new(self.meta("objects"))
    }

    pub fn base(&self) -> Result<Base, ClientError> {
        Base::load(&self.meta("base"))
    }

    /// Records a new base. The network half calls this after a push commits (with the pushed
    /// tree) or, through [`WorkingCopy::apply`], after a pull.
    pub fn set_base(&self, base: &Base) -> Result<(), ClientError> {
        base.save(&self.meta("base"))
    }

    pub fn stat_cache(&self) -> Result<(StatCache, Option<String>), ClientError> {
        StatCache::load(&self.meta("stat-cache"))
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
            timed("save stat cache", || fresh.save(&self.meta("stat-cache")))?;
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
        let clock = timed("file system clock", || {
            file_system_clock(&self.meta("clock"))
        });
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
        let path = self.meta("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error("open", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(WorkingCopyLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(ClientError::Busy {
                root: self.root.clone(),
                lock: path,
            }),
            Err(fs::TryLockError::Error(error)) => Err(ClientError::io("lock", path, error)),
        }
    }

    /// Scans the working copy and stores its dir objects: the tree a push would upload, with
    /// every object of it in the object cache (`sync_protocol::plan::plan_push` over
    /// [`WorkingCopy::objects`] then says which to send).
    ///
    /// Only the dirs above a changed path are built (see `build_changed_dirs`); when the scan
    /// finds exactly the base's tree, the base root is the answer and no dir is built at all. A
    /// base dir missing from the cache falls back to building and storing every dir.
    pub fn snapshot(&self) -> Result<Snapshot, ClientError> {
        let (base, stat_cache) = self.base_and_stat_cache()?;
        self.snapshot_with(&base, stat_cache)
    }

    /// [`WorkingCopy::snapshot`] against a base and stat cache the caller already loaded (under
    /// the lock), so a push decodes the base file once.
    pub fn snapshot_with(
        &self,
        base: &Base,
        stat_cache: LoadedStatCache,
    ) -> Result<Snapshot, ClientError> {
        let (scan, _) = self.scan_with(base, stat_cache)?;
        let objects = self.objects();
        if base.pending.is_empty() && objects.contains(&base.root) {
            if scan.listing == base.listing {
                return Ok(Snapshot {
                    scan,
                    root: base.root,
                });
            }
            let rebuilt = timed("build changed dirs", || {
                build_changed_dirs(&objects, base, &scan.listing)
            })?;
            if let Some(root) = rebuilt {
                return Ok(Snapshot { scan, root });
            }
        }
        let built =
            timed("build dirs", || build_dirs(&scan.listing)).map_err(ClientError::WorkingTree)?;
        timed("store dirs", || {
            built
                .dirs
                .iter()
                .try_for_each(|(_, dir)| objects.put_object(dir).map(drop))
        })?;
        Ok(Snapshot {
            scan,
            root: built.root,
        })
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

    /// [`WorkingCopy::apply`] for a version known by its root alone: its tree is read from the
    /// object cache, which must hold every dir of it that the base does not share (a pull stores
    /// the new ones; the base's are kept from before).
    pub fn apply_root(&self, version: u64, root: ObjectId) -> Result<ApplyReport, ClientError> {
        let lock = self.lock()?;
        let (base, stat_cache) = self.base_and_stat_cache()?;
        self.apply_root_locked(&lock, &base, stat_cache, version, root)
    }

    /// [`WorkingCopy::apply_root`] under a lock the caller holds, with the base it loaded under
    /// that lock.
    pub fn apply_root_locked(
        &self,
        _lock: &WorkingCopyLock,
        base: &Base,
        stat_cache: LoadedStatCache,
        version: u64,
        root: ObjectId,
    ) -> Result<ApplyReport, ClientError> {
        let listing = timed("new tree", || self.tree_of(base, version, &root))?;
        self.apply_locked(base, stat_cache, version, root, listing)
    }

    /// The listing of `root`. When the base listing is exactly the tree of the base root (no
    /// pending paths), it is the base listing patched with a diff from the base root, which
    /// reads only the dirs that changed; otherwise, or if the diff cannot be made from the
    /// cache, every dir of `root` is read.
    fn tree_of(&self, base: &Base, version: u64, root: &ObjectId) -> Result<Listing, ClientError> {
        let objects = self.objects();
        if base.pending.is_empty()
            && let Ok(diff) = diff(&objects, &base.root, root)
        {
            let mut listing = base.listing.clone();
            apply_changes(&mut listing, &diff.changes);
            return Ok(listing);
        }
        flatten(&objects, root).map_err(|error| match error {
            TreeError::Missing { id, .. } => ClientError::ObjectMissing { id },
            source => ClientError::VersionTree { version, source },
        })
    }

    /// Brings the working copy to `listing`, the tree of `version` whose root is `root`, merging
    /// local edits in (see [`crate::apply`]); then records it as the base. Every object of the
    /// new files must already be in the object cache.
    pub fn apply(
        &self,
        version: u64,
        root: ObjectId,
        listing: &Listing,
    ) -> Result<ApplyReport, ClientError> {
        let _lock = self.lock()?;
        let (base, stat_cache) = self.base_and_stat_cache()?;
        self.apply_locked(&base, stat_cache, version, root, listing.clone())
    }

    /// [`WorkingCopy::apply`] with the lock held and the base loaded under it.
    ///
    /// When every path the new tree changes is as the base has it on disk, only those paths are
    /// looked at ([`crate::scan::clean_paths`]); otherwise the whole working copy is scanned and
    /// merged.
    fn apply_locked(
        &self,
        base: &Base,
        (loaded, discarded): LoadedStatCache,
        version: u64,
        root: ObjectId,
        listing: Listing,
    ) -> Result<ApplyReport, ClientError> {
        let objects = self.objects();
        let clean = if base.pending.is_empty() {
            timed("check changed paths", || {
                clean_paths(&self.root, &base.listing, &listing, &loaded, &objects)
            })?
        } else {
            None
        };
        // The stat entries still valid before this apply writes anything: the scan's, or, when
        // nothing was walked, the stored cache's (`None`; they were not racy when it was saved,
        // and a stat that changed since then simply misses).
        let (found, kept, loaded) = match clean {
            Some(clean) => (Found::Clean(clean), None, loaded),
            None => {
                let scanned = self.scan_from(base, loaded, discarded)?;
                let mut kept = StatCache::new();
                for (path, entry) in &scanned.scan.stats {
                    if entry.mtime < scanned.clock {
                        kept.insert(path.clone(), *entry);
                    }
                }
                (Found::Scanned(scanned.scan), Some(kept), scanned.loaded)
            }
        };
        let report = timed("apply tree", || match &found {
            Found::Clean(clean) => {
                apply_clean(&self.root, &base.listing, &listing, clean, &objects)
            }
            Found::Scanned(scan) => apply_tree(&self.root, &base.listing, &listing, scan, &objects),
        })?;
        let next = next_base(base, version, root, listing, &report);
        timed("save base", || self.set_base(&next))?;
        free_in_background(next);
        // What this apply wrote is added to the cache, judged by a clock read now; what it
        // replaced or removed is forgotten.
        let mut written = StatCache::new();
        for (path, entry) in &report.stats {
            written.insert(path.clone(), *entry);
        }
        written.drop_racy(file_system_clock(&self.meta("clock")));
        let learned = kept.iter().flat_map(StatCache::iter).chain(written.iter());
        if !stat_cache_pays(learned, loaded.len(), &loaded) {
            return Ok(report);
        }
        let mut cache = kept.unwrap_or(loaded);
        for path in report
            .written
            .iter()
            .chain(&report.removed)
            .chain(&report.mode_changed)
        {
            cache.remove(path);
        }
        for (path, entry) in written.into_entries() {
            cache.insert(path, entry);
        }
        timed("save stat cache", || cache.save(&self.meta("stat-cache")))?;
        Ok(report)
    }
}

/// The root of `listing`, built from the base's dirs as git's cache-tree does: only the dirs
/// above a path whose entry differs from the base are rebuilt (`sync_protocol::patch::TreePatch`
/// reads the base's versions on those paths from the cache and patches them) and stored; every
/// other subtree keeps the base's id without being read. The base listing must be exactly the
/// tree of the base root (no pending paths). `None` when a base dir it needs is not in the
/// cache: the caller builds the whole tree instead.
fn build_changed_dirs(
    objects: &ObjectCache,
    base: &Base,
    listing: &Listing,
) -> Result<Option<ObjectId>, ClientError> {
    let changes: BTreeMap<TreePath, Option<FileRef>> = changed_paths(&base.listing, listing)
        .into_iter()
        .map(|path| (path.clone(), listing.get(path).copied()))
        .collect();
    // A base dir the cache lacks, or changes that do not make a valid tree (which building
    // every dir then reports), mean the whole build.
    let Ok(patched) = patch_tree(objects, base.root, &changes) else {
        return Ok(None);
    };
    for (_, dir) in &patched.dirs {
        objects.put_object(dir)?;
    }
    Ok(Some(patched.root))
}

/// The base after an apply: the new version, except that held-back paths keep the previous
/// base's entry (see `Base::pending`), as long as that still makes a valid tree.
fn next_base(
    previous: &Base,
    version: u64,
    root: ObjectId,
    listing: Listing,
    report: &ApplyReport,
) -> Base {
    let mut next = Base {
        version: Some(version),
        root,
        listing,
        pending: Default::default(),
    };
    if report.held_back.is_empty() {
        return next;
    }
    let mut patched = next.listing.clone();
    for held in &report.held_back {
        next.pending.insert(held.path.clone());
        match previous.listing.get(&held.path) {
            Some(entry) => patched.insert(held.path.clone(), *entry),
            None => patched.remove(&held.path),
        };
    }
    if build_dirs(&patched).is_ok() {
        next.listing = patched;
    }
    next
}

fn write_config(path: &FsPath, config: &WorkingCopyConfig) -> Result<(), ClientError> {
    let text = toml::to_string(config).map_err(|error| ClientError::Config {
        path: path.to_path_buf(),
        detail: error.to_string(),
    })?;
    write_atomic(
        path,
        text.as_bytes(),
        Mode::Umask(0o644),
        Replace::Overwrite,
    )?;
    Ok(())
}

fn read_config(path: &FsPath) -> Result<WorkingCopyConfig, ClientError> {
    let text = fs::read_to_string(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => ClientError::CorruptState {
            path: path.to_path_buf(),
            detail: "the file is missing".to_owned(),
        },
        io::ErrorKind::InvalidData => ClientError::CorruptState {
            path: path.to_path_buf(),
            detail: "the file is not UTF-8".to_owned(),
        },
        _ => ClientError::io("read", path, error),
    })?;
    let config: WorkingCopyConfig =
        toml::from_str(&text).map_err(|error| ClientError::CorruptState {
            path: path.to_path_buf(),
            detail: error.to_string(),
        })?;
    if config.layout != LAYOUT_VERSION {
        return Err(ClientError::UnsupportedLayout {
            path: path.to_path_buf(),
            found: config.layout,
            supported: LAYOUT_VERSION,
        });
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_arguments_are_checked() {
        assert!(WorkingCopyConfig::new("https://cairn.example.com/", "p1").is_ok());
        assert_eq!(
            WorkingCopyConfig::new("https://cairn.example.com/", "p1")
                .unwrap()
                .server,
            "https://cairn.example.com"
        );
        assert!(WorkingCopyConfig::new("ftp://x", "p1").is_err());
        assert!(WorkingCopyConfig::new("https://", "p1").is_err());
        assert!(WorkingCopyConfig::new("https://x", "").is_err());
        assert!(WorkingCopyConfig::new("https://x", "a/b").is_err());
    }

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
    fn changed_dirs_build_the_same_tree_as_a_full_build() {
        use sync_protocol::{EntryKind, ObjectKind, chunk_id};
        let file = |seed: &str| FileRef {
            kind: EntryKind::File,
            target: ObjectKind::Chunk,
            size: seed.len() as u64,
            id: chunk_id(seed.as_bytes()),
        };
        let listing = |entries: &[(&str, Option<&str>)]| -> Listing {
            entries
                .iter()
                .map(|(path, seed)| {
                    let entry = seed.map_or_else(FileRef::empty_dir, file);
                    (TreePath::new(path).unwrap(), entry)
                })
                .collect()
        };
        let base_listing = listing(&[
            ("a/b/c.json", Some("1")),
            ("a/b/d.json", Some("2")),
            ("a/e.json", Some("3")),
            ("a.txt", Some("4")),
            ("empty", None),
            ("f/g", Some("5")),
            ("z", Some("6")),
        ]);
        let edits: Vec<Listing> = vec![
            // One file edited deep down.
            listing(&[
                ("a/b/c.json", Some("1x")),
                ("a/b/d.json", Some("2")),
                ("a/e.json", Some("3")),
                ("a.txt", Some("4")),
                ("empty", None),
                ("f/g", Some("5")),
                ("z", Some("6")),
            ]),
            // Added, removed, an empty dir filled, a folder emptied, a file became a folder.
            listing(&[
                ("a/b/c.json", Some("1")),
                ("a/e.json", Some("3")),
                ("a/new/x", Some("7")),
                ("empty/now", Some("8")),
                ("f", None),
                ("z/inside", Some("9")),
            ]),
            // A folder became a file; everything else gone.
            listing(&[("a", Some("10"))]),
            Listing::new(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let objects = ObjectCache::new(dir.path());
        objects.put_object(&Object::Dir(Dir::empty())).unwrap();
        let built = build_dirs(&base_listing).unwrap();
        for (_, object) in &built.dirs {
            objects.put_object(object).unwrap();
        }
        let base = Base {
            version: Some(1),
            root: built.root,
            listing: base_listing,
            pending: Default::default(),
        };
        for edited in edits {
            let expected = build_dirs(&edited).unwrap().root;
            let rebuilt = build_changed_dirs(&objects, &base, &edited).unwrap();
            assert_eq!(rebuilt, Some(expected), "{edited:?}");
            // Every dir of the new tree is readable from the cache.
            assert_eq!(flatten(&objects, &expected).unwrap(), edited);
        }
        // Without the base's dirs in the cache, the caller is told to build everything.
        let bare = ObjectCache::new(dir.path().join("elsewhere"));
        let edited = listing(&[("a/b/c.json", Some("1y"))]);
        assert_eq!(build_changed_dirs(&bare, &base, &edited).unwrap(), None);
    }

    #[test]
    fn not_a_working_copy() {
        let dir = tempfile::tempdir().unwrap();
        let error = WorkingCopy::open(dir.path()).unwrap_err();
        assert!(matches!(error, ClientError::NotAWorkingCopy { .. }));
    }
}
