//! Writing a new tree into the working copy: what a pull does once it has the objects.
//!
//! [`apply_tree`] merges three listings with `sync_protocol::merge::merge`: the base (last
//! synced), the local scan (ours) and the new tree (theirs), and then changes the disk from the
//! scan to the merged tree. Its one promise: **a local edit that was not pushed is never
//! overwritten or deleted.** The merge already keeps every edit (at its path or in a conflict copy
//! beside it); this module checks that promise again before each step instead of trusting it:
//!
//! - a local file that differs from the base is only replaced or removed once its content has a
//!   second name in the merged tree (its conflict copy), made first by hard-linking the file
//!   there (no copy, no window where the content exists nowhere);
//! - before replacing or removing any file, its stat is compared with the scan's; a file edited
//!   since the scan is left alone and reported;
//! - files and folders that are not listed (ignored, symlinks, unreadable) are never replaced: new
//!   files are renamed into place without clobbering, which fails if the name is taken;
//! - every file is written atomically (temp file, fsync, rename, fsync folder). Into a working
//!   copy with no listed file (a clone), where no write can replace anything, the files are
//!   written in parallel and not fsynced one by one: one `syncfs` makes them all durable before
//!   the base is recorded (Linux; elsewhere each is fsynced).
//!
//! Every object needed is checked to be in the object cache before the disk is touched, so a
//! missing object fails the whole apply up front rather than halfway.
//!
//! Order: conflict copies of local edits, then removals (files, then emptied folders, deepest
//! first), then writes and new folders. A crash at any point leaves each file whole, old or new,
//! and every local edit on disk; rerunning the pull converges.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path as FsPath, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use sync_protocol::merge::{Conflict, ConflictKind, MergeOutcome, merge};
use sync_protocol::tree::{FileRef, Listing, Path};
use sync_protocol::{EntryKind, Object, ObjectId, ObjectKind};

use super::content_merge::{ContentMerges, merge_contents};
use super::scan::{CleanPaths, Scan};
use crate::error::{ClientError, io_error};
use crate::stores::atomic::{
    CAN_SYNC_FILE_SYSTEM, Durability, Mode, Replace, is_already_exists, sync_dir, sync_file_system,
    write_atomic_with,
};
use crate::stores::object_cache::ObjectCache;
use crate::stores::state::{Mtime, StatEntry};
use crate::timing::timed;

/// Threads that write a clone's files: creating a file on a disk is mostly waiting.
const WRITE_THREADS: usize = 16;

/// Why a path was left as it is on disk rather than brought to the merged tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HeldBackReason {
    /// The local file changed after the scan; it is left for the next pull.
    ChangedSinceScan,
    /// The local file could not be read during the scan; it is left untouched.
    Unreadable,
    /// Something that is not listed (ignored file, symlink, a folder that could not be emptied)
    /// takes the name.
    Occupied,
    /// The local edit had nowhere safe to go (no conflict copy in the merged tree), so the file
    /// was not replaced. Defensive: the merge always provides one.
    LocalEditKept,
    /// The local edit's conflict copy could not be made.
    CopyFailed { error: String },
}

/// A path the apply left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldBack {
    #[serde(serialize_with = "serialize_path")]
    pub path: Path,
    pub reason: HeldBackReason,
}

pub(crate) fn serialize_path<S: serde::Serializer>(
    path: &Path,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(path.as_str())
}

/// What an apply changed on disk.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// Files written (new or replaced) from the object cache.
    pub written: Vec<Path>,
    /// Executable bit changed in place.
    pub mode_changed: Vec<Path>,
    /// Files removed.
    pub removed: Vec<Path>,
    /// Local edits given a second name (their conflict copy): `(from, to)`.
    pub copied: Vec<(Path, Path)>,
    pub created_dirs: Vec<Path>,
    pub removed_dirs: Vec<Path>,
    /// Conflicts the merge resolved (both sides changed a path).
    pub conflicts: Vec<Conflict>,
    /// Files both sides changed whose contents merged cleanly (no conflict copy).
    pub content_merged: Vec<Path>,
    /// Files both sides changed in the same place: `(path, the merge with markers)`, beside
    /// the conflict copy of the local version.
    pub marked: Vec<(Path, Path)>,
    /// Paths left as they were, and why.
    pub held_back: Vec<HeldBack>,
    /// Stat entries of the files this apply wrote or copied, for the stat cache.
    pub stats: HashMap<Path, StatEntry>,
}

impl ApplyReport {
    /// True when the disk now matches the merged tree.
    pub fn is_complete(&self) -> bool {
        self.held_back.is_empty()
    }
}

/// Brings the working copy at `root` from `scan` (the disk as last scanned) to the merge of
/// `scan` into `theirs`, with `base` as the common ancestor. See the module docs.
///
/// `scan` is a full scan; see [`apply_clean`] for the shortcut when every path that changes is
/// untouched locally.
pub fn apply_tree(
    root: &FsPath,
    base: &Listing,
    theirs: &Listing,
    scan: &Scan,
    objects: &ObjectCache,
) -> Result<ApplyReport, ClientError> {
    let local = scan.listing();
    // Unreadable local paths are presented to the merge as unchanged, so it does not mistake
    // them for deletions; the disk steps below never touch them.
    let mut ours = local.clone();
    for (path, file_ref) in base {
        if scan.is_unsettled(path) && !ours.contains_key(path) {
            ours.insert(path.clone(), *file_ref);
        }
    }
    // Without a local change the three-way merge is theirs, with no conflict; skipping it saves
    // most of a small pull's time on a large project.
    let (merged, conflicts, content) = if &ours == base {
        (theirs.clone(), Vec::new(), ContentMerges::default())
    } else {
        let MergeOutcome {
            mut merged,
            mut conflicts,
        } = merge(base, &ours, theirs)?;
        // Files both sides changed: their contents merged where they can be.
        let content = merge_contents(base, &ours, theirs, &mut merged, &mut conflicts, objects)?;
        (merged, conflicts, content)
    };
    let mut report = ApplyReport {
        conflicts,
        content_merged: content.merged.iter().cloned().collect(),
        marked: content.marked,
        ..ApplyReport::default()
    };
    let mut applier = Applier {
        dirty_dirs: BTreeSet::new(),
        linked: BTreeSet::new(),
        content_merged: content.merged,
        root,
        scan,
        objects,
        report: &mut report,
    };
    applier.run(base, local, &merged, None)?;
    Ok(report)
}

/// [`apply_tree`] for a working copy that `super::scan::clean_paths` found exactly as the base
/// at every path where `theirs` differs from it (`clean.changed`): the merge is `theirs`, and
/// only those paths and the folders above them are looked at, so a one-file pull into 10,000
/// files costs one file's work.
pub fn apply_clean(
    root: &FsPath,
    base: &Listing,
    theirs: &Listing,
    clean: &CleanPaths,
    objects: &ObjectCache,
) -> Result<ApplyReport, ClientError> {
    let mut report = ApplyReport::default();
    let mut applier = Applier {
        dirty_dirs: BTreeSet::new(),
        linked: BTreeSet::new(),
        content_merged: BTreeSet::new(),
        root,
        scan: &clean.scan,
        objects,
        report: &mut report,
    };
    applier.run(base, base, theirs, Some(&clean.changed))?;
    Ok(report)
}

struct Applier<'a> {
    /// Folders whose entries changed and still need an fsync.
    dirty_dirs: BTreeSet<PathBuf>,
    /// Files that were given a second name by a hard link: they share their inode (and mode)
    /// with their conflict copy, so they are replaced, never changed in place.
    linked: BTreeSet<Path>,
    /// Files whose local edit is part of their merged content (`super::content_merge`): they
    /// are replaced without a conflict copy.
    content_merged: BTreeSet<Path>,
    root: &'a FsPath,
    scan: &'a Scan,
    objects: &'a ObjectCache,
    report: &'a mut ApplyReport,
}

fn files(listing: &Listing) -> impl Iterator<Item = (&Path, &FileRef)> {
    listing.iter().filter(|(_, file_ref)| !file_ref.is_dir())
}

/// The folders `listing` implies (see [`implied_dirs`]) among the paths in `scope` and the
/// folders above them; all of them when there is no scope. Outside the scope nothing changes,
/// so a folder there is implied by both sides of an apply or by neither.
fn dirs_in_scope(listing: &Listing, scope: Option<&[Path]>) -> BTreeSet<Path> {
    let Some(scope) = scope else {
        return implied_dirs(listing);
    };
    let mut candidates = BTreeSet::new();
    for path in scope {
        let mut current = Some(path.clone());
        while let Some(dir) = current {
            current = dir.parent();
            if !candidates.insert(dir) {
                break;
            }
        }
    }
    candidates
        .into_iter()
        .filter(|dir| {
            listing.get(dir).is_some_and(FileRef::is_dir)
                || sync_protocol::tree::has_descendant(listing, dir)
        })
        .collect()
}

/// Every folder a listing implies: parents of entries, and its empty-dir entries.
fn implied_dirs(listing: &Listing) -> BTreeSet<Path> {
    let mut dirs = BTreeSet::new();
    for (path, file_ref) in listing {
        if file_ref.is_dir() {
            dirs.insert(path.clone());
        }
        let mut parent = path.parent();
        while let Some(dir) = parent {
            if !dirs.insert(dir.clone()) {
                break;
            }
            parent = dir.parent();
        }
    }
    dirs
}

impl Applier<'_> {
    fn disk(&self, path: &Path) -> PathBuf {
        self.scan.disk_names.resolve(self.root, path)
    }

    fn hold(&mut self, path: &Path, reason: HeldBackReason) {
        self.report.held_back.push(HeldBack {
            path: path.clone(),
            reason,
        });
    }

    /// True when the file at `path` is still as the scan saw it.
    fn unchanged_since_scan(&self, path: &Path) -> bool {
        let Some(stat) = self.scan.stat(path) else {
            return false;
        };
        fs::symlink_metadata(self.disk(path))
            .is_ok_and(|metadata| metadata.is_file() && stat.matches(&metadata))
    }

    /// Changes the disk from `local` to `merged`. With a `scope`, only those paths can differ
    /// between the two (and only they and the folders above them are looked at).
    fn run(
        &mut self,
        base: &Listing,
        local: &Listing,
        merged: &Listing,
        scope: Option<&[Path]>,
    ) -> Result<(), ClientError> {
        // Plan: which files change, which local edits need a conflict copy first.
        let mut to_write: BTreeSet<Path> = BTreeSet::new();
        let mut to_remove: BTreeSet<Path> = BTreeSet::new();
        let mut copies: Vec<(Path, Path)> = Vec::new();
        let mut claimed: BTreeSet<Path> = BTreeSet::new();
        let paths: BTreeSet<&Path> = match scope {
            None => files(local).chain(files(merged)).map(|(p, _)| p).collect(),
            Some(scope) => scope.iter().collect(),
        };
        for path in paths {
            let current = local.get(path).filter(|file_ref| !file_ref.is_dir());
            let wanted = merged.get(path).filter(|file_ref| !file_ref.is_dir());
            if current == wanted {
                continue;
            }
            if self.scan.is_unsettled(path) {
                self.hold(path, HeldBackReason::Unreadable);
                continue;
            }
            if let Some(current) = current
                && base.get(path) != Some(current)
                && !self.content_merged.contains(path)
            {
                // A local edit: it must exist elsewhere in the merged tree before this name
                // changes, at the place the merge moved it to.
                let destination = self.local_copy_of(path, current, local, merged, &claimed);
                match destination {
                    Some(destination) => {
                        claimed.insert(destination.clone());
                        copies.push((path.clone(), destination));
                    }
                    None => {
                        self.hold(path, HeldBackReason::LocalEditKept);
                        continue;
                    }
                }
            }
            match wanted {
                Some(_) => to_write.insert(path.clone()),
                None => to_remove.insert(path.clone()),
            };
        }
        for destination in &claimed {
            to_write.remove(destination);
        }

        // Every object the writes need, before anything on disk changes.
        // (A change of the executable bit alone may need them too: a file that shares its inode
        // with a conflict copy is rewritten rather than changed in place.)
        for path in &to_write {
            if let Some(file_ref) = merged.get(path) {
                self.check_objects(file_ref)?;
            }
        }

        // 1. Second names for local edits that are about to be replaced or removed.
        let mut blocked: BTreeSet<Path> = BTreeSet::new();
        for (from, to) in copies {
            match self.copy_local_edit(&from, &to, merged) {
                Ok(true) => {
                    self.linked.insert(from.clone());
                    if let Some(stat) = self.scan.stat(&from) {
                        self.report.stats.insert(to.clone(), stat);
                    }
                    self.report.copied.push((from, to));
                }
                Ok(false) => {
                    blocked.insert(from);
                }
                Err(error) => {
                    // Disk full and the like end the apply: nothing has been lost so far.
                    return Err(error);
                }
            }
        }
        to_write.retain(|path| !blocked.contains(path));
        to_remove.retain(|path| !blocked.contains(path));

        // 2. Removals: files, then folders the merged tree no longer has, deepest first.
        for path in &to_remove {
            if !self.unchanged_since_scan(path) {
                self.hold(path, HeldBackReason::ChangedSinceScan);
                continue;
            }
            let disk = self.disk(path);
            match fs::remove_file(&disk) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(ClientError::io("remove", disk, error)),
            }
            if let Some(parent) = disk.parent() {
                self.dirty_dirs.insert(parent.to_path_buf());
            }
            self.report.removed.push(path.clone());
        }
        let merged_dirs = dirs_in_scope(merged, scope);
        let local_dirs = dirs_in_scope(local, scope);
        let mut gone: Vec<&Path> = local_dirs.difference(&merged_dirs).collect();
        gone.sort_by_key(|path| std::cmp::Reverse(path.depth()));
        for dir in gone {
            if self.scan.is_unsettled(dir) {
                continue;
            }
            let disk = self.disk(dir);
            // A folder that still holds something unlisted (ignored files) stays.
            if fs::remove_dir(&disk).is_ok() {
                self.report.removed_dirs.push(dir.clone());
                if let Some(parent) = disk.parent() {
                    self.dirty_dirs.insert(parent.to_path_buf());
                }
            }
        }

        // 3. Writes, then empty folders. With no listed file on disk (a clone, or a first pull
        // into an empty folder) no write can replace anything: they go in parallel, without an
        // fsync each, and one sync of the file system below makes them durable together.
        let fresh = CAN_SYNC_FILE_SYSTEM && files(local).next().is_none();
        if fresh {
            timed("write files", || self.write_new_files(&to_write, merged))?;
        } else {
            for path in &to_write {
                let Some(wanted) = merged.get(path) else {
                    continue;
                };
                self.write_file(path, local.get(path), wanted)?;
            }
        }
        let new_dirs: Vec<(&Path, &FileRef)> = match scope {
            None => merged.iter().collect(),
            Some(scope) => scope
                .iter()
                .filter_map(|path| merged.get_key_value(path))
                .collect(),
        };
        for (path, file_ref) in new_dirs {
            if file_ref.is_dir() && !local_dirs.contains(path) {
                let disk = self.disk(path);
                match fs::create_dir_all(&disk) {
                    Ok(()) => self.report.created_dirs.push(path.clone()),
                    Err(_) => self.hold(path, HeldBackReason::Occupied),
                }
                if let Some(parent) = disk.parent() {
                    self.dirty_dirs.insert(parent.to_path_buf());
                }
            }
        }
        // Every write, rename and removal is durable before the caller records the new base.
        let dirty_dirs = std::mem::take(&mut self.dirty_dirs);
        if fresh {
            timed("sync the file system", || sync_file_system(self.root))?;
        } else {
            for dir in dirty_dirs {
                if dir.is_dir() {
                    sync_dir(&dir)?;
                }
            }
        }
        Ok(())
    }

    /// Writes `paths` of `merged`, none of which is a listed file on disk, on rayon's threads,
    /// each atomically (temp file renamed into place, never over a taken name) but not fsynced:
    /// the caller syncs the file system before the base is recorded. Until then the server
    /// holds every byte, and a crash leaves files that the next pull finds equal to its tree,
    /// or (power lost before the sync) damaged ones it keeps as local edits, with conflict
    /// copies.
    fn write_new_files(
        &mut self,
        paths: &BTreeSet<Path>,
        merged: &Listing,
    ) -> Result<(), ClientError> {
        // Folders first, each once, so the threads only create files.
        let parents: BTreeSet<PathBuf> = paths
            .iter()
            .filter_map(|path| Some(self.disk(path).parent()?.to_path_buf()))
            .collect();
        let unusable: BTreeSet<PathBuf> = parents
            .into_iter()
            .filter(|parent| fs::create_dir_all(parent).is_err())
            .collect();
        let this = &*self;
        // A file in a folder that could not be made is held back like one whose name is taken.
        type Written<'p> = Vec<(&'p Path, &'p FileRef, Result<fs::Metadata, ClientError>)>;
        let write_all = || -> Written<'_> {
            paths
                .par_iter()
                .filter_map(|path| merged.get_key_value(path))
                .map(|(path, wanted)| {
                    let disk = this.disk(path);
                    let result = match disk.parent() {
                        Some(parent) if unusable.contains(parent) => Err(ClientError::io(
                            "create",
                            disk,
                            io::Error::from(io::ErrorKind::AlreadyExists),
                        )),
                        _ => write_contents(this.objects, &disk, wanted, None, Durability::Cache),
                    };
                    (path, wanted, result)
                })
                .collect()
        };
        // A file's creation on a disk mostly waits (for the journal, the folder's lock), so
        // more writers than cores keep the disk busy; where none can be made, rayon's own.
        let written = match rayon::ThreadPoolBuilder::new()
            .num_threads(WRITE_THREADS)
            .thread_name(|n| format!("cairn-write-{n}"))
            .build()
        {
            Ok(pool) => pool.install(write_all),
            Err(_) => write_all(),
        };
        for (path, wanted, result) in written {
            match result {
                Ok(metadata) => {
                    self.report
                        .stats
                        .insert(path.clone(), stat_entry(&metadata, wanted));
                    self.report.written.push(path.clone());
                }
                Err(error) if is_already_exists(&error) => {
                    self.hold(path, HeldBackReason::Occupied)
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Where the merge put the local version of `path` (whose content is `current`) when it is
    /// not `path` itself: the conflict copy the merge reported for the path or for a folder above
    /// it; failing that, any free path of the merged tree that wants exactly this content.
    fn local_copy_of(
        &self,
        path: &Path,
        current: &FileRef,
        local: &Listing,
        merged: &Listing,
        claimed: &BTreeSet<Path>,
    ) -> Option<Path> {
        let usable = |candidate: &Path| {
            candidate != path
                && merged.get(candidate) == Some(current)
                && !local.contains_key(candidate)
                && !claimed.contains(candidate)
        };
        for conflict in &self.report.conflicts {
            let Some(copy) = conflict.local_copy() else {
                continue;
            };
            let candidate = if &conflict.path == path {
                Some(copy.clone())
            } else {
                path.as_str()
                    .strip_prefix(conflict.path.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .and_then(|rest| Path::new(&format!("{copy}/{rest}")).ok())
            };
            if let Some(candidate) = candidate
                && usable(&candidate)
            {
                return Some(candidate);
            }
        }
        merged.keys().find(|candidate| usable(candidate)).cloned()
    }

    fn check_objects(&self, file_ref: &FileRef) -> Result<(), ClientError> {
        match file_ref.target {
            ObjectKind::Chunk => {
                if !self.objects.contains(&file_ref.id) {
                    return Err(ClientError::ObjectMissing { id: file_ref.id });
                }
            }
            ObjectKind::File => {
                let Object::File(file) = self.objects.object(&file_ref.id, ObjectKind::File)?
                else {
                    return Err(ClientError::ObjectMissing { id: file_ref.id });
                };
                for chunk in file.chunks() {
                    if !self.objects.contains(&chunk.id) {
                        return Err(ClientError::ObjectMissing { id: chunk.id });
                    }
                }
            }
            ObjectKind::Dir => {}
        }
        Ok(())
    }

    /// Gives the local file at `from` the name `to` as well. Returns false (and reports) when it
    /// could not, in which case `from` must not be touched.
    fn copy_local_edit(
        &mut self,
        from: &Path,
        to: &Path,
        merged: &Listing,
    ) -> Result<bool, ClientError> {
        if !self.unchanged_since_scan(from) {
            self.hold(from, HeldBackReason::ChangedSinceScan);
            return Ok(false);
        }
        let from_disk = self.disk(from);
        let to_disk = self.disk(to);
        if let Some(parent) = to_disk.parent()
            && let Err(error) = fs::create_dir_all(parent)
        {
            self.hold(
                from,
                HeldBackReason::CopyFailed {
                    error: error.to_string(),
                },
            );
            return Ok(false);
        }
        match fs::hard_link(&from_disk, &to_disk) {
            Ok(()) => {
                if let Some(parent) = to_disk.parent() {
                    sync_dir(parent)?;
                }
                Ok(true)
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                self.hold(to, HeldBackReason::Occupied);
                self.hold(from, HeldBackReason::LocalEditKept);
                Ok(false)
            }
            // No hard links here (some network or FAT mounts): write the copy from the objects
            // the scan stored.
            Err(_) => {
                let Some(wanted) = merged.get(to) else {
                    self.hold(from, HeldBackReason::LocalEditKept);
                    return Ok(false);
                };
                if self.check_objects(wanted).is_err() {
                    self.hold(from, HeldBackReason::LocalEditKept);
                    return Ok(false);
                }
                match self.write_contents(&to_disk, wanted, None) {
                    Ok(_) => Ok(true),
                    Err(error) if is_already_exists(&error) => {
                        self.hold(to, HeldBackReason::Occupied);
                        self.hold(from, HeldBackReason::LocalEditKept);
                        Ok(false)
                    }
                    Err(error) => Err(error),
                }
            }
        }
    }

    fn write_file(
        &mut self,
        path: &Path,
        current: Option<&FileRef>,
        wanted: &FileRef,
    ) -> Result<(), ClientError> {
        let disk = self.disk(path);
        let current = current.filter(|file_ref| !file_ref.is_dir());
        if current.is_some() && !self.unchanged_since_scan(path) {
            self.hold(path, HeldBackReason::ChangedSinceScan);
            return Ok(());
        }
        if let Some(parent) = disk.parent()
            && fs::create_dir_all(parent).is_err()
        {
            self.hold(path, HeldBackReason::Occupied);
            return Ok(());
        }
        let existing_mode = current
            .and_then(|_| fs::symlink_metadata(&disk).ok())
            .map(|metadata| metadata.permissions().mode() & 0o7777);
        // Only the executable bit changed: flip it in place, the content is already there.
        if let (Some(current), Some(mode)) = (current, existing_mode)
            && !self.linked.contains(path)
            && current.id == wanted.id
            && current.size == wanted.size
        {
            let mode = with_executable(mode, wanted.kind == EntryKind::Executable);
            fs::set_permissions(&disk, fs::Permissions::from_mode(mode))
                .map_err(io_error("set permissions of", &disk))?;
            self.report.mode_changed.push(path.clone());
            if let Ok(metadata) = fs::symlink_metadata(&disk) {
                self.report
                    .stats
                    .insert(path.clone(), stat_entry(&metadata, wanted));
            }
            return Ok(());
        }
        match self.write_contents(&disk, wanted, existing_mode) {
            Ok(metadata) => {
                self.report
                    .stats
                    .insert(path.clone(), stat_entry(&metadata, wanted));
                self.report.written.push(path.clone());
                Ok(())
            }
            Err(error) if is_already_exists(&error) => {
                self.hold(path, HeldBackReason::Occupied);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// [`write_contents`], fsynced; the folder is fsynced once at the end of the apply.
    fn write_contents(
        &mut self,
        disk: &FsPath,
        wanted: &FileRef,
        existing_mode: Option<u32>,
    ) -> Result<fs::Metadata, ClientError> {
        let metadata = write_contents(
            self.objects,
            disk,
            wanted,
            existing_mode,
            Durability::FileOnly,
        )?;
        if let Some(parent) = disk.parent() {
            self.dirty_dirs.insert(parent.to_path_buf());
        }
        Ok(metadata)
    }
}

/// Writes the file `wanted` at `disk` from the object cache, atomically, as durable as
/// `durability` says. Replaces only when `existing_mode` says a listed file is there; otherwise
/// refuses to take a used name.
fn write_contents(
    objects: &ObjectCache,
    disk: &FsPath,
    wanted: &FileRef,
    existing_mode: Option<u32>,
    durability: Durability,
) -> Result<fs::Metadata, ClientError> {
    let executable = wanted.kind == EntryKind::Executable;
    let (mode, replace) = match existing_mode {
        Some(mode) => (
            Mode::Exact(with_executable(mode, executable)),
            Replace::Overwrite,
        ),
        None => (
            Mode::Umask(if executable { 0o777 } else { 0o666 }),
            Replace::NoClobber,
        ),
    };
    write_atomic_with(disk, mode, replace, durability, |file| {
        let mut writer = io::BufWriter::new(file);
        write_file_contents(objects, wanted, &mut writer, disk)?;
        writer.flush().map_err(io_error("write", disk))?;
        Ok(())
    })
}

fn with_executable(mode: u32, executable: bool) -> u32 {
    if executable {
        // Execute wherever read is allowed, as `chmod +x` under a usual umask.
        mode | ((mode & 0o444) >> 2)
    } else {
        mode & !0o111
    }
}

fn stat_entry(metadata: &fs::Metadata, file_ref: &FileRef) -> StatEntry {
    StatEntry {
        size: metadata.len(),
        mtime: Mtime::of(metadata),
        inode: metadata.ino(),
        target: file_ref.target,
        id: file_ref.id,
    }
}

/// Streams a file's content out of the object cache, verifying every object on the way.
pub fn write_file_contents(
    objects: &ObjectCache,
    file_ref: &FileRef,
    out: &mut impl Write,
    disk: &FsPath,
) -> Result<(), ClientError> {
    let mut write_chunk = |id: &ObjectId| -> Result<(), ClientError> {
        match objects.object(id, ObjectKind::Chunk)? {
            Object::Chunk(bytes) => out.write_all(&bytes).map_err(io_error("write", disk)),
            _ => Err(ClientError::ObjectMissing { id: *id }),
        }
    };
    match file_ref.target {
        ObjectKind::Chunk => write_chunk(&file_ref.id),
        ObjectKind::File => match objects.object(&file_ref.id, ObjectKind::File)? {
            Object::File(file) => {
                for chunk in file.chunks() {
                    write_chunk(&chunk.id)?;
                }
                Ok(())
            }
            _ => Err(ClientError::ObjectMissing { id: file_ref.id }),
        },
        ObjectKind::Dir => Ok(()),
    }
}

/// Conflicts in a form fit for `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct ConflictSummary {
    pub path: String,
    pub kind: String,
    pub local_at: Option<String>,
    pub remote_at: Option<String>,
}

impl From<&Conflict> for ConflictSummary {
    fn from(conflict: &Conflict) -> Self {
        let kind = match &conflict.kind {
            ConflictKind::BothModified => "both_modified".to_owned(),
            ConflictKind::ModifiedDeleted => "modified_locally_deleted_remotely".to_owned(),
            ConflictKind::DeletedModified => "deleted_locally_modified_remotely".to_owned(),
            ConflictKind::FileDir => "file_and_folder".to_owned(),
            ConflictKind::CaseClash { with } => format!("case_clash_with:{with}"),
            other => format!("{other:?}"),
        };
        Self {
            path: conflict.path.to_string(),
            kind,
            local_at: conflict.ours_at.as_ref().map(ToString::to_string),
            remote_at: conflict.theirs_at.as_ref().map(ToString::to_string),
        }
    }
}

/// Summary counts, for output.
pub fn summary(report: &ApplyReport) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("written", report.written.len()),
        ("mode_changed", report.mode_changed.len()),
        ("removed", report.removed.len()),
        ("conflict_copies", report.copied.len()),
        ("conflicts", report.conflicts.len()),
        ("content_merged", report.content_merged.len()),
        ("held_back", report.held_back.len()),
    ])
}
