//! A project's objects, as the handlers and the protocol machines' drivers see them: the
//! catalog's object index, the packs in the object store and the node's hot cache behind one
//! interface.
//!
//! - **Reading** looks in the hot cache, then asks the index where the rest are (one query) and
//!   reads their frames from their packs by ranges (nearby frames in one request), verifies
//!   them and keeps them in the cache. A clone on a node that has not seen the project loads
//!   the project's packs whole, in parallel, when they fit the cache ([`ProjectObjects::warm`]).
//! - **Kind and size** (the push acceptor's questions) and **which are stored** (the resume
//!   path) are one index query; a push's lookups touch the rows, which keeps the objects it
//!   references safe from a garbage collection running meanwhile.
//! - **Storing** writes the objects as packs of at most `pack::MAX_PACK_LEN` (one store write
//!   each), indexes each pack once it is durable, and writes the objects through the cache. The
//!   closure invariant holds because an object is findable only through its index row, and a
//!   pack's rows are committed in one transaction after the pack and every pack before it.
//! - **Projects from before packs** (the legacy layout, one stored value per object) still
//!   read: an object the index does not have is looked for under its own key. Their new pushes
//!   are packed like any other; `sync-server admin convert-layout` packs the rest (`convert`).
//!   It deletes a key only once the object is indexed, so a key found gone is looked up in the
//!   index again: a conversion running beside this node never makes a read miss.

use std::collections::{BTreeMap, HashMap, HashSet};

use sync_protocol::ObjectId;
use sync_protocol::accept::{ObjectInfo, ToStore};
use sync_protocol::respond::StoredObject;

use crate::cache::HotCache;
use crate::catalog::{Catalog, PackRecord, ProjectId};
use crate::store::pack::{MAX_PACK_LEN, PackBuilder};
use crate::store::{ObjectStore, PackLocation, StoreError};

/// Why reading or storing a project's objects failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

/// What [`ProjectObjects::store`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stored {
    /// Objects in the packs written (each new to the index, unless a concurrent push indexed
    /// it first).
    pub objects: u64,
    pub packs: u64,
    /// The packs' bytes.
    pub bytes: u64,
}

/// One project's objects on this node.
#[derive(Debug, Clone, Copy)]
pub struct ProjectObjects<'a> {
    catalog: &'a dyn Catalog,
    store: &'a ObjectStore,
    cache: &'a HotCache,
    project: ProjectId,
    /// Objects the index lacks may still be stored one per key.
    legacy: bool,
}

/// Which projects are known to be packed: a project never goes back to the legacy layout, so
/// once seen packed it need not be asked again.
#[derive(Debug, Default)]
pub struct Layouts {
    packed: std::sync::RwLock<HashSet<ProjectId>>,
}

impl Layouts {
    async fn is_legacy(
        &self,
        catalog: &dyn Catalog,
        project: ProjectId,
    ) -> Result<bool, ObjectsError> {
        if self
            .packed
            .read()
            .is_ok_and(|packed| packed.contains(&project))
        {
            return Ok(false);
        }
        // An unknown project has no objects; treat it as packed (nothing to fall back to).
        let legacy = catalog.legacy_layout(project).await?.unwrap_or(false);
        if !legacy && let Ok(mut packed) = self.packed.write() {
            packed.insert(project);
        }
        Ok(legacy)
    }
}

impl<'a> ProjectObjects<'a> {
    /// The objects of `project` in `store`, found through `catalog`'s index, kept in `cache`.
    pub async fn open(
        catalog: &'a dyn Catalog,
        store: &'a ObjectStore,
        cache: &'a HotCache,
        layouts: &Layouts,
        project: ProjectId,
    ) -> Result<Self, ObjectsError> {
        let legacy = layouts.is_legacy(catalog, project).await?;
        Ok(Self {
            catalog,
            store,
            cache,
            project,
            legacy,
        })
    }

    pub fn project(&self) -> ProjectId {
        self.project
    }

    /// The verified objects of `ids`, in order; `None` where not stored.
    pub async fn read(&self, ids: &[ObjectId]) -> Result<Vec<Option<StoredObject>>, ObjectsError> {
        let mut found: Vec<Option<StoredObject>> = ids
            .iter()
            .map(|id| self.cache.get(self.project, id))
            .collect();
        let wanted: Vec<ObjectId> = ids
            .iter()
            .zip(&found)
            .filter(|(_, object)| object.is_none())
            .map(|(id, _)| *id)
            .collect();
        if wanted.is_empty() {
            return Ok(found);
        }
        let located = self.catalog.locate(self.project, &wanted, false).await?;
        let mut locations = Vec::new();
        let mut unindexed = Vec::new();
        for (id, location) in wanted.iter().zip(located) {
            match location {
                Some(row) => locations.push(PackLocation::from(&row)),
                None => unindexed.push(*id),
            }
        }
        let mut read: HashMap<ObjectId, StoredObject> = HashMap::new();
        self.read_packed(&locations, &mut read).await?;
        if self.legacy && !unindexed.is_empty() {
            let loose = self.store.get_objects(&self.project, &unindexed).await?;
            let mut gone = Vec::new();
            for (id, object) in unindexed.iter().zip(loose) {
                match object {
                    Some(object) => {
                        self.cache.insert(self.project, *id, &object);
                        read.insert(*id, object);
                    }
                    None => gone.push(*id),
                }
            }
            // `admin convert-layout` may have packed these and deleted their keys between the
            // index lookup and this read: if so, the index has them now.
            if !gone.is_empty() {
                let located = self.catalog.locate(self.project, &gone, false).await?;
                let locations: Vec<PackLocation> =
                    located.iter().flatten().map(PackLocation::from).collect();
                self.read_packed(&locations, &mut read).await?;
            }
        }
        for (slot, id) in found.iter_mut().zip(ids) {
            if slot.is_none() {
                *slot = read.get(id).cloned();
            }
        }
        Ok(found)
    }

    /// The push's reads: like [`ProjectObjects::read`], but the index is asked first, touching
    /// the rows it finds. An object a garbage collection has dropped is then not stored, however
    /// long this node's cache keeps it (the cache answers only what the index vouches for), and
    /// what a push reads is kept by a collection running meanwhile.
    pub async fn read_referenced(
        &self,
        ids: &[ObjectId],
    ) -> Result<Vec<Option<StoredObject>>, ObjectsError> {
        let located = self.catalog.locate(self.project, ids, true).await?;
        let mut found: Vec<Option<StoredObject>> = vec![None; ids.len()];
        let mut locations = Vec::new();
        let mut unindexed = Vec::new();
        for ((slot, id), row) in found.iter_mut().zip(ids).zip(&located) {
            match row {
                Some(row) => match self.cache.get(self.project, id) {
                    Some(object) => *slot = Some(object),
                    None => locations.push(PackLocation::from(row)),
                },
                None => unindexed.push(*id),
            }
        }
        let mut read: HashMap<ObjectId, StoredObject> = HashMap::new();
        self.read_packed(&locations, &mut read).await?;
        if self.legacy && !unindexed.is_empty() {
            // Collection skips legacy projects: their cached objects stay stored.
            for (id, object) in unindexed.iter().zip(self.read(&unindexed).await?) {
                if let Some(object) = object {
                    read.insert(*id, object);
                }
            }
        }
        for (slot, id) in found.iter_mut().zip(ids) {
            if slot.is_none() {
                *slot = read.remove(id);
            }
        }
        Ok(found)
    }

    /// Reads the objects at `locations` from their packs into `read` and the cache.
    async fn read_packed(
        &self,
        locations: &[PackLocation],
        read: &mut HashMap<ObjectId, StoredObject>,
    ) -> Result<(), ObjectsError> {
        if locations.is_empty() {
            return Ok(());
        }
        let objects = self.store.read_objects(&self.project, locations).await?;
        for (location, object) in locations.iter().zip(objects) {
            self.cache.insert(self.project, location.id, &object);
            read.insert(location.id, object);
        }
        Ok(())
    }

    /// The kind and size of each of `ids`, in order; `None` where not stored. With `touch`, the
    /// index rows found are marked as just referenced (a push's lookups), so a garbage
    /// collection that started before cannot drop them.
    pub async fn info(
        &self,
        ids: &[ObjectId],
        touch: bool,
    ) -> Result<Vec<Option<ObjectInfo>>, ObjectsError> {
        let located = self.catalog.locate(self.project, ids, touch).await?;
        let mut infos: Vec<Option<ObjectInfo>> = located
            .iter()
            .map(|row| {
                row.as_ref().map(|row| ObjectInfo {
                    kind: row.kind,
                    size: row.size,
                })
            })
            .collect();
        if self.legacy {
            let unindexed: Vec<ObjectId> = ids
                .iter()
                .zip(&infos)
                .filter(|(_, info)| info.is_none())
                .map(|(id, _)| *id)
                .collect();
            if !unindexed.is_empty() {
                let loose: HashMap<ObjectId, ObjectInfo> = unindexed
                    .iter()
                    .zip(self.store.info(&self.project, &unindexed).await?)
                    .filter_map(|(id, info)| Some((*id, info?)))
                    .collect();
                for (slot, id) in infos.iter_mut().zip(ids) {
                    if slot.is_none() {
                        *slot = loose.get(id).copied();
                    }
                }
                // As in `read`: a conversion may have packed the rest meanwhile.
                let gone: Vec<ObjectId> = unindexed
                    .into_iter()
                    .filter(|id| !loose.contains_key(id))
                    .collect();
                if !gone.is_empty() {
                    let located: HashMap<ObjectId, ObjectInfo> = self
                        .catalog
                        .locate(self.project, &gone, touch)
                        .await?
                        .into_iter()
                        .flatten()
                        .map(|row| {
                            let info = ObjectInfo {
                                kind: row.kind,
                                size: row.size,
                            };
                            (row.id, info)
                        })
                        .collect();
                    for (slot, id) in infos.iter_mut().zip(ids) {
                        if slot.is_none() {
                            *slot = located.get(id).copied();
                        }
                    }
                }
            }
        }
        Ok(infos)
    }

    /// The ids among `ids` that are not stored, in their order, without duplicates.
    pub async fn missing(&self, ids: &[ObjectId]) -> Result<Vec<ObjectId>, ObjectsError> {
        let located = self.catalog.locate(self.project, ids, false).await?;
        let mut seen = HashSet::new();
        let mut missing: Vec<ObjectId> = ids
            .iter()
            .zip(located)
            .filter(|(id, row)| row.is_none() && seen.insert(**id))
            .map(|(id, _)| *id)
            .collect();
        if self.legacy && !missing.is_empty() {
            missing = self.store.missing(&self.project, &missing).await?;
        }
        Ok(missing)
    }

    /// Stores verified objects, leaves first: packs of at most `MAX_PACK_LEN`, each written,
    /// then indexed, then kept in the cache. Objects already indexed are left where they are.
    pub async fn store(&self, objects: &[ToStore]) -> Result<Stored, ObjectsError> {
        let mut packs: Vec<PackBuilder> = vec![PackBuilder::new()];
        let mut seen = HashSet::new();
        for object in objects {
            if !seen.insert(object.id) {
                continue;
            }
            let current = packs
                .last_mut()
                .filter(|pack| !pack.would_overflow(object.frame.len()));
            let pack = match current {
                Some(pack) => pack,
                None => {
                    packs.push(PackBuilder::new());
                    packs
                        .last_mut()
                        .unwrap_or_else(|| unreachable!("just pushed"))
                }
            };
            pack.add(object.id, object.info.kind, object.info.size, &object.frame);
        }
        let frames: HashMap<ObjectId, &ToStore> =
            objects.iter().map(|object| (object.id, object)).collect();
        let mut stored = Stored::default();
        for builder in packs.into_iter().filter(|pack| !pack.is_empty()) {
            let pack = builder.finish();
            debug_assert!(pack.bytes.len() <= MAX_PACK_LEN || pack.entries.len() == 1);
            self.store.put_pack(&self.project, &pack).await?;
            let (record, rows) = (pack.record(), pack.index_rows());
            self.catalog
                .index_pack(self.project, &record, &rows)
                .await?;
            stored.objects += rows.len() as u64;
            stored.packs += 1;
            stored.bytes += pack.bytes.len() as u64;
            for entry in &pack.entries {
                if let Some(object) = frames.get(&entry.id) {
                    self.cache.insert_frame(
                        self.project,
                        entry.id,
                        entry.kind,
                        object.frame.clone(),
                    );
                }
            }
        }
        Ok(stored)
    }

    /// Loads the project's packs whole into the cache, in parallel, when all of them together
    /// take at most half the cache: what a clone on a node that never saw the project does
    /// first, so it reads a few whole packs instead of a range per tree level. Packs this node
    /// has already loaded are not read again.
    pub async fn warm(&self, loaded: &WarmPacks) -> Result<(), ObjectsError> {
        let packs = self.catalog.packs(self.project).await?;
        let total: u64 = packs.iter().map(|pack| pack.length).sum();
        if packs.is_empty() || total > self.cache.stats().capacity / 2 {
            return Ok(());
        }
        let wanted: Vec<PackRecord> = packs
            .into_iter()
            .filter(|pack| !loaded.contains(self.project, pack.id))
            .collect();
        let reads = wanted
            .iter()
            .map(|pack| self.store.read_pack_objects(&self.project, pack.id));
        let loads = futures_util::future::join_all(reads).await;
        for (record, load) in wanted.iter().zip(loads) {
            match load {
                Ok((_, objects)) => {
                    for (id, object) in objects {
                        self.cache.insert(self.project, id, &object);
                    }
                    loaded.insert(self.project, record.id);
                }
                // Loading ahead is only a shortcut: a pack that does not read whole is read
                // object by object when the pull needs its objects, and a damaged one then
                // fails naming the object.
                Err(error) => {
                    tracing::warn!(project = %self.project, pack = %record.id, %error, "a pack did not load whole");
                }
            }
        }
        Ok(())
    }
}

/// Which packs this node has loaded whole into its cache (they may have been evicted since:
/// this only saves a second whole read in a row).
#[derive(Debug, Default)]
pub struct WarmPacks {
    loaded: std::sync::Mutex<BTreeMap<ProjectId, HashSet<crate::store::pack::PackId>>>,
}

impl WarmPacks {
    fn contains(&self, project: ProjectId, pack: crate::store::pack::PackId) -> bool {
        self.loaded.lock().is_ok_and(|loaded| {
            loaded
                .get(&project)
                .is_some_and(|packs| packs.contains(&pack))
        })
    }

    fn insert(&self, project: ProjectId, pack: crate::store::pack::PackId) {
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.entry(project).or_default().insert(pack);
        }
    }
}

#[cfg(test)]
mod tests;
