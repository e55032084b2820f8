//! Content-defined chunking and the client's encode pipeline: chunk, hash, compress.
//!
//! Files are cut with FastCDC (the 2020 variant, normalization level 1, the crate's standard gear
//! table) at [`CHUNK_MIN_SIZE`] / [`CHUNK_AVG_SIZE`] / [`CHUNK_MAX_SIZE`]. Cut points depend only
//! on the bytes near them, so an edit in a large file changes the chunks around the edit and
//! leaves the rest, and their ids, as they were. The parameters are part of the format in
//! practice: two clients that chunk differently still interoperate, but stop sharing chunks.
//!
//! [`ObjectEncoder::encode_file`] turns a file's bytes into the objects that store it, each as an
//! [`EncodedObject`]: id, kind and zstd frame, ready for an object stream. It hashes chunk bodies
//! where they lie (no copy) and reuses one zstd context and two scratch buffers across objects,
//! so the only allocation per object is its final, exactly sized frame.
//!
//! A file too large to hold in memory (the format allows 4 GiB) goes through a [`FileEncoder`]
//! instead ([`ObjectEncoder::start_file`]): sans-IO, it is fed the file's bytes in pieces of any
//! size, hands out each object as soon as its chunk's end is certain, and keeps at most a
//! maximum chunk plus the last piece. A FastCDC cut point depends only on the
//! [`CHUNK_MAX_SIZE`] bytes after the previous one, so a cut is certain once that many bytes
//! follow it, or the file has ended. `encode_file` is the same encoder fed the whole file at
//! once, so the two give the same chunks and ids by construction; tests hold them to it.

use std::collections::{HashSet, VecDeque};
use std::ops::Range;

use fastcdc::v2020;

use crate::compress::COMPRESSION_LEVEL;
use crate::id::ObjectId;
use crate::limits::{CHUNK_AVG_SIZE, CHUNK_MAX_SIZE, CHUNK_MIN_SIZE, MAX_FILE_SIZE};
use crate::object::{
    EntryKind, FORMAT_VERSION, FileChunk, FileObject, Object, ObjectError, ObjectKind, chunk_id,
};
use crate::tree::FileRef;

/// The FastCDC masks for [`CHUNK_AVG_SIZE`] at normalization level 1, as
/// `fastcdc::v2020::FastCDC::new` derives them: `MASKS[log2(avg) ± 1]`. Computing them here lets
/// [`chunk_boundaries`] call the crate's `cut` directly, without the two gear tables that every
/// `FastCDC` value allocates.
const AVG_BITS: usize = CHUNK_AVG_SIZE.trailing_zeros() as usize;
const MASK_S: u64 = v2020::MASKS[AVG_BITS + 1];
const MASK_L: u64 = v2020::MASKS[AVG_BITS - 1];

const _: () = assert!(CHUNK_AVG_SIZE.is_power_of_two());
const _: () = assert!(CHUNK_MIN_SIZE >= v2020::MINIMUM_MIN && CHUNK_MIN_SIZE <= v2020::MINIMUM_MAX);
const _: () = assert!(CHUNK_AVG_SIZE >= v2020::AVERAGE_MIN && CHUNK_AVG_SIZE <= v2020::AVERAGE_MAX);
const _: () = assert!(CHUNK_MAX_SIZE >= v2020::MAXIMUM_MIN && CHUNK_MAX_SIZE <= v2020::MAXIMUM_MAX);

/// The byte ranges a file is cut into, in order. They cover `data` exactly; every range but the
/// last is at least [`CHUNK_MIN_SIZE`] long, none is longer than [`CHUNK_MAX_SIZE`], data of at
/// most [`CHUNK_MIN_SIZE`] bytes is one range, and empty data is one empty range.
pub fn chunk_boundaries(data: &[u8]) -> ChunkBoundaries<'_> {
    ChunkBoundaries {
        data,
        offset: 0,
        empty_pending: data.is_empty(),
    }
}

/// The iterator returned by [`chunk_boundaries`].
#[derive(Debug, Clone)]
pub struct ChunkBoundaries<'a> {
    data: &'a [u8],
    offset: usize,
    /// Empty data still has one (empty) chunk; this is set until it has been returned.
    empty_pending: bool,
}

impl Iterator for ChunkBoundaries<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.empty_pending {
            self.empty_pending = false;
            return Some(0..0);
        }
        let rest = self
            .data
            .get(self.offset..)
            .filter(|rest| !rest.is_empty())?;
        let len = first_cut(rest);
        let start = self.offset;
        self.offset += len;
        Some(start..self.offset)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let rest = self.data.len() - self.offset;
        let low = rest.div_ceil(CHUNK_MAX_SIZE as usize) + usize::from(self.empty_pending);
        let high = rest.div_ceil(CHUNK_MIN_SIZE as usize) + usize::from(self.empty_pending);
        (low, Some(high))
    }
}

/// The length of the first chunk of non-empty `data`, which starts at a cut point. It is the
/// file's next chunk when `data` holds at least [`CHUNK_MAX_SIZE`] bytes or all that is left.
fn first_cut(data: &[u8]) -> usize {
    let (_hash, len) = v2020::cut(
        data,
        CHUNK_MIN_SIZE as usize,
        CHUNK_AVG_SIZE as usize,
        CHUNK_MAX_SIZE as usize,
        MASK_S,
        MASK_L,
        MASK_S << 1,
        MASK_L << 1,
    );
    // `cut` always makes progress on non-empty input; guard anyway so a future version of the
    // crate cannot turn this into an endless loop.
    len.clamp(1, data.len())
}

/// One object ready to store or send: its id, kind and the zstd frame of its encoding.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedObject {
    pub id: ObjectId,
    pub kind: ObjectKind,
    /// One zstd frame of the object's canonical encoding, as [`crate::verify_frame`] accepts it.
    pub frame: Vec<u8>,
    /// The length of the uncompressed encoding, header included.
    pub encoded_len: usize,
}

impl std::fmt::Debug for EncodedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The frame bytes are noise in a debug print; their length is what matters.
        f.debug_struct("EncodedObject")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("frame_len", &self.frame.len())
            .field("encoded_len", &self.encoded_len)
            .finish()
    }
}

/// A file turned into objects: what its dir entry says, and the objects to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFile {
    /// [`EntryKind::File`] or [`EntryKind::Executable`].
    pub kind: EntryKind,
    /// [`ObjectKind::Chunk`] for a one-chunk file, [`ObjectKind::File`] otherwise.
    pub target: ObjectKind,
    /// The file's length in bytes.
    pub size: u64,
    /// The id the dir entry points at: the only chunk, or the file object.
    pub id: ObjectId,
    /// Every distinct object of the file, children first: its chunks in file order (a chunk that
    /// repeats inside the file appears once), then the file object if there is one. This is the
    /// order an upload must respect. From [`FileEncoder::finish`]: those not yet taken with
    /// [`FileEncoder::next_object`].
    pub objects: Vec<EncodedObject>,
}

impl EncodedFile {
    /// The file's entry in a listing.
    pub fn file_ref(&self) -> FileRef {
        FileRef {
            kind: self.kind,
            target: self.target,
            size: self.size,
            id: self.id,
        }
    }
}

/// The client's encode pipeline, holding what it reuses from one object to the next: a zstd
/// compression context and two scratch buffers. Make one per thread and keep it.
pub struct ObjectEncoder {
    compressor: zstd::bulk::Compressor<'static>,
    /// Scratch: the encoding of the object being compressed (header, then body).
    encoded: Vec<u8>,
    /// Scratch: the frame being written, sized for the largest chunk.
    frame: Vec<u8>,
}

impl std::fmt::Debug for ObjectEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectEncoder")
            .field("level", &COMPRESSION_LEVEL)
            .finish_non_exhaustive()
    }
}

impl Default for ObjectEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ObjectEncoder {
    pub fn new() -> Self {
        // Creating a context only fails when zstd cannot allocate it.
        let compressor =
            zstd::bulk::Compressor::new(COMPRESSION_LEVEL).expect("zstd compression context");
        let largest_chunk = crate::limits::OBJECT_HEADER_LEN + CHUNK_MAX_SIZE as usize;
        Self {
            compressor,
            encoded: Vec::with_capacity(largest_chunk),
            frame: Vec::with_capacity(zstd::zstd_safe::compress_bound(largest_chunk)),
        }
    }

    /// Cuts `data` into chunks, hashes and compresses them, and adds a file object when there is
    /// more than one chunk. Fails only for data larger than [`MAX_FILE_SIZE`].
    pub fn encode_file(
        &mut self,
        data: &[u8],
        executable: bool,
    ) -> Result<EncodedFile, ObjectError> {
        if data.len() as u64 > MAX_FILE_SIZE {
            return Err(ObjectError::FileTooLarge(data.len() as u64));
        }
        let mut file = self.start_file(executable);
        file.reserve(data.len());
        // The whole file is at hand: every cut is certain, and the chunks are hashed and
        // compressed where they lie.
        file.size = data.len() as u64;
        file.cut(data, true);
        file.finish()
    }

    /// A [`FileEncoder`] for one file, fed in pieces; it uses this encoder's zstd context and
    /// buffers until it is finished.
    pub fn start_file(&mut self, executable: bool) -> FileEncoder<'_> {
        FileEncoder {
            encoder: self,
            kind: if executable {
                EntryKind::Executable
            } else {
                EntryKind::File
            },
            pending: Vec::new(),
            chunks: Vec::new(),
            seen: HashSet::new(),
            ready: VecDeque::new(),
            size: 0,
        }
    }

    /// Hashes and compresses any object (a dir, typically; files go through
    /// [`ObjectEncoder::encode_file`]).
    pub fn encode_object(&mut self, object: &Object) -> EncodedObject {
        match object {
            Object::Chunk(body) => self.compress_chunk(chunk_id(body), body),
            _ => {
                let encoded = object.encode();
                let id = ObjectId::of_encoded(&encoded);
                self.compress_encoding(id, object.kind(), &encoded)
            }
        }
    }

    /// Compresses the chunk `body`, whose id the caller already has, by way of the scratch
    /// buffer (the encoding is the two header bytes, then the body).
    fn compress_chunk(&mut self, id: ObjectId, body: &[u8]) -> EncodedObject {
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        encoded.extend_from_slice(&[ObjectKind::Chunk.tag(), FORMAT_VERSION]);
        encoded.extend_from_slice(body);
        let object = self.compress_encoding(id, ObjectKind::Chunk, &encoded);
        self.encoded = encoded;
        object
    }

    fn compress_encoding(
        &mut self,
        id: ObjectId,
        kind: ObjectKind,
        encoded: &[u8],
    ) -> EncodedObject {
        let bound = zstd::zstd_safe::compress_bound(encoded.len());
        self.frame.clear();
        self.frame.reserve(bound);
        // With room for the worst case, compressing a buffer fails only if zstd cannot allocate.
        let written = self
            .compressor
            .compress_to_buffer(encoded, &mut self.frame)
            .expect("zstd compression of a buffer");
        debug_assert_eq!(written, self.frame.len());
        EncodedObject {
            id,
            kind,
            frame: self.frame.as_slice().to_vec(),
            encoded_len: encoded.len(),
        }
    }
}

/// One file encoded as its bytes come in, without I/O: [`FileEncoder::feed`] the file's bytes
/// in order (pieces of any size), take the objects ready so far with
/// [`FileEncoder::next_object`] whenever convenient, and [`FileEncoder::finish`] at the end of
/// the file for its entry and the objects not yet taken.
///
/// The objects are those of [`ObjectEncoder::encode_file`] on the whole file, in the same order
/// (each distinct chunk once, in file order, then the file object if there is one), whatever
/// the pieces: a chunk is cut only once [`CHUNK_MAX_SIZE`] bytes follow its start, or at the
/// end. It holds the bytes after the last certain cut (less than a maximum chunk, plus the
/// piece being fed) and the file's chunk list, never the file.
pub struct FileEncoder<'a> {
    encoder: &'a mut ObjectEncoder,
    kind: EntryKind,
    /// Bytes fed but not cut yet; they start at a cut point.
    pending: Vec<u8>,
    chunks: Vec<FileChunk>,
    /// Chunks already encoded: one repeated inside the file is compressed and handed out once.
    seen: HashSet<ObjectId>,
    /// Encoded objects not taken yet.
    ready: VecDeque<EncodedObject>,
    /// Bytes fed so far.
    size: u64,
}

impl std::fmt::Debug for FileEncoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileEncoder")
            .field("kind", &self.kind)
            .field("size", &self.size)
            .field("pending", &self.pending.len())
            .field("chunks", &self.chunks.len())
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl FileEncoder<'_> {
    /// Feeds the next bytes of the file, encoding every chunk whose end is now certain. Fails
    /// once the file passes [`MAX_FILE_SIZE`].
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), ObjectError> {
        self.size += bytes.len() as u64;
        if self.size > MAX_FILE_SIZE {
            return Err(ObjectError::FileTooLarge(self.size));
        }
        if self.pending.is_empty() {
            // Cut straight from the caller's bytes; only the uncertain tail is copied.
            let used = self.cut(bytes, false);
            self.pending.extend_from_slice(&bytes[used..]);
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(bytes);
            let used = self.cut(&pending, false);
            pending.drain(..used);
            self.pending = pending;
        }
        Ok(())
    }

    /// The next encoded object, in upload order (children first), once it is ready.
    pub fn next_object(&mut self) -> Option<EncodedObject> {
        self.ready.pop_front()
    }

    /// Ends the file: cuts what is left, adds the file object when there is more than one
    /// chunk, and returns the file's entry with every object not taken yet.
    pub fn finish(mut self) -> Result<EncodedFile, ObjectError> {
        let pending = std::mem::take(&mut self.pending);
        self.cut(&pending, true);
        let size = self.size;
        let kind = self.kind;
        if let [only] = self.chunks.as_slice() {
            return Ok(EncodedFile {
                kind,
                target: ObjectKind::Chunk,
                size,
                id: only.id,
                objects: self.ready.into(),
            });
        }
        let file = Object::File(FileObject::new(self.chunks)?);
        let file_object = self.encoder.encode_object(&file);
        let id = file_object.id;
        let mut objects: Vec<EncodedObject> = self.ready.into();
        objects.push(file_object);
        Ok(EncodedFile {
            kind,
            target: ObjectKind::File,
            size,
            id,
            objects,
        })
    }

    /// Room for the chunks and objects of a file of `len` bytes (the fewest it can have).
    fn reserve(&mut self, len: usize) {
        let chunks = len.div_ceil(CHUNK_MAX_SIZE as usize).max(1);
        self.chunks.reserve(chunks);
        self.ready.reserve(chunks + 1);
    }

    /// Encodes the chunks at the start of `data` (which starts at a cut point) whose ends are
    /// certain: all of them when `at_end`, else each with at least [`CHUNK_MAX_SIZE`] bytes from
    /// its start on. Returns how many bytes of `data` they cover.
    fn cut(&mut self, data: &[u8], at_end: bool) -> usize {
        if at_end && data.is_empty() && self.chunks.is_empty() {
            // An empty file is one empty chunk.
            self.add_chunk(&[]);
            return 0;
        }
        let mut offset = 0;
        while offset < data.len() {
            let rest = &data[offset..];
            if !at_end && rest.len() < CHUNK_MAX_SIZE as usize {
                break;
            }
            let len = first_cut(rest);
            self.add_chunk(&rest[..len]);
            offset += len;
        }
        offset
    }

    fn add_chunk(&mut self, body: &[u8]) {
        let id = chunk_id(body);
        self.chunks.push(FileChunk {
            id,
            // A chunk is at most CHUNK_MAX_SIZE bytes, so its length fits.
            len: body.len() as u32,
        });
        // Chunks repeated inside one file (runs of zeros, copied blocks) are compressed and
        // handed out once.
        if self.seen.insert(id) {
            let object = self.encoder.compress_chunk(id, body);
            self.ready.push_back(object);
        }
    }
}

/// [`ObjectEncoder::encode_file`] with a one-off encoder. Keep an [`ObjectEncoder`] instead when
/// encoding many files.
pub fn encode_file(data: &[u8], executable: bool) -> Result<EncodedFile, ObjectError> {
    ObjectEncoder::new().encode_file(data, executable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::verify_frame_of_kind;

    use crate::checks::noise;

    fn check_boundaries(data: &[u8]) -> Vec<Range<usize>> {
        let ranges: Vec<_> = chunk_boundaries(data).collect();
        assert!(!ranges.is_empty());
        let mut expected_start = 0;
        for (index, range) in ranges.iter().enumerate() {
            assert_eq!(range.start, expected_start);
            assert!(range.len() <= CHUNK_MAX_SIZE as usize);
            if index + 1 < ranges.len() {
                assert!(range.len() >= CHUNK_MIN_SIZE as usize);
            }
            expected_start = range.end;
        }
        assert_eq!(expected_start, data.len());
        ranges
    }

    fn check_encoded(file: &EncodedFile, data: &[u8]) {
        assert_eq!(file.size, data.len() as u64);
        assert_eq!(file.objects.last().map(|o| o.id), Some(file.id));
        assert_eq!(file.objects.last().map(|o| o.kind), Some(file.target));
        let mut rebuilt = Vec::new();
        let mut chunks = std::collections::HashMap::new();
        for object in &file.objects {
            let (decoded, encoded) =
                verify_frame_of_kind(&object.id, object.kind, &object.frame).unwrap();
            assert_eq!(encoded.len(), object.encoded_len);
            match decoded {
                Object::Chunk(body) => {
                    chunks.insert(object.id, body);
                }
                Object::File(file_object) => {
                    for chunk in file_object.chunks() {
                        // Children come first: every chunk was already seen.
                        rebuilt.extend_from_slice(&chunks[&chunk.id]);
                    }
                }
                Object::Dir(_) => panic!("a file encodes to no dir"),
            }
        }
        if file.target == ObjectKind::Chunk {
            assert_eq!(file.objects.len(), 1);
            rebuilt = chunks.remove(&file.id).unwrap();
        }
        assert_eq!(rebuilt, data);
    }

    #[test]
    fn matches_the_crates_own_iterator() {
        let data = noise(3 << 20, 7);
        let ours: Vec<_> = chunk_boundaries(&data).collect();
        let theirs: Vec<_> =
            v2020::FastCDC::new(&data, CHUNK_MIN_SIZE, CHUNK_AVG_SIZE, CHUNK_MAX_SIZE)
                .map(|chunk| chunk.offset..chunk.offset + chunk.length)
                .collect();
        assert_eq!(ours, theirs);
        assert!(
            ours.len() > 20,
            "about 3 MiB / 64 KiB chunks, got {}",
            ours.len()
        );
    }

    #[test]
    fn sizes_at_the_edges() {
        assert_eq!(check_boundaries(&[]), vec![0..0]);
        assert_eq!(check_boundaries(b"x"), vec![0..1]);
        let min = CHUNK_MIN_SIZE as usize;
        assert_eq!(check_boundaries(&noise(min, 1)).len(), 1);
        // One past the minimum may be cut, but never into a chunk under the minimum.
        check_boundaries(&noise(min + 1, 1));
        // Data without any cut point (all zeros) is cut at the maximum.
        let zeros = vec![0u8; 3 * CHUNK_MAX_SIZE as usize + 5];
        let ranges = check_boundaries(&zeros);
        assert_eq!(ranges.len(), 4);
        assert_eq!(ranges[3].len(), 5);
    }

    #[test]
    fn empty_and_small_files_are_one_chunk() {
        for data in [
            Vec::new(),
            b"hello".to_vec(),
            noise(CHUNK_MIN_SIZE as usize, 3),
        ] {
            let file = encode_file(&data, false).unwrap();
            assert_eq!(file.target, ObjectKind::Chunk);
            assert_eq!(file.kind, EntryKind::File);
            assert_eq!(file.id, chunk_id(&data));
            check_encoded(&file, &data);
        }
        let file = encode_file(b"#!/bin/sh\n", true).unwrap();
        assert_eq!(file.kind, EntryKind::Executable);
    }

    #[test]
    fn large_files_get_a_file_object() {
        let mut encoder = ObjectEncoder::new();
        let data = noise(1 << 20, 11);
        let file = encoder.encode_file(&data, false).unwrap();
        assert_eq!(file.target, ObjectKind::File);
        assert!(file.objects.len() > 3);
        check_encoded(&file, &data);
        // The encoder is reusable and deterministic.
        assert_eq!(encoder.encode_file(&data, false).unwrap(), file);
    }

    #[test]
    fn repeated_chunks_are_listed_once() {
        let zeros = vec![0u8; 4 * CHUNK_MAX_SIZE as usize];
        let file = encode_file(&zeros, false).unwrap();
        assert_eq!(file.target, ObjectKind::File);
        // One distinct chunk, then the file object listing it four times.
        assert_eq!(file.objects.len(), 2);
        check_encoded(&file, &zeros);
    }

    /// Feeds `data` to a [`FileEncoder`] in pieces of `step` bytes, taking the objects as they
    /// come, and checks the result is [`ObjectEncoder::encode_file`]'s: same entry, same objects
    /// in the same order.
    fn check_fed_in_pieces(data: &[u8], step: usize) {
        let mut encoder = ObjectEncoder::new();
        let whole = encoder.encode_file(data, true).unwrap();
        let mut file = encoder.start_file(true);
        let mut streamed = Vec::new();
        for piece in data.chunks(step) {
            file.feed(piece).unwrap();
            // Never more than a maximum chunk plus the piece is held back.
            assert!(file.pending.len() < CHUNK_MAX_SIZE as usize + step);
            streamed.extend(std::iter::from_fn(|| file.next_object()));
        }
        let finished = file.finish().unwrap();
        streamed.extend(finished.objects.iter().cloned());
        assert_eq!(finished.file_ref(), whole.file_ref());
        assert_eq!(streamed, whole.objects);
    }

    #[test]
    fn streaming_matches_the_whole_buffer_pipeline() {
        let random = noise(3 * 1024 * 1024 + 17, 9);
        check_fed_in_pieces(&random, 1 << 20);
        check_fed_in_pieces(&random, 4099);
        // Repeated content: duplicate chunks and long runs cut at the maximum.
        let mut repeated = noise(300 * 1024, 1).repeat(4);
        repeated.extend(vec![0u8; 900 * 1024]);
        check_fed_in_pieces(&repeated, 65536);
        // Small inputs, down to empty, take the same path correctly too.
        check_fed_in_pieces(&noise(100, 2), 7);
        check_fed_in_pieces(&noise(CHUNK_MAX_SIZE as usize, 3), 1 << 20);
        check_fed_in_pieces(b"", 10);
    }

    #[test]
    fn a_stream_past_the_file_size_limit_fails() {
        let mut encoder = ObjectEncoder::new();
        let mut file = encoder.start_file(false);
        file.feed(b"abc").unwrap();
        // As if 4 GiB had been fed (feeding them takes too long for a unit test).
        file.size = MAX_FILE_SIZE;
        assert_eq!(
            file.feed(b"x"),
            Err(ObjectError::FileTooLarge(MAX_FILE_SIZE + 1))
        );
    }

    #[test]
    fn encode_object_matches_object_id() {
        let mut encoder = ObjectEncoder::new();
        for object in [
            Object::Dir(crate::object::Dir::empty()),
            Object::Chunk(b"abc".to_vec()),
        ] {
            let encoded = encoder.encode_object(&object);
            assert_eq!(encoded.id, object.id());
            assert_eq!(encoded.encoded_len, object.encoded_len());
            let (decoded, _) =
                verify_frame_of_kind(&encoded.id, encoded.kind, &encoded.frame).unwrap();
            assert_eq!(decoded, object);
        }
    }
}
