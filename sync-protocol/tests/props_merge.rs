//! Three-way merge: the invariants of `checks::merge` over generated listings, and one test per
//! merge rule.

use proptest::prelude::*;
use sync_protocol::checks::merge::{
    Action, Edit, Target, content, listings, merge_invariants, tree_merge, tree_problem,
};
use sync_protocol::limits::{MAX_DIR_ENTRIES, MAX_NAME_LEN, MAX_PATH_LEN};
use sync_protocol::merge::{ConflictKind, MergeError, MergeOutcome, Side, TreeProblem, merge};
use sync_protocol::object::{EntryKind, ObjectKind};
use sync_protocol::tree::{FileRef, Listing, Path};
use sync_protocol::{ObjectId, chunk_id};

pub(crate) fn edit() -> impl Strategy<Value = Edit> {
    (0..4u8, 0..10u8, any::<[u8; 3]>(), 1..=3u8).prop_map(|(target, action, components, depth)| {
        Edit {
            target: [Target::Base, Target::Ours, Target::Theirs, Target::Both][usize::from(target)],
            action: match action {
                0..=6 => Action::Put(action),
                7 | 8 => Action::Remove,
                _ => Action::RemoveTree,
            },
            components,
            depth,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold_on_valid_listings(edits in prop::collection::vec(edit(), 0..40)) {
        let (base, ours, theirs) = listings(&edits, true);
        merge_invariants(&base, &ours, &theirs);
    }

    #[test]
    fn invalid_listings_are_rejected_not_merged(edits in prop::collection::vec(edit(), 0..40)) {
        let (base, ours, theirs) = listings(&edits, false);
        merge_invariants(&base, &ours, &theirs);
    }

    #[test]
    fn fuzz_check_accepts_any_bytes(data in prop::collection::vec(any::<u8>(), 0..150)) {
        tree_merge(&data);
    }
}

// Targeted tests, one per rule.

pub(crate) fn path(text: &str) -> Path {
    Path::new(text).unwrap()
}

pub(crate) fn file(seed: &str) -> FileRef {
    FileRef {
        kind: EntryKind::File,
        target: ObjectKind::Chunk,
        size: seed.len() as u64,
        id: chunk_id(seed.as_bytes()),
    }
}

fn executable(seed: &str) -> FileRef {
    FileRef {
        kind: EntryKind::Executable,
        ..file(seed)
    }
}

pub(crate) fn listing(entries: &[(&str, FileRef)]) -> Listing {
    entries
        .iter()
        .map(|(text, file)| (path(text), *file))
        .collect()
}

fn short(file: &FileRef) -> String {
    file.id.short()
}

/// Merges, checks every invariant on the same inputs, and returns the outcome.
fn merged(base: &Listing, ours: &Listing, theirs: &Listing) -> MergeOutcome {
    merge_invariants(base, ours, theirs);
    merge(base, ours, theirs).unwrap()
}

/// Merges, expecting the entries `kept` and, beside them, the conflict copy of `name` holding
/// `copied`; the outcome and the copy's path.
fn merged_with_copy(
    (base, ours, theirs): (&Listing, &Listing, &Listing),
    kept: &[(&str, FileRef)],
    name: &str,
    copied: FileRef,
) -> (MergeOutcome, Path) {
    let outcome = merged(base, ours, theirs);
    let copy = path(&format!("{name}.conflict-{}", short(&copied)));
    let mut expected = listing(kept);
    expected.insert(copy.clone(), copied);
    assert_eq!(outcome.merged, expected);
    (outcome, copy)
}

/// Merges, expecting no conflict and `expected` as the merged listing.
fn assert_clean_merge(base: &Listing, ours: &Listing, theirs: &Listing, expected: &Listing) {
    let outcome = merged(base, ours, theirs);
    assert!(outcome.is_clean(), "{:?}", outcome.conflicts);
    assert_eq!(outcome.merged, *expected);
}

#[test]
fn one_sided_changes_take_that_side() {
    let base = listing(&[
        ("keep", file("k")),
        ("edit", file("1")),
        ("gone", file("g")),
    ]);
    let ours = listing(&[("keep", file("k")), ("edit", file("2")), ("new", file("n"))]);
    let theirs = listing(&[
        ("keep", file("k")),
        ("edit", file("1")),
        ("gone", file("g")),
    ]);
    assert_clean_merge(&base, &ours, &theirs, &ours);

    assert_clean_merge(&base, &theirs, &ours, &ours);
}

#[test]
fn equal_changes_on_both_sides_merge_cleanly() {
    let base = listing(&[("a", file("1")), ("b", file("b"))]);
    let both = listing(&[("a", file("2")), ("c", file("c"))]);
    assert_clean_merge(&base, &both, &both, &both);
}

#[test]
fn modify_modify_keeps_theirs_at_the_path_and_ours_beside_it() {
    let base = listing(&[("api/report.json", file("base"))]);
    let ours = listing(&[("api/report.json", file("ours"))]);
    let theirs = listing(&[("api/report.json", file("theirs"))]);
    let (outcome, copy) = merged_with_copy(
        (&base, &ours, &theirs),
        &[("api/report.json", file("theirs"))],
        "api/report.json",
        file("ours"),
    );
    assert_eq!(outcome.conflicts.len(), 1);
    let conflict = &outcome.conflicts[0];
    assert_eq!(conflict.path, path("api/report.json"));
    assert_eq!(conflict.kind, ConflictKind::BothModified);
    assert_eq!(conflict.ours_at.as_ref(), Some(&copy));
    assert_eq!(conflict.theirs_at, Some(path("api/report.json")));
    assert_eq!(conflict.local_copy(), Some(&copy));
    // The copy sorts right after the original.
    let names: Vec<&Path> = outcome.merged.keys().collect();
    assert_eq!(names, [&path("api/report.json"), &copy]);
}

#[test]
fn add_add_with_different_content_conflicts_like_modify_modify() {
    let base = Listing::new();
    let ours = listing(&[("env.json", file("ours"))]);
    let theirs = listing(&[("env.json", file("theirs"))]);
    let outcome = merged(&base, &ours, &theirs);
    assert_eq!(outcome.conflicts[0].kind, ConflictKind::BothModified);
    assert_eq!(outcome.merged.len(), 2);
    assert_eq!(outcome.merged[&path("env.json")], file("theirs"));
}

#[test]
fn executable_bit_merges_like_content() {
    let base = listing(&[("run.sh", file("x"))]);
    let chmod = listing(&[("run.sh", executable("x"))]);
    assert_clean_merge(&base, &chmod, &base, &chmod);

    let edited = listing(&[("run.sh", file("y"))]);
    let outcome = merged(&base, &chmod, &edited);
    assert_eq!(outcome.conflicts[0].kind, ConflictKind::BothModified);
    assert_eq!(outcome.merged[&path("run.sh")], file("y"));
    let copy = outcome.conflicts[0].local_copy().unwrap();
    assert_eq!(outcome.merged[copy], executable("x"));
}

#[test]
fn modify_delete_keeps_the_modified_file_either_way() {
    let base = listing(&[("a", file("1"))]);
    let modified = listing(&[("a", file("2"))]);
    let deleted = Listing::new();

    let outcome = merged(&base, &modified, &deleted);
    assert_eq!(outcome.merged, modified);
    assert_eq!(outcome.conflicts[0].kind, ConflictKind::ModifiedDeleted);
    assert_eq!(outcome.conflicts[0].ours_at, Some(path("a")));
    assert_eq!(outcome.conflicts[0].theirs_at, None);

    let outcome = merged(&base, &deleted, &modified);
    assert_eq!(outcome.merged, modified);
    assert_eq!(outcome.conflicts[0].kind, ConflictKind::DeletedModified);
    assert_eq!(outcome.conflicts[0].ours_at, None);
    assert_eq!(outcome.conflicts[0].theirs_at, Some(path("a")));
}

#[test]
fn file_against_dir_keeps_the_dir_and_copies_the_file() {
    let base = Listing::new();
    let with_file = listing(&[("a", file("f"))]);
    let with_dir_entries = [("a/x", file("x")), ("a/y/z", file("z"))];
    let with_dir = listing(&with_dir_entries);
    for (ours, theirs, file_side) in [
        (&with_file, &with_dir, Side::Ours),
        (&with_dir, &with_file, Side::Theirs),
    ] {
        let (outcome, copy) =
            merged_with_copy((&base, ours, theirs), &with_dir_entries, "a", file("f"));
        let conflict = &outcome.conflicts[0];
        assert_eq!(conflict.kind, ConflictKind::FileDir);
        assert_eq!(conflict.at(file_side), Some(&copy));
    }
}

#[test]
fn modified_file_replaced_by_a_dir_on_the_other_side_is_kept() {
    let base = listing(&[("a", file("1"))]);
    let ours = listing(&[("a", file("2"))]);
    let theirs = listing(&[("a/x", file("x"))]);
    let (outcome, _) = merged_with_copy(
        (&base, &ours, &theirs),
        &[("a/x", file("x"))],
        "a",
        file("2"),
    );
    assert_eq!(outcome.conflicts.len(), 1);
    assert_eq!(outcome.conflicts[0].kind, ConflictKind::FileDir);
    assert_eq!(outcome.conflicts[0].theirs_at, Some(path("a")));
}

#[test]
fn file_against_empty_dir_at_one_path_keeps_the_dir() {
    let base = Listing::new();
    let ours = listing(&[("a", FileRef::empty_dir())]);
    let theirs = listing(&[("a", file("f"))]);
    let kept = [("a", FileRef::empty_dir())];
    let (outcome, copy) = merged_with_copy((&base, &ours, &theirs), &kept, "a", file("f"));
    assert_eq!(outcome.conflicts[0].kind, ConflictKind::FileDir);
    assert_eq!(outcome.conflicts[0].theirs_at, Some(copy));
    assert_eq!(outcome.conflicts[0].ours_at, Some(path("a")));
}

#[test]
fn empty_dir_vanishes_when_a_file_is_added_inside() {
    let base = Listing::new();
    let ours = listing(&[("requests", FileRef::empty_dir())]);
    let theirs = listing(&[("requests/get.json", file("g"))]);
    assert_clean_merge(&base, &ours, &theirs, &theirs);

    // Also when the empty dir was in the base and only one side filled it.
    assert_clean_merge(&ours, &ours, &theirs, &theirs);
}

#[test]
fn empty_dir_merges_into_a_dir_equal_up_to_case() {
    let base = Listing::new();
    let ours = listing(&[("Assets", FileRef::empty_dir())]);
    let theirs = listing(&[("assets/logo.png", file("l"))]);
    assert_clean_merge(&base, &ours, &theirs, &theirs);
}

#[test]
fn dir_deleted_on_one_side_keeps_a_file_added_in_it_on_the_other() {
    let base = listing(&[("d/old", file("o")), ("d/sub/deep", file("d"))]);
    let ours = Listing::new();
    let theirs = listing(&[
        ("d/old", file("o")),
        ("d/sub/deep", file("d")),
        ("d/sub/new", file("n")),
    ]);
    assert_clean_merge(&base, &ours, &theirs, &listing(&[("d/sub/new", file("n"))]));
}

#[test]
fn files_equal_up_to_case_keep_theirs_and_copy_ours() {
    let base = Listing::new();
    let ours = listing(&[("Readme.md", file("o"))]);
    let theirs = listing(&[("README.md", file("t"))]);
    let kept = [("README.md", file("t"))];
    let (outcome, copy) = merged_with_copy((&base, &ours, &theirs), &kept, "Readme.md", file("o"));
    assert_eq!(
        outcome.conflicts[0].kind,
        ConflictKind::CaseClash {
            with: path("README.md")
        }
    );
    assert_eq!(outcome.conflicts[0].ours_at, Some(copy));
}

#[test]
fn dirs_equal_up_to_case_keep_theirs_and_move_ours_whole() {
    // Theirs renamed Docs to docs while ours edited a file in it and added one.
    let base = listing(&[("Docs/a", file("1"))]);
    let ours = listing(&[("Docs/a", file("2")), ("Docs/new", file("n"))]);
    let theirs = listing(&[("docs/a", file("1"))]);
    let outcome = merged(&base, &ours, &theirs);
    let moved = outcome
        .conflicts
        .iter()
        .find(|conflict| conflict.path == path("Docs"))
        .unwrap();
    assert_eq!(moved.kind, ConflictKind::CaseClash { with: path("docs") });
    let copy = moved.ours_at.clone().unwrap();
    assert!(copy.as_str().starts_with("Docs.conflict-"));
    assert_eq!(
        outcome.merged,
        listing(&[
            ("docs/a", file("1")),
            (&format!("{copy}/a"), file("2")),
            (&format!("{copy}/new"), file("n")),
        ])
    );
    let edited = outcome
        .conflicts
        .iter()
        .find(|conflict| conflict.path == path("Docs/a"))
        .unwrap();
    assert_eq!(edited.kind, ConflictKind::ModifiedDeleted);
    assert_eq!(edited.ours_at, Some(path(&format!("{copy}/a"))));
}

#[test]
fn a_file_loses_to_a_dir_equal_up_to_case() {
    let base = Listing::new();
    let ours = listing(&[("Notes/x", file("x"))]);
    let theirs = listing(&[("notes", file("n"))]);
    let kept = [("Notes/x", file("x"))];
    let (outcome, copy) = merged_with_copy((&base, &ours, &theirs), &kept, "notes", file("n"));
    assert_eq!(outcome.conflicts[0].theirs_at, Some(copy));
}

#[test]
fn taken_copy_names_get_a_counter() {
    let ours_file = file("ours");
    let hex = short(&ours_file);
    let base = listing(&[("a", file("base"))]);
    let ours = listing(&[("a", ours_file)]);
    // Theirs already has that name with other content, and a case variant of the next one.
    let theirs = listing(&[
        ("a", file("theirs")),
        (&format!("a.conflict-{hex}"), file("other")),
        (
            &format!("A.CONFLICT-{}-2", hex.to_uppercase()),
            file("other"),
        ),
    ]);
    let outcome = merged(&base, &ours, &theirs);
    let copy = path(&format!("a.conflict-{hex}-3"));
    assert_eq!(outcome.merged.get(&copy), Some(&ours_file));
    assert_eq!(outcome.conflicts[0].ours_at, Some(copy));
}

#[test]
fn an_existing_identical_copy_is_reused() {
    let ours_file = file("ours");
    let copy = format!("a.conflict-{}", short(&ours_file));
    let base = listing(&[("a", file("base"))]);
    let ours = listing(&[("a", ours_file)]);
    // The previous attempt's push went through: theirs holds the merged result already.
    let theirs = listing(&[("a", file("theirs")), (copy.as_str(), ours_file)]);
    let outcome = merged(&base, &ours, &theirs);
    assert_eq!(outcome.merged, theirs);
    assert_eq!(outcome.conflicts[0].ours_at, Some(path(&copy)));
}

/// A copy must not take a name the base had: a retried merge (against a head that already
/// holds this merge's result) pairs the copy with the base's entry at that name, and when the
/// content is the same and ours deleted that entry, it reads the copy as "unchanged on their
/// side, deleted on ours" and deletes it, losing theirs' file.
#[test]
fn copies_avoid_names_the_base_had_so_a_retried_merge_keeps_them() {
    let notes = file("notes");
    let copy = format!("notes.conflict-{}", short(&notes));
    // An earlier conflict left a copy of notes. Theirs resolved it by moving the copy back;
    // ours deleted the copy and made notes a folder.
    let base = listing(&[(copy.as_str(), notes)]);
    let ours = listing(&[("notes/todo", file("todo"))]);
    let theirs = listing(&[("notes", notes)]);
    let outcome = merged(&base, &ours, &theirs);
    let fresh = path(&format!("{copy}-2"));
    assert_eq!(
        outcome.merged,
        listing(&[("notes/todo", file("todo")), (fresh.as_str(), notes)])
    );
    assert_eq!(outcome.conflicts[0].kind, ConflictKind::FileDir);
    assert_eq!(outcome.conflicts[0].theirs_at, Some(fresh));
    let retried = merge(&base, &ours, &outcome.merged).unwrap();
    assert_eq!(retried.merged, outcome.merged);
}

#[test]
fn long_names_are_cut_to_fit_the_name_limit() {
    let name = format!("{}.json", "é".repeat(124));
    assert_eq!(name.len(), 253);
    let base = listing(&[(&name, file("base"))]);
    let ours = listing(&[(&name, file("ours"))]);
    let theirs = listing(&[(&name, file("theirs"))]);
    let outcome = merged(&base, &ours, &theirs);
    let copy = outcome.conflicts[0]
        .local_copy()
        .unwrap()
        .as_str()
        .to_owned();
    let suffix = format!(".conflict-{}", short(&file("ours")));
    assert!(copy.len() <= MAX_NAME_LEN);
    assert!(copy.ends_with(&suffix));
    // Cut at a character boundary, as long as it can be.
    assert_eq!(copy, format!("{}{suffix}", "é".repeat(118)));
}

#[test]
fn copies_are_cut_to_fit_the_path_limit_or_refused() {
    let dir = vec!["d".repeat(200); 20].join("/");
    let room = MAX_PATH_LEN - dir.len() - 1;
    let name = "n".repeat(room);
    let full = format!("{dir}/{name}");
    let base = listing(&[(&full, file("base"))]);
    let ours = listing(&[(&full, file("ours"))]);
    let theirs = listing(&[(&full, file("theirs"))]);
    let outcome = merged(&base, &ours, &theirs);
    let copy = outcome.conflicts[0].local_copy().unwrap();
    assert_eq!(copy.as_str().len(), MAX_PATH_LEN);
    assert!(copy.file_name().starts_with("nnn"));

    // With no room even for the suffix, the merge says so instead of dropping the edit.
    let dir = vec!["d".repeat(200); 20].join("/") + "/" + &"d".repeat(58);
    let full = format!("{dir}/n");
    assert_eq!(full.len(), 4080);
    let base = listing(&[(&full, file("base"))]);
    let ours = listing(&[(&full, file("ours"))]);
    let theirs = listing(&[(&full, file("theirs"))]);
    assert!(matches!(
        merge(&base, &ours, &theirs),
        Err(MergeError::PathTooLong { .. })
    ));
}

#[test]
fn invalid_inputs_are_typed_errors() {
    let good = listing(&[("a", file("a"))]);
    let inside_file = listing(&[("a", file("a")), ("a/b", file("b"))]);
    let case = listing(&[("a", file("a")), ("A", file("b"))]);
    let bad_dir = listing(&[(
        "a",
        FileRef {
            id: ObjectId::from_bytes([7; 32]),
            ..FileRef::empty_dir()
        },
    )]);
    assert!(matches!(
        merge(&good, &inside_file, &good),
        Err(MergeError::InvalidInput {
            side: Side::Ours,
            problem: TreeProblem::InsideEntry { .. }
        })
    ));
    assert!(matches!(
        merge(&good, &good, &case),
        Err(MergeError::InvalidInput {
            side: Side::Theirs,
            problem: TreeProblem::CaseClash { .. }
        })
    ));
    assert!(matches!(
        merge(&bad_dir, &good, &good),
        Err(MergeError::InvalidInput {
            side: Side::Base,
            problem: TreeProblem::BadEntry { .. }
        })
    ));
    assert!(tree_problem(&inside_file).is_some());
}

#[test]
fn a_dir_past_the_entry_limit_is_refused() {
    let limit = MAX_DIR_ENTRIES as usize;
    let names: Vec<String> = (0..=limit).map(|index| format!("f{index}")).collect();
    let entry = file("x");
    let ours: Listing = names[..limit / 2 + 1]
        .iter()
        .map(|name| (path(name), entry))
        .collect();
    let theirs: Listing = names[limit / 2 + 1..]
        .iter()
        .map(|name| (path(name), entry))
        .collect();
    assert_eq!(ours.len() + theirs.len(), limit + 1);
    // At the limit, the merge goes through.
    let mut at_limit = theirs.clone();
    at_limit.pop_last();
    let outcome = merge(&Listing::new(), &ours, &at_limit).unwrap();
    assert_eq!(outcome.merged.len(), limit);
    assert!(matches!(
        merge(&Listing::new(), &ours, &theirs),
        Err(MergeError::TooManyEntries {
            dir: None,
            count
        }) if count == limit + 1
    ));
}

#[test]
fn merging_is_deterministic_and_conflicts_are_sorted() {
    let base = listing(&[("b", file("1")), ("a", file("1"))]);
    let ours = listing(&[("b", file("2")), ("a", file("2"))]);
    let theirs = listing(&[("b", file("3")), ("a", file("3"))]);
    let outcome = merged(&base, &ours, &theirs);
    assert_eq!(outcome, merge(&base, &ours, &theirs).unwrap());
    let paths: Vec<&str> = outcome
        .conflicts
        .iter()
        .map(|conflict| conflict.path.as_str())
        .collect();
    assert_eq!(paths, ["a", "b"]);
}

#[test]
fn content_alphabet_has_an_empty_dir() {
    assert!((0..7).any(|index| content(index).is_dir()));
}

/// The generator is only useful if conflicts are common: every kind must show up in a fixed
/// sample of generated inputs.
#[test]
fn generated_listings_exercise_every_conflict_kind() {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut seen = [false; 5];
    let mut copies_with_counter = false;
    for _ in 0..3000 {
        let edits: Vec<Edit> = (0..next() % 24)
            .map(|_| {
                let bits = next();
                Edit {
                    target: [Target::Base, Target::Ours, Target::Theirs, Target::Both]
                        [(bits % 4) as usize],
                    action: match (bits >> 2) % 10 {
                        action @ 0..=6 => Action::Put(action as u8),
                        7 | 8 => Action::Remove,
                        _ => Action::RemoveTree,
                    },
                    components: [(bits >> 8) as u8, (bits >> 16) as u8, (bits >> 24) as u8],
                    depth: 1 + ((bits >> 32) % 3) as u8,
                }
            })
            .collect();
        let (base, ours, theirs) = listings(&edits, true);
        let outcome = merge(&base, &ours, &theirs).unwrap();
        for conflict in &outcome.conflicts {
            let index = match conflict.kind {
                ConflictKind::BothModified => 0,
                ConflictKind::ModifiedDeleted => 1,
                ConflictKind::DeletedModified => 2,
                ConflictKind::FileDir => 3,
                ConflictKind::CaseClash { .. } => 4,
                _ => continue,
            };
            seen[index] = true;
            copies_with_counter |= [Side::Ours, Side::Theirs].iter().any(|&side| {
                conflict
                    .at(side)
                    .is_some_and(|at| at.file_name().contains("-2"))
            });
        }
    }
    assert_eq!(seen, [true; 5]);
    assert!(copies_with_counter);
}

#[test]
fn ascii_names_fold_like_the_name_rules_say() {
    // merge folds ASCII names with a shortcut; it must agree with `fold_key` on every byte.
    for byte in 0x20u8..0x7f {
        let text = format!("a{}Z", char::from(byte));
        let lower = text.to_ascii_lowercase();
        assert_eq!(
            sync_protocol::name::fold_key(&text),
            lower,
            "{text:?} folds differently"
        );
    }
}
