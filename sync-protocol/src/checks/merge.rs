//! Invariants of three-way merge, checked against simple references rather than against the
//! merge's own reasoning.
//!
//! [`tree_merge`] turns arbitrary bytes into three small listings and runs
//! [`merge_invariants`] on them. The listings are built from a tiny alphabet (names that clash
//! by case, a name past the length a conflict copy can keep, names that look like conflict
//! copies, a few content ids, empty dirs) so that conflicts, file/dir clashes and name
//! collisions are the common case, not the rare one.

use crate::id::ObjectId;
use crate::merge::{Conflict, MergeError, MergeOutcome, Side, merge};
use crate::name::fold_key;
use crate::object::{EntryKind, ObjectKind, chunk_id};
use crate::tree::{FileRef, Listing, Path};

/// The most edits [`tree_merge`] decodes, to keep one run fast.
const MAX_EDITS: usize = 48;

/// Which listings an [`Edit`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The base, which ours and theirs then start from.
    Base,
    Ours,
    Theirs,
    /// Ours and theirs alike: the same change made on both sides.
    Both,
}

/// What an [`Edit`] does at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Puts [`content`]`(index)` at the path.
    Put(u8),
    /// Removes the entry at the path.
    Remove,
    /// Removes the path and everything under it.
    RemoveTree,
}

/// One change to the generated listings: a path of 1 to 3 names from [`names`] and an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edit {
    pub target: Target,
    pub action: Action,
    /// Indexes into [`names`]; only the first `depth` are used.
    pub components: [u8; 3],
    /// 1 to 3.
    pub depth: u8,
}

/// The name alphabet: case and fold clashes (`a`/`A`, `ß`/`ss`), a 250-byte name whose
/// conflict copy must be cut, and two spellings of the copy name `a`'s content 0 would get.
pub fn names() -> Vec<String> {
    let copy_of_a = format!("a.conflict-{}", content_id(0).short());
    vec![
        "a".to_owned(),
        "A".to_owned(),
        "b".to_owned(),
        "ß".to_owned(),
        "ss".to_owned(),
        "x".repeat(250),
        copy_of_a.clone(),
        copy_of_a.to_uppercase(),
    ]
}

fn content_id(index: u8) -> ObjectId {
    chunk_id(&[index])
}

/// The content alphabet: four files, two of them also as executables, and the empty dir.
pub fn content(index: u8) -> FileRef {
    let file = |id: u8, kind| FileRef {
        kind,
        target: ObjectKind::Chunk,
        size: 1,
        id: content_id(id),
    };
    match index % 7 {
        0..=3 => file(index % 7, EntryKind::File),
        4 => file(0, EntryKind::Executable),
        5 => file(1, EntryKind::Executable),
        _ => FileRef::empty_dir(),
    }
}

/// Decodes an edit from three bytes; every byte string decodes to something.
fn decode_edit(bytes: [u8; 3]) -> Edit {
    let [first, second, third] = bytes;
    let target = match first & 3 {
        0 => Target::Base,
        1 => Target::Ours,
        2 => Target::Theirs,
        _ => Target::Both,
    };
    let action = match (first >> 2) & 7 {
        0..=4 => Action::Put(third >> 3),
        5 | 6 => Action::Remove,
        _ => Action::RemoveTree,
    };
    Edit {
        target,
        action,
        components: [second & 7, (second >> 3) & 7, third & 7],
        depth: 1 + (first >> 5) % 3,
    }
}

/// Builds base, ours and theirs from `edits`: base from the base edits, then ours and theirs
/// from a copy of base each. With `keep_valid`, an edit that would break the tree (an entry
/// inside a file, two names equal up to case) is skipped; without, it is applied as it is.
pub fn listings(edits: &[Edit], keep_valid: bool) -> (Listing, Listing, Listing) {
    let names = names();
    let path_of = |edit: &Edit| {
        let depth = usize::from(edit.depth.clamp(1, 3));
        let text: Vec<&str> = edit.components[..depth]
            .iter()
            .map(|&index| names[usize::from(index) % names.len()].as_str())
            .collect();
        Path::new(&text.join("/")).ok()
    };
    let apply = |listing: &mut Listing, edit: &Edit| {
        let Some(path) = path_of(edit) else { return };
        match edit.action {
            Action::Put(index) => put(listing, path, content(index), keep_valid),
            Action::Remove => {
                listing.remove(&path);
            }
            Action::RemoveTree => listing.retain(|key, _| !is_within(key, &path)),
        }
    };
    let mut base = Listing::new();
    for edit in edits.iter().filter(|edit| edit.target == Target::Base) {
        apply(&mut base, edit);
    }
    let (mut ours, mut theirs) = (base.clone(), base.clone());
    for edit in edits {
        match edit.target {
            Target::Base => {}
            Target::Ours => apply(&mut ours, edit),
            Target::Theirs => apply(&mut theirs, edit),
            Target::Both => {
                apply(&mut ours, edit);
                apply(&mut theirs, edit);
            }
        }
    }
    (base, ours, theirs)
}

fn put(listing: &mut Listing, path: Path, file: FileRef, keep_valid: bool) {
    if keep_valid {
        let mut ancestors = Vec::new();
        let mut parent = path.parent();
        while let Some(dir) = parent {
            match listing.get(&dir) {
                Some(entry) if !entry.is_dir() => return,
                Some(_) => ancestors.push(dir.clone()),
                None => {}
            }
            parent = dir.parent();
        }
        let blocked = listing.keys().any(|key| {
            is_within(key, &path) && *key != path || case_clash(key.as_str(), path.as_str())
        });
        if blocked {
            return;
        }
        // Adding inside an empty dir makes it a dir that is not empty.
        for dir in ancestors {
            listing.remove(&dir);
        }
    }
    listing.insert(path, file);
}

/// `path` is `dir` or lies under it.
fn is_within(path: &Path, dir: &Path) -> bool {
    path.as_str()
        .strip_prefix(dir.as_str())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The first components where the two paths differ are equal up to case.
fn case_clash(first: &str, second: &str) -> bool {
    first
        .split('/')
        .zip(second.split('/'))
        .find(|(a, b)| a != b)
        .is_some_and(|(a, b)| fold_key(a) == fold_key(b))
}

/// The fuzz target: decodes `data` into three listings and checks [`merge_invariants`].
pub fn tree_merge(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let edits: Vec<Edit> = rest
        .chunks_exact(3)
        .take(MAX_EDITS)
        .map(|bytes| decode_edit([bytes[0], bytes[1], bytes[2]]))
        .collect();
    // Mostly valid inputs, where every invariant applies; sometimes raw ones, which merge must
    // reject with a typed error and no panic.
    let keep_valid = mode % 8 != 7;
    let (base, ours, theirs) = listings(&edits, keep_valid);
    merge_invariants(&base, &ours, &theirs);
}

/// What is wrong with `listing` as a tree, by brute force over all pairs of paths.
pub fn tree_problem(listing: &Listing) -> Option<String> {
    let empty_dir = FileRef::empty_dir();
    for (path, file) in listing {
        if Path::new(path.as_str()).as_ref() != Ok(path) {
            return Some(format!("{path:?} is not a valid path"));
        }
        if file.is_dir() && *file != empty_dir {
            return Some(format!("{path:?} is a dir entry but not the empty dir"));
        }
        if !file.is_dir() && file.target == ObjectKind::Dir {
            return Some(format!("{path:?} is a file pointing at a dir"));
        }
    }
    let paths: Vec<&Path> = listing.keys().collect();
    for (index, first) in paths.iter().enumerate() {
        for second in &paths[index + 1..] {
            if is_within(second, first) || is_within(first, second) {
                return Some(format!("{first:?} and {second:?}: one is inside the other"));
            }
            if case_clash(first.as_str(), second.as_str()) {
                return Some(format!("{first:?} and {second:?} clash by case"));
            }
        }
    }
    None
}

fn run(base: &Listing, ours: &Listing, theirs: &Listing) -> MergeOutcome {
    match merge(base, ours, theirs) {
        Ok(outcome) => outcome,
        Err(error) => panic!(
            "merge of valid listings failed: {error}\nbase {base:?}\nours {ours:?}\ntheirs {theirs:?}"
        ),
    }
}

/// Checks every merge invariant on one input; panics with the inputs when one breaks.
///
/// Invalid inputs must be rejected as [`MergeError::InvalidInput`] naming the first invalid
/// side. For valid ones:
/// - the result is a valid tree, and every location a conflict names exists in it;
/// - no edit of either side disappears: each entry ours or theirs changed relative to base is
///   in the result at its path, or where a conflict about the path (or a dir above it) says
///   that side's version went; an empty dir counts as kept if a dir (equal up to case) is there;
/// - entries neither side touched stay, and a deletion on one side of an entry the other left
///   alone removes it, unless a conflict copy took the name;
/// - every entry of the result is ours' or theirs' entry at that path, or a conflict's copy;
/// - `merge(b, o, t)` and `merge(b, t, o)` agree when either is clean, and are clean together;
/// - `merge(b, b, t) == t`, `merge(b, o, b) == o` and `merge(b, x, x) == x`, all clean;
/// - merging the same inputs twice gives the same outcome, and merging ours again into the
///   result leaves the result as it is (a retried merge converges).
pub fn merge_invariants(base: &Listing, ours: &Listing, theirs: &Listing) {
    let sides = [
        (Side::Base, base),
        (Side::Ours, ours),
        (Side::Theirs, theirs),
    ];
    if let Some((side, problem)) = sides
        .iter()
        .find_map(|(side, listing)| tree_problem(listing).map(|problem| (*side, problem)))
    {
        match merge(base, ours, theirs) {
            Err(MergeError::InvalidInput { side: reported, .. }) if reported == side => {}
            other => panic!("{side} is invalid ({problem}), but merge answered {other:?}"),
        }
        return;
    }
    let outcome = run(base, ours, theirs);
    let context =
        || format!("\nbase {base:?}\nours {ours:?}\ntheirs {theirs:?}\noutcome {outcome:#?}");
    if let Some(problem) = tree_problem(&outcome.merged) {
        panic!("merged listing is not a valid tree: {problem}{}", context());
    }
    for conflict in &outcome.conflicts {
        for side in [Side::Ours, Side::Theirs] {
            if let Some(at) = conflict.at(side) {
                assert!(
                    dir_or_entry_at(&outcome.merged, at.as_str(), false),
                    "conflict {conflict:?} names {at:?}, which is not in the result{}",
                    context()
                );
            }
        }
    }
    for (side, listing) in [(Side::Ours, ours), (Side::Theirs, theirs)] {
        for (path, file) in listing {
            if base.get(path) == Some(file) {
                continue;
            }
            let at = expected_location(path, side, &outcome.conflicts);
            assert!(
                kept(&outcome.merged, &at, file),
                "{side}'s edit of {path:?} ({file:?}) is not at {at:?}{}",
                context()
            );
        }
    }
    for (path, file) in base {
        let (in_ours, in_theirs) = (ours.get(path), theirs.get(path));
        if in_ours == Some(file) && in_theirs == Some(file) {
            assert!(
                kept(&outcome.merged, path.as_str(), file),
                "{path:?}, untouched on both sides, is gone{}",
                context()
            );
        }
        let deleted_one_side = (in_ours.is_none() && in_theirs == Some(file))
            || (in_theirs.is_none() && in_ours == Some(file));
        if deleted_one_side && outcome.merged.contains_key(path) {
            assert!(
                is_conflict_location(path, &outcome.conflicts),
                "{path:?}, deleted on one side and untouched on the other, is still there{}",
                context()
            );
        }
    }
    for (path, file) in &outcome.merged {
        let from_a_side = ours.get(path) == Some(file) || theirs.get(path) == Some(file);
        assert!(
            from_a_side || is_copy_of(path, file, ours, theirs, &outcome.conflicts),
            "{path:?} ({file:?}) comes from neither side{}",
            context()
        );
    }

    let swapped = run(base, theirs, ours);
    assert_eq!(
        outcome.is_clean(),
        swapped.is_clean(),
        "swapping ours and theirs changed whether the merge is clean{}",
        context()
    );
    if outcome.is_clean() {
        assert_eq!(
            outcome.merged,
            swapped.merged,
            "a clean merge depends on which side is ours{}",
            context()
        );
    }
    for (result, expected, law) in [
        (run(base, base, theirs), theirs, "merge(b, b, t) == t"),
        (run(base, ours, base), ours, "merge(b, o, b) == o"),
        (run(base, ours, ours), ours, "merge(b, o, o) == o"),
        (run(base, theirs, theirs), theirs, "merge(b, t, t) == t"),
    ] {
        assert!(
            result.is_clean() && result.merged == *expected,
            "{law} broke: {result:#?}{}",
            context()
        );
    }
    assert_eq!(
        run(base, ours, theirs),
        outcome,
        "merge is not deterministic{}",
        context()
    );
    let retried = run(base, ours, &outcome.merged);
    assert_eq!(
        retried.merged,
        outcome.merged,
        "merging ours into the merged result again changed it{}",
        context()
    );
}

/// Where `side`'s version of `path` should be: where a conflict about the path put it, else
/// moved along with the nearest dir above it that a conflict moved, else the path itself.
fn expected_location(path: &Path, side: Side, conflicts: &[Conflict]) -> String {
    let moved = |dir: &Path| {
        conflicts
            .iter()
            .filter(|conflict| conflict.path == *dir)
            .find_map(|conflict| conflict.at(side))
            .cloned()
    };
    if let Some(at) = moved(path) {
        return at.as_str().to_owned();
    }
    let mut parent = path.parent();
    while let Some(dir) = parent {
        if let Some(at) = moved(&dir).filter(|at| *at != dir) {
            return format!("{at}{}", &path.as_str()[dir.as_str().len()..]);
        }
        parent = dir.parent();
    }
    path.as_str().to_owned()
}

/// `file` is at `at`; for an empty dir, a dir whose path equals `at` up to case is there.
fn kept(merged: &Listing, at: &str, file: &FileRef) -> bool {
    if file.is_dir() {
        dir_or_entry_at(merged, at, true)
    } else {
        Path::new(at)
            .ok()
            .is_some_and(|path| merged.get(&path) == Some(file))
    }
}

/// Something of `merged` is at `at` or under it. With `dir_only`, `at` must be a dir, and
/// names are compared up to case.
fn dir_or_entry_at(merged: &Listing, at: &str, dir_only: bool) -> bool {
    let key = |text: &str| -> Vec<String> {
        if dir_only {
            text.split('/').map(fold_key).collect()
        } else {
            text.split('/').map(str::to_owned).collect()
        }
    };
    let wanted = key(at);
    merged.iter().any(|(path, file)| {
        let have = key(path.as_str());
        have.starts_with(&wanted) && (have.len() > wanted.len() || !dir_only || file.is_dir())
    })
}

fn is_conflict_location(path: &Path, conflicts: &[Conflict]) -> bool {
    conflicts.iter().any(|conflict| {
        [Side::Ours, Side::Theirs]
            .iter()
            .any(|&side| conflict.at(side).is_some_and(|at| is_within(path, at)))
    })
}

/// `file` at `path` is where a conflict says a side's entry went: the side had `file` at the
/// conflict's path, or at the matching path under it when a whole dir moved.
fn is_copy_of(
    path: &Path,
    file: &FileRef,
    ours: &Listing,
    theirs: &Listing,
    conflicts: &[Conflict],
) -> bool {
    conflicts.iter().any(|conflict| {
        [(Side::Ours, ours), (Side::Theirs, theirs)]
            .iter()
            .any(|(side, listing)| {
                let Some(at) = conflict.at(*side) else {
                    return false;
                };
                if !is_within(path, at) {
                    return false;
                }
                let rest = &path.as_str()[at.as_str().len()..];
                Path::new(&format!("{}{rest}", conflict.path))
                    .ok()
                    .is_some_and(|original| listing.get(&original) == Some(file))
            })
    })
}
