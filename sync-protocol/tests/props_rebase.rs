//! Server-side rebase: over generated base, pushed and head trees, a rebase that goes through
//! gives exactly what the three-way merge gives, with no conflict, and keeps every change of
//! both sides; one that refuses names a path both sides touched.

use proptest::prelude::*;

use crate::props_merge::{file, listing, path};
use sync_protocol::ObjectId;
use sync_protocol::checks::merge::{Edit, listings};
use sync_protocol::diff::diff_listings;
use sync_protocol::merge::merge;
use sync_protocol::rebase::{Decision, RebaseOutcome, by_path, rebase, rebase_changes};
use sync_protocol::tree::{FileRef, Listing, MemoryObjects, build_dirs, flatten, is_under};

/// `props_merge`'s edits with fewer names in the first two places, so that paths meet.
fn edit() -> impl Strategy<Value = Edit> {
    crate::props_merge::edit().prop_map(|mut edit| {
        edit.components[0] %= 3;
        edit.components[1] %= 3;
        edit
    })
}

/// The three trees in one object source, with their roots; `None` when a listing is not a
/// valid tree.
fn trees(
    base: &Listing,
    ours: &Listing,
    theirs: &Listing,
) -> Option<(MemoryObjects, [ObjectId; 3])> {
    let mut objects = MemoryObjects::new();
    let mut roots = [ObjectId::from_bytes([0; 32]); 3];
    for (slot, listing) in [base, ours, theirs].into_iter().enumerate() {
        let built = build_dirs(listing).ok()?;
        roots[slot] = built.root;
        objects.extend(built.dirs);
    }
    Some((objects, roots))
}

fn check_rebase(base: &Listing, ours: &Listing, theirs: &Listing) {
    let Some((mut objects, [base_root, ours_root, theirs_root])) = trees(base, ours, theirs) else {
        return;
    };
    let outcome = rebase(&objects, base_root, ours_root, theirs_root).unwrap();
    let pushed = by_path(&diff_listings(base, ours));
    let head = by_path(&diff_listings(base, theirs));
    match outcome {
        RebaseOutcome::Rebased(patched) => {
            objects.extend(patched.dirs);
            let rebased = flatten(&objects, &patched.root).unwrap();
            // No edit of either side disappears.
            for (path, (_, after)) in pushed.iter().chain(head.iter()) {
                match after {
                    Some(entry) if !entry.is_dir() => {
                        assert_eq!(rebased.get(path), Some(entry), "{path}")
                    }
                    // An empty dir may have gained entries from the other side.
                    Some(_) => assert!(
                        rebased.contains_key(path) || rebased.keys().any(|p| is_under(p, path)),
                        "{path}"
                    ),
                    None => assert!(!rebased.contains_key(path), "{path}"),
                }
            }
            // And it is what the three-way merge makes of the same trees, without a conflict.
            let merged = merge(base, ours, theirs).unwrap();
            assert!(
                merged.is_clean(),
                "rebased but the merge conflicts: {:?}",
                merged.conflicts
            );
            assert_eq!(rebased, merged.merged);
        }
        RebaseOutcome::Overlap(path) => {
            let touches = |changes: &sync_protocol::rebase::PathChanges| {
                changes.keys().any(|changed| {
                    *changed == path || is_under(changed, &path) || is_under(&path, changed)
                })
            };
            if touches(&pushed) && touches(&head) {
                return;
            }
            // Else the changes touch different paths, but no valid tree holds both (names
            // equal up to case in one dir).
            let Decision::Apply(apply) = rebase_changes(&pushed, &head) else {
                panic!("{path} is no overlap");
            };
            let mut naive = theirs.clone();
            for (path, entry) in apply {
                match entry {
                    Some(entry) => naive.insert(path, entry),
                    None => naive.remove(&path),
                };
            }
            assert!(build_dirs(&naive).is_err(), "{path} is no overlap");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn rebase_equals_the_clean_merge(edits in prop::collection::vec(edit(), 0..30)) {
        let (base, ours, theirs) = listings(&edits, true);
        check_rebase(&base, &ours, &theirs);
    }
}

// Targeted cases.

fn decide(base: &Listing, ours: &Listing, theirs: &Listing) -> Decision {
    rebase_changes(
        &by_path(&diff_listings(base, ours)),
        &by_path(&diff_listings(base, theirs)),
    )
}

#[test]
fn writers_of_different_files_rebase() {
    let base = listing(&[("w1/a", file("1")), ("w2/a", file("2"))]);
    let ours = listing(&[("w1/a", file("1b")), ("w2/a", file("2"))]);
    let theirs = listing(&[
        ("w1/a", file("1")),
        ("w2/a", file("2b")),
        ("w2/new", file("n")),
    ]);
    assert_eq!(
        decide(&base, &ours, &theirs),
        Decision::Apply([(path("w1/a"), Some(file("1b")))].into())
    );
    check_rebase(&base, &ours, &theirs);
}

#[test]
fn the_same_file_changed_on_both_sides_overlaps() {
    let base = listing(&[("a", file("1"))]);
    let ours = listing(&[("a", file("2"))]);
    let theirs = listing(&[("a", file("3"))]);
    assert_eq!(decide(&base, &ours, &theirs), Decision::Overlap(path("a")));
    check_rebase(&base, &ours, &theirs);
}

#[test]
fn a_file_against_a_folder_holding_it_overlaps() {
    // The head removed the folder `d`; the push edited a file in it.
    let base = listing(&[("d/f", file("1")), ("g", file("g"))]);
    let ours = listing(&[("d/f", file("2")), ("g", file("g"))]);
    let theirs = listing(&[("d", file("now a file")), ("g", file("g"))]);
    assert_eq!(
        decide(&base, &ours, &theirs),
        Decision::Overlap(path("d/f"))
    );
    // And the other way round: the push made a file where the head added under a folder.
    assert_eq!(
        decide(&base, &theirs, &ours),
        Decision::Overlap(path("d/f"))
    );
    check_rebase(&base, &ours, &theirs);
}

#[test]
fn the_same_change_on_both_sides_is_no_overlap() {
    let base = listing(&[("a", file("1")), ("b", file("b"))]);
    let ours = listing(&[("a", file("2")), ("b", file("b"))]);
    let theirs = listing(&[("a", file("2")), ("b", file("b2"))]);
    assert_eq!(
        decide(&base, &ours, &theirs),
        Decision::Apply(Default::default())
    );
    check_rebase(&base, &ours, &theirs);
}

#[test]
fn files_added_to_one_empty_folder_on_both_sides_rebase() {
    let base = listing(&[("d", FileRef::empty_dir())]);
    let ours = listing(&[("d/mine", file("m"))]);
    let theirs = listing(&[("d/theirs", file("t"))]);
    assert_eq!(
        decide(&base, &ours, &theirs),
        Decision::Apply([(path("d/mine"), Some(file("m")))].into())
    );
    check_rebase(&base, &ours, &theirs);
}

#[test]
fn names_equal_up_to_case_added_on_both_sides_overlap() {
    let base = listing(&[("keep", file("k"))]);
    let ours = listing(&[("keep", file("k")), ("Readme", file("1"))]);
    let theirs = listing(&[("keep", file("k")), ("README", file("2"))]);
    // Different paths, but no valid dir holds both.
    let (objects, [base_root, ours_root, theirs_root]) = trees(&base, &ours, &theirs).unwrap();
    let outcome = rebase(&objects, base_root, ours_root, theirs_root).unwrap();
    assert!(matches!(outcome, RebaseOutcome::Overlap(_)), "{outcome:?}");
}
