//! The object store: immutable, content-addressed objects, namespaced per project (DESIGN
//! section 4).
//!
//! Two layouts live side by side under an optional prefix:
//!
//! - **Packs** (`packs/<project-id>/<pack-id>`): the objects of one push or upload batch in one
//!   stored value ([`pack`] has the format), so a push is one write and a cold load a few ranged
//!   reads. Objects are found through the catalog's object index (pack, offset, length), read
//!   by ranges ([`PackLocation`]), and nearby ranges are fetched together (`ranges` has the
//!   coalescing rule).
//! - **Loose objects** (`objects/<project-id>/<id-hex>`), the layout before packs: one value per
//!   object, each the object's zstd frame exactly as the client sent it. Still read, so stores
//!   written before packs keep working.
//!
//! Everything is immutable and every write idempotent.
//!
//! Two layers:
//!
//! - [`ObjectBackend`], the raw, batch-oriented trait that each place objects can live
//!   implements: [`S3Backend`] (aws-sdk-s3), [`FsBackend`] (a local folder) and
//!   [`MemoryBackend`] (unit tests only). It moves bytes and counts requests; it does not verify.
//!   It uses `async-trait` so the server can pick a backend at run time (`Arc<dyn ObjectBackend>`)
//!   and a later cache can wrap one.
//! - [`ObjectStore`], the one type callers use: a cheap-to-clone handle over a backend that
//!   verifies every read with [`sync_protocol::verify_frame`]. A frame that is not the object its
//!   key or location names is read again, and if it is the same wrong bytes every time,
//!   [`StoreError::Integrity`] naming the id, never data (`reread` has the rules, and the
//!   S3 backend's for answers that break off). Its pack methods are in `packed.rs`.
//!
//! Every method takes a batch, never one object per call. Each backend counts its requests by
//! kind ([`RequestCounts`]), which is how pushes and cold loads are measured.
//!
//! What the store does *not* do: check the closure invariant or verify frames on write. The
//! push handler verifies each frame (it needs the decoded objects for the closure check) before
//! calling [`ObjectStore::put_many`] or [`ObjectStore::put_pack`]; verifying again here would
//! double the CPU cost of a push.

mod counts;
mod error;
mod fs;
mod memory;
pub mod pack;
mod packed;
mod ranges;
mod reread;
mod s3;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sync_protocol::ObjectId;
use sync_protocol::accept::ObjectInfo;

use crate::catalog::ProjectId;
use crate::store::pack::PackId;

pub use counts::{RequestCounters, RequestCounts, RequestKind};
pub use error::StoreError;
pub use fs::FsBackend;
pub use memory::MemoryBackend;
pub use packed::PackLocation;
pub use ranges::{MAX_FETCH_LEN, MAX_GAP};
pub use reread::READ_ATTEMPTS;
pub use s3::{S3Backend, S3Credentials, S3Settings};

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The largest stored frame a read accepts, in bytes: zstd's worst-case expansion of the largest
/// object, rounded up. A longer value cannot be a valid object and is not read into memory.
pub const MAX_FRAME_SIZE: usize =
    sync_protocol::limits::MAX_OBJECT_SIZE + sync_protocol::limits::MAX_OBJECT_SIZE / 128 + 4096;

/// The key of an object under a store's prefix: `<prefix>objects/<project>/<id>`. The prefix,
/// if not empty, should end with `/`.
pub fn object_key(prefix: &str, project: &ProjectId, id: &ObjectId) -> String {
    format!("{}{id}", project_prefix(prefix, project))
}

/// The common prefix of a project's keys: `<prefix>objects/<project>/`.
pub fn project_prefix(prefix: &str, project: &ProjectId) -> String {
    format!("{prefix}objects/{project}/")
}

/// The key of a pack under a store's prefix: `<prefix>packs/<project>/<pack>`.
pub fn pack_key(prefix: &str, project: &ProjectId, pack: &PackId) -> String {
    format!("{}{pack}", pack_prefix(prefix, project))
}

/// The common prefix of a project's packs: `<prefix>packs/<project>/`.
pub fn pack_prefix(prefix: &str, project: &ProjectId) -> String {
    format!("{prefix}packs/{project}/")
}

/// A place objects live. Raw bytes in, raw bytes out: [`ObjectStore`] verifies.
///
/// Implementations must be idempotent (putting an existing object succeeds and leaves it as it
/// was) and must never report an object present before it is durable.
#[async_trait]
pub trait ObjectBackend: Send + Sync + fmt::Debug {
    /// Stores each frame under its id. Existing objects are left as they are.
    async fn put_many(&self, project: &ProjectId, objects: Vec<(ObjectId, Bytes)>) -> Result<()>;

    /// Stores `layers` in order: no object of a layer may be visible before every object of
    /// the layers before it is durable. A push stores its objects leaves first this way, so that
    /// a stored object's children are always stored, even if the process dies half way. The
    /// default stores one layer after another; a backend can overlap the work that does not
    /// make anything visible.
    async fn put_layers(
        &self,
        project: &ProjectId,
        layers: Vec<Vec<(ObjectId, Bytes)>>,
    ) -> Result<()> {
        for layer in layers {
            if !layer.is_empty() {
                self.put_many(project, layer).await?;
            }
        }
        Ok(())
    }

    /// The stored frames of `ids`, in the same order; `None` where absent. Unverified.
    async fn get_many(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<Vec<Option<Bytes>>>;

    /// The ids among `ids` that are not stored, in their order, without duplicates.
    async fn missing(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<Vec<ObjectId>>;

    /// Every object id stored for `project`, in no particular order (for fsck and GC). Keys
    /// under the project's prefix that are not object ids are skipped.
    async fn list(&self, project: &ProjectId) -> Result<Vec<ObjectId>>;

    /// Deletes these objects; absent ones are not an error (for GC and project deletion).
    async fn delete_many(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<()>;

    /// Stores a pack under its name in one write, durable when this returns. An existing pack
    /// is left as it is (the name is the hash of the bytes, so it holds the same bytes).
    async fn put_pack(&self, project: &ProjectId, pack: PackId, bytes: Bytes) -> Result<()>;

    /// The bytes of each `(pack, range)`, in the order asked. Ranges are coalesced by
    /// `ranges::plan` (the same rule for every backend) and the requests it makes run
    /// concurrently, bounded. A range past the end of its pack is [`StoreError::PackRange`],
    /// a pack that is not stored [`StoreError::MissingPack`]. Unverified. A backend whose
    /// answers can break off sends such a request again itself (`reread::again`): for the
    /// store, [`StoreError::Transfer`] is final.
    async fn read_ranges(
        &self,
        project: &ProjectId,
        reads: &[(PackId, Range<u64>)],
    ) -> Result<Vec<Bytes>>;

    /// A whole pack, in one read; [`StoreError::MissingPack`] if it is not stored and
    /// [`StoreError::OversizedPack`], unread, if it is longer than any pack. Unverified.
    async fn read_pack(&self, project: &ProjectId, pack: PackId) -> Result<Bytes>;

    /// The last `len` bytes of a pack (all of it if shorter) and the pack's whole length, in
    /// one read (an S3 suffix range): how a pack's footer is found without knowing its length.
    async fn read_tail(&self, project: &ProjectId, pack: PackId, len: u64) -> Result<(Bytes, u64)>;

    /// A pack's length in bytes; `None` if it is not stored.
    async fn pack_len(&self, project: &ProjectId, pack: PackId) -> Result<Option<u64>>;

    /// Every pack stored for `project` with its length, in no particular order (fsck, GC).
    /// Keys under the project's pack prefix that are not pack names are skipped.
    async fn list_packs(&self, project: &ProjectId) -> Result<Vec<(PackId, u64)>>;

    /// Deletes these packs; absent ones are not an error (GC, project deletion).
    async fn delete_packs(&self, project: &ProjectId, packs: &[PackId]) -> Result<()>;

    /// The requests made so far, by kind.
    fn request_counts(&self) -> RequestCounts;
}

/// Runs verification (decompressing and hashing: CPU work) off the async workers.
async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| StoreError::Backend {
            operation: "verify",
            message: error.to_string(),
        })
}

/// An object read back and verified: the stored frame (sent on without recompressing) and the
/// decoded object, as the protocol's machines take it.
pub use sync_protocol::respond::StoredObject as VerifiedObject;

/// One object as [`ObjectStore::inspect_many`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspected {
    Missing,
    Valid(VerifiedObject),
    /// Stored, but not the object its key names.
    Corrupt(sync_protocol::CompressError),
}

/// The handle the server uses: a backend plus verification of every read. Clones share the
/// backend.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    backend: Arc<dyn ObjectBackend>,
}

impl ObjectStore {
    pub fn new(backend: impl ObjectBackend + 'static) -> Self {
        Self {
            backend: Arc::new(backend),
        }
    }

    pub fn from_arc(backend: Arc<dyn ObjectBackend>) -> Self {
        Self { backend }
    }

    /// The backend, e.g. to read its request counts.
    pub fn backend(&self) -> &Arc<dyn ObjectBackend> {
        &self.backend
    }

    /// Stores frames the caller has already verified (see the module doc). Idempotent.
    pub async fn put_many(
        &self,
        project: &ProjectId,
        objects: Vec<(ObjectId, Bytes)>,
    ) -> Result<()> {
        if objects.is_empty() {
            return Ok(());
        }
        self.backend.put_many(project, objects).await
    }

    /// Stores verified frames in layers, each durable before the next is visible (see
    /// [`ObjectBackend::put_layers`]). Idempotent.
    pub async fn put_layers(
        &self,
        project: &ProjectId,
        mut layers: Vec<Vec<(ObjectId, Bytes)>>,
    ) -> Result<()> {
        layers.retain(|layer| !layer.is_empty());
        if layers.is_empty() {
            return Ok(());
        }
        self.backend.put_layers(project, layers).await
    }

    /// The verified frames of `ids`, in order; `None` where absent. Any stored frame that is
    /// not its object fails the whole call with [`StoreError::Integrity`].
    pub async fn get_many(
        &self,
        project: &ProjectId,
        ids: &[ObjectId],
    ) -> Result<Vec<Option<Bytes>>> {
        let objects = self.get_objects(project, ids).await?;
        Ok(objects
            .into_iter()
            .map(|object| object.map(|verified| verified.frame))
            .collect())
    }

    /// Like [`ObjectStore::get_many`], with each object decoded (the server walks dirs).
    pub async fn get_objects(
        &self,
        project: &ProjectId,
        ids: &[ObjectId],
    ) -> Result<Vec<Option<VerifiedObject>>> {
        let checked = self.read_loose(project, ids).await?;
        ids.iter()
            .zip(checked)
            .map(|(id, result)| match result {
                None => Ok(None),
                Some(Ok(object)) => Ok(Some(object)),
                Some(Err(error)) => Err(StoreError::Integrity {
                    project: *project,
                    id: *id,
                    error: Box::new(error),
                }),
            })
            .collect()
    }

    /// Reads and verifies each object, reporting corruption per object instead of failing the
    /// whole call: for fsck, which wants every bad id, not the first.
    pub async fn inspect_many(
        &self,
        project: &ProjectId,
        ids: &[ObjectId],
    ) -> Result<Vec<Inspected>> {
        let checked = self.read_loose(project, ids).await?;
        Ok(checked
            .into_iter()
            .map(|result| match result {
                None => Inspected::Missing,
                Some(Ok(object)) => Inspected::Valid(object),
                Some(Err(error)) => Inspected::Corrupt(error),
            })
            .collect())
    }

    /// The objects of `ids` read and checked, read again as `reread` says: `None` where absent,
    /// else the verified object or why its stored bytes are not it.
    async fn read_loose(
        &self,
        project: &ProjectId,
        ids: &[ObjectId],
    ) -> Result<Vec<Option<Result<VerifiedObject, sync_protocol::CompressError>>>> {
        reread::read_checked(
            project,
            ids,
            |id| *id,
            |wanted| async move {
                let frames = self.fetch(project, &wanted).await?;
                off_the_workers(move || {
                    wanted
                        .iter()
                        .zip(frames)
                        .map(|(id, frame)| {
                            frame.map(|frame| match sync_protocol::verify_frame(id, &frame) {
                                Ok((object, _encoded)) => Ok(VerifiedObject { frame, object }),
                                Err(error) => Err((error, frame)),
                            })
                        })
                        .collect()
                })
                .await
            },
        )
        .await
    }

    /// The stored frames of `ids`, in order, unverified; `None` where absent.
    async fn fetch(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<Vec<Option<Bytes>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let frames = self.backend.get_many(project, ids).await?;
        if frames.len() != ids.len() {
            return Err(StoreError::Backend {
                operation: "get",
                message: format!("asked for {} objects, got {}", ids.len(), frames.len()),
            });
        }
        Ok(frames)
    }

    /// The kind and content size of each of `ids`, in order; `None` where absent. Today this
    /// reads and verifies each object; an object index in the catalog would answer it without
    /// touching the store.
    pub async fn info(
        &self,
        project: &ProjectId,
        ids: &[ObjectId],
    ) -> Result<Vec<Option<ObjectInfo>>> {
        let objects = self.get_objects(project, ids).await?;
        Ok(objects
            .iter()
            .map(|object| object.as_ref().map(|stored| ObjectInfo::of(&stored.object)))
            .collect())
    }

    /// The ids among `ids` that are not stored, in their order, without duplicates.
    pub async fn missing(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<Vec<ObjectId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.backend.missing(project, ids).await
    }

    /// Every object id stored for `project` (fsck, GC).
    pub async fn list(&self, project: &ProjectId) -> Result<Vec<ObjectId>> {
        self.backend.list(project).await
    }

    /// Deletes objects (GC, project deletion). Absent ones are not an error.
    pub async fn delete_many(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.backend.delete_many(project, ids).await
    }

    /// The backend's requests so far, by kind.
    pub fn request_counts(&self) -> RequestCounts {
        self.backend.request_counts()
    }
}

#[cfg(test)]
mod tests {
    use sync_protocol::{Object, compress_object};

    use super::*;

    fn frame_of(object: &Object) -> Bytes {
        Bytes::from(compress_object(&object.encode()))
    }

    #[tokio::test]
    async fn reads_are_verified() {
        let memory = Arc::new(MemoryBackend::new());
        let store = ObjectStore::from_arc(memory.clone());
        let project = ProjectId::random();
        let good = Object::Chunk(b"good".to_vec());
        let bad = Object::Chunk(b"bad".to_vec());
        store
            .put_many(
                &project,
                vec![(good.id(), frame_of(&good)), (bad.id(), frame_of(&bad))],
            )
            .await
            .unwrap();
        let read = store.get_objects(&project, &[good.id()]).await.unwrap();
        assert_eq!(read[0].as_ref().unwrap().object, good);

        memory.overwrite(&project, &bad.id(), frame_of(&good));
        match store.get_many(&project, &[good.id(), bad.id()]).await {
            Err(StoreError::Integrity { id, .. }) => assert_eq!(id, bad.id()),
            other => panic!("expected an integrity error, got {other:?}"),
        }
        let absent = Object::Chunk(b"absent".to_vec()).id();
        let inspected = store
            .inspect_many(&project, &[good.id(), bad.id(), absent])
            .await
            .unwrap();
        assert!(matches!(&inspected[0], Inspected::Valid(valid) if valid.object == good));
        assert!(matches!(
            inspected[1],
            Inspected::Corrupt(sync_protocol::CompressError::IdMismatch { .. })
        ));
        assert_eq!(inspected[2], Inspected::Missing);
    }

    #[tokio::test]
    async fn empty_batches_make_no_requests() {
        let store = ObjectStore::new(MemoryBackend::new());
        let project = ProjectId::random();
        store.put_many(&project, Vec::new()).await.unwrap();
        store.get_many(&project, &[]).await.unwrap();
        store.missing(&project, &[]).await.unwrap();
        store.delete_many(&project, &[]).await.unwrap();
        assert_eq!(store.request_counts().total(), 0);
    }

    #[test]
    fn keys_follow_the_layout() {
        let project = ProjectId::from_bytes([0xab; 16]);
        let id = Object::Chunk(Vec::new()).id();
        assert_eq!(
            object_key("p/", &project, &id),
            format!("p/objects/{}/{id}", "ab".repeat(16))
        );
        assert_eq!(
            project_prefix("", &project),
            format!("objects/{}/", "ab".repeat(16))
        );
        let pack = PackId::from_bytes([0xcd; 32]);
        assert_eq!(
            pack_key("p/", &project, &pack),
            format!("p/packs/{}/{}", "ab".repeat(16), "cd".repeat(32))
        );
    }
}
