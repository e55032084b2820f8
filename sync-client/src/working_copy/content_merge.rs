//! Content merges of files both sides changed, between the tree merge and the disk.
//!
//! The tree merge (`sync_protocol::merge`) leaves a file both sides changed as theirs at its
//! path and ours in a conflict copy beside it. [`merge_contents`] then tries
//! `sync_protocol::content::merge_content` on each such file that has a base version, whose bytes
//! both sides changed (differently), and whose three versions are text of at most
//! `MAX_CONTENT_MERGE_SIZE` bytes:
//!
//! - **clean**: the merged file takes the path, the conflict copy goes, and the conflict leaves
//!   the list; the local edit is part of the merged file, so the apply may replace it (the path
//!   is in [`ContentMerges::merged`]);
//! - **conflicting**: the conflict copy still holds the local version byte for byte, and the
//!   line merge with its markers is written beside it as `<copy>.merge` (not when that name, up
//!   to case, is taken in the merged tree or the base, or the merge has no marker block);
//! - **not text, too large, an object missing from the cache**: nothing changes.
//!
//! The path keeps theirs (as without a content merge): `sync` pushes what the working copy
//! holds, and a file full of markers at the path would reach everybody. The merged bytes are
//! encoded with the protocol's chunker and stored in the object cache, so the apply writes them
//! like any other file and the next scan finds the same ids.

use std::collections::BTreeSet;

use sync_protocol::content::{ContentMerge, MAX_CONTENT_MERGE_SIZE, merge_content};
use sync_protocol::merge::{Conflict, ConflictKind};
use sync_protocol::name::fold_key;
use sync_protocol::tree::{FileRef, Listing, Path};
use sync_protocol::{EntryKind, ObjectEncoder};

use crate::error::ClientError;
use crate::stores::object_cache::ObjectCache;

/// What follows a conflict copy's name in the name of its merge with markers.
pub const MARKERS_SUFFIX: &str = ".merge";

/// What the content merges did.
#[derive(Debug, Clone, Default)]
pub struct ContentMerges {
    /// Files whose two edits merged cleanly: the merged file is at the path, no conflict copy.
    pub merged: BTreeSet<Path>,
    /// Files whose edits conflict: `(path, the merge with markers)`.
    pub marked: Vec<(Path, Path)>,
}

/// Tries a content merge for every both-modified conflict; see the module docs. Changes
/// `merged` and `conflicts` in place.
pub fn merge_contents(
    base: &Listing,
    ours: &Listing,
    theirs: &Listing,
    merged: &mut Listing,
    conflicts: &mut Vec<Conflict>,
    objects: &ObjectCache,
) -> Result<ContentMerges, ClientError> {
    let mut done = ContentMerges::default();
    let mut resolved = Vec::new();
    for (index, conflict) in conflicts.iter().enumerate() {
        if conflict.kind != ConflictKind::BothModified {
            continue;
        }
        let path = &conflict.path;
        let (Some(base_file), Some(ours_file), Some(theirs_file), Some(copy)) = (
            file(base, path),
            file(ours, path),
            file(theirs, path),
            conflict.local_copy(),
        ) else {
            continue;
        };
        // The tree merge's layout, checked rather than assumed.
        if merged.get(path) != Some(&theirs_file) || merged.get(copy) != Some(&ours_file) {
            continue;
        }
        // Only where both sides changed the bytes: a side that changed only the executable bit
        // keeps the usual conflict copy.
        let distinct = base_file.id != ours_file.id
            && base_file.id != theirs_file.id
            && ours_file.id != theirs_file.id;
        let small = [base_file, ours_file, theirs_file]
            .iter()
            .all(|file| file.size <= MAX_CONTENT_MERGE_SIZE as u64);
        if !distinct || !small {
            continue;
        }
        let (Some(base_bytes), Some(ours_bytes), Some(theirs_bytes)) = (
            contents(objects, &base_file),
            contents(objects, &ours_file),
            contents(objects, &theirs_file),
        ) else {
            continue;
        };
        match merge_content(path.file_name(), &base_bytes, &ours_bytes, &theirs_bytes) {
            Err(_) => {}
            Ok(ContentMerge::Clean(bytes)) => {
                // Either side may have changed the executable bit too; with two kinds, never both
                // ways.
                let executable = if ours_file.kind == base_file.kind {
                    theirs_file.kind == EntryKind::Executable
                } else {
                    ours_file.kind == EntryKind::Executable
                };
                let file_ref = store(objects, path, &bytes, executable)?;
                merged.remove(copy);
                merged.insert(path.clone(), file_ref);
                done.merged.insert(path.clone());
                resolved.push(index);
            }
            Ok(ContentMerge::Conflict(conflict)) => {
                if conflict.blocks == 0 {
                    continue;
                }
                let Ok(at) = Path::new(&format!("{copy}{MARKERS_SUFFIX}")) else {
                    continue;
                };
                let file_ref = store(objects, &at, &conflict.marked, false)?;
                // A retried merge finds its own file there: the same content is no clash.
                let ours_already = merged.get(&at) == Some(&file_ref);
                if !ours_already && (name_taken(merged, &at) || name_taken(base, &at)) {
                    continue;
                }
                merged.insert(at.clone(), file_ref);
                done.marked.push((path.clone(), at));
            }
        }
    }
    for index in resolved.into_iter().rev() {
        conflicts.remove(index);
    }
    Ok(done)
}

fn file(listing: &Listing, path: &Path) -> Option<FileRef> {
    listing.get(path).filter(|file| !file.is_dir()).copied()
}

/// The file's bytes from the object cache; `None` when an object is missing or damaged (the
/// apply reports that on its own when it needs the file).
fn contents(objects: &ObjectCache, file: &FileRef) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(file.size as usize);
    super::apply::write_file_contents(objects, file, &mut bytes, std::path::Path::new(""))
        .ok()
        .map(|()| bytes)
}

fn store(
    objects: &ObjectCache,
    path: &Path,
    bytes: &[u8],
    executable: bool,
) -> Result<FileRef, ClientError> {
    let encoded = ObjectEncoder::new()
        .encode_file(bytes, executable)
        .map_err(|source| ClientError::Encode {
            path: path.as_str().into(),
            source,
        })?;
    for object in &encoded.objects {
        objects.put_encoded(&object.id, &object.frame)?;
    }
    Ok(encoded.file_ref())
}

/// Whether `listing` has `path`, or a folder at it, up to case.
fn name_taken(listing: &Listing, path: &Path) -> bool {
    let wanted: Vec<String> = path.components().map(fold_key).collect();
    listing.keys().any(|key| {
        let mut components = key.components();
        wanted.iter().all(|name| {
            components
                .next()
                .is_some_and(|part| fold_key(part) == *name)
        })
    })
}
