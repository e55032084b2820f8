//! The optional file-system monitor: a real daemon (in a thread, or the `cairn daemon`
//! process), real files, a real socket, asked through `stores::monitor::changes_since`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use sync_client::operations::daemon::{self, DaemonError};
use sync_client::stores::META_DIR;
use sync_client::stores::monitor::{
    Changes, MAX_SOCKET_PATH, SOCKET_NAME, Token, canonical_root, changes_since, request_stop,
    socket_path,
};
use sync_client::working_copy::{WorkingCopy, WorkingCopyConfig};

use crate::util::{new_copy, record_as_synced, write};

/// A daemon running in a thread of the test, stopped (and waited for) on drop.
struct RunningDaemon {
    root: PathBuf,
    thread: Option<JoinHandle<Result<(), DaemonError>>>,
}

impl RunningDaemon {
    fn start(root: &FsPath) -> Self {
        Self::start_with(root, daemon::MAX_PATHS)
    }

    fn start_with(root: &FsPath, max_paths: usize) -> Self {
        let (ready, is_ready) = mpsc::channel();
        let owned = root.to_path_buf();
        let thread = std::thread::spawn(move || {
            daemon::run_with(&owned, max_paths, |socket| {
                let _ = ready.send(socket.to_path_buf());
            })
        });
        match is_ready.recv_timeout(Duration::from_secs(30)) {
            Ok(_) => {}
            Err(_) => panic!("the daemon did not start: {:?}", thread.join()),
        }
        Self {
            root: root.to_path_buf(),
            thread: Some(thread),
        }
    }

    /// Stops the daemon and returns how its thread ended.
    fn stop(mut self) -> Result<(), DaemonError> {
        assert!(request_stop(&self.root));
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for RunningDaemon {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            request_stop(&self.root);
            let _ = thread.join();
        }
    }
}

/// The token of an answer that must have one.
fn token_of(changes: &Changes) -> Token {
    match changes {
        Changes::Everything { token } | Changes::Paths { token, .. } => token.clone(),
        Changes::Unavailable => panic!("no monitor answered"),
    }
}

/// The paths of an answer that must list paths.
fn paths_of(changes: &Changes) -> BTreeSet<String> {
    match changes {
        Changes::Paths { paths, .. } => paths
            .iter()
            .map(|path| path.to_str().unwrap().to_owned())
            .collect(),
        other => panic!("not a list of paths: {other:?}"),
    }
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|path| (*path).to_owned()).collect()
}

#[test]
fn written_modified_removed_and_renamed_files_are_named() {
    let test = new_copy();
    write(&test.root, "api/a.json", b"{}");
    write(&test.root, "api/c.json", b"{}");
    write(&test.root, "d.json", b"{}");
    write(&test.root, "untouched.json", b"{}");
    let _daemon = RunningDaemon::start(&test.root);
    let first = changes_since(&test.root, None);
    assert!(matches!(first, Changes::Everything { .. }), "{first:?}");
    let token = token_of(&first);
    // Unchanged: nothing to walk.
    let unchanged = changes_since(&test.root, Some(&token));
    assert_eq!(paths_of(&unchanged), set(&[]));
    // The state folder and temp files are not the working copy's.
    fs::write(test.root.join(".cairn/scratch"), b"x").unwrap();
    fs::write(test.root.join("api/.a.json.cairn-tmp-1"), b"x").unwrap();
    fs::remove_file(test.root.join("api/.a.json.cairn-tmp-1")).unwrap();
    write(&test.root, "api/a.json", b"{\"edited\": true}");
    write(&test.root, "b.json", b"{}");
    fs::remove_file(test.root.join("api/c.json")).unwrap();
    fs::rename(test.root.join("d.json"), test.root.join("e.json")).unwrap();
    let changes = changes_since(&test.root, Some(&token));
    assert_eq!(
        paths_of(&changes),
        set(&["api/a.json", "b.json", "api/c.json", "d.json", "e.json"])
    );
    // A chmod (the executable bit) is a change too.
    let next = token_of(&changes);
    let mut permissions = fs::metadata(test.root.join("b.json"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    fs::set_permissions(test.root.join("b.json"), permissions).unwrap();
    assert_eq!(
        paths_of(&changes_since(&test.root, Some(&next))),
        set(&["b.json"])
    );
}

#[test]
fn a_symbolic_link_is_not_followed() {
    let test = new_copy();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), test.root.join("link")).unwrap();
    let _daemon = RunningDaemon::start(&test.root);
    let token = token_of(&changes_since(&test.root, None));
    write(outside.path(), "elsewhere.json", b"{}");
    write(&test.root, "here.json", b"{}");
    assert_eq!(
        paths_of(&changes_since(&test.root, Some(&token))),
        set(&["here.json"])
    );
}

#[test]
fn a_new_folder_tree_is_named_by_its_top_folder() {
    let test = new_copy();
    let _daemon = RunningDaemon::start(&test.root);
    let token = token_of(&changes_since(&test.root, None));
    write(&test.root, "new/deeper/deepest/file.json", b"{}");
    write(&test.root, "new/other.json", b"{}");
    let paths = paths_of(&changes_since(&test.root, Some(&token)));
    // The folder is named (the scan walks it all); whatever else is named lies below it.
    assert!(paths.contains("new"), "{paths:?}");
    assert!(
        paths
            .iter()
            .all(|path| path == "new" || path.starts_with("new/")),
        "{paths:?}"
    );
}

#[test]
fn no_token_or_another_instances_token_is_everything() {
    let test = new_copy();
    let _daemon = RunningDaemon::start(&test.root);
    let none = changes_since(&test.root, None);
    assert!(matches!(none, Changes::Everything { .. }), "{none:?}");
    let foreign = Token(format!("{}-1", "0".repeat(32)));
    let answer = changes_since(&test.root, Some(&foreign));
    assert!(matches!(answer, Changes::Everything { .. }), "{answer:?}");
    let garbage = Token("not a token".into());
    let answer = changes_since(&test.root, Some(&garbage));
    assert!(matches!(answer, Changes::Everything { .. }), "{answer:?}");
}

#[test]
fn a_token_of_a_previous_daemon_is_everything() {
    let test = new_copy();
    let first = RunningDaemon::start(&test.root);
    let token = token_of(&changes_since(&test.root, None));
    first.stop().unwrap();
    assert_eq!(
        changes_since(&test.root, Some(&token)),
        Changes::Unavailable
    );
    let _second = RunningDaemon::start(&test.root);
    let answer = changes_since(&test.root, Some(&token));
    assert!(matches!(answer, Changes::Everything { .. }), "{answer:?}");
}

#[test]
fn paths_are_bounded_at_the_limit_and_everything_past_it() {
    const BOUND: usize = 5;
    let test = new_copy();
    let _daemon = RunningDaemon::start_with(&test.root, BOUND);
    let token = token_of(&changes_since(&test.root, None));
    let names: Vec<String> = (0..BOUND).map(|i| format!("f{i}.json")).collect();
    for name in &names {
        write(&test.root, name, b"1");
    }
    let at_bound = changes_since(&test.root, Some(&token));
    let expected: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(paths_of(&at_bound), expected);
    write(&test.root, "one-more.json", b"1");
    let past = changes_since(&test.root, Some(&token));
    assert!(matches!(past, Changes::Everything { .. }), "{past:?}");
    // Tokens given after the bound was passed work again.
    let fresh = token_of(&past);
    write(&test.root, "f0.json", b"2");
    assert_eq!(
        paths_of(&changes_since(&test.root, Some(&fresh))),
        set(&["f0.json"])
    );
}

#[test]
fn an_edit_just_before_the_query_is_always_named() {
    let test = new_copy();
    let _daemon = RunningDaemon::start(&test.root);
    let mut token = token_of(&changes_since(&test.root, None));
    for round in 0..200 {
        let name = format!("file-{}.json", round % 7);
        fs::write(test.root.join(&name), format!("{round}")).unwrap();
        let changes = changes_since(&test.root, Some(&token));
        assert_eq!(paths_of(&changes), set(&[&name]), "round {round}");
        token = token_of(&changes);
    }
}

#[test]
fn one_daemon_per_working_copy() {
    let test = new_copy();
    let _daemon = RunningDaemon::start(&test.root);
    let second = daemon::run(&test.root, |_| panic!("a second daemon started"));
    assert!(
        matches!(second, Err(DaemonError::Running { .. })),
        "{second:?}"
    );
    // The first still answers.
    assert!(matches!(
        changes_since(&test.root, None),
        Changes::Everything { .. }
    ));
}

#[test]
fn the_daemon_stops_when_the_state_folder_goes() {
    let test = new_copy();
    let mut daemon = RunningDaemon::start(&test.root);
    fs::remove_dir_all(test.root.join(META_DIR)).unwrap();
    let thread = daemon.thread.take().unwrap();
    let (ended, has_ended) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = ended.send(thread.join().unwrap());
    });
    let outcome = has_ended
        .recv_timeout(Duration::from_secs(30))
        .expect("the daemon did not stop");
    outcome.unwrap();
}

/// One raw request line, one raw answer line.
fn raw(root: &FsPath, request: &[u8]) -> serde_json::Value {
    let socket = socket_path(&canonical_root(root)).unwrap();
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap()
}

#[test]
fn malformed_requests_get_an_error_answer() {
    let test = new_copy();
    let _daemon = RunningDaemon::start(&test.root);
    for request in [
        &b"garbage\n"[..],
        b"{\"version\":1}\n",
        b"{\"version\":1,\"request\":\"launch\"}\n",
        b"{\"version\":2,\"request\":\"changes\",\"since\":null}\n",
        b"{\"version\":1,\"request\":\"changes\",\"since\":null}",
    ] {
        let answer = raw(&test.root, request);
        assert_eq!(answer["version"], 1, "{answer}");
        assert_eq!(answer["answer"], "error", "{answer}");
    }
    // A request too long to be one (no newline within the bound).
    let long = vec![b'x'; 10_000];
    let answer = raw(&test.root, &long);
    assert_eq!(answer["answer"], "error", "{answer}");
    // A good one, raw.
    let answer = raw(
        &test.root,
        b"{\"version\":1,\"request\":\"changes\",\"since\":null}\n",
    );
    assert_eq!(answer["answer"], "everything", "{answer}");
    // And the daemon still answers clients.
    assert!(matches!(
        changes_since(&test.root, None),
        Changes::Everything { .. }
    ));
}

/// A working copy whose `.cairn/monitor.sock` path is exactly `length` bytes long.
fn copy_with_socket_path_length(parent: &FsPath, length: usize) -> PathBuf {
    let parent = canonical_root(parent);
    let suffix = format!("/{META_DIR}/{SOCKET_NAME}").len();
    let name_length = length - parent.as_os_str().len() - 1 - suffix;
    let root = parent.join("r".repeat(name_length));
    let config = WorkingCopyConfig::new("https://cairn.test", "project-1").unwrap();
    WorkingCopy::init(&root, config).unwrap();
    root
}

#[test]
fn the_socket_works_at_the_address_limit_and_past_it() {
    let dir = tempfile::tempdir().unwrap();
    for (length, inside) in [(MAX_SOCKET_PATH, true), (MAX_SOCKET_PATH + 1, false)] {
        let root = copy_with_socket_path_length(dir.path(), length);
        let socket = socket_path(&root).unwrap();
        assert_eq!(socket.starts_with(&root), inside, "{socket:?}");
        let daemon = RunningDaemon::start(&root);
        let token = token_of(&changes_since(&root, None));
        write(&root, "x.json", b"{}");
        assert_eq!(
            paths_of(&changes_since(&root, Some(&token))),
            set(&["x.json"])
        );
        daemon.stop().unwrap();
        assert!(!socket.exists(), "{socket:?} left behind");
    }
}

/// `cairn daemon` started in `root`, once it printed its ready line.
pub fn spawn_cairn_daemon(root: &FsPath) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("daemon")
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("Monitoring "), "{line:?}");
    (child, line)
}

#[test]
fn a_killed_daemon_is_unavailable_and_replaced() {
    let test = new_copy();
    let (mut child, _) = spawn_cairn_daemon(&test.root);
    let token = token_of(&changes_since(&test.root, None));
    child.kill().unwrap();
    child.wait().unwrap();
    // The socket is left behind, and refuses: the client learns it at once.
    let socket = socket_path(&canonical_root(&test.root)).unwrap();
    assert!(socket.exists());
    let refused = UnixStream::connect(&socket).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(
        changes_since(&test.root, Some(&token)),
        Changes::Unavailable
    );
    // The next daemon takes the socket's place.
    let _daemon = RunningDaemon::start(&test.root);
    let answer = changes_since(&test.root, Some(&token));
    assert!(matches!(answer, Changes::Everything { .. }), "{answer:?}");
}

fn cairn(root: &FsPath, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(root)
        .env("CAIRN_CONFIG", root.join("no-such-config.toml"))
        .output()
        .unwrap()
}

#[test]
fn cairn_status_is_right_while_cairn_daemon_runs_and_stop_stops_it() {
    let test = new_copy();
    write(&test.root, "kept.json", b"{}");
    write(&test.root, "edited.json", b"{}");
    write(&test.root, "removed.json", b"{}");
    record_as_synced(&test.copy);
    let (mut child, _) = spawn_cairn_daemon(&test.root);
    // A second one refuses to start.
    let second = cairn(&test.root, &["daemon"]);
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already runs"),
        "{second:?}"
    );
    let status_of = || {
        let output = cairn(&test.root, &["--json", "status"]);
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        json["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|change| {
                format!(
                    "{} {}",
                    change["change"].as_str().unwrap(),
                    change["path"].as_str().unwrap()
                )
            })
            .collect::<BTreeSet<String>>()
    };
    assert_eq!(status_of(), set(&[]));
    write(&test.root, "edited.json", b"{\"a\": 1}");
    fs::remove_file(test.root.join("removed.json")).unwrap();
    write(&test.root, "added/deep/new.json", b"{}");
    assert_eq!(
        status_of(),
        set(&[
            "added added/deep/new.json",
            "modified edited.json",
            "removed removed.json"
        ])
    );
    let stop = cairn(&test.root, &["daemon", "--stop"]);
    assert_eq!(stop.status.code(), Some(0), "{stop:?}");
    assert!(
        String::from_utf8_lossy(&stop.stdout).contains("Stopped"),
        "{stop:?}"
    );
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(changes_since(&test.root, None), Changes::Unavailable);
    // Stopping when none runs says so.
    let again = cairn(&test.root, &["daemon", "--stop"]);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("No file-system monitor"),
        "{again:?}"
    );
    // Nothing of the daemon's shows in the working copy.
    assert_eq!(
        status_of(),
        set(&[
            "added added/deep/new.json",
            "modified edited.json",
            "removed removed.json"
        ])
    );
}

/// The point of the monitor: with `cairn daemon` running, `cairn status` reads only the
/// folder that changed; without it, every folder again.
#[test]
fn with_cairn_daemon_status_walks_only_the_changed_folder() {
    let test = new_copy();
    for folder in ["a", "b", "c/d"] {
        write(&test.root, &format!("{folder}/x.json"), b"{}");
    }
    record_as_synced(&test.copy);
    let status_of = || {
        let output = cairn(&test.root, &["--json", "status"]);
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let changes: Vec<String> = json["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|change| change["path"].as_str().unwrap().to_owned())
            .collect();
        (changes, json["folders_walked"].as_u64().unwrap())
    };
    // Without a monitor: the root, a, b, c and c/d.
    assert_eq!(status_of(), (vec![], 5));
    let (mut child, _) = spawn_cairn_daemon(&test.root);
    // The first answer cannot vouch for anything: everything is walked, and its token kept.
    assert_eq!(status_of(), (vec![], 5));
    assert_eq!(status_of(), (vec![], 0));
    // An edited file is only stat'ed: its folder's entries did not change.
    write(&test.root, "b/x.json", b"{\"edited\": true}");
    assert_eq!(status_of(), (vec!["b/x.json".to_owned()], 0));
    // Made old, b/x.json's stat is worth recording (in a tree this small one file read again
    // costs more than the index write), and the token moves on with it: the next status walks
    // only c/d.
    crate::util::age(
        &test.root.join("b/x.json"),
        std::time::Duration::from_secs(10),
    );
    assert_eq!(status_of(), (vec!["b/x.json".to_owned()], 0));
    write(&test.root, "c/d/new.json", b"{}");
    assert_eq!(
        status_of(),
        (vec!["b/x.json".to_owned(), "c/d/new.json".to_owned()], 1)
    );
    let stop = cairn(&test.root, &["daemon", "--stop"]);
    assert_eq!(stop.status.code(), Some(0), "{stop:?}");
    assert!(child.wait().unwrap().success());
    // The monitor gone, an edit it never saw is found by the full walk.
    write(&test.root, "a/x.json", b"[]");
    assert_eq!(
        status_of(),
        (
            vec![
                "a/x.json".to_owned(),
                "b/x.json".to_owned(),
                "c/d/new.json".to_owned()
            ],
            5
        )
    );
}

#[test]
fn a_silent_slow_or_confused_monitor_is_unavailable() {
    let test = new_copy();
    let socket = socket_path(&canonical_root(&test.root)).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // Each connection is answered with the next of these (None: never answered).
    let answers: Vec<Option<&'static [u8]>> = vec![
        None,
        Some(b"not json\n"),
        Some(b"{\"version\":2,\"answer\":\"everything\",\"token\":\"a-1\"}\n"),
        Some(b"{\"version\":1,\"answer\":\"paths\",\"token\":\"a-1\",\"paths\":[\"../x\"]}\n"),
        Some(b"{\"version\":1,\"answer\":\"error\",\"message\":\"no\"}\n"),
        Some(b"{\"version\":1,\"answer\":\"paths\",\"token\":\"a-1\",\"paths\":[\"x\"]}\n"),
    ];
    let count = answers.len();
    let server = std::thread::spawn(move || {
        let mut held = Vec::new();
        for answer in answers {
            let (mut connection, _) = listener.accept().unwrap();
            let mut request = String::new();
            BufReader::new(connection.try_clone().unwrap())
                .read_line(&mut request)
                .unwrap();
            match answer {
                Some(answer) => connection.write_all(answer).unwrap(),
                None => held.push(connection),
            }
        }
    });
    let mut outcomes = Vec::new();
    for _ in 0..count {
        outcomes.push(changes_since(&test.root, None));
    }
    server.join().unwrap();
    let unavailable = vec![Changes::Unavailable; count - 1];
    assert_eq!(outcomes[..count - 1], unavailable[..]);
    // The last, well-formed answer is taken as it is (the fake's token and all).
    assert_eq!(
        outcomes[count - 1],
        Changes::Paths {
            token: Token("a-1".into()),
            paths: vec![PathBuf::from("x")]
        }
    );
}
