//! Property tests of tree building, diff, planning and negotiation against simple references:
//! the diff against "compare the two full listings", the push plan against "everything reachable
//! from the new root and not from the base", the negotiation against "everything the server does
//! not hold".

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;
use sync_protocol::diff::{Change, DiffError, DiffWalk, apply_changes, diff, diff_listings};
use sync_protocol::limits::{CHUNK_MIN_SIZE, MAX_PATH_DEPTH};
use sync_protocol::negotiate::{
    AnswerError, Asking, NEGOTIATE_BATCH_SIZE, QuestionError, Step, answer_question, negotiate,
};
use sync_protocol::object::{Dir, DirEntry, EntryKind, FileChunk, FileObject, Object, chunk_id};
use sync_protocol::patch::{Record, patch_tree, records_of_changes};
use sync_protocol::plan::{PushPlanError, plan_push};
use sync_protocol::respond::{PullRejection, StoredObject, respond};
use sync_protocol::stream::decode_stream;
use sync_protocol::tree::{
    EncodedTree, FileRef, Listing, MemoryObjects, ObjectSource, Path, TreeError, build_dirs,
    build_tree, empty_dir_id, encode_file_fixed, flatten, references,
};
use sync_protocol::{Name, ObjectId};

const CASES: u32 = 256;

/// Splits files into pieces of the minimum chunk size: valid chunks, and multi-chunk files stay
/// small enough for hundreds of cases. Stands in for the content-defined chunker.
fn encode_small_pieces(contents: &[u8]) -> (FileRef, Vec<(ObjectId, Object)>) {
    let piece = CHUNK_MIN_SIZE as usize;
    if contents.len() <= piece {
        return encode_file_fixed(contents);
    }
    let mut objects = Vec::new();
    let mut chunks = Vec::new();
    for bytes in contents.chunks(piece) {
        let id = chunk_id(bytes);
        chunks.push(FileChunk {
            id,
            len: bytes.len() as u32,
        });
        objects.push((id, Object::Chunk(bytes.to_vec())));
    }
    let object = Object::File(FileObject::new(chunks).unwrap());
    let id = object.id();
    objects.push((id, object));
    let file_ref = FileRef {
        kind: EntryKind::File,
        target: sync_protocol::ObjectKind::File,
        size: contents.len() as u64,
        id,
    };
    (file_ref, objects)
}

/// File contents, kept symbolic so that edits can share pieces with the old version.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    /// `len` bytes of `seed`: one chunk.
    Small { seed: u8, len: u8 },
    /// One piece of the minimum chunk size per seed, then a short tail: a file object.
    Big { blocks: Vec<u8>, tail: u8 },
}

impl Content {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Small { seed, len } => vec![*seed; usize::from(*len)],
            Self::Big { blocks, tail } => {
                let mut out = Vec::new();
                for seed in blocks {
                    out.extend(std::iter::repeat_n(*seed, CHUNK_MIN_SIZE as usize));
                }
                out.extend(std::iter::repeat_n(0xee, usize::from(*tail) + 1));
                out
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Leaf {
    File { content: Content, executable: bool },
    EmptyDir,
}

type Spec = BTreeMap<Vec<String>, Leaf>;

/// "a.b" sorts between "a" and "a/…" in a listing but after "a" in a dir: both orders get used.
const NAMES: [&str; 4] = ["a", "b", "c", "a.b"];

fn content_strategy() -> impl Strategy<Value = Content> {
    prop_oneof![
        5 => (0u8..6, 0u8..4).prop_map(|(seed, len)| Content::Small { seed, len }),
        1 => (prop::collection::vec(0u8..3, 1..3), 0u8..3)
            .prop_map(|(blocks, tail)| Content::Big { blocks, tail }),
    ]
}

fn leaf_strategy() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        8 => (content_strategy(), prop::bool::weighted(0.15))
            .prop_map(|(content, executable)| Leaf::File { content, executable }),
        1 => Just(Leaf::EmptyDir),
    ]
}

fn path_strategy() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(0usize..NAMES.len(), 1..5)
        .prop_map(|indices| indices.into_iter().map(|i| NAMES[i].to_owned()).collect())
}

/// Inserts unless the path clashes with the tree: taken, under a file or empty dir, or above
/// something already there.
fn insert_checked(spec: &mut Spec, path: Vec<String>, leaf: Leaf) -> bool {
    let blocked = (1..path.len()).any(|len| spec.contains_key(&path[..len]))
        || spec.keys().any(|existing| existing.starts_with(&path));
    if !blocked {
        spec.insert(path, leaf);
    }
    !blocked
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    prop::collection::vec((path_strategy(), leaf_strategy()), 0..14).prop_map(|items| {
        let mut spec = Spec::new();
        for (path, leaf) in items {
            insert_checked(&mut spec, path, leaf);
        }
        spec
    })
}

#[derive(Debug, Clone)]
enum Edit {
    Remove(usize),
    Modify(usize, Content),
    ToggleExecutable(usize),
    Add(Vec<String>, Leaf),
    Move(usize, Vec<String>),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>()).prop_map(Edit::Remove),
        (any::<usize>(), content_strategy()).prop_map(|(i, c)| Edit::Modify(i, c)),
        (any::<usize>()).prop_map(Edit::ToggleExecutable),
        (path_strategy(), leaf_strategy()).prop_map(|(p, l)| Edit::Add(p, l)),
        (any::<usize>(), path_strategy()).prop_map(|(i, p)| Edit::Move(i, p)),
    ]
}

fn apply_edits(old: &Spec, edits: &[Edit]) -> Spec {
    let mut spec = old.clone();
    for edit in edits {
        let keys: Vec<Vec<String>> = spec.keys().cloned().collect();
        let pick = |i: &usize| (!keys.is_empty()).then(|| keys[i % keys.len()].clone());
        match edit {
            Edit::Remove(i) => {
                if let Some(key) = pick(i) {
                    spec.remove(&key);
                }
            }
            Edit::Modify(i, content) => {
                if let Some(key) = pick(i)
                    && let Some(Leaf::File { content: old, .. }) = spec.get_mut(&key)
                {
                    *old = content.clone();
                }
            }
            Edit::ToggleExecutable(i) => {
                if let Some(key) = pick(i)
                    && let Some(Leaf::File { executable, .. }) = spec.get_mut(&key)
                {
                    *executable = !*executable;
                }
            }
            Edit::Add(path, leaf) => {
                insert_checked(&mut spec, path.clone(), leaf.clone());
            }
            Edit::Move(i, to) => {
                if let Some(key) = pick(i)
                    && let Some(leaf) = spec.remove(&key)
                    && !insert_checked(&mut spec, to.clone(), leaf.clone())
                {
                    spec.insert(key, leaf);
                }
            }
        }
    }
    spec
}

/// Edits that bring only fresh content: modified and added files get bytes no other file of
/// either tree has (seeds 100 and up are never generated otherwise), big files keep their other
/// pieces. No removals, no moves, no new empty dirs: nothing in the new tree's changed part can
/// be an object the old tree already has.
fn apply_fresh_edits(old: &Spec, edits: &[(usize, bool, Vec<String>)]) -> Spec {
    let mut spec = old.clone();
    for (round, (i, modify, path)) in edits.iter().enumerate() {
        let seed = 100 + round as u8;
        let keys: Vec<Vec<String>> = spec.keys().cloned().collect();
        if *modify && !keys.is_empty() {
            if let Some(Leaf::File { content, .. }) = spec.get_mut(&keys[i % keys.len()]) {
                match content {
                    // At least one byte: every empty file is the same chunk.
                    Content::Small { len, .. } => {
                        *content = Content::Small {
                            seed,
                            len: (*len).max(1),
                        }
                    }
                    Content::Big { blocks, .. } => {
                        let index = i % blocks.len();
                        blocks[index] = seed;
                    }
                }
            }
        } else {
            let leaf = Leaf::File {
                content: Content::Small { seed, len: 3 },
                executable: false,
            };
            insert_checked(&mut spec, path.clone(), leaf);
        }
    }
    spec
}

fn to_path(components: &[String]) -> Path {
    Path::new(&components.join("/")).unwrap()
}

/// Encodes a spec into `objects` and returns the encoded tree.
fn encode(spec: &Spec, objects: &mut MemoryObjects) -> EncodedTree {
    let entries = spec.iter().map(|(path, leaf)| match leaf {
        Leaf::File {
            content,
            executable,
        } => {
            let kind = if *executable {
                EntryKind::Executable
            } else {
                EntryKind::File
            };
            (to_path(path), kind, content.bytes())
        }
        Leaf::EmptyDir => (to_path(path), EntryKind::Dir, Vec::new()),
    });
    let tree = build_tree(entries, encode_small_pieces).unwrap();
    objects.extend(tree.objects.iter().cloned());
    tree
}

/// Everything reachable from `root`, by a plain walk of the whole tree.
fn reachable(objects: &MemoryObjects, root: &ObjectId) -> HashSet<ObjectId> {
    let mut seen = HashSet::new();
    let mut stack = vec![*root];
    while let Some(id) = stack.pop() {
        if seen.insert(id) {
            stack.extend(references(objects.get(&id).expect("tree is complete")));
        }
    }
    seen
}

/// Every object's references are earlier in `order` or in `stored`.
fn assert_children_first(objects: &MemoryObjects, order: &[ObjectId], stored: &HashSet<ObjectId>) {
    let mut sent = HashSet::new();
    for id in order {
        for child in references(objects.get(id).unwrap()) {
            assert!(
                sent.contains(&child) || stored.contains(&child),
                "{id} sent before its child {child}"
            );
        }
        assert!(sent.insert(*id), "{id} sent twice");
    }
}

/// Dirs a diff may read: each differs on at least one side, so it is a proper ancestor (the
/// root included) of a changed path; each may be read once per side.
fn dirs_read_bound(changes: &[Change]) -> usize {
    let mut ancestors: HashSet<String> = HashSet::new();
    for change in changes {
        let mut prefix = String::new();
        ancestors.insert(String::new());
        let components: Vec<&str> = change.path().components().collect();
        for component in &components[..components.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            ancestors.insert(prefix.clone());
        }
    }
    2 * ancestors.len()
}

fn pair_strategy() -> impl Strategy<Value = (Spec, Spec)> {
    (
        spec_strategy(),
        prop::collection::vec(edit_strategy(), 0..6),
    )
        .prop_map(|(old, edits)| {
            let new = apply_edits(&old, &edits);
            (old, new)
        })
}

struct Pair {
    objects: MemoryObjects,
    old: EncodedTree,
    new: EncodedTree,
}

fn encode_pair(old: &Spec, new: &Spec) -> Pair {
    let mut objects = MemoryObjects::new();
    let old = encode(old, &mut objects);
    let new = encode(new, &mut objects);
    Pair { objects, old, new }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn diff_equals_listing_comparison((old, new) in pair_strategy()) {
        let pair = encode_pair(&old, &new);
        let old_listing = flatten(&pair.objects, &pair.old.root).unwrap();
        let new_listing = flatten(&pair.objects, &pair.new.root).unwrap();
        prop_assert_eq!(&old_listing, &pair.old.listing);
        prop_assert_eq!(&new_listing, &pair.new.listing);
        let result = diff(&pair.objects, &pair.old.root, &pair.new.root).unwrap();
        prop_assert_eq!(result.changes, diff_listings(&old_listing, &new_listing));
    }

    #[test]
    fn patching_the_old_tree_with_the_diff_builds_the_new_dirs((old, new) in pair_strategy()) {
        let pair = encode_pair(&old, &new);
        let changes = diff_listings(&pair.old.listing, &pair.new.listing);
        let mut by_path: BTreeMap<Path, Option<FileRef>> = BTreeMap::new();
        for change in &changes {
            by_path.insert(change.path().clone(), change.after().copied());
        }
        let patched = patch_tree(&pair.objects, pair.old.root, &by_path).unwrap();
        prop_assert_eq!(patched.root, pair.new.root);
        let built = build_dirs(&pair.new.listing).unwrap();
        let new_dirs: HashSet<ObjectId> = built.dirs.iter().map(|(id, _)| *id).collect();
        for (id, _) in &patched.dirs {
            // build_dirs leaves out the empty dir, which every tree may use without storing it.
            prop_assert!(
                new_dirs.contains(id) || *id == empty_dir_id(),
                "patched dir {id} is not in the new tree"
            );
        }
        // Records built from the diff carry the same paths and entries.
        let records = records_of_changes(&changes, |_, _, _| None);
        prop_assert_eq!(records.len(), by_path.len());
        for record in &records {
            let expected = by_path[record.path()];
            match record {
                Record::Remove { .. } => prop_assert_eq!(expected, None),
                Record::Entry { entry, .. } => prop_assert_eq!(expected, Some(*entry)),
                Record::Content { .. } => prop_assert!(false, "no content was asked for"),
            }
        }
    }

    #[test]
    fn applying_the_diff_gives_the_new_listing((old, new) in pair_strategy()) {
        let pair = encode_pair(&old, &new);
        let result = diff(&pair.objects, &pair.old.root, &pair.new.root).unwrap();
        let mut listing = pair.old.listing.clone();
        apply_changes(&mut listing, &result.changes);
        prop_assert_eq!(listing, pair.new.listing);
    }

    #[test]
    fn building_a_flattened_tree_gives_its_root(spec in spec_strategy()) {
        let mut objects = MemoryObjects::new();
        let tree = encode(&spec, &mut objects);
        let listing = flatten(&objects, &tree.root).unwrap();
        let built = build_dirs(&listing).unwrap();
        prop_assert_eq!(built.root, tree.root);
        prop_assert_eq!(built.dirs.last().map(|(id, _)| *id), Some(tree.root));
        let dirs: HashSet<ObjectId> = built.dirs.iter().map(|(id, _)| *id).collect();
        prop_assert_eq!(dirs.len(), built.dirs.len(), "each dir once");
        assert_children_first(&objects, &built.dirs.iter().map(|(id, _)| *id)
            .collect::<Vec<_>>(), &reachable(&objects, &tree.root).into_iter()
            .filter(|id| !dirs.contains(id)).collect());
    }

    #[test]
    fn push_plan_closes_the_new_tree((old, new) in pair_strategy()) {
        let pair = encode_pair(&old, &new);
        let plan = plan_push(&pair.objects, &pair.old.root, &pair.new.root).unwrap();
        let from_base = reachable(&pair.objects, &pair.old.root);
        let from_new = reachable(&pair.objects, &pair.new.root);
        let planned: HashSet<ObjectId> = plan.objects.iter().copied().collect();
        for id in &from_new {
            prop_assert!(planned.contains(id) || from_base.contains(id), "{} not sent", id);
        }
        prop_assert!(planned.is_subset(&from_new), "only objects of the new tree are sent");
        assert_children_first(&pair.objects, &plan.objects, &from_base);
        // The server's pull of the same change sends the same objects, in the same order.
        let pull = respond(pair.old.root, pair.new.root, false, |id| stored(&pair.objects, id)).unwrap();
        let pulled: Vec<ObjectId> = decode_stream(&pull.stream).unwrap().iter().map(|frame| frame.id).collect();
        prop_assert_eq!(pulled, plan.objects);
    }

    #[test]
    fn push_plan_is_exact_without_moved_content(
        old in spec_strategy(),
        edits in prop::collection::vec((any::<usize>(), any::<bool>(), path_strategy()), 0..6),
    ) {
        let new = apply_fresh_edits(&old, &edits);
        let pair = encode_pair(&old, &new);
        let plan = plan_push(&pair.objects, &pair.old.root, &pair.new.root).unwrap();
        let from_base = reachable(&pair.objects, &pair.old.root);
        let from_new = reachable(&pair.objects, &pair.new.root);
        let planned: HashSet<ObjectId> = plan.objects.iter().copied().collect();
        let expected: HashSet<ObjectId> = from_new.difference(&from_base).copied().collect();
        prop_assert_eq!(planned, expected);
    }

    #[test]
    fn diff_reads_grow_with_the_change((old, new) in pair_strategy()) {
        let pair = encode_pair(&old, &new);
        let result = diff(&pair.objects, &pair.old.root, &pair.new.root).unwrap();
        let bound = dirs_read_bound(&result.changes);
        prop_assert!(result.dirs_read <= bound, "read {} dirs, bound {}", result.dirs_read, bound);
        if result.changes.is_empty() {
            prop_assert_eq!(result.dirs_read, 0);
            prop_assert!(result.new_objects.is_empty());
        }
        // The same bound, written as in the issue: per changed path, both sides of each level.
        let depth = result.changes.iter().map(|c| c.path().depth()).max().unwrap_or(0);
        prop_assert!(result.dirs_read <= 2 * result.changes.len() * depth);
    }

    #[test]
    fn batch_order_does_not_matter((old, new) in pair_strategy()) {
        let pair = encode_pair(&old, &new);
        let expected = diff(&pair.objects, &pair.old.root, &pair.new.root).unwrap();
        let mut walk = DiffWalk::new(pair.old.root, pair.new.root);
        while !walk.is_done() {
            let mut batch = walk.wants().to_vec();
            batch.reverse();
            for id in batch {
                walk.provide(id, pair.objects.get(&id).unwrap().clone()).unwrap();
            }
        }
        prop_assert_eq!(walk.finish().unwrap(), expected);
    }

    #[test]
    fn negotiation_finds_exactly_the_missing_objects(
        spec in spec_strategy(),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut objects = MemoryObjects::new();
        let tree = encode(&spec, &mut objects);
        let all: Vec<ObjectId> = {
            let mut ids: Vec<ObjectId> = reachable(&objects, &tree.root).into_iter().collect();
            ids.sort();
            ids
        };
        // The server holds some objects and, by its closure invariant, all they reference.
        let mut server = HashSet::new();
        for pick in picks {
            server.extend(reachable(&objects, pick.get(&all)));
        }
        let expected: HashSet<ObjectId> =
            all.iter().filter(|id| !server.contains(id)).copied().collect();
        let mut asked = HashSet::new();
        let result = negotiate(&objects, tree.root, |question| {
            assert!(question.len() <= NEGOTIATE_BATCH_SIZE);
            for id in question {
                assert!(asked.insert(*id), "{id} asked twice");
            }
            answer_question(question, |id| server.contains(id))
        })
        .unwrap();
        let found: HashSet<ObjectId> = result.upload_order().iter().copied().collect();
        prop_assert_eq!(&found, &expected);
        prop_assert_eq!(found.len(), result.upload_order().len());
        assert_children_first(&objects, result.upload_order(), &server);
        // Top-down, one level per round: the root, up to 4 dirs, a file object, its chunks.
        prop_assert!(result.rounds() <= 7, "{} rounds", result.rounds());
        if server.contains(&tree.root) {
            prop_assert_eq!(result.rounds(), 1);
        }
    }
}

fn listing_of(paths: &[&str]) -> Listing {
    paths
        .iter()
        .map(|path| {
            let (file_ref, _) = encode_file_fixed(path.as_bytes());
            (Path::new(path).unwrap(), file_ref)
        })
        .collect()
}

#[test]
fn the_empty_project_is_the_empty_dir() {
    let built = build_dirs(&Listing::new()).unwrap();
    assert_eq!(built.root, empty_dir_id());
    assert_eq!(
        built.dirs,
        vec![(empty_dir_id(), Object::Dir(Dir::empty()))]
    );
    let tree = build_tree(Vec::<(Path, EntryKind, Vec<u8>)>::new(), encode_file_fixed).unwrap();
    assert_eq!(tree.root, empty_dir_id());
    let mut objects = MemoryObjects::new();
    objects.extend(built.dirs);
    assert_eq!(flatten(&objects, &built.root).unwrap(), Listing::new());
}

#[test]
fn build_rejects_case_collisions_and_conflicts() {
    assert_eq!(
        build_dirs(&listing_of(&["docs/Readme.md", "docs/README.md"])),
        Err(TreeError::CaseCollision {
            first: Path::new("docs/README.md").unwrap(),
            second: Path::new("docs/Readme.md").unwrap(),
        })
    );
    assert!(matches!(
        build_dirs(&listing_of(&["Docs/a", "docs/b"])),
        Err(TreeError::CaseCollision { .. })
    ));
    // Same name in different dirs is fine.
    assert!(build_dirs(&listing_of(&["a/readme", "b/README"])).is_ok());
    assert_eq!(
        build_dirs(&listing_of(&["a", "a/b"])),
        Err(TreeError::PathConflict {
            path: Path::new("a").unwrap(),
            descendant: Path::new("a/b").unwrap(),
        })
    );
    let mut with_empty_dir = listing_of(&["a/b"]);
    with_empty_dir.insert(Path::new("a").unwrap(), FileRef::empty_dir());
    assert!(matches!(
        build_dirs(&with_empty_dir),
        Err(TreeError::PathConflict { .. })
    ));
    let mut not_empty = Listing::new();
    let mut dir_ref = FileRef::empty_dir();
    dir_ref.id = chunk_id(b"x");
    not_empty.insert(Path::new("d").unwrap(), dir_ref);
    assert!(matches!(
        build_dirs(&not_empty),
        Err(TreeError::DirNotEmpty { .. })
    ));
    let duplicate = vec![
        (Path::new("a").unwrap(), EntryKind::File, b"1".to_vec()),
        (Path::new("a").unwrap(), EntryKind::File, b"2".to_vec()),
    ];
    assert!(matches!(
        build_tree(duplicate, encode_file_fixed),
        Err(TreeError::Duplicate { .. })
    ));
}

#[test]
fn build_tree_keeps_only_empty_dirs_and_splits_big_files() {
    let big = vec![7u8; 3 * 64 * 1024 + 5];
    let entries = vec![
        (Path::new("empty").unwrap(), EntryKind::Dir, Vec::new()),
        (
            Path::new("full.txt").unwrap(),
            EntryKind::File,
            b"x".to_vec(),
        ),
        (Path::new("full").unwrap(), EntryKind::Dir, Vec::new()),
        (
            Path::new("full/big.bin").unwrap(),
            EntryKind::Executable,
            big.clone(),
        ),
    ];
    let tree = build_tree(entries, encode_file_fixed).unwrap();
    let paths: Vec<&str> = tree.listing.keys().map(Path::as_str).collect();
    assert_eq!(paths, ["empty", "full.txt", "full/big.bin"]);
    let big_ref = tree.listing[&Path::new("full/big.bin").unwrap()];
    assert_eq!(big_ref.kind, EntryKind::Executable);
    assert_eq!(big_ref.size, big.len() as u64);
    let mut objects = MemoryObjects::new();
    objects.extend(tree.objects.clone());
    let file = objects.file(&big_ref.id).unwrap();
    assert_eq!(file.chunks().len(), 4);
    // Three equal pieces and the tail: two distinct chunks, one file; a small file; three dirs.
    assert_eq!(tree.objects.len(), 2 + 1 + 1 + 3);
    assert_eq!(tree.objects.last().unwrap().0, tree.root);
    assert_eq!(flatten(&objects, &tree.root).unwrap(), tree.listing);
}

/// A chain of single-entry dirs `depth` levels deep, built by hand (the builder refuses it).
fn chain(depth: usize, objects: &mut MemoryObjects) -> ObjectId {
    let leaf = Object::Chunk(b"x".to_vec());
    let mut id = leaf.id();
    objects.insert(id, leaf);
    let mut entry = DirEntry {
        name: Name::new("f").unwrap(),
        kind: EntryKind::File,
        target: sync_protocol::ObjectKind::Chunk,
        size: 1,
        id,
    };
    for _ in 0..depth {
        let dir = Object::Dir(Dir::new(vec![entry]).unwrap());
        id = dir.id();
        objects.insert(id, dir);
        entry = DirEntry::dir(Name::new("d").unwrap(), id);
    }
    id
}

#[test]
fn join_checks_the_limits_as_new_does() {
    use sync_protocol::limits::MAX_PATH_LEN;
    use sync_protocol::tree::{Path, PathError};
    let name = |len: usize| Name::new(&"n".repeat(len)).unwrap();
    // Length: a parent of 4,000 bytes, a name that makes the path exactly the limit, then one
    // byte more.
    let parent = Path::new(&vec!["p".repeat(199); 20].join("/")).unwrap();
    let fits = MAX_PATH_LEN - parent.as_str().len() - 1;
    let at_limit = Path::join(Some(&parent), &name(fits)).unwrap();
    assert_eq!(at_limit.as_str().len(), MAX_PATH_LEN);
    assert_eq!(Path::new(at_limit.as_str()).unwrap(), at_limit);
    let past = Path::join(Some(&parent), &name(fits + 1));
    assert!(matches!(past, Err(PathError::TooLong { len, .. }) if len == MAX_PATH_LEN + 1));
    // Depth: a parent one level short of the limit takes one more name, and no other.
    let deep = Path::new(&vec!["d"; MAX_PATH_DEPTH - 1].join("/")).unwrap();
    let at_depth = Path::join(Some(&deep), &name(1)).unwrap();
    assert_eq!(at_depth.depth(), MAX_PATH_DEPTH);
    let too_deep = Path::join(Some(&at_depth), &name(1));
    assert!(
        matches!(too_deep, Err(PathError::TooDeep { depth, .. }) if depth == MAX_PATH_DEPTH + 1)
    );
    assert!(Path::new(&format!("{at_depth}/n")).is_err());
}

#[test]
fn walks_enforce_the_depth_limit() {
    let mut objects = MemoryObjects::new();
    // A file at depth MAX_PATH_DEPTH is fine; one level more is not.
    let at_limit = chain(MAX_PATH_DEPTH, &mut objects);
    let past_limit = chain(MAX_PATH_DEPTH + 1, &mut objects);
    let empty = empty_dir_id();
    objects.insert(empty, Object::Dir(Dir::empty()));
    assert_eq!(flatten(&objects, &at_limit).unwrap().len(), 1);
    assert!(matches!(
        flatten(&objects, &past_limit),
        Err(TreeError::Path(_))
    ));
    let result = diff(&objects, &empty, &at_limit).unwrap();
    assert_eq!(result.changes.len(), 1);
    assert_eq!(result.dirs_read, MAX_PATH_DEPTH);
    assert!(matches!(
        diff(&objects, &empty, &past_limit),
        Err(DiffError::Path(_))
    ));
    assert!(matches!(
        plan_push(&objects, &empty, &past_limit),
        Err(PushPlanError::Path(_))
    ));
    assert!(matches!(
        negotiate(&objects, past_limit, |q| answer_question(q, |_| false)),
        Err(sync_protocol::negotiate::NegotiateError::Answer(
            AnswerError::TooDeep { .. }
        ))
    ));
    let done = negotiate(&objects, at_limit, |q| answer_question(q, |_| false)).unwrap();
    assert_eq!(done.upload_order().len(), MAX_PATH_DEPTH + 1);
}

#[test]
fn equal_roots_read_nothing() {
    let objects = MemoryObjects::new();
    let root = chunk_id(b"not even stored");
    let result = diff(&objects, &root, &root).unwrap();
    assert_eq!((result.dirs_read, result.files_read), (0, 0));
    assert!(result.changes.is_empty() && result.new_objects.is_empty());
    let mut reads = 0;
    let pull = respond(root, root, true, |_| {
        reads += 1;
        None
    })
    .unwrap();
    assert_eq!((pull.items, reads), (0, 0));
}

#[test]
fn missing_objects_are_reported_by_side() {
    let mut objects = MemoryObjects::new();
    let tree = build_tree(
        vec![(Path::new("a").unwrap(), EntryKind::File, b"1".to_vec())],
        encode_file_fixed,
    )
    .unwrap();
    objects.extend(tree.objects.clone());
    let unknown = chunk_id(b"unknown root");
    // A have the store does not hold: the pull answers the whole wanted tree.
    let whole = respond(unknown, tree.root, true, |id| stored(&objects, id)).unwrap();
    assert_eq!(whole.items as usize, tree.objects.len());
    assert_eq!(
        plan_push(&objects, &unknown, &tree.root),
        Err(PushPlanError::BaseUnavailable { id: unknown })
    );
    assert_eq!(
        respond(tree.root, unknown, true, |id| stored(&objects, id)),
        Err(PullRejection::RootMissing(unknown))
    );
    // A wrong kind and an unasked object are refused by the walk itself.
    let mut walk = DiffWalk::new(empty_dir_id(), tree.root);
    assert!(matches!(
        walk.provide(tree.root, Object::Chunk(Vec::new())),
        Err(DiffError::WrongKind { .. })
    ));
    assert!(matches!(
        walk.provide(unknown, Object::Dir(Dir::empty())),
        Err(DiffError::NotWanted { .. })
    ));
    assert!(!walk.is_done());
    assert!(matches!(walk.finish(), Err(DiffError::Unfinished)));
}

#[test]
fn negotiation_rejects_bad_answers_and_questions() {
    let mut objects = MemoryObjects::new();
    let root = chain(2, &mut objects);
    let asking = Asking::start(root);
    assert_eq!(asking.question(), [root]);
    let stranger = chunk_id(b"stranger");
    assert!(matches!(
        asking.answer(&[stranger], &objects),
        Err(AnswerError::NotAsked { .. })
    ));
    let asking = Asking::start(root);
    assert!(matches!(
        asking.answer(&[root], &MemoryObjects::new()),
        Err(AnswerError::LocalMissing { .. })
    ));
    let asking = Asking::start(root);
    match asking.answer(&[], &objects).unwrap() {
        Step::Done(done) => {
            assert!(done.upload_order().is_empty());
            assert_eq!(done.rounds(), 1);
        }
        Step::Ask(_) => panic!("a present root ends the negotiation"),
    }
    let too_many = vec![root; NEGOTIATE_BATCH_SIZE + 1];
    assert_eq!(
        answer_question(&too_many, |_| true),
        Err(QuestionError::TooLarge {
            len: NEGOTIATE_BATCH_SIZE + 1
        })
    );
    assert_eq!(answer_question(&too_many[1..], |_| true), Ok(Vec::new()));
}

#[test]
fn negotiation_batches_are_bounded() {
    // A dir with more children than one question holds takes several rounds at its level.
    let entries: Vec<DirEntry> = (0..NEGOTIATE_BATCH_SIZE + 10)
        .map(|i| {
            let body = i.to_le_bytes();
            DirEntry {
                name: Name::new(&format!("f{i}")).unwrap(),
                kind: EntryKind::File,
                target: sync_protocol::ObjectKind::Chunk,
                size: body.len() as u64,
                id: chunk_id(&body),
            }
        })
        .collect();
    let mut objects = MemoryObjects::new();
    let root = Object::Dir(Dir::new(entries).unwrap());
    let root_id = root.id();
    objects.insert(root_id, root);
    let mut sizes = Vec::new();
    let done = negotiate(&objects, root_id, |q| {
        sizes.push(q.len());
        answer_question(q, |_| false)
    })
    .unwrap();
    assert_eq!(sizes, [1, NEGOTIATE_BATCH_SIZE, 10]);
    assert_eq!(done.rounds(), 3);
    assert_eq!(done.upload_order().len(), NEGOTIATE_BATCH_SIZE + 11);
    assert_eq!(*done.upload_order().last().unwrap(), root_id);
}

#[test]
fn big_file_edit_sends_only_the_changed_chunk() {
    let mut objects = MemoryObjects::new();
    let mut old = vec![1u8; 64 * 1024];
    old.extend(vec![2u8; 64 * 1024]);
    old.extend(vec![3u8; 100]);
    let mut new = old.clone();
    new[70_000] = 9;
    let tree = |bytes: &[u8], objects: &mut MemoryObjects| {
        let tree = build_tree(
            vec![(
                Path::new("dir/big").unwrap(),
                EntryKind::File,
                bytes.to_vec(),
            )],
            encode_file_fixed,
        )
        .unwrap();
        objects.extend(tree.objects.clone());
        tree.root
    };
    let old_root = tree(&old, &mut objects);
    let new_root = tree(&new, &mut objects);
    let plan = plan_push(&objects, &old_root, &new_root).unwrap();
    // The edited chunk, the new file object, dir and root; the two unchanged chunks stay.
    assert_eq!(plan.objects.len(), 4);
    assert_eq!(plan.files_read, 2);
    assert_eq!(plan.dirs_read, 4);
    let kinds: Vec<_> = plan
        .objects
        .iter()
        .map(|id| objects.get(id).unwrap().kind())
        .collect();
    use sync_protocol::ObjectKind::{Chunk, Dir as DirKind, File};
    assert_eq!(kinds, [Chunk, File, DirKind, DirKind]);
}

/// An object of `objects` as a store returns it: decoded, and its frame.
fn stored(objects: &MemoryObjects, id: &ObjectId) -> Option<StoredObject> {
    let object = objects.get(id)?.clone();
    let frame = sync_protocol::compress_object(&object.encode()).into();
    Some(StoredObject { object, frame })
}
