//! Files on disk: writing and reading them, and whole working copies read back (outside
//! `.cairn/`).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `bytes` at `relative` under `root`, creating folders.
pub fn write(root: &Path, relative: &str, bytes: &[u8]) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().expect("a path under root")).expect("creating folders");
    fs::write(&path, bytes).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
}

/// The bytes at `relative` under `root`.
pub fn read(root: &Path, relative: &str) -> Vec<u8> {
    let path = root.join(relative);
    fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// One file of a tree on disk: its bytes and whether it is executable.
#[derive(Clone, PartialEq, Eq)]
pub struct FileState {
    pub bytes: Vec<u8>,
    pub executable: bool,
}

impl fmt::Debug for FileState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Large files would drown an assertion message: a length and a checksum say enough.
        let fnv1a = self
            .bytes
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
            });
        f.debug_struct("FileState")
            .field("len", &self.bytes.len())
            .field("fnv1a", &format_args!("{fnv1a:016x}"))
            .field("executable", &self.executable)
            .finish()
    }
}

/// Every file under `root` outside `.cairn/`, by relative path with `/` separators.
pub fn tree_on_disk(root: &Path) -> BTreeMap<String, FileState> {
    let mut files = BTreeMap::new();
    walk(root, "", &mut |relative, path| {
        let metadata = fs::symlink_metadata(path).expect("a file's metadata");
        let bytes =
            fs::read(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        files.insert(
            relative,
            FileState {
                bytes,
                executable: metadata.permissions().mode() & 0o111 != 0,
            },
        );
    });
    files
}

/// The relative path of everything but folders under `root` outside `.cairn/`, sorted. Reads no
/// contents: a dangling link is listed too.
pub fn files_on_disk(root: &Path) -> Vec<String> {
    let mut paths = Vec::new();
    walk(root, "", &mut |relative, _| paths.push(relative));
    paths.sort();
    paths
}

/// Calls `visit` with the relative path and full path of everything but folders under `dir`,
/// skipping `.cairn/` at the top.
fn walk(dir: &Path, prefix: &str, visit: &mut dyn FnMut(String, &Path)) {
    let entries = fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    for entry in entries {
        let entry = entry.expect("a folder entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if prefix.is_empty() && name == ".cairn" {
            continue;
        }
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if entry.file_type().expect("a file type").is_dir() {
            walk(&entry.path(), &relative, visit);
        } else {
            visit(relative, &entry.path());
        }
    }
}

/// Asserts that two working copies hold exactly the same files, byte for byte.
pub fn assert_same_tree(left: &Path, right: &Path) {
    let (left_tree, right_tree) = (tree_on_disk(left), tree_on_disk(right));
    let left_paths: Vec<&String> = left_tree.keys().collect();
    let right_paths: Vec<&String> = right_tree.keys().collect();
    assert_eq!(
        left_paths,
        right_paths,
        "the paths of {} and {} differ",
        left.display(),
        right.display()
    );
    for (path, state) in &left_tree {
        assert!(
            right_tree.get(path) == Some(state),
            "{path} differs: {:?} in {}, {:?} in {}",
            state,
            left.display(),
            right_tree.get(path),
            right.display()
        );
    }
}
