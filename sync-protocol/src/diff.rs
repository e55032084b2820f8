//! Tree diff: which paths changed between two roots, and which objects the new root needs that
//! the old one does not have, reading only the subtrees that changed.
//!
//! Two dirs with the same id hold the same tree, so the walk never descends into an entry whose
//! id is equal on both sides: its cost grows with the change, not with the project. It is an
//! explicit state machine, [`DiffWalk`], that says which objects it needs next as a batch
//! ([`DiffWalk::wants`]) and is fed them ([`DiffWalk::provide`]); a server fetches each batch from
//! its object store in one request. [`diff`] drives it over an [`ObjectSource`].
//!
//! The walk runs in two phases. First it walks dirs breadth-first, one level per batch. Then, so
//! that the object list is complete, it reads the file objects of new multi-chunk files in one
//! more batch, together with the file object that was at the same path before: a chunk of the old
//! file (the common case of an edit inside a large file) is not new. This is the choice the design
//! left open; it costs one extra batch only when such a file changed.
//!
//! The empty dir's contents are known without reading it, so no walk ever asks for it; it is
//! still an object like any other and is listed in [`Diff::new_objects`] when the new tree uses
//! it and the old one did not (an empty old *root*, the empty project, does not count: nobody
//! uploads the empty project).
//!
//! "Not reachable from the old root" is decided without reading the old tree whole: an object is
//! left out of [`Diff::new_objects`] when the walk saw it on the old side (an old dir it read, an
//! entry of one, a chunk of an old file object it read). So moves within the changed part of the
//! tree send nothing twice; a copy of content that sits in an unchanged old subtree is sent again,
//! which costs bytes but never correctness (object writes are idempotent).

use std::collections::{HashMap, HashSet};

use crate::id::ObjectId;
use crate::object::{Dir, DirEntry, EntryKind, FileObject, Object, ObjectKind};
use crate::tree::{FileRef, Listing, ObjectSource, Path, PathError, empty_dir_id};

/// The most ids one [`DiffWalk::wants`] batch holds; a larger level is asked over several batches.
pub const MAX_WANTS_PER_BATCH: usize = 1024;

/// One changed path of a listing. A file that became a dir (or the reverse) is a removal of one
/// and additions of the other's paths, as it is in the listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added {
        path: Path,
        new: FileRef,
    },
    Removed {
        path: Path,
        old: FileRef,
    },
    /// A file whose contents or kind (file, executable) changed.
    Modified {
        path: Path,
        old: FileRef,
        new: FileRef,
    },
}

impl Change {
    pub fn path(&self) -> &Path {
        match self {
            Self::Added { path, .. } | Self::Removed { path, .. } | Self::Modified { path, .. } => {
                path
            }
        }
    }

    /// The entry before the change, if the path existed.
    pub fn before(&self) -> Option<&FileRef> {
        match self {
            Self::Removed { old, .. } | Self::Modified { old, .. } => Some(old),
            Self::Added { .. } => None,
        }
    }

    /// The entry after the change, if the path still exists.
    pub fn after(&self) -> Option<&FileRef> {
        match self {
            Self::Added { new, .. } | Self::Modified { new, .. } => Some(new),
            Self::Removed { .. } => None,
        }
    }
}

/// The result of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    /// Changed paths, sorted as a [`Listing`] sorts them.
    pub changes: Vec<Change>,
    /// Objects reachable from the new root that the old side does not have (see the module doc
    /// for how exact that is), children first: a valid upload order against a store that holds
    /// the old root.
    pub new_objects: Vec<ObjectId>,
    /// Distinct dirs read, over both sides.
    pub dirs_read: usize,
    /// Distinct file objects read, over both sides.
    pub files_read: usize,
}

/// Which tree an object was wanted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Old,
    New,
    Both,
}

/// Why a diff failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    #[error("object {id} is missing ({side:?} side of the diff)")]
    Missing { id: ObjectId, side: Side },
    #[error("object {id} was not asked for in this batch")]
    NotWanted { id: ObjectId },
    #[error("object {id} is a {actual:?}, the diff needed a {expected:?}")]
    WrongKind {
        id: ObjectId,
        expected: ObjectKind,
        actual: ObjectKind,
    },
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("the diff is not finished: it still wants objects")]
    Unfinished,
}

/// A dir position being compared: the dir (if any) at `path` on each side.
#[derive(Debug)]
struct Node {
    /// `None` for the root.
    path: Option<Path>,
    /// 0 for the root.
    depth: usize,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Dirs,
    Files,
    Done,
    Failed,
}

/// The diff as a state machine. Feed it every id of [`DiffWalk::wants`] (in any order, each
/// once) until [`DiffWalk::is_done`], then take the result with [`DiffWalk::finish`]. After an
/// error the walk is over.
#[derive(Debug)]
pub struct DiffWalk {
    phase: Phase,
    empty_dir: ObjectId,
    /// Nodes of the current level, processed once their dirs are all here.
    nodes: Vec<Node>,
    /// Ids of the current batch not yet provided.
    pending: Vec<ObjectId>,
    /// Each pending id's index in `pending` and the side that wants it (for
    /// [`DiffWalk::missing`]), so that providing is constant time however large the level.
    slots: HashMap<ObjectId, (usize, Side)>,
    dirs: HashMap<ObjectId, Dir>,
    files: HashMap<ObjectId, FileObject>,
    /// New multi-chunk files to resolve: (new file object, the old one at the same path).
    file_pairs: Vec<(ObjectId, Option<ObjectId>)>,
    changes: Vec<Change>,
    /// Every id the walk has seen reachable from the old root.
    old_seen: HashSet<ObjectId>,
    /// Objects of the new side met in changed subtrees: deepest depth met, discovery order.
    candidates: HashMap<ObjectId, (usize, usize)>,
    dirs_read: usize,
    files_read: usize,
}

impl DiffWalk {
    /// Starts a diff from `old_root` to `new_root`. Equal roots are done at once, reading nothing.
    pub fn new(old_root: ObjectId, new_root: ObjectId) -> Self {
        let empty_dir = empty_dir_id();
        let mut walk = Self {
            phase: Phase::Dirs,
            empty_dir,
            nodes: Vec::new(),
            pending: Vec::new(),
            slots: HashMap::new(),
            dirs: HashMap::from([(empty_dir, Dir::empty())]),
            files: HashMap::new(),
            file_pairs: Vec::new(),
            changes: Vec::new(),
            old_seen: HashSet::new(),
            candidates: HashMap::new(),
            dirs_read: 0,
            files_read: 0,
        };
        if old_root == new_root {
            walk.phase = Phase::Done;
            return walk;
        }
        walk.nodes.push(Node {
            path: None,
            depth: 0,
            old: Some(old_root),
            new: Some(new_root),
        });
        walk.collect_dir_wants();
        // Both roots differ, so at most one is the (already known) empty dir and the batch is
        // never empty here: nothing is processed before the first provide.
        walk
    }

    /// The next ids to provide: at most [`MAX_WANTS_PER_BATCH`], all of the kind
    /// [`DiffWalk::wanted_kind`]. Empty when done.
    pub fn wants(&self) -> &[ObjectId] {
        &self.pending[..self.pending.len().min(MAX_WANTS_PER_BATCH)]
    }

    /// The kind of every id in the current batch: dirs, then (in the last phase) file objects.
    pub fn wanted_kind(&self) -> Option<ObjectKind> {
        match self.phase {
            Phase::Dirs => Some(ObjectKind::Dir),
            Phase::Files => Some(ObjectKind::File),
            Phase::Done | Phase::Failed => None,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Failed)
    }

    /// Distinct dirs read so far.
    pub fn dirs_read(&self) -> usize {
        self.dirs_read
    }

    /// Distinct file objects read so far.
    pub fn files_read(&self) -> usize {
        self.files_read
    }

    /// The error to return when the source does not have a wanted object.
    pub fn missing(&self, id: &ObjectId) -> DiffError {
        let side = self.slots.get(id).map_or(Side::Both, |(_, side)| *side);
        DiffError::Missing { id: *id, side }
    }

    /// Feeds one wanted object. The caller has verified that `object` hashes to `id`.
    pub fn provide(&mut self, id: ObjectId, object: Object) -> Result<(), DiffError> {
        let Some(&(position, _)) = self.slots.get(&id) else {
            return Err(DiffError::NotWanted { id });
        };
        match (self.phase, object) {
            (Phase::Dirs, Object::Dir(dir)) => {
                self.dirs.insert(id, dir);
                self.dirs_read += 1;
            }
            (Phase::Files, Object::File(file)) => {
                self.files.insert(id, file);
                self.files_read += 1;
            }
            (phase, object) => {
                let expected = if phase == Phase::Files {
                    ObjectKind::File
                } else {
                    ObjectKind::Dir
                };
                return Err(DiffError::WrongKind {
                    id,
                    expected,
                    actual: object.kind(),
                });
            }
        }
        self.slots.remove(&id);
        self.pending.swap_remove(position);
        if let Some(moved) = self.pending.get(position)
            && let Some(slot) = self.slots.get_mut(moved)
        {
            slot.0 = position;
        }
        if self.pending.is_empty()
            && let Err(error) = self.advance()
        {
            self.phase = Phase::Failed;
            self.pending.clear();
            self.slots.clear();
            return Err(error);
        }
        Ok(())
    }

    /// The result, once [`DiffWalk::is_done`].
    pub fn finish(self) -> Result<Diff, DiffError> {
        if self.phase != Phase::Done {
            return Err(DiffError::Unfinished);
        }
        let mut new_objects: Vec<(ObjectId, usize, usize)> = self
            .candidates
            .into_iter()
            .filter(|(id, _)| !self.old_seen.contains(id))
            .map(|(id, (depth, order))| (id, depth, order))
            .collect();
        // Deepest first: an object met at depth d has its children at depth d + 1 or deeper, so
        // ordering by each object's deepest position puts every child before every parent.
        new_objects.sort_by_key(|&(_, depth, order)| (std::cmp::Reverse(depth), order));
        let mut changes = self.changes;
        sort_changes(&mut changes);
        Ok(Diff {
            changes,
            new_objects: new_objects.into_iter().map(|(id, _, _)| id).collect(),
            dirs_read: self.dirs_read,
            files_read: self.files_read,
        })
    }

    /// Processes levels until a batch needs objects from outside, or the walk is done.
    fn advance(&mut self) -> Result<(), DiffError> {
        while self.pending.is_empty() {
            match self.phase {
                Phase::Dirs if !self.nodes.is_empty() => {
                    let nodes = std::mem::take(&mut self.nodes);
                    for node in &nodes {
                        self.process(node)?;
                    }
                    self.collect_dir_wants();
                }
                Phase::Dirs => {
                    self.phase = Phase::Files;
                    self.collect_file_wants();
                }
                Phase::Files => {
                    self.resolve_files();
                    self.phase = Phase::Done;
                }
                Phase::Done | Phase::Failed => break,
            }
        }
        Ok(())
    }

    fn want(&mut self, id: ObjectId, side: Side) {
        match self.slots.get_mut(&id) {
            Some((_, existing)) if *existing != side => *existing = Side::Both,
            Some(_) => {}
            None => {
                self.slots.insert(id, (self.pending.len(), side));
                self.pending.push(id);
            }
        }
    }

    fn collect_dir_wants(&mut self) {
        let mut wanted = Vec::new();
        for node in &self.nodes {
            for (id, side) in [(node.old, Side::Old), (node.new, Side::New)] {
                if let Some(id) = id
                    && !self.dirs.contains_key(&id)
                {
                    wanted.push((id, side));
                }
            }
        }
        for (id, side) in wanted {
            self.want(id, side);
        }
    }

    fn collect_file_wants(&mut self) {
        let pairs = std::mem::take(&mut self.file_pairs);
        for (new, old) in &pairs {
            if self.old_seen.contains(new) {
                continue;
            }
            self.want(*new, Side::New);
            if let Some(old) = old {
                self.want(*old, Side::Old);
            }
        }
        self.file_pairs = pairs;
    }

    fn resolve_files(&mut self) {
        for (_, old) in &self.file_pairs {
            if let Some(file) = old.and_then(|old| self.files.get(&old)) {
                self.old_seen
                    .extend(file.chunks().iter().map(|chunk| chunk.id));
            }
        }
        let pairs = std::mem::take(&mut self.file_pairs);
        for (new, _) in pairs {
            let Some(file) = self.files.get(&new) else {
                continue;
            };
            let depth = self.candidates.get(&new).map_or(0, |(depth, _)| *depth) + 1;
            let chunks: Vec<ObjectId> = file.chunks().iter().map(|chunk| chunk.id).collect();
            for chunk in chunks {
                self.candidate(chunk, depth);
            }
        }
    }

    fn candidate(&mut self, id: ObjectId, depth: usize) {
        let order = self.candidates.len();
        let entry = self.candidates.entry(id).or_insert((depth, order));
        entry.0 = entry.0.max(depth);
    }

    fn process(&mut self, node: &Node) -> Result<(), DiffError> {
        let empty = Dir::empty();
        let old_dir = node
            .old
            .map(|id| self.dirs.get(&id).unwrap_or(&empty).clone());
        let new_dir = node
            .new
            .map(|id| self.dirs.get(&id).unwrap_or(&empty).clone());
        if let (Some(id), Some(dir)) = (node.old, &old_dir) {
            // An empty old root says nothing about the store: the empty project is no upload.
            // Anywhere else, the old tree referencing the empty dir means it was stored.
            if node.path.is_some() || id != self.empty_dir {
                self.old_seen.insert(id);
            }
            self.old_seen
                .extend(dir.entries().iter().map(|entry| entry.id));
        }
        if let Some(id) = node.new {
            self.candidate(id, node.depth);
        }
        // An empty dir is a path of its own in a listing; a non-empty one is implied.
        if let Some(path) = &node.path {
            let old_empty = node.old == Some(self.empty_dir);
            let new_empty = node.new == Some(self.empty_dir);
            if old_empty && !new_empty {
                self.changes.push(Change::Removed {
                    path: path.clone(),
                    old: FileRef::empty_dir(),
                });
            } else if new_empty && !old_empty {
                self.changes.push(Change::Added {
                    path: path.clone(),
                    new: FileRef::empty_dir(),
                });
            }
        }
        let old_entries = old_dir.as_ref().map_or(&[][..], Dir::entries);
        let new_entries = new_dir.as_ref().map_or(&[][..], Dir::entries);
        for (old, new) in merge_join(old_entries, new_entries) {
            if old == new {
                continue;
            }
            let name = old.or(new).map(|entry| &entry.name);
            let Some(name) = name else { continue };
            let path = Path::join(node.path.as_ref(), name)?;
            let depth = node.depth + 1;
            let old_dir_id = old.filter(|e| e.kind == EntryKind::Dir).map(|e| e.id);
            let new_dir_id = new.filter(|e| e.kind == EntryKind::Dir).map(|e| e.id);
            let old_file = old.filter(|e| e.kind.is_file()).map(file_ref);
            let new_file = new.filter(|e| e.kind.is_file()).map(file_ref);
            match (old_file, new_file) {
                (Some(old), Some(new)) => self.changes.push(Change::Modified {
                    path: path.clone(),
                    old,
                    new,
                }),
                (Some(old), None) => self.changes.push(Change::Removed {
                    path: path.clone(),
                    old,
                }),
                (None, Some(new)) => self.changes.push(Change::Added {
                    path: path.clone(),
                    new,
                }),
                (None, None) => {}
            }
            if let Some(new) = new_file {
                self.candidate(new.id, depth);
                if new.target == ObjectKind::File {
                    let old_object = old_file
                        .filter(|old| old.target == ObjectKind::File && old.id != new.id)
                        .map(|old| old.id);
                    self.file_pairs.push((new.id, old_object));
                }
            }
            if old_dir_id.is_some() || new_dir_id.is_some() {
                self.nodes.push(Node {
                    path: Some(path),
                    depth,
                    old: old_dir_id,
                    new: new_dir_id,
                });
            }
        }
        Ok(())
    }
}

fn file_ref(entry: &DirEntry) -> FileRef {
    FileRef {
        kind: entry.kind,
        target: entry.target,
        size: entry.size,
        id: entry.id,
    }
}

/// Pairs the entries of two sorted dirs by name.
fn merge_join<'a>(
    old: &'a [DirEntry],
    new: &'a [DirEntry],
) -> Vec<(Option<&'a DirEntry>, Option<&'a DirEntry>)> {
    let mut pairs = Vec::with_capacity(old.len().max(new.len()));
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) => a.name.as_str().as_bytes().cmp(b.name.as_str().as_bytes()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, _) => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                pairs.push((old.get(i), None));
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                pairs.push((None, new.get(j)));
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                pairs.push((old.get(i), new.get(j)));
                i += 1;
                j += 1;
            }
        }
    }
    pairs
}

/// Diffs two roots over an object source, by driving a [`DiffWalk`].
pub fn diff(
    source: &impl ObjectSource,
    old_root: &ObjectId,
    new_root: &ObjectId,
) -> Result<Diff, DiffError> {
    let mut walk = DiffWalk::new(*old_root, *new_root);
    while !walk.is_done() {
        let kind = walk.wanted_kind();
        for id in walk.wants().to_vec() {
            let object = match kind {
                Some(ObjectKind::File) => source.file(&id).map(Object::File),
                _ => source.dir(&id).map(Object::Dir),
            };
            let object = object.ok_or_else(|| walk.missing(&id))?;
            walk.provide(id, object)?;
        }
    }
    walk.finish()
}

/// The simple reference diff: compares two full listings. What [`diff`] must agree with.
pub fn diff_listings(old: &Listing, new: &Listing) -> Vec<Change> {
    let mut changes = Vec::new();
    for (path, old_ref) in old {
        match new.get(path) {
            None => changes.push(Change::Removed {
                path: path.clone(),
                old: *old_ref,
            }),
            Some(new_ref) if new_ref != old_ref => {
                if old_ref.is_dir() || new_ref.is_dir() {
                    // An empty dir and a file at one path are different kinds of thing.
                    changes.push(Change::Removed {
                        path: path.clone(),
                        old: *old_ref,
                    });
                    changes.push(Change::Added {
                        path: path.clone(),
                        new: *new_ref,
                    });
                } else {
                    changes.push(Change::Modified {
                        path: path.clone(),
                        old: *old_ref,
                        new: *new_ref,
                    });
                }
            }
            Some(_) => {}
        }
    }
    for (path, new_ref) in new {
        if !old.contains_key(path) {
            changes.push(Change::Added {
                path: path.clone(),
                new: *new_ref,
            });
        }
    }
    sort_changes(&mut changes);
    changes
}

/// Listing order; at one path, a removal comes before the addition that replaces it.
fn sort_changes(changes: &mut [Change]) {
    changes.sort_by(|a, b| {
        let rank = |change: &Change| match change {
            Change::Removed { .. } => 0,
            Change::Modified { .. } => 1,
            Change::Added { .. } => 2,
        };
        a.path().cmp(b.path()).then(rank(a).cmp(&rank(b)))
    });
}

/// Applies changes to a listing: what a pull does to a working copy, in the flat view.
pub fn apply_changes(listing: &mut Listing, changes: &[Change]) {
    for change in changes {
        if let Change::Removed { path, .. } = change {
            listing.remove(path);
        }
    }
    for change in changes {
        if let Some(new) = change.after() {
            listing.insert(change.path().clone(), *new);
        }
    }
}
