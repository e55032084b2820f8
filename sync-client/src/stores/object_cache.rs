//! The local object cache: `.cairn/objects/<2 hex>/<62 hex>`, one zstd frame per object, exactly
//! the bytes that go on the wire.
//!
//! The cache holds the objects of files the scanner has read (to be pushed) and the objects a pull
//! downloaded (to be written into the working copy). Writes are atomic (temp file and rename) but
//! not fsynced: every read is verified against its id, a damaged or torn object is removed and
//! reported, and everything in the cache can be fetched again or re-read from the working copy.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sync_protocol::tree::ObjectSource;
use sync_protocol::{
    CompressError, Dir, FileObject, Object, ObjectId, ObjectKind, compress_object, verify_frame,
    verify_frame_of_kind,
};

use super::atomic::{Durability, Mode, Replace, is_already_exists, write_atomic_with};
use crate::error::{ClientError, io_error};

/// A folder of verified object frames keyed by id.
#[derive(Debug, Clone)]
pub struct ObjectCache {
    dir: PathBuf,
}

impl ObjectCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.path_of(id).is_file()
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
        let frame = self.read(id)?;
        self.check(id, verify_frame(id, &frame))?;
        Ok(frame)
    }

    /// The stored frame of `id`, verified, with its object's kind: what a push streams.
    pub fn frame_with_kind(&self, id: &ObjectId) -> Result<(ObjectKind, Vec<u8>), ClientError> {
        let frame = self.read(id)?;
        let (object, _) = self.check(id, verify_frame(id, &frame))?;
        Ok((object.kind(), frame))
    }

    /// The object `id`, verified, which must be of `kind`.
    pub fn object(&self, id: &ObjectId, kind: ObjectKind) -> Result<Object, ClientError> {
        let frame = self.read(id)?;
        let (object, _) = self.check(id, verify_frame_of_kind(id, kind, &frame))?;
        Ok(object)
    }

    fn read(&self, id: &ObjectId) -> Result<Vec<u8>, ClientError> {
        let path = self.path_of(id);
        match fs::read(&path) {
            Ok(frame) => Ok(frame),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                Err(ClientError::ObjectMissing { id: *id })
            }
            Err(error) => Err(ClientError::io("read", path, error)),
        }
    }

    fn check<T>(
        &self,
        id: &ObjectId,
        verified: Result<T, CompressError>,
    ) -> Result<T, ClientError> {
        verified.map_err(|source| {
            // A damaged cache entry is worthless and would fail every later read too. A kind
            // mismatch is not damage: the id fixes the kind, so whoever referenced it was wrong.
            if !matches!(source, CompressError::KindMismatch { .. }) {
                let _ = fs::remove_file(self.path_of(id));
            }
            ClientError::ObjectCorrupt { id: *id, source }
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
}
