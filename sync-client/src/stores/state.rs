//! What the index holds: the base (what was last synced) and the stat data (what each file's
//! stat looked like when it was last hashed), and the stat lookup ([`StatLookup`]). The `base`
//! and `stat-cache` files of the previous format are read here (see the private `codec` module
//! for their framing) to convert them.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::hash::BuildHasherDefault;
use std::io;
use std::path::Path as FsPath;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sync_protocol::tree::{FileRef, Listing, Path, empty_dir_id};
use sync_protocol::{ObjectId, ObjectKind};

use super::atomic::{Mode, Replace, write_atomic};
use super::codec::{Reader, Writer};
use crate::error::ClientError;

const BASE_MAGIC: &[u8] = b"CAIRN-BASE-1\n";
const STAT_MAGIC: &[u8] = b"CAIRN-STAT-1\n";

/// The version of the project the working copy last synced with, and its tree.
///
/// The listing is kept beside the root id so that `status` needs nothing but this file and the
/// disk: it never has to rebuild the base from cached dir objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// `None` until the first pull or push: the working copy has never synced.
    pub version: Option<u64>,
    pub root: ObjectId,
    /// The tree of `root`, except at `pending` paths.
    pub listing: Listing,
    /// Paths an apply had to leave as they were (see `apply::HeldBack`): their `listing` entry
    /// is still the previous base's, so the next pull merges them again instead of taking the
    /// disk's version as a local edit. While any path is pending, a push must pull first: the
    /// working copy is not yet on top of `root`.
    pub pending: BTreeSet<Path>,
}

impl Base {
    /// The base of a working copy that has never synced: the empty project.
    pub fn never_synced() -> Self {
        Self {
            version: None,
            root: empty_dir_id(),
            listing: Listing::new(),
            pending: BTreeSet::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::new(BASE_MAGIC);
        writer.version(self.version);
        writer.id(&self.root);
        writer.u32(self.listing.len() as u32);
        for (path, file_ref) in &self.listing {
            writer.path(path);
            writer.file_ref(file_ref);
        }
        writer.u32(self.pending.len() as u32);
        // The pending paths are prefix-compressed among themselves.
        writer.restart_paths();
        for path in &self.pending {
            writer.path(path);
        }
        writer.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::new(bytes, BASE_MAGIC)?;
        let version = reader.version()?;
        let root = reader.id("root")?;
        let count = reader.u32("entry count")?;
        // Written in listing order: checking each path against the one before is the duplicate
        // check, and lets the map be built from sorted entries without comparing keys again.
        let mut entries: Vec<(Path, FileRef)> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let path = reader.path()?;
            let file_ref = reader.file_ref(&path)?;
            if let Some((previous, _)) = entries.last()
                && *previous >= path
            {
                return Err(format!("{path} is out of order or listed twice"));
            }
            entries.push((path, file_ref));
        }
        let listing: Listing = entries.into_iter().collect();
        let pending_count = reader.u32("pending count")?;
        reader.restart_paths();
        let mut pending = BTreeSet::new();
        for _ in 0..pending_count {
            pending.insert(reader.path()?);
        }
        reader.finish()?;
        Ok(Self {
            version,
            root,
            listing,
            pending,
        })
    }

    /// Reads the base file; a missing or damaged one is `CorruptState`, since the base cannot be
    /// guessed: without it, local edits cannot be told from remote ones.
    pub fn load(path: &FsPath) -> Result<Self, ClientError> {
        let bytes = fs::read(path).map_err(|error| {
            if error.kind() == io::ErrorKind::NotFound {
                ClientError::CorruptState {
                    path: path.to_path_buf(),
                    detail: "the file is missing".to_owned(),
                }
            } else {
                ClientError::io("read", path, error)
            }
        })?;
        Self::decode(&bytes).map_err(|detail| ClientError::CorruptState {
            path: path.to_path_buf(),
            detail,
        })
    }

    pub fn save(&self, path: &FsPath) -> Result<(), ClientError> {
        write_atomic(path, &self.encode(), Mode::Umask(0o644), Replace::Overwrite)?;
        Ok(())
    }
}

/// Where the stat a file was last hashed at is found: the index, read in place, or a
/// [`StatCache`] being built. (The walk looks files up in the index directly, by record.)
pub trait StatLookup: Sync {
    fn stat(&self, path: &Path) -> Option<StatEntry>;
}

impl StatLookup for StatCache {
    fn stat(&self, path: &Path) -> Option<StatEntry> {
        self.get(path).copied()
    }
}

/// A file's modification time, as the file system stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mtime {
    pub seconds: i64,
    pub nanos: u32,
}

impl Mtime {
    pub fn of(metadata: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            seconds: metadata.mtime(),
            nanos: metadata.mtime_nsec().clamp(0, 999_999_999) as u32,
        }
    }

    pub fn from_system_time(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(since) => Self {
                seconds: since.as_secs() as i64,
                nanos: since.subsec_nanos(),
            },
            Err(before) => {
                let before = before.duration();
                let nanos = before.subsec_nanos();
                if nanos == 0 {
                    Self {
                        seconds: -(before.as_secs() as i64),
                        nanos: 0,
                    }
                } else {
                    Self {
                        seconds: -(before.as_secs() as i64) - 1,
                        nanos: 1_000_000_000 - nanos,
                    }
                }
            }
        }
    }

    pub fn minus(self, duration: Duration) -> Self {
        let total = i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos)
            - duration.as_nanos() as i128;
        Self {
            seconds: total.div_euclid(1_000_000_000) as i64,
            nanos: total.rem_euclid(1_000_000_000) as u32,
        }
    }
}

/// What a file's stat looked like when it was hashed, and what it hashed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatEntry {
    pub size: u64,
    pub mtime: Mtime,
    pub inode: u64,
    /// The kind of object `id` names: a chunk, or a file object for a multi-chunk file.
    pub target: ObjectKind,
    pub id: ObjectId,
}

impl StatEntry {
    /// True when `metadata` shows the file as it was when this entry was made. Mode bits are not
    /// compared: the executable bit is read from every stat anyway.
    pub fn matches(&self, metadata: &fs::Metadata) -> bool {
        self.matches_stat(&DiskStat::from(metadata))
    }

    /// [`StatEntry::matches`] for a stat the walk took itself.
    pub fn matches_stat(&self, stat: &DiskStat) -> bool {
        self.size == stat.size && self.mtime == stat.mtime && self.inode == stat.inode
    }
}

/// What a scan needs of an entry's stat: from `fs::Metadata`, or from the walk's own
/// `fstatat` relative to the open folder (which makes no `Metadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStat {
    pub file_type: rustix::fs::FileType,
    /// The owner's execute bit, which decides a file's kind (as in git).
    pub executable: bool,
    pub size: u64,
    pub mtime: Mtime,
    pub inode: u64,
}

impl From<&fs::Metadata> for DiskStat {
    fn from(metadata: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            file_type: rustix::fs::FileType::from_raw_mode(metadata.mode()),
            executable: metadata.mode() & 0o100 != 0,
            size: metadata.len(),
            mtime: Mtime::of(metadata),
            inode: metadata.ino(),
        }
    }
}

impl From<&rustix::fs::Stat> for DiskStat {
    fn from(stat: &rustix::fs::Stat) -> Self {
        Self {
            file_type: rustix::fs::FileType::from_raw_mode(stat.st_mode),
            executable: stat.st_mode & 0o100 != 0,
            size: stat.st_size as u64,
            mtime: Mtime {
                seconds: stat.st_mtime,
                nanos: stat.st_mtime_nsec.clamp(0, 999_999_999) as u32,
            },
            inode: stat.st_ino,
        }
    }
}

/// Path to [`StatEntry`]: lets a scan skip reading files whose stat has not changed.
///
/// Only entries that are not *racy* are kept: a file whose mtime is not strictly older than the
/// moment the scan started (as the file system's own clock tells it) could be changed again
/// within the same timestamp tick without its stat changing, so it is hashed again next time.
/// The stat cache is only a cache: a damaged one is discarded and rebuilt by the next scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatCache {
    entries: HashMap<Path, StatEntry, BuildHasherDefault<PathHasher>>,
}

/// The hash of the stat cache's keys: a word at a time (as rustc's FxHash). The cache is looked
/// up once per file on every scan, and its keys are our own paths, not input chosen to collide,
/// so SipHash's resistance to flooding buys nothing there and costs a visible share of a
/// `status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathHasher(u64);

impl PathHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for PathHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
        }
        let rest = words.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last) ^ bytes.len() as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl StatCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, path: &Path) -> Option<&StatEntry> {
        self.entries.get(path)
    }

    pub fn insert(&mut self, path: Path, entry: StatEntry) {
        self.entries.insert(path, entry);
    }

    pub fn remove(&mut self, path: &Path) -> Option<StatEntry> {
        self.entries.remove(path)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Path, &StatEntry)> {
        self.entries.iter()
    }

    /// Every entry, in no particular order.
    pub fn into_entries(self) -> impl Iterator<Item = (Path, StatEntry)> {
        self.entries.into_iter()
    }

    /// Drops every entry whose mtime is not strictly before `clock`.
    pub fn drop_racy(&mut self, clock: Mtime) {
        self.entries.retain(|_, entry| entry.mtime < clock);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut sorted: Vec<_> = self.entries.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut writer = Writer::new(STAT_MAGIC);
        writer.u32(sorted.len() as u32);
        for (path, entry) in sorted {
            writer.path(path);
            writer.u64(entry.size);
            writer.i64(entry.mtime.seconds);
            writer.u32(entry.mtime.nanos);
            writer.u64(entry.inode);
            writer.u8(entry.target.tag());
            writer.id(&entry.id);
        }
        writer.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::new(bytes, STAT_MAGIC)?;
        let count = reader.u32("entry count")?;
        let mut entries = HashMap::with_capacity_and_hasher(count as usize, Default::default());
        for _ in 0..count {
            let path = reader.path()?;
            let size = reader.u64("size")?;
            let seconds = reader.i64("mtime")?;
            let nanos = reader.u32("mtime nanoseconds")?;
            let inode = reader.u64("inode")?;
            let target = ObjectKind::from_tag(reader.u8("target")?)
                .filter(|kind| *kind != ObjectKind::Dir)
                .ok_or_else(|| format!("bad target kind at {path}"))?;
            let id = reader.id("id")?;
            entries.insert(
                path,
                StatEntry {
                    size,
                    mtime: Mtime { seconds, nanos },
                    inode,
                    target,
                    id,
                },
            );
        }
        reader.finish()?;
        Ok(Self { entries })
    }

    /// Reads the stat cache; a missing or damaged one is an empty cache (everything is hashed
    /// again), reported through `discarded`.
    pub fn load(path: &FsPath) -> Result<(Self, Option<String>), ClientError> {
        match fs::read(path) {
            Ok(bytes) => match Self::decode(&bytes) {
                Ok(cache) => Ok((cache, None)),
                Err(detail) => Ok((Self::new(), Some(detail))),
            },
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok((Self::new(), None)),
            Err(error) => Err(ClientError::io("read", path, error)),
        }
    }

    /// Written atomically but not fsynced: losing it after a crash only costs a rehash.
    pub fn save(&self, path: &FsPath) -> Result<(), ClientError> {
        let bytes = self.encode();
        super::atomic::write_atomic_with(
            path,
            Mode::Umask(0o644),
            Replace::Overwrite,
            super::atomic::Durability::Cache,
            |file| {
                io::Write::write_all(file, &bytes).map_err(crate::error::io_error("write", path))
            },
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_protocol::{EntryKind, chunk_id};

    fn file(id_seed: &[u8], size: u64) -> FileRef {
        FileRef {
            kind: EntryKind::File,
            target: ObjectKind::Chunk,
            size,
            id: chunk_id(id_seed),
        }
    }

    #[test]
    fn base_round_trips() {
        let mut listing = Listing::new();
        listing.insert(Path::new("a/b.json").unwrap(), file(b"1", 1));
        listing.insert(Path::new("a/c").unwrap(), FileRef::empty_dir());
        listing.insert(Path::new("日本/x").unwrap(), file(b"22", 2));
        let base = Base {
            version: Some(42),
            root: chunk_id(b"root"),
            listing,
            pending: BTreeSet::from([Path::new("a/b.json").unwrap(), Path::new("z").unwrap()]),
        };
        assert_eq!(Base::decode(&base.encode()).unwrap(), base);
        let never = Base::never_synced();
        assert_eq!(Base::decode(&never.encode()).unwrap(), never);
    }

    #[test]
    fn stat_cache_round_trips_and_drops_racy_entries() {
        let mut cache = StatCache::new();
        let entry = |seconds| StatEntry {
            size: 3,
            mtime: Mtime { seconds, nanos: 5 },
            inode: 7,
            target: ObjectKind::Chunk,
            id: chunk_id(b"x"),
        };
        cache.insert(Path::new("old").unwrap(), entry(100));
        cache.insert(Path::new("new").unwrap(), entry(200));
        assert_eq!(StatCache::decode(&cache.encode()).unwrap(), cache);
        cache.drop_racy(Mtime {
            seconds: 200,
            nanos: 5,
        });
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&Path::new("old").unwrap()).is_some());
    }

    #[test]
    fn mtime_arithmetic() {
        let time = Mtime {
            seconds: 10,
            nanos: 100,
        };
        assert_eq!(
            time.minus(Duration::from_nanos(200)),
            Mtime {
                seconds: 9,
                nanos: 999_999_900
            }
        );
        let before_epoch = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(
            Mtime::from_system_time(before_epoch),
            Mtime {
                seconds: -2,
                nanos: 500_000_000
            }
        );
    }
}
