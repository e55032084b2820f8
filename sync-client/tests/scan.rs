//! Scanning: the stat cache, ignore rules, what is skipped and reported, NFC names.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::time::Duration;

use sync_client::working_copy::scan::{SkipReason, scan};
use sync_client::working_copy::status::ChangeKind;
use sync_protocol::EntryKind;
use sync_protocol::tree::FileRef;

use crate::util::{age, age_tree, new_copy, noise, path, record_as_synced, write};

#[test]
fn second_scan_reads_no_file_contents() {
    let test = new_copy();
    for index in 0..20 {
        write(
            &test.root,
            &format!("folder{}/file{index}.json", index % 3),
            format!("{{\"n\": {index}}}").as_bytes(),
        );
    }
    // One file of several chunks, to cover file objects.
    write(&test.root, "big.bin", &noise(600 * 1024, 7));
    age_tree(&test.root);

    let first = test.copy.scan().unwrap();
    assert_eq!(first.counters.files, 21);
    assert_eq!(first.counters.files_read, 21);
    assert!(first.counters.objects_written >= 21);

    let second = test.copy.scan().unwrap();
    assert_eq!(second.counters.files_read, 0, "{:?}", second.counters);
    assert_eq!(second.counters.bytes_read, 0);
    assert_eq!(second.counters.cache_hits, 21);
    assert_eq!(second.listing(), first.listing());

    // A same-size edit with a new mtime is read again, and only it.
    write(&test.root, "folder0/file0.json", b"{\"n\": 9}");
    age(
        &test.root.join("folder0/file0.json"),
        Duration::from_secs(60),
    );
    let third = test.copy.scan().unwrap();
    assert_eq!(third.counters.files_read, 1);
    assert_ne!(
        third.listing()[&path("folder0/file0.json")],
        first.listing()[&path("folder0/file0.json")]
    );
}

#[test]
fn a_root_reached_through_a_symlink_is_walked_and_a_symlinked_folder_inside_is_not() {
    let test = new_copy();
    write(&test.root, "a/one.json", b"{}");
    write(&test.root, "elsewhere/two.json", b"[]");
    symlink(test.root.join("elsewhere"), test.root.join("linked")).unwrap();
    let through = test.root.with_file_name("through-a-link");
    symlink(&test.root, &through).unwrap();
    let copy = sync_client::working_copy::WorkingCopy::open(&through).unwrap();

    let scanned = copy.scan().unwrap();
    let listed: Vec<&str> = scanned.listing().keys().map(|path| path.as_str()).collect();
    assert_eq!(listed, ["a/one.json", "elsewhere/two.json"]);
    assert_eq!(scanned.skipped.len(), 1, "{:?}", scanned.skipped);
    assert_eq!(scanned.skipped[0].reason, SkipReason::Symlink);
    assert_eq!(scanned.skipped[0].path, std::path::Path::new("linked"));
}

#[test]
fn a_file_replaced_with_the_same_size_and_mtime_is_read_again() {
    let test = new_copy();
    write(&test.root, "a.json", b"one");
    age_tree(&test.root);
    let first = test.copy.scan().unwrap();
    let mtime = fs::metadata(test.root.join("a.json"))
        .unwrap()
        .modified()
        .unwrap();
    // An editor's save: a new file renamed over the old one, so a new inode.
    write(&test.root, "a.json.new", b"two");
    fs::File::options()
        .write(true)
        .open(test.root.join("a.json.new"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::rename(test.root.join("a.json.new"), test.root.join("a.json")).unwrap();
    let second = test.copy.scan().unwrap();
    assert_eq!(second.counters.files_read, 1);
    assert_ne!(
        second.listing()[&path("a.json")],
        first.listing()[&path("a.json")]
    );
}

#[test]
fn racy_files_are_not_trusted_from_the_stat_cache() {
    let test = new_copy();
    write(&test.root, "fresh.json", b"x");
    // A timestamp at or after the scan's start could be shared by a later edit of the same
    // size: such an entry must not be cached.
    let future = std::time::SystemTime::now() + Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(test.root.join("fresh.json"))
        .unwrap()
        .set_modified(future)
        .unwrap();
    let first = test.copy.scan().unwrap();
    assert_eq!(first.counters.files_read, 1);
    let second = test.copy.scan().unwrap();
    assert_eq!(second.counters.files_read, 1);
}

#[test]
fn status_is_stat_only_when_nothing_changed() {
    let test = new_copy();
    write(&test.root, "a/b.json", b"1");
    write(&test.root, "c.json", b"2");
    age_tree(&test.root);
    let first = test.copy.status().unwrap();
    assert_eq!(first.changes.len(), 2);
    assert!(
        first
            .changes
            .iter()
            .all(|change| change.change == ChangeKind::Added)
    );
    let second = test.copy.status().unwrap();
    assert_eq!(second.scan.counters.files_read, 0);
    assert_eq!(second.changes, first.changes);
}

#[test]
fn ignore_rules_follow_gitignore() {
    let test = new_copy();
    write(
        &test.root,
        ".cairnignore",
        b"*.log\n!keep.log\nbuild/\n/top-only.txt\n",
    );
    write(&test.root, "a.log", b"x");
    write(&test.root, "keep.log", b"x");
    write(&test.root, "build/out.bin", b"x");
    write(&test.root, "top-only.txt", b"x");
    write(&test.root, "sub/top-only.txt", b"x");
    write(&test.root, "sub/.cairnignore", b"local.json\n!b.log\n");
    write(&test.root, "sub/local.json", b"x");
    write(&test.root, "sub/b.log", b"x");
    write(&test.root, "sub/c.log", b"x");
    write(&test.root, "sub/shared.json", b"x");
    let found = test.copy.scan().unwrap();
    let listed: Vec<&str> = found.listing().keys().map(|p| p.as_str()).collect();
    assert_eq!(
        listed,
        [
            ".cairnignore",
            "keep.log",
            "sub/.cairnignore",
            "sub/b.log",
            "sub/shared.json",
            "sub/top-only.txt"
        ]
    );
    // Ignored paths are quiet, as in git.
    assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    // The ignored folder's contents were never read.
    assert_eq!(found.counters.files_read, 6);
}

#[test]
fn ignore_rules_do_not_hide_tracked_files() {
    let test = new_copy();
    write(&test.root, "pushed-by-a-teammate.log", b"x");
    write(&test.root, "logs/old.log", b"x");
    record_as_synced(&test.copy);
    write(&test.root, ".cairnignore", b"*.log\nlogs/\n");
    write(&test.root, "mine.log", b"x");
    write(&test.root, "logs/new.log", b"x");
    let status = test.copy.status().unwrap();
    let changes: Vec<(&str, ChangeKind)> = status
        .changes
        .iter()
        .map(|change| (change.path.as_str(), change.change))
        .collect();
    // Only the ignore file itself is new: tracked logs stay listed, untracked ones are ignored.
    assert_eq!(changes, [(".cairnignore", ChangeKind::Added)]);
    assert!(status.scan.listing().contains_key(&path("logs/old.log")));
    assert!(!status.scan.listing().contains_key(&path("logs/new.log")));
}

#[test]
fn symlinks_and_special_files_are_skipped_and_reported() {
    let test = new_copy();
    write(&test.root, "real.json", b"{}");
    symlink("real.json", test.root.join("link.json")).unwrap();
    symlink("/nonexistent", test.root.join("dangling")).unwrap();
    fs::create_dir(test.root.join("dir")).unwrap();
    symlink("../real.json", test.root.join("dir/up")).unwrap();
    std::process::Command::new("mkfifo")
        .arg(test.root.join("pipe"))
        .status()
        .unwrap();
    let found = test.copy.scan().unwrap();
    let listed: Vec<&str> = found.listing().keys().map(|p| p.as_str()).collect();
    // `dir` holds only a symlink, so it is an empty folder as far as the project goes.
    assert_eq!(listed, ["dir", "real.json"]);
    assert_eq!(found.listing()[&path("dir")], FileRef::empty_dir());
    let skipped: Vec<(String, SkipReason)> = found
        .skipped
        .iter()
        .map(|s| (s.path.to_string_lossy().into_owned(), s.reason.clone()))
        .collect();
    assert_eq!(
        skipped,
        [
            ("dangling".to_owned(), SkipReason::Symlink),
            ("dir/up".to_owned(), SkipReason::Symlink),
            ("link.json".to_owned(), SkipReason::Symlink),
            (
                "pipe".to_owned(),
                SkipReason::Special { what: "named pipe" }
            ),
        ]
    );
}

#[test]
fn names_are_nfc_normalized_and_bad_names_reported() {
    let test = new_copy();
    // "é" decomposed (NFD), as macOS writes it, in a folder name and a file name.
    write(&test.root, "cafe\u{301}/menu\u{301}.json", b"1");
    // The same name twice, once NFC and once NFD: only one can be synced.
    write(&test.root, "r\u{e9}sum\u{e9}.txt", b"nfc");
    write(&test.root, "re\u{301}sume\u{301}.txt", b"nfd");
    // Case-only twins clash on case-insensitive disks.
    write(&test.root, "README.md", b"a");
    write(&test.root, "readme.md", b"b");
    write(&test.root, "back\\slash", b"x");
    let found = test.copy.scan().unwrap();
    let listed: Vec<&str> = found.listing().keys().map(|p| p.as_str()).collect();
    // NFC of "u" + combining acute is "\u{fa}" (ú).
    assert_eq!(
        listed,
        [
            "README.md",
            "caf\u{e9}/men\u{fa}.json",
            "r\u{e9}sum\u{e9}.txt"
        ]
    );
    let reasons: Vec<(String, &SkipReason)> = found
        .skipped
        .iter()
        .map(|s| (s.path.to_string_lossy().into_owned(), &s.reason))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|(p, r)| p == "back\\slash" && matches!(r, SkipReason::InvalidName(_)))
    );
    assert!(reasons.iter().any(|(p, r)| p == "readme.md"
        && matches!(r, SkipReason::NameClash { with } if with == "README.md")));
    assert!(
        reasons
            .iter()
            .any(|(p, r)| p == "r\u{e9}sum\u{e9}.txt" && matches!(r, SkipReason::NameClash { .. }))
    );
    // The listed NFC path resolves to the NFD name on disk.
    let disk = found
        .disk_names
        .resolve(&test.root, &path("caf\u{e9}/men\u{fa}.json"));
    assert_eq!(fs::read(disk).unwrap(), b"1");
}

#[test]
fn a_new_case_twin_never_displaces_a_tracked_file() {
    let test = new_copy();
    write(&test.root, "readme.md", b"tracked");
    record_as_synced(&test.copy);
    // "README.md" sorts first by bytes, but "readme.md" is the tracked one.
    write(&test.root, "README.md", b"new twin");
    let status = test.copy.status().unwrap();
    assert!(status.changes.is_empty(), "{:?}", status.changes);
    assert_eq!(status.scan.skipped.len(), 1);
    assert_eq!(
        status.scan.skipped[0].reason,
        SkipReason::NameClash {
            with: "readme.md".to_owned()
        }
    );
}

#[test]
fn non_utf8_names_are_reported() {
    use std::os::unix::ffi::OsStrExt;
    let test = new_copy();
    let name = std::ffi::OsStr::from_bytes(b"bad\xffname");
    fs::write(test.root.join(name), b"x").unwrap();
    let found = test.copy.scan().unwrap();
    assert!(found.listing().is_empty());
    assert_eq!(found.skipped.len(), 1);
    assert_eq!(found.skipped[0].reason, SkipReason::NotUtf8);
}

#[test]
fn executable_bit_and_empty_folders_are_listed() {
    let test = new_copy();
    write(&test.root, "run.sh", b"#!/bin/sh\n");
    fs::set_permissions(test.root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(test.root.join("empty/inner")).unwrap();
    let found = test.copy.scan().unwrap();
    assert_eq!(found.listing()[&path("run.sh")].kind, EntryKind::Executable);
    assert_eq!(found.listing()[&path("empty/inner")], FileRef::empty_dir());
    assert!(!found.listing().contains_key(&path("empty")));
}

#[test]
fn state_and_temp_files_are_never_listed() {
    let test = new_copy();
    write(&test.root, ".x.cairn-tmp-1-2", b"leftover of a crash");
    write(&test.root, "nested/.cairn/config.toml", b"");
    let found = test.copy.scan().unwrap();
    let listed: Vec<&str> = found.listing().keys().map(|p| p.as_str()).collect();
    assert_eq!(listed, ["nested"]);
    assert_eq!(found.skipped.len(), 1);
    assert_eq!(found.skipped[0].reason, SkipReason::NestedWorkingCopy);
}

#[test]
fn a_file_that_keeps_changing_is_never_reported_removed() {
    let test = new_copy();
    write(&test.root, "log.txt", b"start");
    let target = test.root.join("log.txt");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        // Rewrites the file in place with two sizes in turn: bounded on disk, never stable.
        std::thread::spawn(move || {
            let (short, long) = (vec![b'a'; 1000], vec![b'b'; 3000]);
            let mut flip = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                fs::write(&target, if flip { &short } else { &long }).unwrap();
                flip = !flip;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let objects = test.copy.objects();
    let found = scan(&test.root, &test.copy.index().unwrap(), &objects).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    if !found.listing().contains_key(&path("log.txt")) {
        assert!(found.unsettled.contains(&path("log.txt")));
        assert_eq!(found.skipped[0].reason, SkipReason::ChangedWhileReading);
        let changes = sync_client::working_copy::status::changes(
            &[(path("log.txt"), FileRef::empty_dir())]
                .into_iter()
                .collect(),
            found.listing(),
            &found.unsettled,
        );
        assert_eq!(changes[0].change, ChangeKind::Unreadable);
    }
}

#[test]
fn a_file_past_the_stream_threshold_gets_the_same_ids() {
    let test = new_copy();
    let size = sync_client::working_copy::scan::STREAM_THRESHOLD as usize + 300 * 1024 + 5;
    let data = noise(size, 21);
    write(&test.root, "fixtures/huge.bin", &data);
    let found = test.copy.scan().unwrap();
    let expected = sync_protocol::chunking::encode_file(&data, false).unwrap();
    let entry = found.listing()[&path("fixtures/huge.bin")];
    assert_eq!(entry.id, expected.id);
    assert_eq!(entry.size, size as u64);
    assert_eq!(found.counters.bytes_read, size as u64);
    for object in &expected.objects {
        test.copy.objects().frame(&object.id).unwrap();
    }
}
