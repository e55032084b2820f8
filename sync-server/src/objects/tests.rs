//! `ProjectObjects` beside a layout conversion that runs at the worst moment.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use sync_protocol::{Object, compress_object};

use super::*;
use crate::catalog::{NewAccount, SqliteCatalog};
use crate::store::pack::PackId;
use crate::store::{MemoryBackend, ObjectBackend, RequestCounts};

/// A backend over which `admin convert-layout` runs at the worst moment: the first time an
/// object is read under its own key, it is packed, indexed and its key deleted, just before
/// the read reaches the key.
#[derive(Debug)]
struct ConvertedMidRead {
    inner: Arc<MemoryBackend>,
    catalog: Arc<dyn Catalog>,
    converted: Mutex<HashSet<ObjectId>>,
}

impl ConvertedMidRead {
    async fn convert(&self, project: &ProjectId, ids: &[ObjectId]) {
        let fresh: Vec<ObjectId> = {
            let mut converted = self.converted.lock().unwrap();
            ids.iter()
                .copied()
                .filter(|id| converted.insert(*id))
                .collect()
        };
        let store = ObjectStore::from_arc(self.inner.clone());
        let read = store.get_objects(project, &fresh).await.unwrap();
        let objects: Vec<ToStore> = fresh
            .iter()
            .zip(read)
            .filter_map(|(id, object)| {
                let object = object?;
                Some(ToStore {
                    id: *id,
                    info: ObjectInfo::of(&object.object),
                    frame: object.frame,
                })
            })
            .collect();
        let cache = HotCache::new(0);
        let converter = ProjectObjects {
            catalog: self.catalog.as_ref(),
            store: &store,
            cache: &cache,
            project: *project,
            legacy: true,
        };
        converter.store(&objects).await.unwrap();
        self.inner.delete_many(project, &fresh).await.unwrap();
    }
}

#[async_trait]
impl ObjectBackend for ConvertedMidRead {
    async fn put_many(
        &self,
        project: &ProjectId,
        objects: Vec<(ObjectId, Bytes)>,
    ) -> crate::store::Result<()> {
        self.inner.put_many(project, objects).await
    }
    async fn get_many(
        &self,
        project: &ProjectId,
        ids: &[ObjectId],
    ) -> crate::store::Result<Vec<Option<Bytes>>> {
        self.convert(project, ids).await;
        self.inner.get_many(project, ids).await
    }
    async fn missing(
        &self,
        project: &ProjectId,
        ids: &[ObjectId],
    ) -> crate::store::Result<Vec<ObjectId>> {
        self.inner.missing(project, ids).await
    }
    async fn list(&self, project: &ProjectId) -> crate::store::Result<Vec<ObjectId>> {
        self.inner.list(project).await
    }
    async fn delete_many(&self, project: &ProjectId, ids: &[ObjectId]) -> crate::store::Result<()> {
        self.inner.delete_many(project, ids).await
    }
    async fn put_pack(
        &self,
        project: &ProjectId,
        pack: PackId,
        bytes: Bytes,
    ) -> crate::store::Result<()> {
        self.inner.put_pack(project, pack, bytes).await
    }
    async fn read_ranges(
        &self,
        project: &ProjectId,
        reads: &[(PackId, Range<u64>)],
    ) -> crate::store::Result<Vec<Bytes>> {
        self.inner.read_ranges(project, reads).await
    }
    async fn read_pack(&self, project: &ProjectId, pack: PackId) -> crate::store::Result<Bytes> {
        self.inner.read_pack(project, pack).await
    }
    async fn read_tail(
        &self,
        project: &ProjectId,
        pack: PackId,
        len: u64,
    ) -> crate::store::Result<(Bytes, u64)> {
        self.inner.read_tail(project, pack, len).await
    }
    async fn pack_len(
        &self,
        project: &ProjectId,
        pack: PackId,
    ) -> crate::store::Result<Option<u64>> {
        self.inner.pack_len(project, pack).await
    }
    async fn list_packs(&self, project: &ProjectId) -> crate::store::Result<Vec<(PackId, u64)>> {
        self.inner.list_packs(project).await
    }
    async fn delete_packs(
        &self,
        project: &ProjectId,
        packs: &[PackId],
    ) -> crate::store::Result<()> {
        self.inner.delete_packs(project, packs).await
    }
    fn request_counts(&self) -> RequestCounts {
        self.inner.request_counts()
    }
}

/// A read of a legacy project that misses in the index, then finds the key gone because a
/// conversion packed the object meanwhile, still finds the object: in the index, again.
#[tokio::test]
async fn a_conversion_racing_a_read_does_not_make_it_miss() {
    let dir = tempfile::tempdir().unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(
        SqliteCatalog::open(dir.path().join("catalog.sqlite3"))
            .await
            .unwrap(),
    );
    let account = catalog
        .create_account(NewAccount {
            name: "ada".to_owned(),
            email: "ada@example.com".to_owned(),
            password_hash: "not a real hash".to_owned(),
        })
        .await
        .unwrap();
    let team = catalog.create_team("crew", account.id).await.unwrap();
    let project = catalog
        .create_project(team.id, "api", account.id)
        .await
        .unwrap()
        .id;
    let inner = Arc::new(MemoryBackend::new());
    let read = Object::Chunk(b"read".to_vec());
    let stat = Object::Chunk(b"stat".to_vec());
    let frames =
        [&read, &stat].map(|object| (object.id(), Bytes::from(compress_object(&object.encode()))));
    inner.put_many(&project, frames.to_vec()).await.unwrap();
    let store = ObjectStore::new(ConvertedMidRead {
        inner: inner.clone(),
        catalog: catalog.clone(),
        converted: Mutex::default(),
    });
    let cache = HotCache::new(0);
    let objects = ProjectObjects {
        catalog: catalog.as_ref(),
        store: &store,
        cache: &cache,
        project,
        legacy: true,
    };

    let found = objects.read(&[read.id()]).await.unwrap();
    assert_eq!(found[0].as_ref().map(|found| &found.object), Some(&read));
    let infos = objects.info(&[stat.id()], true).await.unwrap();
    assert_eq!(infos, vec![Some(ObjectInfo::of(&stat))]);
    // Both were converted under the reads' feet.
    assert!(inner.list(&project).await.unwrap().is_empty());
}
