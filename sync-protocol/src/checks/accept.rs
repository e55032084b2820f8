//! Invariants of the push acceptor ([`crate::accept::PushAcceptor`]), checked against a simple
//! reference rather than against the acceptor's own reasoning.
//!
//! [`push_accept`] turns arbitrary bytes into a store state and a push, drives the acceptor over
//! the in-memory store exactly as the server's handlers do (the stream fed to a
//! [`StreamDecoder`] in pieces, then Read, Stat, Compute and Store steps), and checks the
//! outcome with [`check_outcome`]:
//!
//! - every Store layer holds only objects whose frames verify and whose children are already
//!   stored or in an earlier layer, with the kind and size their references say (the store's
//!   closure invariant, at every instant);
//! - a push that ends in [`Step::Done`] left a complete tree at the new root in the store: the
//!   root is a dir, every object reachable from it is stored, every reference matches the kind
//!   and size of the object it names, and every path is within the format's limits
//!   ([`check_tree`]);
//! - a refused push stored nothing.
//!
//! For pushes of objects only, whose stream decoded, the outcome must also be the one the
//! reference [`acceptable`] predicts (so a push that should commit is not refused either); a
//! genuine push of change records whose tree is valid must commit.
//!
//! The input is decoded by [`Case::decode`]: a header, small listings over a tiny alphabet of
//! names and contents (case clashes, a 250-byte name, one-chunk and two-chunk files, empty
//! dirs) built with the crate's own [`build_dirs`], then mutations, then raw bytes. Most inputs
//! are genuine pushes (objects children first, or change records) that the mutations bend:
//! dropped, swapped or repeated frames, entries that lie about their target's kind or size,
//! roots wrapped in deep dirs or given a stored subtree at a new path, another root named.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use crate::accept::{Accepted, ObjectInfo, PushAcceptor, Rejection, Step, ToStore};
use crate::compress::{compress_object, verify_frame};
use crate::diff::diff_listings;
use crate::id::ObjectId;
use crate::limits::{CHUNK_MIN_SIZE, MAX_PATH_DEPTH, MAX_PATH_LEN};
use crate::name::Name;
use crate::object::{
    Dir, DirEntry, EntryKind, FileChunk, FileObject, Object, ObjectKind, chunk_id,
};
use crate::patch::{Record, records_push};
use crate::stream::{Item, StreamDecoder, StreamEncoder, StreamError};
use crate::tree::{
    FileRef, Listing, MemoryObjects, Path, build_dirs, empty_dir_id, flatten, is_under,
    typed_references,
};

/// Stored objects by id: the in-memory store the acceptor is driven over. It holds only
/// objects whose closure it holds (the empty dir excepted, which every peer knows).
pub type Store = HashMap<ObjectId, Object>;

/// How a driven push ended.
#[derive(Debug)]
pub enum End {
    /// [`Step::Done`]: the caller may commit.
    Done(Accepted),
    /// The acceptor refused the push.
    Rejected(Rejection),
    /// The stream decoder refused the body (before the acceptor could step).
    Stream(Box<StreamError>),
}

/// Everything a driven push did.
#[derive(Debug)]
pub struct Outcome {
    /// The layers of each Store step, in order.
    pub stores: Vec<Vec<Vec<ToStore>>>,
    pub end: End,
    /// The objects the stream carried, in order (decoded, as the acceptor received them).
    pub upload: Vec<(ObjectId, Object)>,
    /// Whether the stream carried change records.
    pub records: bool,
}

/// Steps after which a push that has not ended counts as stuck.
const MAX_STEPS: usize = 100_000;

/// Drives a push of `new_root` on a head whose root is `base_root`, over `store`, as the
/// server does: `stream` fed to the decoder cut at `cuts` (sorted offsets), every item given to
/// the acceptor, then its steps answered from the store until it ends. Store steps are
/// recorded (and applied to a copy of the store, which later steps read), never checked here.
pub fn drive(
    store: &Store,
    base_root: ObjectId,
    new_root: ObjectId,
    stream: &[u8],
    cuts: &[usize],
) -> Outcome {
    let mut acceptor = PushAcceptor::version(base_root, new_root);
    let mut outcome = Outcome {
        stores: Vec::new(),
        end: End::Done(Accepted {
            objects: 0,
            bytes: 0,
        }),
        upload: Vec::new(),
        records: false,
    };
    if let Err(end) = receive(&mut acceptor, stream, cuts, &mut outcome) {
        outcome.end = end;
        return outcome;
    }
    let mut store = store.clone();
    for _ in 0..MAX_STEPS {
        let result = match acceptor.step() {
            Err(rejection) => Err(rejection),
            Ok(Step::Done(accepted)) => {
                outcome.end = End::Done(accepted);
                return outcome;
            }
            Ok(Step::Read(ids)) => ids
                .into_iter()
                .try_for_each(|id| acceptor.provide(id, store.get(&id).cloned())),
            Ok(Step::Stat(ids)) => ids
                .into_iter()
                .try_for_each(|id| acceptor.provide_info(id, store.get(&id).map(ObjectInfo::of))),
            Ok(Step::Compute) => acceptor.compute(),
            Ok(Step::Store(layers)) => {
                for item in layers.iter().flatten() {
                    if let Ok((object, _)) = verify_frame(&item.id, &item.frame) {
                        store.entry(item.id).or_insert(object);
                    }
                }
                outcome.stores.push(layers);
                Ok(())
            }
        };
        if let Err(rejection) = result {
            outcome.end = End::Rejected(rejection);
            return outcome;
        }
    }
    panic!("the acceptor did not end within {MAX_STEPS} steps");
}

/// Feeds the stream to a decoder piece by piece and every item to the acceptor.
fn receive(
    acceptor: &mut PushAcceptor,
    stream: &[u8],
    cuts: &[usize],
    outcome: &mut Outcome,
) -> Result<(), End> {
    let mut decoder = StreamDecoder::new();
    let mut start = 0;
    for &end in cuts.iter().chain([&stream.len()]) {
        let end = end.clamp(start, stream.len());
        decoder.feed(&stream[start..end]);
        start = end;
        while let Some(item) = decoder
            .next_item()
            .map_err(|error| End::Stream(Box::new(error)))?
        {
            match &item {
                Item::Object(frame) => outcome.upload.push((frame.id, frame.object.clone())),
                Item::Record(_) => outcome.records = true,
            }
            acceptor.receive(item).map_err(End::Rejected)?;
        }
    }
    decoder
        .finish()
        .map_err(|error| End::Stream(Box::new(error)))?;
    Ok(())
}

/// What a reference may name: the object, the empty dir whether stored or not.
fn lookup<'a>(objects: &'a Store, id: &ObjectId, empty: &'a Object) -> Option<&'a Object> {
    objects
        .get(id)
        .or_else(|| (*id == empty_dir_id()).then_some(empty))
}

/// Whether the tree at `root` in `objects` is complete and consistent: the root is a dir, every
/// object reachable from it is there, every reference (dir entry, file chunk) names an object
/// of the kind and size it says, an entry is a dir exactly when it names a dir, and every path
/// has at most [`MAX_PATH_DEPTH`] components and [`MAX_PATH_LEN`] bytes. Shared subtrees are
/// checked once; the empty dir need not be stored.
pub fn check_tree(objects: &Store, root: ObjectId) -> Result<(), String> {
    let empty = Object::Dir(Dir::empty());
    match lookup(objects, &root, &empty) {
        Some(Object::Dir(_)) => {}
        Some(other) => return Err(format!("root {root} is a {}", other.kind().as_str())),
        None => return Err(format!("root {root} is not stored")),
    }
    let mut extents = HashMap::new();
    let mut checked = HashSet::new();
    let (depth, len) = extent(objects, &empty, root, 0, &mut extents, &mut checked)?;
    if depth > MAX_PATH_DEPTH || len > MAX_PATH_LEN {
        return Err(format!(
            "a path is {depth} levels deep or {len} bytes long, past the limits"
        ));
    }
    Ok(())
}

/// The deepest and the longest path under dir `id` (relative to it; 0 and 0 for an empty dir),
/// checking every reference on the way. `level` is how deep `id` sits, to stop early.
fn extent(
    objects: &Store,
    empty: &Object,
    id: ObjectId,
    level: usize,
    extents: &mut HashMap<ObjectId, (usize, usize)>,
    checked: &mut HashSet<ObjectId>,
) -> Result<(usize, usize), String> {
    if let Some(&known) = extents.get(&id) {
        return Ok(known);
    }
    if level > MAX_PATH_DEPTH {
        return Err(format!(
            "dir {id} is more than {MAX_PATH_DEPTH} levels deep"
        ));
    }
    let Some(Object::Dir(dir)) = lookup(objects, &id, empty) else {
        unreachable!("only dirs whose reference was checked are visited")
    };
    check_references(objects, empty, id, checked)?;
    let (mut depth, mut len) = (0, 0);
    for entry in dir.entries() {
        let name = entry.name.as_str().len();
        if entry.kind == EntryKind::Dir {
            let (below, below_len) = extent(objects, empty, entry.id, level + 1, extents, checked)?;
            depth = depth.max(1 + below);
            len = len.max(if below == 0 {
                name
            } else {
                name + 1 + below_len
            });
        } else {
            // A file object's chunks are checked here; a chunk has no references.
            check_references(objects, empty, entry.id, checked)?;
            depth = depth.max(1);
            len = len.max(name);
        }
    }
    extents.insert(id, (depth, len));
    Ok((depth, len))
}

/// Checks every reference of the stored object `id` against the object it names.
fn check_references(
    objects: &Store,
    empty: &Object,
    id: ObjectId,
    checked: &mut HashSet<ObjectId>,
) -> Result<(), String> {
    if !checked.insert(id) {
        return Ok(());
    }
    let object = lookup(objects, &id, empty).ok_or_else(|| format!("{id} is not stored"))?;
    if let Object::Dir(dir) = object
        && let Some(entry) = dir
            .entries()
            .iter()
            .find(|entry| (entry.kind == EntryKind::Dir) != (entry.target == ObjectKind::Dir))
    {
        return Err(format!(
            "entry {} of {id} is a dir in name only",
            entry.name
        ));
    }
    for reference in typed_references(object) {
        let child = lookup(objects, &reference.id, empty)
            .ok_or_else(|| format!("{} named by {id} is not stored", reference.id))?;
        let info = ObjectInfo::of(child);
        if !reference.is_met_by(info.kind, info.size) {
            return Err(format!(
                "{id} says {} is a {} of {} bytes, it is a {} of {}",
                reference.id,
                reference.kind.as_str(),
                reference.size,
                info.kind.as_str(),
                info.size
            ));
        }
    }
    Ok(())
}

/// The reference answer for a push of objects only: whether `upload` (in stream order) on
/// top of `store` must commit `root`. Each object's references must name an object earlier in
/// the upload or stored (or the empty dir), of the kind and size they say; a repeated object
/// counts once; and the tree at `root` over the store and the upload must pass [`check_tree`].
pub fn acceptable(store: &Store, upload: &[(ObjectId, Object)], root: ObjectId) -> bool {
    let empty = Object::Dir(Dir::empty());
    let mut union = store.clone();
    let mut seen = HashSet::new();
    for (id, object) in upload {
        if !seen.insert(*id) {
            continue;
        }
        for reference in typed_references(object) {
            let met = lookup(&union, &reference.id, &empty).is_some_and(|child| {
                let info = ObjectInfo::of(child);
                reference.is_met_by(info.kind, info.size)
            });
            if !met {
                return false;
            }
        }
        union.entry(*id).or_insert_with(|| object.clone());
    }
    check_tree(&union, root).is_ok()
}

/// Checks a driven push against the store it started from; panics if an invariant broke.
/// Returns the store after the push's Store steps.
pub fn check_outcome(before: &Store, new_root: ObjectId, outcome: &Outcome) -> Store {
    let mut store = before.clone();
    let empty = Object::Dir(Dir::empty());
    let mut count = 0;
    let mut bytes = 0;
    for layers in &outcome.stores {
        for layer in layers {
            let mut added = Vec::new();
            for item in layer {
                count += 1;
                bytes += item.frame.len() as u64;
                let (object, _) = verify_frame(&item.id, &item.frame)
                    .unwrap_or_else(|error| panic!("stored frame of {} is bad: {error}", item.id));
                assert_eq!(
                    item.info,
                    ObjectInfo::of(&object),
                    "{} is stored with a wrong kind or size",
                    item.id
                );
                for reference in typed_references(&object) {
                    let child = lookup(&store, &reference.id, &empty).unwrap_or_else(|| {
                        panic!(
                            "{} is stored before its child {} (closure broken)",
                            item.id, reference.id
                        )
                    });
                    let info = ObjectInfo::of(child);
                    assert!(
                        reference.is_met_by(info.kind, info.size),
                        "{} is stored naming {} as a {} of {} bytes, it is a {} of {}",
                        item.id,
                        reference.id,
                        reference.kind.as_str(),
                        reference.size,
                        info.kind.as_str(),
                        info.size
                    );
                }
                added.push((item.id, object));
            }
            // A layer is durable as a whole, after every check of its objects.
            for (id, object) in added {
                store.entry(id).or_insert(object);
            }
        }
    }
    match &outcome.end {
        End::Done(accepted) => {
            assert_eq!(
                accepted.objects, count,
                "Done counts other objects than stored"
            );
            assert_eq!(accepted.bytes, bytes, "Done counts other bytes than stored");
            if let Err(problem) = check_tree(&store, new_root) {
                panic!("a push was accepted with an inconsistent tree: {problem}");
            }
        }
        End::Rejected(_) | End::Stream(_) => {
            assert!(
                outcome.stores.is_empty(),
                "a refused push stored objects: {:?}",
                outcome.end
            );
        }
    }
    store
}

// ---------------------------------------------------------------------------------------------
// The input: a store state and a push, from arbitrary bytes.

/// The name alphabet: case and fold clashes (`a`/`A`, `ß`/`ss`) and a 250-byte name, so that a
/// few levels of it reach the path length limit.
fn alphabet_name(index: u8) -> String {
    match index % 8 {
        0 => "a".to_owned(),
        1 => "A".to_owned(),
        2 => "b".to_owned(),
        3 => "ß".to_owned(),
        4 => "ss".to_owned(),
        5 => "x".repeat(250),
        6 => "d".to_owned(),
        _ => "e.txt".to_owned(),
    }
}

/// One entry of the content alphabet: the file's entry and its objects, children first.
struct Content {
    file: FileRef,
    objects: Vec<(ObjectId, Object)>,
}

/// The content alphabet and the zstd frame of each of its objects.
type Alphabet = (Vec<Content>, HashMap<ObjectId, Vec<u8>>);

/// The content alphabet: one-chunk files (two sharing a chunk, one empty), the empty dir, and
/// two two-chunk files sharing their first chunk. Built once, with their frames.
fn contents() -> &'static Alphabet {
    static CONTENTS: OnceLock<Alphabet> = OnceLock::new();
    CONTENTS.get_or_init(|| {
        let small = |bytes: &[u8], kind| {
            let id = chunk_id(bytes);
            Content {
                file: FileRef {
                    kind,
                    target: ObjectKind::Chunk,
                    size: bytes.len() as u64,
                    id,
                },
                objects: vec![(id, Object::Chunk(bytes.to_vec()))],
            }
        };
        let big = |last: u8, kind| {
            let zeros = vec![0u8; CHUNK_MIN_SIZE as usize];
            let chunks = vec![
                FileChunk {
                    id: chunk_id(&zeros),
                    len: CHUNK_MIN_SIZE,
                },
                FileChunk {
                    id: chunk_id(&[last]),
                    len: 1,
                },
            ];
            let file = FileObject::new(chunks).expect("valid chunk lengths");
            let size = file.size();
            let object = Object::File(file);
            let id = object.id();
            Content {
                file: FileRef {
                    kind,
                    target: ObjectKind::File,
                    size,
                    id,
                },
                objects: vec![
                    (chunk_id(&zeros), Object::Chunk(zeros)),
                    (chunk_id(&[last]), Object::Chunk(vec![last])),
                    (id, object),
                ],
            }
        };
        let table = vec![
            small(b"0", EntryKind::File),
            small(b"1", EntryKind::File),
            small(b"2", EntryKind::Executable),
            small(b"", EntryKind::File),
            Content {
                file: FileRef::empty_dir(),
                objects: Vec::new(),
            },
            big(5, EntryKind::File),
            big(6, EntryKind::Executable),
            small(b"0", EntryKind::Executable),
        ];
        let frames = table
            .iter()
            .flat_map(|content| &content.objects)
            .map(|(id, object)| (*id, compress_object(&object.encode())))
            .collect();
        (table, frames)
    })
}

/// The zstd frame of an object the case builds. Frames are remembered (a few thousand at most):
/// the same small dirs recur from one input to the next, and compressing each anew is most of
/// a run's time under the fuzzer's instrumentation.
fn frame_of(id: &ObjectId, object: &Object) -> Vec<u8> {
    thread_local! {
        static FRAMES: std::cell::RefCell<HashMap<ObjectId, Vec<u8>>> =
            std::cell::RefCell::new(HashMap::new());
    }
    if let Some(frame) = contents().1.get(id) {
        return frame.clone();
    }
    FRAMES.with(|frames| {
        let mut frames = frames.borrow_mut();
        if frames.len() >= 4096 {
            frames.clear();
        }
        frames
            .entry(*id)
            .or_insert_with(|| compress_object(&object.encode()))
            .clone()
    })
}

/// Reads the input, 0 once it runs out.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&first, rest)) => {
                self.data = rest;
                first
            }
            None => 0,
        }
    }

    fn take(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        head
    }
}

/// A path from two edit bytes: 1 to 3 names of the alphabet.
fn edit_path(first: u8, second: u8) -> Option<Path> {
    let depth = 1 + usize::from(first >> 6) % 3;
    let components = [first & 7, (first >> 3) & 7, (second >> 3) & 7];
    let text: Vec<String> = components[..depth]
        .iter()
        .map(|&c| alphabet_name(c))
        .collect();
    Path::new(&text.join("/")).ok()
}

/// Applies one change to a listing unless the listing would no longer build into dirs.
fn apply(listing: &mut Listing, path: Path, value: Option<FileRef>) {
    match value {
        Some(file) if fits(listing, &path) => {
            listing.insert(path, file);
        }
        Some(_) => {}
        // Removing never breaks a listing.
        None => listing.retain(|key, _| *key != path && !is_under(key, &path)),
    }
}

/// The fold class of an alphabet name: two names of one class clash on a case-insensitive disk.
fn fold_class(name: &str) -> &str {
    match name {
        "A" => "a",
        "ß" => "ss",
        other => other,
    }
}

/// Whether putting a file or an empty dir at `path` keeps `listing` buildable into dirs: no
/// file or empty dir above it, nothing below it, no sibling on the way whose name clashes by
/// case. A cheap stand-in for [`build_dirs`] (which folds every name of every dir), exact for
/// the alphabet's names.
fn fits(listing: &Listing, path: &Path) -> bool {
    let parts: Vec<&str> = path.components().collect();
    listing.keys().filter(|key| *key != path).all(|key| {
        let other: Vec<&str> = key.components().collect();
        let common = parts.iter().zip(&other).take_while(|(a, b)| a == b).count();
        // Diverging at `common`: neither holds the other, and the names there must not clash.
        common < parts.len()
            && common < other.len()
            && fold_class(parts[common]) != fold_class(other[common])
    })
}

/// A tree built from a listing: its root and every object, children first.
struct Tree {
    root: ObjectId,
    objects: Vec<(ObjectId, Object)>,
}

fn build(listing: &Listing) -> Option<Tree> {
    let built = build_dirs(listing).ok()?;
    let mut seen = HashSet::new();
    let mut objects = Vec::new();
    for file in listing.values() {
        let content = contents()
            .0
            .iter()
            .find(|content| content.file.id == file.id);
        for (id, object) in content.into_iter().flat_map(|content| &content.objects) {
            if seen.insert(*id) {
                objects.push((*id, object.clone()));
            }
        }
    }
    for (id, object) in built.dirs {
        if seen.insert(id) {
            objects.push((id, object));
        }
    }
    Some(Tree {
        root: built.root,
        objects,
    })
}

/// [`build`], or the empty tree (and listing) should [`fits`] ever let an unbuildable listing
/// through; a unit test checks that it does not.
fn build_or_empty(listing: &mut Listing) -> Tree {
    build(listing).unwrap_or_else(|| {
        listing.clear();
        build(listing).expect("the empty listing builds")
    })
}

/// Where the push's stream comes from (the low bits of the first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The rest of the input, as it is.
    Verbatim,
    /// The objects of the new tree the store lacks, children first.
    Objects,
    /// Change records from the base listing to the new one, and the objects they do not carry.
    Records,
    /// As `Objects`, then objects whose encodings the rest of the input holds.
    RawObjects,
}

/// One input, decoded: the store, the push, and what the push is known to be.
#[derive(Debug)]
pub struct Case {
    pub store: Store,
    pub base_root: ObjectId,
    pub new_root: ObjectId,
    pub stream: Vec<u8>,
    pub cuts: Vec<usize>,
    /// Made by the client's own code, unmutated, naming its own root: must commit if its tree
    /// is within the limits.
    pub genuine: bool,
    /// The client's objects: the store's and the new tree's. The tree the push means to commit.
    pub local: Store,
}

impl Case {
    /// Decodes an input. Layout: a mode byte (stream source, which root to name, whether a
    /// second tree is stored, how the stream is cut), a byte of edit counts for the base and
    /// new listings, one for the second tree's edits and the mutations, the edits (two bytes
    /// each), the mutations (three bytes each), then raw bytes for the verbatim and raw-object
    /// sources. Every input decodes to some case.
    pub fn decode(data: &[u8]) -> Case {
        let mut input = Reader { data };
        let mode = input.byte();
        let counts = input.byte();
        let more = input.byte();
        let source = match mode & 3 {
            0 => Source::Verbatim,
            1 => Source::Objects,
            2 => Source::Records,
            _ => Source::RawObjects,
        };
        let root_choice = (mode >> 2) & 7;
        let extra_stored = mode & 0x20 != 0;
        let cut_style = mode >> 6;

        let table = &contents().0;
        let mut edit = |listing: &mut Listing, removals: bool| {
            let (first, second) = (input.byte(), input.byte());
            let Some(path) = edit_path(first, second) else {
                return;
            };
            let value = match second >> 6 {
                1 | 2 if removals => None,
                _ => Some(table[usize::from(second & 7)].file),
            };
            apply(listing, path, value);
        };
        let mut base_listing = Listing::new();
        for _ in 0..counts & 15 {
            edit(&mut base_listing, false);
        }
        let mut new_listing = base_listing.clone();
        for _ in 0..counts >> 4 {
            edit(&mut new_listing, true);
        }
        let mut extra_listing = Listing::new();
        for _ in 0..more & 7 {
            edit(&mut extra_listing, false);
        }
        let mutations: Vec<[u8; 3]> = (0..(more >> 3) & 7)
            .map(|_| [input.byte(), input.byte(), input.byte()])
            .collect();

        let base = build_or_empty(&mut base_listing);
        let extra = build_or_empty(&mut extra_listing);
        let mut store = Store::new();
        store.extend(base.objects.iter().cloned());
        if extra_stored {
            store.extend(extra.objects.iter().cloned());
        }

        // Lies: entries of the new tree that say another kind, size or object than the truth.
        let mut honest = true;
        for &[op, at, how] in &mutations {
            if op % 8 != 0 {
                continue;
            }
            let files: Vec<Path> = new_listing
                .iter()
                .filter(|(_, file)| !file.is_dir())
                .map(|(path, _)| path.clone())
                .collect();
            let Some(path) = files.get(usize::from(at) % files.len().max(1)) else {
                continue;
            };
            let mut file = new_listing[path];
            match how % 4 {
                0 => file.size ^= 1,
                1 if file.target == ObjectKind::File => file.target = ObjectKind::Chunk,
                1 => {
                    file.target = ObjectKind::File;
                    file.size = u64::from(CHUNK_MIN_SIZE) + 1;
                }
                2 => file.id = chunk_id(b"never stored"),
                _ => {
                    file.target = ObjectKind::Chunk;
                    file.size = 0;
                    file.id = base.root;
                }
            }
            let mut lied = new_listing.clone();
            lied.insert(path.clone(), file);
            if build_dirs(&lied).is_ok() {
                new_listing = lied;
                honest = false;
            }
        }
        let new = build_or_empty(&mut new_listing);
        let mut local = store.clone();
        local.extend(extra.objects.iter().cloned());
        local.extend(new.objects.iter().cloned());

        // Reshaping: a stored subtree at a new path, the root wrapped in dirs.
        let mut new_root = new.root;
        for &[op, first, second] in &mutations {
            let dir = match (op % 8, &local.get(&new_root)) {
                (1, _) => {
                    let Ok(name) = Name::new(&alphabet_name(second)) else {
                        continue;
                    };
                    Dir::new(vec![DirEntry::dir(name, new_root)])
                        .ok()
                        .map(|dir| (dir, usize::from(first % 16)))
                }
                (2, Some(Object::Dir(root))) => {
                    let Ok(name) = Name::new(&alphabet_name(first)) else {
                        continue;
                    };
                    let grafted = if second & 1 == 0 {
                        base.root
                    } else {
                        extra.root
                    };
                    let mut entries: Vec<DirEntry> = root
                        .entries()
                        .iter()
                        .filter(|entry| entry.name != name)
                        .cloned()
                        .collect();
                    entries.push(DirEntry::dir(name, grafted));
                    Dir::new(entries).ok().map(|dir| (dir, 0))
                }
                _ => None,
            };
            let Some((dir, more_levels)) = dir else {
                continue;
            };
            let mut object = Object::Dir(dir);
            for level in 0..=more_levels {
                let id = object.id();
                local.entry(id).or_insert(object.clone());
                new_root = id;
                if level < more_levels {
                    let name = Name::new(&alphabet_name(second)).expect("alphabet names are valid");
                    object = Object::Dir(Dir::new(vec![DirEntry::dir(name, id)]).expect("one"));
                }
            }
        }

        // The objects a client sends: reachable from the new root, not from the base, children
        // first.
        let mut in_base = HashSet::new();
        reach(&local, base.root, &mut in_base, &mut Vec::new());
        let mut order = Vec::new();
        reach(&local, new_root, &mut in_base.clone(), &mut order);
        let mut records = Vec::new();
        if source == Source::Records {
            let memory = {
                let mut memory = MemoryObjects::new();
                memory.extend(local.iter().map(|(id, object)| (*id, object.clone())));
                memory
            };
            if let (Ok(old), Ok(now)) = (flatten(&memory, &base.root), flatten(&memory, &new_root))
            {
                let changes = diff_listings(&old, &now);
                let encoding = |file: &FileRef| match local.get(&file.id) {
                    Some(object @ Object::Chunk(_)) if file.target == ObjectKind::Chunk => {
                        Some(object.encode())
                    }
                    _ => None,
                };
                let is_dir = |id: &ObjectId| matches!(local.get(id), Some(Object::Dir(_)));
                if let Some(push) = records_push(&changes, &order, is_dir, encoding) {
                    records = push.records;
                    order = push.objects;
                }
            }
        }

        // Stream mutations.
        let mut mutated = false;
        let sorted_store: Vec<ObjectId> = {
            let mut ids: Vec<ObjectId> = store.keys().copied().collect();
            ids.sort_unstable();
            ids
        };
        for &[op, first, second] in &mutations {
            let at = |n: usize, byte: u8| usize::from(byte) % n.max(1);
            match op % 8 {
                3 if !order.is_empty() => {
                    order.remove(at(order.len(), first));
                }
                4 if !order.is_empty() => {
                    let (i, j) = (at(order.len(), first), at(order.len(), second));
                    order.swap(i, j);
                }
                5 if !order.is_empty() => order.push(order[at(order.len(), first)]),
                6 if !sorted_store.is_empty() => {
                    order.insert(
                        at(order.len() + 1, second),
                        sorted_store[at(sorted_store.len(), first)],
                    );
                }
                7 if !records.is_empty() => {
                    let index = at(records.len(), first);
                    match (&mut records[index], second & 1) {
                        (Record::Entry { entry, .. }, 1) => entry.size ^= 1,
                        _ => {
                            records.remove(index);
                        }
                    }
                }
                _ => continue,
            }
            mutated = true;
        }

        let mut encoder = StreamEncoder::new();
        for record in &records {
            if encoder.push_record(record).is_err() {
                mutated = true;
            }
        }
        for id in &order {
            let object = &local[id];
            let _ = encoder.push(object.kind(), id, &frame_of(id, object));
        }
        let mut last_raw = None;
        let stream = match source {
            Source::Verbatim => input.data.to_vec(),
            Source::RawObjects => {
                loop {
                    let len = usize::from(input.byte());
                    if len == 0 {
                        break;
                    }
                    let bytes = input.take(len);
                    if let Ok(object) = Object::decode(bytes) {
                        let id = ObjectId::of_encoded(bytes);
                        if encoder
                            .push(object.kind(), &id, &compress_object(bytes))
                            .is_ok()
                        {
                            last_raw = Some(id);
                        }
                        local.entry(id).or_insert(object);
                    }
                }
                encoder.finish()
            }
            Source::Objects | Source::Records => encoder.finish(),
        };
        let named_root = match root_choice {
            0..=3 => new_root,
            4 => base.root,
            5 => extra.root,
            6 => empty_dir_id(),
            _ => last_raw.unwrap_or_else(|| chunk_id(b"0")),
        };
        let cuts = match cut_style {
            0 => Vec::new(),
            1 => (1..stream.len()).collect(),
            2 => vec![stream.len() / 2],
            _ => (1..stream.len()).step_by(37).collect(),
        };
        Case {
            store,
            base_root: base.root,
            new_root: named_root,
            genuine: honest
                && !mutated
                && root_choice <= 3
                && matches!(source, Source::Objects | Source::Records),
            stream,
            cuts,
            local,
        }
    }
}

/// Walks from `id` over `objects`, skipping what `seen` holds; appends each object reached
/// after its children.
fn reach(objects: &Store, id: ObjectId, seen: &mut HashSet<ObjectId>, order: &mut Vec<ObjectId>) {
    if !seen.insert(id) {
        return;
    }
    let Some(object) = objects.get(&id) else {
        return;
    };
    for reference in typed_references(object) {
        reach(objects, reference.id, seen, order);
    }
    order.push(id);
}

/// What one input did, for tests.
#[derive(Debug)]
pub struct Report {
    pub genuine: bool,
    pub records: bool,
    pub end: End,
    /// Objects stored by the push.
    pub stored: usize,
}

/// Drives the push an input describes and checks every invariant; see the module docs.
pub fn push_accept(data: &[u8]) {
    run(data);
}

/// [`push_accept`], returning what happened.
pub fn run(data: &[u8]) -> Report {
    let case = Case::decode(data);
    let outcome = drive(
        &case.store,
        case.base_root,
        case.new_root,
        &case.stream,
        &case.cuts,
    );
    let after = check_outcome(&case.store, case.new_root, &outcome);
    let done = matches!(outcome.end, End::Done(_));
    if !matches!(outcome.end, End::Stream(_)) {
        if !outcome.records {
            let expected = acceptable(&case.store, &outcome.upload, case.new_root);
            assert_eq!(
                done, expected,
                "the acceptor says {:?} where the reference says {}",
                outcome.end, expected
            );
        } else if case.genuine {
            let valid = check_tree(&case.local, case.new_root);
            assert_eq!(
                done,
                valid.is_ok(),
                "a genuine records push ended in {:?}, the tree is {valid:?}",
                outcome.end
            );
        }
    }
    Report {
        genuine: case.genuine,
        records: outcome.records,
        stored: after.len() - case.store.len(),
        end: outcome.end,
    }
}

/// Inputs for the fuzzer to start from, by name: genuine pushes of each kind, a few mutated
/// ones, and the stream of a genuine push as a verbatim input.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Edits: (path byte, content byte). Path byte: names in bits 0-2 and 3-5, depth - 1 in
    // 6-7; content byte: content in bits 0-2, a third name in 3-5, removal in 6-7.
    let base_edits: &[[u8; 2]] = &[
        [0x00, 0x00],                           // a: "0"
        [0x40 | 2 | (6 << 3), 0x01],            // b/d: "1"
        [0x40 | 2 | (7 << 3), 0x05],            // b/e.txt: two chunks
        [0x80 | 5 | (5 << 3), 0x02 | (6 << 3)], // x…/x…/d: executable "2"
        [0x06, 0x04],                           // d: empty dir
    ];
    let new_edits: &[[u8; 2]] = &[
        [0x00, 0x01],                // a: "1"
        [0x40 | 2 | (6 << 3), 0x40], // remove b/d
        [0x03, 0x06],                // ß: two chunks, executable
        [0x07, 0x03],                // e.txt: empty
    ];
    let input = |mode: u8, extra: u8, mutations: &[[u8; 3]], tail: &[u8]| {
        let mut data = vec![
            mode,
            base_edits.len() as u8 | ((new_edits.len() as u8) << 4),
            extra | ((mutations.len() as u8) << 3),
        ];
        data.extend(base_edits.iter().flatten());
        data.extend(new_edits.iter().flatten());
        for _ in 0..extra {
            data.extend([0x01, 0x00]);
        }
        data.extend(mutations.iter().flatten());
        data.extend_from_slice(tail);
        data
    };
    let objects = input(1, 0, &[], &[]);
    let records = input(2, 0, &[], &[]);
    let verbatim = {
        let stream = Case::decode(&objects).stream;
        input(0, 0, &[], &stream)
    };
    let verbatim_records = {
        let stream = Case::decode(&records).stream;
        input(0, 0, &[], &stream)
    };
    let raw_dir = {
        let dir = Dir::new(vec![DirEntry {
            name: Name::new("a").expect("valid"),
            kind: EntryKind::File,
            target: ObjectKind::Chunk,
            size: 1,
            id: chunk_id(b"0"),
        }])
        .expect("valid");
        let encoded = Object::Dir(dir).encode();
        let mut tail = vec![encoded.len() as u8];
        tail.extend(encoded);
        tail
    };
    vec![
        ("objects", objects),
        ("records", records),
        ("verbatim-objects", verbatim),
        ("verbatim-records", verbatim_records),
        ("objects-extra-stored", input(1 | 0x20, 2, &[], &[])),
        ("objects-cut-bytewise", input(1 | 0x40, 0, &[], &[])),
        ("records-cut", input(2 | 0xc0, 0, &[], &[])),
        ("lie-size", input(1, 0, &[[0, 0, 0]], &[])),
        ("lie-kind", input(2, 0, &[[0, 1, 1]], &[])),
        ("lie-missing", input(1, 0, &[[0, 2, 2]], &[])),
        ("wrap-deep", input(1, 0, &[[1, 15, 5], [1, 15, 5]], &[])),
        ("graft-base", input(1, 0, &[[2, 5, 0], [1, 14, 5]], &[])),
        ("graft-extra-records", input(2 | 0x20, 1, &[[2, 6, 1]], &[])),
        ("drop-swap", input(1, 0, &[[3, 0, 0], [4, 1, 2]], &[])),
        ("repeat-stored", input(1, 0, &[[5, 1, 0], [6, 0, 0]], &[])),
        ("records-altered", input(2, 0, &[[7, 0, 1]], &[])),
        ("root-base", input(1 | (4 << 2), 0, &[], &[])),
        ("root-chunk", input(1 | (7 << 2), 0, &[], &[])),
        ("raw-dir", input(3 | (7 << 2), 0, &[], &raw_dir)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_pass_and_do_what_they_say() {
        for (name, data) in seeds() {
            let report = run(&data);
            let done = matches!(report.end, End::Done(_));
            match name {
                "objects"
                | "records"
                | "objects-extra-stored"
                | "objects-cut-bytewise"
                | "records-cut"
                | "graft-extra-records"
                | "root-base" => {
                    assert!(report.genuine || name == "root-base", "{name}: {report:?}");
                    assert!(done, "{name}: {report:?}");
                    assert!(
                        report.stored > 0 || name == "root-base",
                        "{name}: {report:?}"
                    );
                }
                "verbatim-objects" | "verbatim-records" | "repeat-stored" => {
                    assert!(done, "{name}: {report:?}");
                }
                "lie-size" | "lie-kind" | "lie-missing" | "wrap-deep" | "graft-base"
                | "drop-swap" | "records-altered" | "root-chunk" => {
                    assert!(!done, "{name}: {report:?}");
                    assert_eq!(report.stored, 0, "{name}: {report:?}");
                }
                _ => {}
            }
            if name.starts_with("records") {
                assert!(report.records, "{name}: {report:?}");
            }
        }
    }

    /// `fits` says exactly what `build_dirs` would.
    #[test]
    fn fits_agrees_with_build_dirs() {
        for seed in 1..300 {
            let bytes = crate::checks::noise(40, seed);
            let mut listing = Listing::new();
            for pair in bytes.chunks_exact(2) {
                let Some(path) = edit_path(pair[0], pair[1]) else {
                    continue;
                };
                let file = contents().0[usize::from(pair[1] & 7)].file;
                let mut tried = listing.clone();
                tried.insert(path.clone(), file);
                assert_eq!(
                    fits(&listing, &path),
                    build_dirs(&tried).is_ok(),
                    "{path:?} in {listing:?}"
                );
                apply(&mut listing, path, Some(file));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_pass() {
        for seed in 1..200 {
            let data = crate::checks::noise(usize::try_from(seed % 97).unwrap(), seed);
            push_accept(&data);
        }
    }

    /// A store with one file under a dir, and the stored frames of the push that adds it.
    fn small_push() -> (Store, ObjectId, Vec<ToStore>) {
        let chunk = Object::Chunk(b"0".to_vec());
        let chunk_ref = chunk_id(b"0");
        let dir = Object::Dir(
            Dir::new(vec![DirEntry {
                name: Name::new("a").unwrap(),
                kind: EntryKind::File,
                target: ObjectKind::Chunk,
                size: 1,
                id: chunk_ref,
            }])
            .unwrap(),
        );
        let to_store = |object: &Object| ToStore {
            id: object.id(),
            info: ObjectInfo::of(object),
            frame: compress_object(&object.encode()).into(),
        };
        let root = dir.id();
        (Store::new(), root, vec![to_store(&chunk), to_store(&dir)])
    }

    fn done(stores: Vec<Vec<Vec<ToStore>>>) -> Outcome {
        let count = stores.iter().flatten().flatten().count();
        let bytes = stores
            .iter()
            .flatten()
            .flatten()
            .map(|item| item.frame.len() as u64)
            .sum();
        Outcome {
            stores,
            end: End::Done(Accepted {
                objects: count,
                bytes,
            }),
            upload: Vec::new(),
            records: false,
        }
    }

    #[test]
    fn consistent_outcome_passes() {
        let (store, root, items) = small_push();
        let outcome = done(vec![vec![vec![items[0].clone()], vec![items[1].clone()]]]);
        let after = check_outcome(&store, root, &outcome);
        assert_eq!(after.len(), 2);
    }

    #[test]
    #[should_panic(expected = "closure broken")]
    fn a_dir_in_the_layer_of_its_child_fails() {
        let (store, root, items) = small_push();
        check_outcome(&store, root, &done(vec![vec![items]]));
    }

    #[test]
    #[should_panic(expected = "inconsistent tree")]
    fn a_root_left_unstored_fails() {
        let (store, root, items) = small_push();
        check_outcome(&store, root, &done(vec![vec![vec![items[0].clone()]]]));
    }

    #[test]
    #[should_panic(expected = "stored objects")]
    fn a_refusal_that_stored_fails() {
        let (store, root, items) = small_push();
        let mut outcome = done(vec![vec![vec![items[0].clone()]]]);
        outcome.end = End::Rejected(Rejection::RootMissing(root));
        check_outcome(&store, root, &outcome);
    }

    #[test]
    #[should_panic(expected = "wrong kind or size")]
    fn a_stored_object_with_a_wrong_size_fails() {
        let (store, root, mut items) = small_push();
        items[0].info.size = 2;
        check_outcome(&store, root, &done(vec![vec![vec![items[0].clone()]]]));
    }

    /// A chain of dirs 65 deep, stored properly, layer by layer: each object's closure holds
    /// but a path is past the depth limit.
    #[test]
    #[should_panic(expected = "past the limits")]
    fn a_path_past_the_limits_fails() {
        let (store, mut root, items) = small_push();
        let mut layers = vec![vec![items[0].clone()], vec![items[1].clone()]];
        for _ in 0..MAX_PATH_DEPTH {
            let dir =
                Object::Dir(Dir::new(vec![DirEntry::dir(Name::new("d").unwrap(), root)]).unwrap());
            root = dir.id();
            layers.push(vec![ToStore {
                id: root,
                info: ObjectInfo::of(&dir),
                frame: compress_object(&dir.encode()).into(),
            }]);
        }
        check_outcome(&store, root, &done(vec![layers]));
    }

    #[test]
    fn the_reference_refuses_what_it_should() {
        let (store, root, items) = small_push();
        let decoded = |item: &ToStore| (item.id, verify_frame(&item.id, &item.frame).unwrap().0);
        let upload = [decoded(&items[0]), decoded(&items[1])];
        assert!(acceptable(&store, &upload, root));
        // Parent before child.
        assert!(!acceptable(
            &store,
            &[upload[1].clone(), upload[0].clone()],
            root
        ));
        // A root that is a chunk.
        assert!(!acceptable(&store, &upload, items[0].id));
        // A root nobody has.
        assert!(!acceptable(&store, &upload[..1], root));
    }
}
