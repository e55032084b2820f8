//! The real `cairn` binary, run as one person on their own machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::binaries::client_binary;
use crate::server::PASSWORD;

/// One person's machine: a home folder holding their user config file (`CAIRN_CONFIG`, where
/// `cairn login` keeps the token) and, usually, their working copies. Removed when dropped.
#[derive(Debug)]
pub struct ClientHome {
    home: tempfile::TempDir,
    binary: PathBuf,
}

impl ClientHome {
    /// A fresh home running [`client_binary`].
    pub fn new() -> ClientHome {
        ClientHome::with_binary(client_binary())
    }

    /// A fresh home running `binary`: sync-client's own tests pass
    /// `env!("CARGO_BIN_EXE_cairn")`, which cargo builds for them.
    pub fn with_binary(binary: impl Into<PathBuf>) -> ClientHome {
        ClientHome {
            home: tempfile::tempdir().expect("a temp folder"),
            binary: binary.into(),
        }
    }

    /// The home folder.
    pub fn path(&self) -> &Path {
        self.home.path()
    }

    /// `cairn args...` in `dir` as this person (their config file, [`PASSWORD`] for any
    /// login), not yet started.
    pub fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .current_dir(dir)
            .env("CAIRN_CONFIG", self.path().join("config.toml"))
            .env("CAIRN_PASSWORD", PASSWORD);
        command
    }

    /// Runs `cairn args...` in `dir` to completion, whatever its exit status.
    pub fn run(&self, dir: &Path, args: &[&str]) -> Output {
        self.command(dir, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("running cairn {args:?}: {error}"))
    }

    /// `cairn --json args...` in `dir`, which must exit 0; its JSON output.
    pub fn json(&self, dir: &Path, args: &[&str]) -> Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let output = self.run(dir, &full);
        assert_eq!(
            output.status.code(),
            Some(0),
            "cairn {full:?} in {}:\nstdout: {}\nstderr: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "cairn {full:?}: not JSON ({error}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// `cairn login --server <server> --user <user>` (password [`PASSWORD`]), which must log
    /// `user` in; its JSON output.
    pub fn login(&self, server: &str, user: &str) -> Value {
        let login = self.json(self.path(), &["login", "--server", server, "--user", user]);
        assert_eq!(login["account"]["name"], user, "{login}");
        login
    }
}

impl Default for ClientHome {
    fn default() -> ClientHome {
        ClientHome::new()
    }
}
