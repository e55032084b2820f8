//! A pull's shortcut past the full scan: check only the paths the pull changes.
//!
//! An apply needs the local state of a path only where the new tree differs from the base;
//! everywhere else the merge keeps whatever is on disk, local edits included. So when every
//! changed path is on disk exactly as the base has it (or, for a path the new tree adds, free),
//! the merge is the new tree and the scan of the other 10,000 files tells the apply nothing.
//! [`clean_paths`] checks that, path by path, with the stat cache and, where its entry is
//! missing or stale, by hashing the file, as the full scan would.
//!
//! It answers `None` (scan everything, and let the merge decide) at the first sign of anything
//! the merge would have to resolve or that only a full scan sees: a local edit, an untracked file
//! or folder where the new tree puts something, a name that clashes with an entry on disk after
//! normalization or case folding, a tracked folder gone, replaced or reached through a symlink,
//! `.cairn` or temp names, a file that cannot be read. Being conservative costs a scan; being
//! wrong would overwrite a local edit, which an apply must never do.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::PathBuf;

use sync_protocol::chunking::ObjectEncoder;
use sync_protocol::tree::{Listing, Path};

use super::read::{AtomicCounters, Candidate, ReadOutcome, read_and_store};
use super::{Scan, clash_key, entry_kind};
use crate::error::ClientError;
use crate::stores::META_DIR;
use crate::stores::atomic::is_temp_name;
use crate::stores::object_cache::ObjectCache;
use crate::stores::state::StatLookup;
use crate::working_copy::status::changed_paths;

/// What `lstat` found at a path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnDisk {
    Dir,
    Missing,
    /// A file, symlink or special file, or a path that could not be looked at.
    Other,
}

/// The paths where a new tree differs from the base, found exactly as the base has them on
/// disk: what `crate::apply::apply_clean` needs instead of a full scan.
#[derive(Debug)]
pub struct CleanPaths {
    /// In listing order.
    pub changed: Vec<Path>,
    /// The stat of each changed file that exists (its listing is empty: nothing was walked).
    pub scan: Scan,
}

/// The paths where `theirs` differs from `base`, when each is on disk as the base has it (a path
/// only `theirs` has is free), with the stat of each such file. `None` when any is not, or
/// cannot be told cheaply (see the module docs). Files whose stat misses the cache are hashed;
/// their objects land in the object cache as a scan's would.
pub fn clean_paths(
    root: &std::path::Path,
    base: &Listing,
    theirs: &Listing,
    stat_cache: &dyn StatLookup,
    objects: &ObjectCache,
) -> Result<Option<CleanPaths>, ClientError> {
    let mut checker = Checker {
        root,
        dirs: HashMap::new(),
        names: HashMap::new(),
    };
    let mut scan = Scan::default();
    let mut encoder = None;
    let changed = changed_paths(base, theirs);
    for &path in &changed {
        if !checker.ancestors_fit(path) {
            return Ok(None);
        }
        if !checker.name_is_free(path) {
            return Ok(None);
        }
        let disk = root.join(path.as_str());
        let Some(expected) = base.get(path) else {
            // A path the new tree adds must be free.
            if !matches!(fs::symlink_metadata(&disk), Err(error) if error.kind() == io::ErrorKind::NotFound)
            {
                return Ok(None);
            }
            continue;
        };
        if expected.is_dir() {
            // An empty folder of the base that the new tree drops or fills: still there
            // (anything put in it is untracked and stays), or the merge decides. A file in its
            // place would need the folder gone, which untracked content could prevent.
            if theirs.get(path).is_some() || checker.look(path) != OnDisk::Dir {
                return Ok(None);
            }
            continue;
        }
        let Ok(metadata) = fs::symlink_metadata(&disk) else {
            return Ok(None);
        };
        if !metadata.is_file() || entry_kind(&metadata) != expected.kind {
            return Ok(None);
        }
        let stat = match stat_cache.stat(path) {
            Some(cached) if cached.id == expected.id && cached.matches(&metadata) => cached,
            _ => {
                let encoder = encoder.get_or_insert_with(ObjectEncoder::new);
                let candidate = Candidate {
                    path: path.clone(),
                    disk,
                };
                match read_and_store(encoder, &candidate, objects, &AtomicCounters::default())? {
                    (ReadOutcome::Listed(found, stat), _) if &found == expected => stat,
                    _ => return Ok(None),
                }
            }
        };
        scan.insert_stat(path.clone(), stat);
    }
    Ok(Some(CleanPaths {
        changed: changed.into_iter().cloned().collect(),
        scan,
    }))
}

struct Checker<'a> {
    root: &'a std::path::Path,
    /// `lstat` of folders above changed paths, by path.
    dirs: HashMap<Path, OnDisk>,
    /// The clash keys of a folder's entries on disk and the names that have them, by folder
    /// (`None`: the root).
    names: HashMap<Option<Path>, HashMap<String, HashSet<String>>>,
}

impl Checker<'_> {
    fn look(&mut self, path: &Path) -> OnDisk {
        if let Some(found) = self.dirs.get(path) {
            return *found;
        }
        let found = match fs::symlink_metadata(self.root.join(path.as_str())) {
            Ok(metadata) if metadata.is_dir() => OnDisk::Dir,
            Err(error) if error.kind() == io::ErrorKind::NotFound => OnDisk::Missing,
            _ => OnDisk::Other,
        };
        self.dirs.insert(path.clone(), found);
        found
    }

    /// True when every folder above `path` is a real folder (the base's, or an untracked one
    /// the new tree adds files to) or, from some depth on, a folder the disk does not have yet;
    /// and no name on the way clashes with an entry on disk.
    fn ancestors_fit(&mut self, path: &Path) -> bool {
        if path
            .components()
            .any(|name| name == META_DIR || is_temp_name(std::ffi::OsStr::new(name)))
        {
            return false;
        }
        let mut ancestors = Vec::new();
        let mut parent = path.parent();
        while let Some(dir) = parent {
            parent = dir.parent();
            ancestors.push(dir);
        }
        for dir in ancestors.iter().rev() {
            match self.look(dir) {
                OnDisk::Dir if self.name_is_free(dir) => {}
                // Missing, whether new or deleted locally (the merge adds the new tree's files
                // to a folder deleted on one side, as this will).
                OnDisk::Missing => return self.name_is_free(dir),
                _ => return false,
            }
        }
        true
    }

    /// True when no entry of `path`'s folder on disk has another name with the same clash key
    /// (equal after NFC normalization or case folding): on a case-insensitive or normalizing
    /// file system, `lstat` of the path could otherwise find that other entry. The folder must
    /// exist or be about to.
    fn name_is_free(&mut self, path: &Path) -> bool {
        let parent = path.parent();
        let names = match self.names.get(&parent) {
            Some(names) => names,
            None => {
                let folder: PathBuf = match &parent {
                    Some(parent) => self.root.join(parent.as_str()),
                    None => self.root.to_path_buf(),
                };
                let mut names: HashMap<String, HashSet<String>> = HashMap::new();
                match fs::read_dir(&folder) {
                    Ok(entries) => {
                        for entry in entries {
                            let Ok(entry) = entry else { return false };
                            let name = entry.file_name();
                            let Some(key) = clash_key(&name) else {
                                continue;
                            };
                            names
                                .entry(key)
                                .or_default()
                                .insert(name.to_string_lossy().into_owned());
                        }
                    }
                    // A folder the pull creates has no entries yet.
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(_) => return false,
                }
                self.names.entry(parent).or_insert(names)
            }
        };
        let name = path.file_name();
        match clash_key(&std::ffi::OsString::from(name)) {
            Some(key) => names
                .get(&key)
                .is_none_or(|taken| taken.iter().all(|taken| taken == name)),
            None => false,
        }
    }
}
