//! Push, pull and sync between two working copies: edits travel byte for byte, concurrent
//! edits of different files merge, concurrent edits of one file keep both.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use cairn_test_support::files::{FileState, assert_same_tree, read, tree_on_disk, write};
use cairn_test_support::noise;
use serde_json::{Value, json};

use crate::support::Setup;

/// The version numbers of `cairn log --json`, newest first.
fn log_numbers(log: &Value) -> Vec<u64> {
    log["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions in {log}"))
        .iter()
        .filter_map(|version| version["number"].as_u64())
        .collect()
}

fn sorted_strings(value: &Value) -> Vec<String> {
    let mut strings: Vec<String> = value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .filter_map(|item| item.as_str().map(str::to_owned))
        .collect();
    strings.sort();
    strings
}

fn text(bytes: &str) -> FileState {
    FileState {
        bytes: bytes.as_bytes().to_vec(),
        executable: false,
    }
}

#[test]
fn edits_adds_and_deletes_in_nested_folders_reach_the_other_copy_byte_for_byte() {
    let Some(setup) = Setup::start() else { return };
    let Setup { cairn, a, b, .. } = &setup;

    // Version 1: nested folders, an executable script and a file of several chunks.
    write(a, "README.md", b"pets api\n");
    write(
        a,
        "requests/pets/list.json",
        br#"{"method":"GET","url":"/pets"}"#,
    );
    write(
        a,
        "requests/pets/create.json",
        br#"{"method":"POST","url":"/pets"}"#,
    );
    write(
        a,
        "requests/owners/get.json",
        br#"{"method":"GET","url":"/owners/1"}"#,
    );
    write(
        a,
        "environments/dev.json",
        br#"{"base":"http://localhost"}"#,
    );
    write(a, "environments/prod/secrets.json", br#"{"key":"one"}"#);
    write(a, "scripts/setup.sh", b"#!/bin/sh\necho setup\n");
    fs::set_permissions(
        a.join("scripts/setup.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    write(a, "fixtures/large.bin", &noise(700_000, 11));
    let pushed = cairn.json(a, &["push", "-m", "first requests"]);
    assert_eq!(pushed["push"]["pushed"], true, "{pushed}");
    assert_eq!(pushed["push"]["version"], 1, "{pushed}");
    cairn.pull(b, 0, 1);
    assert_same_tree(a, b);
    assert!(
        tree_on_disk(b)["scripts/setup.sh"].executable,
        "the executable bit did not travel"
    );

    // Version 2: edits, additions and deletions, nested, including a whole folder.
    write(a, "README.md", b"pets api, version two\n");
    write(
        a,
        "requests/pets/create.json",
        br#"{"method":"POST","url":"/v2/pets"}"#,
    );
    fs::remove_file(a.join("requests/pets/list.json")).expect("rm");
    fs::remove_dir_all(a.join("requests/owners")).expect("rm -r");
    write(
        a,
        "requests/stores/inventory/get.json",
        br#"{"method":"GET"}"#,
    );
    write(a, "requests/stores/inventory/deep/er/still.json", b"{}");
    write(a, "environments/prod/secrets.json", br#"{"key":"two"}"#);
    fs::set_permissions(
        a.join("scripts/setup.sh"),
        fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let mut large = read(a, "fixtures/large.bin");
    large[350_000..350_016].copy_from_slice(b"sixteen new byte");
    large.extend_from_slice(b"and a tail");
    write(a, "fixtures/large.bin", &large);
    let expected: BTreeMap<String, FileState> = BTreeMap::from([
        ("README.md".to_owned(), text("pets api, version two\n")),
        (
            "requests/pets/create.json".to_owned(),
            text(r#"{"method":"POST","url":"/v2/pets"}"#),
        ),
        (
            "requests/stores/inventory/get.json".to_owned(),
            text(r#"{"method":"GET"}"#),
        ),
        (
            "requests/stores/inventory/deep/er/still.json".to_owned(),
            text("{}"),
        ),
        (
            "environments/dev.json".to_owned(),
            text(r#"{"base":"http://localhost"}"#),
        ),
        (
            "environments/prod/secrets.json".to_owned(),
            text(r#"{"key":"two"}"#),
        ),
        (
            "scripts/setup.sh".to_owned(),
            text("#!/bin/sh\necho setup\n"),
        ),
        (
            "fixtures/large.bin".to_owned(),
            FileState {
                bytes: large,
                executable: false,
            },
        ),
    ]);
    assert_eq!(tree_on_disk(a), expected, "the test's own edits");
    let pushed = cairn.json(a, &["push", "-m", "second"]);
    assert_eq!(pushed["push"]["version"], 2, "{pushed}");

    let pulled = cairn.pull(b, 1, 2);
    assert_eq!(
        sorted_strings(&pulled["applied"]["removed"]),
        ["requests/owners/get.json", "requests/pets/list.json"],
        "{pulled}"
    );
    assert_eq!(pulled["applied"]["conflict_copies"], json!([]), "{pulled}");
    assert_eq!(tree_on_disk(b), expected);
    assert_same_tree(a, b);
    assert!(
        !b.join("requests/owners").exists(),
        "the emptied folder requests/owners is still in the pulling copy"
    );

    // Both copies are clean, at version 2, and the history has every version.
    for copy in [a, b] {
        cairn.assert_clean_at(copy, 2);
    }
    let log = cairn.json(b, &["log"]);
    assert_eq!(log_numbers(&log), [2, 1, 0], "{log}");
    assert_eq!(log["versions"][1]["message"], "first requests", "{log}");
}

#[test]
fn concurrent_edits_of_different_files_are_merged_by_push() {
    let Some(setup) = Setup::start() else { return };
    setup.first_version(&[
        ("a.json", b"a0"),
        ("nested/b.json", b"b0"),
        ("shared/c.json", b"c0"),
    ]);
    let Setup { cairn, a, b, .. } = &setup;

    // From the same base, each copy changes different files.
    write(a, "a.json", b"a1 from A");
    write(a, "shared/new-from-a.json", b"new from A");
    write(b, "nested/b.json", b"b1 from B");
    fs::remove_file(b.join("shared/c.json")).expect("rm");
    assert_eq!(cairn.json(a, &["push"])["push"]["version"], 2);

    // B's push is based on version 1: the server answers conflict, and push pulls version 2,
    // merges it with B's edits and pushes the merge as version 3.
    let pushed = cairn.json(b, &["push", "-m", "from B"]);
    assert_eq!(pushed["push"]["pushed"], true, "{pushed}");
    assert_eq!(pushed["push"]["version"], 3, "{pushed}");
    let pulls = pushed["pulls"].as_array().expect("pulls");
    assert_eq!(pulls.len(), 1, "one round of pull and merge: {pushed}");
    assert_eq!(
        (&pulls[0]["from"], &pulls[0]["version"]),
        (&json!(1), &json!(2)),
        "{pushed}"
    );
    assert_eq!(
        pulls[0]["applied"]["conflict_copies"],
        json!([]),
        "{pushed}"
    );

    cairn.pull(a, 2, 3);
    let expected = BTreeMap::from([
        ("a.json".to_owned(), text("a1 from A")),
        ("nested/b.json".to_owned(), text("b1 from B")),
        ("shared/new-from-a.json".to_owned(), text("new from A")),
    ]);
    assert_eq!(tree_on_disk(a), expected);
    assert_eq!(tree_on_disk(b), expected);
    let log = cairn.json(a, &["log"]);
    assert_eq!(log_numbers(&log), [3, 2, 1, 0], "{log}");
    assert_eq!(log["versions"][0]["message"], "from B", "{log}");
    // Nothing left to do on either side.
    for copy in [a, b] {
        let synced = cairn.json(copy, &["sync"]);
        assert_eq!(
            synced["push"],
            json!({"pushed": false, "version": 3}),
            "{synced}"
        );
    }
}

#[test]
fn concurrent_edits_of_one_file_keep_both_with_a_conflict_copy() {
    let Some(setup) = Setup::start() else { return };
    setup.first_version(&[
        ("api/spec.yaml", b"openapi: 3.1\n"),
        ("untouched.json", b"{}"),
    ]);
    let Setup { cairn, a, b, .. } = &setup;

    let from_a = b"openapi: 3.1\ninfo: {title: edited by A}\n";
    let from_b = b"openapi: 3.1\ninfo: {title: edited by B}\n";
    write(a, "api/spec.yaml", from_a);
    write(b, "api/spec.yaml", from_b);
    assert_eq!(cairn.json(a, &["push"])["push"]["version"], 2);

    let synced = cairn.json(b, &["sync"]);
    assert_eq!(synced["push"]["version"], 3, "{synced}");
    let copies = &synced["pulls"][0]["applied"]["conflict_copies"];
    assert_eq!(copies.as_array().map(Vec::len), Some(1), "{synced}");
    assert_eq!(copies[0]["path"], "api/spec.yaml", "{synced}");
    let copy = copies[0]["copy"]
        .as_str()
        .expect("the copy's path")
        .to_owned();
    // `<name>.conflict-<8 hex of the copied content's id>`, beside the original.
    let content_id = sync_protocol::encode_file(from_b, false)
        .expect("encoding B's edit")
        .id
        .to_hex();
    assert_eq!(copy, format!("api/spec.yaml.conflict-{}", &content_id[..8]));

    // The server's (A's) edit is at the path, B's beside it; B's push carried the copy.
    assert_eq!(read(b, "api/spec.yaml"), from_a);
    assert_eq!(read(b, &copy), from_b);
    let status = cairn.json(b, &["status"]);
    assert_eq!(status["changes"], json!([]), "{status}");

    let pulled = cairn.json(a, &["pull"]);
    assert_eq!(pulled["version"], 3, "{pulled}");
    assert_eq!(pulled["applied"]["conflict_copies"], json!([]), "{pulled}");
    let expected = BTreeMap::from([
        (
            "api/spec.yaml".to_owned(),
            text(std::str::from_utf8(from_a).expect("UTF-8")),
        ),
        (
            copy.clone(),
            text(std::str::from_utf8(from_b).expect("UTF-8")),
        ),
        // Both added a line at one place: the line merge with markers, beside the copy.
        (
            format!("{copy}.merge"),
            text(
                "openapi: 3.1\n<<<<<<< ours\ninfo: {title: edited by B}\n||||||| base\n\
                 =======\ninfo: {title: edited by A}\n>>>>>>> theirs\n",
            ),
        ),
        ("untouched.json".to_owned(), text("{}")),
    ]);
    assert_eq!(tree_on_disk(a), expected);
    assert_eq!(tree_on_disk(b), expected);
}

#[test]
fn a_conflict_is_reported_in_words_by_sync() {
    let Some(setup) = Setup::start() else { return };
    setup.first_version(&[("notes.md", b"base\n")]);
    let Setup { cairn, a, b, .. } = &setup;
    write(a, "notes.md", b"A's notes\n");
    write(b, "notes.md", b"B's notes\n");
    assert_eq!(cairn.json(a, &["push"])["push"]["version"], 2);

    let output = cairn.run(b, &["sync"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let copy = tree_on_disk(b)
        .into_keys()
        .find(|path| path.starts_with("notes.md.conflict-"))
        .unwrap_or_else(|| panic!("no conflict copy in B; sync said:\n{stdout}"));
    assert!(
        stdout.contains(&format!(
            "C  notes.md: both sides changed it; your version is kept as {copy}"
        )),
        "sync did not report the conflict:\n{stdout}"
    );
    assert!(stdout.contains("Pushed version 3"), "{stdout}");
    assert_eq!(read(b, &copy), b"B's notes\n");
}
