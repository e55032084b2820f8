//! Bringing the working copy to a new version: its tree read from the object cache, merged with
//! the local edits into the folder (`apply`), then recorded as the base.

use sync_protocol::ObjectId;
use sync_protocol::diff::{apply_changes, diff};
use sync_protocol::tree::{Listing, TreeError, build_dirs, flatten};

use super::apply::{ApplyReport, apply_clean, apply_tree};
use super::scan::{CleanPaths, Scan, clean_paths};
use super::{WorkingCopy, stat_cache_pays};
use crate::error::ClientError;
use crate::stores::LoadedStatCache;
use crate::stores::lock::WorkingCopyLock;
use crate::stores::state::{Base, StatCache};
use crate::timing::{free_in_background, timed};

/// What an apply knows of the disk before it starts.
enum Found {
    /// Only the changed paths were looked at, and they are as the base has them.
    Clean(CleanPaths),
    Scanned(Scan),
}

impl WorkingCopy {
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
    /// local edits in (see [`super::apply`]); then records it as the base. Every object of the
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
    /// looked at ([`super::scan::clean_paths`]); otherwise the whole working copy is scanned and
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
        written.drop_racy(self.state.file_system_clock());
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
        timed("save stat cache", || self.state.save_stat_cache(&cache))?;
        Ok(report)
    }
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
