//! The hot cache: the objects a node has read or written lately, bounded in bytes.
//!
//! Objects are immutable and named by their hash, so a cached object is never stale: the cache
//! needs no invalidation, only eviction. Heads are not cached (every request reads the head
//! from the catalog). With a load balancer that sends each project to one node, that node's
//! cache holds the project's dirs and recent chunks, and a push or pull touches S3 only for what
//! it writes or has never seen.
//!
//! Entries are the stored frame (what a pull sends as is) and, for dirs and file objects, the
//! decoded object (what the tree walks read); a chunk is decoded from its frame when it is
//! asked for, since only records need its bytes. Eviction is quick_cache's S3-FIFO by weight
//! (frame plus decoded bytes): one-off reads of a clone's chunks are evicted before the dirs
//! that every push and pull walks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};
use sync_protocol::respond::StoredObject;
use sync_protocol::{Object, ObjectId, ObjectKind, decompress_object, max_encoded_len};

use crate::catalog::ProjectId;

/// The cache's default size, in bytes, when the configuration sets none.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Bytes an entry is assumed to hold besides its frame and decoded object (keys, bookkeeping).
const ENTRY_OVERHEAD: u64 = 128;

type Key = (ProjectId, ObjectId);

/// One cached object: its frame and, unless it is a chunk, its decoded form.
#[derive(Debug, Clone)]
struct Entry {
    kind: ObjectKind,
    frame: Bytes,
    decoded: Option<Arc<Object>>,
    weight: u64,
}

#[derive(Debug, Clone, Copy)]
struct ByWeight;

impl Weighter<Key, Entry> for ByWeight {
    fn weight(&self, _key: &Key, entry: &Entry) -> u64 {
        entry.weight
    }
}

/// Counts evictions (quick_cache reports them through its lifecycle hooks).
#[derive(Debug, Clone, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl Lifecycle<Key, Entry> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: Key, _entry: Entry) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the cache has done, for `/metrics` and `admin nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    /// Weight held now, in bytes.
    pub bytes: u64,
    pub objects: u64,
    pub capacity: u64,
}

/// The node's hot object cache. Clones share it.
#[derive(Clone)]
pub struct HotCache {
    cache: Arc<Cache<Key, Entry, ByWeight, DefaultHashBuilder, CountEvictions>>,
    evictions: Arc<AtomicU64>,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
    capacity: u64,
}

impl std::fmt::Debug for HotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotCache")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl HotCache {
    /// A cache holding at most `capacity` bytes (0 turns it off: nothing is kept).
    pub fn new(capacity: u64) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        // About one entry per 4 KiB: the estimate only sizes the tables.
        let estimated = usize::try_from(capacity / 4096)
            .unwrap_or(usize::MAX)
            .max(16);
        let cache = Cache::with(
            estimated,
            capacity.max(1),
            ByWeight,
            DefaultHashBuilder::default(),
            CountEvictions(evictions.clone()),
        );
        Self {
            cache: Arc::new(cache),
            evictions,
            hits: Arc::new(AtomicU64::new(0)),
            misses: Arc::new(AtomicU64::new(0)),
            capacity,
        }
    }

    /// The cached object, decoded; `None` (and a miss counted) when it is not here.
    pub fn get(&self, project: ProjectId, id: &ObjectId) -> Option<StoredObject> {
        let found = (self.capacity > 0)
            .then(|| self.cache.get(&(project, *id)))
            .flatten()
            .and_then(|entry| entry_object(&entry).map(|object| (entry, object)));
        match found {
            Some((entry, object)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(StoredObject {
                    object,
                    frame: entry.frame,
                })
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Keeps a verified object. Chunks keep only their frame.
    pub fn insert(&self, project: ProjectId, id: ObjectId, object: &StoredObject) {
        if self.capacity == 0 {
            return;
        }
        let kind = object.object.kind();
        let decoded = (kind != ObjectKind::Chunk).then(|| Arc::new(object.object.clone()));
        self.insert_entry(project, id, kind, object.frame.clone(), decoded);
    }

    /// Keeps a verified frame whose decoded form is not at hand (a chunk written by a push).
    /// Dirs and file objects are decoded here so the walks that read them find them ready.
    pub fn insert_frame(&self, project: ProjectId, id: ObjectId, kind: ObjectKind, frame: Bytes) {
        if self.capacity == 0 {
            return;
        }
        let decoded = if kind == ObjectKind::Chunk {
            None
        } else {
            match decompress_object(&frame, max_encoded_len(kind))
                .map(|bytes| Object::decode(&bytes))
            {
                Ok(Ok(object)) => Some(Arc::new(object)),
                // A frame that does not decode is not kept; it was verified before, so this
                // does not happen, and a miss is always safe.
                _ => return,
            }
        };
        self.insert_entry(project, id, kind, frame, decoded);
    }

    fn insert_entry(
        &self,
        project: ProjectId,
        id: ObjectId,
        kind: ObjectKind,
        frame: Bytes,
        decoded: Option<Arc<Object>>,
    ) {
        let decoded_len = decoded
            .as_ref()
            .map_or(0, |object| object.encoded_len() as u64);
        let weight = frame.len() as u64 + decoded_len + ENTRY_OVERHEAD;
        if weight > self.capacity {
            return;
        }
        self.cache.insert(
            (project, id),
            Entry {
                kind,
                frame,
                decoded,
                weight,
            },
        );
    }

    /// Drops every entry (the counters stay): as if the node had just started.
    pub fn clear(&self) {
        self.cache.clear();
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes: self.cache.weight(),
            objects: self.cache.len() as u64,
            capacity: self.capacity,
        }
    }
}

/// The decoded object of an entry: kept for dirs and file objects, decompressed for chunks.
fn entry_object(entry: &Entry) -> Option<Object> {
    match &entry.decoded {
        Some(object) => Some(object.as_ref().clone()),
        None => {
            let bytes = decompress_object(&entry.frame, max_encoded_len(entry.kind)).ok()?;
            Object::decode(&bytes).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use sync_protocol::{Dir, compress_object};

    use super::*;

    fn stored(object: Object) -> (ObjectId, StoredObject) {
        let frame = Bytes::from(compress_object(&object.encode()));
        (object.id(), StoredObject { object, frame })
    }

    fn project(n: u8) -> ProjectId {
        ProjectId::from_bytes([n; 16])
    }

    #[test]
    fn objects_come_back_decoded_and_projects_are_apart() {
        let cache = HotCache::new(1 << 20);
        let (chunk_id, chunk) = stored(Object::Chunk(b"hello".to_vec()));
        let (dir_id, dir) = stored(Object::Dir(Dir::empty()));
        cache.insert(project(1), chunk_id, &chunk);
        cache.insert_frame(project(1), dir_id, ObjectKind::Dir, dir.frame.clone());
        assert_eq!(cache.get(project(1), &chunk_id), Some(chunk));
        assert_eq!(cache.get(project(1), &dir_id), Some(dir));
        assert_eq!(cache.get(project(2), &chunk_id), None, "another project's");
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.objects), (2, 1, 2));
        assert!(stats.bytes > 0);
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let capacity = 64 * 1024;
        let cache = HotCache::new(capacity);
        for i in 0..2_000u32 {
            let (id, object) = stored(Object::Chunk(
                format!("chunk {i} {}", "x".repeat(500)).into_bytes(),
            ));
            cache.insert(project(1), id, &object);
        }
        let stats = cache.stats();
        assert!(stats.bytes <= capacity, "{stats:?}");
        assert!(stats.evictions > 0, "{stats:?}");
    }

    #[test]
    fn a_zero_capacity_keeps_nothing() {
        let cache = HotCache::new(0);
        let (id, object) = stored(Object::Chunk(b"x".to_vec()));
        cache.insert(project(1), id, &object);
        assert_eq!(cache.get(project(1), &id), None);
        assert_eq!(cache.stats().objects, 0);
    }
}
