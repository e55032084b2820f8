//! Content merges through the real binaries: two copies edit one file, one pushes, the other
//! syncs. Different JSON fields or different lines merge without a conflict copy; the same field
//! or the same lines keep both versions (theirs at the path, ours in a conflict copy byte for
//! byte) plus the line merge with markers beside the copy.

use std::collections::BTreeMap;

use cairn_test_support::files::{read, tree_on_disk, write};
use serde_json::{Value, json};

use crate::support::Setup;

const REQUEST: &str = "requests/create-pet.json";

const BASE_REQUEST: &str = r#"{
  "method": "POST",
  "url": "https://api.example.com/pets",
  "headers": [
    {"name": "Accept", "value": "application/json"}
  ],
  "body": {
    "name": "Rex",
    "kind": "dog"
  }
}
"#;

/// B syncs after A pushed version 2 on top of version 1; returns B's sync report.
fn a_pushes_then_b_syncs(setup: &Setup, path: &str, from_a: &str, from_b: &str) -> Value {
    let Setup { cairn, a, b, .. } = setup;
    write(a, path, from_a.as_bytes());
    write(b, path, from_b.as_bytes());
    assert_eq!(cairn.json(a, &["push"])["push"]["version"], 2);
    let synced = cairn.json(b, &["sync"]);
    assert_eq!(synced["push"]["version"], 3, "{synced}");
    synced
}

/// Every file of both copies, which must hold the same tree once A pulled B's push.
fn same_trees(setup: &Setup) -> BTreeMap<String, Vec<u8>> {
    let Setup { cairn, a, b, .. } = setup;
    cairn.pull(a, 2, 3);
    let tree = |copy| -> BTreeMap<String, Vec<u8>> {
        tree_on_disk(copy)
            .into_iter()
            .map(|(path, state)| (path, state.bytes))
            .collect()
    };
    let (in_a, in_b) = (tree(a), tree(b));
    assert_eq!(in_a, in_b, "the two copies differ");
    in_a
}

#[test]
fn edits_of_different_json_fields_merge_without_a_conflict_copy() {
    let Some(setup) = Setup::start() else { return };
    setup.first_version(&[(REQUEST, BASE_REQUEST.as_bytes())]);
    // A changes the method; B the url (the next line) and a field of the body.
    let from_a = BASE_REQUEST.replace("\"POST\"", "\"PUT\"");
    let from_b = BASE_REQUEST
        .replace("/pets\"", "/pets/1\"")
        .replace("\"dog\"", "\"cat\"");
    let synced = a_pushes_then_b_syncs(&setup, REQUEST, &from_a, &from_b);
    let applied = &synced["pulls"][0]["applied"];
    assert_eq!(applied["conflict_copies"], json!([]), "{synced}");
    assert_eq!(applied["conflicts"], json!([]), "{synced}");
    assert_eq!(applied["content_merged"], json!([REQUEST]), "{synced}");

    // Both edits, in the file's own layout and key order, in both copies; nothing else.
    let expected = BASE_REQUEST
        .replace("\"POST\"", "\"PUT\"")
        .replace("/pets\"", "/pets/1\"")
        .replace("\"dog\"", "\"cat\"");
    let tree = same_trees(&setup);
    assert_eq!(
        tree,
        BTreeMap::from([(REQUEST.to_owned(), expected.into_bytes())])
    );
    let status = setup.cairn.json(&setup.b, &["status"]);
    assert_eq!(status["changes"], json!([]), "{status}");
}

#[test]
fn edits_of_one_json_field_keep_a_conflict_copy_and_lose_nothing() {
    let Some(setup) = Setup::start() else { return };
    setup.first_version(&[(REQUEST, BASE_REQUEST.as_bytes())]);
    let from_a = BASE_REQUEST.replace("\"Rex\"", "\"Max\"");
    let from_b = BASE_REQUEST
        .replace("\"Rex\"", "\"Bella\"")
        .replace("\"POST\"", "\"PUT\"");
    let synced = a_pushes_then_b_syncs(&setup, REQUEST, &from_a, &from_b);
    let applied = &synced["pulls"][0]["applied"];
    assert_eq!(applied["content_merged"], json!([]), "{synced}");
    let copies = applied["conflict_copies"].as_array().expect("copies");
    assert_eq!(copies.len(), 1, "{synced}");
    assert_eq!(copies[0]["path"], REQUEST, "{synced}");
    let copy = copies[0]["copy"].as_str().expect("the copy").to_owned();
    let marked = format!("{copy}.merge");
    assert_eq!(
        applied["conflict_markers"],
        json!([{"path": REQUEST, "merge": marked}]),
        "{synced}"
    );

    // A's version at the path, B's in the copy byte for byte, and the line merge with markers:
    // in both copies, so on the server too.
    let tree = same_trees(&setup);
    assert_eq!(
        tree.keys().collect::<Vec<_>>(),
        [REQUEST, copy.as_str(), marked.as_str()]
    );
    assert_eq!(tree[REQUEST], from_a.as_bytes());
    assert_eq!(tree[&copy], from_b.as_bytes());
    // B's other edit (the method) merged; the name is the one conflict block.
    let expected_marked = BASE_REQUEST.replace("\"POST\"", "\"PUT\"").replace(
        "    \"name\": \"Rex\",\n",
        "<<<<<<< ours\n    \"name\": \"Bella\",\n||||||| base\n    \"name\": \"Rex\",\n=======\n    \"name\": \"Max\",\n>>>>>>> theirs\n",
    );
    assert_eq!(
        String::from_utf8(tree[&marked].clone()).expect("UTF-8"),
        expected_marked
    );
    assert_eq!(read(&setup.b, &copy), from_b.as_bytes());
}

#[test]
fn text_edits_of_different_lines_merge_and_of_one_line_get_markers() {
    let Some(setup) = Setup::start() else { return };
    let base = "# Pets API\n\nauth: none\nbase: http://localhost\ntimeout: 30\n";
    setup.first_version(&[("notes.md", base.as_bytes())]);
    let from_a = base.replace("# Pets API", "# Pets API v2");
    let from_b = base.replace("timeout: 30", "timeout: 60");
    let synced = a_pushes_then_b_syncs(&setup, "notes.md", &from_a, &from_b);
    assert_eq!(
        synced["pulls"][0]["applied"]["content_merged"],
        json!(["notes.md"]),
        "{synced}"
    );
    let merged = base
        .replace("# Pets API", "# Pets API v2")
        .replace("timeout: 30", "timeout: 60");
    assert_eq!(
        same_trees(&setup),
        BTreeMap::from([("notes.md".to_owned(), merged.clone().into_bytes())])
    );

    // Now both change the same line.
    let Setup { cairn, a, b, .. } = &setup;
    write(
        a,
        "notes.md",
        merged.replace("auth: none", "auth: basic").as_bytes(),
    );
    write(
        b,
        "notes.md",
        merged.replace("auth: none", "auth: token").as_bytes(),
    );
    assert_eq!(cairn.json(a, &["push"])["push"]["version"], 4);
    let output = cairn.run(b, &["sync"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let on_disk = tree_on_disk(b);
    let copy = on_disk
        .keys()
        .find(|path| path.starts_with("notes.md.conflict-") && !path.ends_with(".merge"))
        .unwrap_or_else(|| panic!("no conflict copy; sync said:\n{stdout}"))
        .clone();
    let marked = format!("{copy}.merge");
    assert!(
        stdout.contains(&format!(
            "notes.md: the changes overlap; the merge with conflict markers is in {marked}"
        )),
        "{stdout}"
    );
    assert_eq!(
        read(b, &copy),
        merged.replace("auth: none", "auth: token").as_bytes()
    );
    assert_eq!(
        read(b, "notes.md"),
        merged.replace("auth: none", "auth: basic").as_bytes()
    );
    assert_eq!(
        String::from_utf8(read(b, &marked)).expect("UTF-8"),
        "# Pets API v2\n\n<<<<<<< ours\nauth: token\n||||||| base\nauth: none\n=======\nauth: basic\n>>>>>>> theirs\nbase: http://localhost\ntimeout: 60\n"
    );
}
