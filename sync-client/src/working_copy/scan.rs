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
use std::sync::Arc;

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
use sync_protocol::limits::MAX_FILE_SIZE;
use sync_protocol::name::fold_key;
use sync_protocol::tree::{FileRef, Listing, Path, PathError};
use sync_protocol::{EntryKind, Name, NameError, ObjectId};

use crate::error::ClientError;
use crate::stores::META_DIR;
use crate::stores::atomic::is_temp_name;
use crate::stores::object_cache::ObjectCache;
use crate::stores::state::{DiskStat, Mtime, PathHasher, StatEntry, StatLookup, Tracked};

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

/// The working copy as the scan found it.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Every listed file and empty folder.
    pub listing: Listing,
    /// What was left out and why.
    pub skipped: Vec<Skipped>,
    /// Paths (files, or folders and all below them) that exist but could not be read.
    pub unsettled: BTreeSet<Path>,
    /// Objects this scan added to the object cache, children first per file.
    pub new_objects: Vec<ObjectId>,
    pub counters: ScanCounters,
    /// Each listed file's stat as it was hashed (keyed with the stat cache's word-at-a-time
    /// hash: one insert per file on every scan).
    pub stats: HashMap<Path, StatEntry, BuildHasherDefault<PathHasher>>,
    /// The listed files whose contents this scan read (the others' stats matched).
    pub read: Vec<Path>,
    pub disk_names: DiskNames,
}

impl Scan {
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

    /// The stat entries to keep, in path order: this scan's entries whose mtime is before
    /// `clock` (a later one is racy: see `StatCache`).
    pub fn stat_entries(&self, clock: Mtime) -> Vec<(&str, StatEntry)> {
        // From `stats`, not in `listing` order: a push takes the listing for its new base
        // before it records the stats.
        // References are sorted, not the 88-byte entries (half the time for 8,000 files).
        let mut kept: Vec<(&str, &StatEntry)> = self
            .stats
            .iter()
            .filter(|(_, entry)| entry.mtime < clock)
            .map(|(path, entry)| (path.as_str(), entry))
            .collect();
        kept.sort_unstable_by(|a, b| a.0.cmp(b.0));
        kept.into_iter()
            .map(|(path, entry)| (path, *entry))
            .collect()
    }
}

/// Scans `root` (which holds `.cairn/`). `tracked` is the base listing: ignore rules do not
/// apply to its paths.
pub fn scan(
    root: &FsPath,
    stat_cache: &dyn StatLookup,
    objects: &ObjectCache,
    tracked: &dyn Tracked,
) -> Result<Scan, ClientError> {
    let walker = Walker {
        stat_cache,
        tracked,
    };
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
    read_found(root, found, objects)
}

/// Reads (in parallel) the files the walk could not take from the stat data, and gathers
/// everything the walk found into a [`Scan`].
fn read_found(root: &FsPath, mut found: Found, objects: &ObjectCache) -> Result<Scan, ClientError> {
    let to_read = found.take_to_read();
    let mut scan = crate::timing::timed("gather scan", || found.into_scan());

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
                scan.stats.insert(candidate.path.clone(), stat);
                scan.listing.insert(candidate.path, file_ref);
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
    scan.counters.files_read = counters.files_read.load(Ordering::Relaxed);
    scan.counters.bytes_read = counters.bytes_read.load(Ordering::Relaxed);
    scan.counters.objects_written = counters.objects_written.load(Ordering::Relaxed);
    scan.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(scan)
}

/// What the walk of one folder found, in plain vectors, with what its subfolders found kept
/// as children: the folders walked in parallel are joined without moving their entries up
/// level by level, and [`Found::into_scan`] gathers everything once into collections of the
/// right size (a scan of 10,000 files otherwise spent a third of its page faults copying).
#[derive(Default)]
struct Found {
    listing: Vec<(Path, FileRef)>,
    skipped: Vec<Skipped>,
    unsettled: Vec<Path>,
    stats: Vec<(Path, StatEntry)>,
    renamed: Vec<(Path, PathBuf)>,
    to_read: Vec<Candidate>,
    files: u64,
    dirs: u64,
    stated: u64,
    cache_hits: u64,
    /// What the subfolders found, each with the number of this folder's `listing` entries
    /// that come before its paths in path order.
    children: Vec<(usize, Found)>,
}

impl Found {
    /// Adds what a subfolder found; its paths sort after every entry listed here so far.
    fn append(&mut self, other: Found) {
        self.children.push((self.listing.len(), other));
    }

    /// Adds what the subfolder `path` found, placed in path order among this folder's
    /// entries (which are in path order): a file name sorts before the subfolder's paths
    /// exactly when it sorts before `name/`.
    fn append_folder(&mut self, path: &Path, other: Found) {
        let below = format!("{}/", path.as_str());
        let position = self
            .listing
            .partition_point(|(listed, _)| listed.as_str() < below.as_str());
        self.children.push((position, other));
    }

    /// Every `Found` of the tree, this one first, depth first.
    fn flatten(self) -> Vec<Found> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(mut found) = stack.pop() {
            stack.extend(
                std::mem::take(&mut found.children)
                    .into_iter()
                    .rev()
                    .map(|(_, child)| child),
            );
            out.push(found);
        }
        out
    }

    /// The listing of the whole tree, taken out of it, in path order as far as the walk
    /// kept it (sorting it for the `Listing` then costs one pass).
    fn take_listing(&mut self, out: &mut Vec<(Path, FileRef)>) {
        let mut here = std::mem::take(&mut self.listing).into_iter();
        let mut taken = 0;
        for (position, child) in &mut self.children {
            out.extend(here.by_ref().take(*position - taken));
            taken = *position;
            child.take_listing(out);
        }
        out.extend(here);
    }

    /// The candidates to read, taken out of the whole tree.
    fn take_to_read(&mut self) -> Vec<Candidate> {
        let mut out = std::mem::take(&mut self.to_read);
        for (_, child) in &mut self.children {
            out.append(&mut child.take_to_read());
        }
        out
    }

    fn into_scan(mut self) -> Scan {
        let mut listing = Vec::new();
        self.take_listing(&mut listing);
        let all = self.flatten();
        let with_stats: usize = all.iter().map(|found| found.stats.len()).sum();
        let mut stats_parts = Vec::with_capacity(all.len());
        let mut scan = Scan::default();
        let mut renamed = HashMap::new();
        for found in all {
            stats_parts.push(found.stats);
            scan.skipped.extend(found.skipped);
            scan.unsettled.extend(found.unsettled);
            renamed.extend(found.renamed);
            scan.counters.files += found.files;
            scan.counters.dirs += found.dirs;
            scan.counters.stated += found.stated;
            scan.counters.cache_hits += found.cache_hits;
        }
        // The two largest collections are built side by side (3.6 ms one after the other for
        // 8,000 files, on the critical path of every command).
        (scan.listing, scan.stats) = rayon::join(
            || listing.into_iter().collect(),
            || {
                let mut stats = HashMap::with_capacity_and_hasher(with_stats, Default::default());
                for part in stats_parts {
                    stats.extend(part);
                }
                stats
            },
        );
        scan.disk_names = DiskNames { renamed };
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
    tracked: &'a dyn Tracked,
    stat_cache: &'a dyn StatLookup,
}

/// One entry of a folder being walked: where its name is in the folder's [`Names`], the type
/// the folder listing gave, and its listed name (`None`: the name is not UTF-8).
struct Entry {
    name_at: usize,
    name_len: usize,
    listing_type: FileType,
    listed: Option<Result<Name, NameError>>,
}

/// The names of a folder's entries in one buffer (each NUL-terminated, for `fstatat`) rather
/// than one allocation each.
struct Names(Vec<u8>);

impl Names {
    fn bytes(&self, entry: &Entry) -> &[u8] {
        &self.0[entry.name_at..entry.name_at + entry.name_len]
    }

    fn c_name(&self, entry: &Entry) -> &CStr {
        CStr::from_bytes_with_nul(&self.0[entry.name_at..=entry.name_at + entry.name_len])
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
    // One `getdents64` fills this for most folders; a larger one takes a few.
    let mut buffer = Vec::<u8>::with_capacity(32 * 1024);
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
        let listed = std::str::from_utf8(&name[..name_len])
            .ok()
            .map(normalized_name);
        entries.push(Entry {
            name_at: names.len(),
            name_len,
            listing_type: entry.file_type(),
            listed,
        });
        names.extend_from_slice(name);
    }
    Ok((Names(names), entries))
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
}

impl Walker<'_> {
    /// Walks one folder (`dir`, opened by the caller), and its subfolders in parallel. `disk`
    /// is its path, `relative` its disk path under the root, `parent` its listed path (`None`
    /// for the root). Returns whether anything under it was listed.
    fn walk_dir(
        &self,
        found: &mut Found,
        dir: io::Result<OwnedFd>,
        disk: &FsPath,
        relative: PathBuf,
        parent: Option<&Path>,
        inherited: &[Arc<Gitignore>],
    ) -> Result<bool, ClientError> {
        found.dirs += 1;
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
        let clashes = any_clash(
            entries
                .iter()
                .filter_map(|entry| entry.listed.as_ref()?.as_ref().ok())
                .map(Name::as_str),
        );
        if clashes {
            entries.sort_by_cached_key(|entry| {
                (
                    !self.is_tracked(names.name(entry), parent),
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
        // This folder's stat entries, found once: each file's lookup searches only them.
        let stats_here = parent.and_then(|dir| self.stat_cache.narrowed(dir));
        // Fold key to the disk name that took it first; only needed when names clash.
        let mut taken: HashMap<String, OsString> = HashMap::new();
        for entry in entries {
            let (c_name, name) = (names.c_name(&entry), names.name(&entry));
            let Entry {
                listing_type,
                listed,
                ..
            } = entry;
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
            // A folder needs no stat: the type the folder listing gave is all the walk uses
            // (a quarter of the entries of a deep tree). Everything else is stat'ed, and the
            // stat's type decides (the listing's may be unknown, or stale).
            let (file_type, stat) = if listing_type == FileType::Directory {
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
                        let listed = listed
                            .and_then(Result::ok)
                            .and_then(|name| Path::join(parent, &name).ok());
                        found.unreadable(child_relative(), listed, &io::Error::from(error));
                        continue;
                    }
                }
            };
            let is_dir = file_type == FileType::Directory;
            if !matchers.is_empty()
                && is_ignored(&matchers, &child_disk(), is_dir)
                && !self.is_tracked(name, parent)
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
            let listed_name = match listed {
                Some(Ok(listed)) => listed,
                Some(Err(error)) => {
                    found.skip(child_relative(), SkipReason::InvalidName(error));
                    continue;
                }
                None => {
                    found.skip(child_relative(), SkipReason::NotUtf8);
                    continue;
                }
            };
            let path = match Path::join(parent, &listed_name) {
                Ok(path) => path,
                Err(error) => {
                    found.skip(child_relative(), SkipReason::InvalidPath(error));
                    continue;
                }
            };
            if clashes {
                let key = fast_fold_key(listed_name.as_str());
                if let Some(first) = taken.get(&key) {
                    let with = first.to_string_lossy().into_owned();
                    found.skip(child_relative(), SkipReason::NameClash { with });
                    continue;
                }
                taken.insert(key, name.to_os_string());
            }
            if Some(listed_name.as_str()) != name.to_str() {
                // Paths below a renamed folder resolve through it (see `DiskNames::resolve`).
                found.renamed.push((path.clone(), child_relative()));
            }

            if is_dir {
                let (disk, relative) = (child_disk(), child_relative());
                subfolders.push(Subfolder {
                    disk,
                    relative,
                    path,
                });
                listed_any = true;
                continue;
            }

            // A file's type came from its stat.
            let Some(stat) = stat else { continue };
            listed_any = true;
            self.take_file(
                found,
                path,
                || (child_disk(), child_relative()),
                &stat,
                stats_here.as_ref(),
            );
        }
        // This folder is closed before its subfolders are walked, which open themselves by
        // their path: a walk holds one folder open per thread, however deep the tree and
        // however rayon nests its tasks (a descriptor kept per level could run out of them).
        drop(dir);
        // Subfolders in parallel; their findings are joined in name order, so the result does
        // not depend on the schedule.
        let walked: Vec<Result<(Path, Found), ClientError>> = subfolders
            .into_par_iter()
            .map(|subfolder| {
                let mut below = Found::default();
                let listed_below = self.walk_dir(
                    &mut below,
                    open_folder(&subfolder.disk),
                    &subfolder.disk,
                    subfolder.relative,
                    Some(&subfolder.path),
                    &matchers,
                )?;
                // A folder that could not be read is unsettled, not empty.
                if !listed_below && !below.unsettled.contains(&subfolder.path) {
                    below
                        .listing
                        .push((subfolder.path.clone(), FileRef::empty_dir()));
                }
                Ok((subfolder.path, below))
            })
            .collect();
        for walked in walked {
            let (path, below) = walked?;
            found.append_folder(&path, below);
        }
        Ok(listed_any)
    }

    /// A regular file the walk met, listed as `path`: taken from the stat data when its stat
    /// matches (`stats_here`: the stat entries of its folder, when known), otherwise left to
    /// be read. `where_on_disk` gives its disk path and its disk path under the root, made
    /// only when needed (not for the files whose stat matches, nearly all of them).
    fn take_file(
        &self,
        found: &mut Found,
        path: Path,
        where_on_disk: impl FnOnce() -> (PathBuf, PathBuf),
        stat: &DiskStat,
        stats_here: Option<&std::ops::Range<usize>>,
    ) {
        found.files += 1;
        if stat.size > MAX_FILE_SIZE {
            found.unsettled.push(path);
            found.skip(where_on_disk().1, SkipReason::TooLarge { size: stat.size });
            return;
        }
        if let Some(cached) = self.stat_cache.stat_within(stats_here, &path)
            && cached.matches_stat(stat)
        {
            found.cache_hits += 1;
            found.listing.push((
                path.clone(),
                FileRef {
                    kind: kind_of(stat),
                    target: cached.target,
                    size: cached.size,
                    id: cached.id,
                },
            ));
            found.stats.push((path, cached));
            return;
        }
        let (disk, _) = where_on_disk();
        found.to_read.push(Candidate { path, disk });
    }

    /// True when the base has the entry `name` of folder `parent`, or anything under it.
    fn is_tracked(&self, name: &std::ffi::OsStr, parent: Option<&Path>) -> bool {
        let Some(path) = name
            .to_str()
            .and_then(|text| normalized_name(text).ok())
            .and_then(|name| Path::join(parent, &name).ok())
        else {
            return false;
        };
        self.tracked.tracks(&path)
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

    #[test]
    fn the_walk_hands_its_listing_over_in_path_order() {
        let path = |text: &str| Path::new(text).unwrap();
        let listed = |paths: &[&str]| -> Vec<(Path, FileRef)> {
            paths
                .iter()
                .map(|text| (path(text), FileRef::empty_dir()))
                .collect()
        };
        // A folder `b` among files whose names sort before and after `b/`.
        let mut sub = Found {
            listing: listed(&["b/c", "b/d"]),
            ..Found::default()
        };
        sub.append_folder(
            &path("b/e"),
            Found {
                listing: listed(&["b/e/f"]),
                ..Found::default()
            },
        );
        let mut top = Found {
            listing: listed(&["a", "b-1", "b.json", "b0", "c"]),
            ..Found::default()
        };
        top.append_folder(&path("b"), sub);
        let mut out = Vec::new();
        top.take_listing(&mut out);
        let order: Vec<&str> = out.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            order,
            ["a", "b-1", "b.json", "b/c", "b/d", "b/e/f", "b0", "c"]
        );
        assert!(order.is_sorted());
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
