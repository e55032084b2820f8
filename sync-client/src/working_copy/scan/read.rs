//! Reading one file for the scan: open, stat, encode (whole or streamed), store its objects,
//! and stat again; a file that changed under the read is read again.
//!
//! Files up to [`STREAM_THRESHOLD`] are read whole and go through
//! `sync_protocol::chunking::ObjectEncoder::encode_file`. Larger ones (the format allows 4 GiB)
//! are read in pieces fed to the protocol's streaming `FileEncoder`, which keeps at most a
//! maximum chunk besides the piece; both give the same objects and ids.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use sync_protocol::chunking::{EncodedFile, EncodedObject, ObjectEncoder};
use sync_protocol::limits::MAX_FILE_SIZE;
use sync_protocol::tree::{FileRef, Path};
use sync_protocol::{EntryKind, ObjectError, ObjectId};

use super::{READ_ATTEMPTS, SkipReason, entry_kind};
use crate::error::ClientError;
use crate::stores::object_cache::ObjectCache;
use crate::stores::state::{Mtime, StatEntry};

/// Files larger than this are read and encoded in pieces.
pub const STREAM_THRESHOLD: u64 = 16 * 1024 * 1024;
/// The size of one piece of a streamed file.
const STREAM_PIECE: usize = 1024 * 1024;

/// Why a file could not be encoded.
enum EncodeError {
    Read(io::Error),
    Object(ObjectError),
    /// The object cache could not store an object.
    Store(ClientError),
}

/// A file to be read: its listed path, where it is, and its stat from the walk.
pub(super) struct Candidate {
    pub path: Path,
    pub disk: PathBuf,
}

pub(super) enum ReadOutcome {
    Listed(FileRef, StatEntry),
    /// Deleted between the walk and the read: it is simply not there.
    Vanished,
    Skipped(SkipReason),
}

/// One file's read, back from the thread pool.
pub(super) struct FileRead {
    pub candidate: Candidate,
    pub outcome: ReadOutcome,
    /// Objects it added to the cache.
    pub written: Vec<ObjectId>,
}

#[derive(Default)]
pub(super) struct AtomicCounters {
    pub files_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub objects_written: AtomicU64,
}

/// Reads a file until two stats around the read agree, encoding it and storing its objects on
/// the way. A file that changed under the read is read again, up to [`READ_ATTEMPTS`] times;
/// objects stored by a torn attempt are harmless (they are valid objects nothing refers to).
pub(super) fn read_and_store(
    encoder: &mut ObjectEncoder,
    candidate: &Candidate,
    objects: &ObjectCache,
    counters: &AtomicCounters,
) -> Result<(ReadOutcome, Vec<ObjectId>), ClientError> {
    let disk = &candidate.disk;
    let unreadable = |error: io::Error| {
        if error.kind() == io::ErrorKind::NotFound {
            ReadOutcome::Vanished
        } else {
            ReadOutcome::Skipped(SkipReason::Unreadable {
                error: error.to_string(),
            })
        }
    };
    let mut written = Vec::new();
    let mut store = |object: &EncodedObject| -> Result<(), ClientError> {
        if objects.put_encoded(&object.id, &object.frame)? {
            counters.objects_written.fetch_add(1, Ordering::Relaxed);
            written.push(object.id);
        }
        Ok(())
    };
    for _ in 0..READ_ATTEMPTS {
        let mut file = match File::open(disk) {
            Ok(file) => file,
            Err(error) => return Ok((unreadable(error), written)),
        };
        let before = match file.metadata() {
            Ok(before) => before,
            Err(error) => return Ok((unreadable(error), written)),
        };
        if !before.is_file() {
            // Replaced by a folder or something special since the walk: try again next scan.
            return Ok((
                ReadOutcome::Skipped(SkipReason::ChangedWhileReading),
                written,
            ));
        }
        if before.len() > MAX_FILE_SIZE {
            let size = before.len();
            return Ok((ReadOutcome::Skipped(SkipReason::TooLarge { size }), written));
        }
        counters.files_read.fetch_add(1, Ordering::Relaxed);
        let executable = entry_kind(&before) == EntryKind::Executable;
        let encoded = if before.len() > STREAM_THRESHOLD {
            encode_stream(&mut file, executable, encoder, &mut store)
        } else {
            encode_whole(&mut file, executable, encoder, &mut store)
        };
        let (file_ref, read) = match encoded {
            Ok(encoded) => encoded,
            Err(EncodeError::Read(error)) => return Ok((unreadable(error), written)),
            Err(EncodeError::Store(error)) => return Err(error),
            Err(EncodeError::Object(ObjectError::FileTooLarge(size))) => {
                return Ok((ReadOutcome::Skipped(SkipReason::TooLarge { size }), written));
            }
            Err(EncodeError::Object(source)) => {
                return Err(ClientError::Encode {
                    path: disk.clone(),
                    source,
                });
            }
        };
        counters.bytes_read.fetch_add(read, Ordering::Relaxed);
        // Stat by path too: an editor that saves by renaming a new file over the old one leaves
        // the open handle on the old inode.
        let settled = fs::symlink_metadata(disk).is_ok_and(|after| same_stat(&before, &after))
            && file
                .metadata()
                .is_ok_and(|after| same_stat(&before, &after))
            && read == before.len();
        if settled {
            let stat = StatEntry {
                size: before.len(),
                mtime: Mtime::of(&before),
                inode: before.ino(),
                target: file_ref.target,
                id: file_ref.id,
            };
            return Ok((ReadOutcome::Listed(file_ref, stat), written));
        }
    }
    Ok((
        ReadOutcome::Skipped(SkipReason::ChangedWhileReading),
        written,
    ))
}

/// Reads a file of at most [`STREAM_THRESHOLD`] bytes whole and encodes it with the protocol's
/// pipeline. Reads at most one byte past the threshold, so a file that grew since its stat
/// cannot exhaust memory; the growth shows as a size mismatch to the caller.
fn encode_whole(
    file: &mut File,
    executable: bool,
    encoder: &mut ObjectEncoder,
    store: &mut impl FnMut(&EncodedObject) -> Result<(), ClientError>,
) -> Result<(FileRef, u64), EncodeError> {
    let mut bytes = Vec::new();
    file.take(STREAM_THRESHOLD + 1)
        .read_to_end(&mut bytes)
        .map_err(EncodeError::Read)?;
    let encoded = encoder
        .encode_file(&bytes, executable)
        .map_err(EncodeError::Object)?;
    store_all(&encoded, store)?;
    Ok((encoded.file_ref(), bytes.len() as u64))
}

/// Reads `file` to its end in pieces, feeding them to the protocol's streaming encoder and
/// storing each object as soon as it is ready. Returns the file's entry and the bytes read.
fn encode_stream(
    file: &mut File,
    executable: bool,
    encoder: &mut ObjectEncoder,
    store: &mut impl FnMut(&EncodedObject) -> Result<(), ClientError>,
) -> Result<(FileRef, u64), EncodeError> {
    let mut streamed = encoder.start_file(executable);
    let mut piece = vec![0u8; STREAM_PIECE];
    let mut total = 0u64;
    loop {
        let read = match file.read(&mut piece) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(EncodeError::Read(error)),
        };
        total += read as u64;
        streamed.feed(&piece[..read]).map_err(EncodeError::Object)?;
        while let Some(object) = streamed.next_object() {
            store(&object).map_err(EncodeError::Store)?;
        }
    }
    let encoded = streamed.finish().map_err(EncodeError::Object)?;
    store_all(&encoded, store)?;
    Ok((encoded.file_ref(), total))
}

fn store_all(
    encoded: &EncodedFile,
    store: &mut impl FnMut(&EncodedObject) -> Result<(), ClientError>,
) -> Result<(), EncodeError> {
    encoded
        .objects
        .iter()
        .try_for_each(|object| store(object).map_err(EncodeError::Store))
}

fn same_stat(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.len() == b.len() && Mtime::of(a) == Mtime::of(b) && a.ino() == b.ino() && a.dev() == b.dev()
}
