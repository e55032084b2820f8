//! The pack half of [`ObjectStore`]: storing a pack, reading objects by where they sit in their
//! packs, reading a pack whole or just its contents. Every frame is verified against its id and
//! kind before it is returned, off the async workers, as the loose objects' reads are. A read
//! that breaks off, or whose bytes fail, is made again (`reread`).

use std::ops::Range;

use bytes::Bytes;
use futures_util::future::try_join_all;
use sync_protocol::{CompressError, ObjectId, ObjectKind};

use super::pack::{self, FOOTER_LEN, Footer, MAX_PACK_LEN, Pack, PackEntry, PackError, PackId};
use super::reread::{self, Checked};
use super::{
    Inspected, MAX_FRAME_SIZE, ObjectStore, Result, StoreError, VerifiedObject, off_the_workers,
};
use crate::catalog::ProjectId;

/// Where an object is stored: its pack and its frame's place there, with the id and kind the
/// frame must verify against. The catalog's object index maps onto this; [`PackLocation::new`]
/// makes one from a pack's own contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackLocation {
    pub id: ObjectId,
    pub kind: ObjectKind,
    pub pack: PackId,
    /// The frame's first byte, from the start of the pack.
    pub offset: u64,
    /// The frame's length in bytes.
    pub length: u32,
}

impl From<&crate::catalog::IndexedObject> for PackLocation {
    /// Where the object index says an object is.
    fn from(row: &crate::catalog::IndexedObject) -> Self {
        Self {
            id: row.id,
            kind: row.kind,
            pack: row.pack,
            offset: row.offset,
            length: row.length,
        }
    }
}

impl PackLocation {
    /// The location of `entry` of the pack `pack`.
    pub fn new(pack: PackId, entry: &PackEntry) -> Self {
        Self {
            id: entry.id,
            kind: entry.kind,
            pack,
            offset: entry.offset,
            length: entry.length,
        }
    }

    /// The byte range of the frame in its pack.
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + u64::from(self.length)
    }
}

/// Verification is split into groups of at least this many bytes of frames, one blocking task
/// each, so a cold load of a large pack uses the cores there are without a task per object.
const MIN_VERIFY_GROUP: usize = 1024 * 1024;

impl ObjectStore {
    /// Stores a pack the caller built from verified frames (see the module doc): one write,
    /// durable when this returns. Idempotent. A pack longer than [`MAX_PACK_LEN`] is refused:
    /// the builder cuts packs before that.
    pub async fn put_pack(&self, project: &ProjectId, pack: &Pack) -> Result<()> {
        if pack.bytes.len() > MAX_PACK_LEN {
            return Err(StoreError::OversizedPack {
                project: *project,
                pack: pack.id,
                len: pack.bytes.len() as u64,
            });
        }
        self.backend
            .put_pack(project, pack.id, pack.bytes.clone())
            .await
    }

    /// The verified objects at `locations`, in order: their frames read by ranges (nearby
    /// frames of one pack in one request), then each checked against its id and kind. A read
    /// that breaks off, and the frames that fail, are read again (`reread`); a frame that still
    /// fails, the same bytes every time, fails the whole call with [`StoreError::Integrity`]
    /// naming that object. The other objects of its pack still read on their own.
    pub async fn read_objects(
        &self,
        project: &ProjectId,
        locations: &[PackLocation],
    ) -> Result<Vec<VerifiedObject>> {
        let checked = self.read_verified(project, locations).await?;
        checked
            .into_iter()
            .zip(locations)
            .map(|(result, location)| {
                result.map_err(|error| integrity(project, location.id, error))
            })
            .collect()
    }

    /// Like [`ObjectStore::read_objects`], reporting each corrupt object instead of failing
    /// the whole call: for fsck, which wants every bad id. (A missing pack still fails it.)
    pub async fn inspect_objects(
        &self,
        project: &ProjectId,
        locations: &[PackLocation],
    ) -> Result<Vec<Inspected>> {
        let checked = self.read_verified(project, locations).await?;
        Ok(checked
            .into_iter()
            .map(|result| match result {
                Ok(object) => Inspected::Valid(object),
                Err(error) => Inspected::Corrupt(error),
            })
            .collect())
    }

    /// The frames at `locations` read and checked, read again as `reread` says: each the
    /// verified object or why its stored bytes are not it.
    async fn read_verified(
        &self,
        project: &ProjectId,
        locations: &[PackLocation],
    ) -> Result<Vec<Result<VerifiedObject, CompressError>>> {
        let checked = reread::read_checked(
            project,
            locations,
            |location| location.id,
            |wanted| async move {
                let frames = self.read_frames(project, &wanted).await?;
                let checked = verify_each(&wanted, frames, checked).await?;
                Ok(checked.into_iter().map(Some).collect())
            },
        )
        .await?;
        checked
            .into_iter()
            .map(|result| {
                result.ok_or_else(|| StoreError::Backend {
                    operation: "read",
                    message: "a range read gave no bytes".to_owned(),
                })
            })
            .collect()
    }

    /// A whole pack, verified: its bytes hash to its name, its footer and contents are sound,
    /// and every frame is the object (id, kind, size) its entry says. One read, for cold loads
    /// and fsck. A damaged pack is [`StoreError::PackIntegrity`]; a frame that is not its
    /// object, in a pack that hashes to its name (so was written so), is
    /// [`StoreError::Integrity`] naming the object.
    pub async fn read_pack(&self, project: &ProjectId, id: PackId) -> Result<Pack> {
        Ok(self.read_pack_objects(project, id).await?.0)
    }

    /// [`ObjectStore::read_pack`], keeping every object decoded, in the pack's order: what a
    /// cold load puts in the cache.
    pub async fn read_pack_objects(
        &self,
        project: &ProjectId,
        id: PackId,
    ) -> Result<(Pack, Vec<(ObjectId, VerifiedObject)>)> {
        // A pack that does not hash to its name may have been damaged on the way: read again.
        let pack = reread::again(reread::damaged, || async move {
            let bytes = self.backend.read_pack(project, id).await?;
            // Hashing up to 64 MiB is CPU work too.
            off_the_workers(move || pack::parse(id, bytes))
                .await?
                .map_err(|error| pack_integrity(project, id, error))
        })
        .await?;
        let locations: Vec<PackLocation> = pack
            .entries
            .iter()
            .map(|entry| PackLocation::new(id, entry))
            .collect();
        let frames = pack
            .entries
            .iter()
            .map(|entry| {
                let range = entry.range();
                pack.bytes.slice(range.start as usize..range.end as usize)
            })
            .collect();
        let checked = verify_each(&locations, frames, verified).await?;
        let mut objects = Vec::with_capacity(checked.len());
        for (index, (entry, object)) in pack.entries.iter().zip(checked).enumerate() {
            let object = object.map_err(|error| integrity(project, entry.id, error))?;
            let actual = object.object.content_size();
            if actual != entry.size {
                let error = PackError::SizeMismatch {
                    index,
                    claimed: entry.size,
                    actual,
                };
                return Err(pack_integrity(project, id, error));
            }
            objects.push((entry.id, object));
        }
        Ok((pack, objects))
    }

    /// A pack's contents, from its tail: two ranged reads (the footer, which gives the pack's
    /// length and where the contents are, then the contents), checked against the footer's
    /// digest. For fsck and re-indexing without reading whole packs. The frames are not read,
    /// so the pack's name is not checked: [`ObjectStore::read_pack`] does that.
    pub async fn pack_contents(&self, project: &ProjectId, id: PackId) -> Result<Vec<PackEntry>> {
        reread::again(reread::damaged, || self.read_contents(project, id)).await
    }

    /// [`ObjectStore::pack_contents`], read once.
    async fn read_contents(&self, project: &ProjectId, id: PackId) -> Result<Vec<PackEntry>> {
        let (tail, len) = self
            .backend
            .read_tail(project, id, FOOTER_LEN as u64)
            .await?;
        if len > MAX_PACK_LEN as u64 {
            return Err(StoreError::OversizedPack {
                project: *project,
                pack: id,
                len,
            });
        }
        let footer =
            Footer::parse(&tail, len).map_err(|error| pack_integrity(project, id, error))?;
        let range = footer.contents_range();
        let contents = if range.is_empty() {
            Bytes::new()
        } else {
            let mut read = self.backend.read_ranges(project, &[(id, range)]).await?;
            read.pop().unwrap_or_default()
        };
        off_the_workers(move || pack::parse_contents(&footer, &contents))
            .await?
            .map_err(|error| pack_integrity(project, id, error))
    }

    /// A pack's length; `None` if it is not stored.
    pub async fn pack_len(&self, project: &ProjectId, id: PackId) -> Result<Option<u64>> {
        self.backend.pack_len(project, id).await
    }

    /// Every pack stored for `project`, with its length (fsck, GC).
    pub async fn list_packs(&self, project: &ProjectId) -> Result<Vec<(PackId, u64)>> {
        self.backend.list_packs(project).await
    }

    /// Deletes packs (GC, project deletion). Absent ones are not an error.
    pub async fn delete_packs(&self, project: &ProjectId, packs: &[PackId]) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        self.backend.delete_packs(project, packs).await
    }

    /// The frames at `locations`, in order, unverified. A location longer than any frame is
    /// refused before anything is read.
    async fn read_frames(
        &self,
        project: &ProjectId,
        locations: &[PackLocation],
    ) -> Result<Vec<Bytes>> {
        if locations.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(location) = locations
            .iter()
            .find(|location| location.length as usize > MAX_FRAME_SIZE)
        {
            return Err(StoreError::Oversized {
                project: *project,
                id: location.id,
                len: u64::from(location.length),
            });
        }
        let reads: Vec<(PackId, Range<u64>)> = locations
            .iter()
            .map(|location| (location.pack, location.range()))
            .collect();
        let frames = self.backend.read_ranges(project, &reads).await?;
        if frames.len() != locations.len() {
            return Err(StoreError::Backend {
                operation: "read",
                message: format!("asked for {} ranges, got {}", locations.len(), frames.len()),
            });
        }
        Ok(frames)
    }
}

/// The frame at `location`, if it is the object (id and kind) the location names.
fn verified(location: &PackLocation, frame: Bytes) -> Result<VerifiedObject, CompressError> {
    let (object, _encoded) =
        sync_protocol::verify_frame_of_kind(&location.id, location.kind, &frame)?;
    Ok(VerifiedObject { frame, object })
}

/// [`verified`], keeping the bytes that failed (`reread` compares them with the next read's).
fn checked(location: &PackLocation, frame: Bytes) -> Checked {
    match sync_protocol::verify_frame_of_kind(&location.id, location.kind, &frame) {
        Ok((object, _encoded)) => Ok(VerifiedObject { frame, object }),
        Err(error) => Err((error, frame)),
    }
}

fn integrity(project: &ProjectId, id: ObjectId, error: CompressError) -> StoreError {
    StoreError::Integrity {
        project: *project,
        id,
        error: Box::new(error),
    }
}

fn pack_integrity(project: &ProjectId, pack: PackId, error: PackError) -> StoreError {
    StoreError::PackIntegrity {
        project: *project,
        pack,
        error: Box::new(error),
    }
}

/// Runs `check` on every (location, frame) off the async workers, in a few groups of frames
/// run at once, and returns the results in order.
async fn verify_each<T: Send + 'static>(
    locations: &[PackLocation],
    frames: Vec<Bytes>,
    check: fn(&PackLocation, Bytes) -> T,
) -> Result<Vec<T>> {
    let total: usize = frames.iter().map(Bytes::len).sum();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let group_bytes = (total / cores).max(MIN_VERIFY_GROUP);
    let mut groups = Vec::new();
    let mut group = Vec::new();
    let mut group_len = 0;
    for (location, frame) in locations.iter().copied().zip(frames) {
        group_len += frame.len();
        group.push((location, frame));
        if group_len >= group_bytes {
            groups.push(std::mem::take(&mut group));
            group_len = 0;
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    let tasks = groups.into_iter().map(|group| {
        off_the_workers(move || {
            group
                .into_iter()
                .map(|(location, frame)| check(&location, frame))
                .collect::<Vec<T>>()
        })
    });
    let checked = try_join_all(tasks).await?;
    Ok(checked.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sync_protocol::{Object, compress_object};

    use super::*;
    use crate::store::pack::PackBuilder;
    use crate::store::{MemoryBackend, RequestCounts};

    fn pack_of(objects: &[Object]) -> Pack {
        let mut builder = PackBuilder::new();
        for object in objects {
            let frame = compress_object(&object.encode());
            builder.add(object.id(), object.kind(), object.content_size(), &frame);
        }
        builder.finish()
    }

    fn chunks(count: usize) -> Vec<Object> {
        (0..count)
            .map(|index| Object::Chunk(format!("chunk number {index}").repeat(20).into_bytes()))
            .collect()
    }

    fn locations(pack: &Pack) -> Vec<PackLocation> {
        pack.entries
            .iter()
            .map(|entry| PackLocation::new(pack.id, entry))
            .collect()
    }

    #[tokio::test]
    async fn objects_read_by_location_are_verified() {
        let memory = Arc::new(MemoryBackend::new());
        let store = ObjectStore::from_arc(memory.clone());
        let project = ProjectId::random();
        let objects = chunks(3);
        let pack = pack_of(&objects);
        store.put_pack(&project, &pack).await.unwrap();
        let at = locations(&pack);

        let before = store.request_counts();
        let read = store.read_objects(&project, &[at[2], at[0]]).await.unwrap();
        assert_eq!(read[0].object, objects[2]);
        assert_eq!(read[1].object, objects[0]);
        // The three frames are adjacent: one request serves two of them.
        let used = store.request_counts().since(&before);
        assert_eq!(
            used,
            RequestCounts {
                get: 1,
                ..RequestCounts::default()
            }
        );

        // A flipped byte in the middle frame: that object is an integrity error, the others
        // read, and the pack as a whole no longer has its name.
        let mut bytes = pack.bytes.to_vec();
        bytes[at[1].offset as usize + at[1].length as usize / 2] ^= 0x20;
        memory.overwrite_pack(&project, &pack.id, Bytes::from(bytes));
        match store.read_objects(&project, &at).await {
            Err(StoreError::Integrity { id, .. }) => assert_eq!(id, objects[1].id()),
            other => panic!("expected an integrity error, got {other:?}"),
        }
        let others = store.read_objects(&project, &[at[0], at[2]]).await.unwrap();
        assert_eq!(others[1].object, objects[2]);
        let inspected = store.inspect_objects(&project, &at).await.unwrap();
        assert!(matches!(&inspected[0], Inspected::Valid(valid) if valid.object == objects[0]));
        assert!(matches!(inspected[1], Inspected::Corrupt(_)));
        assert!(matches!(
            store.read_pack(&project, pack.id).await,
            Err(StoreError::PackIntegrity { pack: named, .. }) if named == pack.id
        ));
        // The tail is intact, so the contents still read.
        assert_eq!(
            store.pack_contents(&project, pack.id).await.unwrap(),
            pack.entries
        );
    }

    #[tokio::test]
    async fn a_location_of_the_wrong_kind_is_an_integrity_error() {
        let store = ObjectStore::new(MemoryBackend::new());
        let project = ProjectId::random();
        let pack = pack_of(&chunks(1));
        store.put_pack(&project, &pack).await.unwrap();
        let mut location = locations(&pack)[0];
        location.kind = ObjectKind::Dir;
        match store.read_objects(&project, &[location]).await {
            Err(StoreError::Integrity { id, error, .. }) => {
                assert_eq!(id, location.id);
                assert!(matches!(*error, CompressError::KindMismatch { .. }));
            }
            other => panic!("expected an integrity error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn contents_that_misstate_a_size_fail_the_whole_pack_read() {
        let store = ObjectStore::new(MemoryBackend::new());
        let project = ProjectId::random();
        let object = Object::Chunk(b"sized".to_vec());
        let mut builder = PackBuilder::new();
        let frame = compress_object(&object.encode());
        builder.add(object.id(), object.kind(), 6, &frame);
        let pack = builder.finish();
        store.put_pack(&project, &pack).await.unwrap();
        match store.read_pack(&project, pack.id).await {
            Err(StoreError::PackIntegrity { error, .. }) => assert_eq!(
                *error,
                PackError::SizeMismatch {
                    index: 0,
                    claimed: 6,
                    actual: 5
                }
            ),
            other => panic!("expected a pack integrity error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn bad_batches_make_no_requests() {
        let store = ObjectStore::new(MemoryBackend::new());
        let project = ProjectId::random();
        assert!(store.read_objects(&project, &[]).await.unwrap().is_empty());
        store.delete_packs(&project, &[]).await.unwrap();
        let pack = pack_of(&chunks(1));
        let mut huge = locations(&pack)[0];
        huge.length = MAX_FRAME_SIZE as u32 + 1;
        assert!(matches!(
            store.read_objects(&project, &[huge]).await,
            Err(StoreError::Oversized { id, .. }) if id == huge.id
        ));
        let oversized = Pack {
            bytes: Bytes::from(vec![0; MAX_PACK_LEN + 1]),
            ..pack
        };
        assert!(matches!(
            store.put_pack(&project, &oversized).await,
            Err(StoreError::OversizedPack { .. })
        ));
        assert_eq!(store.request_counts().total(), 0);
    }
}
