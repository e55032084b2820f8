//! An in-memory backend, for unit tests of the layers above the store. Integration tests use the
//! folder and a real S3-compatible server instead.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use sync_protocol::ObjectId;

use super::counts::{RequestCounters, RequestCounts, RequestKind};
use super::{ObjectBackend, Result};
use crate::catalog::ProjectId;

/// Objects in a map. Counts one request per object, like S3 would.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: Mutex<HashMap<(ProjectId, ObjectId), Bytes>>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ProjectId, ObjectId), Bytes>> {
        // The map stays consistent whatever panicked while holding the lock.
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    fn request_counts(&self) -> RequestCounts {
        self.counters.snapshot()
    }
}
