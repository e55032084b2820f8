//! zstd framing of objects, with decompression bounded before it starts.
//!
//! Objects are stored and sent as one zstd frame of their encoding. Peers choose their own
//! compression level; ids never depend on it. A frame from the network is hostile: it must be a
//! single frame with nothing after it, its declared content size (if any) must be within the
//! limit, and the decoder's window and output are capped, so a bomb costs bounded memory and
//! ends in [`CompressError::TooLarge`] whatever its header claims.

use std::io::Read;

use crate::id::ObjectId;
use crate::limits::{
    CHUNK_MAX_SIZE, FILE_CHUNK_LEN, MAX_FILE_CHUNKS, MAX_OBJECT_SIZE, OBJECT_HEADER_LEN,
};
use crate::object::{Object, ObjectError, ObjectKind};

/// The level objects are compressed at by this implementation.
pub const COMPRESSION_LEVEL: i32 = 3;
/// The largest zstd window a frame may ask for: 2^25 bytes covers the largest object.
pub const MAX_WINDOW_LOG: u32 = 25;

const _: () = assert!(MAX_OBJECT_SIZE <= 1 << MAX_WINDOW_LOG);

/// Why a zstd frame could not be turned into a valid object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    #[error("not a single complete zstd frame")]
    NotAFrame,
    #[error("zstd frame decompresses to more than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("corrupt zstd frame: {0}")]
    Corrupt(String),
    #[error("object {expected} hashes to {actual}")]
    IdMismatch {
        expected: ObjectId,
        actual: ObjectId,
    },
    #[error("object {id} is a {actual}, expected a {expected}")]
    KindMismatch {
        id: ObjectId,
        expected: &'static str,
        actual: &'static str,
    },
    #[error("object {id} is invalid: {error}")]
    Invalid { id: ObjectId, error: ObjectError },
}

/// Compresses an encoded object into one zstd frame.
pub fn compress_object(encoded: &[u8]) -> Vec<u8> {
    // Compressing an in-memory buffer into a Vec only fails on allocation failure.
    zstd::bulk::compress(encoded, COMPRESSION_LEVEL).expect("zstd compression of a buffer")
}

/// Compresses an encoded object into one zstd frame that needs `dictionary` (another object's
/// encoding, used as raw content: the frame may copy from it) to be decompressed. An empty
/// dictionary gives a plain frame.
pub fn compress_with_dictionary(encoded: &[u8], dictionary: &[u8]) -> Vec<u8> {
    if dictionary.is_empty() {
        return compress_object(encoded);
    }
    // As above: only allocation can fail for in-memory buffers and a valid level.
    zstd::bulk::Compressor::with_dictionary(COMPRESSION_LEVEL, dictionary)
        .and_then(|mut compressor| compressor.compress(encoded))
        .expect("zstd compression of a buffer with a dictionary")
}

thread_local! {
    /// This thread's decompression context, made on first use and reused.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses one zstd frame, failing once the output would pass `limit` bytes.
pub fn decompress_object(frame: &[u8], limit: usize) -> Result<Vec<u8>, CompressError> {
    decompress_with_dictionary(frame, &[], limit)
}

/// [`decompress_object`] for a frame made by [`compress_with_dictionary`] with `dictionary`
/// (empty: none). The same checks and caps apply.
pub fn decompress_with_dictionary(
    frame: &[u8],
    dictionary: &[u8],
    limit: usize,
) -> Result<Vec<u8>, CompressError> {
    match zstd::zstd_safe::find_frame_compressed_size(frame) {
        Ok(size) if size == frame.len() => {}
        _ => return Err(CompressError::NotAFrame),
    }
    if let Ok(Some(declared)) = zstd::zstd_safe::get_frame_content_size(frame)
        && declared > limit as u64
    {
        return Err(CompressError::TooLarge { limit });
    }
    let corrupt = |error: std::io::Error| CompressError::Corrupt(error.to_string());
    // A frame that declares its size (every frame this crate makes without a dictionary) is
    // decompressed in one call into a buffer of that size, with this thread's context: a
    // context made per frame cost a clone of 30,000 small files half its CPU time. zstd
    // checks the content against the declared size, and the buffer bounds the memory.
    if dictionary.is_empty()
        && let Ok(Some(declared)) = zstd::zstd_safe::get_frame_content_size(frame)
    {
        return DECOMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            let decompressor = match &mut *cell {
                Some(decompressor) => decompressor,
                None => cell.insert(zstd::bulk::Decompressor::new().map_err(corrupt)?),
            };
            // Checked against `limit` above.
            let mut out = Vec::with_capacity(declared as usize);
            let written = decompressor
                .decompress_to_buffer(frame, &mut out)
                .map_err(corrupt)?;
            if written as u64 != declared {
                return Err(CompressError::Corrupt(format!(
                    "the frame declares {declared} bytes and holds {written}"
                )));
            }
            Ok(out)
        });
    }
    let mut decoder = if dictionary.is_empty() {
        zstd::stream::read::Decoder::with_buffer(frame).map_err(corrupt)?
    } else {
        zstd::stream::read::Decoder::with_dictionary(frame, dictionary).map_err(corrupt)?
    };
    decoder.window_log_max(MAX_WINDOW_LOG).map_err(corrupt)?;
    let mut decoder = decoder.single_frame();
    let mut out = Vec::new();
    // Read one byte past the limit so an oversized frame is told apart from one at the limit.
    (&mut decoder)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    if out.len() > limit {
        return Err(CompressError::TooLarge { limit });
    }
    Ok(out)
}

/// Checks that `frame` is the object `id`: one bounded zstd frame whose content hashes to `id`
/// and is a canonical object. Returns the decoded object and its encoding.
pub fn verify_frame(id: &ObjectId, frame: &[u8]) -> Result<(Object, Vec<u8>), CompressError> {
    check_encoded(id, decompress_object(frame, MAX_OBJECT_SIZE)?)
}

/// Checks that decompressed bytes hash to `id` and decode canonically.
fn check_encoded(id: &ObjectId, encoded: Vec<u8>) -> Result<(Object, Vec<u8>), CompressError> {
    let actual = ObjectId::of_encoded(&encoded);
    if &actual != id {
        return Err(CompressError::IdMismatch {
            expected: *id,
            actual,
        });
    }
    let object =
        Object::decode(&encoded).map_err(|error| CompressError::Invalid { id: *id, error })?;
    Ok((object, encoded))
}

/// The largest valid encoding of an object of `kind`, header included: the cap a frame that
/// declares its kind is decompressed under, so a frame sent as a chunk can never expand past a
/// chunk's size.
pub fn max_encoded_len(kind: ObjectKind) -> usize {
    match kind {
        ObjectKind::Chunk => OBJECT_HEADER_LEN + CHUNK_MAX_SIZE as usize,
        ObjectKind::File => OBJECT_HEADER_LEN + 12 + MAX_FILE_CHUNKS as usize * FILE_CHUNK_LEN,
        ObjectKind::Dir => MAX_OBJECT_SIZE,
    }
}

/// [`verify_frame`], also requiring the object to be of `kind`; decompression is capped at the
/// largest valid object of that kind ([`max_encoded_len`]).
pub fn verify_frame_of_kind(
    id: &ObjectId,
    kind: ObjectKind,
    frame: &[u8],
) -> Result<(Object, Vec<u8>), CompressError> {
    let encoded = decompress_object(frame, max_encoded_len(kind))?;
    let (object, encoded) = check_encoded(id, encoded)?;
    if object.kind() != kind {
        return Err(CompressError::KindMismatch {
            id: *id,
            expected: kind.as_str(),
            actual: object.kind().as_str(),
        });
    }
    Ok((object, encoded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Dir;

    #[test]
    fn verify_accepts_what_compress_wrote() {
        let object = Object::Chunk(b"some bytes".repeat(100));
        let encoded = object.encode();
        let frame = compress_object(&encoded);
        assert!(frame.len() < encoded.len());
        let (decoded, bytes) = verify_frame(&object.id(), &frame).unwrap();
        assert_eq!(decoded, object);
        assert_eq!(bytes, encoded);
    }

    #[test]
    fn a_flipped_bit_never_verifies_as_other_data_and_the_context_stays_usable() {
        let object = Object::Chunk((0..3000u32).flat_map(|n| n.to_le_bytes()).collect());
        let frame = compress_object(&object.encode());
        let mut refused = 0;
        let mut tried = 0;
        for at in 0..frame.len() {
            for bit in [0x01, 0x10, 0x80] {
                let mut flipped = frame.clone();
                flipped[at] ^= bit;
                tried += 1;
                // Some header bits (the checksum flag, say) do not change the content.
                match verify_frame(&object.id(), &flipped) {
                    Ok((decoded, _)) => assert_eq!(decoded, object, "byte {at}"),
                    Err(_) => refused += 1,
                }
            }
            // The thread's context decompresses a good frame after each bad one.
            assert_eq!(verify_frame(&object.id(), &frame).unwrap().0, object);
        }
        assert!(refused * 10 > tried * 9, "{refused} of {tried} refused");
    }

    #[test]
    fn verify_rejects_wrong_id_and_kind() {
        let object = Object::Dir(Dir::empty());
        let frame = compress_object(&object.encode());
        let other = Object::Chunk(Vec::new()).id();
        assert!(matches!(
            verify_frame(&other, &frame),
            Err(CompressError::IdMismatch { .. })
        ));
        assert!(matches!(
            verify_frame_of_kind(&object.id(), ObjectKind::Chunk, &frame),
            Err(CompressError::KindMismatch { .. })
        ));
    }

    #[test]
    fn a_frame_sent_as_a_chunk_is_capped_at_a_chunk() {
        let limit = max_encoded_len(ObjectKind::Chunk);
        let at = Object::Chunk(vec![1; CHUNK_MAX_SIZE as usize]);
        let frame = compress_object(&at.encode());
        assert!(verify_frame_of_kind(&at.id(), ObjectKind::Chunk, &frame).is_ok());
        // One byte more than any chunk: rejected by the cap, before hashing or decoding.
        let mut past = at.encode();
        past.push(1);
        let frame = compress_object(&past);
        assert_eq!(
            verify_frame_of_kind(&ObjectId::of_encoded(&past), ObjectKind::Chunk, &frame),
            Err(CompressError::TooLarge { limit })
        );
        assert!(max_encoded_len(ObjectKind::File) < MAX_OBJECT_SIZE);
    }

    #[test]
    fn limit_at_and_past() {
        let data = vec![0u8; 1000];
        let frame = compress_object(&data);
        assert_eq!(decompress_object(&frame, 1000).unwrap(), data);
        assert_eq!(
            decompress_object(&frame, 999),
            Err(CompressError::TooLarge { limit: 999 })
        );
    }

    #[test]
    fn bomb_without_declared_size_is_capped() {
        // A streamed frame carries no content size, so only the output cap can stop it.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
        std::io::Write::write_all(&mut encoder, &vec![0u8; 64 << 20]).unwrap();
        let frame = encoder.finish().unwrap();
        assert!(frame.len() < 64 * 1024);
        assert_eq!(
            decompress_object(&frame, MAX_OBJECT_SIZE),
            Err(CompressError::TooLarge {
                limit: MAX_OBJECT_SIZE
            })
        );
    }

    #[test]
    fn rejects_trailing_and_truncated_frames() {
        let frame = compress_object(b"abc");
        let mut trailing = frame.clone();
        trailing.push(0);
        assert_eq!(
            decompress_object(&trailing, 100),
            Err(CompressError::NotAFrame)
        );
        assert_eq!(
            decompress_object(&frame[..frame.len() - 1], 100),
            Err(CompressError::NotAFrame)
        );
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        assert_eq!(decompress_object(&two, 100), Err(CompressError::NotAFrame));
    }
}
