//! Small pushes and pulls as change records (`sync_protocol::patch`): the changed paths instead
//! of the dirs on their way, and one-chunk files inline as a zstd delta against the chunk the
//! base had at the same path. A one-line edit three levels deep then costs about a hundred
//! bytes of stream instead of five kilobytes.
//!
//! Both halves are the protocol's; this module gives them the object cache:
//!
//! - Push: [`push_stream`] runs `patch::records_push` (the records of the changes from the base
//!   listing to the snapshot's, new one-chunk files inline) and writes them with the planned
//!   objects that are neither dirs nor inlined; the server rebuilds the dirs from its copy of
//!   the base and checks that the root it gets is the one the push names.
//! - Pull: the client asks for records (it has its base listing at hand); [`apply_pulled`] runs
//!   `patch::apply_records` over the cached base dirs (decoding the inline content, rebuilding
//!   the dirs along the changed paths, checking the root against the one the server named) and
//!   stores the chunks and dirs in the cache as if they had been sent.
//!
//! Records are only used while they are the small form: at most
//! `sync_protocol::wire::MAX_RECORDS` changed paths.

use std::collections::HashMap;

use sync_protocol::diff::Change;
use sync_protocol::patch::{
    ApplyRecordsError, Record, apply_records, decode_records, records_push,
};
use sync_protocol::stream::{StreamEncoder, StreamError};
use sync_protocol::tree::{Listing, Path, build_dirs};
use sync_protocol::{ObjectId, ObjectKind};

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

/// The canonical encoding of the one-chunk file `base` has at `path`, if cached: the
/// dictionary of a delta record.
fn base_chunk(objects: &ObjectCache, base: &Listing, path: &Path) -> Option<Vec<u8>> {
    base.get(path)
        .filter(|old| old.target == ObjectKind::Chunk)
        .and_then(|old| chunk_encoding(objects, &old.id))
}

/// A push as records: `changes` (from the base listing to the snapshot's), then the objects of
/// `planned` that are neither dirs nor inlined. `None` when records are not the small form or
/// the stream would pass `limit` bytes (the caller sends dirs instead).
pub fn push_stream(
    objects: &ObjectCache,
    changes: &[Change],
    planned: &[ObjectId],
    limit: u64,
) -> Result<Option<Batch>, ClientError> {
    // The frames read to tell dirs apart, kept for the stream; a frame that cannot be read
    // counts as no dir here and fails below, when it is read for the stream.
    let mut frames: HashMap<ObjectId, (ObjectKind, Vec<u8>)> = HashMap::new();
    let is_dir = |id: &ObjectId| match objects.frame_with_kind(id) {
        Ok((ObjectKind::Dir, _)) => true,
        Ok(frame) => {
            frames.insert(*id, frame);
            false
        }
        Err(_) => false,
    };
    let encoding = |entry: &sync_protocol::FileRef| chunk_encoding(objects, &entry.id);
    let Some(push) = records_push(changes, planned, is_dir, encoding) else {
        return Ok(None);
    };
    let stream_error = |object: Option<ObjectId>| {
        move |source: StreamError| ClientError::PushStream {
            object,
            source: Box::new(source),
        }
    };
    let mut encoder = StreamEncoder::new();
    for record in &push.records {
        encoder.push_record(record).map_err(stream_error(None))?;
    }
    for id in &push.objects {
        let (kind, frame) = match frames.remove(id) {
            Some(frame) => frame,
            None => objects.frame_with_kind(id)?,
        };
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

/// Applies a pull's records to the base (`base_root`, whose listing is `base`): decodes the
/// inline content (against the base's chunk at its path when it is a delta), rebuilds the new
/// tree's dirs, checks its root is `root`, then stores the chunks and dirs. Only the dirs along
/// the changed paths are rebuilt, from the cached base dirs; if the cache lacks some, the whole
/// tree is built from the listing. Any mismatch is an error; nothing in the working copy
/// changes.
pub fn apply_pulled(
    objects: &ObjectCache,
    base_root: &ObjectId,
    base: &Listing,
    records: &[Record],
    root: &ObjectId,
) -> Result<(), ClientError> {
    let dictionary = |path: &Path| base_chunk(objects, base, path);
    let (chunks, dirs) = match apply_records(objects, *base_root, records, *root, dictionary) {
        Ok(applied) => (applied.chunks, applied.patched.dirs),
        Err(ApplyRecordsError::Decode(error)) => return Err(RecordsError::Decode(error).into()),
        Err(ApplyRecordsError::WrongRoot { expected, actual }) => {
            return Err(RecordsError::RootMismatch {
                built: actual,
                named: expected,
            }
            .into());
        }
        // A base dir the cache lacks: the base listing has the whole base tree.
        Err(_) => {
            let decoded = decode_records(records, dictionary).map_err(RecordsError::Decode)?;
            let mut listing = base.clone();
            for (path, entry) in &decoded.changes {
                match entry {
                    Some(entry) => listing.insert(path.clone(), *entry),
                    None => listing.remove(path),
                };
            }
            let built = build_dirs(&listing).map_err(RecordsError::Tree)?;
            if built.root != *root {
                return Err(RecordsError::RootMismatch {
                    built: built.root,
                    named: *root,
                }
                .into());
            }
            (decoded.chunks, built.dirs)
        }
    };
    for content in &chunks {
        objects.put_object(&content.chunk)?;
    }
    for (_, dir) in &dirs {
        objects.put_object(dir)?;
    }
    Ok(())
}
