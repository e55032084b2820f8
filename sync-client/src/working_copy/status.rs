//! What changed in the working copy since the base: a walk of two sorted listings.

use std::collections::BTreeSet;

use serde::Serialize;
use sync_protocol::diff::Change;
use sync_protocol::tree::{FileRef, Listing, Path, has_descendant, is_under};

use super::scan::Scan;
use crate::stores::index::Index;

/// How a path changed relative to the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Modified,
    Removed,
    /// Exists but could not be read (see `scan::SkipReason`): neither synced nor removed.
    Unreadable,
}

impl ChangeKind {
    /// The one-letter code of `cairn status`.
    pub fn letter(self) -> char {
        match self {
            Self::Added => 'A',
            Self::Modified => 'M',
            Self::Removed => 'D',
            Self::Unreadable => '?',
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathChange {
    #[serde(serialize_with = "serialize_path")]
    pub path: Path,
    pub change: ChangeKind,
}

fn serialize_path<S: serde::Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(path.as_str())
}

/// The changes from `base` to `scanned`, sorted by path.
///
/// An empty folder that gained files is not reported as removed (its files are added), nor is a
/// folder that lost its last file reported as added (the file is removed). Paths that are
/// `unsettled` (or under an unsettled folder) are reported as unreadable, never as removed.
pub fn changes(base: &Listing, scanned: &Listing, unsettled: &BTreeSet<Path>) -> Vec<PathChange> {
    changes_of(
        base.iter().map(|(path, entry)| (path.as_str(), *entry)),
        |dir| has_descendant(base, dir),
        scanned,
        unsettled,
    )
}

/// [`changes`] from the base records of the index, walked in order beside the scan: the base
/// is never decoded into a map.
pub fn changes_against_index(
    index: &Index,
    scanned: &Listing,
    unsettled: &BTreeSet<Path>,
) -> Vec<PathChange> {
    changes_of(
        base_entries(index),
        |dir| index.base_has_descendant(dir.as_str()),
        scanned,
        unsettled,
    )
}

/// The merge walk of `changes`: `base` yields the base's entries in path order.
fn changes_of<'a>(
    base: impl Iterator<Item = (&'a str, FileRef)>,
    base_has_descendant: impl Fn(&Path) -> bool,
    scanned: &Listing,
    unsettled: &BTreeSet<Path>,
) -> Vec<PathChange> {
    let is_unsettled = |path: &Path| {
        unsettled
            .iter()
            .any(|root| root == path || is_under(path, root))
    };
    let mut out = Vec::new();
    let entries = scanned.iter().map(|(path, entry)| (path.as_str(), *entry));
    for_each_difference(base, entries, |path, before, after| {
        if let Some(change) = classify(
            &path,
            before,
            after,
            &base_has_descendant,
            scanned,
            &is_unsettled,
        ) {
            out.push(PathChange { path, change });
        }
    });
    for path in unsettled {
        if !out.iter().any(|change| &change.path == path) {
            out.push(PathChange {
                path: path.clone(),
                change: ChangeKind::Unreadable,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The merge walk under [`changes_of`] and [`changes_by_merge`]: calls `each` with every path
/// whose entry differs between `base` (entries in path order) and `scanned`, and the two
/// entries. Only base paths that changed are made into `Path`s; every base path was checked
/// when it was recorded, so making one again cannot fail.
fn for_each_difference<'a, 'b>(
    base: impl Iterator<Item = (&'a str, FileRef)>,
    scanned: impl Iterator<Item = (&'b str, FileRef)>,
    mut each: impl FnMut(Path, Option<FileRef>, Option<FileRef>),
) {
    let owned = |text: &str| Path::new(text).ok();
    let mut old = base.peekable();
    let mut new = scanned.peekable();
    loop {
        let (path, before, after) = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(&(path, entry)), None) => {
                old.next();
                (owned(path), Some(entry), None)
            }
            (None, Some(&(path, entry))) => {
                new.next();
                (owned(path), None, Some(entry))
            }
            (Some(&(old_path, old_ref)), Some(&(new_path, new_ref))) => {
                match old_path.cmp(new_path) {
                    std::cmp::Ordering::Less => {
                        old.next();
                        (owned(old_path), Some(old_ref), None)
                    }
                    std::cmp::Ordering::Greater => {
                        new.next();
                        (owned(new_path), None, Some(new_ref))
                    }
                    std::cmp::Ordering::Equal => {
                        old.next();
                        new.next();
                        if old_ref == new_ref {
                            continue;
                        }
                        (owned(new_path), Some(old_ref), Some(new_ref))
                    }
                }
            }
        };
        if let Some(path) = path {
            each(path, before, after);
        }
    }
}

fn classify(
    path: &Path,
    before: Option<FileRef>,
    after: Option<FileRef>,
    base_has_descendant: &impl Fn(&Path) -> bool,
    scanned: &Listing,
    is_unsettled: &impl Fn(&Path) -> bool,
) -> Option<ChangeKind> {
    match (before, after) {
        (Some(before), Some(after)) if before == after => None,
        (Some(_), Some(_)) => Some(ChangeKind::Modified),
        (Some(before), None) => {
            if is_unsettled(path) {
                Some(ChangeKind::Unreadable)
            } else if before.is_dir() && has_descendant(scanned, path) {
                None
            } else {
                Some(ChangeKind::Removed)
            }
        }
        (None, Some(after)) => {
            if after.is_dir() && base_has_descendant(path) {
                None
            } else {
                Some(ChangeKind::Added)
            }
        }
        (None, None) => None,
    }
}

/// Every path whose entry differs between two listings, in listing order.
pub fn changed_paths<'a>(before: &'a Listing, after: &'a Listing) -> Vec<&'a Path> {
    let mut changed = Vec::new();
    let mut old = before.iter().peekable();
    let mut new = after.iter().peekable();
    loop {
        match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some((path, _)), None) => {
                changed.push(*path);
                old.next();
            }
            (None, Some((path, _))) => {
                changed.push(*path);
                new.next();
            }
            (Some((old_path, old_ref)), Some((new_path, new_ref))) => {
                match old_path.cmp(new_path) {
                    std::cmp::Ordering::Less => {
                        changed.push(*old_path);
                        old.next();
                    }
                    std::cmp::Ordering::Greater => {
                        changed.push(*new_path);
                        new.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if old_ref != new_ref {
                            changed.push(*new_path);
                        }
                        old.next();
                        new.next();
                    }
                }
            }
        }
    }
    changed
}

/// `sync_protocol::diff::diff_listings(before, after)`, found by one merge walk of the two
/// listings instead of a lookup per entry: a push on a large working copy diffs 10,000 paths
/// to find the one that changed.
pub fn listing_changes(before: &Listing, after: &Listing) -> Vec<Change> {
    changes_by_merge(
        before.iter().map(|(path, entry)| (path.as_str(), *entry)),
        after.iter().map(|(path, entry)| (path.as_str(), *entry)),
    )
}

/// [`listing_changes`] from the base recorded in `index`, read from its records without
/// decoding the base (decoding it took 2.4 ms of a one-line push on 8,000 files). The index
/// must have no pending paths (their records hold the previous base's entry).
pub fn index_changes(index: &Index, after: &Listing) -> Vec<Change> {
    changes_by_merge(
        base_entries(index),
        after.iter().map(|(path, entry)| (path.as_str(), *entry)),
    )
}

/// [`index_changes`] to what `scan` listed, read from its entries in place: the scan's
/// listing is not built (8,000 paths took 2 ms of a one-line push).
pub fn scan_changes(index: &Index, scan: &Scan) -> Vec<Change> {
    changes_by_merge(base_entries(index), scan.entries())
}

/// The base's entries recorded in `index`, in path order.
fn base_entries(index: &Index) -> impl Iterator<Item = (&str, FileRef)> {
    index
        .records()
        .filter_map(|record| record.base.map(|entry| (record.path, entry)))
}

/// [`listing_changes`] from `before`'s entries to `after`'s, both in path order.
fn changes_by_merge<'a, 'b>(
    before: impl Iterator<Item = (&'a str, FileRef)>,
    after: impl Iterator<Item = (&'b str, FileRef)>,
) -> Vec<Change> {
    let mut out = Vec::new();
    for_each_difference(before, after, |path, old, new| match (old, new) {
        (Some(old), Some(new)) if !old.is_dir() && !new.is_dir() => {
            out.push(Change::Modified { path, old, new })
        }
        (old, new) => {
            if let Some(old) = old {
                out.push(Change::Removed {
                    path: path.clone(),
                    old,
                });
            }
            if let Some(new) = new {
                out.push(Change::Added { path, new });
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_protocol::chunk_id;
    use sync_protocol::{EntryKind, ObjectKind};

    fn file(seed: &[u8]) -> FileRef {
        FileRef {
            kind: EntryKind::File,
            target: ObjectKind::Chunk,
            size: seed.len() as u64,
            id: chunk_id(seed),
        }
    }

    fn path(text: &str) -> Path {
        Path::new(text).unwrap()
    }

    #[test]
    fn added_modified_removed() {
        let mut base = Listing::new();
        base.insert(path("a"), file(b"1"));
        base.insert(path("b"), file(b"2"));
        base.insert(path("c"), file(b"3"));
        let mut scanned = base.clone();
        scanned.remove(&path("a"));
        scanned.insert(path("b"), file(b"22"));
        scanned.insert(path("d"), file(b"4"));
        let found: Vec<_> = changes(&base, &scanned, &BTreeSet::new())
            .into_iter()
            .map(|change| (change.path.to_string(), change.change.letter()))
            .collect();
        assert_eq!(
            found,
            [
                ("a".to_owned(), 'D'),
                ("b".to_owned(), 'M'),
                ("d".to_owned(), 'A')
            ]
        );
    }

    #[test]
    fn empty_dirs_filling_up_or_emptying_are_not_noise() {
        let mut base = Listing::new();
        base.insert(path("d"), FileRef::empty_dir());
        base.insert(path("e/x"), file(b"1"));
        let mut scanned = Listing::new();
        scanned.insert(path("d/new"), file(b"2"));
        scanned.insert(path("e"), FileRef::empty_dir());
        let found: Vec<_> = changes(&base, &scanned, &BTreeSet::new())
            .into_iter()
            .map(|change| (change.path.to_string(), change.change))
            .collect();
        assert_eq!(
            found,
            [
                ("d/new".to_owned(), ChangeKind::Added),
                ("e/x".to_owned(), ChangeKind::Removed)
            ]
        );
    }

    #[test]
    fn unsettled_paths_are_not_removed() {
        let mut base = Listing::new();
        base.insert(path("locked/x"), file(b"1"));
        base.insert(path("busy"), file(b"2"));
        let unsettled = BTreeSet::from([path("locked"), path("busy")]);
        let found: Vec<_> = changes(&base, &Listing::new(), &unsettled)
            .into_iter()
            .map(|change| (change.path.to_string(), change.change))
            .collect();
        assert_eq!(
            found,
            [
                ("busy".to_owned(), ChangeKind::Unreadable),
                ("locked".to_owned(), ChangeKind::Unreadable),
                ("locked/x".to_owned(), ChangeKind::Unreadable)
            ]
        );
    }

    proptest::proptest! {
        /// The merge walk agrees with the protocol's reference diff, including a file and an
        /// empty folder trading places at one path.
        #[test]
        fn listing_and_index_changes_agree_with_the_reference_diff(
            before in proptest::collection::vec(0u8..4, 6),
            after in proptest::collection::vec(0u8..4, 6),
        ) {
            const PATHS: [&str; 6] = ["a", "a.txt", "a/b", "a/c", "b", "c/d/e"];
            let listing = |slots: &[u8]| -> Listing {
                PATHS
                    .iter()
                    .zip(slots)
                    .filter_map(|(text, slot)| match slot {
                        0 => None,
                        1 => Some((path(text), FileRef::empty_dir())),
                        seed => Some((path(text), file(&[*seed]))),
                    })
                    .collect()
            };
            let (before, after) = (listing(&before), listing(&after));
            let reference = sync_protocol::diff::diff_listings(&before, &after);
            proptest::prop_assert_eq!(listing_changes(&before, &after), reference.clone());
            // The same walk over an index's records of `before`.
            let base = crate::stores::state::Base {
                version: Some(1),
                root: chunk_id(b"root"),
                listing: before,
                pending: BTreeSet::new(),
            };
            let encoded = crate::stores::index::encode(&crate::stores::index::IndexContents {
                base: crate::stores::index::BaseSource::New(&base),
                stats: &[],
                scan: None,
            });
            let index = Index::from_bytes(encoded).unwrap();
            proptest::prop_assert_eq!(index_changes(&index, &after), reference);
        }
    }
}
