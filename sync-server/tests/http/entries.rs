//! A dir entry that names an object already stored is checked against it, as one naming an
//! object of the same upload is: kind and size. Found by a client written from the docs alone:
//! an editor could commit an entry saying 999 bytes for a stored 10-byte chunk, a "file object"
//! entry naming a stored chunk (after which every clone answered 500), or a file entry naming a
//! stored dir. Each is now refused with `entry-mismatch`, naming the referring dir as `id`,
//! whether the dir comes in a push, in change records or in an upload; the head stays, and the
//! project still clones.

use serde_json::json;
use sync_protocol::patch::Record;
use sync_protocol::stream::StreamEncoder;
use sync_protocol::tree::{FileRef, Path};
use sync_protocol::{Dir, DirEntry, EntryKind, Name, Object, ObjectId, ObjectKind};

use crate::http::support::{Obj, TestServer, Tree, User, stream_of, tree};

/// Version 1: `a.txt`, a 10-byte chunk, and the folder `d` with one file.
fn v1() -> Tree {
    tree(&[("a.txt", "0123456789"), ("d/b.txt", "inside")])
}

fn chunk_a() -> ObjectId {
    Object::Chunk(b"0123456789".to_vec()).id()
}

/// The stored dir `d` of version 1.
fn dir_d(v1: &Tree) -> ObjectId {
    let root = v1
        .objects
        .iter()
        .find(|object| object.id == v1.root)
        .expect("the root is in the tree");
    let (Object::Dir(root), _) = sync_protocol::verify_frame(&root.id, &root.frame).unwrap() else {
        panic!("the root is a dir")
    };
    root.entry("d").expect("d is in the root").id
}

/// Version 1's root with one more entry, `bad`, claiming `target` of `size` bytes for `id`.
fn root_with(v1: &Tree, target: ObjectKind, size: u64, id: ObjectId) -> Object {
    let mut entries: Vec<DirEntry> = vec![
        DirEntry {
            name: Name::new("a.txt").unwrap(),
            kind: EntryKind::File,
            target: ObjectKind::Chunk,
            size: 10,
            id: chunk_a(),
        },
        DirEntry::dir(Name::new("d").unwrap(), dir_d(v1)),
    ];
    entries.push(DirEntry {
        name: Name::new("bad").unwrap(),
        kind: EntryKind::File,
        target,
        size,
        id,
    });
    Object::Dir(Dir::new(entries).expect("a valid dir"))
}

/// The three lies an entry can tell about a stored object.
fn lies(v1: &Tree) -> [(&'static str, ObjectKind, u64, ObjectId); 3] {
    [
        // Size 999 for the stored 10-byte chunk.
        ("wrong size", ObjectKind::Chunk, 999, chunk_a()),
        // A file object that is a stored chunk.
        ("chunk as file object", ObjectKind::File, 20_000, chunk_a()),
        // A one-chunk file that is a stored dir.
        ("dir as file", ObjectKind::Chunk, 0, dir_d(v1)),
    ]
}

async fn setup(server: &TestServer) -> (User, String, Tree) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let v1 = v1();
    assert_eq!(server.push_tree(&alice, &project, 0, &v1).await, 1);
    (alice, project, v1)
}

/// The head is still version 1 and a fresh clone gets all of it.
async fn still_whole(server: &TestServer, user: &User, project: &str, v1: &Tree) {
    assert_eq!(
        server.head(user, project).await,
        (1, v1.root.to_string()),
        "the head moved"
    );
    let pulled = server.pull(user, project, json!({})).await;
    assert_eq!(pulled.version, 1);
    pulled.assert_objects_of(v1);
}

/// The answer refuses `bad_root` with `entry-mismatch`, naming it; then the project is as it was.
async fn expect_mismatch(
    server: &TestServer,
    user: &User,
    project: &str,
    v1: &Tree,
    response: reqwest::Response,
    bad_root: ObjectId,
    what: &str,
) {
    let problem = TestServer::expect_problem(response, 422, "entry-mismatch").await;
    assert_eq!(problem["id"], bad_root.to_string(), "{what}: {problem}");
    still_whole(server, user, project, v1).await;
}

async fn entries_naming_stored_objects_are_checked(server: &TestServer) {
    let (alice, project, v1) = setup(server).await;
    for (what, target, size, id) in lies(&v1) {
        let bad = root_with(&v1, target, size, id);
        let push_id = format!("lie-{}", what.replace(' ', "-"));
        let body = stream_of(&[Obj::of(&bad)]);
        let response = server
            .push_raw(&alice, &project, &push_id, 1, &bad.id(), body)
            .await;
        expect_mismatch(server, &alice, &project, &v1, response, bad.id(), what).await;
    }
}
http_test!(pushed_entries, entries_naming_stored_objects_are_checked);

async fn record_entries_naming_stored_objects_are_checked(server: &TestServer) {
    let (alice, project, v1) = setup(server).await;
    for (what, target, size, id) in lies(&v1) {
        // The client's records say what the bad root says: the server rebuilds that root from
        // its base, so the lie is in an entry it made itself.
        let bad = root_with(&v1, target, size, id);
        let record = Record::Entry {
            path: Path::new("bad").unwrap(),
            entry: FileRef {
                kind: EntryKind::File,
                target,
                size,
                id,
            },
        };
        let mut encoder = StreamEncoder::new();
        encoder.push_record(&record).unwrap();
        let push_id = format!("record-{}", what.replace(' ', "-"));
        let response = server
            .push_raw(&alice, &project, &push_id, 1, &bad.id(), encoder.finish())
            .await;
        expect_mismatch(server, &alice, &project, &v1, response, bad.id(), what).await;
    }
}
http_test!(
    record_entries,
    record_entries_naming_stored_objects_are_checked
);

async fn uploaded_entries_naming_stored_objects_are_checked(server: &TestServer) {
    let (alice, project, v1) = setup(server).await;
    for (what, target, size, id) in lies(&v1) {
        let bad = root_with(&v1, target, size, id);
        let response = server
            .upload_raw(&alice, &project, stream_of(&[Obj::of(&bad)]))
            .await;
        let problem = TestServer::expect_problem(response, 422, "entry-mismatch").await;
        assert_eq!(problem["id"], bad.id().to_string(), "{what}: {problem}");
        // Not stored: a commit of it finds nothing to commit.
        let commit =
            json!({"push_id": "commit-lie", "base_version": 1, "root": bad.id().to_string()});
        let response = server.commit_raw(&alice, &project, &commit).await;
        TestServer::expect_problem(response, 422, "missing-object").await;
        still_whole(server, &alice, &project, &v1).await;
    }
}
http_test!(
    uploaded_entries,
    uploaded_entries_naming_stored_objects_are_checked
);

async fn truthful_entries_naming_stored_objects_commit(server: &TestServer) {
    let (alice, project, v1) = setup(server).await;
    // The same three references, told truthfully: a copy of a.txt and of d.
    let good = root_with(&v1, ObjectKind::Chunk, 10, chunk_a());
    let copy_of_d = {
        let Object::Dir(dir) = &good else {
            unreachable!()
        };
        let mut entries = dir.entries().to_vec();
        entries.push(DirEntry::dir(Name::new("e").unwrap(), dir_d(&v1)));
        Object::Dir(Dir::new(entries).unwrap())
    };
    let response = server
        .push_raw(
            &alice,
            &project,
            "truthful",
            1,
            &copy_of_d.id(),
            stream_of(&[Obj::of(&copy_of_d)]),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let pulled = server.pull(&alice, &project, json!({})).await;
    assert_eq!(pulled.version, 2);
    assert_eq!(pulled.root, copy_of_d.id().to_string());
}
http_test!(
    truthful_entries,
    truthful_entries_naming_stored_objects_commit
);
