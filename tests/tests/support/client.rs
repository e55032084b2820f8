//! The real `cairn` binary, run as alice with her own user config file (`CAIRN_CONFIG`).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use cairn_test_support::ClientHome;
use serde_json::{Value, json};

use super::server::{Server, TEAM, USER};

/// One person's machine: a home folder holding the user config file and working copies.
#[derive(Debug)]
pub struct Cairn {
    home: ClientHome,
}

impl Cairn {
    /// Logs alice in to `server` with `cairn login`.
    pub fn login(server: &Server) -> Cairn {
        let cairn = Cairn {
            home: ClientHome::new(),
        };
        let login = cairn.home.login(&server.url, USER);
        assert_eq!(login["server"], server.url.as_str(), "{login}");
        cairn
    }

    /// Logs alice in to the server at `url` (a cluster's balancer) with `cairn login`.
    pub fn login_at(url: &str) -> Cairn {
        let cairn = Cairn {
            home: ClientHome::new(),
        };
        let login = cairn.home.login(url, USER);
        assert_eq!(login["server"], url, "{login}");
        cairn
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `cairn args...` in `dir`, not yet started.
    pub fn command(&self, dir: &Path, args: &[&str]) -> Command {
        self.home.command(dir, args)
    }

    pub fn run(&self, dir: &Path, args: &[&str]) -> Output {
        self.home.run(dir, args)
    }

    /// `cairn --json args...` in `dir`, which must exit 0; its JSON output.
    pub fn json(&self, dir: &Path, args: &[&str]) -> Value {
        self.home.json(dir, args)
    }

    /// Creates a project in alice's team; its id. A new project is at version 0.
    pub fn create_project(&self, name: &str) -> String {
        let project = self.json(self.home(), &["projects", "create", "--team", TEAM, name]);
        assert_eq!(project["version"], 0, "{project}");
        project["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {project}"))
            .to_owned()
    }

    /// Makes `<home>/<name>` a working copy of `project` with `cairn init` (no server contact).
    pub fn init(&self, server: &Server, project: &str, name: &str) -> PathBuf {
        let root = self.home().join(name);
        let json = self.json(
            self.home(),
            &[
                "init",
                "--server",
                &server.url,
                "--project",
                project,
                root.to_str().expect("a UTF-8 path"),
            ],
        );
        assert_eq!(json["project"], project, "{json}");
        root
    }

    /// Downloads `project` into `<home>/<name>` with `cairn clone`: (folder, clone's JSON).
    pub fn clone(&self, project: &str, name: &str) -> (PathBuf, Value) {
        let json = self.json(self.home(), &["clone", "--project", project, name]);
        let root = PathBuf::from(
            json["root"]
                .as_str()
                .unwrap_or_else(|| panic!("no root in {json}")),
        );
        assert_eq!(root, self.home().join(name), "{json}");
        (root, json)
    }

    /// `cairn pull` in `copy`, which must take it from version `from` to `to`; its JSON.
    pub fn pull(&self, copy: &Path, from: u64, to: u64) -> Value {
        let pulled = self.json(copy, &["pull"]);
        assert_eq!(
            (&pulled["from"], &pulled["version"]),
            (&json!(from), &json!(to)),
            "{pulled}"
        );
        pulled
    }

    /// Asserts that `cairn status` in `copy` finds no change from its base, version `version`.
    pub fn assert_clean_at(&self, copy: &Path, version: u64) {
        let status = self.json(copy, &["status"]);
        assert_eq!(
            (&status["base_version"], &status["changes"]),
            (&json!(version), &json!([])),
            "{status}"
        );
    }

    /// The project's head version as `cairn log` reports it from `copy`.
    pub fn head_version(&self, copy: &Path) -> u64 {
        let log = self.json(copy, &["log", "-n", "1"]);
        log["versions"][0]["number"]
            .as_u64()
            .unwrap_or_else(|| panic!("no version in {log}"))
    }

    /// Starts `cairn args...` in `dir` as a child whose output lines are collected.
    pub fn spawn(&self, dir: &Path, args: &[&str]) -> Running {
        let mut child = self
            .command(dir, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("starting cairn {args:?}: {error}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let label = format!("cairn {args:?} in {}", dir.display());
        if let Some(stdout) = child.stdout.take() {
            collect_lines("stdout", stdout, &lines);
        }
        if let Some(stderr) = child.stderr.take() {
            collect_lines("stderr", stderr, &lines);
        }
        Running {
            child,
            label,
            lines,
        }
    }
}

/// Appends every line `source` yields to `lines`, prefixed with `stream`, on a thread.
fn collect_lines(
    stream: &'static str,
    source: impl Read + Send + 'static,
    lines: &Arc<Mutex<Vec<String>>>,
) {
    let lines = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines().map_while(Result::ok) {
            if let Ok(mut lines) = lines.lock() {
                lines.push(format!("{stream}: {line}"));
            }
        }
    });
}

/// A `cairn` process running in the background, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    label: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Every line printed so far, prefixed with `stdout: ` or `stderr: `.
    pub fn output(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|lines| lines.clone())
            .unwrap_or_default()
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.label, self.output().join("\n"));
        }
    }
}
