//! The server half of a push, sans I/O: [`PushAcceptor`] takes the verified items of an upload
//! and decides, step by step, what to read, what to store and whether the push may commit.
//!
//! The server's handlers only drive it: each [`Step`] names what the acceptor needs from the
//! store (stored objects to read, or the kind and size of stored objects) or what to do next
//! (CPU work, storing layers, committing). The simulation test drives the same machine over an
//! in-memory store, so what is tested is what runs.
//!
//! # The checks, in order
//!
//! 1. **While receiving**: every frame arrives verified by the stream decoder (hash, canonical
//!    form, limits, names). Each reference of an object (a dir entry, a file object's chunk) to
//!    an object earlier in the upload is checked against it: kind and size. References to
//!    objects outside the upload are kept as claims. Change records are kept for step 2; in an
//!    upload of objects only they are refused.
//! 2. **Change records** (a push that sends them in place of its dirs): the base's dirs along the
//!    changed paths are read ([`crate::patch::TreePatch`]), delta contents decoded against the
//!    base's chunk at the same path, the new dirs built and their root compared with the root
//!    the push names. The rebuilt objects join the upload, checked as in step 1.
//! 3. **The new tree's paths** (push and commit): a walk from the base root to the new root over
//!    changed dirs only ([`crate::diff::DiffWalk`]) checks every added path against the format's
//!    depth and length limits, and that the root is a dir. Stored dirs it reads are known good:
//!    their entries were checked when they were stored.
//! 4. **Every reference out of the upload**: each claim about an object outside the upload is
//!    checked against what the store holds (kind and size), unless a stored dir read in step 2
//!    or 3 already names that object with the same kind and size. An object that is neither in
//!    the upload nor stored is `missing-object`; one of another kind or size is
//!    `entry-mismatch`, naming the referring object.
//! 5. **Store**: the upload in layers, leaves first; each layer durable before the next, so the
//!    store's closure invariant (an object is stored only after everything it references)
//!    holds at every instant. Then the caller commits.
//!
//! Nothing is stored when any check fails.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use bytes::Bytes;

use crate::compress::{CompressError, compress_object};
use crate::diff::{DiffError, DiffWalk, Side};
use crate::id::ObjectId;
use crate::object::{Dir, Object, ObjectKind};
use crate::patch::{DecodeRecordsError, PatchError, Record, TreePatch, decode_records};
use crate::stream::{Item, StreamError};
use crate::tree::{PathError, Reference, describe_reference, empty_dir_id, typed_references};

/// What the store knows of an object: its kind and content size (a chunk's length, a file's
/// total size, 0 for a dir).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectInfo {
    pub kind: ObjectKind,
    pub size: u64,
}

impl ObjectInfo {
    pub fn of(object: &Object) -> Self {
        Self {
            kind: object.kind(),
            size: object.content_size(),
        }
    }
}

/// What the acceptor needs next.
#[derive(Debug)]
pub enum Step {
    /// Read these stored objects of the project and give each to [`PushAcceptor::provide`]
    /// (`None` when it is not stored).
    Read(Vec<ObjectId>),
    /// Tell the kind and size of these stored objects with [`PushAcceptor::provide_info`]
    /// (`None` when it is not stored).
    Stat(Vec<ObjectId>),
    /// Call [`PushAcceptor::compute`]: CPU work (decompressing, hashing, building dirs) that an
    /// async driver runs off its event loop.
    Compute,
    /// Store these objects, then ask for the next step. They come leaves first, in layers
    /// (an object's layer is above every layer holding an object it references): a store that
    /// makes objects visible one by one must make each layer durable before the next; one that
    /// writes them all at once (a pack, indexed once it is durable) may take them in one go.
    Store(Vec<Vec<ToStore>>),
    /// Everything is checked and stored: the caller may commit.
    Done(Accepted),
}

/// One object to store: its id, its kind and content size (for an index), and its zstd frame as
/// received or built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToStore {
    pub id: ObjectId,
    pub info: ObjectInfo,
    pub frame: Bytes,
}

/// What an accepted upload stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Distinct objects stored (sent, or rebuilt from change records).
    pub objects: usize,
    /// Their compressed bytes.
    pub bytes: u64,
}

/// Why a push or upload is refused. Each maps to one problem code
/// (`impl From<&Rejection> for wire::Problem`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The stream holds something the route does not take (a change record in an upload).
    Stream(Box<StreamError>),
    /// A reference says another kind or size than the object it names has.
    EntryMismatch(Box<Mismatch>),
    /// Referenced objects that are neither in the upload nor stored, in the order first met.
    Missing(Vec<ObjectId>),
    /// The root the push names is neither in the upload nor stored.
    RootMissing(ObjectId),
    /// The root the push names is not a dir.
    RootNotDir(ObjectId),
    /// The new tree has a path past the format's limits.
    Path(PathError),
    /// The change records do not fit the base.
    Records(String),
    /// Inline content of a change record is not a valid chunk frame.
    Content {
        path: String,
        error: Box<CompressError>,
    },
    /// The store does not hold what a stored version needs: the server's fault, not the
    /// client's.
    Integrity(String),
}

/// A reference that does not match the object it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The referring dir or file object.
    pub referrer: ObjectId,
    pub referrer_kind: ObjectKind,
    /// Which of its references: `entry "name"` or `chunk 3`.
    pub place: String,
    pub reference: Reference,
    pub actual: ObjectInfo,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} {} says {} of {} bytes, the object {} is a {} of {} bytes",
            self.place,
            self.referrer_kind.as_str(),
            self.referrer,
            self.reference.kind.as_str(),
            self.reference.size,
            self.reference.id,
            self.actual.kind.as_str(),
            self.actual.size
        )
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stream(error) => error.fmt(f),
            Self::EntryMismatch(mismatch) => mismatch.fmt(f),
            Self::Missing(ids) => write!(
                f,
                "{} referenced objects are neither earlier in the upload nor stored; send them first",
                ids.len()
            ),
            Self::RootMissing(_) => f.write_str("the root is neither in the upload nor stored"),
            Self::RootNotDir(_) => f.write_str("the root must be a dir"),
            Self::Path(error) => error.fmt(f),
            Self::Records(detail) => f.write_str(detail),
            Self::Content { path, error } => write!(f, "{path}: inline content: {error}"),
            Self::Integrity(detail) => f.write_str(detail),
        }
    }
}

impl std::error::Error for Rejection {}

/// One object of the upload.
#[derive(Debug)]
struct Received {
    id: ObjectId,
    frame: Bytes,
    info: ObjectInfo,
    /// 0 for chunks; else one more than its tallest child in the upload (1 with none there).
    height: u32,
    /// Dirs and file objects, decoded (the walk reads dirs; errors describe references).
    object: Option<Object>,
}

/// A reference from an object of the upload to an object outside it.
#[derive(Debug, Clone, Copy)]
struct Claim {
    /// Index of the referring object in the upload.
    referrer: usize,
    /// Which reference of the referrer.
    position: usize,
    reference: Reference,
}

#[derive(Debug)]
enum State {
    Receiving,
    /// Reading the base dirs along the records' paths.
    Patching(TreePatch),
    /// Reading the base chunks that delta records are decoded against.
    Dictionaries {
        patch: TreePatch,
        wanted: Vec<ObjectId>,
        got: HashMap<ObjectId, Vec<u8>>,
    },
    /// Ready to decode the records and build the new dirs.
    Building {
        patch: TreePatch,
        dictionaries: HashMap<ObjectId, Vec<u8>>,
    },
    /// Walking the new tree's changed dirs; `reading` are the stored ones asked for.
    Walking {
        walk: DiffWalk,
        reading: HashSet<ObjectId>,
    },
    /// Asking the kind and size of the objects outside the upload.
    Checking {
        asked: Vec<ObjectId>,
        answers: HashMap<ObjectId, Option<ObjectInfo>>,
    },
    Storing,
    Done,
    Failed,
}

/// What the upload is for.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    /// Objects only (`POST .../objects`): stored, nothing committed.
    Upload,
    /// A new version: `root` on top of the head `base_root` (a push, or a commit of stored
    /// objects when nothing is received).
    Version { base_root: ObjectId, root: ObjectId },
}

/// The push acceptor. Feed it the stream's items with [`PushAcceptor::receive`], then loop on
/// [`PushAcceptor::step`], doing what each [`Step`] asks, until [`Step::Done`] or a
/// [`Rejection`]. After a rejection the acceptor is spent.
#[derive(Debug)]
pub struct PushAcceptor {
    purpose: Purpose,
    state: State,
    objects: Vec<Received>,
    index: HashMap<ObjectId, usize>,
    claims: Vec<Claim>,
    records: Vec<Record>,
    /// What stored dirs read on the way say about the objects they name.
    known: HashMap<ObjectId, ObjectInfo>,
}

impl PushAcceptor {
    /// An upload of objects only, committing nothing.
    pub fn upload() -> Self {
        Self::new(Purpose::Upload)
    }

    /// A push (or, receiving nothing, a commit) of `root` on the tree of its base version,
    /// whose root is `base_root`: the head, or, for a push the server may rebase, the base
    /// version's tree even if the head has moved on. Change records are applied to it.
    pub fn version(base_root: ObjectId, root: ObjectId) -> Self {
        Self::new(Purpose::Version { base_root, root })
    }

    fn new(purpose: Purpose) -> Self {
        Self {
            purpose,
            state: State::Receiving,
            objects: Vec::new(),
            index: HashMap::new(),
            claims: Vec::new(),
            records: Vec::new(),
            known: HashMap::new(),
        }
    }

    /// Distinct objects received so far.
    pub fn received(&self) -> usize {
        self.objects.len()
    }

    /// Takes one verified item of the stream.
    pub fn receive(&mut self, item: Item) -> Result<(), Rejection> {
        if !matches!(self.state, State::Receiving) {
            return self.fail(Rejection::Integrity(
                "an item arrived after the stream ended".to_owned(),
            ));
        }
        match item {
            Item::Object(frame) => {
                let result = self.add(frame.id, frame.object, Bytes::from(frame.compressed));
                result.or_else(|rejection| self.fail(rejection))
            }
            Item::Record(item) if matches!(self.purpose, Purpose::Version { .. }) => {
                self.records.push(item.record);
                Ok(())
            }
            Item::Record(item) => {
                self.fail(Rejection::Stream(Box::new(StreamError::UnexpectedRecord {
                    index: item.index,
                    offset: item.offset,
                })))
            }
        }
    }

    /// The next thing to do. The first call ends the stream.
    pub fn step(&mut self) -> Result<Step, Rejection> {
        let result = self.advance();
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// Gives a stored object asked for by [`Step::Read`]; `None` when it is not stored.
    pub fn provide(&mut self, id: ObjectId, object: Option<Object>) -> Result<(), Rejection> {
        let result = match &mut self.state {
            State::Patching(patch) => match object {
                Some(Object::Dir(dir)) => {
                    learn(&mut self.known, &dir);
                    patch
                        .provide(id, dir)
                        .map_err(|error| Rejection::Records(error.to_string()))
                }
                _ => Err(Rejection::Integrity(format!(
                    "dir {id} of the base version is not stored"
                ))),
            },
            State::Dictionaries { wanted, got, .. } if wanted.contains(&id) => match object {
                Some(object @ Object::Chunk(_)) => {
                    got.insert(id, object.encode());
                    Ok(())
                }
                _ => Err(Rejection::Integrity(format!(
                    "chunk {id} of the base version is not stored"
                ))),
            },
            State::Walking { reading, .. } if reading.contains(&id) => {
                reading.remove(&id);
                self.provide_walked(id, object)
            }
            _ => Err(Rejection::Integrity(format!(
                "object {id} was provided but not asked for"
            ))),
        };
        result.or_else(|rejection| self.fail(rejection))
    }

    /// Gives the kind and size of a stored object asked for by [`Step::Stat`]; `None` when it
    /// is not stored.
    pub fn provide_info(
        &mut self,
        id: ObjectId,
        info: Option<ObjectInfo>,
    ) -> Result<(), Rejection> {
        match &mut self.state {
            State::Checking { answers, .. } => {
                answers.insert(id, info);
                Ok(())
            }
            _ => self.fail(Rejection::Integrity(format!(
                "the kind of {id} was provided but not asked for"
            ))),
        }
    }

    /// Does the CPU work [`Step::Compute`] asked for.
    pub fn compute(&mut self) -> Result<(), Rejection> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let State::Building {
            patch,
            dictionaries,
        } = state
        else {
            return self.fail(Rejection::Integrity(
                "compute called when nothing was to compute".to_owned(),
            ));
        };
        match self.build_records(patch, &dictionaries) {
            Ok(()) => {
                self.start_walk();
                Ok(())
            }
            Err(rejection) => self.fail(rejection),
        }
    }

    fn fail<T>(&mut self, rejection: Rejection) -> Result<T, Rejection> {
        self.state = State::Failed;
        Err(rejection)
    }

    /// Adds one object to the upload, checking its references to objects already in it.
    fn add(&mut self, id: ObjectId, object: Object, frame: Bytes) -> Result<(), Rejection> {
        if self.index.contains_key(&id) {
            return Ok(());
        }
        let position = self.objects.len();
        let mut height = 0;
        for (place, reference) in typed_references(&object).enumerate() {
            match self.index.get(&reference.id) {
                Some(&child) => {
                    let child = &self.objects[child];
                    if !reference.is_met_by(child.info.kind, child.info.size) {
                        return Err(Rejection::EntryMismatch(Box::new(Mismatch {
                            referrer: id,
                            referrer_kind: object.kind(),
                            place: describe_reference(&object, place),
                            reference,
                            actual: child.info,
                        })));
                    }
                    height = height.max(child.height + 1);
                }
                None => {
                    height = height.max(1);
                    self.claims.push(Claim {
                        referrer: position,
                        position: place,
                        reference,
                    });
                }
            }
        }
        let info = ObjectInfo::of(&object);
        self.index.insert(id, position);
        self.objects.push(Received {
            id,
            frame,
            info,
            height,
            object: (info.kind != ObjectKind::Chunk).then_some(object),
        });
        Ok(())
    }

    fn advance(&mut self) -> Result<Step, Rejection> {
        loop {
            match &mut self.state {
                State::Receiving => match self.purpose {
                    Purpose::Upload => self.start_checking(),
                    Purpose::Version { base_root, .. } if !self.records.is_empty() => {
                        let paths = self
                            .records
                            .iter()
                            .map(|record| record.path().clone())
                            .collect();
                        let patch = TreePatch::new(base_root, paths).map_err(records_error)?;
                        self.state = State::Patching(patch);
                    }
                    Purpose::Version { .. } => self.start_walk(),
                },
                State::Patching(patch) => {
                    if !patch.is_done() {
                        return Ok(Step::Read(patch.wants().to_vec()));
                    }
                    let State::Patching(patch) = std::mem::replace(&mut self.state, State::Failed)
                    else {
                        unreachable!("matched above")
                    };
                    let wanted = self.dictionary_ids(&patch)?;
                    self.state = State::Dictionaries {
                        patch,
                        wanted,
                        got: HashMap::new(),
                    };
                }
                State::Dictionaries { wanted, got, .. } => {
                    let unread: Vec<ObjectId> = wanted
                        .iter()
                        .filter(|id| !got.contains_key(id))
                        .copied()
                        .collect();
                    if !unread.is_empty() {
                        return Ok(Step::Read(unread));
                    }
                    let State::Dictionaries { patch, got, .. } =
                        std::mem::replace(&mut self.state, State::Failed)
                    else {
                        unreachable!("matched above")
                    };
                    self.state = State::Building {
                        patch,
                        dictionaries: got,
                    };
                }
                State::Building { .. } => return Ok(Step::Compute),
                State::Walking { walk, reading } => {
                    if !reading.is_empty() {
                        return Ok(Step::Read(reading.iter().copied().collect()));
                    }
                    if walk.is_done() || walk.wanted_kind() != Some(ObjectKind::Dir) {
                        self.start_checking();
                        continue;
                    }
                    self.walk_level()?;
                }
                State::Checking { asked, answers } => {
                    if answers.len() < asked.len() {
                        let unanswered = asked
                            .iter()
                            .filter(|id| !answers.contains_key(id))
                            .copied()
                            .collect();
                        return Ok(Step::Stat(unanswered));
                    }
                    let answers = std::mem::take(answers);
                    self.check_claims(&answers)?;
                    self.state = State::Storing;
                }
                State::Storing => {
                    self.state = State::Done;
                    if self.objects.is_empty() {
                        continue;
                    }
                    return Ok(Step::Store(self.layers()));
                }
                State::Done => {
                    return Ok(Step::Done(Accepted {
                        objects: self.objects.len(),
                        bytes: self.objects.iter().map(|o| o.frame.len() as u64).sum(),
                    }));
                }
                State::Failed => {
                    return Err(Rejection::Integrity(
                        "the push was already refused".to_owned(),
                    ));
                }
            }
        }
    }

    /// Gives the walk a stored object it asked for.
    fn provide_walked(&mut self, id: ObjectId, object: Option<Object>) -> Result<(), Rejection> {
        let State::Walking { walk, .. } = &mut self.state else {
            unreachable!("called while walking")
        };
        let result = match object {
            Some(Object::Dir(dir)) => {
                learn(&mut self.known, &dir);
                walk.provide(id, Object::Dir(dir))
            }
            Some(other) => {
                let actual = ObjectInfo::of(&other);
                return Err(self.not_a_dir(id, actual));
            }
            None => Err(walk.missing(&id)),
        };
        result.map_err(|error| self.walk_rejection(error))
    }

    /// Feeds the walk's current batch: dirs of the upload at once, stored ones to be read.
    fn walk_level(&mut self) -> Result<(), Rejection> {
        let State::Walking { walk, .. } = &self.state else {
            unreachable!("called while walking")
        };
        for id in walk.wants().to_vec() {
            let received = self.index.get(&id).map(|&position| &self.objects[position]);
            let result = match received {
                Some(Received {
                    object: Some(object @ Object::Dir(_)),
                    ..
                }) => {
                    let object = object.clone();
                    let State::Walking { walk, .. } = &mut self.state else {
                        unreachable!("called while walking")
                    };
                    walk.provide(id, object)
                }
                Some(received) => {
                    let actual = received.info;
                    return Err(self.not_a_dir(id, actual));
                }
                None => {
                    let State::Walking { reading, .. } = &mut self.state else {
                        unreachable!("called while walking")
                    };
                    reading.insert(id);
                    Ok(())
                }
            };
            result.map_err(|error| self.walk_rejection(error))?;
        }
        Ok(())
    }

    /// The base chunks the records' delta contents are decoded against.
    fn dictionary_ids(&self, patch: &TreePatch) -> Result<Vec<ObjectId>, Rejection> {
        let mut ids = Vec::new();
        for record in &self.records {
            if let Record::Content {
                path, delta: true, ..
            } = record
            {
                match patch.base_entry(path) {
                    Some(entry) if entry.target == ObjectKind::Chunk => ids.push(entry.id),
                    _ => {
                        return Err(records_error(DecodeRecordsError::NoDictionary {
                            path: path.to_string(),
                        }));
                    }
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Decodes the records, builds the new dirs and checks their root against the push's.
    fn build_records(
        &mut self,
        patch: TreePatch,
        dictionaries: &HashMap<ObjectId, Vec<u8>>,
    ) -> Result<(), Rejection> {
        let Purpose::Version { root, .. } = self.purpose else {
            return Err(Rejection::Integrity(
                "records in an upload of objects".to_owned(),
            ));
        };
        let records = std::mem::take(&mut self.records);
        let decoded = decode_records(&records, |path| {
            let entry = patch.base_entry(path)?;
            dictionaries.get(&entry.id).cloned()
        })
        .map_err(|error| match error {
            DecodeRecordsError::Content { path, error } => Rejection::Content {
                path,
                error: Box::new(error),
            },
            other => records_error(other),
        })?;
        let patched = patch.finish(&decoded.changes).map_err(records_error)?;
        if patched.root != root {
            return Err(Rejection::Records(format!(
                "applied to the base, the records give root {}, not the root {root} the push names",
                patched.root
            )));
        }
        for content in decoded.chunks {
            let frame = Bytes::from(compress_object(&content.encoded));
            self.add(content.entry.id, content.chunk, frame)?;
        }
        for (id, dir) in patched.dirs {
            let frame = Bytes::from(compress_object(&dir.encode()));
            self.add(id, dir, frame)?;
        }
        Ok(())
    }

    fn start_walk(&mut self) {
        match self.purpose {
            Purpose::Version { base_root, root } => {
                self.state = State::Walking {
                    walk: DiffWalk::new(base_root, root),
                    reading: HashSet::new(),
                };
            }
            Purpose::Upload => self.start_checking(),
        }
    }

    /// Asks about every object outside the upload that no stored dir read so far vouches for.
    fn start_checking(&mut self) {
        let empty = empty_dir_id();
        let mut asked = Vec::new();
        let mut seen = HashSet::new();
        for claim in &self.claims {
            let id = claim.reference.id;
            if id != empty && !self.known.contains_key(&id) && seen.insert(id) {
                asked.push(id);
            }
        }
        self.state = State::Checking {
            asked,
            answers: HashMap::new(),
        };
    }

    /// Checks every claim against what is known or was answered.
    fn check_claims(
        &self,
        answers: &HashMap<ObjectId, Option<ObjectInfo>>,
    ) -> Result<(), Rejection> {
        let empty = ObjectInfo {
            kind: ObjectKind::Dir,
            size: 0,
        };
        let empty_id = empty_dir_id();
        let mut missing = Vec::new();
        let mut missing_seen = HashSet::new();
        let mut mismatch = None;
        for claim in &self.claims {
            let id = claim.reference.id;
            let info = if id == empty_id {
                Some(empty)
            } else {
                self.known
                    .get(&id)
                    .copied()
                    .or_else(|| answers.get(&id).copied().flatten())
            };
            match info {
                None => {
                    if missing_seen.insert(id) {
                        missing.push(id);
                    }
                }
                Some(info) if !claim.reference.is_met_by(info.kind, info.size) => {
                    mismatch.get_or_insert((claim, info));
                }
                Some(_) => {}
            }
        }
        if !missing.is_empty() {
            return Err(Rejection::Missing(missing));
        }
        if let Some((claim, actual)) = mismatch {
            return Err(self.mismatch(claim, actual));
        }
        Ok(())
    }

    fn mismatch(&self, claim: &Claim, actual: ObjectInfo) -> Rejection {
        let referrer = &self.objects[claim.referrer];
        let place = match &referrer.object {
            Some(object) => describe_reference(object, claim.position),
            None => format!("reference {}", claim.position),
        };
        Rejection::EntryMismatch(Box::new(Mismatch {
            referrer: referrer.id,
            referrer_kind: referrer.info.kind,
            place,
            reference: claim.reference,
            actual,
        }))
    }

    /// The walk needed `id` to be a dir and it is not.
    fn not_a_dir(&self, id: ObjectId, actual: ObjectInfo) -> Rejection {
        if let Purpose::Version { root, .. } = self.purpose
            && id == root
        {
            return Rejection::RootNotDir(id);
        }
        match self.claims.iter().find(|claim| claim.reference.id == id) {
            Some(claim) => self.mismatch(claim, actual),
            // A stored dir names it as a dir: the store broke its invariant.
            None => Rejection::Integrity(format!("stored object {id} is not the dir it should be")),
        }
    }

    fn walk_rejection(&self, error: DiffError) -> Rejection {
        let root = match self.purpose {
            Purpose::Version { root, .. } => Some(root),
            Purpose::Upload => None,
        };
        match error {
            DiffError::Path(error) => Rejection::Path(error),
            DiffError::Missing { id, .. } if Some(id) == root => Rejection::RootMissing(id),
            DiffError::Missing {
                id,
                side: Side::New,
            } => Rejection::Missing(vec![id]),
            DiffError::Missing { id, .. } => {
                Rejection::Integrity(format!("dir {id} of the base version is not stored"))
            }
            DiffError::WrongKind { id, actual, .. } => self.not_a_dir(
                id,
                ObjectInfo {
                    kind: actual,
                    size: 0,
                },
            ),
            other => Rejection::Integrity(other.to_string()),
        }
    }

    /// The upload by height: chunks, then objects whose children are all below them.
    fn layers(&mut self) -> Vec<Vec<ToStore>> {
        let mut layers: BTreeMap<u32, Vec<ToStore>> = BTreeMap::new();
        for object in &self.objects {
            layers.entry(object.height).or_default().push(ToStore {
                id: object.id,
                info: object.info,
                frame: object.frame.clone(),
            });
        }
        layers.into_values().collect()
    }
}

/// Remembers what a stored dir says about the objects it names.
fn learn(known: &mut HashMap<ObjectId, ObjectInfo>, dir: &Dir) {
    for entry in dir.entries() {
        known.entry(entry.id).or_insert(ObjectInfo {
            kind: entry.target,
            size: entry.size,
        });
    }
}

fn records_error(error: impl fmt::Display) -> Rejection {
    Rejection::Records(error.to_string())
}

impl From<PatchError> for Rejection {
    fn from(error: PatchError) -> Self {
        records_error(error)
    }
}
