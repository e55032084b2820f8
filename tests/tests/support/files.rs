//! Files on disk: writing, reading whole trees, deterministic incompressible bytes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
pub use sync_protocol::checks::noise;

/// Writes `bytes` at `relative` under `root`, creating folders.
pub fn write(root: &Path, relative: &str, bytes: &[u8]) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().expect("a path under root")).expect("creating folders");
    fs::write(&path, bytes).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
}

pub fn read(root: &Path, relative: &str) -> Vec<u8> {
    let path = root.join(relative);
    fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// One file of a tree: its bytes and whether it is executable.
#[derive(Clone, PartialEq, Eq)]
pub struct FileState {
    pub bytes: Vec<u8>,
    pub executable: bool,
}

impl std::fmt::Debug for FileState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
pub fn tree(root: &Path) -> BTreeMap<String, FileState> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, FileState>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
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
            let file_type = entry.file_type().expect("a file type");
            if file_type.is_dir() {
                walk(&entry.path(), &relative, out);
            } else {
                let metadata = entry.metadata().expect("metadata");
                out.insert(
                    relative,
                    FileState {
                        bytes: fs::read(entry.path()).expect("reading a file"),
                        executable: metadata.permissions().mode() & 0o111 != 0,
                    },
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

/// Asserts that two working copies hold exactly the same files, byte for byte.
pub fn assert_same_tree(left: &Path, right: &Path) {
    let (left_tree, right_tree) = (tree(left), tree(right));
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
