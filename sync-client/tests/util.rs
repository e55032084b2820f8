//! Shared helpers: temp working copies, files with controlled mtimes, remote trees.

use std::fs;
use std::path::{Path as FsPath, PathBuf};
use std::time::{Duration, SystemTime};

use sync_client::object_cache::ObjectCache;
use sync_client::working_copy::{WorkingCopy, WorkingCopyConfig};
use sync_protocol::ObjectId;
pub use sync_protocol::checks::noise;
use sync_protocol::chunking::encode_file;
use sync_protocol::tree::{FileRef, Listing, Path, build_dirs};

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

/// Writes `bytes` at `relative` under `root`, creating folders.
pub fn write(root: &FsPath, relative: &str, bytes: &[u8]) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
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

/// Builds a remote tree from `(path, contents, executable)` and stores its objects in `objects`
/// as a pull would (each frame verified). Returns the listing and its root id.
pub fn remote_tree(objects: &ObjectCache, files: &[(&str, Vec<u8>, bool)]) -> (Listing, ObjectId) {
    let mut listing = Listing::new();
    for (text, contents, executable) in files {
        let encoded = encode_file(contents, *executable).unwrap();
        for object in &encoded.objects {
            objects.put_frame(&object.id, &object.frame).unwrap();
        }
        listing.insert(
            path(text),
            FileRef {
                kind: encoded.kind,
                target: encoded.target,
                size: encoded.size,
                id: encoded.id,
            },
        );
    }
    let root = build_dirs(&listing).unwrap().root;
    (listing, root)
}

/// Every file name under `dir` (recursively, outside `.cairn/`), relative, sorted.
pub fn files_on_disk(root: &FsPath) -> Vec<String> {
    fn walk(dir: &FsPath, prefix: &str, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if prefix.is_empty() && name == ".cairn" {
                continue;
            }
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &relative, out);
            } else {
                out.push(relative);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out.sort();
    out
}
