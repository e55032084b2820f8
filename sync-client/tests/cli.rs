//! The `cairn` binary: init and status work locally; exit codes without a server (the network
//! commands are tested against a real server in `remote`).

use std::process::{Command, Output};

use crate::util::write;

/// `program` run in `dir` with no user configuration.
fn command(program: &str, dir: &std::path::Path) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env("CAIRN_CONFIG", dir.join("no-such-config.toml"));
    command
}

fn cairn(dir: &std::path::Path, args: &[&str]) -> Output {
    command(env!("CARGO_BIN_EXE_cairn"), dir)
        .args(args)
        .output()
        .unwrap()
}

/// `cairn init` of project `p1` in `dir`, which must succeed.
fn init(dir: &std::path::Path) {
    let init = cairn(
        dir,
        &["init", "--server", "https://cairn.test", "--project", "p1"],
    );
    assert_eq!(init.status.code(), Some(0), "{init:?}");
}

#[test]
fn init_then_status_json() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    write(dir.path(), "api/a.json", b"{}");
    std::os::unix::fs::symlink("api", dir.path().join("link")).unwrap();
    let status = cairn(&dir.path().join("api"), &["status", "--json"]);
    assert_eq!(status.status.code(), Some(0), "{status:?}");
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["project"], "p1");
    assert_eq!(json["base_version"], serde_json::Value::Null);
    assert_eq!(json["changes"][0]["path"], "api/a.json");
    assert_eq!(json["changes"][0]["change"], "added");
    assert_eq!(json["skipped"][0]["path"], "link");
    let text = cairn(dir.path(), &["status"]);
    let stdout = String::from_utf8(text.stdout).unwrap();
    assert!(stdout.contains("A  api/a.json"), "{stdout}");
    assert!(stdout.contains("link: symbolic link"), "{stdout}");
}

#[test]
fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let outside = cairn(dir.path(), &["status"]);
    assert_eq!(outside.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&outside.stderr).contains("not inside a Cairn working copy"));
    let bad = cairn(
        dir.path(),
        &["init", "--server", "ftp://x", "--project", "p"],
    );
    assert_eq!(bad.status.code(), Some(1));
    let usage = cairn(dir.path(), &["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
    // Inside no working copy, the network commands say so before anything else.
    for command in [
        &["push"][..],
        &["pull"],
        &["sync"],
        &["watch"],
        &["log"],
        &["restore", "3"],
        &["daemon"],
        &["daemon", "--stop"],
    ] {
        let output = cairn(dir.path(), command);
        assert_eq!(output.status.code(), Some(3), "{command:?}");
    }
    let help = cairn(dir.path(), &["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Exit codes:"), "{help}");
    for command in [
        "login", "projects", "init", "clone", "status", "push", "pull", "sync", "watch", "log",
        "restore", "daemon",
    ] {
        assert!(help.contains(command), "{command} missing from --help");
    }
}

#[test]
fn status_rebuilds_a_damaged_index_and_says_nothing_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    write(dir.path(), "api/a.json", b"{}");
    let first = cairn(dir.path(), &["status"]);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let index = dir.path().join(".cairn/index");
    let mut bytes = std::fs::read(&index).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&index, bytes).unwrap();
    let rebuilt = cairn(dir.path(), &["status"]);
    assert_eq!(rebuilt.status.code(), Some(0), "{rebuilt:?}");
    let stderr = String::from_utf8_lossy(&rebuilt.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("was damaged") && stderr.contains("nothing was lost"),
        "{stderr}"
    );
    assert_eq!(rebuilt.stdout, first.stdout);
    // Rebuilt once: the next status says nothing about it.
    let again = cairn(dir.path(), &["status"]);
    assert!(again.stderr.is_empty(), "{again:?}");
    assert_eq!(again.stdout, first.stdout);
}

/// The walk keeps one folder open per thread, not one per level: a tree 60 folders deep
/// scans completely under a limit of 40 open files.
#[test]
fn a_deep_tree_scans_within_a_small_open_file_limit() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let mut folder = String::new();
    for level in 0..60 {
        folder.push_str(if level == 0 { "d" } else { "/d" });
        write(dir.path(), &format!("{folder}/f{level}.json"), b"{}");
        write(
            dir.path(),
            &format!("{folder}/sibling/g{level}.json"),
            b"[]",
        );
    }
    let status = command("sh", dir.path())
        .arg("-c")
        .arg("ulimit -n 40 && exec \"$0\" status --json")
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{status:?}");
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["skipped"], serde_json::json!([]), "{json}");
    assert_eq!(json["changes"].as_array().unwrap().len(), 120);
}
