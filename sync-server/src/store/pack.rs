//! Packs: the objects of one push (or one upload batch) in one stored value, so that storing a
//! push is one write and reading a project cold is a few reads, whatever the number of objects.
//!
//! ```text
//! header   "CAIRNPK" 01  salt [16]               24 bytes
//! frames   each object's zstd frame, as received, back to back
//! contents per object, in frame order:            53 bytes each
//!            id [32]  kind u8  offset u64  length u32  size u64   (little-endian)
//! footer   contents offset u64  count u32  contents digest [32]  "CAIRNPK" 01   52 bytes
//! ```
//!
//! A pack's name is the BLAKE3 hash of all its bytes (derive-key mode, its own context), so a
//! stored pack proves itself whole. The header's random salt makes every pack built a new
//! name, even of the same objects: a name, once garbage collection has deleted its pack, is
//! never written again, so deleting a dead pack needs no coordination with pushes (a push that
//! stored the same objects again wrote them under another name). The
//! table of contents makes a pack self-describing: it can be verified and indexed again without
//! the catalog, from its last bytes alone (the footer names where the contents start and their
//! digest). Every object in it is still verified against its own id when read.

use bytes::{BufMut, Bytes, BytesMut};
use sync_protocol::{ObjectId, ObjectKind};

/// The first and last 8 bytes of every pack.
pub const MAGIC: [u8; 8] = *b"CAIRNPK\x01";
/// The header's random salt, in bytes.
pub const SALT_LEN: usize = 16;
/// The header's length: magic and salt.
pub const HEADER_LEN: usize = MAGIC.len() + SALT_LEN;
/// One entry of the contents.
pub const ENTRY_LEN: usize = ObjectId::LEN + 1 + 8 + 4 + 8;
/// The footer's length: contents offset, count, contents digest, magic.
pub const FOOTER_LEN: usize = 8 + 4 + 32 + MAGIC.len();
/// The BLAKE3 derive-key context of pack names.
pub const NAME_CONTEXT: &str = "cairn.dev 2026-12 pack v1 name";
/// The BLAKE3 derive-key context of the contents digest.
pub const CONTENTS_CONTEXT: &str = "cairn.dev 2026-12 pack v1 contents";
/// The most a pack holds, in bytes: past it a push is cut into several packs, so one stored
/// value (one S3 PUT) stays within what a single request carries well.
pub const MAX_PACK_LEN: usize = 64 * 1024 * 1024;

/// A pack's name: the hash of its bytes. The type is the catalog's, which indexes packs by it;
/// how a name is computed is the pack format's, here.
pub use crate::catalog::PackId;

impl PackId {
    /// The name of a pack whose bytes are `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(NAME_CONTEXT);
        hasher.update(bytes);
        Self::from_bytes(*hasher.finalize().as_bytes())
    }
}

/// One object of a pack: where its frame is and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackEntry {
    pub id: ObjectId,
    pub kind: ObjectKind,
    /// The frame's first byte, from the start of the pack.
    pub offset: u64,
    /// The frame's length in bytes.
    pub length: u32,
    /// The object's content size (a chunk's length, a file's size, 0 for a dir).
    pub size: u64,
}

impl PackEntry {
    /// The byte range of the frame in the pack.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset + u64::from(self.length)
    }
}

/// The length of a pack holding `count` frames of `frames_len` bytes in all: what a caller that
/// gathers objects before building a pack (the layout conversion) cuts its batches by, so each
/// batch makes exactly one pack.
pub fn packed_len(frames_len: usize, count: usize) -> usize {
    HEADER_LEN + frames_len + count * ENTRY_LEN + FOOTER_LEN
}

/// A pack being built.
#[derive(Debug)]
pub struct PackBuilder {
    bytes: BytesMut,
    entries: Vec<PackEntry>,
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PackBuilder {
    /// A new pack, with a fresh random salt.
    pub fn new() -> Self {
        Self::with_salt(rand::random())
    }

    /// A new pack with the given salt (tests that need the same bytes twice).
    pub fn with_salt(salt: [u8; SALT_LEN]) -> Self {
        let mut bytes = BytesMut::new();
        bytes.put_slice(&MAGIC);
        bytes.put_slice(&salt);
        Self {
            bytes,
            entries: Vec::new(),
        }
    }

    /// Objects added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pack's length if it were finished now.
    pub fn finished_len(&self) -> usize {
        packed_len(self.bytes.len() - HEADER_LEN, self.entries.len())
    }

    /// Whether adding a frame of `frame_len` bytes would pass [`MAX_PACK_LEN`] (a pack always
    /// takes its first frame, however large).
    pub fn would_overflow(&self, frame_len: usize) -> bool {
        !self.is_empty() && self.finished_len() + frame_len + ENTRY_LEN > MAX_PACK_LEN
    }

    /// Adds an object's frame. The caller has verified it.
    pub fn add(&mut self, id: ObjectId, kind: ObjectKind, size: u64, frame: &[u8]) {
        let offset = self.bytes.len() as u64;
        self.bytes.put_slice(frame);
        self.entries.push(PackEntry {
            id,
            kind,
            offset,
            length: frame.len() as u32,
            size,
        });
    }

    /// The finished pack: its name, its bytes and its contents.
    pub fn finish(self) -> Pack {
        let Self { mut bytes, entries } = self;
        let contents_offset = bytes.len() as u64;
        for entry in &entries {
            bytes.put_slice(entry.id.as_bytes());
            bytes.put_u8(entry.kind.tag());
            bytes.put_u64_le(entry.offset);
            bytes.put_u32_le(entry.length);
            bytes.put_u64_le(entry.size);
        }
        let digest = contents_digest(&bytes[contents_offset as usize..]);
        bytes.put_u64_le(contents_offset);
        bytes.put_u32_le(entries.len() as u32);
        bytes.put_slice(&digest);
        bytes.put_slice(&MAGIC);
        let bytes = bytes.freeze();
        Pack {
            id: PackId::of(&bytes),
            bytes,
            entries,
        }
    }
}

fn contents_digest(contents: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(CONTENTS_CONTEXT);
    hasher.update(contents);
    *hasher.finalize().as_bytes()
}

/// A whole pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    pub id: PackId,
    pub bytes: Bytes,
    pub entries: Vec<PackEntry>,
}

impl Pack {
    /// The catalog's record of this pack, indexed now.
    pub fn record(&self) -> crate::catalog::PackRecord {
        crate::catalog::PackRecord {
            id: self.id,
            length: self.bytes.len() as u64,
            objects: self.entries.len() as u32,
            created: crate::catalog::Timestamp::now(),
        }
    }

    /// An index row for each object in it, where its contents say it is.
    pub fn index_rows(&self) -> Vec<crate::catalog::IndexedObject> {
        self.entries
            .iter()
            .map(|entry| crate::catalog::IndexedObject {
                id: entry.id,
                pack: self.id,
                offset: entry.offset,
                length: entry.length,
                kind: entry.kind,
                size: entry.size,
            })
            .collect()
    }
}

/// Why bytes are not a pack (or not the pack they were named as).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    #[error("{len} bytes are too short for a pack")]
    TooShort { len: usize },
    #[error("the pack's magic or version is wrong")]
    BadMagic,
    #[error("the pack's contents are out of bounds or the wrong length")]
    BadContents,
    #[error("the pack's contents do not match their digest")]
    ContentsDigest,
    #[error("entry {index} names an unknown kind {tag}")]
    BadKind { index: usize, tag: u8 },
    #[error("entry {index} points outside the frames")]
    BadEntry { index: usize },
    #[error("the pack hashes to {actual}, not to its name {expected}")]
    NameMismatch { expected: PackId, actual: PackId },
    /// Found by the store, which decodes the frames: the contents misstate an object's size.
    #[error("entry {index} gives its object's size as {claimed}, it is {actual}")]
    SizeMismatch {
        index: usize,
        claimed: u64,
        actual: u64,
    },
}

/// Where a pack's contents are, from its footer: the last [`FOOTER_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub contents_offset: u64,
    pub count: u32,
    pub digest: [u8; 32],
}

impl Footer {
    /// Reads a footer; `pack_len` is the whole pack's length.
    pub fn parse(footer: &[u8], pack_len: u64) -> Result<Self, PackError> {
        if footer.len() != FOOTER_LEN || pack_len < (HEADER_LEN + FOOTER_LEN) as u64 {
            return Err(PackError::TooShort {
                len: pack_len as usize,
            });
        }
        if footer[FOOTER_LEN - MAGIC.len()..] != MAGIC {
            return Err(PackError::BadMagic);
        }
        let contents_offset = u64::from_le_bytes(footer[..8].try_into().unwrap_or_default());
        let count = u32::from_le_bytes(footer[8..12].try_into().unwrap_or_default());
        let mut digest = [0; 32];
        digest.copy_from_slice(&footer[12..44]);
        let contents_end = pack_len - FOOTER_LEN as u64;
        let expected = u64::from(count) * ENTRY_LEN as u64;
        if contents_offset < HEADER_LEN as u64
            || contents_offset > contents_end
            || contents_end - contents_offset != expected
        {
            return Err(PackError::BadContents);
        }
        Ok(Self {
            contents_offset,
            count,
            digest,
        })
    }

    /// The byte range of the contents in the pack.
    pub fn contents_range(&self) -> std::ops::Range<u64> {
        self.contents_offset..self.contents_offset + u64::from(self.count) * ENTRY_LEN as u64
    }
}

/// Reads a pack's contents (the bytes of [`Footer::contents_range`]), checking them against the
/// footer's digest and each entry against the frames' bounds.
pub fn parse_contents(footer: &Footer, contents: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    if contents.len() as u64 != footer.contents_range().end - footer.contents_offset {
        return Err(PackError::BadContents);
    }
    if contents_digest(contents) != footer.digest {
        return Err(PackError::ContentsDigest);
    }
    let mut entries = Vec::with_capacity(footer.count as usize);
    for (index, raw) in contents.chunks_exact(ENTRY_LEN).enumerate() {
        let mut id = [0; 32];
        id.copy_from_slice(&raw[..32]);
        let tag = raw[32];
        let kind = ObjectKind::from_tag(tag).ok_or(PackError::BadKind { index, tag })?;
        let offset = u64::from_le_bytes(raw[33..41].try_into().unwrap_or_default());
        let length = u32::from_le_bytes(raw[41..45].try_into().unwrap_or_default());
        let size = u64::from_le_bytes(raw[45..53].try_into().unwrap_or_default());
        let entry = PackEntry {
            id: ObjectId::from_bytes(id),
            kind,
            offset,
            length,
            size,
        };
        if offset < HEADER_LEN as u64 || entry.range().end > footer.contents_offset {
            return Err(PackError::BadEntry { index });
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Reads a whole pack named `id`: its name, header, footer and contents. The frames themselves
/// are verified when they are read as objects.
pub fn parse(id: PackId, bytes: Bytes) -> Result<Pack, PackError> {
    let actual = PackId::of(&bytes);
    if actual != id {
        return Err(PackError::NameMismatch {
            expected: id,
            actual,
        });
    }
    parse_unnamed(bytes)
}

/// Reads a whole pack whose name is not known (recovery, fsck of an unindexed pack).
pub fn parse_unnamed(bytes: Bytes) -> Result<Pack, PackError> {
    let len = bytes.len();
    if len < HEADER_LEN + FOOTER_LEN {
        return Err(PackError::TooShort { len });
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(PackError::BadMagic);
    }
    let footer = Footer::parse(&bytes[len - FOOTER_LEN..], len as u64)?;
    let range = footer.contents_range();
    let entries = parse_contents(&footer, &bytes[range.start as usize..range.end as usize])?;
    Ok(Pack {
        id: PackId::of(&bytes),
        bytes,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use sync_protocol::{Object, compress_object};

    use super::*;

    fn objects(count: usize) -> Vec<(ObjectId, ObjectKind, u64, Vec<u8>)> {
        (0..count)
            .map(|i| {
                let object = Object::Chunk(format!("chunk {i}").into_bytes());
                (
                    object.id(),
                    object.kind(),
                    object.content_size(),
                    compress_object(&object.encode()),
                )
            })
            .collect()
    }

    fn pack_of(objects: &[(ObjectId, ObjectKind, u64, Vec<u8>)]) -> Pack {
        let mut builder = PackBuilder::new();
        for (id, kind, size, frame) in objects {
            builder.add(*id, *kind, *size, frame);
        }
        builder.finish()
    }

    #[test]
    fn a_pack_reads_back_whole_and_by_ranges() {
        let objects = objects(5);
        let pack = pack_of(&objects);
        assert_eq!(
            pack.bytes.len(),
            HEADER_LEN
                + objects.iter().map(|o| o.3.len()).sum::<usize>()
                + 5 * ENTRY_LEN
                + FOOTER_LEN
        );
        let read = parse(pack.id, pack.bytes.clone()).unwrap();
        assert_eq!(read, pack);
        for (entry, (id, kind, size, frame)) in read.entries.iter().zip(&objects) {
            assert_eq!((entry.id, entry.kind, entry.size), (*id, *kind, *size));
            let range = entry.range();
            assert_eq!(&pack.bytes[range.start as usize..range.end as usize], frame);
        }
        // The tail alone gives the contents.
        let len = pack.bytes.len();
        let footer = Footer::parse(&pack.bytes[len - FOOTER_LEN..], len as u64).unwrap();
        let range = footer.contents_range();
        let contents = &pack.bytes[range.start as usize..range.end as usize];
        assert_eq!(parse_contents(&footer, contents).unwrap(), pack.entries);
    }

    #[test]
    fn every_pack_built_has_a_new_name_and_the_salt_is_all_that_differs() {
        let objects = objects(3);
        let (first, second) = (pack_of(&objects), pack_of(&objects));
        assert_ne!(first.id, second.id, "packs are salted");
        assert_eq!(first.entries, second.entries);
        assert_eq!(first.bytes[..MAGIC.len()], second.bytes[..MAGIC.len()]);
        assert_eq!(first.bytes[HEADER_LEN..], second.bytes[HEADER_LEN..]);
        let salted = |salt| {
            let mut builder = PackBuilder::with_salt(salt);
            for (id, kind, size, frame) in &objects {
                builder.add(*id, *kind, *size, frame);
            }
            builder.finish()
        };
        assert_eq!(salted([7; SALT_LEN]), salted([7; SALT_LEN]));
        assert_ne!(salted([7; SALT_LEN]).id, salted([8; SALT_LEN]).id);
        let empty = PackBuilder::new().finish();
        assert_eq!(
            parse(empty.id, empty.bytes.clone()).unwrap().entries,
            vec![]
        );
    }

    #[test]
    fn any_flipped_byte_is_caught_by_the_name() {
        let pack = pack_of(&objects(2));
        for at in 0..pack.bytes.len() {
            let mut bytes = pack.bytes.to_vec();
            bytes[at] ^= 0x40;
            assert!(
                parse(pack.id, Bytes::from(bytes)).is_err(),
                "flipping byte {at} went unnoticed"
            );
        }
    }

    #[test]
    fn damaged_contents_are_refused_without_the_name() {
        let pack = pack_of(&objects(2));
        let len = pack.bytes.len();
        let footer = Footer::parse(&pack.bytes[len - FOOTER_LEN..], len as u64).unwrap();
        let mut bytes = pack.bytes.to_vec();
        bytes[footer.contents_offset as usize + 40] ^= 1;
        assert_eq!(
            parse_unnamed(Bytes::from(bytes)).unwrap_err(),
            PackError::ContentsDigest
        );
        assert!(matches!(
            parse_unnamed(Bytes::from_static(b"CAIRNPK\x01")),
            Err(PackError::TooShort { .. })
        ));
        let mut bytes = pack.bytes.to_vec();
        bytes[0] = b'X';
        assert_eq!(
            parse_unnamed(Bytes::from(bytes)).unwrap_err(),
            PackError::BadMagic
        );
    }

    #[test]
    fn a_pack_stops_growing_at_its_limit() {
        let mut builder = PackBuilder::new();
        assert!(
            !builder.would_overflow(MAX_PACK_LEN * 2),
            "the first frame always fits"
        );
        builder.add(
            ObjectId::from_bytes([1; 32]),
            ObjectKind::Chunk,
            1,
            &[0; 1000],
        );
        let room = MAX_PACK_LEN - builder.finished_len() - ENTRY_LEN;
        assert!(!builder.would_overflow(room));
        assert!(builder.would_overflow(room + 1));
        // The length a batch is cut by is the finished pack's.
        assert_eq!(builder.finish().bytes.len(), packed_len(1000, 1));
    }
}
