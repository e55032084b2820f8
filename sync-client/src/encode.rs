//! Encoding a file into objects without holding it whole in memory.
//!
//! Files up to [`STREAM_THRESHOLD`] go through `sync_protocol::chunking::ObjectEncoder` as one
//! buffer. Larger ones (the format allows 4 GiB) are cut chunk by chunk from a window of at most
//! two maximum chunks: a FastCDC cut point depends only on the [`CHUNK_MAX_SIZE`] bytes after the
//! previous one, so cutting the window's first chunk whenever the window holds at least that much
//! (or the rest of the file) yields exactly the chunks of the whole-buffer pipeline, and so the
//! same ids. A test holds the two to that.

use std::io::{self, Read};

use sync_protocol::chunking::{EncodedObject, ObjectEncoder, chunk_boundaries};
use sync_protocol::limits::{CHUNK_MAX_SIZE, MAX_FILE_SIZE};
use sync_protocol::tree::FileRef;
use sync_protocol::{EntryKind, FileChunk, FileObject, Object, ObjectError, ObjectKind};

/// Files larger than this are encoded as a stream.
pub const STREAM_THRESHOLD: u64 = 16 * 1024 * 1024;

/// Why a stream could not be encoded.
#[derive(Debug)]
pub enum StreamError<E> {
    Read(io::Error),
    Object(ObjectError),
    /// The sink refused an object (the object cache could not store it).
    Sink(E),
}

/// Reads `reader` to its end and encodes it as `chunking::ObjectEncoder::encode_file` would,
/// handing each object to `sink` (chunks in file order, repeats included, then the file
/// object). Returns the file's entry and the bytes read.
pub fn encode_stream<E>(
    reader: &mut impl Read,
    executable: bool,
    encoder: &mut ObjectEncoder,
    sink: &mut impl FnMut(&EncodedObject) -> Result<(), E>,
) -> Result<(FileRef, u64), StreamError<E>> {
    let window = CHUNK_MAX_SIZE as usize;
    let mut buffer: Vec<u8> = Vec::with_capacity(2 * window);
    let mut chunks: Vec<FileChunk> = Vec::new();
    let mut total: u64 = 0;
    let mut at_end = false;
    loop {
        while !at_end && buffer.len() < window {
            let start = buffer.len();
            buffer.resize(2 * window, 0);
            match reader.read(&mut buffer[start..]) {
                Ok(0) => {
                    buffer.truncate(start);
                    at_end = true;
                }
                Ok(read) => buffer.truncate(start + read),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => buffer.truncate(start),
                Err(error) => return Err(StreamError::Read(error)),
            }
        }
        if buffer.is_empty() && !(chunks.is_empty() && at_end) {
            break;
        }
        // The first cut of the window is the file's next cut: the window holds at least a
        // maximum chunk, or everything that is left.
        let end = chunk_boundaries(&buffer)
            .next()
            .map_or(0, |range| range.end);
        let body = buffer[..end].to_vec();
        let object = encoder.encode_object(&Object::Chunk(body));
        chunks.push(FileChunk {
            id: object.id,
            len: end as u32,
        });
        sink(&object).map_err(StreamError::Sink)?;
        buffer.drain(..end);
        total += end as u64;
        if total > MAX_FILE_SIZE {
            return Err(StreamError::Object(ObjectError::FileTooLarge(total)));
        }
        if buffer.is_empty() && at_end {
            break;
        }
    }
    let kind = if executable {
        EntryKind::Executable
    } else {
        EntryKind::File
    };
    if let [only] = chunks.as_slice() {
        let file_ref = FileRef {
            kind,
            target: ObjectKind::Chunk,
            size: total,
            id: only.id,
        };
        return Ok((file_ref, total));
    }
    let file = FileObject::new(chunks).map_err(StreamError::Object)?;
    let object = encoder.encode_object(&Object::File(file));
    sink(&object).map_err(StreamError::Sink)?;
    let file_ref = FileRef {
        kind,
        target: ObjectKind::File,
        size: total,
        id: object.id,
    };
    Ok((file_ref, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    use sync_protocol::checks::noise;

    /// A reader that returns at most `step` bytes per call, to exercise refills.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let len = self.data.len().min(out.len()).min(self.step);
            out[..len].copy_from_slice(&self.data[..len]);
            self.data = &self.data[len..];
            Ok(len)
        }
    }

    fn check(data: &[u8], step: usize) {
        let mut encoder = ObjectEncoder::new();
        let whole = encoder.encode_file(data, true).unwrap();
        let mut streamed_ids = BTreeSet::new();
        let (file_ref, read) = encode_stream::<()>(
            &mut Trickle { data, step },
            true,
            &mut encoder,
            &mut |object| {
                streamed_ids.insert(object.id);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(read, data.len() as u64);
        assert_eq!(file_ref.id, whole.id);
        assert_eq!(file_ref.target, whole.target);
        assert_eq!(file_ref.size, whole.size);
        assert_eq!(file_ref.kind, whole.kind);
        let whole_ids: BTreeSet<_> = whole.objects.iter().map(|object| object.id).collect();
        assert_eq!(streamed_ids, whole_ids);
    }

    #[test]
    fn streaming_matches_the_whole_buffer_pipeline() {
        let random = noise(3 * 1024 * 1024 + 17, 9);
        check(&random, 1 << 20);
        check(&random, 4099);
        // Repeated content: duplicate chunks and long runs cut at the maximum.
        let mut repeated = noise(300 * 1024, 1).repeat(4);
        repeated.extend(vec![0u8; 900 * 1024]);
        check(&repeated, 65536);
        // Small inputs, down to empty, take the same path correctly too.
        check(&noise(100, 2), 7);
        check(&noise(CHUNK_MAX_SIZE as usize, 3), 1 << 20);
        check(b"", 10);
    }
}
