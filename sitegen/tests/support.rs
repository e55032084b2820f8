//! Shared helpers: paths, building into temporary folders, comparing trees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sitegen::{BuildOptions, BuildReport};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("sitegen is inside the workspace")
        .to_owned()
}

/// The site sources the tests build: `docs-src`, or `CAIRN_DOCS_SRC` when set (to test a
/// snapshot while others are mid-edit in the shared checkout).
pub fn docs_src() -> PathBuf {
    match std::env::var_os("CAIRN_DOCS_SRC") {
        Some(path) => PathBuf::from(path),
        None => workspace_root().join("docs-src"),
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn build(source: &Path, out: &Path) -> sitegen::Result<BuildReport> {
    sitegen::build(&BuildOptions {
        source: source.to_owned(),
        out: out.to_owned(),
        drafts: false,
        write: true,
    })
}

/// A copy of the `broken` fixture with its problems removed (the page with bad front matter,
/// the home page's broken links), in a temporary folder: a small site that builds.
pub fn fixed_fixture() -> tempfile::TempDir {
    let source = tempfile::tempdir().unwrap();
    copy_tree(&fixture("broken"), source.path());
    std::fs::remove_file(source.path().join("content/docs/bad.md")).unwrap();
    std::fs::write(
        source.path().join("content/_index.md"),
        "+++\ntitle = \"Home\"\ndescription = \"Home page.\"\n+++\nHello.\n",
    )
    .unwrap();
    source
}

/// Copies a folder tree (used to edit a copy of docs-src).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `root` except sitegen's own state, relative path → bytes.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if rel.starts_with(".sitegen") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Asserts two output trees are byte-identical, naming the first difference.
pub fn assert_same_tree(left: &Path, right: &Path) {
    let (a, b) = (tree(left), tree(right));
    let names_a: Vec<&String> = a.keys().collect();
    let names_b: Vec<&String> = b.keys().collect();
    assert_eq!(names_a, names_b, "the two builds wrote different files");
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name} differs between the two builds");
    }
}

/// Whether tests that need an external tool must fail (the project's test runner) or may skip.
pub fn strict() -> bool {
    std::env::var("CAIRN_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// The path in `var` if it names an existing file; otherwise fails in strict mode, or prints a
/// skip message and returns `None`.
pub fn tool(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var).map(PathBuf::from)
        && path.is_file()
    {
        return Some(path);
    }
    assert!(
        !strict(),
        "{name} not found: {var} is not set to an existing file (source scripts/site-tools.sh)"
    );
    eprintln!("skipped: {name} not found ({var} unset), run scripts/test");
    None
}
