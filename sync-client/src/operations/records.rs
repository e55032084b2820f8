//! Small pushes and pulls as change records (`sync_protocol::patch`): the changed paths instead
//! of the dirs on their way, and one-chunk files inline as a zstd delta against the chunk the
//! base had at the same path. A one-line edit three levels deep then costs about a hundred
//! bytes of stream instead of five kilobytes.
//!
//! - Push: [`push_stream`] writes the records of `diff_listings(base, snapshot)` and the new
//!   objects that are neither dirs nor inlined; the server rebuilds the dirs from its copy of
//!   the base and checks that the root it gets is the one the push names.
//! - Pull: the client asks for records (it has its base listing at hand); [`apply_pulled`]
//!   decodes the inline content, applies the records to the base listing, builds the dirs and
//!   checks the root against the one the server named, then stores the dirs in the cache as if
//!   they had been sent.
//!
//! Records are only used while they are the small form: at most [`MAX_RECORDS`] changed paths.

use std::collections::{BTreeMap, HashSet};

use sync_protocol::diff::Change;
use sync_protocol::patch::{
    Record, decode_content, encode_content, patch_tree, records_of_changes,
};
use sync_protocol::stream::StreamEncoder;
use sync_protocol::tree::{FileRef, Listing, Path, build_dirs};
use sync_protocol::{ObjectId, ObjectKind};

use sync_protocol::wire::MAX_RECORDS;

use super::upload::Batch;
use crate::error::{ClientError, RecordsError};
use crate::stores::object_cache::ObjectCache;

/// The canonical encoding of a cached chunk, if the cache has it.
fn chunk_encoding(objects: &ObjectCache, id: &ObjectId) -> Option<Vec<u8>> {
    objects
        .object(id, ObjectKind::Chunk)
        .ok()
        .map(|object| object.encode())
}

/// A push as records: `changes` (from the base listing to the snapshot's), then the objects of
/// `planned` that are neither dirs nor inlined. `None` when there are too many changes or the
/// stream would pass `limit` bytes (the caller sends dirs instead).
pub fn push_stream(
    objects: &ObjectCache,
    changes: &[Change],
    planned: &[ObjectId],
    limit: u64,
) -> Result<Option<Batch>, ClientError> {
    if changes.is_empty() || changes.len() > MAX_RECORDS {
        return Ok(None);
    }
    let planned_set: HashSet<&ObjectId> = planned.iter().collect();
    let mut inlined = HashSet::new();
    let records = records_of_changes(changes, |_, new, old| {
        // Only content the server lacks goes inline; a chunk it has is named by id.
        if new.target != ObjectKind::Chunk || !planned_set.contains(&new.id) {
            return None;
        }
        let encoded = chunk_encoding(objects, &new.id)?;
        let dictionary = old
            .filter(|old| old.target == ObjectKind::Chunk)
            .and_then(|old| chunk_encoding(objects, &old.id));
        inlined.insert(new.id);
        Some((
            dictionary.is_some(),
            encode_content(&encoded, dictionary.as_deref()),
        ))
    });
    let mut encoder = StreamEncoder::new();
    let stream_error = |object: Option<ObjectId>| {
        move |source| ClientError::PushStream {
            object,
            source: Box::new(source),
        }
    };
    for record in &records {
        encoder.push_record(record).map_err(stream_error(None))?;
    }
    for id in planned {
        if inlined.contains(id) {
            continue;
        }
        let (kind, frame) = objects.frame_with_kind(id)?;
        if kind == ObjectKind::Dir {
            continue;
        }
        if encoder.len() + frame.len() as u64 > limit {
            return Ok(None);
        }
        encoder
            .push(kind, id, &frame)
            .map_err(stream_error(Some(*id)))?;
    }
    let count = encoder.frame_count();
    Ok(Some(Batch {
        stream: encoder.finish(),
        objects: count,
    }))
}

/// Applies a pull's records to the base (`base_root`, whose listing is `base`): stores inline
/// content (decoded against the base's chunk at its path when it is a delta), builds the new
/// tree's dirs, checks its root is `root` and stores the dirs. Only the dirs along the changed
/// paths are rebuilt, from the cached base dirs (`patch::patch_tree`); if the cache lacks some,
/// the whole tree is built from the listing. Any mismatch is an error; nothing in the working
/// copy changes.
pub fn apply_pulled(
    objects: &ObjectCache,
    base_root: &ObjectId,
    base: &Listing,
    records: &[Record],
    root: &ObjectId,
) -> Result<(), ClientError> {
    let mut changes: BTreeMap<Path, Option<FileRef>> = BTreeMap::new();
    for record in records {
        match record {
            Record::Remove { path } => {
                changes.insert(path.clone(), None);
            }
            Record::Entry { path, entry } => {
                changes.insert(path.clone(), Some(*entry));
            }
            Record::Content {
                path,
                kind,
                delta,
                zstd,
            } => {
                let dictionary = if *delta {
                    let old = base
                        .get(path)
                        .filter(|old| old.target == ObjectKind::Chunk)
                        .ok_or_else(|| RecordsError::NoBaseChunk { path: path.clone() })?;
                    Some(chunk_encoding(objects, &old.id).ok_or_else(|| {
                        RecordsError::BaseChunkNotCached {
                            path: path.clone(),
                            id: old.id,
                        }
                    })?)
                } else {
                    None
                };
                let decoded =
                    decode_content(*kind, zstd, dictionary.as_deref()).map_err(|source| {
                        RecordsError::Content {
                            path: path.clone(),
                            source,
                        }
                    })?;
                objects.put_object(&decoded.chunk)?;
                changes.insert(path.clone(), Some(decoded.entry));
            }
        }
    }
    let (new_root, dirs) = match patch_tree(objects, *base_root, &changes) {
        Ok(patched) => (patched.root, patched.dirs),
        Err(_) => {
            let mut listing = base.clone();
            for (path, entry) in &changes {
                match entry {
                    Some(entry) => listing.insert(path.clone(), *entry),
                    None => listing.remove(path),
                };
            }
            let built = build_dirs(&listing).map_err(RecordsError::Tree)?;
            (built.root, built.dirs)
        }
    };
    if new_root != *root {
        return Err(RecordsError::RootMismatch {
            built: new_root,
            named: *root,
        }
        .into());
    }
    for (_, dir) in &dirs {
        objects.put_object(dir)?;
    }
    Ok(())
}
