//! An in-memory backend, for unit tests of the layers above the store. Integration tests use the
//! folder and a real S3-compatible server instead.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use sync_protocol::ObjectId;

use super::counts::{RequestCounters, RequestCounts, RequestKind};
use super::pack::{MAX_PACK_LEN, PackId};
use super::{ObjectBackend, Result, StoreError, ranges};
use crate::catalog::ProjectId;

/// Objects and packs in maps. Counts one request per object and per planned range read, like
/// S3 would.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: Mutex<HashMap<(ProjectId, ObjectId), Bytes>>,
    packs: Mutex<HashMap<(ProjectId, PackId), Bytes>>,
    counters: RequestCounters,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces a stored value without any check: for tests of corruption handling.
    pub fn overwrite(&self, project: &ProjectId, id: &ObjectId, value: Bytes) {
        self.lock().insert((*project, *id), value);
    }

    /// Replaces a stored pack without any check: for tests of corruption handling.
    pub fn overwrite_pack(&self, project: &ProjectId, pack: &PackId, value: Bytes) {
        self.lock_packs().insert((*project, *pack), value);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(ProjectId, ObjectId), Bytes>> {
        // The map stays consistent whatever panicked while holding the lock.
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_packs(&self) -> MutexGuard<'_, HashMap<(ProjectId, PackId), Bytes>> {
        self.packs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stored_pack(&self, project: &ProjectId, pack: &PackId) -> Result<Bytes> {
        self.lock_packs()
            .get(&(*project, *pack))
            .cloned()
            .ok_or(StoreError::MissingPack {
                project: *project,
                pack: *pack,
            })
    }
}

#[async_trait]
impl ObjectBackend for MemoryBackend {
    async fn put_many(&self, project: &ProjectId, objects: Vec<(ObjectId, Bytes)>) -> Result<()> {
        self.counters.add(RequestKind::Put, objects.len() as u64);
        let mut map = self.lock();
        for (id, frame) in objects {
            map.entry((*project, id)).or_insert(frame);
        }
        Ok(())
    }

    async fn get_many(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<Vec<Option<Bytes>>> {
        self.counters.add(RequestKind::Get, ids.len() as u64);
        let map = self.lock();
        Ok(ids
            .iter()
            .map(|id| map.get(&(*project, *id)).cloned())
            .collect())
    }

    async fn missing(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<Vec<ObjectId>> {
        let map = self.lock();
        let mut seen = HashSet::new();
        let unique: Vec<ObjectId> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        self.counters.add(RequestKind::Head, unique.len() as u64);
        Ok(unique
            .into_iter()
            .filter(|id| !map.contains_key(&(*project, *id)))
            .collect())
    }

    async fn list(&self, project: &ProjectId) -> Result<Vec<ObjectId>> {
        self.counters.add(RequestKind::List, 1);
        Ok(self
            .lock()
            .keys()
            .filter(|(owner, _)| owner == project)
            .map(|(_, id)| *id)
            .collect())
    }

    async fn delete_many(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<()> {
        self.counters.add(RequestKind::Delete, ids.len() as u64);
        let mut map = self.lock();
        for id in ids {
            map.remove(&(*project, *id));
        }
        Ok(())
    }

    async fn put_pack(&self, project: &ProjectId, pack: PackId, bytes: Bytes) -> Result<()> {
        self.counters.add(RequestKind::Put, 1);
        self.lock_packs().entry((*project, pack)).or_insert(bytes);
        Ok(())
    }

    async fn read_ranges(
        &self,
        project: &ProjectId,
        reads: &[(PackId, Range<u64>)],
    ) -> Result<Vec<Bytes>> {
        ranges::check(reads)?;
        let fetches = ranges::plan(reads);
        self.counters.add(RequestKind::Get, fetches.len() as u64);
        let mut fetched = Vec::with_capacity(fetches.len());
        for fetch in &fetches {
            let bytes = self.stored_pack(project, &fetch.pack)?;
            // Like S3 and a file, a range past the end comes back short.
            let len = bytes.len() as u64;
            let (start, end) = (fetch.range.start.min(len), fetch.range.end.min(len));
            fetched.push(bytes.slice(start as usize..end as usize));
        }
        ranges::split(project, reads, &fetches, fetched)
    }

    async fn read_pack(&self, project: &ProjectId, pack: PackId) -> Result<Bytes> {
        self.counters.add(RequestKind::Get, 1);
        let bytes = self.stored_pack(project, &pack)?;
        if bytes.len() > MAX_PACK_LEN {
            return Err(StoreError::OversizedPack {
                project: *project,
                pack,
                len: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    async fn read_tail(&self, project: &ProjectId, pack: PackId, len: u64) -> Result<(Bytes, u64)> {
        self.counters.add(RequestKind::Get, 1);
        let bytes = self.stored_pack(project, &pack)?;
        let start = bytes.len().saturating_sub(len as usize);
        Ok((bytes.slice(start..), bytes.len() as u64))
    }

    async fn pack_len(&self, project: &ProjectId, pack: PackId) -> Result<Option<u64>> {
        self.counters.add(RequestKind::Head, 1);
        Ok(self
            .lock_packs()
            .get(&(*project, pack))
            .map(|bytes| bytes.len() as u64))
    }

    async fn list_packs(&self, project: &ProjectId) -> Result<Vec<(PackId, u64)>> {
        self.counters.add(RequestKind::List, 1);
        Ok(self
            .lock_packs()
            .iter()
            .filter(|((owner, _), _)| owner == project)
            .map(|((_, pack), bytes)| (*pack, bytes.len() as u64))
            .collect())
    }

    async fn delete_packs(&self, project: &ProjectId, packs: &[PackId]) -> Result<()> {
        self.counters.add(RequestKind::Delete, packs.len() as u64);
        let mut map = self.lock_packs();
        for pack in packs {
            map.remove(&(*project, *pack));
        }
        Ok(())
    }

    fn request_counts(&self) -> RequestCounts {
        self.counters.snapshot()
    }
}
