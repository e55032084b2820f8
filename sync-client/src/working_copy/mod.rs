//! The working copy: a folder of project files with a `.cairn/` state folder, and everything
//! done to its files: [`scan`](mod@scan) turns the folder into a listing (reading only files whose stat
//! changed, storing their objects), [`status`](mod@status) compares listings, [`apply`](mod@apply) writes a new tree
//! into the folder without losing a local edit, and [`WorkingCopy`] ties them to the state
//! folder (`stores::StateFolder`): the base, the stat cache, the object cache, the lock.
//!
//! This layer knows the disk and the stores, never the network: the operations above it
//! (`operations`) bring the objects and decide what to push.

use std::fs;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use sync_protocol::tree::Path as TreePath;

pub mod apply;
pub mod content_merge;
pub mod scan;
mod snapshot;
pub mod status;
mod update;

pub use crate::stores::config::WorkingCopyConfig;
pub use crate::stores::lock::WorkingCopyLock;
pub use snapshot::Snapshot;

use crate::error::{ClientError, io_error};
use crate::stores::StateFolder;
use crate::stores::index::{BaseSource, Index, IndexContents, ScanRecord, Unsealed};
use crate::stores::monitor::{self, Changes, Token};
use crate::stores::object_cache::ObjectCache;
use crate::stores::state::{Base, Mtime, StatEntry, StatLookup};
use crate::timing::{free_in_background, timed};
use scan::{Scan, scan};
use status::{PathChange, changes_against_index};

/// What `status` found.
#[derive(Debug, Clone)]
pub struct Status {
    pub base_version: Option<u64>,
    pub changes: Vec<PathChange>,
    /// Paths the last pull could not bring up to date (see `Base::pending`).
    pub pending: Vec<sync_protocol::tree::Path>,
    pub scan: Scan,
}

/// A scan with what it started from.
struct Scanned {
    scan: Scan,
    /// The file system's clock just before the walk: entries not older than it are racy.
    clock: Mtime,
    /// The monitor's token for the state this scan saw, if a monitor answered.
    token: Option<Token>,
    /// `Some`: only these folders were walked and these files stat'ed (the monitor named the
    /// paths that changed), and everything else was taken from the index; the scan's stats are
    /// only the walked files'.
    walked: Option<Vec<TreePath>>,
}

/// The stat entries worth keeping after `scan`, in path order: the walked files' that are not
/// racy by `clock`, and, after a partial walk of the folders `walked`, the index's outside them.
fn stats_to_keep<'a>(
    scan: &'a Scan,
    clock: Mtime,
    walked: Option<&[TreePath]>,
    index: &'a Index,
) -> Vec<(&'a str, StatEntry)> {
    let kept = scan.stat_entries(clock);
    let Some(walked) = walked else {
        return kept;
    };
    // Both in path order, and apart (the index's are outside the walked folders): merged.
    let mut outside = index
        .stat_entries()
        .filter(|(path, _)| !scan::partial::is_within(path, walked))
        .peekable();
    let mut merged = Vec::with_capacity(kept.len() + index.len());
    for entry in kept {
        while let Some(before) = outside.next_if(|other| other.0 < entry.0) {
            merged.push(before);
        }
        merged.push(entry);
    }
    merged.extend(outside);
    merged
}

impl Snapshot {
    /// The stat entries a new index made after this snapshot keeps (see [`stats_to_keep`]).
    fn stats_to_keep<'a>(&'a self, index: &'a Index) -> Vec<(&'a str, StatEntry)> {
        timed("stats to keep", || {
            stats_to_keep(&self.scan, self.clock, self.walked.as_deref(), index)
        })
    }
}

impl Scanned {
    fn stats_to_keep<'a>(&'a self, index: &'a Index) -> Vec<(&'a str, StatEntry)> {
        stats_to_keep(&self.scan, self.clock, self.walked.as_deref(), index)
    }

    /// True when the stat data this scan would keep is worth writing (see
    /// [`stat_cache_pays`]), or the monitor's token moved on after a walk that a new token
    /// would spare the next command: a full walk, or a partial one of more than
    /// [`TOKEN_WALK_SLACK`] folders. Keeping the old token is always right (the monitor then
    /// names a few more paths than changed since this scan), and walking a few folders again
    /// costs less than rewriting the whole index to move it.
    fn worth_recording(&self, index: &Index) -> bool {
        if self.token.as_ref() != index.token()
            && self
                .walked
                .as_ref()
                .is_none_or(|walked| walked.len() > TOKEN_WALK_SLACK)
        {
            return true;
        }
        // Only the files read can differ from the index: the others' stats came from it.
        let kept = self
            .scan
            .read
            .iter()
            .filter_map(|path| self.scan.stat(path).map(|entry| (path, entry)))
            .filter(|(_, entry)| entry.mtime < self.clock);
        stat_cache_pays(kept, index.len(), index)
    }
}

/// How many folders a monitor-guided walk may take before its new token is worth an index
/// write of its own (see `Scanned::worth_recording`).
const TOKEN_WALK_SLACK: usize = 32;

/// About how many bytes one index record takes on disk (the record and its path): rewriting
/// the index costs about this much per entry.
const STAT_ENTRY_BYTES: u64 = 160;
/// Opening, reading and closing a small file costs about as much as reading this many more
/// bytes: the least a stat entry spares.
const FILE_READ_BYTES: u64 = 16 * 1024;

/// True when an index of `len` entries with the stat entries `kept` is worth writing over one
/// holding `loaded`: reading again the files it learned (each counted as at least
/// [`FILE_READ_BYTES`]) would cost more than writing the index. On 10,000 files, that is about
/// 100 small files edited since the index was written. Until then each of them is simply hashed
/// again by the next scan, as is a file whose entry was dropped (edited or removed since): a
/// stale entry costs nothing where it is, a stat that no longer matches is a miss, and the next
/// write leaves it out. A rebuilt index (no stat data) learns every file.
fn stat_cache_pays<'a>(
    kept: impl Iterator<Item = (&'a TreePath, StatEntry)>,
    len: usize,
    loaded: &dyn StatLookup,
) -> bool {
    let learned: u64 = kept
        .filter(|(path, entry)| loaded.stat(path) != Some(*entry))
        .map(|(_, entry)| entry.size.max(FILE_READ_BYTES))
        .sum();
    learned > 0 && learned >= len as u64 * STAT_ENTRY_BYTES
}

/// An open working copy.
#[derive(Debug, Clone)]
pub struct WorkingCopy {
    root: PathBuf,
    state: StateFolder,
    config: WorkingCopyConfig,
    /// Why the index was rebuilt, if this process rebuilt it (see [`WorkingCopy::index`]).
    rebuilt: Arc<Mutex<Option<String>>>,
}

impl WorkingCopy {
    fn new(root: &FsPath, state: StateFolder, config: WorkingCopyConfig) -> Self {
        Self {
            root: root.to_path_buf(),
            state,
            config,
            rebuilt: Arc::default(),
        }
    }

    /// Makes `root` a working copy of `config`'s project, never synced.
    pub fn init(root: &FsPath, config: WorkingCopyConfig) -> Result<Self, ClientError> {
        if StateFolder::of(root).dir().exists() {
            return Err(ClientError::AlreadyAWorkingCopy {
                root: root.to_path_buf(),
            });
        }
        fs::create_dir_all(root).map_err(io_error("create folder", root))?;
        let state = StateFolder::create(root, &config)?;
        Ok(Self::new(root, state, config))
    }

    /// Opens the working copy whose root is exactly `root`.
    pub fn open(root: &FsPath) -> Result<Self, ClientError> {
        let state = StateFolder::of(root);
        if !state.exists() {
            return Err(ClientError::NotAWorkingCopy {
                start: root.to_path_buf(),
            });
        }
        let config = state.config()?;
        Ok(Self::new(root, state, config))
    }

    /// Opens the working copy holding `start`: `start` or its nearest ancestor with `.cairn/`.
    pub fn discover(start: &FsPath) -> Result<Self, ClientError> {
        let start = fs::canonicalize(start).map_err(io_error("open", start))?;
        let mut candidate = Some(start.as_path());
        while let Some(dir) = candidate {
            if StateFolder::of(dir).exists() {
                return Self::open(dir);
            }
            candidate = dir.parent();
        }
        Err(ClientError::NotAWorkingCopy { start })
    }

    pub fn root(&self) -> &FsPath {
        &self.root
    }

    pub fn config(&self) -> &WorkingCopyConfig {
        &self.config
    }

    /// The `.cairn/` folder and its files.
    pub fn state(&self) -> &StateFolder {
        &self.state
    }

    pub fn objects(&self) -> ObjectCache {
        self.state.objects()
    }

    /// The index, checked; a missing or damaged one is rebuilt (see `StateFolder::index`) and
    /// the reason kept for [`WorkingCopy::take_index_rebuilt`].
    pub fn index(&self) -> Result<Index, ClientError> {
        let loaded = timed("load index", || self.state.index())?;
        if let Some(why) = loaded.rebuilt
            && let Ok(mut rebuilt) = self.rebuilt.lock()
        {
            *rebuilt = Some(why);
        }
        Ok(loaded.index)
    }

    /// Why this process had to rebuild the index, once: the binary reports it in one line
    /// (the base came from the head record and the object cache, and every file was hashed
    /// again, so nothing was lost).
    pub fn take_index_rebuilt(&self) -> Option<String> {
        self.rebuilt
            .lock()
            .ok()
            .and_then(|mut rebuilt| rebuilt.take())
    }

    /// The base, decoded from `index`.
    pub fn base_of(&self, index: &Index) -> Result<Base, ClientError> {
        timed("decode base", || index.base()).map_err(|damage| ClientError::CorruptState {
            path: self.state.dir().join("index"),
            detail: damage.0,
        })
    }

    pub fn base(&self) -> Result<Base, ClientError> {
        self.base_of(&self.index()?)
    }

    /// Records a new base. The operations call this after a push commits (with the pushed
    /// tree) or, through [`WorkingCopy::apply`], after a pull. The index's stat data is kept.
    pub fn set_base(&self, base: &Base) -> Result<(), ClientError> {
        let index = self.index()?;
        let stats: Vec<(&str, StatEntry)> = index.stat_entries().collect();
        self.state.set_base(base, &stats)
    }

    /// Records a new base with the stat data of `snapshot`'s scan (a push's), made from
    /// `index` (read under the same lock). When the base is the snapshot's own tree (the push
    /// was not rebased onto other versions), the disk is still as the scan saw it, so the scan
    /// is recorded with its monitor token too, and the next command asks the monitor only for
    /// what changed since the push's scan instead of walking everything.
    pub fn set_base_after(
        &self,
        base: &Base,
        snapshot: &Snapshot,
        index: &Index,
    ) -> Result<(), ClientError> {
        let stats = snapshot.stats_to_keep(index);
        let scan = (base.root == snapshot.root && base.pending.is_empty()).then(|| ScanRecord {
            // The snapshot's listing became the base's (the push moved it there).
            listing: &base.listing,
            unsettled: &snapshot.scan.unsettled,
            has_renames: !snapshot.scan.disk_names.is_empty(),
            token: snapshot.token.as_ref(),
        });
        self.state.write_index(&IndexContents {
            base: BaseSource::New(base),
            stats: &stats,
            scan,
        })
    }

    /// The index a push of `snapshot` records when the server commits it unrebased, with the
    /// pushed tree as the new base, encoded but for its version from the scan in place (see
    /// `index::encode_pushed`): made while the push request is out, then sealed and written
    /// with `StateFolder::write_sealed_index`. It holds what [`WorkingCopy::set_base_after`]
    /// would write for that base.
    pub fn encode_pushed(&self, snapshot: &Snapshot, index: &Index) -> Unsealed {
        let stats = snapshot.stats_to_keep(index);
        timed("encode index", || {
            crate::stores::index::encode_pushed(
                snapshot.root,
                || snapshot.scan.entries(),
                snapshot.scan.entry_count(),
                &stats,
                &snapshot.scan.unsettled,
                !snapshot.scan.disk_names.is_empty(),
                snapshot.token.as_ref(),
            )
        })
    }

    /// Scans the working copy, storing new objects and recording the scan in the index.
    pub fn scan(&self) -> Result<Scan, ClientError> {
        let index = self.index()?;
        let scanned = self.scan_from(&index)?;
        self.record_scan(&index, &scanned, None)?;
        Ok(scanned.scan)
    }

    /// Asks the monitor what changed since the index's token, then scans accordingly.
    fn scan_from(&self, index: &Index) -> Result<Scanned, ClientError> {
        let clock = timed("file system clock", || self.state.file_system_clock());
        let changes = timed("ask monitor", || {
            monitor::changes_since(&self.root, index.token())
        });
        self.scan_changes(index, changes, clock)
    }

    /// The scan for what the monitor said (the seam the tests feed directly): with
    /// `Changes::Paths` and an index that recorded the whole last scan, only the folders
    /// holding the named paths are walked and everything else is taken from the index;
    /// otherwise everything is walked.
    fn scan_changes(
        &self,
        index: &Index,
        changes: Changes,
        clock: Mtime,
    ) -> Result<Scanned, ClientError> {
        let (token, paths) = match changes {
            Changes::Unavailable => (None, None),
            Changes::Everything { token } => (Some(token), None),
            Changes::Paths { token, paths } => (Some(token), Some(paths)),
        };
        if let Some(paths) = paths
            && let Some(targets) = scan::partial::folders_to_walk(&self.root, index, &paths)
            && let Some(scan) = timed("scan changed folders", || {
                scan::partial::scan_folders(&self.root, index, &self.objects(), &targets)
            })?
        {
            return Ok(Scanned {
                scan,
                clock,
                token,
                walked: Some(targets.paths),
            });
        }
        let scan = timed("scan", || scan(&self.root, index, &self.objects()))?;
        Ok(Scanned {
            scan,
            clock,
            token,
            walked: None,
        })
    }

    /// Writes the scan's stat data and token into the index when it is worth it. The index
    /// copies the base from `index`, so it is written only under the lock (`held`, or taken
    /// here) and only while the index on disk still has that base: a command that recorded a
    /// new base meanwhile is never undone by a stat write. When the lock is busy or the base
    /// moved, nothing is written: the stat data is a cache, and the next scan learns it again.
    fn record_scan(
        &self,
        index: &Index,
        scanned: &Scanned,
        held: Option<&WorkingCopyLock>,
    ) -> Result<(), ClientError> {
        if !scanned.worth_recording(index) {
            return Ok(());
        }
        let _taken = match held {
            Some(_) => None,
            // Never wait: a status that cannot record what it learned now lets the next
            // command learn it again, while a push waiting behind it would be slower.
            None => match self.state.try_lock(&self.root) {
                Ok(lock) => {
                    match self.state.read_index()? {
                        Ok(current) if current.same_base(index) => {}
                        _ => return Ok(()),
                    }
                    Some(lock)
                }
                Err(ClientError::Busy { .. }) => return Ok(()),
                Err(error) => return Err(error),
            },
        };
        let stats = scanned.stats_to_keep(index);
        timed("save index", || {
            self.state.write_index(&IndexContents {
                base: BaseSource::Kept(index),
                stats: &stats,
                scan: Some(ScanRecord {
                    listing: scanned.scan.listing(),
                    unsettled: &scanned.scan.unsettled,
                    has_renames: !scanned.scan.disk_names.is_empty(),
                    token: scanned.token.as_ref(),
                }),
            })
        })
    }

    /// Takes the working copy's lock, waiting a moment (`stores::lock::PATIENCE`) for a
    /// command that holds it briefly, then failing with `Busy`.
    pub fn lock(&self) -> Result<WorkingCopyLock, ClientError> {
        self.state.lock(&self.root)
    }

    /// The changes since the base.
    pub fn status(&self) -> Result<Status, ClientError> {
        let index = self.index()?;
        let scanned = self.scan_from(&index)?;
        self.record_scan(&index, &scanned, None)?;
        let changes = timed("compare", || {
            changes_against_index(&index, scanned.scan.listing(), &scanned.scan.unsettled)
        });
        let status = Status {
            base_version: index.version(),
            changes,
            pending: index.pending(),
            scan: scanned.scan,
        };
        free_in_background(index);
        Ok(status)
    }

    /// [`WorkingCopy::status`] for a given answer of the monitor, for tests of the partial walk
    /// (no monitor runs in them).
    #[doc(hidden)]
    pub fn status_with_changes(&self, changes: Changes) -> Result<Status, ClientError> {
        let index = self.index()?;
        let clock = self.state.file_system_clock();
        let scanned = self.scan_changes(&index, changes, clock)?;
        self.record_scan(&index, &scanned, None)?;
        let changes =
            changes_against_index(&index, scanned.scan.listing(), &scanned.scan.unsettled);
        Ok(Status {
            base_version: index.version(),
            changes,
            pending: index.pending(),
            scan: scanned.scan,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_open_and_refuse_twice() {
        let dir = tempfile::tempdir().unwrap();
        let config = WorkingCopyConfig::new("https://x.test", "p").unwrap();
        WorkingCopy::init(dir.path(), config.clone()).unwrap();
        let opened = WorkingCopy::open(dir.path()).unwrap();
        assert_eq!(opened.config(), &config);
        assert_eq!(opened.base().unwrap(), Base::never_synced());
        assert!(opened.take_index_rebuilt().is_none());
        assert!(matches!(
            WorkingCopy::init(dir.path(), config),
            Err(ClientError::AlreadyAWorkingCopy { .. })
        ));
        let nested = dir.path().join("a/b");
        fs::create_dir_all(&nested).unwrap();
        let found = WorkingCopy::discover(&nested).unwrap();
        assert_eq!(found.root(), fs::canonicalize(dir.path()).unwrap());
    }

    #[test]
    fn damaged_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = WorkingCopyConfig::new("https://x.test", "p").unwrap();
        let copy = WorkingCopy::init(dir.path(), config).unwrap();
        // A damaged index with nothing to rebuild it from.
        fs::write(dir.path().join(".cairn/index"), b"garbage").unwrap();
        fs::remove_file(dir.path().join(".cairn/head")).unwrap();
        let error = copy.base().unwrap_err();
        assert!(matches!(error, ClientError::CorruptState { .. }));
        assert!(error.to_string().contains("corrupted"));
        fs::write(dir.path().join(".cairn/config.toml"), b"server = 1").unwrap();
        assert!(matches!(
            WorkingCopy::open(dir.path()),
            Err(ClientError::CorruptState { .. })
        ));
    }

    #[test]
    fn a_stat_write_never_undoes_a_base_recorded_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let config = WorkingCopyConfig::new("https://x.test", "p").unwrap();
        let copy = WorkingCopy::init(dir.path(), config).unwrap();
        for name in ["a.json", "b.json", "c.json"] {
            fs::write(dir.path().join(name), name).unwrap();
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for name in ["a.json", "b.json", "c.json"] {
            let file = fs::File::options()
                .write(true)
                .open(dir.path().join(name))
                .unwrap();
            file.set_modified(old).unwrap();
        }
        let scan_now = |index: &Index| {
            let clock = copy.state.file_system_clock();
            copy.scan_changes(index, Changes::Unavailable, clock)
                .unwrap()
        };
        // A scan that learned every file is worth recording...
        let index = copy.index().unwrap();
        let scanned = scan_now(&index);
        assert!(scanned.worth_recording(&index));
        // ...but not over a base another command recorded since the index was read.
        let mut newer = Base::never_synced();
        newer.version = Some(5);
        copy.set_base(&newer).unwrap();
        copy.record_scan(&index, &scanned, None).unwrap();
        assert_eq!(copy.base().unwrap(), newer);
        assert_eq!(copy.index().unwrap().stat_entries().count(), 0);
        // Nor while another command holds the lock.
        let index = copy.index().unwrap();
        let scanned = scan_now(&index);
        let held = copy.lock().unwrap();
        copy.record_scan(&index, &scanned, None).unwrap();
        assert_eq!(copy.index().unwrap().stat_entries().count(), 0);
        drop(held);
        // Otherwise it is recorded, over the same base.
        copy.record_scan(&index, &scanned, None).unwrap();
        assert_eq!(copy.index().unwrap().stat_entries().count(), 3);
        assert_eq!(copy.base().unwrap(), newer);
    }

    #[test]
    fn the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let config = WorkingCopyConfig::new("https://x.test", "p").unwrap();
        let copy = WorkingCopy::init(dir.path(), config).unwrap();
        let held = copy.lock().unwrap();
        assert!(matches!(copy.lock(), Err(ClientError::Busy { .. })));
        drop(held);
        copy.lock().unwrap();
    }

    #[test]
    fn a_lock_held_briefly_is_waited_for_and_try_lock_never_waits() {
        let dir = tempfile::tempdir().unwrap();
        let config = WorkingCopyConfig::new("https://x.test", "p").unwrap();
        let copy = WorkingCopy::init(dir.path(), config).unwrap();
        let held = copy.lock().unwrap();
        assert!(matches!(
            copy.state.try_lock(dir.path()),
            Err(ClientError::Busy { .. })
        ));
        // Let go well within the patience: the next command gets the lock, no `Busy`.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(crate::stores::lock::PATIENCE / 5);
            drop(held);
        });
        copy.lock().unwrap();
        releaser.join().unwrap();
    }

    #[test]
    fn not_a_working_copy() {
        let dir = tempfile::tempdir().unwrap();
        let error = WorkingCopy::open(dir.path()).unwrap_err();
        assert!(matches!(error, ClientError::NotAWorkingCopy { .. }));
    }
}
