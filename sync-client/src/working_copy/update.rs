//! Bringing the working copy to a new version: its tree read from the object cache, merged with
//! the local edits into the folder (`apply`), then recorded as the base.

use sync_protocol::ObjectId;
use sync_protocol::diff::{apply_changes, diff};
use sync_protocol::tree::{Listing, TreeError, build_dirs, flatten};

use super::WorkingCopy;
use super::apply::{ApplyReport, apply_clean, apply_tree};
use super::scan::{CleanPaths, Scan, clean_paths};
use crate::error::ClientError;
use crate::stores::index::Index;
use crate::stores::lock::WorkingCopyLock;
use crate::stores::monitor::Changes;
use crate::stores::state::{Base, StatCache, StatEntry};
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
        let index = self.index()?;
        let base = self.base_of(&index)?;
        self.apply_root_locked(&lock, &base, &index, version, root)
    }

    /// [`WorkingCopy::apply_root`] under a lock the caller holds, with the index and its base
    /// it loaded under that lock.
    pub fn apply_root_locked(
        &self,
        _lock: &WorkingCopyLock,
        base: &Base,
        index: &Index,
        version: u64,
        root: ObjectId,
    ) -> Result<ApplyReport, ClientError> {
        let listing = timed("new tree", || self.tree_of(base, version, &root))?;
        self.apply_locked(base, index, version, root, listing)
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
        let index = self.index()?;
        let base = self.base_of(&index)?;
        self.apply_locked(&base, &index, version, root, listing.clone())
    }

    /// [`WorkingCopy::apply`] with the lock held and the base loaded under it.
    ///
    /// When every path the new tree changes is as the base has it on disk, only those paths are
    /// looked at ([`super::scan::clean_paths`]); otherwise the whole working copy is scanned and
    /// merged.
    fn apply_locked(
        &self,
        base: &Base,
        index: &Index,
        version: u64,
        root: ObjectId,
        listing: Listing,
    ) -> Result<ApplyReport, ClientError> {
        let objects = self.objects();
        let clean = if base.pending.is_empty() {
            timed("check changed paths", || {
                clean_paths(&self.root, &base.listing, &listing, index, &objects)
            })?
        } else {
            None
        };
        // The stat entries still valid before this apply writes anything: the scan's, or, when
        // nothing was walked, the index's (`None`; they were not racy when it was written, and
        // a stat that changed since then simply misses). The apply writes files, so the
        // monitor's token would not vouch for what it leaves: the scan walks everything.
        let (found, kept) = match clean {
            Some(clean) => (Found::Clean(clean), None),
            None => {
                let clock = self.state.file_system_clock();
                let scanned = self.scan_changes(index, Changes::Unavailable, clock)?;
                let mut kept = StatCache::new();
                for (path, entry) in scanned.scan.stat_entries(scanned.clock) {
                    if let Ok(path) = sync_protocol::tree::Path::new(path) {
                        kept.insert(path, entry);
                    }
                }
                (Found::Scanned(scanned.scan), Some(kept))
            }
        };
        let report = timed("apply tree", || match &found {
            Found::Clean(clean) => {
                apply_clean(&self.root, &base.listing, &listing, clean, &objects)
            }
            Found::Scanned(scan) => apply_tree(&self.root, &base.listing, &listing, scan, &objects),
        })?;
        let next = next_base(base, version, root, listing, &report);
        // What this apply wrote is added to the stat data, judged by a clock read now; what it
        // replaced or removed is forgotten. The index is written once, with the new base.
        let mut written = StatCache::new();
        for (path, entry) in &report.stats {
            written.insert(path.clone(), *entry);
        }
        written.drop_racy(self.state.file_system_clock());
        let mut cache = kept.unwrap_or_else(|| {
            let mut cache = StatCache::new();
            for (path, entry) in index.stat_entries() {
                if let Ok(path) = sync_protocol::tree::Path::new(path) {
                    cache.insert(path, entry);
                }
            }
            cache
        });
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
        let mut stats: Vec<(&str, StatEntry)> = cache
            .iter()
            .map(|(path, entry)| (path.as_str(), *entry))
            .collect();
        stats.sort_unstable_by(|a, b| a.0.cmp(b.0));
        timed("save index", || self.state.set_base(&next, &stats))?;
        free_in_background((next, cache));
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
