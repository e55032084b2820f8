//! The index: a damaged one is rebuilt and nothing is lost; the previous format is converted;
//! a monitor's list of changed paths makes the scan walk only their folders, with the same
//! result as a full walk.

use std::fs;
use std::path::PathBuf;

use sync_client::stores::monitor::{Changes, Token};
use sync_client::stores::state::{Base, StatCache};
use sync_client::working_copy::Status;
use sync_client::working_copy::status::ChangeKind;

use crate::util::{TestCopy, age_tree, new_copy, path, write};

/// A working copy synced at version 3 with 30 files in 3 folders, then one edit.
fn synced_copy_with_one_edit() -> TestCopy {
    let test = new_copy();
    for n in 0..30 {
        write(
            &test.root,
            &format!("dir{}/sub/file{n}.json", n % 3),
            format!("{{\"n\": {n}}}").as_bytes(),
        );
    }
    age_tree(&test.root);
    let snapshot = test.copy.snapshot().unwrap();
    test.copy
        .set_base(&Base {
            version: Some(3),
            root: snapshot.root,
            listing: snapshot.scan.listing().clone(),
            pending: Default::default(),
        })
        .unwrap();
    write(&test.root, "dir1/sub/file1.json", b"{\"n\": 100}");
    age_tree(&test.root);
    test
}

fn summary(status: &Status) -> Vec<(String, ChangeKind)> {
    status
        .changes
        .iter()
        .map(|change| (change.path.to_string(), change.change))
        .collect()
}

/// Something done to a working copy's index file.
type Damage = dyn Fn(&TestCopy);

fn index_file(test: &TestCopy) -> PathBuf {
    test.root.join(".cairn/index")
}

#[test]
fn a_damaged_index_is_rebuilt_and_nothing_is_lost() {
    let damages: Vec<(&str, Box<Damage>)> = vec![
        (
            "flipped byte",
            Box::new(|test| {
                let mut bytes = fs::read(index_file(test)).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x01;
                fs::write(index_file(test), bytes).unwrap();
            }),
        ),
        (
            "truncated",
            Box::new(|test| {
                let bytes = fs::read(index_file(test)).unwrap();
                fs::write(index_file(test), &bytes[..bytes.len() - 100]).unwrap();
            }),
        ),
        (
            "empty",
            Box::new(|test| fs::write(index_file(test), b"").unwrap()),
        ),
        (
            "wrong version",
            Box::new(|test| {
                let mut bytes = fs::read(index_file(test)).unwrap();
                bytes[8] = 9;
                fs::write(index_file(test), bytes).unwrap();
            }),
        ),
        (
            "missing",
            Box::new(|test| fs::remove_file(index_file(test)).unwrap()),
        ),
    ];
    for (what, damage) in damages {
        let test = synced_copy_with_one_edit();
        let before = test.copy.status().unwrap();
        assert_eq!(
            summary(&before),
            [("dir1/sub/file1.json".to_owned(), ChangeKind::Modified)],
            "{what}"
        );
        assert!(test.copy.take_index_rebuilt().is_none(), "{what}");
        damage(&test);
        let after = test.copy.status().unwrap();
        let why = test.copy.take_index_rebuilt();
        assert!(why.is_some(), "{what}: not reported");
        // The same base, the same one local edit: nothing lost, nothing made up.
        assert_eq!(after.base_version, Some(3), "{what}");
        assert_eq!(summary(&after), summary(&before), "{what}");
        // The stat data was rebuilt by hashing every file again...
        assert_eq!(after.scan.counters.files_read, 30, "{what}");
        // ...and kept: the next status reads nothing, and reports nothing rebuilt.
        let again = test.copy.status().unwrap();
        assert_eq!(again.scan.counters.files_read, 0, "{what}");
        assert!(test.copy.take_index_rebuilt().is_none(), "{what}");
        assert_eq!(summary(&again), summary(&before), "{what}");
    }
}

#[test]
fn a_damaged_index_without_the_base_tree_is_a_typed_error_and_changes_nothing() {
    let test = synced_copy_with_one_edit();
    fs::write(test.root.join(".cairn/index"), b"junk").unwrap();
    fs::remove_dir_all(test.root.join(".cairn/objects")).unwrap();
    fs::create_dir(test.root.join(".cairn/objects")).unwrap();
    let error = test.copy.status().unwrap_err();
    assert!(
        matches!(
            error,
            sync_client::ClientError::IndexUnrecoverable {
                version: Some(3),
                ..
            }
        ),
        "{error:?}"
    );
    // The damaged index was left as it was, and the files too.
    assert_eq!(fs::read(test.root.join(".cairn/index")).unwrap(), b"junk");
    assert_eq!(
        fs::read(test.root.join("dir1/sub/file1.json")).unwrap(),
        b"{\"n\": 100}"
    );
}

#[test]
fn a_working_copy_of_the_previous_format_is_converted() {
    let test = synced_copy_with_one_edit();
    let base = test.copy.base().unwrap();
    let expected = summary(&test.copy.status().unwrap());
    // What the previous client wrote: `base` and `stat-cache`, no index, no head.
    let mut cache = StatCache::new();
    for (path, entry) in test.copy.index().unwrap().stat_entries() {
        cache.insert(sync_protocol::tree::Path::new(path).unwrap(), entry);
    }
    let state = test.root.join(".cairn");
    fs::write(state.join("base"), base.encode()).unwrap();
    fs::write(state.join("stat-cache"), cache.encode()).unwrap();
    fs::remove_file(state.join("index")).unwrap();
    fs::remove_file(state.join("head")).unwrap();

    let status = test.copy.status().unwrap();
    assert!(test.copy.take_index_rebuilt().is_none());
    assert_eq!(summary(&status), expected);
    assert_eq!(status.base_version, Some(3));
    // The stat cache came along (the status above had learned every file): nothing is read.
    assert_eq!(status.scan.counters.files_read, 0);
    assert!(!state.join("base").exists() && !state.join("stat-cache").exists());
    assert!(state.join("index").exists() && state.join("head").exists());
    assert_eq!(test.copy.base().unwrap(), base);
}

/// The full walk's status, and the one the monitor's answer `paths` allows, on the same disk;
/// the index is recorded under a token first, as a command with a monitor would.
fn full_and_partial(test: &TestCopy, paths: &[&str]) -> (Status, Status) {
    let full = test.copy.status().unwrap();
    (full, partial_status(test, paths))
}

/// The status the monitor's answer `paths` allows.
fn partial_status(test: &TestCopy, paths: &[&str]) -> Status {
    test.copy
        .status_with_changes(Changes::Paths {
            token: Token("t2".to_owned()),
            paths: paths.iter().map(PathBuf::from).collect(),
        })
        .unwrap()
}

fn record_token(test: &TestCopy) {
    test.copy
        .status_with_changes(Changes::Everything {
            token: Token("t1".to_owned()),
        })
        .unwrap();
    assert_eq!(
        test.copy.index().unwrap().token(),
        Some(&Token("t1".to_owned()))
    );
}

#[test]
fn monitor_paths_walk_only_their_folders_and_agree_with_a_full_walk() {
    let test = synced_copy_with_one_edit();
    record_token(&test);

    // No change at all: nothing is walked, the result is the recorded one.
    let (full, partial) = full_and_partial(&test, &[]);
    assert_eq!(partial.scan.counters.dirs, 0);
    assert_eq!(partial.scan.counters.stated, 0);
    assert_eq!(summary(&partial), summary(&full));
    assert_eq!(partial.scan.listing(), full.scan.listing());
    // A walk of no folder is not worth rewriting the index to move the token on: it keeps the
    // one the full status recorded (none: no monitor answered it). Keeping an older token is
    // always right; the monitor then names a few more paths.
    assert_eq!(test.copy.index().unwrap().token(), None);

    // An edit of a listed file: only that file is stat'ed (its folder's entries did not
    // change), and read.
    record_token(&test);
    write(&test.root, "dir2/sub/file2.json", b"{\"n\": 200}");
    // The partial status first: a full one learns the edit's stat once its mtime is a clock
    // tick old (on a busy machine, often), and then leaves the partial one nothing to read.
    let partial = partial_status(&test, &["dir2/sub/file2.json"]);
    let full = test.copy.status().unwrap();
    assert_eq!(partial.scan.counters.dirs, 0, "{:?}", partial.scan.counters);
    assert_eq!(partial.scan.counters.stated, 1);
    assert_eq!(partial.scan.counters.files_read, 1);
    assert!(full.scan.counters.dirs > 5);
    assert_eq!(summary(&partial), summary(&full));
    assert_eq!(partial.scan.listing(), full.scan.listing());

    // A listed file that became a folder: the index cannot vouch for it, and everything is
    // walked (the partial status first, before a full one records the folder).
    record_token(&test);
    fs::remove_file(test.root.join("dir2/sub/file5.json")).unwrap();
    write(&test.root, "dir2/sub/file5.json/inner.json", b"{}");
    let partial = test
        .copy
        .status_with_changes(Changes::Paths {
            token: Token("t2".to_owned()),
            paths: vec![PathBuf::from("dir2/sub/file5.json")],
        })
        .unwrap();
    let full = test.copy.status().unwrap();
    assert_eq!(partial.scan.counters.dirs, full.scan.counters.dirs);
    assert_eq!(summary(&partial), summary(&full));
    assert_eq!(partial.scan.listing(), full.scan.listing());
    assert!(
        partial
            .scan
            .listing()
            .contains_key(&path("dir2/sub/file5.json/inner.json"))
    );

    // A new folder with a file, a removed file, a removed folder.
    record_token(&test);
    write(&test.root, "dir0/new/deep/x.json", b"{}");
    fs::remove_file(test.root.join("dir1/sub/file4.json")).unwrap();
    fs::remove_dir_all(test.root.join("dir2")).unwrap();
    let (full, partial) = full_and_partial(
        &test,
        &["dir0/new/deep/x.json", "dir1/sub/file4.json", "dir2"],
    );
    assert_eq!(summary(&partial), summary(&full));
    assert_eq!(partial.scan.listing(), full.scan.listing());
    assert!(summary(&partial).contains(&("dir0/new/deep/x.json".to_owned(), ChangeKind::Added)));
    assert!(summary(&partial).contains(&("dir2/sub/file2.json".to_owned(), ChangeKind::Removed)));
    // "dir2" climbs to the root: everything is walked for it.
    assert!(partial.scan.counters.dirs > 3);

    // A folder emptied of its last file stays as an empty folder.
    record_token(&test);
    for n in [0, 3, 6, 9, 12, 15, 18, 21, 24, 27] {
        fs::remove_file(test.root.join(format!("dir0/sub/file{n}.json"))).unwrap();
    }
    let (full, partial) = full_and_partial(&test, &["dir0/sub"]);
    assert_eq!(partial.scan.listing(), full.scan.listing());
    assert_eq!(summary(&partial), summary(&full));
    assert_eq!(partial.scan.counters.dirs, 1);
}

#[test]
fn monitor_paths_fall_back_to_a_full_walk_when_they_cannot_vouch() {
    let test = synced_copy_with_one_edit();
    // An index recorded without a token by a base change: no scan recorded, so a full walk.
    let partial = test
        .copy
        .status_with_changes(Changes::Paths {
            token: Token("t".to_owned()),
            paths: vec![],
        })
        .unwrap();
    assert!(partial.scan.counters.dirs > 5);
    // A changed ignore file changes what every folder lists.
    record_token(&test);
    write(&test.root, "dir0/.cairnignore", b"sub/\n");
    let (full, partial) = full_and_partial(&test, &["dir0/.cairnignore"]);
    assert_eq!(partial.scan.counters.dirs, full.scan.counters.dirs);
    assert_eq!(summary(&partial), summary(&full));
    // Ignore rules of the folders above a walked folder apply to it.
    record_token(&test);
    write(&test.root, "dir0/sub/ignored.log", b"x");
    write(&test.root, ".cairnignore", b"*.log\n");
    record_token(&test);
    write(&test.root, "dir0/sub/other.log", b"y");
    let (full, partial) = full_and_partial(&test, &["dir0/sub/other.log"]);
    assert_eq!(partial.scan.counters.dirs, 1);
    assert_eq!(partial.scan.listing(), full.scan.listing());
    assert!(
        !partial
            .scan
            .listing()
            .contains_key(&path("dir0/sub/other.log"))
    );
}
