//! Clones: many files written in parallel without an fsync each, one sync of the file system
//! before the base is recorded; a clone killed half way leaves a folder the next pull finishes.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_test_support::files::{tree_on_disk, write};
use serde_json::json;

use crate::support::Setup;

const FOLDERS: usize = 30;
const FILES: usize = 3_000;

/// Writes `FILES` small JSON documents in `FOLDERS` folders under `root`.
fn write_project(root: &Path) {
    for index in 0..FILES {
        let text =
            format!("{{\n  \"id\": {index},\n  \"url\": \"https://api.example.com/{index}\"\n}}\n");
        write(
            root,
            &format!("folder-{:02}/request-{index:04}.json", index % FOLDERS),
            text.as_bytes(),
        );
    }
}

/// True for the temp files an atomic write leaves when its process is killed.
fn is_temp(relative: &str) -> bool {
    relative.contains(".cairn-tmp-")
}

/// Files (not temp files) under `root`, outside `.cairn/`.
fn project_files(root: &Path) -> usize {
    tree_on_disk(root)
        .keys()
        .filter(|relative| !is_temp(relative))
        .count()
}

/// Writes the project into `a`, pushes it as version 1; the project's id (from `a`'s config).
fn push_project(setup: &Setup) -> String {
    let Setup { cairn, a, .. } = setup;
    write_project(a);
    let pushed = cairn.json(a, &["push"]);
    assert_eq!(pushed["push"]["version"], 1, "{pushed}");
    let config = fs::read_to_string(a.join(".cairn/config.toml")).expect("the config");
    config
        .lines()
        .find_map(|line| line.strip_prefix("project = "))
        .expect("a project line")
        .trim_matches('"')
        .to_owned()
}

#[test]
fn a_clone_of_many_files_is_whole_and_clean() {
    let Some(setup) = Setup::start() else { return };
    let project = push_project(&setup);
    let Setup { cairn, a, .. } = &setup;
    let (c, cloned) = cairn.clone(&project, "c");
    assert_eq!(cloned["pull"]["version"], 1, "{cloned}");
    assert_eq!(tree_on_disk(&c), tree_on_disk(a));
    cairn.assert_clean_at(&c, 1);
}

/// The files of `copy`'s object cache: `(packs, loose objects)`.
fn cached_files(copy: &Path) -> (Vec<std::path::PathBuf>, usize) {
    let objects = copy.join(".cairn/objects");
    let packs: Vec<_> = fs::read_dir(objects.join("pack"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "pack"))
                .collect()
        })
        .unwrap_or_default();
    let loose = fs::read_dir(&objects)
        .expect("the object cache")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name() != "pack")
        .map(|entry| fs::read_dir(entry.path()).map_or(0, Iterator::count))
        .sum();
    (packs, loose)
}

#[test]
fn a_clone_keeps_its_objects_in_one_pack_and_a_damaged_pack_is_fetched_again() {
    let Some(setup) = Setup::start() else { return };
    let project = push_project(&setup);
    let Setup { cairn, a, .. } = &setup;
    let (c, _) = cairn.clone(&project, "c");
    // 3,000 files and their folders: one pack, and only the empty dir that `init` stores loose.
    let (packs, loose) = cached_files(&c);
    assert_eq!(packs.len(), 1, "{packs:?}");
    assert_eq!(loose, 1);

    // The pack torn in half (as by a crash before the sync of a later write): its objects,
    // the base's dirs among them, are missing. The next pull fetches what it needs again.
    let bytes = fs::read(&packs[0]).expect("the pack");
    fs::write(&packs[0], &bytes[..bytes.len() / 2]).expect("tear the pack");
    write(
        a,
        "folder-01/request-0001.json",
        b"{\"id\": 1, \"edited\": true}\n",
    );
    write(a, "folder-02/added.json", b"{}\n");
    let pushed = cairn.json(a, &["push"]);
    assert_eq!(pushed["push"]["version"], 2, "{pushed}");
    let pulled = cairn.pull(&c, 1, 2);
    assert_eq!(pulled["applied"]["conflicts"], json!([]), "{pulled}");
    assert_eq!(tree_on_disk(&c), tree_on_disk(a));
    cairn.assert_clean_at(&c, 2);
    // The torn pack was found damaged and deleted; the objects fetched again are in a new one.
    assert!(!packs[0].exists(), "the torn pack is still there");
    let (packs, _) = cached_files(&c);
    assert_eq!(packs.len(), 1, "{packs:?}");
}

#[test]
fn a_clone_killed_half_way_is_finished_by_the_next_pull() {
    let Some(setup) = Setup::start() else { return };
    let project = push_project(&setup);
    let Setup { cairn, a, .. } = &setup;

    // Killed as soon as its first files are on disk: the object cache is full, the writes have
    // started, and the base is not recorded.
    let d = cairn.home().join("d");
    let mut clone = cairn.spawn(
        cairn.home(),
        &["--json", "clone", "--project", &project, "d"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let watched = d.join("folder-00");
    loop {
        let written = fs::read_dir(&watched).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| !is_temp(&entry.file_name().to_string_lossy()))
                .count()
        });
        // Checked after the files were counted: running now, it is killed half way.
        assert!(
            clone
                .child
                .try_wait()
                .expect("the clone's status")
                .is_none(),
            "the clone ended before it could be killed ({written} files seen): {:?}",
            clone.output()
        );
        if written > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no file after 60 s: {:?}",
            clone.output()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    clone.kill();
    let left = project_files(&d);
    assert!(
        (1..FILES).contains(&left),
        "the killed clone left {left} of {FILES} files: nothing was interrupted"
    );

    // The folder is a working copy that was never synced; a pull finishes it, and every file
    // the killed clone wrote is whole (equal to the server's, so no conflict).
    let status = cairn.json(&d, &["status"]);
    assert_eq!(status["base_version"], json!(null), "{status}");
    let pulled = cairn.json(&d, &["pull"]);
    assert_eq!(pulled["version"], 1, "{pulled}");
    assert_eq!(pulled["applied"]["conflicts"], json!([]), "{pulled}");
    assert_eq!(pulled["applied"]["conflict_copies"], json!([]), "{pulled}");
    let expected = tree_on_disk(a);
    let mut finished = tree_on_disk(&d);
    finished.retain(|relative, _| !is_temp(relative));
    assert_eq!(finished.len(), expected.len());
    assert!(
        finished == expected,
        "the finished clone differs from the project"
    );
    cairn.assert_clean_at(&d, 1);
    eprintln!("a clone killed after {left} of {FILES} files was finished by one pull");
}
