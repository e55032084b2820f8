//! The workspace's real binaries, found and never built.
//!
//! A test that runs `cargo build` itself resolves features differently from the run around it,
//! rebuilds much of the tree and contends for the target folder's lock. These tests take what
//! was built instead: `scripts/test` builds every binary first (`cargo test --workspace
//! --no-run`) and names them in `CAIRN_SERVER_BIN` and `CAIRN_CLIENT_BIN`; a plain
//! `cargo test --workspace` builds them too (sync-server's and sync-client's integration tests
//! need them), next to the test executables.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `sync-server`: `CAIRN_SERVER_BIN`, else the one beside the running test executable.
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| workspace_binary("CAIRN_SERVER_BIN", "sync-server", "sync-server"))
}

/// `cairn`: `CAIRN_CLIENT_BIN`, else the one beside the running test executable.
pub fn client_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| workspace_binary("CAIRN_CLIENT_BIN", "cairn", "sync-client"))
}

/// The binary `name` of `package`: the path in `variable` if set, else `<profile dir>/<name>`,
/// where the profile dir (`target/debug/`) is the parent of the `deps/` folder the test
/// executable lives in. Panics, saying how to build it, when there is none.
pub fn workspace_binary(variable: &str, name: &str, package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable).filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{variable} names {}, which is not a file: point it at a built `{name}`, or unset it \
             to use the one beside the test executable.",
            path.display()
        );
        return path;
    }
    let path = profile_dir().join(name);
    assert!(
        path.is_file(),
        "these tests run the real `{name}` binary and do not build it, but there is none at {} \
         ({variable} is not set). Run scripts/test, which builds every binary first; or build it \
         with `cargo build -p {package}` (any `cargo test --workspace` does too), then run the \
         tests again.",
        path.display()
    );
    path
}

/// The folder cargo puts this profile's binaries in: the parent of the `deps/` folder that holds
/// the running test executable (or the executable's own folder, when it is not in `deps/`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test executable");
    let folder = exe.parent().unwrap_or(Path::new("."));
    match folder.file_name() {
        Some(name) if name == "deps" => folder.parent().unwrap_or(folder).to_path_buf(),
        _ => folder.to_path_buf(),
    }
}
