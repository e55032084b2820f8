//! `.cairn/head`: the small durable record of the base, from which a damaged index is rebuilt.
//!
//! It holds the base version and root, and the pending paths with the entry each keeps from the
//! previous base (see `Base::pending`): everything of the base that the tree of its root in the
//! object cache does not say. It is written, fsynced, after every index write that changes the
//! base, so it names the same base as the index except after a crash between the two writes,
//! when the index is the newer and intact one.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path as FsPath;

use sync_protocol::ObjectId;
use sync_protocol::tree::{FileRef, Listing, Path, TreeError, flatten};

use super::atomic::{Mode, Replace, write_atomic};
use super::codec::{Reader, Writer};
use super::object_cache::ObjectCache;
use super::state::Base;
use crate::error::ClientError;

const HEAD_MAGIC: &[u8] = b"CAIRN-HEAD-1\n";

/// The base without its listing: version, root, and the pending paths' entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub version: Option<u64>,
    pub root: ObjectId,
    /// Each pending path with the entry the base listing keeps for it (`None`: none).
    pub pending: Vec<(Path, Option<FileRef>)>,
}

impl Head {
    pub fn of(base: &Base) -> Self {
        Self {
            version: base.version,
            root: base.root,
            pending: base
                .pending
                .iter()
                .map(|path| (path.clone(), base.listing.get(path).copied()))
                .collect(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::new(HEAD_MAGIC);
        writer.version(self.version);
        writer.id(&self.root);
        writer.u32(self.pending.len() as u32);
        for (path, entry) in &self.pending {
            writer.path(path);
            match entry {
                None => writer.u8(0),
                Some(entry) => {
                    writer.u8(1);
                    writer.file_ref(entry);
                }
            }
        }
        writer.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::new(bytes, HEAD_MAGIC)?;
        let version = reader.version()?;
        let root = reader.id("root")?;
        let count = reader.u32("pending count")?;
        let mut pending = Vec::new();
        for _ in 0..count {
            let path = reader.path()?;
            let entry = match reader.u8("entry flag")? {
                0 => None,
                1 => Some(reader.file_ref(&path)?),
                other => return Err(format!("bad entry flag {other}")),
            };
            pending.push((path, entry));
        }
        reader.finish()?;
        Ok(Self {
            version,
            root,
            pending,
        })
    }

    /// Reads the head record; `Ok(None)` when there is none.
    pub fn load(path: &FsPath) -> Result<Option<Self>, ClientError> {
        match fs::read(path) {
            Ok(bytes) => {
                Self::decode(&bytes)
                    .map(Some)
                    .map_err(|detail| ClientError::CorruptState {
                        path: path.to_path_buf(),
                        detail,
                    })
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(ClientError::io("read", path, error)),
        }
    }

    /// Written and fsynced (file and folder).
    pub fn save(&self, path: &FsPath) -> Result<(), ClientError> {
        write_atomic(path, &self.encode(), Mode::Umask(0o644), Replace::Overwrite)?;
        Ok(())
    }

    /// The base this record names: the tree of its root read from the object cache, with the
    /// pending paths' entries put back. `Err` names the first object the cache lacks.
    pub fn rebuild_base(&self, objects: &ObjectCache) -> Result<Base, TreeError> {
        let mut listing: Listing = flatten(objects, &self.root)?;
        let mut pending = BTreeSet::new();
        for (path, entry) in &self.pending {
            pending.insert(path.clone());
            match entry {
                Some(entry) => listing.insert(path.clone(), *entry),
                None => listing.remove(path),
            };
        }
        Ok(Base {
            version: self.version,
            root: self.root,
            listing,
            pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_protocol::{EntryKind, ObjectKind, chunk_id};

    #[test]
    fn head_round_trips_and_damage_is_refused() {
        let head = Head {
            version: Some(7),
            root: chunk_id(b"r"),
            pending: vec![
                (Path::new("a/b").unwrap(), None),
                (
                    Path::new("c").unwrap(),
                    Some(FileRef {
                        kind: EntryKind::Executable,
                        target: ObjectKind::Chunk,
                        size: 3,
                        id: chunk_id(b"abc"),
                    }),
                ),
            ],
        };
        let bytes = head.encode();
        assert_eq!(Head::decode(&bytes).unwrap(), head);
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(Head::decode(&flipped).is_err());
        assert!(Head::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
