//! The working copy as a tree: the dirs a push uploads, built from the base's where the files
//! did not change.

use std::collections::BTreeMap;

use sync_protocol::ObjectId;
use sync_protocol::diff::Change;
use sync_protocol::patch::patch_tree;
use sync_protocol::tree::{FileRef, Path as TreePath, build_dirs};

use super::scan::Scan;
use super::status::scan_changes;
use super::{WorkingCopy, WorkingCopyLock};
use crate::error::ClientError;
use crate::stores::index::Index;
use crate::stores::monitor::Token;
use crate::stores::object_cache::ObjectCache;
use crate::stores::state::Mtime;
use crate::timing::timed;

/// The working copy as a tree: what a push uploads.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub scan: Scan,
    /// The root dir of `scan.listing`; it and every dir under it are in the object cache (the
    /// dirs of subtrees unchanged since the base are the base's, stored when it was pushed or
    /// pulled).
    pub root: ObjectId,
    /// The file system's clock before the scan: its stat entries from then on are racy.
    pub(super) clock: Mtime,
    /// The folders walked and files stat'ed, when the monitor let the scan take only those.
    pub(super) walked: Option<Vec<TreePath>>,
    /// The monitor's token for the state the scan saw, if a monitor answered: kept in the
    /// index with the base a push of this snapshot records, so the next command still asks
    /// the monitor only for what changed since.
    pub(super) token: Option<Token>,
}

impl WorkingCopy {
    /// Scans the working copy and stores its dir objects: the tree a push would upload, with
    /// every object of it in the object cache (`sync_protocol::plan::plan_push` over
    /// [`WorkingCopy::objects`] then says which to send).
    ///
    /// Only the dirs above a changed path are built (see `build_changed_dirs`); when the scan
    /// finds exactly the base's tree, the base root is the answer and no dir is built at all. A
    /// base dir missing from the cache falls back to building and storing every dir.
    pub fn snapshot(&self) -> Result<Snapshot, ClientError> {
        let lock = self.lock()?;
        let index = self.index()?;
        self.snapshot_with(&lock, &index)
    }

    /// [`WorkingCopy::snapshot`] against the index the caller already loaded under the lock it
    /// holds, so a push reads the index once. The base is never decoded: the scan is compared
    /// with the index's records in place (decoding 8,000 entries took 2.6 ms of a 19 ms
    /// no-op sync).
    pub fn snapshot_with(
        &self,
        lock: &WorkingCopyLock,
        index: &Index,
    ) -> Result<Snapshot, ClientError> {
        let scanned = self.scan_from(index)?;
        self.record_scan(index, &scanned, Some(lock))?;
        let (scan, clock, walked, token) =
            (scanned.scan, scanned.clock, scanned.walked, scanned.token);
        let objects = self.objects();
        if !index.has_pending() && objects.contains(&index.root()) {
            if timed("compare with base", || scan.is_base_of(index)) {
                return Ok(Snapshot {
                    scan,
                    root: index.root(),
                    clock,
                    walked,
                    token,
                });
            }
            let changes = timed("diff", || scan_changes(index, &scan));
            let rebuilt = timed("build changed dirs", || {
                build_changed_dirs(&objects, index.root(), &changes)
            })?;
            if let Some(root) = rebuilt {
                return Ok(Snapshot {
                    scan,
                    root,
                    clock,
                    walked,
                    token,
                });
            }
        }
        let built =
            timed("build dirs", || build_dirs(scan.listing())).map_err(ClientError::WorkingTree)?;
        timed("store dirs", || {
            built
                .dirs
                .iter()
                .try_for_each(|(_, dir)| objects.put_object(dir).map(drop))
        })?;
        Ok(Snapshot {
            scan,
            root: built.root,
            clock,
            walked,
            token,
        })
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
    base_root: ObjectId,
    changes: &[Change],
) -> Result<Option<ObjectId>, ClientError> {
    // A path that turned from a folder into a file (or back) is removed, then added: the
    // later entry wins.
    let changes: BTreeMap<TreePath, Option<FileRef>> = changes
        .iter()
        .map(|change| match change {
            Change::Added { path, new } | Change::Modified { path, new, .. } => {
                (path.clone(), Some(*new))
            }
            Change::Removed { path, .. } => (path.clone(), None),
        })
        .collect();
    // A base dir the cache lacks, or changes that do not make a valid tree (which building
    // every dir then reports), mean the whole build.
    let Ok(patched) = patch_tree(objects, base_root, &changes) else {
        return Ok(None);
    };
    for (_, dir) in &patched.dirs {
        objects.put_object(dir)?;
    }
    Ok(Some(patched.root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::state::Base;
    use crate::working_copy::status::listing_changes;
    use sync_protocol::tree::{Listing, flatten};
    use sync_protocol::{Dir, Object};

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
            let changes = listing_changes(&base.listing, &edited);
            let rebuilt = build_changed_dirs(&objects, base.root, &changes).unwrap();
            assert_eq!(rebuilt, Some(expected), "{edited:?}");
            // Every dir of the new tree is readable from the cache.
            assert_eq!(flatten(&objects, &expected).unwrap(), edited);
        }
        // Without the base's dirs in the cache, the caller is told to build everything.
        let bare = ObjectCache::new(dir.path().join("elsewhere"));
        let edited = listing(&[("a/b/c.json", Some("1y"))]);
        let changes = listing_changes(&base.listing, &edited);
        assert_eq!(
            build_changed_dirs(&bare, base.root, &changes).unwrap(),
            None
        );
    }
}
