//! Shared helpers about working copies: temp working copies, files with controlled mtimes, remote
//! trees in a copy's object cache. Files and trees themselves come from `cairn_test_support`.

use std::fs;
use std::path::{Path as FsPath, PathBuf};
use std::time::{Duration, SystemTime};

pub use cairn_test_support::files::{files_on_disk, write};
pub use cairn_test_support::noise;
use cairn_test_support::trees::Tree;
use sync_client::object_cache::ObjectCache;
use sync_client::working_copy::{WorkingCopy, WorkingCopyConfig};
use sync_protocol::tree::{Listing, Path};
use sync_protocol::{ObjectId, ObjectKind};

#[derive(Debug)]
pub struct TestCopy {
    // Held for its Drop, which removes the folder.
    pub _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub copy: WorkingCopy,
}

pub fn new_copy() -> TestCopy {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    let config = WorkingCopyConfig::new("https://cairn.test", "project-1").unwrap();
    let copy = WorkingCopy::init(&root, config).unwrap();
    TestCopy {
        _dir: dir,
        root,
        copy,
    }
}

/// Scans the copy and records what it found as version 1 of the project, as if it had been
/// pushed: every file on disk is then tracked.
pub fn record_as_synced(copy: &WorkingCopy) {
    let found = copy.scan().unwrap();
    copy.set_base(&sync_client::stores::state::Base {
        version: Some(1),
        root: sync_protocol::tree::build_dirs(found.listing())
            .unwrap()
            .root,
        listing: found.listing().clone(),
        pending: Default::default(),
    })
    .unwrap();
}

/// Sets a file's mtime to `age` ago, so the stat cache may trust it (it is not racy).
pub fn age(path: &FsPath, age: Duration) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

/// Ages every file under `root` (outside `.cairn/`) by an hour.
pub fn age_tree(root: &FsPath) {
    for entry in fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        let file_type = entry.file_type().unwrap();
        if entry.file_name() == ".cairn" {
            continue;
        }
        if file_type.is_dir() {
            age_tree(&entry.path());
        } else if file_type.is_file() {
            age(&entry.path(), Duration::from_secs(3600));
        }
    }
}

pub fn path(text: &str) -> Path {
    Path::new(text).unwrap()
}

/// Builds a remote tree from `(path, contents, executable)` and stores its file objects in
/// `objects` as a pull would (each frame verified). Returns the listing and its root id.
pub fn remote_tree(objects: &ObjectCache, files: &[(&str, Vec<u8>, bool)]) -> (Listing, ObjectId) {
    let tree = Tree::build(files);
    for object in tree
        .objects
        .iter()
        .filter(|object| object.kind != ObjectKind::Dir)
    {
        objects.put_frame(&object.id, &object.frame).unwrap();
    }
    (tree.listing, tree.root)
}
