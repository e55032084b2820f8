//! Trees as flat listings, and the conversion between listings and dir objects.
//!
//! A [`Listing`] is a project version seen as a map from [`Path`] to [`FileRef`]: one entry per
//! file and one per *empty* dir (a non-empty dir is implied by its contents), so a listing and a
//! root dir describe the same tree one to one. Listings are the simple reference that the fast,
//! subtree-skipping algorithms (diff, planning) are tested against, and the shape merge works on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::id::ObjectId;
use crate::limits::{CHUNK_AVG_SIZE, CHUNK_MAX_SIZE, CHUNK_MIN_SIZE, MAX_PATH_DEPTH, MAX_PATH_LEN};
use crate::name::{Name, NameError};
use crate::object::{
    Dir, DirEntry, EntryKind, FileChunk, FileObject, Object, ObjectError, ObjectKind, chunk_id,
};

/// A project-relative path: 1 to [`MAX_PATH_DEPTH`] valid names joined by `/`, at most
/// [`MAX_PATH_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(String);

/// Why a path is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    #[error("path {path:?} is {len} bytes, more than the limit of {MAX_PATH_LEN}")]
    TooLong { path: String, len: usize },
    #[error("path {path:?} is {depth} levels deep, more than the limit of {MAX_PATH_DEPTH}")]
    TooDeep { path: String, depth: usize },
    #[error("path {path:?} has an invalid component: {error}")]
    BadComponent { path: String, error: NameError },
}

impl Path {
    /// Checks a `/`-separated path. Components must already be in NFC.
    pub fn new(text: &str) -> Result<Self, PathError> {
        if text.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong {
                path: truncated(text),
                len: text.len(),
            });
        }
        let mut depth = 0;
        for component in text.split('/') {
            depth += 1;
            crate::name::validate(component).map_err(|error| PathError::BadComponent {
                path: text.to_owned(),
                error,
            })?;
        }
        if depth > MAX_PATH_DEPTH {
            return Err(PathError::TooDeep {
                path: truncated(text),
                depth,
            });
        }
        Ok(Self(text.to_owned()))
    }

    /// `parent/name`, checked against the path limits. Both parts are valid already, so only
    /// the length and depth are checked (a scan joins every name it meets).
    pub fn join(parent: Option<&Path>, name: &Name) -> Result<Self, PathError> {
        let Some(parent) = parent else {
            return Self::new(name.as_str());
        };
        let mut text = String::with_capacity(parent.0.len() + 1 + name.as_str().len());
        text.push_str(&parent.0);
        text.push('/');
        text.push_str(name.as_str());
        if text.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong {
                path: truncated(&text),
                len: text.len(),
            });
        }
        let depth = parent.depth() + 1;
        if depth > MAX_PATH_DEPTH {
            return Err(PathError::TooDeep {
                path: truncated(&text),
                depth,
            });
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Number of components.
    pub fn depth(&self) -> usize {
        // Components are never empty: one more than the separators.
        self.0.bytes().filter(|&byte| byte == b'/').count() + 1
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Everything before the last component, if any.
    pub fn parent(&self) -> Option<Path> {
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| Self(parent.to_owned()))
    }

    /// The sibling of this path called `name`.
    pub fn with_file_name(&self, name: &Name) -> Result<Self, PathError> {
        Self::join(self.parent().as_ref(), name)
    }
}

fn truncated(text: &str) -> String {
    text.chars().take(64).collect::<String>() + "…"
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// What a listing says about one path: the dir entry it would have, without its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileRef {
    pub kind: EntryKind,
    pub target: ObjectKind,
    pub size: u64,
    pub id: ObjectId,
}

impl FileRef {
    /// The entry of an empty dir.
    pub fn empty_dir() -> Self {
        Self {
            kind: EntryKind::Dir,
            target: ObjectKind::Dir,
            size: 0,
            id: crate::object::Object::Dir(Dir::empty()).id(),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
}

/// A whole tree as a flat map: every file and every empty dir.
pub type Listing = BTreeMap<Path, FileRef>;

/// The id of the empty dir: the root of the empty project.
pub fn empty_dir_id() -> ObjectId {
    Object::Dir(Dir::empty()).id()
}

/// Why a tree could not be built, flattened or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("{first} and {second} differ only by case; case-insensitive disks cannot hold both")]
    CaseCollision { first: Path, second: Path },
    #[error("{path} is a file or an empty dir, but the listing also has {descendant} under it")]
    PathConflict { path: Path, descendant: Path },
    #[error("{path} is listed twice")]
    Duplicate { path: Path },
    #[error(
        "{path} is listed as a dir whose id {id} is not the empty dir; a listing names only empty dirs"
    )]
    DirNotEmpty { path: Path, id: ObjectId },
    #[error("the dir at {} is invalid: {error}", display_location(.path.as_ref()))]
    BadDir {
        path: Option<Path>,
        error: ObjectError,
    },
    #[error("object {id} (at {}) is missing from the object source", display_location(.path.as_ref()))]
    Missing { id: ObjectId, path: Option<Path> },
}

fn display_location(path: Option<&Path>) -> &str {
    path.map_or("the root", Path::as_str)
}

/// Where trees are read from: an in-memory map in tests, a local object cache in the client, a
/// cache over S3 in the server. Implementations do whatever I/O they need; the algorithms in this
/// crate only ever ask for one object by id. The batch-oriented drivers (the server's) use the
/// explicit walkers such as [`crate::diff::DiffWalk`] instead.
pub trait ObjectSource {
    /// The dir `id`, or `None` if the source does not hold it or `id` is not a dir.
    fn dir(&self, id: &ObjectId) -> Option<Dir>;
    /// The file object `id`, or `None` if the source does not hold it or `id` is not a file
    /// object.
    fn file(&self, id: &ObjectId) -> Option<FileObject>;
}

impl<S: ObjectSource + ?Sized> ObjectSource for &S {
    fn dir(&self, id: &ObjectId) -> Option<Dir> {
        (**self).dir(id)
    }

    fn file(&self, id: &ObjectId) -> Option<FileObject> {
        (**self).file(id)
    }
}

/// Objects in a map: the object source of tests and the simulation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryObjects {
    objects: HashMap<ObjectId, Object>,
}

impl MemoryObjects {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `object` under its id, which the caller vouches for (as every builder here
    /// returns). Returns whether it was new.
    pub fn insert(&mut self, id: ObjectId, object: Object) -> bool {
        self.objects.insert(id, object).is_none()
    }

    /// Stores many objects; returns how many were new.
    pub fn extend(&mut self, objects: impl IntoIterator<Item = (ObjectId, Object)>) -> usize {
        let mut added = 0;
        for (id, object) in objects {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.objects.entry(id) {
                slot.insert(object);
                added += 1;
            }
        }
        added
    }

    pub fn get(&self, id: &ObjectId) -> Option<&Object> {
        self.objects.get(id)
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.objects.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &ObjectId> {
        self.objects.keys()
    }
}

impl ObjectSource for MemoryObjects {
    fn dir(&self, id: &ObjectId) -> Option<Dir> {
        match self.objects.get(id) {
            Some(Object::Dir(dir)) => Some(dir.clone()),
            _ => None,
        }
    }

    fn file(&self, id: &ObjectId) -> Option<FileObject> {
        match self.objects.get(id) {
            Some(Object::File(file)) => Some(file.clone()),
            _ => None,
        }
    }
}

/// The ids an object refers to: a dir's entries, a file object's chunks (in order, repeats
/// kept), nothing for a chunk.
pub fn references(object: &Object) -> Vec<ObjectId> {
    typed_references(object)
        .map(|reference| reference.id)
        .collect()
}

/// One reference of an object to another, with what it says the other is: an entry's target
/// kind and size, a file object's chunk and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference {
    pub id: ObjectId,
    pub kind: ObjectKind,
    /// The content size the referenced object must have (see [`Object::content_size`]); 0 for
    /// a dir, whose size is not part of the reference.
    pub size: u64,
}

impl Reference {
    /// True when an object of `kind` and content `size` is what this reference says.
    pub fn is_met_by(&self, kind: ObjectKind, size: u64) -> bool {
        kind == self.kind && (kind == ObjectKind::Dir || size == self.size)
    }
}

/// Every reference of `object`, in order: a dir's entries, a file object's chunks (repeats
/// kept), nothing for a chunk. The push acceptor checks each against the object it names.
pub fn typed_references(object: &Object) -> impl Iterator<Item = Reference> + '_ {
    let (chunks, entries) = match object {
        Object::Chunk(_) => (&[][..], &[][..]),
        Object::File(file) => (file.chunks(), &[][..]),
        Object::Dir(dir) => (&[][..], dir.entries()),
    };
    let chunks = chunks.iter().map(|chunk| Reference {
        id: chunk.id,
        kind: ObjectKind::Chunk,
        size: u64::from(chunk.len),
    });
    let entries = entries.iter().map(|entry| Reference {
        id: entry.id,
        kind: entry.target,
        size: entry.size,
    });
    chunks.chain(entries)
}

/// Where reference number `position` of `object` is, for error messages: `entry "name"` or
/// `chunk 3`.
pub fn describe_reference(object: &Object, position: usize) -> String {
    match object {
        Object::Dir(dir) => match dir.entries().get(position) {
            Some(entry) => format!("entry {:?}", entry.name.as_str()),
            None => format!("entry {position}"),
        },
        _ => format!("chunk {position}"),
    }
}

/// The dir objects of a listing, built bottom-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltTree {
    /// The root dir's id.
    pub root: ObjectId,
    /// Every distinct dir of the tree, children first and the root last: a valid upload order.
    pub dirs: Vec<(ObjectId, Object)>,
}

/// A whole project encoded from file contents: chunks, file objects and dirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedTree {
    pub root: ObjectId,
    /// The listing the tree was built from, with every file's entry filled in.
    pub listing: Listing,
    /// Every distinct object of the tree, children first and the root last.
    pub objects: Vec<(ObjectId, Object)>,
}

/// One level of a listing being turned into dirs.
#[derive(Default)]
struct DirNode {
    /// By name; `BTreeMap` over the name's bytes is the canonical entry order.
    children: BTreeMap<String, Child>,
    /// Fold key to the name holding it, to catch case-only clashes.
    folded: HashMap<String, String>,
}

enum Child {
    Leaf(Path, FileRef),
    Dir(Path, DirNode),
}

/// Builds every dir object of `listing`, children first, and the root id.
///
/// A listing names each file and each *empty* dir; a dir with entries is implied by them. The
/// checks are those of a dir object, reported with the path: two names of one dir may not differ
/// only by case, a file or empty dir has nothing under it, and entries must be valid. The empty
/// listing is the empty project, whose root is the empty dir.
pub fn build_dirs(listing: &Listing) -> Result<BuiltTree, TreeError> {
    let empty = empty_dir_id();
    let mut root = DirNode::default();
    for (path, file_ref) in listing {
        if file_ref.is_dir() && file_ref.id != empty {
            return Err(TreeError::DirNotEmpty {
                path: path.clone(),
                id: file_ref.id,
            });
        }
        insert(&mut root, path, *file_ref)?;
    }
    let mut dirs = Vec::new();
    let mut seen = HashSet::new();
    let root_id = emit(root, None, &mut dirs, &mut seen)?;
    Ok(BuiltTree {
        root: root_id,
        dirs,
    })
}

fn insert(root: &mut DirNode, path: &Path, file_ref: FileRef) -> Result<(), TreeError> {
    let components: Vec<&str> = path.components().collect();
    let mut node = root;
    let mut prefix = String::new();
    for (index, component) in components.iter().enumerate() {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(component);
        let last = index + 1 == components.len();
        let fold = crate::name::fold_key(component);
        match node.folded.get(&fold) {
            Some(existing) if existing != component => {
                let mut first = prefix[..prefix.len() - component.len()].to_owned();
                first.push_str(existing);
                return Err(TreeError::CaseCollision {
                    first: Path::new(&first)?,
                    second: Path::new(&prefix)?,
                });
            }
            Some(_) => {}
            None => {
                node.folded.insert(fold, (*component).to_owned());
            }
        }
        let here = Path::new(&prefix)?;
        if last {
            match node.children.get(*component) {
                None => {
                    node.children
                        .insert((*component).to_owned(), Child::Leaf(here, file_ref));
                    return Ok(());
                }
                // A listing is a map, so the only way to meet an existing child at the last
                // component is as a dir holding other paths.
                Some(Child::Dir(_, dir)) => {
                    return Err(TreeError::PathConflict {
                        path: here,
                        descendant: first_descendant(dir),
                    });
                }
                Some(Child::Leaf(..)) => {
                    return Err(TreeError::PathConflict {
                        path: here.clone(),
                        descendant: here,
                    });
                }
            }
        }
        let child = node
            .children
            .entry((*component).to_owned())
            .or_insert_with(|| Child::Dir(here, DirNode::default()));
        node = match child {
            Child::Dir(_, dir) => dir,
            Child::Leaf(leaf_path, _) => {
                return Err(TreeError::PathConflict {
                    path: leaf_path.clone(),
                    descendant: path.clone(),
                });
            }
        };
    }
    Ok(())
}

fn first_descendant(dir: &DirNode) -> Path {
    match dir.children.values().next() {
        Some(Child::Leaf(path, _)) => path.clone(),
        Some(Child::Dir(_, inner)) => first_descendant(inner),
        // Dirs are only created on the way to a leaf, so they are never empty.
        None => unreachable!("an implied dir always has a child"),
    }
}

/// Post-order: a dir's children are emitted before it, each distinct dir once.
fn emit(
    node: DirNode,
    path: Option<&Path>,
    out: &mut Vec<(ObjectId, Object)>,
    seen: &mut HashSet<ObjectId>,
) -> Result<ObjectId, TreeError> {
    let mut entries = Vec::with_capacity(node.children.len());
    for (component, child) in node.children {
        // Components come from valid paths, so this only restates that they are names.
        let name = Name::new(&component).map_err(|error| PathError::BadComponent {
            path: component.clone(),
            error,
        })?;
        let entry = match child {
            Child::Leaf(_, file_ref) if file_ref.is_dir() => {
                // An empty dir is an object of the tree like any other.
                let empty = Object::Dir(Dir::empty());
                if seen.insert(file_ref.id) {
                    out.push((file_ref.id, empty));
                }
                DirEntry::dir(name, file_ref.id)
            }
            Child::Leaf(_, file_ref) => DirEntry {
                name,
                kind: file_ref.kind,
                target: file_ref.target,
                size: file_ref.size,
                id: file_ref.id,
            },
            Child::Dir(child_path, dir) => {
                let id = emit(dir, Some(&child_path), out, seen)?;
                DirEntry::dir(name, id)
            }
        };
        entries.push(entry);
    }
    let dir = Dir::new(entries).map_err(|error| TreeError::BadDir {
        path: path.cloned(),
        error,
    })?;
    let object = Object::Dir(dir);
    let id = object.id();
    if seen.insert(id) {
        out.push((id, object));
    }
    Ok(id)
}

/// Encodes a whole project from file contents: every file through `encode_file`, then the dirs.
///
/// `encode_file` turns a file's bytes into its entry and its objects (chunks, and a file object
/// when there is more than one chunk), children first; the entry's kind is overwritten by the
/// kind given here. The real encoder is [`crate::chunking::encode_file`] (content-defined
/// chunks; it returns frames, so an adapter decodes them, as `tests/simulation.rs` does);
/// [`encode_file_fixed`] is a dependency-free stand-in.
/// An entry of kind [`EntryKind::Dir`] names a dir (its contents are ignored); it stays in the
/// listing only if no other path lies under it, as a listing names only empty dirs.
pub fn build_tree<C, F>(
    entries: impl IntoIterator<Item = (Path, EntryKind, C)>,
    encode_file: F,
) -> Result<EncodedTree, TreeError>
where
    C: AsRef<[u8]>,
    F: Fn(&[u8]) -> (FileRef, Vec<(ObjectId, Object)>),
{
    let mut listing = Listing::new();
    let mut objects = Vec::new();
    let mut seen = HashSet::new();
    let mut dirs = Vec::new();
    for (path, kind, contents) in entries {
        if kind == EntryKind::Dir {
            dirs.push(path);
            continue;
        }
        let (mut file_ref, file_objects) = encode_file(contents.as_ref());
        file_ref.kind = kind;
        for (id, object) in file_objects {
            if seen.insert(id) {
                objects.push((id, object));
            }
        }
        if listing.contains_key(&path) {
            return Err(TreeError::Duplicate { path });
        }
        listing.insert(path, file_ref);
    }
    for path in dirs {
        if has_descendant(&listing, &path) {
            continue;
        }
        match listing.get(&path) {
            Some(existing) if !existing.is_dir() => {
                return Err(TreeError::Duplicate { path });
            }
            _ => {
                listing.insert(path, FileRef::empty_dir());
            }
        }
    }
    // An empty dir listed before a file was found under it is dropped here.
    let redundant: Vec<Path> = listing
        .iter()
        .filter(|(path, file_ref)| file_ref.is_dir() && has_descendant(&listing, path))
        .map(|(path, _)| path.clone())
        .collect();
    for path in redundant {
        listing.remove(&path);
    }
    let built = build_dirs(&listing)?;
    for (id, object) in built.dirs {
        if seen.insert(id) {
            objects.push((id, object));
        }
    }
    Ok(EncodedTree {
        root: built.root,
        listing,
        objects,
    })
}

/// Whether `listing` has a path strictly under `dir`. Paths under `dir` all start with `dir/`,
/// so the first key from `dir/` on is one of them if any is: one lookup, however many siblings
/// share `dir`'s name as a prefix.
pub fn has_descendant(listing: &Listing, dir: &Path) -> bool {
    first_key_under(listing, dir).is_some()
}

/// The first key of `map` strictly under `dir`, if any: one lookup, as [`has_descendant`].
pub fn first_key_under<'a, V>(map: &'a BTreeMap<Path, V>, dir: &Path) -> Option<&'a Path> {
    let start = Path(format!("{}/", dir.0));
    map.range(start..)
        .next()
        .map(|(next, _)| next)
        .filter(|next| is_under(next, dir))
}

/// Whether `path` lies strictly under `dir`.
pub fn is_under(path: &Path, dir: &Path) -> bool {
    path.as_str()
        .strip_prefix(dir.as_str())
        .is_some_and(|rest| rest.starts_with('/'))
}

/// A stand-in file encoder until content-defined chunking lands: fixed pieces of
/// [`CHUNK_AVG_SIZE`] bytes, which respects every chunk rule (each piece but the last is at least
/// [`CHUNK_MIN_SIZE`], none is over [`CHUNK_MAX_SIZE`]). A file of at most one piece is one
/// chunk. Returns the file's entry (kind [`EntryKind::File`]) and its objects, children first.
pub fn encode_file_fixed(contents: &[u8]) -> (FileRef, Vec<(ObjectId, Object)>) {
    const PIECE: usize = CHUNK_AVG_SIZE as usize;
    const _: () = assert!(PIECE >= CHUNK_MIN_SIZE as usize && PIECE <= CHUNK_MAX_SIZE as usize);
    let size = contents.len() as u64;
    if contents.len() <= PIECE {
        let id = chunk_id(contents);
        let file_ref = FileRef {
            kind: EntryKind::File,
            target: ObjectKind::Chunk,
            size,
            id,
        };
        return (file_ref, vec![(id, Object::Chunk(contents.to_vec()))]);
    }
    let mut objects = Vec::new();
    let mut chunks = Vec::new();
    for piece in contents.chunks(PIECE) {
        let id = chunk_id(piece);
        chunks.push(FileChunk {
            id,
            len: piece.len() as u32,
        });
        if !objects.iter().any(|(seen, _)| *seen == id) {
            objects.push((id, Object::Chunk(piece.to_vec())));
        }
    }
    // Pieces are within the chunk rules by construction; only a file past MAX_FILE_SIZE fails,
    // and no caller holds one in memory.
    let file = FileObject::new(chunks).expect("fixed pieces satisfy the file object rules");
    let object = Object::File(file);
    let id = object.id();
    objects.push((id, object));
    let file_ref = FileRef {
        kind: EntryKind::File,
        target: ObjectKind::File,
        size,
        id,
    };
    (file_ref, objects)
}

/// Reads the whole tree under `root` back into a listing. The empty dir is never read from
/// `source`: its contents are known.
pub fn flatten(source: &impl ObjectSource, root: &ObjectId) -> Result<Listing, TreeError> {
    let mut listing = Listing::new();
    let dir = read_dir(source, root).ok_or(TreeError::Missing {
        id: *root,
        path: None,
    })?;
    flatten_into(source, &dir, None, &mut listing)?;
    Ok(listing)
}

/// Reads a dir, except the empty dir, whose contents every peer knows.
fn read_dir(source: &impl ObjectSource, id: &ObjectId) -> Option<Dir> {
    if *id == empty_dir_id() {
        Some(Dir::empty())
    } else {
        source.dir(id)
    }
}

fn flatten_into(
    source: &impl ObjectSource,
    dir: &Dir,
    parent: Option<&Path>,
    listing: &mut Listing,
) -> Result<(), TreeError> {
    for entry in dir.entries() {
        let path = Path::join(parent, &entry.name)?;
        if entry.kind == EntryKind::Dir {
            let child = read_dir(source, &entry.id).ok_or_else(|| TreeError::Missing {
                id: entry.id,
                path: Some(path.clone()),
            })?;
            if child.entries().is_empty() {
                listing.insert(path, FileRef::empty_dir());
            } else {
                flatten_into(source, &child, Some(&path), listing)?;
            }
        } else {
            listing.insert(
                path,
                FileRef {
                    kind: entry.kind,
                    target: entry.target,
                    size: entry.size,
                    id: entry.id,
                },
            );
        }
    }
    Ok(())
}
