//! The object store's error type.

use std::path::PathBuf;

use sync_protocol::{CompressError, ObjectId};

use super::pack::{PackError, PackId};
use crate::catalog::ProjectId;

/// Why an object store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A stored value is not the object its key names (bad hash, not a frame, not canonical,
    /// too large). The object is never served. Puts skip existing keys, so a re-upload does not
    /// overwrite it: repair deletes it first. Mind the closure invariant when doing so: stored
    /// ancestors still claim it, so either store a good frame right after the delete or delete
    /// the ancestors too.
    #[error("stored object {id} of project {project} is corrupt: {error}")]
    Integrity {
        project: ProjectId,
        id: ObjectId,
        #[source]
        error: Box<CompressError>,
    },
    /// A stored value longer than any valid frame; it was not read.
    #[error("stored object {id} of project {project} is {len} bytes, more than any valid frame")]
    Oversized {
        project: ProjectId,
        id: ObjectId,
        len: u64,
    },
    /// A stored pack is not the pack its key names, or not a pack at all (found reading it
    /// whole, or its footer and contents). A damaged frame read by range is
    /// [`StoreError::Integrity`] instead, naming the object.
    #[error("stored pack {pack} of project {project} is corrupt: {error}")]
    PackIntegrity {
        project: ProjectId,
        pack: PackId,
        #[source]
        error: Box<PackError>,
    },
    /// A pack longer than any valid pack: refused on put, and not read.
    #[error("pack {pack} of project {project} is {len} bytes, more than any valid pack")]
    OversizedPack {
        project: ProjectId,
        pack: PackId,
        len: u64,
    },
    /// A read of a pack that is not stored. Reads of packs name packs the object index holds,
    /// so this is a lost pack, not an ordinary miss.
    #[error("pack {pack} of project {project} is not stored")]
    MissingPack { project: ProjectId, pack: PackId },
    /// A read asked for bytes past the end of a pack: the location it came from is wrong, or
    /// the pack was cut short.
    #[error("bytes {start}..{end} are past the end of pack {pack} of project {project}")]
    PackRange {
        project: ProjectId,
        pack: PackId,
        start: u64,
        end: u64,
    },
    /// A local file operation failed.
    #[error("object store {operation} failed at {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// S3 (or the SDK) failed, after its retries.
    #[error("S3 {operation} of {key} failed: {message}")]
    S3 {
        operation: &'static str,
        key: String,
        message: String,
    },
    /// An answer that broke off or was not the answer to the request (a body cut short, a
    /// range other than the one asked for), or wrong bytes that changed from read to read (so
    /// were not what is stored). The SDK retries requests, not bodies: this comes after the
    /// backend and `ObjectStore` have read again (`reread`). The stored data is not known to
    /// be damaged; the store is unreliable right now.
    #[error("{operation} of {key}: {message}")]
    Transfer {
        operation: &'static str,
        key: String,
        message: String,
    },
    /// The store could not be set up (bad settings, bucket missing).
    #[error("object store configuration: {0}")]
    Config(String),
    /// Anything else that failed inside a backend.
    #[error("object store {operation} failed: {message}")]
    Backend {
        operation: &'static str,
        message: String,
    },
}
