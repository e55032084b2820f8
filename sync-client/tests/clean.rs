//! The pull's shortcut past the full scan (`scan::clean_paths`): taken when the paths a pull
//! changes are untouched, refused at anything the merge must see. The property test in `apply`
//! checks it against random edits; these are the cases random edits over lowercase names and
//! plain files cannot reach.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use sync_client::stores::state::Base;
use sync_client::working_copy::scan::{CleanPaths, clean_paths};
use sync_protocol::tree::{Listing, build_dirs};

use crate::util::{TestCopy, age_tree, new_copy, path, remote_tree, write};

/// The disk as the synced base (version 1), stat cache filled with entries old enough to trust.
fn synced(test: &TestCopy) -> Listing {
    age_tree(&test.root);
    let found = test.copy.scan().unwrap();
    test.copy
        .set_base(&Base {
            version: Some(1),
            root: build_dirs(found.listing()).unwrap().root,
            listing: found.listing().clone(),
            pending: Default::default(),
        })
        .unwrap();
    found.listing().clone()
}

/// Whether the shortcut is taken for a pull of `remote` (files: path, contents, executable).
fn shortcut(test: &TestCopy, base: &Listing, remote: &[(&str, &[u8], bool)]) -> bool {
    let files: Vec<(&str, Vec<u8>, bool)> = remote
        .iter()
        .map(|(path, bytes, executable)| (*path, bytes.to_vec(), *executable))
        .collect();
    let (theirs, _) = remote_tree(&test.copy.objects(), &files);
    clean(test, base, &theirs).is_some()
}

/// `clean_paths` for a pull of `theirs`, with the copy's stat cache as stored.
fn clean(test: &TestCopy, base: &Listing, theirs: &Listing) -> Option<CleanPaths> {
    let stat_cache = test.copy.index().unwrap();
    clean_paths(&test.root, base, theirs, &stat_cache, &test.copy.objects()).unwrap()
}

fn base_copy() -> (TestCopy, Listing) {
    let test = new_copy();
    write(&test.root, "api/users.json", b"users v1");
    write(&test.root, "api/teams.json", b"teams v1");
    write(&test.root, "readme.md", b"hello");
    let base = synced(&test);
    (test, base)
}

const EDITED: &[(&str, &[u8], bool)] = &[
    ("api/users.json", b"users v2", false),
    ("api/teams.json", b"teams v1", false),
    ("readme.md", b"hello", false),
];

#[test]
fn taken_for_edits_adds_and_removals_of_untouched_paths() {
    let (test, base) = base_copy();
    // Local edits elsewhere do not matter: the pull does not touch those paths.
    write(&test.root, "readme.md", b"my local edit");
    write(&test.root, "notes/mine.txt", b"untracked");
    assert!(shortcut(&test, &base, EDITED));
    assert!(shortcut(
        &test,
        &base,
        &[
            ("api/users.json", b"users v1", false),
            ("readme.md", b"hello", false),
            ("api/new/deep.json", b"new", false),
            ("notes/theirs.txt", b"into an untracked folder", false),
        ]
    ));

    // The apply through the shortcut leaves the local edits where they are.
    let (theirs, root) = remote_tree(
        &test.copy.objects(),
        &EDITED
            .iter()
            .map(|(p, b, x)| (*p, b.to_vec(), *x))
            .collect::<Vec<_>>(),
    );
    let report = test.copy.apply(2, root, &theirs).unwrap();
    assert_eq!(report.written, [path("api/users.json")]);
    assert_eq!(
        fs::read(test.root.join("api/users.json")).unwrap(),
        b"users v2"
    );
    assert_eq!(
        fs::read(test.root.join("readme.md")).unwrap(),
        b"my local edit"
    );
    assert!(test.root.join("notes/mine.txt").is_file());
    let changes = test.copy.status().unwrap().changes;
    let changed: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(changed, ["notes/mine.txt", "readme.md"]);
}

#[test]
fn a_stat_cache_miss_is_settled_by_hashing() {
    let (test, base) = base_copy();
    // Same content, new inode and mtime (an editor's save-by-rename): not an edit.
    write(&test.root, "api/users.json", b"users v1");
    assert!(shortcut(&test, &base, EDITED));
    // Different content of the same size: an edit.
    write(&test.root, "api/users.json", b"users vX");
    assert!(!shortcut(&test, &base, EDITED));
}

#[test]
fn refused_where_the_merge_must_decide() {
    // A local edit of a file the pull changes.
    let (test, base) = base_copy();
    write(&test.root, "api/users.json", b"mine");
    assert!(!shortcut(&test, &base, EDITED));

    // A local deletion of it.
    let (test, base) = base_copy();
    fs::remove_file(test.root.join("api/users.json")).unwrap();
    assert!(!shortcut(&test, &base, EDITED));

    // Only the executable bit changed locally.
    let (test, base) = base_copy();
    let file = test.root.join("api/users.json");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(!shortcut(&test, &base, EDITED));

    // An untracked file where the pull adds one.
    let (test, base) = base_copy();
    write(&test.root, "api/new.json", b"mine");
    let mut added = EDITED.to_vec();
    added.push(("api/new.json", b"theirs", false));
    assert!(!shortcut(&test, &base, &added));

    // A name that differs only in case from one the pull adds.
    let (test, base) = base_copy();
    write(&test.root, "api/roles.json", b"mine");
    let mut added = EDITED.to_vec();
    added.push(("api/Roles.JSON", b"theirs", false));
    assert!(!shortcut(&test, &base, &added));

    // A file where the pull needs a folder.
    let (test, base) = base_copy();
    write(&test.root, "docs", b"a file");
    let mut added = EDITED.to_vec();
    added.push(("docs/intro.md", b"theirs", false));
    assert!(!shortcut(&test, &base, &added));
}

#[test]
fn refused_through_a_symlinked_folder() {
    let (test, base) = base_copy();
    // `api/` moved elsewhere and replaced by a link to it: the files look the same through it,
    // but writing there would write outside the working copy.
    let outside = tempfile::tempdir().unwrap();
    let moved = outside.path().join("api");
    fs::rename(test.root.join("api"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, test.root.join("api")).unwrap();
    assert!(!shortcut(&test, &base, EDITED));
}

#[test]
fn refused_for_state_and_temp_names() {
    let (test, base) = base_copy();
    for name in [".cairn/config.toml", "api/.x.cairn-tmp-1-2"] {
        let mut added = EDITED.to_vec();
        added.push((name, b"theirs", false));
        assert!(!shortcut(&test, &base, &added), "{name}");
    }
}

#[test]
fn an_empty_folder_becoming_a_file_is_left_to_the_merge() {
    let test = new_copy();
    write(&test.root, "a.json", b"a");
    fs::create_dir(test.root.join("slot")).unwrap();
    let base = synced(&test);
    assert!(base.get(&path("slot")).is_some_and(|entry| entry.is_dir()));
    assert!(!shortcut(
        &test,
        &base,
        &[("a.json", b"a", false), ("slot", b"now a file", false)]
    ));
    // Dropping it, with the folder still there, is fine.
    assert!(shortcut(&test, &base, &[("a.json", b"a", false)]));
}

#[test]
fn empty_folders_come_and_go_through_the_shortcut() {
    let test = new_copy();
    write(&test.root, "a.json", b"a");
    fs::create_dir(test.root.join("slot")).unwrap();
    let base = synced(&test);
    let (mut theirs, _) = remote_tree(&test.copy.objects(), &[("a.json", b"a2".to_vec(), false)]);
    theirs.insert(path("new/empty"), sync_protocol::tree::FileRef::empty_dir());
    let root = build_dirs(&theirs).unwrap().root;
    let clean = clean(&test, &base, &theirs).expect("every changed path is untouched");
    assert_eq!(
        clean.changed,
        [path("a.json"), path("new/empty"), path("slot")]
    );
    let report = test.copy.apply(2, root, &theirs).unwrap();
    assert!(report.is_complete(), "{:?}", report.held_back);
    assert_eq!(report.created_dirs, [path("new/empty")]);
    assert_eq!(report.removed_dirs, [path("slot")]);
    assert_eq!(fs::read(test.root.join("a.json")).unwrap(), b"a2");
    assert!(test.root.join("new/empty").is_dir());
    assert!(!test.root.join("slot").exists());
    assert!(test.copy.status().unwrap().changes.is_empty());
}
