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

use std::fs;
use std::io;
use std::path::{Path as FsPath, PathBuf};

use serde::{Deserialize, Serialize};
use sync_protocol::tree::{Listing, TreeError, build_dirs, flatten};
use sync_protocol::{Dir, Object, ObjectId};

use crate::apply::{ApplyReport, apply_tree};
use crate::atomic::{Mode, Replace, write_atomic};
use crate::error::{ClientError, io_error};
use crate::object_cache::ObjectCache;
use crate::scan::{META_DIR, Scan, file_system_clock, scan};
use crate::state::{Base, StatCache};
use crate::status::{PathChange, changes};

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
            return Err(ClientError::InvalidArgument(format!(
                "server {server:?} is not an http:// or https:// URL"
            )));
        }
        if project.is_empty()
            || project.len() > 128
            || !project
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ClientError::InvalidArgument(format!(
                "project id {project:?} must be 1 to 128 letters, digits, '-', '_' or '.'"
            )));
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
    /// The root dir of `scan.listing`; it and every dir under it are in the object cache.
    pub root: ObjectId,
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

    /// Scans the working copy, storing new objects and refreshing the stat cache.
    pub fn scan(&self) -> Result<(Scan, Option<String>), ClientError> {
        let base = self.base()?;
        let (stat_cache, discarded) = self.stat_cache()?;
        let clock = file_system_clock(&self.meta("clock"));
        let found = scan(&self.root, &stat_cache, &self.objects(), &base.listing)?;
        let fresh = found.stat_cache(clock);
        // Saving an unchanged cache would cost a write on every `status`.
        if fresh != stat_cache {
            fresh.save(&self.meta("stat-cache"))?;
        }
        Ok((found, discarded))
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
    pub fn snapshot(&self) -> Result<Snapshot, ClientError> {
        let (scan, _) = self.scan()?;
        let built = build_dirs(&scan.listing).map_err(|error| ClientError::InvalidObject {
            what: "the working copy's tree".to_owned(),
            detail: error.to_string(),
        })?;
        let objects = self.objects();
        for (_, dir) in &built.dirs {
            objects.put_object(dir)?;
        }
        Ok(Snapshot {
            scan,
            root: built.root,
        })
    }

    /// The changes since the base.
    pub fn status(&self) -> Result<Status, ClientError> {
        let base = self.base()?;
        let (scan, stat_cache_discarded) = self.scan()?;
        let changes = changes(&base.listing, &scan.listing, &scan.unsettled);
        Ok(Status {
            base_version: base.version,
            changes,
            pending: base.pending.into_iter().collect(),
            scan,
            stat_cache_discarded,
        })
    }

    /// [`WorkingCopy::apply`] for a version known by its root alone: its tree is read from the
    /// object cache, which must hold every dir of it (a pull stores the new ones; the base's
    /// are kept from before).
    pub fn apply_root(&self, version: u64, root: ObjectId) -> Result<ApplyReport, ClientError> {
        let listing = flatten(&self.objects(), &root).map_err(|error| match error {
            TreeError::Missing { id, .. } => ClientError::ObjectMissing { id },
            other => ClientError::InvalidObject {
                what: format!("the tree of version {version}"),
                detail: other.to_string(),
            },
        })?;
        self.apply(version, root, &listing)
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
        let base = self.base()?;
        let (found, _) = self.scan()?;
        let report = apply_tree(&self.root, &base.listing, listing, &found, &self.objects())?;
        self.set_base(&next_base(&base, version, root, listing, &report))?;
        // Keep what is still valid of the scan's stat entries, plus what this apply wrote.
        let replaced: std::collections::HashSet<&sync_protocol::tree::Path> = report
            .written
            .iter()
            .chain(&report.removed)
            .chain(&report.mode_changed)
            .collect();
        let mut cache = StatCache::new();
        for (path, entry) in &found.stats {
            if !replaced.contains(path) {
                cache.insert(path.clone(), *entry);
            }
        }
        for (path, entry) in &report.stats {
            cache.insert(path.clone(), *entry);
        }
        cache.drop_racy(file_system_clock(&self.meta("clock")));
        cache.save(&self.meta("stat-cache"))?;
        Ok(report)
    }
}

/// The base after an apply: the new version, except that held-back paths keep the previous
/// base's entry (see `Base::pending`), as long as that still makes a valid tree.
fn next_base(
    previous: &Base,
    version: u64,
    root: ObjectId,
    listing: &Listing,
    report: &ApplyReport,
) -> Base {
    let mut next = Base {
        version: Some(version),
        root,
        listing: listing.clone(),
        pending: Default::default(),
    };
    if report.held_back.is_empty() {
        return next;
    }
    let mut patched = listing.clone();
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
        return Err(ClientError::CorruptState {
            path: path.to_path_buf(),
            detail: format!(
                "layout version {} is not the {LAYOUT_VERSION} this cairn understands; \
                 update cairn",
                config.layout
            ),
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
    fn not_a_working_copy() {
        let dir = tempfile::tempdir().unwrap();
        let error = WorkingCopy::open(dir.path()).unwrap_err();
        assert!(matches!(error, ClientError::NotAWorkingCopy { .. }));
        assert!(error.to_string().contains("cairn init"));
    }
}
