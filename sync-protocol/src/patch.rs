//! Compact changes: a new version sent as the paths that changed, not as its dir objects.
//!
//! A small edit changes one file, but a tree of dirs names every entry by a 32-byte id, so the
//! dirs on the path from the root to that file are most of what a push or pull of it would
//! carry (about 5 KB for one file three levels deep in folders of 30 to 40 entries). Both ends
//! already hold the base tree, so they can rebuild those dirs themselves. A stream may
//! therefore carry *change records* ([`Record`]) instead of dirs:
//!
//! - [`Record::Remove`]: nothing is at the path any more;
//! - [`Record::Entry`]: the path is this entry (a file whose chunk or file object is stored or
//!   in the same stream, or an empty dir);
//! - [`Record::Content`]: the path is a one-chunk file given inline, its zstd frame compressed
//!   with the base's chunk at the same path as a dictionary when `delta` is set, so a one-line
//!   edit costs tens of bytes instead of the whole file.
//!
//! The receiver applies the records to its base in the flat view (a [`Listing`]: every file and
//! every empty dir), builds the dirs, and checks that the root it gets is the root the sender
//! named; any difference (a lost record, a different base) is an error, never a wrong tree.
//! A client with the base listing at hand uses `diff::apply_changes` and `tree::build_dirs`; a
//! server, which keeps trees rather than listings, uses [`TreePatch`]: it reads only the base
//! dirs on the changed paths (one batch per level, like `diff::DiffWalk`) and rebuilds exactly
//! those, with the same result (a property test checks it against `build_dirs`).
//!
//! Records are in the object stream between ordinary frames (see `stream` for their bytes), in
//! strictly increasing path order, at most one per path.
//!
//! [`Listing`]: crate::tree::Listing

use std::collections::{BTreeMap, HashMap};

use crate::compress::{CompressError, compress_with_dictionary, decompress_with_dictionary};
use crate::diff::Change;
use crate::id::ObjectId;
use crate::limits::MAX_PATH_DEPTH;
use crate::name::Name;
use crate::object::{Dir, DirEntry, EntryKind, Object, ObjectError, ObjectKind};
use crate::tree::{FileRef, Path, empty_dir_id};

/// Stream tag of [`Record::Remove`].
pub const TAG_REMOVE: u8 = 4;
/// Stream tag of [`Record::Entry`].
pub const TAG_ENTRY: u8 = 5;
/// Stream tag of [`Record::Content`].
pub const TAG_CONTENT: u8 = 6;

/// One changed path.
#[derive(Clone, PartialEq, Eq)]
pub enum Record {
    Remove {
        path: Path,
    },
    Entry {
        path: Path,
        entry: FileRef,
    },
    Content {
        path: Path,
        /// `File` or `Executable`.
        kind: EntryKind,
        /// Compressed with the base's chunk at `path` as a raw-content dictionary.
        delta: bool,
        /// One zstd frame of the chunk's canonical encoding.
        zstd: Vec<u8>,
    },
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Remove { path } => f.debug_struct("Remove").field("path", path).finish(),
            Self::Entry { path, entry } => f
                .debug_struct("Entry")
                .field("path", path)
                .field("entry", entry)
                .finish(),
            Self::Content {
                path, kind, delta, ..
            } => f
                .debug_struct("Content")
                .field("path", path)
                .field("kind", kind)
                .field("delta", delta)
                .finish_non_exhaustive(),
        }
    }
}

impl Record {
    pub fn path(&self) -> &Path {
        match self {
            Self::Remove { path } | Self::Entry { path, .. } | Self::Content { path, .. } => path,
        }
    }

    pub fn tag(&self) -> u8 {
        match self {
            Self::Remove { .. } => TAG_REMOVE,
            Self::Entry { .. } => TAG_ENTRY,
            Self::Content { .. } => TAG_CONTENT,
        }
    }
}

/// Why a record is not valid on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("{path}: an entry of kind {kind:?} cannot name a {target:?} of {size} bytes")]
    BadEntry {
        path: String,
        kind: EntryKind,
        target: ObjectKind,
        size: u64,
    },
    #[error("{path}: a dir entry in a change record must be the empty dir")]
    NonEmptyDir { path: String },
    #[error("{path}: inline content must be a file or an executable file")]
    ContentKind { path: String },
}

/// Checks what a record can be checked for without any tree: entry kinds, targets and sizes
/// (as a dir entry would be checked), and that a dir entry is the empty dir (a listing names
/// only empty dirs; others are implied by their contents).
pub fn check_record(record: &Record) -> Result<(), RecordError> {
    match record {
        Record::Remove { .. } => Ok(()),
        Record::Entry { path, entry } => {
            let name = Name::new(path.file_name()).map_err(|_| RecordError::BadEntry {
                path: path.to_string(),
                kind: entry.kind,
                target: entry.target,
                size: entry.size,
            })?;
            let dir_entry = dir_entry(name, entry);
            Dir::new(vec![dir_entry]).map_err(|_| RecordError::BadEntry {
                path: path.to_string(),
                kind: entry.kind,
                target: entry.target,
                size: entry.size,
            })?;
            if entry.kind == EntryKind::Dir && entry.id != empty_dir_id() {
                return Err(RecordError::NonEmptyDir {
                    path: path.to_string(),
                });
            }
            Ok(())
        }
        Record::Content { path, kind, .. } => {
            if kind.is_file() {
                Ok(())
            } else {
                Err(RecordError::ContentKind {
                    path: path.to_string(),
                })
            }
        }
    }
}

fn dir_entry(name: Name, entry: &FileRef) -> DirEntry {
    DirEntry {
        name,
        kind: entry.kind,
        target: entry.target,
        size: entry.size,
        id: entry.id,
    }
}

/// The zstd frame of a [`Record::Content`]: the chunk's canonical encoding, compressed with
/// `dictionary` (the base chunk's canonical encoding) when given.
pub fn encode_content(chunk_encoding: &[u8], dictionary: Option<&[u8]>) -> Vec<u8> {
    compress_with_dictionary(chunk_encoding, dictionary.unwrap_or_default())
}

/// A decoded [`Record::Content`]: the entry it gives its path, and the chunk it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedContent {
    /// The file's entry: the record's kind, the chunk's size and id.
    pub entry: FileRef,
    pub chunk: Object,
    /// The chunk's canonical encoding.
    pub encoded: Vec<u8>,
}

/// Decodes a [`Record::Content`] frame of a file of `kind`: it must decompress (with
/// `dictionary` when the record is a delta) to a canonical chunk.
pub fn decode_content(
    kind: EntryKind,
    zstd: &[u8],
    dictionary: Option<&[u8]>,
) -> Result<DecodedContent, CompressError> {
    let encoded = decompress_with_dictionary(
        zstd,
        dictionary.unwrap_or_default(),
        crate::compress::max_encoded_len(ObjectKind::Chunk),
    )?;
    let id = ObjectId::of_encoded(&encoded);
    let chunk = Object::decode(&encoded).map_err(|error| CompressError::Invalid { id, error })?;
    let Object::Chunk(bytes) = &chunk else {
        return Err(CompressError::KindMismatch {
            id,
            expected: ObjectKind::Chunk.as_str(),
            actual: chunk.kind().as_str(),
        });
    };
    let entry = FileRef {
        kind,
        target: ObjectKind::Chunk,
        size: bytes.len() as u64,
        id,
    };
    Ok(DecodedContent {
        entry,
        chunk,
        encoded,
    })
}

/// What change records stand for: the entry (or removal, `None`) at each path, and the
/// chunks of their inline content.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecodedRecords {
    pub changes: BTreeMap<Path, Option<FileRef>>,
    pub chunks: Vec<DecodedContent>,
}

/// Why records could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeRecordsError {
    #[error("{path}: a delta against the base, but the base has no one-chunk file there")]
    NoDictionary { path: String },
    #[error("{path}: inline content: {error}")]
    Content { path: String, error: CompressError },
}

/// Decodes records into the changes they make: the one reading of records that both a server
/// applying a push and a client applying a pull use. `dictionary(path)` gives the canonical
/// encoding of the one-chunk file the base has at `path`, the dictionary of a delta record;
/// `None` when there is none.
pub fn decode_records(
    records: &[Record],
    mut dictionary: impl FnMut(&Path) -> Option<Vec<u8>>,
) -> Result<DecodedRecords, DecodeRecordsError> {
    let mut decoded = DecodedRecords::default();
    for record in records {
        match record {
            Record::Remove { path } => {
                decoded.changes.insert(path.clone(), None);
            }
            Record::Entry { path, entry } => {
                decoded.changes.insert(path.clone(), Some(*entry));
            }
            Record::Content {
                path,
                kind,
                delta,
                zstd,
            } => {
                let base = if *delta {
                    Some(
                        dictionary(path).ok_or_else(|| DecodeRecordsError::NoDictionary {
                            path: path.to_string(),
                        })?,
                    )
                } else {
                    None
                };
                let content = decode_content(*kind, zstd, base.as_deref()).map_err(|error| {
                    DecodeRecordsError::Content {
                        path: path.to_string(),
                        error,
                    }
                })?;
                decoded.changes.insert(path.clone(), Some(content.entry));
                decoded.chunks.push(content);
            }
        }
    }
    Ok(decoded)
}

/// The records of a diff, one per path: what each changed path is in the new tree. `content`
/// is asked only about one-chunk files (entries whose target is a chunk) and may turn them into
/// inline content (return `None` to keep the entry).
pub fn records_of_changes(
    changes: &[Change],
    mut content: impl FnMut(&Path, &FileRef, Option<&FileRef>) -> Option<(bool, Vec<u8>)>,
) -> Vec<Record> {
    // A path may be removed and added (a file that became an empty dir); the last word counts.
    let mut last: BTreeMap<&Path, (Option<&FileRef>, Option<&FileRef>)> = BTreeMap::new();
    for change in changes {
        let slot = last.entry(change.path()).or_insert((change.before(), None));
        slot.1 = change.after();
    }
    last.into_iter()
        .map(|(path, (before, after))| match after {
            None => Record::Remove { path: path.clone() },
            Some(entry) => match (entry.target == ObjectKind::Chunk)
                .then(|| content(path, entry, before))
                .flatten()
            {
                Some((delta, zstd)) => Record::Content {
                    path: path.clone(),
                    kind: entry.kind,
                    delta,
                    zstd,
                },
                _ => Record::Entry {
                    path: path.clone(),
                    entry: *entry,
                },
            },
        })
        .collect()
}

/// A small push as change records: what the client sends in place of its new dirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsPush {
    /// One record per changed path; new one-chunk files the server lacks go inline.
    pub records: Vec<Record>,
    /// The planned objects that must still travel as frames (neither dirs nor inlined), in
    /// plan order.
    pub objects: Vec<ObjectId>,
}

/// The sending half of a records push: `changes` (base listing to new listing) as records,
/// with every new one-chunk file that is in `planned` (the objects the server lacks) inline,
/// as a delta against the base's one-chunk file at the same path when there was one.
/// `encoding(entry)` gives the canonical encoding of a one-chunk file's chunk (`None` when it
/// is not at hand: the entry is then named, not inlined); `is_dir(id)` says which planned
/// objects are dirs, which the receiver rebuilds. `None` when records are not the small form:
/// no change, or more than [`crate::wire::MAX_RECORDS`].
pub fn records_push(
    changes: &[Change],
    planned: &[ObjectId],
    mut is_dir: impl FnMut(&ObjectId) -> bool,
    mut encoding: impl FnMut(&FileRef) -> Option<Vec<u8>>,
) -> Option<RecordsPush> {
    if changes.is_empty() || changes.len() > crate::wire::MAX_RECORDS {
        return None;
    }
    let lacking: std::collections::HashSet<&ObjectId> = planned.iter().collect();
    let mut inlined = std::collections::HashSet::new();
    let records = records_of_changes(changes, |_, new, old| {
        // Only content the server lacks goes inline; a chunk it has is named by id.
        if !lacking.contains(&new.id) {
            return None;
        }
        let content = encoding(new)?;
        let dictionary = old
            .filter(|old| old.target == ObjectKind::Chunk)
            .and_then(&mut encoding);
        inlined.insert(new.id);
        Some((
            dictionary.is_some(),
            encode_content(&content, dictionary.as_deref()),
        ))
    });
    let objects = planned
        .iter()
        .filter(|id| !inlined.contains(*id) && !is_dir(id))
        .copied()
        .collect();
    Some(RecordsPush { records, objects })
}

/// Why a [`TreePatch`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    #[error(
        "change records must be in strictly increasing path order: {path} comes after {previous}"
    )]
    Unordered { previous: String, path: String },
    #[error("{path} is given a file or an empty dir while the new tree has entries under it")]
    PathConflict { path: String },
    #[error("the new dir at {path:?} is invalid: {error}")]
    InvalidDir { path: String, error: ObjectError },
    #[error("dir {id} was provided but not wanted")]
    NotWanted { id: ObjectId },
    #[error("the walk is not done: dirs are still wanted")]
    NotDone,
    #[error("the records name {given} paths, the walk was over {walked}")]
    DifferentPaths { given: usize, walked: usize },
    #[error("{path} is deeper than {MAX_PATH_DEPTH} names")]
    TooDeep { path: String },
}

/// What a [`TreePatch`] built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patched {
    pub root: ObjectId,
    /// Every new dir, children first, the root last: a valid upload order.
    pub dirs: Vec<(ObjectId, Object)>,
    /// Base dirs read.
    pub dirs_read: usize,
}

/// Rebuilds the dirs of a base tree changed at some paths, reading only the base dirs on those
/// paths. Batch-driven like `diff::DiffWalk`: [`TreePatch::wants`] names the base dirs needed
/// next (one level of the tree per batch), [`TreePatch::provide`] gives them, then
/// [`TreePatch::base_entry`] answers what the base had at a changed path (for delta content)
/// and [`TreePatch::finish`] builds the new dirs.
#[derive(Debug)]
pub struct TreePatch {
    paths: Vec<Path>,
    /// Every dir path on the way to a changed path ("" is the root), with its base dir once
    /// known; `None` when the base has no dir there.
    dirs: HashMap<String, Option<Dir>>,
    /// Dir paths of the level being read, by the id wanted for them.
    waiting: HashMap<ObjectId, Vec<String>>,
    wants: Vec<ObjectId>,
    /// Deepest level with touched dirs, and the next level to ask for.
    levels: Vec<Vec<String>>,
    next_level: usize,
    dirs_read: usize,
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

fn name_of(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

impl TreePatch {
    /// Starts a patch of the tree under `base_root` at `paths`, which must be strictly
    /// increasing.
    pub fn new(base_root: ObjectId, paths: Vec<Path>) -> Result<Self, PatchError> {
        for pair in paths.windows(2) {
            if pair[0] >= pair[1] {
                return Err(PatchError::Unordered {
                    previous: pair[0].to_string(),
                    path: pair[1].to_string(),
                });
            }
        }
        // Every strict ancestor of a changed path, by depth (the root "" at depth 0).
        let mut levels: Vec<Vec<String>> = vec![vec![String::new()]];
        let mut seen: std::collections::HashSet<String> =
            std::collections::HashSet::from([String::new()]);
        for path in &paths {
            let mut prefix = String::new();
            let components: Vec<&str> = path.components().collect();
            if components.len() > MAX_PATH_DEPTH {
                return Err(PatchError::TooDeep {
                    path: path.to_string(),
                });
            }
            for (depth, component) in components[..components.len() - 1].iter().enumerate() {
                prefix = join(&prefix, component);
                if seen.insert(prefix.clone()) {
                    if levels.len() <= depth + 1 {
                        levels.resize_with(depth + 2, Vec::new);
                    }
                    levels[depth + 1].push(prefix.clone());
                }
            }
        }
        let mut patch = Self {
            paths,
            dirs: HashMap::new(),
            waiting: HashMap::new(),
            wants: Vec::new(),
            levels,
            next_level: 0,
            dirs_read: 0,
        };
        patch.set(String::new(), base_root);
        patch.advance();
        Ok(patch)
    }

    /// Records that the base has the dir `id` at `path`, asking for it unless it is empty.
    fn set(&mut self, path: String, id: ObjectId) {
        if id == empty_dir_id() {
            self.dirs.insert(path, Some(Dir::empty()));
        } else {
            self.waiting.entry(id).or_default().push(path);
        }
    }

    /// Once a level is complete, finds the next level's base dirs in their parents.
    fn advance(&mut self) {
        while self.waiting.is_empty() {
            self.next_level += 1;
            let Some(level) = self.levels.get(self.next_level).cloned() else {
                self.wants.clear();
                return;
            };
            for path in level {
                let child = match self.dirs.get(parent_of(&path)) {
                    Some(Some(parent)) => parent
                        .entry(name_of(&path))
                        .filter(|entry| entry.kind == EntryKind::Dir)
                        .map(|entry| entry.id),
                    _ => None,
                };
                match child {
                    Some(id) => self.set(path, id),
                    None => {
                        self.dirs.insert(path, None);
                    }
                }
            }
        }
        self.wants = self.waiting.keys().copied().collect();
        self.wants.sort();
    }

    /// The base dirs needed next; empty when the walk is done.
    pub fn wants(&self) -> &[ObjectId] {
        &self.wants
    }

    pub fn is_done(&self) -> bool {
        self.wants.is_empty()
    }

    /// Gives one wanted base dir.
    pub fn provide(&mut self, id: ObjectId, dir: Dir) -> Result<(), PatchError> {
        let Some(paths) = self.waiting.remove(&id) else {
            return Err(PatchError::NotWanted { id });
        };
        self.dirs_read += 1;
        for path in paths {
            self.dirs.insert(path, Some(dir.clone()));
        }
        if self.waiting.is_empty() {
            self.advance();
        }
        Ok(())
    }

    /// What the base tree has at a changed `path` (once the walk is done): a file's or an
    /// empty dir's entry, or a dir's.
    pub fn base_entry(&self, path: &Path) -> Option<FileRef> {
        let text = path.as_str();
        let parent = self.dirs.get(parent_of(text))?.as_ref()?;
        parent.entry(name_of(text)).map(|entry| FileRef {
            kind: entry.kind,
            target: entry.target,
            size: entry.size,
            id: entry.id,
        })
    }

    /// Builds the new dirs from the base dirs read and `changes`: for each path given to
    /// [`TreePatch::new`], its new entry, or `None` when nothing is there any more.
    pub fn finish(self, changes: &BTreeMap<Path, Option<FileRef>>) -> Result<Patched, PatchError> {
        if !self.is_done() {
            return Err(PatchError::NotDone);
        }
        if changes.len() != self.paths.len() || !self.paths.iter().all(|p| changes.contains_key(p))
        {
            return Err(PatchError::DifferentPaths {
                given: changes.len(),
                walked: self.paths.len(),
            });
        }
        // Changed paths by their dir.
        let mut direct: HashMap<&str, Vec<(&str, Option<&FileRef>)>> = HashMap::new();
        for (path, entry) in changes {
            let text = path.as_str();
            direct
                .entry(parent_of(text))
                .or_default()
                .push((name_of(text), entry.as_ref()));
        }
        // Touched child dirs by their dir.
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for level in self.levels.iter().skip(1) {
            for path in level {
                children.entry(parent_of(path)).or_default().push(path);
            }
        }
        // New dirs, deepest first; `built` holds each touched dir's new entries count and id.
        let mut built: HashMap<&str, (usize, ObjectId)> = HashMap::new();
        let mut dirs: Vec<(ObjectId, Object)> = Vec::new();
        let mut emitted: std::collections::HashSet<ObjectId> = std::collections::HashSet::new();
        for level in self.levels.iter().rev() {
            for path in level {
                let mut entries: BTreeMap<String, DirEntry> = match self.dirs.get(path.as_str()) {
                    Some(Some(base)) => base
                        .entries()
                        .iter()
                        .map(|entry| (entry.name.as_str().to_owned(), entry.clone()))
                        .collect(),
                    _ => BTreeMap::new(),
                };
                let mut fixed: std::collections::HashSet<&str> = std::collections::HashSet::new();
                for child in children.get(path.as_str()).into_iter().flatten() {
                    let name = name_of(child);
                    let (count, id) = built[child];
                    if count > 0 {
                        let name_value =
                            Name::new(name).map_err(|error| PatchError::InvalidDir {
                                path: path.clone(),
                                error: ObjectError::BadName { index: 0, error },
                            })?;
                        entries.insert(name.to_owned(), DirEntry::dir(name_value, id));
                        fixed.insert(name);
                    } else {
                        entries.remove(name);
                    }
                }
                for (name, entry) in direct.get(path.as_str()).into_iter().flatten() {
                    if fixed.contains(name) {
                        if entry.is_some() {
                            return Err(PatchError::PathConflict {
                                path: join(path, name),
                            });
                        }
                        // A removed file or empty dir that now has contents: the dir stays.
                        continue;
                    }
                    match entry {
                        Some(entry) => {
                            let name_value =
                                Name::new(name).map_err(|error| PatchError::InvalidDir {
                                    path: path.clone(),
                                    error: ObjectError::BadName { index: 0, error },
                                })?;
                            entries.insert((*name).to_owned(), dir_entry(name_value, entry));
                        }
                        None => {
                            entries.remove(*name);
                        }
                    }
                }
                let count = entries.len();
                let dir = Dir::new(entries.into_values().collect()).map_err(|error| {
                    PatchError::InvalidDir {
                        path: path.clone(),
                        error,
                    }
                })?;
                let object = Object::Dir(dir);
                let id = object.id();
                if emitted.insert(id) {
                    dirs.push((id, object));
                }
                built.insert(path.as_str(), (count, id));
            }
        }
        let root = built[""].1;
        Ok(Patched {
            root,
            dirs,
            dirs_read: self.dirs_read,
        })
    }
}

/// Runs a whole [`TreePatch`] over an [`ObjectSource`](crate::tree::ObjectSource).
pub fn patch_tree(
    source: &impl crate::tree::ObjectSource,
    base_root: ObjectId,
    changes: &BTreeMap<Path, Option<FileRef>>,
) -> Result<Patched, PatchTreeError> {
    let mut patch = TreePatch::new(base_root, changes.keys().cloned().collect())?;
    while !patch.is_done() {
        for id in patch.wants().to_vec() {
            let dir = source.dir(&id).ok_or(PatchTreeError::Missing { id })?;
            patch.provide(id, dir)?;
        }
    }
    Ok(patch.finish(changes)?)
}

/// What a client gets from a records answer: the new tree's root and dirs (children first) and
/// the chunks of inline content, to store before the tree is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRecords {
    pub patched: Patched,
    pub chunks: Vec<DecodedContent>,
}

/// Why [`apply_records`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyRecordsError {
    #[error(transparent)]
    Decode(#[from] DecodeRecordsError),
    #[error(transparent)]
    Patch(#[from] PatchTreeError),
    #[error("applied to the base, the records give root {actual}, not the root {expected} named")]
    WrongRoot {
        expected: ObjectId,
        actual: ObjectId,
    },
}

/// Applies change records to the tree under `base_root`, read from `source`, and checks the
/// result is `root`: the receiving half of a records pull, and of a records push where the
/// base is at hand. `dictionary(path)` gives the canonical encoding of the base's one-chunk
/// file at `path`, for delta contents.
pub fn apply_records(
    source: &impl crate::tree::ObjectSource,
    base_root: ObjectId,
    records: &[Record],
    root: ObjectId,
    dictionary: impl FnMut(&Path) -> Option<Vec<u8>>,
) -> Result<AppliedRecords, ApplyRecordsError> {
    let decoded = decode_records(records, dictionary)?;
    let patched = patch_tree(source, base_root, &decoded.changes)?;
    if patched.root != root {
        return Err(ApplyRecordsError::WrongRoot {
            expected: root,
            actual: patched.root,
        });
    }
    Ok(AppliedRecords {
        patched,
        chunks: decoded.chunks,
    })
}

/// Why [`patch_tree`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchTreeError {
    #[error("base dir {id} is not available")]
    Missing { id: ObjectId },
    #[error(transparent)]
    Patch(#[from] PatchError),
}
