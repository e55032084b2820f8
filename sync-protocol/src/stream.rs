//! The object stream: the binary body of push requests and pull responses.
//!
//! An object stream carries objects as the zstd frames that are stored, so a server keeps
//! exactly the bytes a client sent and a client can write what it pulls straight into its
//! cache. Every frame is checked on its own as soon as its last byte arrives (the decoder is fed
//! arbitrary slices), and the trailer makes a cut-off stream an error rather than a shorter list.
//!
//! # Byte format (version 1)
//!
//! All integers are little-endian and fixed-width.
//!
//! ```text
//! stream  = header (frame | record)* trailer
//! header  = magic:"CAIRNOS" (7 bytes: 43 41 49 52 4e 4f 53)  version:u8 (= 1)
//! frame   = kind:u8 (1 chunk, 2 file, 3 dir)  id:[u8; 32]  len:u32  zstd:[u8; len]
//! record  = 4 path_len:u16 path                                          (remove)
//!         | 5 path_len:u16 path kind:u8 target:u8 size:u64 id:[u8; 32]  (entry)
//!         | 6 path_len:u16 path kind:u8 delta:u8 len:u32 zstd:[u8; len] (content)
//! trailer = end:u8 (= 0)  count:u32  digest:[u8; 32]
//! ```
//!
//! Records are the change records of [`crate::patch`]: `path` is a valid project path in
//! UTF-8 (at most 4,096 bytes), records come in strictly increasing path order, `kind` and
//! `target` use the dir-entry tags, `delta` is 0 or 1, and a content record's `len` obeys the
//! frame limit. The decoder checks each record on its own; what it means (the base it edits,
//! the dictionary of a delta) is the receiver's to check. Records and frames count alike in
//! `count` and towards the frame limit. A receiver that does not expect records (an upload,
//! an old client) rejects the first one.
//!
//! - `kind` and `id` are the object's kind and id; `zstd` is one zstd frame (RFC 8878) of the
//!   object's canonical encoding, exactly as stored. The id is of the uncompressed encoding, so
//!   any compression level is valid.
//! - `len` is at most [`MAX_FRAME_LEN`] (zstd's worst-case bound for the largest valid object);
//!   a decoder rejects a larger value as soon as it has read it, before buffering the frame.
//! - A stream holds at most [`MAX_STREAM_FRAMES`] frames; `count` repeats how many it holds.
//! - `digest` is BLAKE3 in derive-key mode, context [`DIGEST_CONTEXT`], over every byte of the
//!   stream before the digest itself: header, frames, end tag and count.
//! - Nothing may follow the trailer. An empty stream (no frames) is valid.
//!
//! A decoder checks each frame when it is complete: `len` within the limit, the zstd frame is a
//! single frame that decompresses (capped at the largest valid object of its declared kind,
//! [`max_encoded_len`](crate::compress::max_encoded_len); at most [`MAX_OBJECT_SIZE`])
//! to a canonical object of kind `kind`, whose id is `id`. Frames are in the order the sender
//! chose; for a push that is children first (see the object store's closure rule). The codec
//! does not reject an object named twice: it checks frames, not the set of objects, and an
//! idempotent store takes a repeat as already present.
//!
//! # Worked example
//!
//! A stream holding one object, the empty dir, whose encoding is the 6 bytes `03 01 00 00 00 00`
//! (kind 3, format 1, zero entries) and whose id is
//! `b52a9d1499db27f2f4f210e05dfdb7189965d3a02e809558e621d1ebd18d331f`. Compressed by zstd at
//! level 3 it is the 15-byte frame `28 b5 2f fd 20 06 31 00 00 03 01 00 00 00 00` (magic, a
//! frame header declaring 6 bytes of content, one raw block). The stream is 97 bytes:
//!
//! ```text
//! offset  bytes                                              meaning
//!      0  43 41 49 52 4e 4f 53                               magic "CAIRNOS"
//!      7  01                                                 version 1
//!      8  03                                                 frame 0: kind dir
//!      9  b5 2a 9d 14 99 db 27 f2 f4 f2 10 e0 5d fd b7 18    frame 0: id
//!         99 65 d3 a0 2e 80 95 58 e6 21 d1 eb d1 8d 33 1f
//!     41  0f 00 00 00                                        frame 0: len = 15
//!     45  28 b5 2f fd 20 06 31 00 00 03 01 00 00 00 00       frame 0: zstd frame
//!     60  00                                                 end tag
//!     61  01 00 00 00                                        count = 1
//!     65  38 7d 7c d0 a5 a4 aa 90 67 71 dd f9 68 82 ef 1c    digest of bytes 0..65
//!         2c 2d 9a 38 c9 91 6c 96 9f c0 67 09 8a f5 2d bc
//! ```
//!
//! The empty stream is `43 41 49 52 4e 4f 53 01 00 00 00 00 00` and the 32-byte digest of
//! those 13 bytes. The unit test `worked_example_is_exact` checks both against this text.
//!
//! # Using the codec
//!
//! [`StreamEncoder`] writes a stream into memory, handing out bytes as they are ready with
//! [`StreamEncoder::take_bytes`]. [`StreamDecoder`] is sans-IO: [`StreamDecoder::feed`] it what
//! was read, drain [`StreamDecoder::next_frame`] until it returns `Ok(None)`, and call
//! [`StreamDecoder::finish`] at the end of input. Drained that way, it holds at most one
//! incomplete frame (at most [`FRAME_HEADER_LEN`] + [`MAX_FRAME_LEN`] bytes) beyond the last
//! slice fed. The first error is final: later calls return it again.

use std::fmt;

use crate::chunking::EncodedObject;
use crate::compress::{CompressError, verify_frame_of_kind};
use crate::id::ObjectId;
use crate::limits::{MAX_OBJECT_SIZE, MAX_PATH_LEN};
use crate::object::{EntryKind, Object, ObjectKind};
use crate::patch::{Record, TAG_CONTENT, TAG_ENTRY, TAG_REMOVE, check_record};
use crate::tree::{FileRef, Path};

/// The first seven bytes of every object stream.
pub const MAGIC: [u8; 7] = *b"CAIRNOS";
/// The stream format version this module reads and writes.
pub const STREAM_VERSION: u8 = 1;
/// Bytes in the stream header: magic and version.
pub const HEADER_LEN: usize = MAGIC.len() + 1;
/// Bytes in a frame before its zstd bytes: kind, id, length.
pub const FRAME_HEADER_LEN: usize = 1 + ObjectId::LEN + 4;
/// The tag that starts the trailer where a frame's kind would be.
pub const END_TAG: u8 = 0;
/// Bytes in the trailer: end tag, frame count, digest.
pub const TRAILER_LEN: usize = 1 + 4 + 32;
/// The BLAKE3 derive-key context of the trailer digest.
pub const DIGEST_CONTEXT: &str = "cairn.dev 2026-11 object stream v1 digest";

/// The most frames one stream may carry. A larger upload is split into several pushes (or
/// resumed through negotiation); a larger pull is planned as several responses.
pub const MAX_STREAM_FRAMES: u32 = 1 << 20;
/// The largest compressed length a frame may declare: zstd's worst case for the largest valid
/// object (`ZSTD_COMPRESSBOUND(MAX_OBJECT_SIZE)`), so every object fits however it compresses.
pub const MAX_FRAME_LEN: u32 = zstd_compress_bound(MAX_OBJECT_SIZE) as u32;

/// `ZSTD_COMPRESSBOUND` from zstd.h, as a `const fn`.
const fn zstd_compress_bound(size: usize) -> usize {
    let small = 128 << 10;
    size + (size >> 8)
        + if size < small {
            (small - size) >> 11
        } else {
            0
        }
}

const _: () = assert!(zstd_compress_bound(MAX_OBJECT_SIZE) <= u32::MAX as usize);

/// The limits a codec enforces. The defaults are the format's ceiling; a deployment may lower
/// them (a decoder clamps anything higher back to the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    pub max_frames: u32,
    pub max_frame_len: u32,
}

impl StreamLimits {
    pub const DEFAULT: Self = Self {
        max_frames: MAX_STREAM_FRAMES,
        max_frame_len: MAX_FRAME_LEN,
    };

    fn clamped(self) -> Self {
        Self {
            max_frames: self.max_frames.min(MAX_STREAM_FRAMES),
            max_frame_len: self.max_frame_len.min(MAX_FRAME_LEN),
        }
    }
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The part of a stream being read when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Section {
    Header,
    FrameHeader,
    FrameBody,
    Trailer,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Header => "stream header",
            Self::FrameHeader => "frame header",
            Self::FrameBody => "frame body",
            Self::Trailer => "trailer",
        })
    }
}

/// Why a stream was rejected (or could not be written). Offsets are byte positions in the
/// stream; `index` is the 0-based frame number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("not an object stream: the first bytes are not {MAGIC:?}")]
    BadMagic,
    #[error("unsupported object stream version {0}")]
    UnsupportedVersion(u8),
    #[error("stream ends at byte {offset} inside the {section} (frame {index})")]
    Truncated {
        section: Section,
        index: u32,
        offset: u64,
    },
    #[error("frame {index} at byte {offset} has unknown tag {tag}")]
    UnknownTag { index: u32, offset: u64, tag: u8 },
    #[error(
        "frame {index} at byte {offset} declares {len} compressed bytes, more than the limit of {limit}"
    )]
    FrameTooLarge {
        index: u32,
        offset: u64,
        len: u64,
        limit: u32,
    },
    #[error("frame {index} at byte {offset} is past the limit of {limit} frames per stream")]
    TooManyFrames { index: u32, offset: u64, limit: u32 },
    #[error("frame {index} at byte {offset} ({kind:?} {id}) is invalid: {error}")]
    BadFrame {
        index: u32,
        offset: u64,
        kind: ObjectKind,
        id: ObjectId,
        error: CompressError,
    },
    #[error("trailer at byte {offset} counts {declared} frames, the stream holds {actual}")]
    CountMismatch {
        offset: u64,
        declared: u32,
        actual: u32,
    },
    #[error("trailer at byte {offset}: the digest does not match the stream")]
    DigestMismatch { offset: u64 },
    #[error("bytes after the trailer, from byte {offset}")]
    TrailingBytes { offset: u64 },
    #[error("finish called while frame {index} was decoded but not taken with next_frame")]
    UnreadFrame { index: u32 },
    #[error("change record {index} at byte {offset} is invalid: {detail}")]
    BadRecord {
        index: u32,
        offset: u64,
        detail: String,
    },
    #[error("item {index} at byte {offset} is a change record, where only objects are accepted")]
    UnexpectedRecord { index: u32, offset: u64 },
}

/// One verified frame of a stream.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// 0-based position in the stream.
    pub index: u32,
    /// Byte offset of the frame's kind tag in the stream.
    pub offset: u64,
    pub kind: ObjectKind,
    pub id: ObjectId,
    /// The decoded object.
    pub object: Object,
    /// The zstd frame exactly as received: what the store keeps.
    pub compressed: Vec<u8>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("index", &self.index)
            .field("offset", &self.offset)
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("compressed_len", &self.compressed.len())
            .finish_non_exhaustive()
    }
}

/// One verified change record of a stream (see [`crate::patch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordItem {
    /// 0-based position in the stream (records and frames count alike).
    pub index: u32,
    /// Byte offset of the record's tag in the stream.
    pub offset: u64,
    pub record: Record,
}

/// What a stream carries: objects, and (in compact pushes and pulls) change records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Object(Frame),
    Record(RecordItem),
}

/// Bytes of a record before its path: tag and path length.
const RECORD_HEAD_LEN: usize = 1 + 2;
/// Bytes of an entry record after its path: kind, target, size, id.
const ENTRY_BODY_LEN: usize = 1 + 1 + 8 + ObjectId::LEN;
/// Bytes of a content record after its path and before its zstd bytes: kind, delta, len.
const CONTENT_BODY_LEN: usize = 1 + 1 + 4;

/// What [`StreamDecoder::finish`] reports about a complete stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSummary {
    pub frames: u32,
    /// The stream's length in bytes, trailer included.
    pub len: u64,
}

fn digest_hasher() -> blake3::Hasher {
    blake3::Hasher::new_derive_key(DIGEST_CONTEXT)
}

/// Writes an object stream into memory.
pub struct StreamEncoder {
    limits: StreamLimits,
    out: Vec<u8>,
    hasher: blake3::Hasher,
    frames: u32,
    /// Bytes written so far, including those already handed out by `take_bytes`.
    len: u64,
    /// The path of the last change record, which the next must follow.
    last_record: Option<Path>,
}

impl fmt::Debug for StreamEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamEncoder")
            .field("limits", &self.limits)
            .field("frames", &self.frames)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Default for StreamEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamEncoder {
    /// Starts a stream with the default limits; the header is written at once.
    pub fn new() -> Self {
        Self::with_limits(StreamLimits::DEFAULT)
    }

    /// Starts a stream that refuses frames past `limits` (clamped to the format's ceiling).
    pub fn with_limits(limits: StreamLimits) -> Self {
        let mut encoder = Self {
            limits: limits.clamped(),
            out: Vec::new(),
            hasher: digest_hasher(),
            frames: 0,
            len: 0,
            last_record: None,
        };
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(&MAGIC);
        header[MAGIC.len()] = STREAM_VERSION;
        encoder.write(&header);
        encoder
    }

    fn write(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.out.extend_from_slice(bytes);
        self.len += bytes.len() as u64;
    }

    /// Fails when the stream already holds as many frames and records as its limit allows.
    fn check_room(&self) -> Result<(), StreamError> {
        if self.frames >= self.limits.max_frames {
            return Err(StreamError::TooManyFrames {
                index: self.frames,
                offset: self.len,
                limit: self.limits.max_frames,
            });
        }
        Ok(())
    }

    /// Appends one frame. The frame is not verified here: it should come from
    /// [`crate::compress_object`], an [`EncodedObject`] or a verified store. Fails, writing
    /// nothing, if the frame is too large or the stream is full.
    pub fn push(
        &mut self,
        kind: ObjectKind,
        id: &ObjectId,
        zstd_frame: &[u8],
    ) -> Result<(), StreamError> {
        self.check_room()?;
        let len = u32::try_from(zstd_frame.len())
            .ok()
            .filter(|&len| len <= self.limits.max_frame_len);
        let Some(len) = len else {
            return Err(StreamError::FrameTooLarge {
                index: self.frames,
                offset: self.len,
                len: zstd_frame.len() as u64,
                limit: self.limits.max_frame_len,
            });
        };
        let mut header = [0u8; FRAME_HEADER_LEN];
        header[0] = kind.tag();
        header[1..33].copy_from_slice(id.as_bytes());
        header[33..].copy_from_slice(&len.to_le_bytes());
        self.write(&header);
        self.write(zstd_frame);
        self.frames += 1;
        Ok(())
    }

    /// Appends one change record. Records must come in strictly increasing path order; fails,
    /// writing nothing, on a record out of order or invalid on its own, a content frame past
    /// the frame limit, or a full stream.
    pub fn push_record(&mut self, record: &Record) -> Result<(), StreamError> {
        let bad = |detail: String| StreamError::BadRecord {
            index: self.frames,
            offset: self.len,
            detail,
        };
        self.check_room()?;
        check_record(record).map_err(|error| bad(error.to_string()))?;
        if let Some(last) = &self.last_record
            && last >= record.path()
        {
            return Err(bad(format!("{} does not come after {last}", record.path())));
        }
        let path = record.path().as_str().as_bytes();
        let mut bytes = Vec::with_capacity(RECORD_HEAD_LEN + path.len() + ENTRY_BODY_LEN);
        bytes.push(record.tag());
        // A valid path is at most MAX_PATH_LEN (4096) bytes.
        bytes.extend_from_slice(&(path.len() as u16).to_le_bytes());
        bytes.extend_from_slice(path);
        match record {
            Record::Remove { .. } => {}
            Record::Entry { entry, .. } => {
                bytes.push(entry.kind as u8);
                bytes.push(entry.target.tag());
                bytes.extend_from_slice(&entry.size.to_le_bytes());
                bytes.extend_from_slice(entry.id.as_bytes());
            }
            Record::Content {
                kind, delta, zstd, ..
            } => {
                let len = u32::try_from(zstd.len())
                    .ok()
                    .filter(|&len| len <= self.limits.max_frame_len);
                let Some(len) = len else {
                    return Err(StreamError::FrameTooLarge {
                        index: self.frames,
                        offset: self.len,
                        len: zstd.len() as u64,
                        limit: self.limits.max_frame_len,
                    });
                };
                bytes.push(*kind as u8);
                bytes.push(u8::from(*delta));
                bytes.extend_from_slice(&len.to_le_bytes());
                bytes.extend_from_slice(zstd);
            }
        }
        self.write(&bytes);
        self.frames += 1;
        self.last_record = Some(record.path().clone());
        Ok(())
    }

    /// [`StreamEncoder::push`] for an object from the encode pipeline.
    pub fn push_object(&mut self, object: &EncodedObject) -> Result<(), StreamError> {
        self.push(object.kind, &object.id, &object.frame)
    }

    /// Frames written so far.
    pub fn frame_count(&self) -> u32 {
        self.frames
    }

    /// Bytes written so far, including those already taken.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hands out the bytes written since the last call, to send while encoding goes on.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Writes the trailer and returns the bytes not yet taken.
    pub fn finish(mut self) -> Vec<u8> {
        let mut head = [0u8; 5];
        head[0] = END_TAG;
        head[1..].copy_from_slice(&self.frames.to_le_bytes());
        self.write(&head);
        let digest = *self.hasher.finalize().as_bytes();
        self.out.extend_from_slice(&digest);
        self.out
    }
}

/// Encodes `objects`, in order, as one stream.
pub fn encode_stream<'a>(
    objects: impl IntoIterator<Item = &'a EncodedObject>,
) -> Result<Vec<u8>, StreamError> {
    let mut encoder = StreamEncoder::new();
    for object in objects {
        encoder.push_object(object)?;
    }
    Ok(encoder.finish())
}

/// Decodes a whole stream held in memory.
pub fn decode_stream(bytes: &[u8]) -> Result<Vec<Frame>, StreamError> {
    let mut decoder = StreamDecoder::new();
    decoder.feed(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.next_frame()? {
        frames.push(frame);
    }
    decoder.finish()?;
    Ok(frames)
}

#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    /// Between frames: a frame header or the trailer comes next.
    Frames,
    /// A frame header has been read; its `len` zstd bytes come next.
    Body {
        kind: ObjectKind,
        id: ObjectId,
        len: usize,
        offset: u64,
    },
    /// The trailer has been read and checked.
    Done,
}

/// An incremental, sans-IO stream decoder. See the module docs for the calling pattern.
pub struct StreamDecoder {
    limits: StreamLimits,
    /// Bytes fed and not yet consumed are `buffer[start..]`.
    buffer: Vec<u8>,
    start: usize,
    /// Stream offset of `buffer[start]`.
    offset: u64,
    hasher: blake3::Hasher,
    state: State,
    frames: u32,
    failed: Option<StreamError>,
    /// The path of the last change record read, which the next must follow.
    last_record: Option<Path>,
}

impl fmt::Debug for StreamDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("limits", &self.limits)
            .field("state", &self.state)
            .field("offset", &self.offset)
            .field("buffered", &(self.buffer.len() - self.start))
            .field("frames", &self.frames)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::with_limits(StreamLimits::DEFAULT)
    }

    /// A decoder enforcing `limits`, clamped to the format's ceiling.
    pub fn with_limits(limits: StreamLimits) -> Self {
        Self {
            limits: limits.clamped(),
            buffer: Vec::new(),
            start: 0,
            offset: 0,
            hasher: digest_hasher(),
            state: State::Header,
            frames: 0,
            failed: None,
            last_record: None,
        }
    }

    /// Adds input. Nothing is parsed until [`StreamDecoder::next_frame`] is called.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_some() || bytes.is_empty() {
            return;
        }
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        } else if self.start > self.buffer.len() - self.start {
            // More consumed than left: move the rest to the front, so the buffer never grows
            // with bytes already used and the copy costs at most what was consumed.
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Frames verified so far.
    pub fn frame_count(&self) -> u32 {
        self.frames
    }

    /// True once the trailer has been read and checked.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The next complete, verified frame; `Ok(None)` when more input is needed or the stream
    /// is done. A change record is an error here ([`StreamError::UnexpectedRecord`]): callers
    /// that accept records use [`StreamDecoder::next_item`]. An error is final.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        match self.next_item()? {
            None => Ok(None),
            Some(Item::Object(frame)) => Ok(Some(frame)),
            Some(Item::Record(item)) => {
                let error = StreamError::UnexpectedRecord {
                    index: item.index,
                    offset: item.offset,
                };
                self.failed = Some(error.clone());
                self.buffer = Vec::new();
                self.start = 0;
                Err(error)
            }
        }
    }

    /// The next complete, verified frame or change record; `Ok(None)` when more input is
    /// needed or the stream is done. An error is final.
    pub fn next_item(&mut self) -> Result<Option<Item>, StreamError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.step();
        if let Err(error) = &result {
            self.failed = Some(error.clone());
            self.buffer = Vec::new();
            self.start = 0;
        }
        result
    }

    /// Ends the input: succeeds only if the whole stream, trailer included, was read and every
    /// frame was taken.
    pub fn finish(mut self) -> Result<StreamSummary, StreamError> {
        match self.next_item()? {
            Some(Item::Object(frame)) => {
                return Err(StreamError::UnreadFrame { index: frame.index });
            }
            Some(Item::Record(item)) => {
                return Err(StreamError::UnreadFrame { index: item.index });
            }
            None => {}
        }
        let section = match self.state {
            State::Done => {
                return Ok(StreamSummary {
                    frames: self.frames,
                    len: self.offset,
                });
            }
            State::Header => Section::Header,
            State::Body { .. } => Section::FrameBody,
            State::Frames => match self.available().first() {
                Some(&END_TAG) | None => Section::Trailer,
                Some(_) => Section::FrameHeader,
            },
        };
        Err(StreamError::Truncated {
            section,
            index: self.frames,
            offset: self.offset + self.available().len() as u64,
        })
    }

    fn available(&self) -> &[u8] {
        &self.buffer[self.start..]
    }

    /// Marks `len` buffered bytes as used, adding them to the digest when `hash` is set.
    fn consume(&mut self, len: usize, hash: bool) {
        if hash {
            self.hasher
                .update(&self.buffer[self.start..self.start + len]);
        }
        self.start += len;
        self.offset += len as u64;
    }

    fn step(&mut self) -> Result<Option<Item>, StreamError> {
        loop {
            match self.state {
                State::Header => {
                    let available = self.available();
                    let seen = available.len().min(MAGIC.len());
                    // Reject a wrong magic as soon as its first wrong byte is in, so a peer
                    // speaking something else fails fast.
                    if available[..seen] != MAGIC[..seen] {
                        return Err(StreamError::BadMagic);
                    }
                    if available.len() < HEADER_LEN {
                        return Ok(None);
                    }
                    let version = available[MAGIC.len()];
                    if version != STREAM_VERSION {
                        return Err(StreamError::UnsupportedVersion(version));
                    }
                    self.consume(HEADER_LEN, true);
                    self.state = State::Frames;
                }
                State::Frames => {
                    let Some(&tag) = self.available().first() else {
                        return Ok(None);
                    };
                    if tag == END_TAG {
                        return self.read_trailer().map(|()| None);
                    }
                    if matches!(tag, TAG_REMOVE | TAG_ENTRY | TAG_CONTENT) {
                        return self.read_record(tag);
                    }
                    let Some(kind) = ObjectKind::from_tag(tag) else {
                        return Err(StreamError::UnknownTag {
                            index: self.frames,
                            offset: self.offset,
                            tag,
                        });
                    };
                    self.check_room()?;
                    let available = self.available();
                    if available.len() < FRAME_HEADER_LEN {
                        return Ok(None);
                    }
                    let mut id = [0u8; 32];
                    id.copy_from_slice(&available[1..33]);
                    let mut len = [0u8; 4];
                    len.copy_from_slice(&available[33..FRAME_HEADER_LEN]);
                    let len = u32::from_le_bytes(len);
                    if len > self.limits.max_frame_len {
                        return Err(StreamError::FrameTooLarge {
                            index: self.frames,
                            offset: self.offset,
                            len: u64::from(len),
                            limit: self.limits.max_frame_len,
                        });
                    }
                    let offset = self.offset;
                    self.consume(FRAME_HEADER_LEN, true);
                    self.state = State::Body {
                        kind,
                        id: ObjectId::from_bytes(id),
                        len: len as usize,
                        offset,
                    };
                }
                State::Body {
                    kind,
                    id,
                    len,
                    offset,
                } => {
                    if self.available().len() < len {
                        return Ok(None);
                    }
                    let compressed = self.available()[..len].to_vec();
                    self.consume(len, true);
                    let index = self.frames;
                    let (object, _encoded) =
                        verify_frame_of_kind(&id, kind, &compressed).map_err(|error| {
                            StreamError::BadFrame {
                                index,
                                offset,
                                kind,
                                id,
                                error,
                            }
                        })?;
                    self.frames += 1;
                    self.state = State::Frames;
                    return Ok(Some(Item::Object(Frame {
                        index,
                        offset,
                        kind,
                        id,
                        object,
                        compressed,
                    })));
                }
                State::Done => {
                    if self.available().is_empty() {
                        return Ok(None);
                    }
                    return Err(StreamError::TrailingBytes {
                        offset: self.offset,
                    });
                }
            }
        }
    }

    /// Fails when the next frame or record would pass the stream's limit.
    fn check_room(&self) -> Result<(), StreamError> {
        if self.frames >= self.limits.max_frames {
            return Err(StreamError::TooManyFrames {
                index: self.frames,
                offset: self.offset,
                limit: self.limits.max_frames,
            });
        }
        Ok(())
    }

    /// Reads one change record once all of it is buffered.
    fn read_record(&mut self, tag: u8) -> Result<Option<Item>, StreamError> {
        let index = self.frames;
        let offset = self.offset;
        self.check_room()?;
        let bad = |detail: String| StreamError::BadRecord {
            index,
            offset,
            detail,
        };
        let available = self.available();
        if available.len() < RECORD_HEAD_LEN {
            return Ok(None);
        }
        let path_len = usize::from(u16::from_le_bytes([available[1], available[2]]));
        if path_len > MAX_PATH_LEN {
            return Err(bad(format!(
                "a path of {path_len} bytes is longer than {MAX_PATH_LEN}"
            )));
        }
        let body = RECORD_HEAD_LEN + path_len;
        let fixed = match tag {
            TAG_REMOVE => 0,
            TAG_ENTRY => ENTRY_BODY_LEN,
            _ => CONTENT_BODY_LEN,
        };
        if available.len() < body + fixed {
            return Ok(None);
        }
        let mut total = body + fixed;
        if tag == TAG_CONTENT {
            let at = body + 2;
            let len = u32::from_le_bytes([
                available[at],
                available[at + 1],
                available[at + 2],
                available[at + 3],
            ]);
            if len > self.limits.max_frame_len {
                return Err(StreamError::FrameTooLarge {
                    index,
                    offset,
                    len: u64::from(len),
                    limit: self.limits.max_frame_len,
                });
            }
            total += len as usize;
            if available.len() < total {
                return Ok(None);
            }
        }
        let bytes = &available[..total];
        let text = std::str::from_utf8(&bytes[RECORD_HEAD_LEN..body])
            .map_err(|_| bad("the path is not UTF-8".to_owned()))?;
        let path = Path::new(text).map_err(|error| bad(error.to_string()))?;
        let rest = &bytes[body..];
        let record = match tag {
            TAG_REMOVE => Record::Remove { path },
            TAG_ENTRY => {
                let kind = EntryKind::from_tag(rest[0])
                    .ok_or_else(|| bad(format!("unknown entry kind {}", rest[0])))?;
                let target = ObjectKind::from_tag(rest[1])
                    .ok_or_else(|| bad(format!("unknown target kind {}", rest[1])))?;
                let mut size = [0u8; 8];
                size.copy_from_slice(&rest[2..10]);
                let mut id = [0u8; 32];
                id.copy_from_slice(&rest[10..ENTRY_BODY_LEN]);
                Record::Entry {
                    path,
                    entry: FileRef {
                        kind,
                        target,
                        size: u64::from_le_bytes(size),
                        id: ObjectId::from_bytes(id),
                    },
                }
            }
            _ => {
                let kind = EntryKind::from_tag(rest[0])
                    .ok_or_else(|| bad(format!("unknown entry kind {}", rest[0])))?;
                let delta = match rest[1] {
                    0 => false,
                    1 => true,
                    other => return Err(bad(format!("delta flag {other} is neither 0 nor 1"))),
                };
                Record::Content {
                    path,
                    kind,
                    delta,
                    zstd: rest[CONTENT_BODY_LEN..].to_vec(),
                }
            }
        };
        check_record(&record).map_err(|error| bad(error.to_string()))?;
        if let Some(last) = &self.last_record
            && last >= record.path()
        {
            return Err(bad(format!("{} does not come after {last}", record.path())));
        }
        self.consume(total, true);
        self.frames += 1;
        self.last_record = Some(record.path().clone());
        Ok(Some(Item::Record(RecordItem {
            index,
            offset,
            record,
        })))
    }

    fn read_trailer(&mut self) -> Result<(), StreamError> {
        let available = self.available();
        if available.len() < TRAILER_LEN {
            return Ok(());
        }
        let offset = self.offset;
        let declared = u32::from_le_bytes([available[1], available[2], available[3], available[4]]);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&available[5..TRAILER_LEN]);
        if declared != self.frames {
            return Err(StreamError::CountMismatch {
                offset,
                declared,
                actual: self.frames,
            });
        }
        self.consume(5, true);
        // The digest is compared in constant time by blake3::Hash's PartialEq; not that it
        // matters here (it is no secret), but it is the comparison the crate offers.
        if self.hasher.finalize() != blake3::Hash::from_bytes(digest) {
            return Err(StreamError::DigestMismatch { offset });
        }
        self.consume(32, false);
        self.state = State::Done;
        // Anything already buffered after the trailer is an error now, not at the next call.
        if !self.available().is_empty() {
            return Err(StreamError::TrailingBytes {
                offset: self.offset,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::ObjectEncoder;
    use crate::compress::compress_object;
    use crate::name::Name;
    use crate::object::{Dir, DirEntry, EntryKind};

    fn sample_objects() -> Vec<EncodedObject> {
        let mut encoder = ObjectEncoder::new();
        let small = encoder
            .encode_file(b"{\"hello\": \"world\"}\n", false)
            .unwrap();
        let big_data: Vec<u8> = (0..200_000u32)
            .flat_map(|n| (n * 7919).to_le_bytes())
            .collect();
        let big = encoder.encode_file(&big_data, true).unwrap();
        let entries = vec![
            DirEntry {
                name: Name::new("a.json").unwrap(),
                kind: small.kind,
                target: small.target,
                size: small.size,
                id: small.id,
            },
            DirEntry {
                name: Name::new("big.bin").unwrap(),
                kind: big.kind,
                target: big.target,
                size: big.size,
                id: big.id,
            },
        ];
        let root = encoder.encode_object(&Object::Dir(Dir::new(entries).unwrap()));
        let mut objects = small.objects;
        objects.extend(big.objects);
        objects.push(root);
        objects
    }

    /// Feeds `pieces` one at a time, draining frames after each; returns the frames and the
    /// final outcome.
    fn decode_in_pieces<'a>(
        pieces: impl IntoIterator<Item = &'a [u8]>,
        limits: StreamLimits,
    ) -> (Vec<Frame>, Result<StreamSummary, StreamError>) {
        let mut decoder = StreamDecoder::with_limits(limits);
        let mut frames = Vec::new();
        for piece in pieces {
            decoder.feed(piece);
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(error) => return (frames, Err(error)),
                }
            }
        }
        (frames, decoder.finish())
    }

    fn decode_whole(bytes: &[u8], limits: StreamLimits) -> Result<Vec<Frame>, StreamError> {
        let (frames, outcome) = decode_in_pieces([bytes], limits);
        outcome.map(|_| frames)
    }

    fn one_frame_stream(kind: ObjectKind, id: &ObjectId, frame: &[u8]) -> Vec<u8> {
        let mut encoder = StreamEncoder::new();
        encoder.push(kind, id, frame).unwrap();
        encoder.finish()
    }

    #[test]
    fn round_trip_and_any_split() {
        let objects = sample_objects();
        let bytes = encode_stream(&objects).unwrap();
        let frames = decode_stream(&bytes).unwrap();
        assert_eq!(frames.len(), objects.len());
        for (frame, object) in frames.iter().zip(&objects) {
            assert_eq!((frame.kind, frame.id), (object.kind, object.id));
            assert_eq!(frame.compressed, object.frame);
            assert_eq!(frame.object.id(), object.id);
        }
        // Byte by byte gives the same frames and outcome.
        let (split, outcome) = decode_in_pieces(bytes.chunks(1), StreamLimits::DEFAULT);
        assert_eq!(split, frames);
        assert_eq!(
            outcome,
            Ok(StreamSummary {
                frames: objects.len() as u32,
                len: bytes.len() as u64
            })
        );
        // So do uneven pieces.
        let (split, _) = decode_in_pieces(bytes.chunks(4093), StreamLimits::DEFAULT);
        assert_eq!(split, frames);
    }

    #[test]
    fn take_bytes_hands_out_the_same_stream() {
        let objects = sample_objects();
        let whole = encode_stream(&objects).unwrap();
        let mut encoder = StreamEncoder::new();
        let mut pieces = encoder.take_bytes();
        for object in &objects {
            encoder.push_object(object).unwrap();
            pieces.extend(encoder.take_bytes());
        }
        assert_eq!(encoder.frame_count(), objects.len() as u32);
        assert_eq!(encoder.len(), (whole.len() - 32) as u64 - 5);
        pieces.extend(encoder.finish());
        assert_eq!(pieces, whole);
    }

    #[test]
    fn the_empty_stream_ends_in_the_digest_of_its_first_bytes() {
        // The spec's worked examples are checked byte for byte in tests/spec_examples.rs.
        let empty = StreamEncoder::new().finish();
        let digest = blake3::Hasher::new_derive_key(DIGEST_CONTEXT)
            .update(&empty[..13])
            .finalize();
        assert_eq!(empty[13..], digest.as_bytes()[..]);
        assert_eq!(decode_stream(&empty).unwrap(), Vec::new());
    }

    #[test]
    fn bad_magic_and_version() {
        assert_eq!(
            decode_stream(b"HTTP/1.1 200 OK"),
            Err(StreamError::BadMagic)
        );
        // A wrong first byte is enough; the decoder does not wait for the rest.
        let mut decoder = StreamDecoder::new();
        decoder.feed(b"X");
        assert_eq!(decoder.next_frame(), Err(StreamError::BadMagic));
        // The error is final.
        decoder.feed(b"CAIRNOS\x01");
        assert_eq!(decoder.next_frame(), Err(StreamError::BadMagic));
        let mut stream = StreamEncoder::new().finish();
        stream[7] = 2;
        assert_eq!(
            decode_stream(&stream),
            Err(StreamError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        // Small objects, so that every prefix can be tried.
        let mut encoder = ObjectEncoder::new();
        let objects: Vec<_> = [&b""[..], b"one", b"two two"]
            .iter()
            .map(|body| encoder.encode_object(&Object::Chunk(body.to_vec())))
            .collect();
        let bytes = encode_stream(&objects).unwrap();
        let frame_starts: Vec<u64> = decode_stream(&bytes)
            .unwrap()
            .iter()
            .map(|f| f.offset)
            .collect();
        let trailer_start = (bytes.len() - TRAILER_LEN) as u64;
        // Every prefix is rejected, and the error names the section it ended in.
        for cut in 0..bytes.len() {
            let error = decode_stream(&bytes[..cut]).unwrap_err();
            let StreamError::Truncated {
                section, offset, ..
            } = error
            else {
                panic!("cut at {cut}: {error:?}");
            };
            assert_eq!(offset, cut as u64);
            let cut = cut as u64;
            let expected = if cut < HEADER_LEN as u64 {
                Section::Header
            } else if cut >= trailer_start {
                Section::Trailer
            } else {
                let start = frame_starts.iter().rev().find(|&&s| s <= cut).unwrap();
                if cut == *start {
                    // Between frames: what is missing is, first of all, the trailer.
                    Section::Trailer
                } else if cut < start + FRAME_HEADER_LEN as u64 {
                    Section::FrameHeader
                } else {
                    Section::FrameBody
                }
            };
            assert_eq!(section, expected, "cut at {cut}");
        }
    }

    #[test]
    fn corrupt_trailer() {
        let bytes = encode_stream(&sample_objects()).unwrap();
        let trailer = bytes.len() - TRAILER_LEN;
        let mut digest = bytes.clone();
        *digest.last_mut().unwrap() ^= 1;
        assert_eq!(
            decode_stream(&digest),
            Err(StreamError::DigestMismatch {
                offset: trailer as u64
            })
        );
        let mut count = bytes.clone();
        count[trailer + 1] += 1;
        assert!(matches!(
            decode_stream(&count),
            Err(StreamError::CountMismatch { .. })
        ));
        // A flipped bit in a frame's length field is caught by the frame or the digest.
        let mut length = bytes.clone();
        length[HEADER_LEN + 33] ^= 0x01;
        assert!(decode_stream(&length).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            decode_stream(&trailing),
            Err(StreamError::TrailingBytes {
                offset: bytes.len() as u64
            })
        );
        let mut unknown = bytes.clone();
        unknown[HEADER_LEN] = 9;
        assert_eq!(
            decode_stream(&unknown),
            Err(StreamError::UnknownTag {
                index: 0,
                offset: HEADER_LEN as u64,
                tag: 9
            })
        );
    }

    #[test]
    fn frame_length_at_and_past_the_format_limit() {
        assert_eq!(
            MAX_FRAME_LEN as usize,
            zstd::zstd_safe::compress_bound(MAX_OBJECT_SIZE)
        );
        let header = |len: u32| {
            let mut bytes = StreamEncoder::new().take_bytes();
            bytes.push(ObjectKind::Dir.tag());
            bytes.extend_from_slice(&[0; 32]);
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes
        };
        // At the limit the decoder waits for the body; one past, it fails at once.
        let mut at = StreamDecoder::new();
        at.feed(&header(MAX_FRAME_LEN));
        assert_eq!(at.next_frame(), Ok(None));
        let mut past = StreamDecoder::new();
        past.feed(&header(MAX_FRAME_LEN + 1));
        assert_eq!(
            past.next_frame(),
            Err(StreamError::FrameTooLarge {
                index: 0,
                offset: HEADER_LEN as u64,
                len: u64::from(MAX_FRAME_LEN) + 1,
                limit: MAX_FRAME_LEN
            })
        );
        past.feed(&[0; 1000]);
        assert!(past.next_frame().is_err());
        // The encoder refuses to write what a decoder would refuse.
        let too_big = vec![0u8; MAX_FRAME_LEN as usize + 1];
        let mut encoder = StreamEncoder::new();
        assert!(matches!(
            encoder.push(ObjectKind::Chunk, &ObjectId::from_bytes([0; 32]), &too_big),
            Err(StreamError::FrameTooLarge { .. })
        ));
        assert_eq!(encoder.frame_count(), 0);
    }

    #[test]
    fn frame_length_at_and_past_a_lowered_limit() {
        let object = Object::Chunk(b"a chunk".to_vec());
        let frame = compress_object(&object.encode());
        let bytes = one_frame_stream(ObjectKind::Chunk, &object.id(), &frame);
        let len = frame.len() as u32;
        let at = StreamLimits {
            max_frames: 10,
            max_frame_len: len,
        };
        assert_eq!(decode_whole(&bytes, at).unwrap().len(), 1);
        let past = StreamLimits {
            max_frame_len: len - 1,
            ..at
        };
        assert!(matches!(
            decode_whole(&bytes, past),
            Err(StreamError::FrameTooLarge { len: l, .. }) if l == u64::from(len)
        ));
        let mut encoder = StreamEncoder::with_limits(past);
        assert!(
            encoder
                .push(ObjectKind::Chunk, &object.id(), &frame)
                .is_err()
        );
        // Limits above the format's ceiling are clamped to it.
        let raised = StreamLimits {
            max_frames: u32::MAX,
            max_frame_len: u32::MAX,
        };
        assert_eq!(raised.clamped(), StreamLimits::DEFAULT);
    }

    #[test]
    fn frame_count_at_and_past_the_limit() {
        let object = Object::Chunk(Vec::new());
        let frame = compress_object(&object.encode());
        let limits = StreamLimits {
            max_frames: 5,
            max_frame_len: MAX_FRAME_LEN,
        };
        let stream_of = |count: usize| {
            let mut encoder = StreamEncoder::new();
            for _ in 0..count {
                encoder
                    .push(ObjectKind::Chunk, &object.id(), &frame)
                    .unwrap();
            }
            encoder.finish()
        };
        assert_eq!(decode_whole(&stream_of(5), limits).unwrap().len(), 5);
        let past = stream_of(6);
        let fifth_end = decode_stream(&past).unwrap()[5].offset;
        assert_eq!(
            decode_whole(&past, limits),
            Err(StreamError::TooManyFrames {
                index: 5,
                offset: fifth_end,
                limit: 5
            })
        );
        let mut encoder = StreamEncoder::with_limits(limits);
        for _ in 0..5 {
            encoder
                .push(ObjectKind::Chunk, &object.id(), &frame)
                .unwrap();
        }
        assert!(matches!(
            encoder.push(ObjectKind::Chunk, &object.id(), &frame),
            Err(StreamError::TooManyFrames { index: 5, .. })
        ));
    }

    /// The real ceiling, with the smallest frames: about 50 MB of stream, fed in pieces so the
    /// test holds little of it at once. Slow in debug builds, hence ignored by default; run it
    /// with `cargo test -p sync-protocol --release -- --ignored`.
    #[test]
    #[ignore = "decodes a million frames; run with --release -- --ignored"]
    fn frame_count_at_and_past_the_format_limit() {
        let object = Object::Chunk(Vec::new());
        let frame = compress_object(&object.encode());
        let mut encoder = StreamEncoder::new();
        let mut decoder = StreamDecoder::new();
        for index in 0..MAX_STREAM_FRAMES {
            encoder
                .push(ObjectKind::Chunk, &object.id(), &frame)
                .unwrap();
            if index % 4096 == 0 {
                decoder.feed(&encoder.take_bytes());
                while decoder.next_frame().unwrap().is_some() {}
            }
        }
        assert!(matches!(
            encoder.push(ObjectKind::Chunk, &object.id(), &frame),
            Err(StreamError::TooManyFrames { .. })
        ));
        let mut extra = encoder.take_bytes();
        // One more frame than the limit, written by hand since the encoder refuses it.
        extra.push(ObjectKind::Chunk.tag());
        extra.extend_from_slice(object.id().as_bytes());
        extra.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        extra.extend_from_slice(&frame);
        decoder.feed(&extra);
        let mut last = Ok(None);
        for _ in 0..=4096 {
            last = decoder.next_frame();
            if !matches!(last, Ok(Some(_))) {
                break;
            }
        }
        assert!(matches!(
            last,
            Err(StreamError::TooManyFrames { index, .. }) if index == MAX_STREAM_FRAMES
        ));
    }

    #[test]
    fn kind_and_id_mismatch() {
        let dir = Object::Dir(Dir::empty());
        let frame = compress_object(&dir.encode());
        let as_chunk = one_frame_stream(ObjectKind::Chunk, &dir.id(), &frame);
        assert!(matches!(
            decode_stream(&as_chunk),
            Err(StreamError::BadFrame {
                index: 0,
                error: CompressError::KindMismatch { .. },
                ..
            })
        ));
        let wrong_id = one_frame_stream(ObjectKind::Dir, &Object::Chunk(vec![]).id(), &frame);
        assert!(matches!(
            decode_stream(&wrong_id),
            Err(StreamError::BadFrame {
                error: CompressError::IdMismatch { .. },
                ..
            })
        ));
        // The frames before a bad one are still handed out, in order.
        let good = compress_object(&Object::Chunk(b"x".to_vec()).encode());
        let mut encoder = StreamEncoder::new();
        encoder
            .push(ObjectKind::Chunk, &Object::Chunk(b"x".to_vec()).id(), &good)
            .unwrap();
        encoder.push(ObjectKind::Chunk, &dir.id(), &frame).unwrap();
        let (frames, outcome) = decode_in_pieces([&encoder.finish()[..]], StreamLimits::DEFAULT);
        assert_eq!(frames.len(), 1);
        assert!(matches!(
            outcome,
            Err(StreamError::BadFrame { index: 1, .. })
        ));
    }

    #[test]
    fn invalid_object_inside_a_frame() {
        // A dir entry that is not canonical: a file target with a dir kind.
        let entry = DirEntry {
            name: Name::new("x").unwrap(),
            kind: EntryKind::Dir,
            target: ObjectKind::Dir,
            size: 0,
            id: Object::Dir(Dir::empty()).id(),
        };
        let mut encoded = Object::Dir(Dir::new(vec![entry]).unwrap()).encode();
        encoded[8] = EntryKind::File as u8;
        let id = ObjectId::of_encoded(&encoded);
        let bytes = one_frame_stream(ObjectKind::Dir, &id, &compress_object(&encoded));
        assert!(matches!(
            decode_stream(&bytes),
            Err(StreamError::BadFrame {
                error: CompressError::Invalid { .. },
                ..
            })
        ));
    }

    #[test]
    fn zstd_bomb_inside_a_stream() {
        // 64 MiB of zeros in a few KiB, with no declared content size: only the output cap
        // stops it, and it must, long before 64 MiB are held.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
        std::io::Write::write_all(&mut encoder, &vec![0u8; 64 << 20]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 64 * 1024);
        // Sent as a chunk, it is capped at the largest chunk; sent as a dir, at the largest object.
        let bytes = one_frame_stream(ObjectKind::Chunk, &ObjectId::from_bytes([1; 32]), &bomb);
        let chunk_limit = crate::compress::max_encoded_len(ObjectKind::Chunk);
        assert!(matches!(
            decode_stream(&bytes),
            Err(StreamError::BadFrame {
                error: CompressError::TooLarge { limit },
                ..
            }) if limit == chunk_limit
        ));
        let bytes = one_frame_stream(ObjectKind::Dir, &ObjectId::from_bytes([1; 32]), &bomb);
        assert!(matches!(
            decode_stream(&bytes),
            Err(StreamError::BadFrame {
                error: CompressError::TooLarge {
                    limit: MAX_OBJECT_SIZE
                },
                ..
            })
        ));
    }

    #[test]
    fn finish_with_an_untaken_frame() {
        let bytes = encode_stream(&sample_objects()).unwrap();
        let mut decoder = StreamDecoder::new();
        decoder.feed(&bytes);
        assert_eq!(decoder.finish(), Err(StreamError::UnreadFrame { index: 0 }));
    }

    fn record_path(text: &str) -> Path {
        Path::new(text).unwrap()
    }

    fn sample_records() -> Vec<Record> {
        let old = crate::object::Object::Chunk(b"{\"pets\": 1}\n".to_vec()).encode();
        let new = crate::object::Object::Chunk(b"{\"pets\": 2}\n".to_vec()).encode();
        vec![
            Record::Content {
                path: record_path("a/pets.json"),
                kind: EntryKind::File,
                delta: true,
                zstd: crate::patch::encode_content(&new, Some(&old)),
            },
            Record::Remove {
                path: record_path("a/z"),
            },
            Record::Entry {
                path: record_path("b"),
                entry: FileRef::empty_dir(),
            },
        ]
    }

    /// Every item of a whole stream, records and frames.
    fn decode_items(bytes: &[u8]) -> Result<Vec<Item>, StreamError> {
        let mut decoder = StreamDecoder::new();
        let mut items = Vec::new();
        // One byte at a time: every record must wait for its last byte.
        for byte in bytes {
            decoder.feed(std::slice::from_ref(byte));
            while let Some(item) = decoder.next_item()? {
                items.push(item);
            }
        }
        decoder.finish()?;
        Ok(items)
    }

    #[test]
    fn records_and_frames_round_trip_and_count_alike() {
        let objects = sample_objects();
        let records = sample_records();
        let mut encoder = StreamEncoder::new();
        encoder.push_object(&objects[0]).unwrap();
        for record in &records {
            encoder.push_record(record).unwrap();
        }
        encoder.push_object(&objects[1]).unwrap();
        assert_eq!(encoder.frame_count(), 5);
        let bytes = encoder.finish();
        let items = decode_items(&bytes).unwrap();
        assert_eq!(items.len(), 5);
        assert!(matches!(&items[0], Item::Object(frame) if frame.id == objects[0].id));
        for (index, record) in records.iter().enumerate() {
            match &items[index + 1] {
                Item::Record(item) => {
                    assert_eq!(&item.record, record);
                    assert_eq!(item.index, index as u32 + 1);
                }
                other => panic!("expected a record, got {other:?}"),
            }
        }
        // A decoder that takes only objects refuses the first record.
        assert!(matches!(
            decode_stream(&bytes),
            Err(StreamError::UnexpectedRecord { index: 1, .. })
        ));
    }

    #[test]
    fn delta_content_needs_its_dictionary() {
        let Record::Content { zstd, .. } = &sample_records()[0] else {
            unreachable!()
        };
        let old = crate::object::Object::Chunk(b"{\"pets\": 1}\n".to_vec()).encode();
        let kind = crate::object::EntryKind::File;
        let decoded = crate::patch::decode_content(kind, zstd, Some(&old)).unwrap();
        let new = b"{\"pets\": 2}\n".to_vec();
        assert_eq!(decoded.entry.size, new.len() as u64);
        assert_eq!(decoded.chunk, crate::object::Object::Chunk(new));
        assert_eq!(decoded.entry.id, decoded.chunk.id());
        assert!(crate::patch::decode_content(kind, zstd, None).is_err());
    }

    #[test]
    fn records_out_of_order_or_invalid_are_refused() {
        let records = sample_records();
        let mut encoder = StreamEncoder::new();
        encoder.push_record(&records[1]).unwrap();
        let error = encoder.push_record(&records[0]).unwrap_err();
        assert!(
            matches!(error, StreamError::BadRecord { index: 1, .. }),
            "{error}"
        );
        // The same path twice.
        let error = encoder.push_record(&records[1]).unwrap_err();
        assert!(matches!(error, StreamError::BadRecord { .. }), "{error}");
        // A dir entry that is not the empty dir.
        let mut dir = FileRef::empty_dir();
        dir.id = ObjectId::from_bytes([7; 32]);
        let error = encoder
            .push_record(&Record::Entry {
                path: record_path("c"),
                entry: dir,
            })
            .unwrap_err();
        assert!(matches!(error, StreamError::BadRecord { .. }), "{error}");

        // The decoder checks the order too: two records written by hand, "b" then "a".
        let mut bytes = Vec::from(*b"CAIRNOS\x01");
        for path in ["b", "a"] {
            bytes.push(TAG_REMOVE);
            bytes.extend_from_slice(&1u16.to_le_bytes());
            bytes.extend_from_slice(path.as_bytes());
        }
        let mut decoder = StreamDecoder::new();
        decoder.feed(&bytes);
        assert!(matches!(decoder.next_item(), Ok(Some(Item::Record(_)))));
        assert!(matches!(
            decoder.next_item(),
            Err(StreamError::BadRecord { index: 1, .. })
        ));

        // A path longer than any valid path is refused from its length alone.
        let mut bytes = Vec::from(*b"CAIRNOS\x01");
        bytes.push(TAG_REMOVE);
        bytes.extend_from_slice(&(MAX_PATH_LEN as u16 + 1).to_le_bytes());
        let mut decoder = StreamDecoder::new();
        decoder.feed(&bytes);
        assert!(matches!(
            decoder.next_item(),
            Err(StreamError::BadRecord { index: 0, .. })
        ));
        // At the limit it is only a matter of waiting for the bytes (then of the path rules).
        let mut bytes = Vec::from(*b"CAIRNOS\x01");
        bytes.push(TAG_REMOVE);
        bytes.extend_from_slice(&(MAX_PATH_LEN as u16).to_le_bytes());
        let mut decoder = StreamDecoder::new();
        decoder.feed(&bytes);
        assert_eq!(decoder.next_item(), Ok(None));
    }
}
