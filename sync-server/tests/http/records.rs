//! Change records over HTTP: a push of changed paths (with a delta-compressed edit) that the
//! server turns into dirs against the head, a pull answered the same way, and the refusals:
//! records that give another root, a delta without a base chunk, an entry naming an object
//! nobody has, and records sent as a plain upload. Each refusal leaves the head where it was.

use serde_json::json;
use sync_protocol::patch::{Record, decode_records, encode_content, patch_tree};
use sync_protocol::stream::{Item, StreamDecoder, StreamEncoder};
use sync_protocol::tree::{FileRef, MemoryObjects, Path};
use sync_protocol::{EntryKind, Object, ObjectId, ObjectKind};

use crate::http::support::{Obj, TestServer, Tree, User, tree};

const GET_V1: &str = "{\"method\": \"GET\", \"url\": \"/pets\", \"headers\": {\"accept\": \"application/json\"}, \"limit\": 10}";
const GET_V2: &str = "{\"method\": \"GET\", \"url\": \"/pets\", \"headers\": {\"accept\": \"application/json\"}, \"limit\": 20}";

fn path(text: &str) -> Path {
    Path::new(text).unwrap()
}

fn chunk(text: &str) -> Object {
    Object::Chunk(text.as_bytes().to_vec())
}

fn v1() -> Tree {
    tree(&[
        ("requests/get.json", GET_V1),
        ("env.json", "{}"),
        ("docs/readme.md", "pets api"),
    ])
}

/// Version 2 as the client sees it: the edit, the removal and a new file two folders deep.
fn v2() -> Tree {
    tree(&[
        ("requests/get.json", GET_V2),
        ("env.json", "{}"),
        ("new/deep/file.txt", "fresh"),
    ])
}

/// The records of v1 → v2, and the one object they need besides (the new file's chunk).
fn v2_records(delta: bool) -> (Vec<Record>, Vec<Obj>) {
    let dictionary = chunk(GET_V1).encode();
    let records = vec![
        Record::Remove {
            path: path("docs/readme.md"),
        },
        Record::Entry {
            path: path("new/deep/file.txt"),
            entry: FileRef {
                kind: EntryKind::File,
                target: ObjectKind::Chunk,
                size: 5,
                id: chunk("fresh").id(),
            },
        },
        Record::Content {
            path: path("requests/get.json"),
            kind: EntryKind::File,
            delta,
            zstd: encode_content(
                &chunk(GET_V2).encode(),
                delta.then_some(dictionary.as_slice()),
            ),
        },
    ];
    (records, vec![Obj::of(&chunk("fresh"))])
}

fn records_stream(records: &[Record], objects: &[Obj]) -> Vec<u8> {
    let mut encoder = StreamEncoder::new();
    for object in objects {
        encoder
            .push(object.kind, &object.id, &object.frame)
            .unwrap();
    }
    for record in records {
        encoder.push_record(record).unwrap();
    }
    encoder.finish()
}

/// Pushes `body` on version 1, naming `root`, under a fresh push id; the raw answer.
async fn push(
    server: &TestServer,
    user: &User,
    project: &str,
    root: &ObjectId,
    body: Vec<u8>,
) -> reqwest::Response {
    let push_id = cairn_test_support::unique_name("records-");
    server
        .push_raw(user, project, &push_id, 1, root, body)
        .await
}

async fn push_records_then_pull_records(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let v1 = v1();
    assert_eq!(server.push_tree(&alice, &project, 0, &v1).await, 1);
    let v2 = v2();

    // Refused: records that give another root than the one named (v1's root, say).
    let (records, objects) = v2_records(true);
    let body = records_stream(&records, &objects);
    let response = push(server, &alice, &project, &v1.root, body).await;
    let problem = TestServer::expect_problem(response, 422, "bad-records").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("root"),
        "{problem}"
    );

    // Refused: a delta where the base has no one-chunk file (the new file marked as a delta),
    // and an entry naming a chunk that is neither sent nor stored.
    let mut bad = records.clone();
    bad[1] = Record::Content {
        path: path("new/deep/file.txt"),
        kind: EntryKind::File,
        delta: true,
        zstd: encode_content(&chunk("fresh").encode(), Some(b"anything")),
    };
    for (sent, code) in [(&bad, "bad-records"), (&records, "missing-object")] {
        let body = records_stream(sent, &[]);
        let response = push(server, &alice, &project, &v2.root, body).await;
        TestServer::expect_problem(response, 422, code).await;
    }

    // Refused: records in a plain upload of objects.
    let body = records_stream(&records, &objects);
    let response = server.upload_raw(&alice, &project, body).await;
    TestServer::expect_problem(response, 400, "bad-stream").await;
    assert_eq!(
        server.head(&alice, &project).await,
        (1, v1.root.to_string())
    );

    // Accepted: the server rebuilds exactly the client's dirs.
    let body = records_stream(&records, &objects);
    let response = push(server, &alice, &project, &v2.root, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        server.head(&alice, &project).await,
        (2, v2.root.to_string())
    );
    // Everything of v2 is stored: a full pull from nothing delivers every object.
    let pulled = server.pull(&alice, &project, json!({})).await;
    pulled.assert_objects_of(&v2);

    // A pull that asks for records from v1 gets only records: the edit as a delta against the
    // chunk the client had, the new one-chunk file inline; applied to v1 they give v2's root.
    let response = server
        .pull_raw(
            &alice,
            &project,
            json!({"have": v1.root.to_string(), "records": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    let mut decoder = StreamDecoder::new();
    decoder.feed(&bytes);
    let mut got_records = Vec::new();
    let mut frames = Vec::new();
    while let Some(item) = decoder.next_item().unwrap() {
        match item {
            Item::Record(item) => got_records.push(item.record),
            Item::Object(frame) => frames.push(frame.id),
        }
    }
    decoder.finish().unwrap();
    assert_eq!(frames, Vec::<ObjectId>::new());
    assert_eq!(got_records.len(), 3, "{got_records:?}");
    let mut v1_objects = MemoryObjects::new();
    for object in &v1.objects {
        let (decoded, _) =
            sync_protocol::verify_frame(&object.id, &object.frame).expect("a valid frame");
        v1_objects.insert(object.id, decoded);
    }
    // The edit of a one-chunk file comes as a delta; a new file has no base to be one against.
    let edited = |path: &Path| path.as_str() == "requests/get.json";
    for record in &got_records {
        if let Record::Content { path, delta, .. } = record {
            assert_eq!(*delta, edited(path), "{path}: delta {delta}");
        }
    }
    let changes = decode_records(&got_records, |path| {
        edited(path).then(|| chunk(GET_V1).encode())
    })
    .unwrap()
    .changes;
    let patched = patch_tree(&v1_objects, v1.root, &changes).unwrap();
    assert_eq!(patched.root, v2.root);

    // Without `records` the same pull sends dirs, as before.
    let pulled = server
        .pull(&alice, &project, json!({"have": v1.root.to_string()}))
        .await;
    assert!(
        pulled
            .objects
            .iter()
            .any(|(_, object)| object.kind() == ObjectKind::Dir)
    );
}
http_test!(records, push_records_then_pull_records);
