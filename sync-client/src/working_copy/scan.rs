//! Scanning the working copy into a [`Listing`], storing the objects of files that changed.
//!
//! The walk reads folders and stats their entries (relative to the open folder), with the
//! subfolders of each folder walked in parallel on rayon's pool; files whose stat (size, mtime,
//! inode) matches the stat cache are taken from it unread, and the rest are read, chunked,
//! hashed and compressed in parallel, their objects written to the object cache.
//!
//! What is not synced is reported, never silently dropped: symlinks, special files, names that
//! are not valid project names (not UTF-8, forbidden characters, too long, two names that are
//! equal after NFC normalization or case folding), unreadable files and files that kept changing
//! while being read. `.cairnignore` files (gitignore syntax, in any folder) exclude paths
//! quietly, as `.gitignore` does, but only untracked ones: a path the base has (a teammate
//! pushed it) is listed even if it matches a rule, or the next push would delete it for everyone.
//! `.cairn/` and our own temp files are never listed.
//!
//! A file that exists but could not be read is *unsettled*: it is not in the listing, but it is
//! not removed either. Status shows it apart, and an apply never touches it.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CStr, OsStr, OsString};
use std::fs;
use std::hash::BuildHasherDefault;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

mod clean;
pub(crate) mod partial;
mod read;
pub use clean::{CleanPaths, clean_paths};
pub use read::STREAM_THRESHOLD;
use read::{AtomicCounters, Candidate, FileRead, ReadOutcome, read_and_store};
use std::sync::atomic::Ordering;

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir};
use sync_protocol::chunking::ObjectEncoder;
use sync_protocol::limits::{MAX_FILE_SIZE, MAX_PATH_DEPTH, MAX_PATH_LEN};
use sync_protocol::name::fold_key;
use sync_protocol::tree::{FileRef, Listing, Path, PathError};
use sync_protocol::{EntryKind, Name, NameError, ObjectId};

use crate::error::ClientError;
use crate::stores::META_DIR;
use crate::stores::atomic::is_temp_name;
use crate::stores::index::Index;
use crate::stores::object_cache::ObjectCache;
use crate::stores::state::{DiskStat, Mtime, PathHasher, StatEntry};

/// The name of ignore files, in gitignore syntax.
pub const IGNORE_FILE: &str = ".cairnignore";
/// How many times a file that changes while being read is read again before it is reported.
pub const READ_ATTEMPTS: u32 = 3;

/// Why something on disk is not in the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Symlinks are not synced (design §3).
    Symlink,
    /// A FIFO, socket or device.
    Special { what: &'static str },
    /// The name is not UTF-8.
    NotUtf8,
    /// The name breaks a naming rule even after NFC normalization.
    InvalidName(NameError),
    /// The path is too long or too deep.
    InvalidPath(PathError),
    /// Another entry of the same folder has the same name after NFC normalization or case
    /// folding; the first in byte order is synced.
    NameClash { with: String },
    /// A `.cairn/` folder below the root: a working copy inside this one.
    NestedWorkingCopy,
    /// The file or folder could not be read. Unsettled: not treated as removed.
    Unreadable { error: String },
    /// The file changed every time it was read. Unsettled: not treated as removed.
    ChangedWhileReading,
    /// Larger than the format allows.
    TooLarge { size: u64 },
    /// A `.cairnignore` has lines that are not valid patterns; the valid lines apply.
    BadIgnoreFile { error: String },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Symlink => f.write_str("symbolic link (not synced)"),
            Self::Special { what } => write!(f, "{what} (not synced)"),
            Self::NotUtf8 => f.write_str("name is not valid UTF-8"),
            Self::InvalidName(error) => write!(f, "invalid name: {error}"),
            Self::InvalidPath(error) => write!(f, "invalid path: {error}"),
            Self::NameClash { with } => {
                write!(
                    f,
                    "name clashes with {with:?} after normalization or case folding"
                )
            }
            Self::NestedWorkingCopy => f.write_str("another working copy's .cairn/ folder"),
            Self::Unreadable { error } => write!(f, "could not be read: {error}"),
            Self::ChangedWhileReading => {
                f.write_str("kept changing while being read; run the command again")
            }
            Self::TooLarge { size } => {
                write!(
                    f,
                    "{size} bytes, more than the {MAX_FILE_SIZE} bytes allowed"
                )
            }
            Self::BadIgnoreFile { error } => write!(f, "some ignore rules are invalid: {error}"),
        }
    }
}

/// One thing the scan left out, by its path relative to the root as it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: SkipReason,
}

/// What a scan did, for progress output and for tests of the stat cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanCounters {
    /// Regular files found (listed or not).
    pub files: u64,
    /// Folders walked (read).
    pub dirs: u64,
    /// Entries stat'ed (files, folders and everything else the walk met).
    pub stated: u64,
    /// Files whose stat matched the stat cache: not opened.
    pub cache_hits: u64,
    /// Files opened and read (a retried read counts again).
    pub files_read: u64,
    pub bytes_read: u64,
    /// Objects added to the object cache.
    pub objects_written: u64,
}

/// Where each listed path lies on disk, for the few whose disk name differs from their NFC name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskNames {
    renamed: HashMap<Path, PathBuf>,
}

impl DiskNames {
    /// True when every listed path is its own disk path.
    pub fn is_empty(&self) -> bool {
        self.renamed.is_empty()
    }

    /// The on-disk path of `path` under `root`, following any non-NFC folder or file name.
    pub fn resolve(&self, root: &FsPath, path: &Path) -> PathBuf {
        if self.renamed.is_empty() {
            return root.join(path.as_str());
        }
        let components: Vec<&str> = path.components().collect();
        for depth in (1..=components.len()).rev() {
            let prefix = components[..depth].join("/");
            if let Ok(prefix_path) = Path::new(&prefix)
                && let Some(disk) = self.renamed.get(&prefix_path)
            {
                let mut full = root.join(disk);
                for rest in &components[depth..] {
                    full.push(rest);
                }
                return full;
            }
        }
        root.join(path.as_str())
    }
}

/// A listed file taken from a record of the index instead of being found anew: a file whose
/// stat matched the record's (listed with the record's entry and the kind its stat gave), or,
/// after a monitor-guided walk, a path outside the walked folders (listed as the last recorded
/// scan listed it).
#[derive(Debug, Clone, Copy)]
struct Taken {
    slot: u32,
    kind: EntryKind,
    /// The record's stat is this scan's stat of the file (it matched). Not for a path outside
    /// a monitor-guided walk, which was not stat'ed.
    with_stat: bool,
}

/// The working copy as the scan found it.
///
/// The files whose stat matched the index, nearly all of them on most scans, are kept as
/// record numbers of the index they were looked up in, and the [`Listing`] is built only when
/// a caller asks for it: a scan that finds the base unchanged (a no-op sync or push) is
/// compared with the base record by record ([`Scan::is_base_of`]) and never makes a path.
/// Building the listing and a map of the stats cost 2.5 ms of a 17 ms no-op sync of 8,000
/// files, and the paths allocated in the walk for them a few more percent.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// The index `taken` names records of.
    index: Option<Index>,
    /// In record order, which is path order.
    taken: Vec<Taken>,
    /// Every other listed entry (the files read, the empty folders), in path order.
    found: Vec<(Path, FileRef)>,
    /// The listing of `taken` and `found`, built once asked for.
    listing: OnceLock<Listing>,
    /// The stats of the files in `found` that were read (a file is never both there and in
    /// `taken`), keyed with the stat cache's word-at-a-time hash.
    found_stats: HashMap<Path, StatEntry, BuildHasherDefault<PathHasher>>,
    /// What was left out and why.
    pub skipped: Vec<Skipped>,
    /// Paths (files, or folders and all below them) that exist but could not be read.
    pub unsettled: BTreeSet<Path>,
    /// Objects this scan added to the object cache, children first per file.
    pub new_objects: Vec<ObjectId>,
    pub counters: ScanCounters,
    /// The listed files whose contents this scan read (the others' stats matched).
    pub read: Vec<Path>,
    pub disk_names: DiskNames,
}

impl Scan {
    /// Every listed file and empty folder.
    pub fn listing(&self) -> &Listing {
        self.listing.get_or_init(|| {
            // In path order: built without comparing keys again. A record's path was a valid
            // path when the scan that recorded it listed it.
            self.merged_entries()
                .filter_map(|(path, entry)| Some((Path::new(path).ok()?, entry)))
                .collect()
        })
    }

    /// The listing, to change (see [`Scan::listing`]).
    pub fn listing_mut(&mut self) -> &mut Listing {
        self.listing();
        self.listing.get_mut().expect("the listing was just built")
    }

    /// The listing, taken out of the scan, which is left with an empty one.
    pub fn take_listing(&mut self) -> Listing {
        std::mem::take(self.listing_mut())
    }

    /// The entries taken from the index, in path order.
    fn taken_entries(&self) -> impl Iterator<Item = (&str, FileRef)> {
        self.index.iter().flat_map(move |index| {
            self.taken.iter().filter_map(move |taken| {
                let slot = taken.slot as usize;
                let entry = index.scan_entry_at(slot)?;
                Some((
                    index.path_at(slot),
                    FileRef {
                        kind: taken.kind,
                        ..entry
                    },
                ))
            })
        })
    }

    /// True when the listing is exactly `index`'s base (see [`Index::base_is`]). When the scan
    /// took its files from `index` itself, the records are compared in place.
    pub fn is_base_of(&self, index: &Index) -> bool {
        let in_place = self.listing.get().is_none()
            && self.index.as_ref().is_none_or(|own| own.is_same(index));
        if !in_place {
            return index.base_is(self.listing());
        }
        index.base_is_entries(self.entries())
    }

    /// How many entries are listed.
    pub fn entry_count(&self) -> usize {
        self.listing
            .get()
            .map_or(self.taken.len() + self.found.len(), Listing::len)
    }

    /// The listed entries in path order: the listing's once it is built (and perhaps changed),
    /// otherwise the taken records' and the others', merged in place.
    pub fn entries(&self) -> crate::stores::index::Entries<'_> {
        match self.listing.get() {
            Some(listing) => Box::new(listing.iter().map(|(path, entry)| (path.as_str(), *entry))),
            None => Box::new(self.merged_entries()),
        }
    }

    /// The taken records' entries and the others', merged in path order.
    fn merged_entries(&self) -> impl Iterator<Item = (&str, FileRef)> {
        let mut taken = self.taken_entries().peekable();
        let mut found = self
            .found
            .iter()
            .map(|(path, entry)| (path.as_str(), *entry))
            .peekable();
        std::iter::from_fn(move || match (taken.peek(), found.peek()) {
            (Some(one), Some(other)) if other.0 < one.0 => found.next(),
            (Some(_), _) => taken.next(),
            (None, _) => found.next(),
        })
    }

    /// The stat `path` was hashed at by this scan, or taken from the index because it matched.
    pub fn stat(&self, path: &Path) -> Option<StatEntry> {
        if let Some(stat) = self.found_stats.get(path) {
            return Some(*stat);
        }
        let index = self.index.as_ref()?;
        let slot = index.slot_within(None, path.as_str())?;
        let at = self
            .taken
            .binary_search_by_key(&slot, |taken| taken.slot as usize)
            .ok()?;
        self.taken[at]
            .with_stat
            .then(|| index.stat_at(slot))
            .flatten()
    }

    /// Records the stat `path` (listed, not taken from the index) was found at.
    fn insert_stat(&mut self, path: Path, stat: StatEntry) {
        self.found_stats.insert(path, stat);
    }

    /// True when `path` or a folder above it is unsettled.
    pub fn is_unsettled(&self, path: &Path) -> bool {
        if self.unsettled.is_empty() {
            return false;
        }
        let mut current = Some(path.clone());
        while let Some(candidate) = current {
            if self.unsettled.contains(&candidate) {
                return true;
            }
            current = candidate.parent();
        }
        false
    }

    /// This scan's stat entries whose mtime is before `clock` (a later one is racy: see
    /// `StatCache`), in path order.
    pub fn stat_entries(&self, clock: Mtime) -> Vec<(&str, StatEntry)> {
        // References are sorted, not the 88-byte entries.
        let mut found: Vec<(&str, &StatEntry)> = self
            .found_stats
            .iter()
            .filter(|(_, entry)| entry.mtime < clock)
            .map(|(path, entry)| (path.as_str(), entry))
            .collect();
        found.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut found = found
            .into_iter()
            .map(|(path, entry)| (path, *entry))
            .peekable();
        let mut kept = Vec::with_capacity(self.taken.len() + found.len());
        if let Some(index) = &self.index {
            for taken in self.taken.iter().filter(|taken| taken.with_stat) {
                let slot = taken.slot as usize;
                let Some(stat) = index.stat_at(slot).filter(|stat| stat.mtime < clock) else {
                    continue;
                };
                let path = index.path_at(slot);
                while let Some(before) = found.next_if(|(other, _)| *other < path) {
                    kept.push(before);
                }
                kept.push((path, stat));
            }
        }
        kept.extend(found);
        kept
    }
}

/// Scans `root` (which holds `.cairn/`) against `index`: files whose stat matches their record
/// are taken from it unread, and ignore rules do not apply to the paths its base has.
pub fn scan(root: &FsPath, index: &Index, objects: &ObjectCache) -> Result<Scan, ClientError> {
    let walker = Walker { index };
    let mut found = Found::default();
    let root_matchers = Vec::new();
    crate::timing::timed("walk", || {
        walker.walk_dir(
            &mut found,
            open_root(root),
            root,
            PathBuf::new(),
            None,
            &root_matchers,
        )
    })?;
    read_found(root, found, index, objects)
}

/// Reads (in parallel) the files the walk could not take from the index, and gathers
/// everything the walk found into a [`Scan`] of `index`'s records.
fn read_found(
    root: &FsPath,
    mut found: Found,
    index: &Index,
    objects: &ObjectCache,
) -> Result<Scan, ClientError> {
    let to_read = std::mem::take(&mut found.to_read);
    let mut scan = crate::timing::timed("gather scan", || found.into_scan(index));

    let counters = AtomicCounters::default();
    let outcomes: Vec<Result<FileRead, ClientError>> = to_read
        .into_par_iter()
        .map_init(ObjectEncoder::new, |encoder, candidate| {
            let (outcome, written) = read_and_store(encoder, &candidate, objects, &counters)?;
            Ok(FileRead {
                candidate,
                outcome,
                written,
            })
        })
        .collect();
    for result in outcomes {
        let FileRead {
            candidate,
            outcome,
            written,
        } = result?;
        scan.new_objects.extend(written);
        match outcome {
            ReadOutcome::Listed(file_ref, stat) => {
                scan.read.push(candidate.path.clone());
                scan.insert_stat(candidate.path.clone(), stat);
                scan.found.push((candidate.path, file_ref));
            }
            ReadOutcome::Vanished => {}
            ReadOutcome::Skipped(reason) => {
                scan.unsettled.insert(candidate.path);
                scan.skipped.push(Skipped {
                    path: candidate
                        .disk
                        .strip_prefix(root)
                        .unwrap_or(&candidate.disk)
                        .to_path_buf(),
                    reason,
                });
            }
        }
    }
    scan.found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    scan.counters.files_read = counters.files_read.load(Ordering::Relaxed);
    scan.counters.bytes_read = counters.bytes_read.load(Ordering::Relaxed);
    scan.counters.objects_written = counters.objects_written.load(Ordering::Relaxed);
    scan.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(scan)
}

/// What the walk of a folder and everything below it found, in plain vectors. A subfolder's
/// findings are appended to its parent's as soon as it is walked, on the walk's threads: the
/// files taken from the index are 8-byte record numbers, so moving them up a level costs
/// little, and the walk ends with one `Found` to turn into the scan (gathering 2,048 of them
/// afterwards took a millisecond of a deep tree's no-op sync).
#[derive(Default)]
struct Found {
    /// The files whose stat matched their index record.
    taken: Vec<Taken>,
    /// The empty folders (every file is taken or read).
    listing: Vec<(Path, FileRef)>,
    skipped: Vec<Skipped>,
    unsettled: Vec<Path>,
    renamed: Vec<(Path, PathBuf)>,
    to_read: Vec<Candidate>,
    files: u64,
    dirs: u64,
    stated: u64,
    cache_hits: u64,
}

/// Appends `other` to `into`, moving it whole when `into` is empty.
fn join<T>(into: &mut Vec<T>, mut other: Vec<T>) {
    if into.is_empty() {
        *into = other;
    } else {
        into.append(&mut other);
    }
}

impl Found {
    /// Adds what a subfolder found.
    fn append(&mut self, other: Found) {
        join(&mut self.taken, other.taken);
        join(&mut self.listing, other.listing);
        join(&mut self.skipped, other.skipped);
        join(&mut self.unsettled, other.unsettled);
        join(&mut self.renamed, other.renamed);
        join(&mut self.to_read, other.to_read);
        self.files += other.files;
        self.dirs += other.dirs;
        self.stated += other.stated;
        self.cache_hits += other.cache_hits;
    }

    /// The scan of everything found, whose taken files are records of `index`.
    fn into_scan(self, index: &Index) -> Scan {
        let mut scan = Scan {
            index: Some(index.clone()),
            taken: self.taken,
            found: self.listing,
            skipped: self.skipped,
            unsettled: self.unsettled.into_iter().collect(),
            counters: ScanCounters {
                files: self.files,
                dirs: self.dirs,
                stated: self.stated,
                cache_hits: self.cache_hits,
                ..ScanCounters::default()
            },
            disk_names: DiskNames {
                renamed: self.renamed.into_iter().collect(),
            },
            ..Scan::default()
        };
        // Record order is path order.
        scan.taken.sort_unstable_by_key(|taken| taken.slot);
        scan
    }

    fn skip(&mut self, relative: PathBuf, reason: SkipReason) {
        self.skipped.push(Skipped {
            path: relative,
            reason,
        });
    }

    fn unreadable(&mut self, relative: PathBuf, listed: Option<Path>, error: &io::Error) {
        if let Some(path) = listed {
            self.unsettled.push(path);
        }
        self.skip(
            relative,
            SkipReason::Unreadable {
                error: error.to_string(),
            },
        );
    }
}

/// What the walk reads but never changes; shared by the folders walked in parallel.
struct Walker<'a> {
    /// The stat data, and the base (ignore rules do not apply to its paths).
    index: &'a Index,
}

/// What an entry's name is listed as.
enum Listed {
    /// Its disk name, which is a valid name in NFC (every ASCII name that is valid at all).
    AsOnDisk,
    /// The NFC form of its disk name, which differs or is not ASCII.
    Normalized(Name),
    Invalid(NameError),
    NotUtf8,
}

/// One entry of a folder being walked: where its name is in the folder's [`Names`], the type
/// the folder listing gave, and what it is listed as.
struct Entry {
    name_at: usize,
    name_len: usize,
    listing_type: FileType,
    listed: Listed,
}

/// The names of a folder's entries in one buffer (each NUL-terminated, for `fstatat`) rather
/// than one allocation each; as text when they are all UTF-8, which is then checked once.
enum Names {
    Text(String),
    Bytes(Vec<u8>),
}

impl Names {
    fn bytes(&self, entry: &Entry) -> &[u8] {
        let all = match self {
            Self::Text(text) => text.as_bytes(),
            Self::Bytes(bytes) => bytes,
        };
        &all[entry.name_at..entry.name_at + entry.name_len]
    }

    /// The name as text, if it is UTF-8.
    fn text(&self, entry: &Entry) -> Option<&str> {
        match self {
            Self::Text(text) => text.get(entry.name_at..entry.name_at + entry.name_len),
            Self::Bytes(_) => std::str::from_utf8(self.bytes(entry)).ok(),
        }
    }

    /// The name it is listed under, if it can be listed.
    fn listed<'a>(&'a self, entry: &'a Entry) -> Option<&'a str> {
        match &entry.listed {
            Listed::AsOnDisk => self.text(entry),
            Listed::Normalized(name) => Some(name.as_str()),
            Listed::Invalid(_) | Listed::NotUtf8 => None,
        }
    }

    fn c_name(&self, entry: &Entry) -> &CStr {
        let all = match self {
            Self::Text(text) => text.as_bytes(),
            Self::Bytes(bytes) => bytes,
        };
        CStr::from_bytes_with_nul(&all[entry.name_at..=entry.name_at + entry.name_len])
            .expect("each name is stored with its NUL and has none inside")
    }

    fn name(&self, entry: &Entry) -> &OsStr {
        OsStr::from_bytes(self.bytes(entry))
    }
}

/// Opens a folder below the root for the walk: its entries are then read and stat'ed relative
/// to it, not by their path from the root. A symlink in its place is not followed (it may have
/// replaced the folder since its parent's listing named it).
fn open_folder(path: &FsPath) -> io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Opens the working copy's root for the walk. Unlike the folders below it, the root may be
/// reached through a symlink (the caller's path to it is not the walk's business).
fn open_root(root: &FsPath) -> io::Result<OwnedFd> {
    rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// The entries of the open folder `dir`, but `.` and `..`, and their names.
fn read_entries(dir: &OwnedFd) -> io::Result<(Names, Vec<Entry>)> {
    thread_local! {
        // One `getdents64` fills this for most folders; a larger one takes a few. One per
        // thread, as each folder is read before any other is walked on its thread.
        static BUFFER: std::cell::RefCell<Vec<u8>> =
            std::cell::RefCell::new(Vec::with_capacity(32 * 1024));
    }
    BUFFER.with_borrow_mut(|buffer| read_entries_into(dir, buffer))
}

fn read_entries_into(dir: &OwnedFd, buffer: &mut Vec<u8>) -> io::Result<(Names, Vec<Entry>)> {
    let mut raw = RawDir::new(dir, buffer.spare_capacity_mut());
    let mut names = Vec::with_capacity(1024);
    let mut entries = Vec::new();
    while let Some(entry) = raw.next() {
        let entry = entry.map_err(io::Error::from)?;
        let name = entry.file_name().to_bytes_with_nul();
        let name_len = name.len() - 1;
        if matches!(&name[..name_len], b"." | b"..") {
            continue;
        }
        entries.push(Entry {
            name_at: names.len(),
            name_len,
            listing_type: entry.file_type(),
            listed: Listed::NotUtf8,
        });
        names.extend_from_slice(name);
    }
    let names = match String::from_utf8(names) {
        Ok(text) => Names::Text(text),
        Err(error) => Names::Bytes(error.into_bytes()),
    };
    for entry in &mut entries {
        entry.listed = listed_as(names.text(entry));
    }
    Ok((names, entries))
}

/// What a name on disk (`None`: not UTF-8) is listed as. An ASCII name is its own NFC form, so
/// it is only checked, not copied.
fn listed_as(text: Option<&str>) -> Listed {
    let Some(text) = text else {
        return Listed::NotUtf8;
    };
    let listed = if text.is_ascii() {
        sync_protocol::name::validate(text).map(|()| Listed::AsOnDisk)
    } else {
        Name::normalized(text).map(Listed::Normalized)
    };
    listed.unwrap_or_else(Listed::Invalid)
}

/// True when two of `names` are equal after case folding ([`fast_fold_key`]), without making
/// a key for the ASCII names, which are nearly all of them: they are sorted and compared
/// ignoring ASCII case (an ASCII name's key is its lowercase, and a non-ASCII name's key has
/// no uppercase ASCII left).
fn any_clash<'a>(names: impl Iterator<Item = &'a str>) -> bool {
    let mut keys: Vec<std::borrow::Cow<'a, str>> = names
        .map(|name| {
            if name.is_ascii() {
                std::borrow::Cow::Borrowed(name)
            } else {
                std::borrow::Cow::Owned(fold_key(name))
            }
        })
        .collect();
    keys.sort_unstable_by(|a, b| {
        a.bytes()
            .map(|byte| byte.to_ascii_lowercase())
            .cmp(b.bytes().map(|byte| byte.to_ascii_lowercase()))
    });
    keys.windows(2)
        .any(|pair| pair[0].eq_ignore_ascii_case(&pair[1]))
}

/// A subfolder met in a folder's entries, walked after them.
struct Subfolder {
    disk: PathBuf,
    relative: PathBuf,
    path: Path,
    /// The slots of the index records under it.
    records: std::ops::Range<usize>,
}

impl Walker<'_> {
    /// Walks one folder (`dir`, opened by the caller), and its subfolders in parallel. `disk`
    /// is its path, `relative` its disk path under the root, `listed` its listed path and the
    /// slots of the index records under it (`None` for the root). Returns whether anything
    /// under it was listed.
    fn walk_dir(
        &self,
        found: &mut Found,
        dir: io::Result<OwnedFd>,
        disk: &FsPath,
        relative: PathBuf,
        listed: Option<(&Path, std::ops::Range<usize>)>,
        inherited: &[Arc<Gitignore>],
    ) -> Result<bool, ClientError> {
        found.dirs += 1;
        let (parent, records_here) = listed.unzip();
        // The entries are read with `getdents64` into one buffer and stat'ed relative to the
        // open folder (`fstatat`); std's `read_dir` made a few allocations and an `fstat` per
        // folder and entry besides, half the time of a scan of 8,000 unchanged files. Each name
        // is normalized and folded once, here.
        let entries = dir.and_then(|dir| Ok((read_entries(&dir)?, dir)));
        let ((names, mut entries), dir) = match entries {
            Ok(read) => read,
            // An unreadable root is not a partial scan: nothing could be seen at all.
            Err(error) if parent.is_none() => {
                return Err(ClientError::io("read folder", disk, error));
            }
            // The listing of this folder is missing or incomplete: nothing in it may look
            // removed.
            Err(error) => {
                found.unreadable(relative, parent.cloned(), &error);
                return Ok(false);
            }
        };
        // Byte order, except that tracked names come first: when two names clash (equal after
        // NFC or case folding) the one the base has wins, so a new twin can never make a
        // tracked file look deleted. Only clashing names need the (costlier) tracked test.
        entries.sort_unstable_by(|a, b| names.bytes(a).cmp(names.bytes(b)));
        let clashes = any_clash(entries.iter().filter_map(|entry| names.listed(entry)));
        if clashes {
            entries.sort_by_cached_key(|entry| {
                (
                    !self.is_tracked(names.listed(entry), parent),
                    names.bytes(entry).to_vec(),
                )
            });
        }

        let mut matchers = inherited.to_vec();
        if entries.iter().any(|entry| names.name(entry) == IGNORE_FILE) {
            let (matcher, error) = load_ignore_file(disk);
            if let Some(error) = error {
                found.skip(
                    relative.join(IGNORE_FILE),
                    SkipReason::BadIgnoreFile { error },
                );
            }
            matchers.push(Arc::new(matcher));
        }

        let mut listed_any = false;
        let mut subfolders: Vec<Subfolder> = Vec::new();
        // Each entry's listed path is made in this one buffer: a file taken from the index
        // needs no `Path` of its own.
        let mut child = parent.map_or_else(String::new, |dir| format!("{}/", dir.as_str()));
        let prefix_len = child.len();
        let depth = parent.map_or(0, Path::depth) + 1;
        // Fold key to the disk name that took it first; only needed when names clash.
        let mut taken: HashMap<String, OsString> = HashMap::new();
        for entry in &entries {
            let (c_name, name) = (names.c_name(entry), names.name(entry));
            let child_disk = || disk.join(name);
            let child_relative = || relative.join(name);
            if name == META_DIR {
                if parent.is_some() {
                    found.skip(child_relative(), SkipReason::NestedWorkingCopy);
                }
                continue;
            }
            if is_temp_name(name) {
                continue;
            }
            let listed = names.listed(entry);
            if let Some(listed) = listed {
                child.truncate(prefix_len);
                child.push_str(listed);
            }
            // A folder needs no stat: the type the folder listing gave is all the walk uses
            // (a quarter of the entries of a deep tree). Everything else is stat'ed, and the
            // stat's type decides (the listing's may be unknown, or stale).
            let (file_type, stat) = if entry.listing_type == FileType::Directory {
                (FileType::Directory, None)
            } else {
                found.stated += 1;
                match rustix::fs::statat(&dir, c_name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(stat) => {
                        let stat = DiskStat::from(&stat);
                        (stat.file_type, Some(stat))
                    }
                    // Removed since the folder was read.
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(error) => {
                        let listed = listed.and_then(|_| Path::new(&child).ok());
                        found.unreadable(child_relative(), listed, &io::Error::from(error));
                        continue;
                    }
                }
            };
            let is_dir = file_type == FileType::Directory;
            if !matchers.is_empty()
                && is_ignored(&matchers, &child_disk(), is_dir)
                && !self.is_tracked(listed, parent)
            {
                continue;
            }
            let what = match file_type {
                FileType::Directory | FileType::RegularFile => None,
                FileType::Symlink => {
                    found.skip(child_relative(), SkipReason::Symlink);
                    continue;
                }
                FileType::Fifo => Some("named pipe"),
                FileType::Socket => Some("socket"),
                FileType::BlockDevice => Some("block device"),
                FileType::CharacterDevice => Some("character device"),
                _ => Some("special file"),
            };
            if let Some(what) = what {
                found.skip(child_relative(), SkipReason::Special { what });
                continue;
            }
            let listed = match (&entry.listed, listed) {
                (_, Some(listed)) => listed,
                (Listed::Invalid(error), None) => {
                    found.skip(child_relative(), SkipReason::InvalidName(error.clone()));
                    continue;
                }
                (_, None) => {
                    found.skip(child_relative(), SkipReason::NotUtf8);
                    continue;
                }
            };
            // The path limits, checked without making the path (`Path::new` says why not).
            if (child.len() > MAX_PATH_LEN || depth > MAX_PATH_DEPTH)
                && let Err(error) = Path::new(&child)
            {
                found.skip(child_relative(), SkipReason::InvalidPath(error));
                continue;
            }
            if clashes {
                let key = fast_fold_key(listed);
                if let Some(first) = taken.get(&key) {
                    let with = first.to_string_lossy().into_owned();
                    found.skip(child_relative(), SkipReason::NameClash { with });
                    continue;
                }
                taken.insert(key, name.to_os_string());
            }
            // The walk, or a file's read, may still make the path: it is valid.
            let path = || Path::new(&child);
            if matches!(entry.listed, Listed::Normalized(_))
                && Some(listed) != name.to_str()
                && let Ok(path) = path()
            {
                // Paths below a renamed folder resolve through it (see `DiskNames::resolve`).
                found.renamed.push((path, child_relative()));
            }

            // A file's type came from its stat.
            let (false, Some(stat)) = (is_dir, stat) else {
                if is_dir && let Ok(path) = path() {
                    let (disk, relative) = (child_disk(), child_relative());
                    // Its records are among this folder's: a short search.
                    let records = self.index.under_within(records_here.as_ref(), &child);
                    subfolders.push(Subfolder {
                        disk,
                        relative,
                        path,
                        records,
                    });
                    listed_any = true;
                }
                continue;
            };
            found.files += 1;
            if self.take_from_index(found, &child, &stat, records_here.as_ref()) {
                listed_any = true;
            } else if let Ok(path) = path() {
                listed_any = true;
                Self::to_read(found, path, || (child_disk(), child_relative()), &stat);
            }
        }
        // This folder is closed before its subfolders are walked, which open themselves by
        // their path: a walk holds one folder open per thread, however deep the tree and
        // however rayon nests its tasks (a descriptor kept per level could run out of them).
        drop(dir);
        // Subfolders in parallel; what each found is gathered (and put in path order) once the
        // walk is done.
        let walked: Vec<Result<Found, ClientError>> = subfolders
            .into_par_iter()
            .map(|subfolder| {
                let mut below = Found::default();
                let listed_below = self.walk_dir(
                    &mut below,
                    open_folder(&subfolder.disk),
                    &subfolder.disk,
                    subfolder.relative,
                    Some((&subfolder.path, subfolder.records)),
                    &matchers,
                )?;
                // A folder that could not be read is unsettled, not empty.
                if !listed_below && !below.unsettled.contains(&subfolder.path) {
                    below.listing.push((subfolder.path, FileRef::empty_dir()));
                }
                Ok(below)
            })
            .collect();
        for below in walked {
            found.append(below?);
        }
        Ok(listed_any)
    }

    /// Takes a regular file listed as `listed` (a path within the limits) from the index when
    /// its stat matches its record's (`records`: the records of its folder, when known),
    /// making no `Path` for it. False when it must be read.
    fn take_from_index(
        &self,
        found: &mut Found,
        listed: &str,
        stat: &DiskStat,
        records: Option<&std::ops::Range<usize>>,
    ) -> bool {
        if stat.size > MAX_FILE_SIZE {
            return false;
        }
        let Some(slot) = self.index.slot_within(records, listed) else {
            return false;
        };
        let matches = self
            .index
            .stat_at(slot)
            .is_some_and(|cached| cached.matches_stat(stat));
        let Ok(slot) = u32::try_from(slot) else {
            return false;
        };
        if !matches {
            return false;
        }
        found.cache_hits += 1;
        found.taken.push(Taken {
            slot,
            kind: kind_of(stat),
            with_stat: true,
        });
        true
    }

    /// A regular file not taken from the index: left to be read, or reported when it is
    /// larger than the format allows. `where_on_disk` gives its disk path and its disk path
    /// under the root.
    fn to_read(
        found: &mut Found,
        path: Path,
        where_on_disk: impl FnOnce() -> (PathBuf, PathBuf),
        stat: &DiskStat,
    ) {
        let (disk, relative) = where_on_disk();
        if stat.size > MAX_FILE_SIZE {
            found.unsettled.push(path);
            found.skip(relative, SkipReason::TooLarge { size: stat.size });
            return;
        }
        found.to_read.push(Candidate { path, disk });
    }

    /// True when the base has the entry listed as `listed` in the folder `parent`, or anything
    /// under it.
    fn is_tracked(&self, listed: Option<&str>, parent: Option<&Path>) -> bool {
        let Some(listed) = listed else {
            return false;
        };
        match parent {
            Some(parent) => self.index.tracks(&format!("{}/{listed}", parent.as_str())),
            None => self.index.tracks(listed),
        }
    }
}

/// `Name::normalized`, skipping the Unicode passes for ASCII names, which are their own NFC form.
fn normalized_name(text: &str) -> Result<Name, NameError> {
    if text.is_ascii() {
        Name::new(text)
    } else {
        Name::normalized(text)
    }
}

/// `name::fold_key`, with the ASCII shortcut: an ASCII string is its own canonical decomposition
/// and Unicode default case folding maps ASCII to ASCII lowercase.
fn fast_fold_key(text: &str) -> String {
    if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        fold_key(text)
    }
}

/// The key under which an entry name would clash with another in its folder, if it is a name
/// that can be listed at all.
fn clash_key(name: &OsString) -> Option<String> {
    let text = name.to_str()?;
    let name = normalized_name(text).ok()?;
    Some(fast_fold_key(name.as_str()))
}

fn entry_kind(metadata: &fs::Metadata) -> EntryKind {
    kind_of(&DiskStat::from(metadata))
}

fn kind_of(stat: &DiskStat) -> EntryKind {
    // The owner's execute bit decides, as in git.
    if stat.executable {
        EntryKind::Executable
    } else {
        EntryKind::File
    }
}

fn load_ignore_file(dir: &FsPath) -> (Gitignore, Option<String>) {
    let mut builder = GitignoreBuilder::new(dir);
    let error = builder
        .add(dir.join(IGNORE_FILE))
        .map(|error| error.to_string());
    match builder.build() {
        Ok(matcher) => (matcher, error),
        Err(build_error) => (Gitignore::empty(), Some(build_error.to_string())),
    }
}

/// gitignore semantics: the deepest ignore file with a matching rule decides, and within it the
/// last matching line (which `Gitignore::matched` already applies).
fn is_ignored(matchers: &[Arc<Gitignore>], path: &FsPath, is_dir: bool) -> bool {
    for matcher in matchers.iter().rev() {
        match matcher.matched(path, is_dir) {
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
            Match::None => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index whose base and recorded scan are `listing`, with a stat for every file.
    fn index_of(listing: &Listing) -> Index {
        use crate::stores::index::{BaseSource, IndexContents, ScanRecord, encode};
        let base = crate::stores::state::Base {
            version: Some(3),
            root: sync_protocol::chunk_id(b"root"),
            listing: listing.clone(),
            pending: BTreeSet::new(),
        };
        let stats: Vec<(&str, StatEntry)> = listing
            .iter()
            .filter(|(_, entry)| !entry.is_dir())
            .map(|(path, entry)| {
                let stat = StatEntry {
                    size: entry.size,
                    mtime: Mtime {
                        seconds: 100,
                        nanos: 0,
                    },
                    inode: entry.size,
                    target: entry.target,
                    id: entry.id,
                };
                (path.as_str(), stat)
            })
            .collect();
        let unsettled = BTreeSet::new();
        let bytes = encode(&IndexContents {
            base: BaseSource::New(&base),
            stats: &stats,
            scan: Some(ScanRecord {
                listing,
                unsettled: &unsettled,
                has_renames: false,
                token: None,
            }),
        });
        Index::from_bytes(bytes).unwrap()
    }

    #[test]
    fn a_scan_of_index_records_lists_and_compares_as_its_listing_would() {
        let path = |text: &str| Path::new(text).unwrap();
        let file = |seed: &str| FileRef {
            kind: EntryKind::File,
            target: sync_protocol::ObjectKind::Chunk,
            size: seed.len() as u64,
            id: sync_protocol::chunk_id(seed.as_bytes()),
        };
        let base: Listing = [
            (path("a/b.json"), file("1")),
            (path("a/c.json"), file("22")),
            (path("a-z"), FileRef::empty_dir()),
            (path("b"), file("333")),
            (path("c/d"), file("4444")),
        ]
        .into_iter()
        .collect();
        let index = index_of(&base);
        let slot = |text: &str| index.slot_within(None, text).unwrap() as u32;
        let taken = |paths: &[&str], kind: EntryKind| -> Vec<Taken> {
            paths
                .iter()
                .map(|text| Taken {
                    slot: slot(text),
                    kind,
                    with_stat: true,
                })
                .collect()
        };
        // As `read_found` leaves a scan: the other entries in path order.
        let scan_of = |taken: Vec<Taken>, mut found: Vec<(Path, FileRef)>| {
            found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            Scan {
                index: Some(index.clone()),
                taken,
                found,
                ..Scan::default()
            }
        };
        let files = ["a/b.json", "a/c.json", "b", "c/d"];
        let empty = (path("a-z"), FileRef::empty_dir());
        let cases = [
            // Unchanged: every file taken, the empty folder found.
            (
                scan_of(taken(&files, EntryKind::File), vec![empty.clone()]),
                true,
            ),
            // The empty folder gone.
            (scan_of(taken(&files, EntryKind::File), Vec::new()), false),
            // A file gone.
            (
                scan_of(taken(&files[1..], EntryKind::File), vec![empty.clone()]),
                false,
            ),
            // A file read again with new contents, in place of its record.
            (
                scan_of(
                    taken(&["a/b.json", "a/c.json", "c/d"], EntryKind::File),
                    vec![empty.clone(), (path("b"), file("new"))],
                ),
                false,
            ),
            // A file read again with the same contents.
            (
                scan_of(
                    taken(&["a/b.json", "a/c.json", "c/d"], EntryKind::File),
                    vec![empty.clone(), (path("b"), file("333"))],
                ),
                true,
            ),
            // An executable bit set: same stat, another kind.
            (
                scan_of(
                    [
                        taken(&files[..2], EntryKind::File),
                        taken(&["b"], EntryKind::Executable),
                        taken(&files[3..], EntryKind::File),
                    ]
                    .concat(),
                    vec![empty.clone()],
                ),
                false,
            ),
            // A new file, sorting between taken ones.
            (
                scan_of(
                    taken(&files, EntryKind::File),
                    vec![(path("a/bb"), file("5")), empty.clone()],
                ),
                false,
            ),
        ];
        for (number, (scan, same)) in cases.into_iter().enumerate() {
            let listing = scan.listing.get().is_none().then(|| {
                let mut unbuilt = scan.clone();
                unbuilt.listing = OnceLock::new();
                unbuilt
            });
            // The entries read in place are the listing's, before it is built and after.
            let in_place: Vec<(String, FileRef)> = scan
                .entries()
                .map(|(path, entry)| (path.to_owned(), entry))
                .collect();
            let count = scan.entry_count();
            assert_eq!(scan.is_base_of(&index), same, "case {number}");
            assert!(scan.listing().keys().is_sorted(), "case {number}");
            assert_eq!(
                index.base_is(scan.listing()),
                same,
                "case {number}: {:?}",
                scan.listing()
            );
            let built: Vec<(String, FileRef)> = scan
                .listing()
                .iter()
                .map(|(path, entry)| (path.as_str().to_owned(), *entry))
                .collect();
            assert_eq!(in_place, built, "case {number}");
            assert!(
                scan.entries()
                    .map(|(path, _)| path)
                    .eq(built.iter().map(|(path, _)| path.as_str()))
            );
            assert_eq!((count, scan.entry_count()), (built.len(), built.len()));
            // Built, then compared; and compared with an equal index that is another read.
            assert_eq!(scan.is_base_of(&index), same, "case {number}");
            let other = index_of(&base);
            assert_eq!(listing.unwrap().is_base_of(&other), same, "case {number}");
        }
        let unchanged = scan_of(taken(&files, EntryKind::File), vec![empty]);
        assert_eq!(unchanged.listing(), &base);
        let clock = Mtime {
            seconds: 101,
            nanos: 0,
        };
        let stats = unchanged.stat_entries(clock);
        assert_eq!(
            stats.iter().map(|(path, _)| *path).collect::<Vec<_>>(),
            files
        );
        assert_eq!(
            unchanged.stat(&path("b")),
            index.stat_at(slot("b") as usize)
        );
        assert_eq!(unchanged.stat(&path("a-z")), None);
        let before = Mtime {
            seconds: 100,
            nanos: 0,
        };
        assert!(unchanged.stat_entries(before).is_empty());
    }

    #[test]
    fn clashes_are_found_as_the_fold_keys_find_them() {
        let by_keys = |names: &[&str]| {
            let mut keys: Vec<String> = names.iter().map(|name| fold_key(name)).collect();
            keys.sort_unstable();
            keys.windows(2).any(|pair| pair[0] == pair[1])
        };
        for names in [
            &["a.json", "b.json", "c"][..],
            &["Readme.md", "README.md"],
            &["readme.md", "b", "README.MD"],
            &["k", "\u{212a}"],
            &["Straße", "STRASSE"],
            &["école", "École"],
            &["école", "ecole"],
            &["a-b", "a_b", "A.B"],
            &["", "x"],
            &[],
        ] {
            assert_eq!(
                any_clash(names.iter().copied()),
                by_keys(names),
                "{names:?}"
            );
        }
    }

    #[test]
    fn ascii_shortcuts_agree_with_the_unicode_passes() {
        let printable: String = (0x20u8..0x7f)
            .map(char::from)
            .filter(|c| *c != '/')
            .collect();
        for text in [
            printable.as_str(),
            "Request-01234.JSON",
            "ÉCOLE",
            "Straße",
            "e\u{301}",
        ] {
            assert_eq!(fast_fold_key(text), fold_key(text), "{text:?}");
            assert_eq!(
                normalized_name(text).map(|name| name.as_str().to_owned()),
                Name::normalized(text).map(|name| name.as_str().to_owned()),
                "{text:?}"
            );
        }
    }
}
