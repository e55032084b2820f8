//! Packs: many object frames in one file, as git keeps what a fetch brought. A clone of 8,000
//! files pulls some 16,000 objects; one file per object cost 16,000 file creations (about
//! 0.27 ms each on a virtual disk), a pack costs one.
//!
//! ```text
//! .cairn/objects/pack/<32 hex>.pack
//!   "CAIRNPK1"                                  magic, 8 bytes
//!   frame frame frame …                         zstd frames, exactly as on the wire
//!   index: count × (id 32 | offset u64 | len u32), little-endian, sorted by id
//!   trailer: index offset u64 | count u32 | BLAKE3 of the index 32 | "CAIRNPKE"
//! ```
//!
//! The name is the first 16 bytes of the index's hash. A pack is written under a temp name and
//! renamed whole into place, not fsynced: like a loose object it is a cache, and the sync a
//! pull makes before recording its base (or the lack of one) is the same for both. Opening a
//! pack checks the trailer, the index's hash, its order and every frame's bounds; a pack that
//! fails is damaged and reads as absent (its objects are missing and fetched again). Frames
//! are verified against their id on every read, by the object cache, as loose ones are.
//!
//! The index is read into memory (44 bytes an object) and searched in place, without decoding;
//! frames are read with `pread`, so one open pack serves every thread.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sync_protocol::ObjectId;

use crate::error::{ClientError, io_error};

const MAGIC: &[u8; 8] = b"CAIRNPK1";
const END_MAGIC: &[u8; 8] = b"CAIRNPKE";
const RECORD_LEN: usize = ObjectId::LEN + 8 + 4;
const TRAILER_LEN: usize = 8 + 4 + 32 + 8;
/// The extension of a finished pack.
const EXTENSION: &str = "pack";
/// Temp packs start with this; a leftover one (a pull killed while writing) is removed by the
/// next pack written once it has not changed for [`STALE_TEMP`].
const TEMP_PREFIX: &str = ".tmp-pack-";
const STALE_TEMP: Duration = Duration::from_secs(3600);
/// The largest frame a pack holds (a frame's length is stored in 32 bits).
const MAX_FRAME_LEN: usize = u32::MAX as usize;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Why a pack could not be opened: it is damaged (or not a pack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged(pub &'static str);

/// One finished pack, opened: its index in memory, its file open for reads.
#[derive(Debug)]
pub struct Pack {
    path: PathBuf,
    file: File,
    /// `count` records of [`RECORD_LEN`] bytes, sorted by id.
    index: Vec<u8>,
}

impl Pack {
    /// Opens and checks the pack at `path`. `Ok(Err(_))`: the file is there but damaged.
    pub fn open(path: &Path) -> io::Result<Result<Self, Damaged>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let Some(trailer_at) = len.checked_sub(TRAILER_LEN as u64) else {
            return Ok(Err(Damaged("shorter than a trailer")));
        };
        let mut magic = [0u8; 8];
        file.read_exact_at(&mut magic, 0)?;
        if &magic != MAGIC {
            return Ok(Err(Damaged("no pack header")));
        }
        let mut trailer = [0u8; TRAILER_LEN];
        file.read_exact_at(&mut trailer, trailer_at)?;
        let (fields, rest) = trailer.split_at(12);
        let (hash, end) = rest.split_at(32);
        if end != END_MAGIC {
            return Ok(Err(Damaged("no pack trailer")));
        }
        let index_at = u64::from_le_bytes(fields[..8].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(fields[8..12].try_into().expect("4 bytes"));
        let index_len = count as u64 * RECORD_LEN as u64;
        if index_at < MAGIC.len() as u64 || index_at.checked_add(index_len) != Some(trailer_at) {
            return Ok(Err(Damaged("index out of place")));
        }
        let mut index = vec![0u8; index_len as usize];
        file.read_exact_at(&mut index, index_at)?;
        if blake3::hash(&index).as_bytes() != hash {
            return Ok(Err(Damaged("index checksum")));
        }
        let pack = Self {
            path: path.to_path_buf(),
            file,
            index,
        };
        let mut previous: Option<&[u8]> = None;
        for record in pack.index.chunks_exact(RECORD_LEN) {
            let (id, offset, frame_len) = split_record(record);
            if previous.is_some_and(|previous| previous >= id) {
                return Ok(Err(Damaged("index out of order")));
            }
            previous = Some(id);
            let in_bounds = offset >= MAGIC.len() as u64
                && offset
                    .checked_add(u64::from(frame_len))
                    .is_some_and(|end| end <= index_at);
            if !in_bounds {
                return Ok(Err(Damaged("frame out of bounds")));
            }
        }
        Ok(Ok(pack))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.index.len() / RECORD_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn record(&self, at: usize) -> &[u8] {
        &self.index[at * RECORD_LEN..(at + 1) * RECORD_LEN]
    }

    /// Where the frame of `id` is: offset and length.
    fn find(&self, id: &ObjectId) -> Option<(u64, u32)> {
        let wanted: &[u8] = id.as_bytes();
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = low + (high - low) / 2;
            let (candidate, offset, len) = split_record(self.record(middle));
            match candidate.cmp(wanted) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Some((offset, len)),
            }
        }
        None
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.find(id).is_some()
    }

    /// The stored frame of `id`, unverified; `None` when the pack does not hold it.
    pub fn frame(&self, id: &ObjectId) -> Option<io::Result<Vec<u8>>> {
        let (offset, len) = self.find(id)?;
        let mut frame = vec![0u8; len as usize];
        Some(self.file.read_exact_at(&mut frame, offset).map(|()| frame))
    }

    /// Every id it holds, in order.
    pub fn ids(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.index.chunks_exact(RECORD_LEN).map(|record| {
            let (id, _, _) = split_record(record);
            ObjectId::from_bytes(id.try_into().expect("32 bytes"))
        })
    }
}

fn split_record(record: &[u8]) -> (&[u8], u64, u32) {
    let (id, rest) = record.split_at(ObjectId::LEN);
    let offset = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
    (id, offset, len)
}

/// True for the name of a finished pack.
pub fn is_pack_name(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .strip_suffix(EXTENSION)
            .and_then(|stem| stem.strip_suffix('.'))
            .is_some_and(|stem| stem.len() == 32 && stem.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The finished packs in `dir`, by name (none when the folder does not exist).
pub fn pack_paths(dir: &Path) -> Result<Vec<PathBuf>, ClientError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(ClientError::io("read folder", dir, error)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("read folder", dir))?;
        if entry.file_name().to_str().is_some_and(is_pack_name) {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// A pack being written: frames appended as they come, the index and trailer at
/// [`PackWriter::finish`]. Dropped unfinished, it leaves nothing.
#[derive(Debug)]
pub struct PackWriter {
    dir: PathBuf,
    temp: PathBuf,
    out: Option<BufWriter<File>>,
    /// `(id, offset, len)` of every frame written.
    entries: Vec<(ObjectId, u64, u32)>,
    ids: HashSet<ObjectId>,
    at: u64,
}

impl PackWriter {
    /// Starts a pack in `dir`, created if need be.
    pub fn create(dir: &Path) -> Result<Self, ClientError> {
        fs::create_dir_all(dir).map_err(io_error("create folder", dir))?;
        remove_stale_temps(dir);
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_error("create", &temp))?;
        let mut writer = Self {
            dir: dir.to_path_buf(),
            temp,
            out: Some(BufWriter::with_capacity(256 * 1024, file)),
            entries: Vec::new(),
            ids: HashSet::new(),
            at: 0,
        };
        writer.write(MAGIC)?;
        Ok(writer)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let out = self.out.as_mut().expect("an unfinished pack");
        out.write_all(bytes)
            .map_err(io_error("write", &self.temp))?;
        self.at += bytes.len() as u64;
        Ok(())
    }

    /// Adds a frame (checked by the caller); a second frame of the same id is skipped.
    pub fn add(&mut self, id: &ObjectId, frame: &[u8]) -> Result<(), ClientError> {
        if frame.len() > MAX_FRAME_LEN || !self.ids.insert(*id) {
            return Ok(());
        }
        let offset = self.at;
        self.write(frame)?;
        self.entries.push((*id, offset, frame.len() as u32));
        Ok(())
    }

    /// How many frames it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.ids.contains(id)
    }

    /// Writes the index and trailer and renames the pack into place: the opened pack.
    pub fn finish(mut self) -> Result<Pack, ClientError> {
        self.entries.sort_unstable_by_key(|(id, _, _)| *id);
        let mut index = Vec::with_capacity(self.entries.len() * RECORD_LEN);
        for (id, offset, len) in &self.entries {
            index.extend_from_slice(id.as_bytes());
            index.extend_from_slice(&offset.to_le_bytes());
            index.extend_from_slice(&len.to_le_bytes());
        }
        let hash = blake3::hash(&index);
        let index_at = self.at;
        let count = u32::try_from(self.entries.len()).map_err(|_| {
            ClientError::io(
                "write",
                &self.temp,
                io::Error::other("more than 2^32 objects in one pack"),
            )
        })?;
        self.write(&index)?;
        let mut trailer = Vec::with_capacity(TRAILER_LEN);
        trailer.extend_from_slice(&index_at.to_le_bytes());
        trailer.extend_from_slice(&count.to_le_bytes());
        trailer.extend_from_slice(hash.as_bytes());
        trailer.extend_from_slice(END_MAGIC);
        self.write(&trailer)?;
        let out = self.out.take().expect("an unfinished pack");
        out.into_inner()
            .map_err(|error| ClientError::io("write", &self.temp, error.into_error()))?;
        let name = format!("{}.{EXTENSION}", &hash.to_hex()[..32]);
        let path = self.dir.join(name);
        fs::rename(&self.temp, &path).map_err(io_error("create", &path))?;
        match Pack::open(&path).map_err(io_error("read", &path))? {
            Ok(pack) => Ok(pack),
            Err(Damaged(what)) => Err(ClientError::io(
                "write",
                &path,
                io::Error::other(format!("the pack just written reads back damaged: {what}")),
            )),
        }
    }
}

impl Drop for PackWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Removes temp packs in `dir` untouched for [`STALE_TEMP`]: left by a pull that was killed.
/// One still being written is younger (every write moves its mtime).
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
            && entry
                .metadata()
                .ok()
                .and_then(|metadata| metadata.modified().ok())
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > STALE_TEMP);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes([n; 32])
    }

    fn written(dir: &Path, frames: &[(ObjectId, Vec<u8>)]) -> Pack {
        let mut writer = PackWriter::create(dir).unwrap();
        for (id, frame) in frames {
            writer.add(id, frame).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn round_trip_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let frames: Vec<(ObjectId, Vec<u8>)> = [7u8, 1, 200, 3]
            .iter()
            .map(|&n| (id(n), vec![n; usize::from(n) + 1]))
            .collect();
        let pack = written(dir.path(), &frames);
        assert_eq!(pack.len(), 4);
        for (id, frame) in &frames {
            assert_eq!(pack.frame(id).unwrap().unwrap(), *frame);
        }
        assert!(pack.frame(&id(2)).is_none());
        let ids: Vec<ObjectId> = pack.ids().collect();
        assert_eq!(ids, vec![id(1), id(3), id(7), id(200)]);
        // Reopened from disk, the same; and the folder holds exactly the one finished pack.
        let reopened = Pack::open(pack.path()).unwrap().unwrap();
        assert_eq!(reopened.frame(&id(200)).unwrap().unwrap(), vec![200; 201]);
        assert_eq!(
            pack_paths(dir.path()).unwrap(),
            vec![pack.path().to_path_buf()]
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_repeated_id_is_stored_once_and_an_empty_pack_opens() {
        let dir = tempfile::tempdir().unwrap();
        let pack = written(
            dir.path(),
            &[(id(1), b"a".to_vec()), (id(1), b"b".to_vec())],
        );
        assert_eq!(pack.len(), 1);
        assert_eq!(pack.frame(&id(1)).unwrap().unwrap(), b"a");
        let empty = written(&dir.path().join("other"), &[]);
        assert!(empty.is_empty());
        assert!(!empty.contains(&id(1)));
    }

    #[test]
    fn an_unfinished_pack_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = PackWriter::create(dir.path()).unwrap();
        writer.add(&id(1), b"frame").unwrap();
        drop(writer);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn every_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let frames: Vec<(ObjectId, Vec<u8>)> = (1..=3u8).map(|n| (id(n), vec![n; 10])).collect();
        let pack = written(dir.path(), &frames);
        let path = pack.path().to_path_buf();
        let good = fs::read(&path).unwrap();
        drop(pack);
        let index_at = good.len() - TRAILER_LEN - 3 * RECORD_LEN;
        // Truncations anywhere, and a flipped bit in the header, the index or the trailer.
        let mut cases: Vec<Vec<u8>> = [0, 7, 8, 20, index_at, good.len() - 1]
            .iter()
            .map(|&len| good[..len].to_vec())
            .collect();
        for at in [0, index_at, index_at + 40, good.len() - 30, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            cases.push(bad);
        }
        for bad in cases {
            fs::write(&path, &bad).unwrap();
            assert!(
                Pack::open(&path).unwrap().is_err(),
                "{} bytes accepted",
                bad.len()
            );
        }
        fs::write(&path, &good).unwrap();
        assert!(Pack::open(&path).unwrap().is_ok());
    }

    #[test]
    fn only_finished_pack_names_count() {
        assert!(is_pack_name("0123456789abcdef0123456789abcdef.pack"));
        assert!(!is_pack_name("0123456789abcdef0123456789abcde.pack"));
        assert!(!is_pack_name(".tmp-pack-1-2"));
        assert!(!is_pack_name("0123456789abcdef0123456789abcdef.pack.tmp"));
        assert!(!is_pack_name("ab"));
    }
}
