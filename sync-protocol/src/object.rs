//! The three object kinds and their canonical encoding.
//!
//! Every object encodes as a two-byte header (kind tag, format version) and a body:
//!
//! - chunk: the raw bytes, at most [`CHUNK_MAX_SIZE`];
//! - file: total size (u64 LE), chunk count (u32 LE), then per chunk its id (32 bytes) and
//!   length (u32 LE); at least two chunks, each but the last at least [`CHUNK_MIN_SIZE`];
//! - dir: entry count (u32 LE), then per entry, sorted by the name's UTF-8 bytes: name length
//!   (u8), name, entry kind (u8: 1 file, 2 executable, 3 dir), target object kind (u8), size
//!   (u64 LE; 0 for dirs), id (32 bytes).
//!
//! All integers are fixed-width, so each value has exactly one encoding, and [`Object::decode`]
//! accepts nothing else: `decode(b).encode() == b` for every accepted `b`.

use std::collections::HashSet;

use crate::id::ObjectId;
use crate::limits::{
    CHUNK_MAX_SIZE, CHUNK_MIN_SIZE, MAX_DIR_ENTRIES, MAX_FILE_CHUNKS, MAX_FILE_SIZE,
    MAX_OBJECT_SIZE, OBJECT_HEADER_LEN,
};
use crate::name::{Name, NameError};

/// The format version written into every object header.
pub const FORMAT_VERSION: u8 = 1;

/// The kind tag of an object: the first byte of its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Chunk = 1,
    File = 2,
    Dir = 3,
}

impl ObjectKind {
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::Chunk),
            2 => Some(Self::File),
            3 => Some(Self::Dir),
            _ => None,
        }
    }

    pub fn tag(self) -> u8 {
        self as u8
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chunk => "chunk",
            Self::File => "file",
            Self::Dir => "dir",
        }
    }
}

/// What a dir entry is, as the working copy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    File = 1,
    Executable = 2,
    Dir = 3,
}

impl EntryKind {
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::File),
            2 => Some(Self::Executable),
            3 => Some(Self::Dir),
            _ => None,
        }
    }

    pub fn is_file(self) -> bool {
        self != Self::Dir
    }
}

/// One chunk of a multi-chunk file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileChunk {
    pub id: ObjectId,
    pub len: u32,
}

/// A file of more than one chunk: its chunks in order. A one-chunk file has no file object; its
/// dir entry points at the chunk itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileObject {
    size: u64,
    chunks: Vec<FileChunk>,
}

impl FileObject {
    /// Checks the chunk list against the format's rules.
    pub fn new(chunks: Vec<FileChunk>) -> Result<Self, ObjectError> {
        let count = chunks.len();
        if count < 2 {
            return Err(ObjectError::TooFewChunks(count));
        }
        if count > MAX_FILE_CHUNKS as usize {
            return Err(ObjectError::TooManyChunks(count));
        }
        let mut size = 0u64;
        for (index, chunk) in chunks.iter().enumerate() {
            let min = if index + 1 == count {
                1
            } else {
                CHUNK_MIN_SIZE
            };
            if chunk.len < min || chunk.len > CHUNK_MAX_SIZE {
                return Err(ObjectError::ChunkLength {
                    index,
                    len: chunk.len,
                });
            }
            size += u64::from(chunk.len);
        }
        if size > MAX_FILE_SIZE {
            return Err(ObjectError::FileTooLarge(size));
        }
        Ok(Self { size, chunks })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn chunks(&self) -> &[FileChunk] {
        &self.chunks
    }
}

/// One entry of a dir.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirEntry {
    pub name: Name,
    pub kind: EntryKind,
    /// The kind of the object `id` names: chunk or file for files, dir for dirs.
    pub target: ObjectKind,
    /// The file's length in bytes; 0 for dirs.
    pub size: u64,
    pub id: ObjectId,
}

impl DirEntry {
    /// An entry for a subdirectory.
    pub fn dir(name: Name, id: ObjectId) -> Self {
        Self {
            name,
            kind: EntryKind::Dir,
            target: ObjectKind::Dir,
            size: 0,
            id,
        }
    }

    fn check(&self, index: usize) -> Result<(), ObjectError> {
        let valid = match (self.kind, self.target) {
            (EntryKind::Dir, ObjectKind::Dir) => self.size == 0,
            (EntryKind::File | EntryKind::Executable, ObjectKind::Chunk) => {
                self.size <= u64::from(CHUNK_MAX_SIZE)
            }
            (EntryKind::File | EntryKind::Executable, ObjectKind::File) => {
                self.size > u64::from(CHUNK_MIN_SIZE) && self.size <= MAX_FILE_SIZE
            }
            _ => false,
        };
        if valid {
            Ok(())
        } else {
            Err(ObjectError::BadEntry {
                index,
                name: self.name.to_string(),
                kind: self.kind,
                target: self.target,
                size: self.size,
            })
        }
    }
}

/// A directory: entries sorted by name, no two equal after case folding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Dir {
    entries: Vec<DirEntry>,
}

impl Dir {
    /// The empty dir: the root of the empty project.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Sorts `entries` by name and checks every dir rule.
    pub fn new(mut entries: Vec<DirEntry>) -> Result<Self, ObjectError> {
        entries.sort_by(|a, b| a.name.as_str().as_bytes().cmp(b.name.as_str().as_bytes()));
        Self::from_sorted(entries)
    }

    fn from_sorted(entries: Vec<DirEntry>) -> Result<Self, ObjectError> {
        if entries.len() > MAX_DIR_ENTRIES as usize {
            return Err(ObjectError::TooManyEntries(entries.len()));
        }
        let mut folded: HashSet<String> = HashSet::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            if index > 0 {
                let previous = &entries[index - 1].name;
                if previous.as_str().as_bytes() >= entry.name.as_str().as_bytes() {
                    return Err(if previous == &entry.name {
                        ObjectError::DuplicateName {
                            index,
                            name: entry.name.to_string(),
                        }
                    } else {
                        ObjectError::Unsorted {
                            index,
                            name: entry.name.to_string(),
                        }
                    });
                }
            }
            entry.check(index)?;
            if !folded.insert(entry.name.fold_key()) {
                return Err(ObjectError::CaseCollision {
                    index,
                    name: entry.name.to_string(),
                });
            }
        }
        Ok(Self { entries })
    }

    pub fn entries(&self) -> &[DirEntry] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<DirEntry> {
        self.entries
    }

    /// The entry called exactly `name`, by binary search.
    pub fn entry(&self, name: &str) -> Option<&DirEntry> {
        self.entries
            .binary_search_by(|entry| entry.name.as_str().as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|index| &self.entries[index])
    }
}

/// A decoded object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Object {
    Chunk(Vec<u8>),
    File(FileObject),
    Dir(Dir),
}

impl Object {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Self::Chunk(_) => ObjectKind::Chunk,
            Self::File(_) => ObjectKind::File,
            Self::Dir(_) => ObjectKind::Dir,
        }
    }

    /// The size a dir entry naming this object must carry: a chunk's length, a file's total
    /// size, 0 for a dir.
    pub fn content_size(&self) -> u64 {
        match self {
            Self::Chunk(bytes) => bytes.len() as u64,
            Self::File(file) => file.size(),
            Self::Dir(_) => 0,
        }
    }

    /// The canonical encoding, header included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(self.kind().tag());
        out.push(FORMAT_VERSION);
        match self {
            Self::Chunk(bytes) => out.extend_from_slice(bytes),
            Self::File(file) => {
                out.extend_from_slice(&file.size.to_le_bytes());
                out.extend_from_slice(&(file.chunks.len() as u32).to_le_bytes());
                for chunk in &file.chunks {
                    out.extend_from_slice(chunk.id.as_bytes());
                    out.extend_from_slice(&chunk.len.to_le_bytes());
                }
            }
            Self::Dir(dir) => {
                out.extend_from_slice(&(dir.entries.len() as u32).to_le_bytes());
                for entry in &dir.entries {
                    let name = entry.name.as_str().as_bytes();
                    out.push(name.len() as u8);
                    out.extend_from_slice(name);
                    out.push(entry.kind as u8);
                    out.push(entry.target.tag());
                    out.extend_from_slice(&entry.size.to_le_bytes());
                    out.extend_from_slice(entry.id.as_bytes());
                }
            }
        }
        out
    }

    /// The length of [`Object::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        OBJECT_HEADER_LEN
            + match self {
                Self::Chunk(bytes) => bytes.len(),
                Self::File(file) => 12 + file.chunks.len() * crate::limits::FILE_CHUNK_LEN,
                Self::Dir(dir) => {
                    4 + dir
                        .entries
                        .iter()
                        .map(|e| crate::limits::DIR_ENTRY_FIXED_LEN + e.name.as_str().len())
                        .sum::<usize>()
                }
            }
    }

    /// The object's id: the hash of its encoding.
    pub fn id(&self) -> ObjectId {
        match self {
            // A chunk's body is borrowed, not copied, into the hash.
            Self::Chunk(bytes) => chunk_id(bytes),
            _ => ObjectId::of_encoded(&self.encode()),
        }
    }

    /// Decodes a canonical encoding, rejecting anything that is not one.
    pub fn decode(bytes: &[u8]) -> Result<Self, ObjectError> {
        if bytes.len() > MAX_OBJECT_SIZE {
            return Err(ObjectError::TooLarge(bytes.len()));
        }
        let mut reader = Reader { bytes, offset: 0 };
        let kind_tag = reader.u8("kind tag")?;
        let kind = ObjectKind::from_tag(kind_tag).ok_or(ObjectError::UnknownKind(kind_tag))?;
        let version = reader.u8("format version")?;
        if version != FORMAT_VERSION {
            return Err(ObjectError::UnsupportedVersion(version));
        }
        let object = match kind {
            ObjectKind::Chunk => {
                let body = reader.rest();
                if body.len() > CHUNK_MAX_SIZE as usize {
                    return Err(ObjectError::ChunkTooLarge(body.len()));
                }
                Object::Chunk(body.to_vec())
            }
            ObjectKind::File => decode_file(&mut reader)?,
            ObjectKind::Dir => decode_dir(&mut reader)?,
        };
        if reader.offset != bytes.len() {
            return Err(ObjectError::TrailingBytes {
                offset: reader.offset,
            });
        }
        Ok(object)
    }
}

/// The id of a chunk with these bytes, hashed without copying them.
pub fn chunk_id(bytes: &[u8]) -> ObjectId {
    ObjectId::of_parts(&[ObjectKind::Chunk.tag(), FORMAT_VERSION], bytes)
}

fn decode_file(reader: &mut Reader<'_>) -> Result<Object, ObjectError> {
    let declared = reader.u64("file size")?;
    let count = reader.u32("chunk count")?;
    if count > MAX_FILE_CHUNKS {
        return Err(ObjectError::TooManyChunks(count as usize));
    }
    // The count is checked against the bytes present before anything is allocated for it.
    reader.expect_len(count as usize * crate::limits::FILE_CHUNK_LEN, "chunk list")?;
    let mut chunks = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let id = reader.id("chunk id")?;
        let len = reader.u32("chunk length")?;
        chunks.push(FileChunk { id, len });
    }
    let file = FileObject::new(chunks)?;
    if file.size != declared {
        return Err(ObjectError::FileSizeMismatch {
            declared,
            actual: file.size,
        });
    }
    Ok(Object::File(file))
}

fn decode_dir(reader: &mut Reader<'_>) -> Result<Object, ObjectError> {
    let count = reader.u32("entry count")?;
    if count > MAX_DIR_ENTRIES {
        return Err(ObjectError::TooManyEntries(count as usize));
    }
    let min_len = count as usize * (crate::limits::DIR_ENTRY_FIXED_LEN + 1);
    reader.expect_len(min_len, "entry list")?;
    let mut entries = Vec::with_capacity(count as usize);
    for index in 0..count as usize {
        let name_len = reader.u8("name length")?;
        let name_bytes = reader.take(usize::from(name_len), "name")?;
        let name =
            Name::from_bytes(name_bytes).map_err(|error| ObjectError::BadName { index, error })?;
        let kind_tag = reader.u8("entry kind")?;
        let kind = EntryKind::from_tag(kind_tag).ok_or(ObjectError::UnknownEntryKind {
            index,
            tag: kind_tag,
        })?;
        let target_tag = reader.u8("entry target")?;
        let target = ObjectKind::from_tag(target_tag).ok_or(ObjectError::UnknownEntryKind {
            index,
            tag: target_tag,
        })?;
        let size = reader.u64("entry size")?;
        let id = reader.id("entry id")?;
        entries.push(DirEntry {
            name,
            kind,
            target,
            size,
            id,
        });
    }
    Dir::from_sorted(entries).map(Object::Dir)
}

/// A bounds-checked cursor: every read names what it was reading, for the error.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], ObjectError> {
        let end = self
            .offset
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or(ObjectError::Truncated {
            what,
            offset: self.offset,
        })?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    fn expect_len(&self, len: usize, what: &'static str) -> Result<(), ObjectError> {
        if self.bytes.len() - self.offset < len {
            return Err(ObjectError::Truncated {
                what,
                offset: self.offset,
            });
        }
        Ok(())
    }

    fn rest(&mut self) -> &'a [u8] {
        let slice = &self.bytes[self.offset..];
        self.offset = self.bytes.len();
        slice
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ObjectError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ObjectError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ObjectError> {
        let mut buffer = [0u8; 8];
        buffer.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(buffer))
    }

    fn id(&mut self, what: &'static str) -> Result<ObjectId, ObjectError> {
        let mut buffer = [0u8; 32];
        buffer.copy_from_slice(self.take(32, what)?);
        Ok(ObjectId::from_bytes(buffer))
    }
}

/// Why bytes are not a valid object. Each variant says where: the byte offset or entry index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    #[error("object is {0} bytes, more than the limit of {MAX_OBJECT_SIZE}")]
    TooLarge(usize),
    #[error("object ends inside its {what} at byte {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("unknown object kind tag {0}")]
    UnknownKind(u8),
    #[error("unsupported object format version {0}")]
    UnsupportedVersion(u8),
    #[error("object has trailing bytes after byte {offset}")]
    TrailingBytes { offset: usize },
    #[error("chunk is {0} bytes, more than the limit of {CHUNK_MAX_SIZE}")]
    ChunkTooLarge(usize),
    #[error("a file object lists {0} chunks; it needs at least 2 (one-chunk files are chunks)")]
    TooFewChunks(usize),
    #[error("a file object lists {0} chunks, more than the limit of {MAX_FILE_CHUNKS}")]
    TooManyChunks(usize),
    #[error("chunk {index} of a file object has invalid length {len}")]
    ChunkLength { index: usize, len: u32 },
    #[error("file is {0} bytes, more than the limit of {MAX_FILE_SIZE}")]
    FileTooLarge(u64),
    #[error("file object declares size {declared} but its chunks add up to {actual}")]
    FileSizeMismatch { declared: u64, actual: u64 },
    #[error("dir has {0} entries, more than the limit of {MAX_DIR_ENTRIES}")]
    TooManyEntries(usize),
    #[error("dir entry {index} has an invalid name: {error}")]
    BadName { index: usize, error: NameError },
    #[error("dir entry {index} has unknown kind or target tag {tag}")]
    UnknownEntryKind { index: usize, tag: u8 },
    #[error(
        "dir entry {index} ({name:?}): kind {kind:?}, target {target:?} and size {size} do not fit together"
    )]
    BadEntry {
        index: usize,
        name: String,
        kind: EntryKind,
        target: ObjectKind,
        size: u64,
    },
    #[error("dir entry {index} ({name:?}) is out of order")]
    Unsorted { index: usize, name: String },
    #[error("dir entry {index} ({name:?}) repeats the previous name")]
    DuplicateName { index: usize, name: String },
    #[error("dir entry {index} ({name:?}) clashes with another name on a case-insensitive disk")]
    CaseCollision { index: usize, name: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_entry(name: &str, body: &[u8]) -> DirEntry {
        DirEntry {
            name: Name::new(name).unwrap(),
            kind: EntryKind::File,
            target: ObjectKind::Chunk,
            size: body.len() as u64,
            id: chunk_id(body),
        }
    }

    fn round_trip(object: &Object) {
        let encoded = object.encode();
        assert_eq!(encoded.len(), object.encoded_len());
        assert_eq!(&Object::decode(&encoded).unwrap(), object);
        assert_eq!(object.id(), ObjectId::of_encoded(&encoded));
    }

    #[test]
    fn objects_round_trip() {
        round_trip(&Object::Chunk(Vec::new()));
        round_trip(&Object::Chunk(b"hello".to_vec()));
        round_trip(&Object::Dir(Dir::empty()));
        let dir = Dir::new(vec![file_entry("b", b"2"), file_entry("a", b"1")]).unwrap();
        assert_eq!(dir.entries()[0].name.as_str(), "a");
        assert_eq!(dir.entry("b").unwrap().size, 1);
        round_trip(&Object::Dir(dir));
        let file = FileObject::new(vec![
            FileChunk {
                id: chunk_id(b"x"),
                len: CHUNK_MIN_SIZE,
            },
            FileChunk {
                id: chunk_id(b"y"),
                len: 1,
            },
        ])
        .unwrap();
        assert_eq!(file.size(), u64::from(CHUNK_MIN_SIZE) + 1);
        round_trip(&Object::File(file));
    }

    #[test]
    fn kinds_never_share_ids() {
        // The same body bytes under two kind tags hash differently.
        let empty_chunk = Object::Chunk(vec![0, 0, 0, 0]).id();
        let empty_dir = Object::Dir(Dir::empty()).id();
        assert_ne!(empty_chunk, empty_dir);
    }

    #[test]
    fn chunk_size_at_and_past_the_limit() {
        let at = vec![7u8; CHUNK_MAX_SIZE as usize];
        round_trip(&Object::Chunk(at.clone()));
        let mut past = Object::Chunk(at).encode();
        past.push(7);
        assert_eq!(
            Object::decode(&past),
            Err(ObjectError::ChunkTooLarge(CHUNK_MAX_SIZE as usize + 1))
        );
    }

    #[test]
    fn rejects_non_canonical_dirs() {
        let a = file_entry("a", b"1");
        let b = file_entry("b", b"2");
        let encode_raw = |entries: &[&DirEntry]| {
            let mut out = vec![3, 1];
            out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            for entry in entries {
                let single = Object::Dir(Dir::new(vec![(*entry).clone()]).unwrap()).encode();
                out.extend_from_slice(&single[6..]);
            }
            out
        };
        assert!(Object::decode(&encode_raw(&[&a, &b])).is_ok());
        assert!(matches!(
            Object::decode(&encode_raw(&[&b, &a])),
            Err(ObjectError::Unsorted { index: 1, .. })
        ));
        assert!(matches!(
            Object::decode(&encode_raw(&[&a, &a])),
            Err(ObjectError::DuplicateName { index: 1, .. })
        ));
        let upper = file_entry("A", b"1");
        assert!(matches!(
            Object::decode(&encode_raw(&[&upper, &a])),
            Err(ObjectError::CaseCollision { index: 1, .. })
        ));
        let mut trailing = encode_raw(&[&a]);
        trailing.push(0);
        assert!(matches!(
            Object::decode(&trailing),
            Err(ObjectError::TrailingBytes { .. })
        ));
        let full = encode_raw(&[&a, &b]);
        assert!(matches!(
            Object::decode(&full[..full.len() - 1]),
            Err(ObjectError::Truncated { .. })
        ));
    }

    #[test]
    fn rejects_entries_that_do_not_fit() {
        let mut bad = file_entry("a", b"1");
        bad.target = ObjectKind::Dir;
        assert!(matches!(
            Dir::new(vec![bad]),
            Err(ObjectError::BadEntry { index: 0, .. })
        ));
        let mut sized_dir = DirEntry::dir(Name::new("d").unwrap(), chunk_id(b""));
        sized_dir.size = 1;
        assert!(matches!(
            Dir::new(vec![sized_dir]),
            Err(ObjectError::BadEntry { .. })
        ));
    }

    #[test]
    fn rejects_bad_headers_and_counts() {
        assert_eq!(
            Object::decode(&[]),
            Err(ObjectError::Truncated {
                what: "kind tag",
                offset: 0
            })
        );
        assert_eq!(Object::decode(&[9, 1]), Err(ObjectError::UnknownKind(9)));
        assert_eq!(
            Object::decode(&[1, 2]),
            Err(ObjectError::UnsupportedVersion(2))
        );
        // A huge entry count with no entries is rejected before anything is allocated.
        let mut huge = vec![3, 1];
        huge.extend_from_slice(&MAX_DIR_ENTRIES.to_le_bytes());
        assert!(matches!(
            Object::decode(&huge),
            Err(ObjectError::Truncated { .. })
        ));
        let mut past = vec![3, 1];
        past.extend_from_slice(&(MAX_DIR_ENTRIES + 1).to_le_bytes());
        assert_eq!(
            Object::decode(&past),
            Err(ObjectError::TooManyEntries(MAX_DIR_ENTRIES as usize + 1))
        );
    }

    #[test]
    fn file_rules() {
        let chunk = |len| FileChunk {
            id: chunk_id(b"c"),
            len,
        };
        assert_eq!(
            FileObject::new(vec![chunk(5)]),
            Err(ObjectError::TooFewChunks(1))
        );
        assert_eq!(
            FileObject::new(vec![chunk(CHUNK_MIN_SIZE - 1), chunk(5)]),
            Err(ObjectError::ChunkLength {
                index: 0,
                len: CHUNK_MIN_SIZE - 1
            })
        );
        assert_eq!(
            FileObject::new(vec![chunk(CHUNK_MIN_SIZE), chunk(CHUNK_MAX_SIZE + 1)]),
            Err(ObjectError::ChunkLength {
                index: 1,
                len: CHUNK_MAX_SIZE + 1
            })
        );
        let good = FileObject::new(vec![chunk(CHUNK_MAX_SIZE), chunk(CHUNK_MAX_SIZE)]).unwrap();
        let mut encoded = Object::File(good).encode();
        encoded[2] ^= 1;
        assert!(matches!(
            Object::decode(&encoded),
            Err(ObjectError::FileSizeMismatch { .. })
        ));
    }
}
