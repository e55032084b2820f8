//! End to end: the `cairn` binary against the real `sync-server` binary in embedded mode (SQLite
//! and a folder of objects in a temp data dir), on a free port.
//!
//! These tests do not build the server: `cairn_test_support` finds it (`CAIRN_SERVER_BIN`, else
//! beside this test executable, where `scripts/test` and any `cargo test --workspace` build it)
//! and otherwise fails saying how to build it.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use cairn_test_support::{ClientHome, ServerEnvironment, ServerProcess};

use crate::util::{files_on_disk, write};

/// A running server with accounts alice (owner of team `crew`), bob (editor) and carol (viewer).
struct Server {
    url: String,
    // Fields drop in order: the process is killed before its data folder goes.
    _process: ServerProcess,
    _environment: ServerEnvironment,
}

impl Server {
    fn start() -> Self {
        let environment = ServerEnvironment::embedded();
        environment.create_user("alice");
        environment.create_user("bob");
        environment.create_team("crew", "alice");
        environment.create_user("carol");
        environment.add_member("crew", "carol", "viewer");
        environment.add_member("crew", "bob", "editor");
        let process = environment.serve(&[]);
        Self {
            url: process.url().to_owned(),
            _process: process,
            _environment: environment,
        }
    }
}

/// One person's machine running this crate's `cairn`: a user config and a folder for working
/// copies.
struct User {
    home: ClientHome,
}

impl User {
    fn new() -> Self {
        Self {
            home: ClientHome::with_binary(env!("CARGO_BIN_EXE_cairn")),
        }
    }

    fn cairn(&self, dir: &Path, args: &[&str]) -> Output {
        self.home.run(dir, args)
    }

    /// Runs `cairn` in `dir`, which must succeed; returns its `--json` output.
    fn json(&self, dir: &Path, args: &[&str]) -> serde_json::Value {
        self.home.json(dir, args)
    }

    fn login(&self, server: &Server, name: &str) {
        self.home.login(&server.url, name);
    }

    fn clone(&self, project: &str, name: &str) -> PathBuf {
        let json = self.json(self.home.path(), &["clone", "--project", project, name]);
        PathBuf::from(json["root"].as_str().unwrap())
    }
}

/// A server, alice logged in with a new project `api`: (server, alice, project id).
fn setup() -> (Server, User, String) {
    let server = Server::start();
    let alice = User::new();
    alice.login(&server, "alice");
    let project = alice.json(
        alice.home.path(),
        &["projects", "create", "--team", "crew", "api"],
    );
    assert_eq!(project["version"], 0);
    let id = project["id"].as_str().unwrap().to_owned();
    (server, alice, id)
}

fn read(root: &Path, relative: &str) -> String {
    std::fs::read_to_string(root.join(relative)).unwrap()
}

/// A sync at the head pushes its edit without pulling first (the head is asked for while the
/// folder is scanned), a sync with nothing to do on either side sends nothing, and a sync
/// behind the head still pulls and merges before it pushes.
#[test]
fn a_sync_at_the_head_pushes_at_once_and_one_behind_pulls_first() {
    let (_server, alice, project) = setup();
    let one = alice.clone(&project, "one");
    let two = alice.clone(&project, "two");
    write(&one, "a.json", b"a0");
    let synced = alice.json(&one, &["sync"]);
    assert_eq!(synced["push"]["pushed"], true, "{synced}");
    assert_eq!(synced["push"]["version"], 1, "{synced}");
    assert_eq!(synced["pulls"][0]["version"], 0, "{synced}");
    assert_eq!(synced["pulls"][0]["applied"], serde_json::Value::Null);

    let idle = alice.json(&one, &["sync"]);
    assert_eq!(idle["push"]["pushed"], false, "{idle}");
    assert_eq!(idle["push"]["version"], 1, "{idle}");
    assert_eq!(idle["pulls"][0]["from"], 1, "{idle}");
    assert_eq!(idle["pulls"][0]["version"], 1, "{idle}");
    assert_eq!(idle["pulls"][0]["objects"], 0, "{idle}");
    let log = alice.json(&one, &["log"]);
    assert_eq!(log["versions"].as_array().map(Vec::len), Some(2), "{log}");

    // Two is behind (version 0) with an edit of its own: it pulls one's file, then pushes.
    write(&two, "b.json", b"b0");
    let synced = alice.json(&two, &["sync"]);
    assert_eq!(synced["pulls"][0]["version"], 1, "{synced}");
    assert_eq!(synced["push"]["version"], 2, "{synced}");
    assert_eq!(files_on_disk(&two), ["a.json", "b.json"]);
    let synced = alice.json(&one, &["sync"]);
    assert_eq!(synced["pulls"][0]["version"], 2, "{synced}");
    assert_eq!(synced["push"]["pushed"], false, "{synced}");
    assert_eq!(read(&one, "b.json"), "b0");
}

#[test]
fn clone_edit_push_then_another_copy_pulls_the_edit() {
    let (server, alice, project) = setup();
    let listed = alice.json(alice.home.path(), &["projects"]);
    assert_eq!(listed["projects"][0]["id"], project.as_str());

    let first = alice.clone(&project, "first");
    assert_eq!(files_on_disk(&first), Vec::<String>::new());
    write(&first, "requests/get-pets.json", b"{\"method\": \"GET\"}");
    write(&first, "README.md", b"pets\n");
    let pushed = alice.json(&first, &["push", "-m", "first requests"]);
    assert_eq!(pushed["push"]["pushed"], true);
    assert_eq!(pushed["push"]["version"], 1);

    // Bob, on his own machine, clones by name and sees the files.
    let bob = User::new();
    bob.login(&server, "bob");
    let second = bob.clone("api", "second");
    assert_eq!(
        files_on_disk(&second),
        ["README.md", "requests/get-pets.json"]
    );
    assert_eq!(
        read(&second, "requests/get-pets.json"),
        "{\"method\": \"GET\"}"
    );

    // An edit and a removal on alice's side reach bob's copy with a pull.
    write(&first, "README.md", b"pets, v2\n");
    std::fs::remove_file(first.join("requests/get-pets.json")).unwrap();
    let pushed = alice.json(&first, &["push"]);
    assert_eq!(pushed["push"]["version"], 2);
    // The index the push encoded while its request was out, sealed with the committed version:
    // valid as read, recording version 2 as its base and the pushed tree as its last scan.
    let index = sync_client::stores::index::Index::read(&first.join(".cairn/index"))
        .unwrap()
        .unwrap();
    assert_eq!(index.version(), Some(2));
    assert!(index.scan_recorded() && !index.has_pending());
    // The file and the folder it left empty, each recorded as base and as scan alike.
    let paths: Vec<&str> = index.records().map(|record| record.path).collect();
    assert_eq!(paths, ["README.md", "requests"]);
    assert!(
        index
            .records()
            .all(|record| record.base.is_some() && record.base == record.scan)
    );
    assert!(index.find("requests").unwrap().base.unwrap().is_dir());
    let copy = sync_client::working_copy::WorkingCopy::open(&first).unwrap();
    assert!(copy.status().unwrap().changes.is_empty());
    assert!(copy.take_index_rebuilt().is_none());
    let pulled = bob.json(&second, &["pull"]);
    assert_eq!(pulled["from"], 1);
    assert_eq!(pulled["version"], 2);
    assert_eq!(read(&second, "README.md"), "pets, v2\n");
    assert_eq!(files_on_disk(&second), ["README.md"]);

    // The log lists every version, newest first, with the message.
    let log = bob.json(&second, &["log"]);
    let numbers: Vec<u64> = log["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|version| version["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 1, 0]);
    assert_eq!(log["versions"][1]["message"], "first requests");
    assert_eq!(log["versions"][1]["author"]["name"], "alice");
}

#[test]
fn no_op_pull_and_push() {
    let (_server, alice, project) = setup();
    let copy = alice.clone(&project, "copy");
    let pulled = alice.json(&copy, &["pull"]);
    assert_eq!(pulled["version"], 0);
    assert_eq!(pulled["objects"], 0);
    assert_eq!(pulled["applied"], serde_json::Value::Null);
    let pushed = alice.json(&copy, &["push"]);
    assert_eq!(pushed["push"]["pushed"], false);
    assert_eq!(pushed["push"]["version"], 0);

    write(&copy, "a.txt", b"a");
    assert_eq!(alice.json(&copy, &["push"])["push"]["version"], 1);
    let again = alice.json(&copy, &["push"]);
    assert_eq!(again["push"]["pushed"], false);
    assert_eq!(again["push"]["version"], 1);
    let pulled = alice.json(&copy, &["pull"]);
    assert_eq!(pulled["version"], 1);
    assert_eq!(pulled["objects"], 0);
    assert_eq!(pulled["applied"], serde_json::Value::Null);
    let log = alice.json(&copy, &["log"]);
    assert_eq!(log["versions"].as_array().unwrap().len(), 2);
}

#[test]
fn concurrent_edits_of_different_files_merge_with_sync() {
    let (_server, alice, project) = setup();
    let one = alice.clone(&project, "one");
    write(&one, "a.json", b"a0");
    write(&one, "b.json", b"b0");
    alice.json(&one, &["push"]);
    let two = alice.clone(&project, "two");

    write(&one, "a.json", b"a1");
    write(&two, "b.json", b"b1");
    write(&two, "new/c.json", b"c1");
    assert_eq!(alice.json(&one, &["push"])["push"]["version"], 2);
    // Two is behind, but touched other files: the server rebases its push onto version 2.
    // One's change is in the head, not yet in two's folder: pending until two pulls.
    let pushed = alice.json(&two, &["push"]);
    assert_eq!(pushed["push"]["version"], 3, "{pushed}");
    assert_eq!(pushed["push"]["rebased"], true, "{pushed}");
    assert_eq!(read(&two, "a.json"), "a0");
    let status = alice.json(&two, &["status"]);
    assert_eq!(status["changes"], serde_json::json!([]), "{status}");
    assert_eq!(status["pending"], serde_json::json!(["a.json"]), "{status}");
    alice.json(&two, &["pull"]);
    assert_eq!(read(&two, "a.json"), "a1");
    assert_eq!(read(&two, "b.json"), "b1");

    let synced = alice.json(&one, &["sync"]);
    assert_eq!(synced["pulls"][0]["version"], 3);
    assert_eq!(synced["push"]["pushed"], false);
    for root in [&one, &two] {
        assert_eq!(files_on_disk(root), ["a.json", "b.json", "new/c.json"]);
        assert_eq!(read(root, "a.json"), "a1");
        assert_eq!(read(root, "b.json"), "b1");
        assert_eq!(read(root, "new/c.json"), "c1");
    }
}

#[test]
fn a_large_push_on_a_stale_base_is_rebased_through_the_resumable_path() {
    let (_server, alice, project) = setup();
    let one = alice.clone(&project, "one");
    write(&one, "small.json", b"s0");
    alice.json(&one, &["push"]);
    let two = alice.clone(&project, "two");
    write(&one, "small.json", b"s1");
    assert_eq!(alice.json(&one, &["push"])["push"]["version"], 2);
    // Past one request's 8 MiB: journaled, uploaded in batches, then the commit is rebased.
    let big = cairn_test_support::noise(9 * 1024 * 1024, 5);
    write(&two, "big.bin", &big);
    let pushed = alice.json(&two, &["push"]);
    assert_eq!(pushed["push"]["version"], 3, "{pushed}");
    assert_eq!(pushed["push"]["rebased"], true, "{pushed}");
    assert!(
        !two.join(".cairn/push-journal").exists(),
        "the journal goes once the base is recorded"
    );
    alice.json(&two, &["pull"]);
    assert_eq!(read(&two, "small.json"), "s1");
    alice.json(&one, &["pull"]);
    assert_eq!(std::fs::read(one.join("big.bin")).unwrap(), big);
}

#[test]
fn concurrent_edits_of_one_file_keep_both() {
    let (_server, alice, project) = setup();
    let one = alice.clone(&project, "one");
    write(&one, "spec.yaml", b"base\n");
    alice.json(&one, &["push"]);
    let two = alice.clone(&project, "two");

    write(&one, "spec.yaml", b"edit from one\n");
    write(&two, "spec.yaml", b"edit from two\n");
    assert_eq!(alice.json(&one, &["push"])["push"]["version"], 2);
    let synced = alice.json(&two, &["sync"]);
    assert_eq!(synced["push"]["version"], 3, "{synced}");
    let copies = &synced["pulls"][0]["applied"]["conflict_copies"];
    assert_eq!(copies.as_array().unwrap().len(), 1, "{synced}");
    let copy_name = copies[0]["copy"].as_str().unwrap().to_owned();
    assert_eq!(copies[0]["path"], "spec.yaml");

    // The server's edit is at the path, the local one beside it, and the line merge with its
    // markers beside that; all reach the other copy.
    alice.json(&one, &["pull"]);
    let marked = format!("{copy_name}.merge");
    for root in [&one, &two] {
        assert_eq!(read(root, "spec.yaml"), "edit from one\n");
        assert_eq!(read(root, &copy_name), "edit from two\n");
        assert_eq!(
            read(root, &marked),
            "<<<<<<< ours\nedit from two\n||||||| base\nbase\n=======\nedit from one\n>>>>>>> theirs\n"
        );
        assert_eq!(files_on_disk(root).len(), 3, "{:?}", files_on_disk(root));
    }
}

#[test]
fn restore_brings_back_an_old_version() {
    let (_server, alice, project) = setup();
    let copy = alice.clone(&project, "copy");
    write(&copy, "a.txt", b"one");
    alice.json(&copy, &["push"]);
    write(&copy, "a.txt", b"two");
    alice.json(&copy, &["push"]);
    let restored = alice.json(&copy, &["restore", "1"]);
    assert_eq!(restored["version"], 3);
    assert_eq!(read(&copy, "a.txt"), "one");
}

#[test]
fn errors_name_the_cause_and_exit_codes() {
    let (server, alice, project) = setup();
    let copy = alice.clone(&project, "copy");

    // A stranger with no token is told to log in.
    let stranger = User::new();
    let output = stranger.cairn(&copy, &["pull"]);
    assert_eq!(output.status.code(), Some(5), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cairn login"));

    // A token the server does not know.
    let config = stranger.home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[servers.\"{}\"]\ntoken = \"cairn_{}\"\n",
            server.url,
            "0".repeat(64)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let output = stranger.cairn(&copy, &["pull"]);
    assert_eq!(output.status.code(), Some(5), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("did not accept your access token"),
        "{stderr}"
    );
    assert!(stderr.contains("cairn login"), "{stderr}");

    // A wrong password.
    let output = stranger.cairn(
        stranger.home.path(),
        &["login", "--server", &server.url, "--user", "nobody"],
    );
    assert_eq!(output.status.code(), Some(5), "{output:?}");

    // A viewer may clone and pull but not push: exit 5, and the role is named.
    let carol = User::new();
    carol.login(&server, "carol");
    let carols = carol.clone(&project, "carols");
    write(&carols, "x.txt", b"x");
    let output = carol.cairn(&carols, &["push"]);
    assert_eq!(output.status.code(), Some(5), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("role"),
        "{output:?}"
    );
    let output = carol.cairn(&carols, &["status"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("A  x.txt"));

    // The server gone: the URL is named, exit 7.
    let url = server.url.clone();
    drop(server);
    let output = alice.cairn(&copy, &["pull"]);
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&url),
        "{output:?}"
    );
}

#[test]
fn a_folder_made_with_init_merges_into_a_project_with_content() {
    let (server, alice, project) = setup();
    let copy = alice.clone(&project, "copy");
    write(&copy, "shared.json", b"from the server");
    write(&copy, "same.json", b"server side");
    alice.json(&copy, &["push"]);

    // An existing folder made a working copy with `init` never synced: its first push is
    // based on version 0, conflicts, and is merged with the head.
    let folder = alice.home.path().join("existing");
    write(&folder, "mine.json", b"local only");
    write(&folder, "same.json", b"local side");
    alice.json(
        alice.home.path(),
        &[
            "init",
            "--server",
            &server.url,
            "--project",
            &project,
            folder.to_str().unwrap(),
        ],
    );
    let pushed = alice.json(&folder, &["push"]);
    assert_eq!(pushed["push"]["version"], 2, "{pushed}");
    assert_eq!(read(&folder, "shared.json"), "from the server");
    assert_eq!(read(&folder, "mine.json"), "local only");
    // Both added same.json: the server's is at the path, the local one in a conflict copy.
    assert_eq!(read(&folder, "same.json"), "server side");
    let copies = &pushed["pulls"][0]["applied"]["conflict_copies"];
    let copy_name = copies[0]["copy"].as_str().unwrap();
    assert_eq!(read(&folder, copy_name), "local side");

    alice.json(&copy, &["pull"]);
    assert_eq!(files_on_disk(&copy), files_on_disk(&folder));
    assert_eq!(read(&copy, "mine.json"), "local only");
}

/// A TCP proxy in front of `target` that forwards everything, except that the answer to the
/// first push request is dropped and its connection closed: the server commits, the client
/// sees a broken connection and must not know whether the push went through.
fn lossy_proxy(target: &str) -> String {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let target = target.trim_start_matches("http://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let dropped = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let target = target.clone();
            let dropped = dropped.clone();
            std::thread::spawn(move || {
                let mut server = TcpStream::connect(&target).unwrap();
                let mut first = vec![0u8; 64 * 1024];
                let Ok(read) = client.read(&mut first) else {
                    return;
                };
                let head = String::from_utf8_lossy(&first[..read]).into_owned();
                let drop_answer = head.starts_with("POST ")
                    && head.contains("/push?")
                    && !dropped.swap(true, Ordering::SeqCst);
                server.write_all(&first[..read]).unwrap();
                let mut upstream = client.try_clone().unwrap();
                let mut to_server = server.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut upstream, &mut to_server);
                });
                if drop_answer {
                    let mut sink = [0u8; 1];
                    let _ = server.read(&mut sink);
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    let _ = server.shutdown(std::net::Shutdown::Both);
                } else {
                    let _ = std::io::copy(&mut server, &mut client);
                    let _ = client.shutdown(std::net::Shutdown::Both);
                }
            });
        }
    });
    url
}

#[test]
fn a_push_whose_answer_is_lost_is_retried_with_its_push_id_and_commits_once() {
    let (server, _alice, project) = setup();
    let proxy = lossy_proxy(&server.url);
    let bob = User::new();
    let login = bob.json(
        bob.home.path(),
        &["login", "--server", &proxy, "--user", "bob"],
    );
    assert_eq!(login["server"], proxy.as_str());
    let copy = bob.clone(&project, "copy");
    write(&copy, "a.txt", b"once");
    let pushed = bob.json(&copy, &["push"]);
    assert_eq!(pushed["push"]["version"], 1, "{pushed}");
    assert_eq!(pushed["push"]["replayed"], true, "{pushed}");
    let log = bob.json(&copy, &["log"]);
    assert_eq!(log["versions"].as_array().unwrap().len(), 2, "{log}");
    let pulled = bob.json(&copy, &["pull"]);
    assert_eq!(pulled["applied"], serde_json::Value::Null);
}

/// Waits up to 20 seconds for `done`.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn watch_pulls_a_teammates_push_and_pushes_local_edits() {
    let (_server, alice, project) = setup();
    let watched = alice.clone(&project, "watched");
    let other = alice.clone(&project, "other");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _watch = Kill(
        alice
            .home
            .command(&watched, &["--json", "watch", "--interval", "1"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // The watch is the working copy's file-system monitor as well.
    eventually("the watch answers as the monitor", || {
        matches!(
            sync_client::stores::monitor::changes_since(&watched, None),
            sync_client::stores::monitor::Changes::Everything { .. }
        )
    });

    // A push from the other copy arrives through the event stream.
    write(&other, "from-other.json", b"1");
    alice.json(&other, &["push"]);
    eventually("the other copy's push reaches the watched folder", || {
        std::fs::read_to_string(watched.join("from-other.json")).is_ok_and(|text| text == "1")
    });

    // An edit in the watched folder is pushed and reaches the other copy.
    write(&watched, "from-watched.json", b"2");
    eventually("the watched folder's edit is pushed", || {
        alice.json(&other, &["pull"]);
        std::fs::read_to_string(other.join("from-watched.json")).is_ok_and(|text| text == "2")
    });
}

#[test]
fn a_path_a_pull_could_not_update_blocks_push_until_fixed() {
    let (_server, alice, project) = setup();
    let one = alice.clone(&project, "one");
    let two = alice.clone(&project, "two");
    // In two, a symbolic link (never synced) takes the name the server's new file wants.
    std::os::unix::fs::symlink("elsewhere", two.join("spec.yaml")).unwrap();
    write(&two, "local.txt", b"local");
    write(&one, "spec.yaml", b"from one");
    alice.json(&one, &["push"]);

    let pulled = alice.json(&two, &["pull"]);
    assert_eq!(
        pulled["applied"]["held_back"][0]["path"], "spec.yaml",
        "{pulled}"
    );
    let output = alice.cairn(&two, &["push"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("could not update spec.yaml") && stderr.contains("pull again"),
        "{stderr}"
    );

    // Pulling again tries the path again, and says in words why it is still left.
    let again = alice.cairn(&two, &["pull"]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("spec.yaml: not updated: something that is not synced"),
        "{again:?}"
    );

    // Once the link is gone, a sync brings the file in and pushes the local edit.
    std::fs::remove_file(two.join("spec.yaml")).unwrap();
    let synced = alice.json(&two, &["sync"]);
    assert_eq!(synced["push"]["version"], 2, "{synced}");
    assert_eq!(read(&two, "spec.yaml"), "from one");
    alice.json(&one, &["pull"]);
    assert_eq!(read(&one, "local.txt"), "local");
}

#[test]
fn a_push_whose_base_left_the_object_cache_asks_the_server_what_it_lacks() {
    let (_server, alice, project) = setup();
    let copy = alice.clone(&project, "copy");
    write(&copy, "keep.txt", b"unchanged");
    write(&copy, "sub/also-kept.txt", b"unchanged too");
    write(&copy, "sub/edit.txt", b"v1");
    alice.json(&copy, &["push"]);
    // The whole object cache is gone (cleaned by hand, a damaged disk).
    std::fs::remove_dir_all(copy.join(".cairn/objects")).unwrap();

    write(&copy, "sub/edit.txt", b"v2");
    let pushed = alice.json(&copy, &["push"]);
    assert_eq!(pushed["push"]["version"], 2, "{pushed}");
    // The negotiation finds what the server lacks: the new root, the new `sub` and the edit;
    // the unchanged files (whose content is no longer cached) are not needed.
    assert_eq!(pushed["push"]["objects"], 3, "{pushed}");
    let other = alice.clone(&project, "other");
    assert_eq!(read(&other, "keep.txt"), "unchanged");
    assert_eq!(read(&other, "sub/also-kept.txt"), "unchanged too");
    assert_eq!(read(&other, "sub/edit.txt"), "v2");
}

/// A proxy to `target` that, while `cutting` is set, forwards at most `budget` bytes from
/// clients and then cuts every connection (the one under way mid-request, and every new one at
/// once): the network failing in the middle of a large push.
fn cutting_proxy(
    target: &str,
    budget: u64,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let target = target.trim_start_matches("http://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let cutting = Arc::new(AtomicBool::new(true));
    let flag = cutting.clone();
    let forwarded = Arc::new(AtomicU64::new(0));
    let cut = move |flag: &AtomicBool, forwarded: &AtomicU64| {
        flag.load(Ordering::SeqCst) && forwarded.load(Ordering::SeqCst) >= budget
    };
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            if cut(&flag, &forwarded) {
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            let server = TcpStream::connect(&target).unwrap();
            let (flag, forwarded) = (flag.clone(), forwarded.clone());
            let (mut to_server, mut from_server) = (server.try_clone().unwrap(), server);
            let mut to_client = client.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_server, &mut to_client);
                let _ = to_client.shutdown(Shutdown::Both);
            });
            std::thread::spawn(move || {
                let mut buffer = vec![0u8; 16 * 1024];
                loop {
                    let read = match client.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(read) => read,
                    };
                    forwarded.fetch_add(read as u64, Ordering::SeqCst);
                    if cut(&flag, &forwarded) || to_server.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(Shutdown::Both);
                let _ = to_server.shutdown(Shutdown::Both);
            });
        }
    });
    (url, cutting)
}

/// A counter of the server's Prometheus `/metrics`.
fn metric(server: &Server, name: &str) -> u64 {
    let text = reqwest::blocking::get(format!("{}/metrics", server.url))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[test]
fn a_large_push_cut_off_midway_resumes_without_resending_stored_objects() {
    let (server, alice, project) = setup();
    // The same 48 MB of incompressible files in a second project, pushed in one go, says how
    // many objects the tree has. Two upload batches (32 MiB each at most).
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|n| {
            (
                format!("data/blob-{n}.bin"),
                crate::util::noise(6_000_000, 7 + n),
            )
        })
        .collect();
    let other = alice.json(
        alice.home.path(),
        &["projects", "create", "--team", "crew", "reference"],
    );
    let reference = alice.clone(other["id"].as_str().unwrap(), "reference");
    for (path, bytes) in &files {
        write(&reference, path, bytes);
    }
    // Text output, standard error a pipe: a 48 MB upload draws no progress bar.
    let plain = alice.cairn(&reference, &["push"]);
    assert_eq!(plain.status.code(), Some(0), "{plain:?}");
    assert!(plain.stderr.is_empty(), "{plain:?}");
    let full = alice.json(&reference, &["log"]);
    assert_eq!(full["versions"][0]["number"], 1, "{full}");
    // Every object of the tree went in that push: a fresh project holds nothing else.
    let total = metric(&server, "cairn_objects_stored_total");
    assert!(total > 30, "{full}");

    // Bob pushes the same tree through a proxy that cuts the network after 40 MB, in the
    // second upload batch.
    let (proxy, cutting) = cutting_proxy(&server.url, 40_000_000);
    let bob = User::new();
    bob.json(
        bob.home.path(),
        &["login", "--server", &proxy, "--user", "bob"],
    );
    let copy = bob.clone(&project, "copy");
    for (path, bytes) in &files {
        write(&copy, path, bytes);
    }
    let stored_before = metric(&server, "cairn_objects_stored_total");
    let cut = bob.cairn(&copy, &["--json", "push"]);
    assert_eq!(cut.status.code(), Some(7), "{cut:?}");
    assert!(copy.join(".cairn/push-journal").is_file());
    let stored_by_cut = metric(&server, "cairn_objects_stored_total") - stored_before;
    assert!(
        stored_by_cut > 0 && stored_by_cut < total,
        "{stored_by_cut} of {total}"
    );

    // The network is back: nothing was committed, and the next push sends only what the
    // server lacks, and commits.
    cutting.store(false, std::sync::atomic::Ordering::SeqCst);
    let head = bob.json(&copy, &["log"]);
    assert_eq!(
        head["versions"][0]["number"], 0,
        "nothing may be committed: {head}"
    );
    let resumed = bob.json(&copy, &["push"]);
    assert_eq!(resumed["push"]["version"], 1, "{resumed}");
    let sent = resumed["push"]["objects"].as_u64().unwrap();
    eprintln!(
        "objects: {total} in the tree, {stored_by_cut} stored before the cut, {sent} sent after"
    );
    assert_eq!(stored_by_cut + sent, total, "{resumed}");
    assert_eq!(
        metric(&server, "cairn_objects_stored_total") - stored_before,
        total
    );
    assert!(!copy.join(".cairn/push-journal").exists());

    // And the tree arrived whole.
    let check = alice.clone(&project, "check");
    for (path, bytes) in &files {
        assert_eq!(&std::fs::read(check.join(path)).unwrap(), bytes, "{path}");
    }
}

#[test]
fn a_small_edit_travels_as_one_change_record_both_ways() {
    let (server, alice, project) = setup();
    let first = alice.clone(&project, "first");
    // Folders of several files each, so the dirs on the way are the bulk of a naive push.
    for folder in 0..4 {
        for file in 0..12 {
            let text = format!(
                "{{\"folder\": {folder}, \"file\": {file}, \"pad\": \"{}\"}}\n",
                "x".repeat(300)
            );
            write(
                &first,
                &format!("collections/c{folder}/f{file}.json"),
                text.as_bytes(),
            );
        }
    }
    alice.json(&first, &["push"]);
    let bob = User::new();
    bob.login(&server, "bob");
    let second = bob.clone("api", "second");

    let edited = read(&first, "collections/c2/f7.json").replace("\"file\": 7", "\"file\": 77");
    write(&first, "collections/c2/f7.json", edited.as_bytes());
    let pushed = alice.json(&first, &["push"]);
    assert_eq!(pushed["push"]["version"], 2, "{pushed}");
    // One record (the edit, as a delta against the old file): no dirs, no whole file.
    assert_eq!(pushed["push"]["objects"], 1, "{pushed}");
    let bytes = pushed["push"]["bytes"].as_u64().unwrap();
    assert!(
        bytes < 200,
        "a one-line edit took {bytes} bytes of stream: {pushed}"
    );

    let pulled = bob.json(&second, &["pull"]);
    assert_eq!(pulled["version"], 2, "{pulled}");
    assert_eq!(pulled["objects"], 1, "{pulled}");
    assert!(pulled["bytes"].as_u64().unwrap() < 200, "{pulled}");
    assert_eq!(read(&second, "collections/c2/f7.json"), edited);
    assert_eq!(files_on_disk(&second).len(), 48);

    // Without its object cache the second copy cannot apply a delta or patch its base dirs:
    // the pull falls back to dirs and still arrives whole.
    std::fs::remove_dir_all(second.join(".cairn/objects")).unwrap();
    let edited = edited.replace("\"file\": 77", "\"file\": 777");
    write(&first, "collections/c2/f7.json", edited.as_bytes());
    alice.json(&first, &["push"]);
    let pulled = bob.json(&second, &["pull"]);
    assert_eq!(pulled["version"], 3, "{pulled}");
    assert_eq!(read(&second, "collections/c2/f7.json"), edited);
}

#[test]
fn an_edit_inside_a_large_file_pushes_and_pulls_its_file_object_and_new_chunks() {
    let (server, alice, project) = setup();
    let first = alice.clone(&project, "first");
    let mut big = crate::util::noise(1_500_000, 11);
    write(&first, "data/big.bin", &big);
    write(&first, "data/small.json", b"{}");
    alice.json(&first, &["push"]);
    let bob = User::new();
    bob.login(&server, "bob");
    let second = bob.clone("api", "second");

    // One byte in the middle: a record for the path, the new file object and the chunks
    // around the edit; no dirs.
    big[750_000] ^= 0xff;
    write(&first, "data/big.bin", &big);
    let pushed = alice.json(&first, &["push"]);
    assert_eq!(pushed["push"]["version"], 2, "{pushed}");
    let objects = pushed["push"]["objects"].as_u64().unwrap();
    assert!((3..=4).contains(&objects), "{pushed}");
    let pulled = bob.json(&second, &["pull"]);
    assert_eq!(pulled["version"], 2, "{pulled}");
    assert_eq!(pulled["objects"], objects, "{pulled}");
    assert_eq!(std::fs::read(second.join("data/big.bin")).unwrap(), big);
}

#[test]
fn a_push_after_the_index_was_damaged_rebuilds_it_and_loses_nothing() {
    let (_server, alice, project) = setup();
    let one = alice.clone(&project, "one");
    write(&one, "requests/a.json", b"{\"a\": 1}");
    write(&one, "requests/b.json", b"{\"b\": 1}");
    assert_eq!(alice.json(&one, &["push"])["push"]["version"], 1);
    // A local edit, then the index torn in half.
    write(&one, "requests/a.json", b"{\"a\": 2}");
    let index = one.join(".cairn/index");
    let bytes = std::fs::read(&index).unwrap();
    std::fs::write(&index, &bytes[..bytes.len() / 2]).unwrap();
    let pushed = alice.cairn(&one, &["--json", "push"]);
    assert_eq!(pushed.status.code(), Some(0), "{pushed:?}");
    let stderr = String::from_utf8_lossy(&pushed.stderr);
    assert!(
        stderr.contains("was damaged") && stderr.contains("nothing was lost"),
        "{stderr}"
    );
    let answer: serde_json::Value = serde_json::from_slice(&pushed.stdout).unwrap();
    // Only the edit went out: the rebuilt base is version 1, so b.json is not new.
    assert_eq!(answer["push"]["version"], 2);
    let two = alice.clone(&project, "two");
    assert_eq!(read(&two, "requests/a.json"), "{\"a\": 2}");
    assert_eq!(read(&two, "requests/b.json"), "{\"b\": 1}");
    let status = alice.json(&one, &["status"]);
    assert_eq!(status["changes"], serde_json::json!([]));
    assert_eq!(status["base_version"], 2);
}

#[test]
fn after_a_push_the_index_keeps_every_files_stat() {
    let (_server, alice, project) = setup();
    let one = alice.clone(&project, "one");
    for n in 0..20 {
        write(&one, &format!("requests/{n}.json"), b"{}");
    }
    crate::util::age_tree(&one);
    assert_eq!(alice.json(&one, &["push"])["push"]["version"], 1);
    write(&one, "requests/0.json", b"{\"edited\": true}");
    crate::util::age_tree(&one);
    assert_eq!(alice.json(&one, &["push"])["push"]["version"], 2);
    // Neither push left the next command a file to read again.
    let status = alice.json(&one, &["status"]);
    assert_eq!(status["changes"], serde_json::json!([]));
    assert_eq!(status["files"], 20);
    assert_eq!(status["files_read"], 0);
}

/// With `cairn daemon` running, a push records the monitor's token with its new base (the
/// disk is as the push's scan saw it), so the commands after it read only what changed.
#[test]
fn with_a_monitor_a_push_leaves_the_next_commands_nothing_to_walk() {
    let (_server, alice, project) = setup();
    let one = alice.clone(&project, "one");
    for folder in ["a", "b", "c"] {
        write(&one, &format!("{folder}/x.json"), b"{}");
    }
    let (mut daemon, _) = crate::monitor::spawn_cairn_daemon(&one);
    assert_eq!(alice.json(&one, &["push"])["push"]["version"], 1);
    write(&one, "b/x.json", b"{\"edited\": true}");
    // The push asks the monitor, walks only b/, and keeps the token it got.
    assert_eq!(alice.json(&one, &["push"])["push"]["version"], 2);
    let status = alice.json(&one, &["status"]);
    assert_eq!(status["changes"], serde_json::json!([]));
    assert_eq!(status["folders_walked"], 0, "{status}");
    let synced = alice.json(&one, &["sync"]);
    assert_eq!(synced["push"]["pushed"], false, "{synced}");
    let stop = alice.cairn(&one, &["daemon", "--stop"]);
    assert!(stop.status.success(), "{stop:?}");
    assert!(daemon.wait().unwrap().success());
}
