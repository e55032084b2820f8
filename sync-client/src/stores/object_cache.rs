//! The local object cache: zstd frames keyed by object id, exactly the bytes that go on the
//! wire, kept loose (`.cairn/objects/<2 hex>/<62 hex>`, one file an object) or in packs
//! (`.cairn/objects/pack/*.pack`, see [`super::pack`]).
//!
//! The cache holds the objects of files the scanner has read (to be pushed) and the objects a pull
//! downloaded (to be written into the working copy). Objects are written one at a time as loose
//! files; a pull of [`UNPACK_LIMIT`] objects or more writes one pack instead (git's rule and
//! number), so a clone creates one file for its objects, not one per object. Writes are atomic
//! (temp file and rename) but not fsynced: every read is verified against its id, a damaged or
//! torn object is removed and reported (a damaged pack as a whole: its objects are then missing),
//! and everything in the cache can be fetched again or re-read from the working copy.
//!
//! Packs do not pile up: once a pull's pack makes more than [`PACK_LIMIT`] of them, they are
//! merged into one (each frame verified on the way; a duplicate kept once). Loose objects are
//! left as they are.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sync_protocol::tree::ObjectSource;
use sync_protocol::{
    CompressError, Dir, FileObject, Object, ObjectId, ObjectKind, compress_object, verify_frame,
    verify_frame_of_kind,
};

use super::atomic::{Durability, Mode, Replace, is_already_exists, write_atomic_with};
use super::pack::{Damaged, Pack, PackWriter, pack_paths};
use crate::error::{ClientError, io_error};

/// A pull of fewer objects than this stores them loose; one of this many or more, as one pack.
pub const UNPACK_LIMIT: usize = 100;

/// The most packs the cache keeps; one more and they are merged into one.
pub const PACK_LIMIT: usize = 16;

/// The folder of packs, under the objects folder.
const PACK_DIR: &str = "pack";

/// The packs of a cache, opened on first use and shared by its clones.
type Packs = Arc<RwLock<Option<Vec<Arc<Pack>>>>>;

/// Where a frame was read from, so a damaged one is dropped from the right place.
enum Source {
    Loose,
    Pack(Arc<Pack>),
}

/// A folder of verified object frames keyed by id.
#[derive(Debug, Clone)]
pub struct ObjectCache {
    dir: PathBuf,
    packs: Packs,
}

impl ObjectCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            packs: Packs::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    fn pack_dir(&self) -> PathBuf {
        self.dir.join(PACK_DIR)
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.in_pack(id).is_some() || self.path_of(id).is_file()
    }

    /// The packs, opened now if they were not yet. A damaged pack is removed (its objects are
    /// missing); one that cannot be read now is skipped.
    fn with_packs<T>(&self, work: impl FnOnce(&[Arc<Pack>]) -> T) -> T {
        {
            let packs = self
                .packs
                .read()
                .unwrap_or_else(|poison| poison.into_inner());
            if let Some(packs) = packs.as_deref() {
                return work(packs);
            }
        }
        let mut packs = self
            .packs
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        let packs = packs.get_or_insert_with(|| self.open_packs(&[]));
        work(packs)
    }

    /// Opens the packs in the folder other than `known`.
    fn open_packs(&self, known: &[Arc<Pack>]) -> Vec<Arc<Pack>> {
        let Ok(paths) = pack_paths(&self.pack_dir()) else {
            return Vec::new();
        };
        let mut opened = Vec::new();
        for path in paths {
            if known.iter().any(|pack| pack.path() == path) {
                continue;
            }
            match Pack::open(&path) {
                Ok(Ok(pack)) => opened.push(Arc::new(pack)),
                Ok(Err(Damaged(_))) => {
                    let _ = fs::remove_file(&path);
                }
                Err(_) => {}
            }
        }
        opened
    }

    /// Looks for packs written since they were opened (by another cache of the same folder or
    /// another process): true when there are new ones.
    fn refresh_packs(&self) -> bool {
        let mut packs = self
            .packs
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        let Some(known) = packs.as_mut() else {
            // Not opened yet: the next use opens them all.
            return true;
        };
        let new = self.open_packs(known);
        let found = !new.is_empty();
        known.extend(new);
        found
    }

    /// The pack holding `id`, if any.
    fn in_pack(&self, id: &ObjectId) -> Option<Arc<Pack>> {
        self.with_packs(|packs| packs.iter().find(|pack| pack.contains(id)).cloned())
    }

    /// How many packs the cache has.
    pub fn pack_count(&self) -> usize {
        self.with_packs(<[_]>::len)
    }

    /// Forgets a damaged pack and removes it: its objects read as missing from now on.
    fn drop_pack(&self, damaged: &Arc<Pack>) {
        let mut packs = self
            .packs
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(packs) = packs.as_mut() {
            packs.retain(|pack| !Arc::ptr_eq(pack, damaged));
        }
        let _ = fs::remove_file(damaged.path());
    }

    /// A sink for the objects of one pull: see [`PulledObjects`].
    pub fn pulled_objects(&self) -> PulledObjects<'_> {
        PulledObjects {
            cache: self,
            pending: Vec::new(),
            pack: None,
        }
    }

    /// Adds a finished pack to the cache, then merges the packs into one if there are more than
    /// [`PACK_LIMIT`].
    fn add_pack(&self, pack: Pack) -> Result<(), ClientError> {
        let count = {
            // Opened first, so a pack written by someone else meanwhile is not lost from view.
            self.with_packs(|_| ());
            let mut packs = self
                .packs
                .write()
                .unwrap_or_else(|poison| poison.into_inner());
            let packs = packs.get_or_insert_with(Vec::new);
            if !packs.iter().any(|known| known.path() == pack.path()) {
                packs.push(Arc::new(pack));
            }
            packs.len()
        };
        if count > PACK_LIMIT {
            self.repack()?;
        }
        Ok(())
    }

    /// Merges every pack into one: each frame verified (a damaged one is left out, so it is
    /// missing), each id once. The old packs are removed once the new one is in place; a reader
    /// that has one open keeps reading it.
    pub fn repack(&self) -> Result<(), ClientError> {
        let old: Vec<Arc<Pack>> = self.with_packs(<[_]>::to_vec);
        let mut writer = PackWriter::create(&self.pack_dir())?;
        for pack in &old {
            for id in pack.ids() {
                if writer.contains(&id) {
                    continue;
                }
                if let Some(Ok(frame)) = pack.frame(&id)
                    && verify_frame(&id, &frame).is_ok()
                {
                    writer.add(&id, &frame)?;
                }
            }
        }
        let merged = Arc::new(writer.finish()?);
        {
            let mut packs = self
                .packs
                .write()
                .unwrap_or_else(|poison| poison.into_inner());
            let packs = packs.get_or_insert_with(Vec::new);
            packs.retain(|pack| !old.iter().any(|gone| Arc::ptr_eq(pack, gone)));
            packs.retain(|pack| pack.path() != merged.path());
            packs.push(merged.clone());
        }
        for pack in &old {
            if pack.path() != merged.path() {
                let _ = fs::remove_file(pack.path());
            }
        }
        Ok(())
    }

    /// Compresses and stores `object` unless it is already there. Returns its id and whether it
    /// was new.
    pub fn put_object(&self, object: &Object) -> Result<(ObjectId, bool), ClientError> {
        let id = object.id();
        if self.contains(&id) {
            return Ok((id, false));
        }
        let frame = compress_object(&object.encode());
        let added = self.store(&id, &frame)?;
        Ok((id, added))
    }

    /// Stores a frame this process encoded itself (`sync_protocol::chunking`), unchecked.
    pub fn put_encoded(&self, id: &ObjectId, frame: &[u8]) -> Result<bool, ClientError> {
        if self.contains(id) {
            return Ok(false);
        }
        self.store(id, frame)
    }

    /// Stores a frame received from a peer, after checking it is the object `id`.
    pub fn put_frame(&self, id: &ObjectId, frame: &[u8]) -> Result<bool, ClientError> {
        if self.contains(id) {
            return Ok(false);
        }
        verify_frame(id, frame).map_err(|source| ClientError::ObjectCorrupt { id: *id, source })?;
        self.store(id, frame)
    }

    fn store(&self, id: &ObjectId, frame: &[u8]) -> Result<bool, ClientError> {
        let path = self.path_of(id);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_error("create folder", parent))?;
        }
        let written = write_atomic_with(
            &path,
            Mode::Umask(0o644),
            Replace::NoClobber,
            Durability::Cache,
            |file| io::Write::write_all(file, frame).map_err(io_error("write", path.clone())),
        );
        match written {
            Ok(_) => Ok(true),
            // Another thread or process stored the same object first: same id, same bytes.
            Err(error) if is_already_exists(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The stored frame of `id`, verified.
    pub fn frame(&self, id: &ObjectId) -> Result<Vec<u8>, ClientError> {
        let (frame, source) = self.read(id)?;
        self.check(id, &source, verify_frame(id, &frame))?;
        Ok(frame)
    }

    /// The stored frame of `id`, verified, with its object's kind: what a push streams.
    pub fn frame_with_kind(&self, id: &ObjectId) -> Result<(ObjectKind, Vec<u8>), ClientError> {
        let (frame, source) = self.read(id)?;
        let (object, _) = self.check(id, &source, verify_frame(id, &frame))?;
        Ok((object.kind(), frame))
    }

    /// The object `id`, verified, which must be of `kind`.
    pub fn object(&self, id: &ObjectId, kind: ObjectKind) -> Result<Object, ClientError> {
        let (frame, source) = self.read(id)?;
        let (object, _) = self.check(id, &source, verify_frame_of_kind(id, kind, &frame))?;
        Ok(object)
    }

    /// The stored frame of `id` from a pack, else loose; packs written since this cache opened
    /// its packs are looked for before `id` is called missing.
    fn read(&self, id: &ObjectId) -> Result<(Vec<u8>, Source), ClientError> {
        if let Some(found) = self.read_packed(id)? {
            return Ok(found);
        }
        let path = self.path_of(id);
        match fs::read(&path) {
            Ok(frame) => Ok((frame, Source::Loose)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if self.refresh_packs()
                    && let Some(found) = self.read_packed(id)?
                {
                    return Ok(found);
                }
                Err(ClientError::ObjectMissing { id: *id })
            }
            Err(error) => Err(ClientError::io("read", path, error)),
        }
    }

    fn read_packed(&self, id: &ObjectId) -> Result<Option<(Vec<u8>, Source)>, ClientError> {
        let Some(pack) = self.in_pack(id) else {
            return Ok(None);
        };
        match pack.frame(id) {
            Some(Ok(frame)) => Ok(Some((frame, Source::Pack(pack)))),
            Some(Err(error)) => Err(ClientError::io("read", pack.path(), error)),
            None => Ok(None),
        }
    }

    fn check<T>(
        &self,
        id: &ObjectId,
        source: &Source,
        verified: Result<T, CompressError>,
    ) -> Result<T, ClientError> {
        verified.map_err(|error| {
            // A damaged cache entry is worthless and would fail every later read too. A kind
            // mismatch is not damage: the id fixes the kind, so whoever referenced it was wrong.
            if !matches!(error, CompressError::KindMismatch { .. }) {
                match source {
                    Source::Loose => {
                        let _ = fs::remove_file(self.path_of(id));
                    }
                    // A pack with one damaged frame may have more: all of it goes, and what
                    // is needed is fetched again.
                    Source::Pack(pack) => self.drop_pack(pack),
                }
            }
            ClientError::ObjectCorrupt {
                id: *id,
                source: error,
            }
        })
    }
}

/// Lets the protocol's tree algorithms (`tree::flatten`, `plan::plan_push`) read the cache. A
/// missing or damaged object reads as absent, which those algorithms report with its id.
impl ObjectSource for ObjectCache {
    fn dir(&self, id: &ObjectId) -> Option<Dir> {
        match self.object(id, ObjectKind::Dir) {
            Ok(Object::Dir(dir)) => Some(dir),
            _ => None,
        }
    }

    fn file(&self, id: &ObjectId) -> Option<FileObject> {
        match self.object(id, ObjectKind::File) {
            Ok(Object::File(file)) => Some(file),
            _ => None,
        }
    }
}

/// Where a pull's frames go as they arrive: held back until there are [`UNPACK_LIMIT`] of
/// them, then written into one new pack; [`PulledObjects::finish`] stores a smaller batch
/// loose. Dropped unfinished, it stores nothing.
#[derive(Debug)]
pub struct PulledObjects<'a> {
    cache: &'a ObjectCache,
    pending: Vec<(ObjectId, Vec<u8>)>,
    pack: Option<PackWriter>,
}

impl PulledObjects<'_> {
    /// Adds a frame that was checked to be the object `id` (the stream decoder verifies every
    /// frame); one the cache's packs already hold is skipped.
    pub fn add(&mut self, id: &ObjectId, frame: Vec<u8>) -> Result<(), ClientError> {
        if self.cache.in_pack(id).is_some() {
            return Ok(());
        }
        if let Some(pack) = &mut self.pack {
            return pack.add(id, &frame);
        }
        self.pending.push((*id, frame));
        if self.pending.len() >= UNPACK_LIMIT {
            let mut pack = PackWriter::create(&self.cache.pack_dir())?;
            for (id, frame) in self.pending.drain(..) {
                pack.add(&id, &frame)?;
            }
            self.pack = Some(pack);
        }
        Ok(())
    }

    /// Stores what was added: the pack, or each object loose.
    pub fn finish(mut self) -> Result<(), ClientError> {
        if let Some(pack) = self.pack.take() {
            return self.cache.add_pack(pack.finish()?);
        }
        for (id, frame) in std::mem::take(&mut self.pending) {
            self.cache.put_encoded(&id, &frame)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_verifies_and_drops_damaged_objects() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ObjectCache::new(dir.path().join("objects"));
        let object = Object::Chunk(b"hello".to_vec());
        let (id, added) = cache.put_object(&object).unwrap();
        assert!(added);
        assert!(!cache.put_object(&object).unwrap().1);
        assert_eq!(cache.object(&id, ObjectKind::Chunk).unwrap(), object);
        assert!(matches!(
            cache.object(&id, ObjectKind::Dir),
            Err(ClientError::ObjectCorrupt { .. })
        ));
        assert!(cache.contains(&id));
        fs::write(cache.path_of(&id), b"garbage").unwrap();
        assert!(matches!(
            cache.frame(&id),
            Err(ClientError::ObjectCorrupt { .. })
        ));
        assert!(!cache.contains(&id));
    }

    #[test]
    fn put_frame_rejects_a_frame_of_another_object() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ObjectCache::new(dir.path());
        let frame = compress_object(&Object::Chunk(b"a".to_vec()).encode());
        let other = Object::Chunk(b"b".to_vec()).id();
        assert!(cache.put_frame(&other, &frame).is_err());
        assert!(!cache.contains(&other));
    }

    /// `n` distinct chunks, from `seed` on, with their frames.
    fn chunks(seed: usize, n: usize) -> Vec<(ObjectId, Vec<u8>)> {
        (seed..seed + n)
            .map(|i| {
                let object = Object::Chunk(format!("chunk {i}").into_bytes());
                (object.id(), compress_object(&object.encode()))
            })
            .collect()
    }

    fn pull(cache: &ObjectCache, frames: &[(ObjectId, Vec<u8>)]) {
        let mut pulled = cache.pulled_objects();
        for (id, frame) in frames {
            pulled.add(id, frame.clone()).unwrap();
        }
        pulled.finish().unwrap();
    }

    fn loose_files(cache: &ObjectCache) -> usize {
        fs::read_dir(cache.dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name() != PACK_DIR)
            .map(|entry| fs::read_dir(entry.path()).unwrap().count())
            .sum()
    }

    #[test]
    fn a_pull_below_the_unpack_limit_is_stored_loose_and_at_it_as_one_pack() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ObjectCache::new(dir.path().join("objects"));
        let small = chunks(0, UNPACK_LIMIT - 1);
        pull(&cache, &small);
        assert_eq!(cache.pack_count(), 0);
        assert_eq!(loose_files(&cache), UNPACK_LIMIT - 1);
        let large = chunks(1_000, UNPACK_LIMIT);
        pull(&cache, &large);
        assert_eq!(cache.pack_count(), 1);
        assert_eq!(loose_files(&cache), UNPACK_LIMIT - 1);
        // Every object reads back verified, from this cache and from a new one of the folder.
        let fresh = ObjectCache::new(cache.dir());
        for (id, frame) in small.iter().chain(&large) {
            assert!(cache.contains(id) && fresh.contains(id));
            assert_eq!(&fresh.frame(id).unwrap(), frame);
            assert!(matches!(
                cache.object(id, ObjectKind::Chunk).unwrap(),
                Object::Chunk(_)
            ));
        }
    }

    #[test]
    fn a_pack_written_by_another_cache_is_found_on_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let reader = ObjectCache::new(dir.path());
        assert_eq!(reader.pack_count(), 0);
        let frames = chunks(0, UNPACK_LIMIT);
        pull(&ObjectCache::new(dir.path()), &frames);
        let (id, frame) = &frames[7];
        assert_eq!(&reader.frame(id).unwrap(), frame);
        assert_eq!(reader.pack_count(), 1);
    }

    #[test]
    fn a_damaged_pack_reads_as_missing_objects() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ObjectCache::new(dir.path());
        let frames = chunks(0, UNPACK_LIMIT);
        pull(&cache, &frames);
        let path = pack_paths(&cache.pack_dir()).unwrap().remove(0);
        let (id, frame) = &frames[0];

        // A damaged frame: reported as damaged once, then the whole pack is gone.
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes
            .windows(frame.len())
            .position(|window| window == &frame[..])
            .unwrap();
        bytes[at + frame.len() - 1] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let fresh = ObjectCache::new(dir.path());
        assert!(matches!(
            fresh.frame(id),
            Err(ClientError::ObjectCorrupt { .. })
        ));
        assert!(!path.exists());
        for (id, _) in &frames {
            assert!(!fresh.contains(id));
            assert!(matches!(
                fresh.frame(id),
                Err(ClientError::ObjectMissing { .. })
            ));
        }

        // A truncated pack (a torn write): not opened, removed, its objects missing.
        pull(&fresh, &frames);
        let path = pack_paths(&cache.pack_dir()).unwrap().remove(0);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let fresh = ObjectCache::new(dir.path());
        assert!(!fresh.contains(id));
        assert_eq!(fresh.pack_count(), 0);
        assert!(!path.exists());
        // The same objects pulled again are stored again.
        pull(&fresh, &frames);
        assert_eq!(&fresh.frame(id).unwrap(), frame);
    }

    #[test]
    fn packs_are_merged_one_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ObjectCache::new(dir.path());
        let mut all = Vec::new();
        for pull_number in 0..PACK_LIMIT {
            let frames = chunks(pull_number * UNPACK_LIMIT, UNPACK_LIMIT);
            pull(&cache, &frames);
            all.extend(frames);
        }
        assert_eq!(cache.pack_count(), PACK_LIMIT);
        assert_eq!(pack_paths(&cache.pack_dir()).unwrap().len(), PACK_LIMIT);
        // One more pull, which repeats an object it already has (skipped): all merged into one.
        let mut last = chunks(PACK_LIMIT * UNPACK_LIMIT, UNPACK_LIMIT);
        last.push(all[0].clone());
        pull(&cache, &last);
        all.extend(last.into_iter().take(UNPACK_LIMIT));
        assert_eq!(cache.pack_count(), 1);
        let packs = pack_paths(&cache.pack_dir()).unwrap();
        assert_eq!(packs.len(), 1);
        assert_eq!(
            Pack::open(&packs[0]).unwrap().unwrap().len(),
            (PACK_LIMIT + 1) * UNPACK_LIMIT
        );
        let fresh = ObjectCache::new(dir.path());
        for (id, frame) in &all {
            assert_eq!(&fresh.frame(id).unwrap(), frame);
        }
        assert_eq!(loose_files(&cache), 0);
    }

    #[test]
    fn an_unfinished_pull_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ObjectCache::new(dir.path());
        let frames = chunks(0, UNPACK_LIMIT + 5);
        let mut pulled = cache.pulled_objects();
        for (id, frame) in &frames {
            pulled.add(id, frame.clone()).unwrap();
        }
        drop(pulled);
        assert_eq!(fs::read_dir(cache.pack_dir()).unwrap().count(), 0);
        assert!(!cache.contains(&frames[0].0));
    }
}
