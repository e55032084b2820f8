//! Every bad input of DESIGN section 9, pushed over HTTP: each gets its typed problem, and the
//! head, the history and the stored objects stay exactly as they were.

use std::io::Write;

use serde_json::Value;
use sync_protocol::{ObjectId, ObjectKind, compress_object};
use sync_server::app::Limits;

use crate::http::support::{Obj, TestServer, User, stream_of, tree};

/// Everything a bad push must leave alone.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    head: (u64, String),
    versions: Value,
    stored: Vec<ObjectId>,
}

async fn snapshot(server: &TestServer, user: &User, project: &str) -> Snapshot {
    let versions = server.versions(user, project, "").await;
    let mut stored = server
        .app
        .store
        .list(&project.parse().unwrap())
        .await
        .unwrap();
    stored.sort();
    Snapshot {
        head: server.head(user, project).await,
        versions,
        stored,
    }
}

/// A raw dir encoding: entries as (name bytes, entry kind, target kind, size, id), unchecked.
fn raw_dir(entries: &[(&[u8], u8, ObjectKind, u64, ObjectId)]) -> Vec<u8> {
    let mut out = vec![ObjectKind::Dir.tag(), 1];
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (name, kind, target, size, id) in entries {
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.push(*kind);
        out.push(target.tag());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(id.as_bytes());
    }
    out
}

/// A dir object of `raw_dir(entries)`, named by its true hash.
fn dir_of(entries: &[(&[u8], u8, ObjectKind, u64, ObjectId)]) -> Obj {
    let encoded = raw_dir(entries);
    Obj {
        kind: ObjectKind::Dir,
        id: ObjectId::of_encoded(&encoded),
        frame: compress_object(&encoded),
    }
}

fn chunk(bytes: &[u8]) -> Obj {
    Obj::of(&sync_protocol::Object::Chunk(bytes.to_vec()))
}

/// Pushes `objects` with `root` on the head and expects `status` / `code`, nothing changed.
async fn expect_rejected(
    server: &TestServer,
    user: &User,
    project: &str,
    root: ObjectId,
    body: Vec<u8>,
    status: u16,
    code: &str,
) {
    let before = snapshot(server, user, project).await;
    let response = server
        .push_raw(user, project, "bad-push", before.head.0, &root, body)
        .await;
    TestServer::expect_problem(response, status, code).await;
    let after = snapshot(server, user, project).await;
    assert_eq!(before, after, "a rejected push ({code}) changed something");
}

async fn every_bad_push_is_typed_and_harmless(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let v1 = tree(&[("a.json", "1"), ("b/c.json", "2")]);
    server.push_tree(&alice, &project, 0, &v1).await;

    // Each bad push: the root it names, its body, and the status and code it must get.
    let mut pushes: Vec<(ObjectId, Vec<u8>, u16, &str)> = Vec::new();

    // Hash mismatch: a frame named by another object's id.
    let good = chunk(b"hello");
    let mut lying = good.clone();
    lying.id = chunk(b"other").id;
    let dir = dir_of(&[(b"x", 1, ObjectKind::Chunk, 5, lying.id)]);
    pushes.push((
        dir.id,
        stream_of(&[lying, dir.clone()]),
        422,
        "hash-mismatch",
    ));

    // Non-canonical: entries out of order.
    let a = chunk(b"a");
    let b = chunk(b"b");
    let unsorted = dir_of(&[
        (b"b", 1, ObjectKind::Chunk, 1, b.id),
        (b"a", 1, ObjectKind::Chunk, 1, a.id),
    ]);
    let body = stream_of(&[a.clone(), b.clone(), unsorted.clone()]);
    pushes.push((unsorted.id, body, 422, "non-canonical-object"));

    // Missing child: the dir names a chunk that is neither sent nor stored.
    let absent = chunk(b"never sent");
    let orphan = dir_of(&[(b"x", 1, ObjectKind::Chunk, 10, absent.id)]);
    let body = stream_of(std::slice::from_ref(&orphan));
    pushes.push((orphan.id, body, 422, "missing-object"));

    // A zstd bomb: 64 MiB of zeros in a frame without a declared size.
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        encoder.write_all(&zeros).unwrap();
    }
    let bomb = Obj {
        kind: ObjectKind::Chunk,
        id: chunk(b"bomb").id,
        frame: encoder.finish().unwrap(),
    };
    let bomb_dir = dir_of(&[(b"x", 1, ObjectKind::Chunk, 4, bomb.id)]);
    pushes.push((
        bomb_dir.id,
        stream_of(&[bomb, bomb_dir]),
        422,
        "object-too-large",
    ));

    // A truncated stream: the trailer (and part of the last frame) never arrive.
    let v2 = tree(&[("a.json", "2")]);
    let mut cut = v2.stream();
    cut.truncate(cut.len() - 40);
    pushes.push((v2.root, cut, 400, "truncated-stream"));

    // Bad names: a separator, `..`, and a name that is not NFC.
    for name in [&b"a/b"[..], &b".."[..], &b"e\xcc\x81"[..]] {
        let bad = dir_of(&[(name, 1, ObjectKind::Chunk, 1, a.id)]);
        pushes.push((
            bad.id,
            stream_of(&[a.clone(), bad.clone()]),
            422,
            "bad-name",
        ));
    }

    // Case collision: `README` and `readme` in one dir.
    let collide = dir_of(&[
        (b"README", 1, ObjectKind::Chunk, 1, a.id),
        (b"readme", 1, ObjectKind::Chunk, 1, b.id),
    ]);
    let body = stream_of(&[a.clone(), b.clone(), collide.clone()]);
    pushes.push((collide.id, body, 422, "case-collision"));

    // An entry whose size does not match the chunk it names.
    let wrong_size = dir_of(&[(b"x", 1, ObjectKind::Chunk, 99, a.id)]);
    let body = stream_of(&[a.clone(), wrong_size.clone()]);
    pushes.push((wrong_size.id, body, 422, "entry-mismatch"));

    // A root that is not a dir.
    pushes.push((
        a.id,
        stream_of(std::slice::from_ref(&a)),
        422,
        "invalid-field",
    ));

    // Not an object stream at all.
    pushes.push((v2.root, b"{\"json\": true}".to_vec(), 400, "bad-stream"));

    for (root, body, status, code) in pushes {
        expect_rejected(server, &alice, &project, root, body, status, code).await;
    }

    // The project still pulls whole.
    let pulled = server.pull(&alice, &project, serde_json::json!({})).await;
    assert_eq!(pulled.version, 1);
    assert_eq!(pulled.objects.len(), v1.objects.len());
}
http_test!(bad_pushes, every_bad_push_is_typed_and_harmless);

/// The upload limit of the next test, in bytes; set so that `sized_tree` fits exactly.
fn sized_tree() -> crate::http::support::Tree {
    tree(&[("a.json", "limit test")])
}

fn upload_limit() -> Limits {
    Limits {
        max_upload_bytes: sized_tree().stream().len() as u64,
        ..Limits::default()
    }
}

async fn body_at_and_past_the_limit(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let at_limit = sized_tree();
    let body = at_limit.stream();
    assert_eq!(body.len() as u64, server.app.limits.max_upload_bytes);

    // One byte past, declared in Content-Length: refused before the body is read.
    let mut past = body.clone();
    past.push(0);
    expect_rejected(
        server,
        &alice,
        &project,
        at_limit.root,
        past.clone(),
        413,
        "body-too-large",
    )
    .await;

    // One byte past, chunked (no length declared): refused by the streaming cap.
    let before = snapshot(server, &alice, &project).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        past.chunks(7).map(|chunk| Ok(chunk.to_vec())).collect();
    let response = server
        .http
        .post(server.url(&format!(
            "/v1/projects/{project}/push?push_id=chunked&base_version=0&root={}",
            at_limit.root
        )))
        .bearer_auth(&alice.token)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    TestServer::expect_problem(response, 413, "body-too-large").await;
    assert_eq!(before, snapshot(server, &alice, &project).await);

    // Exactly at the limit: accepted.
    assert_eq!(server.push_tree(&alice, &project, 0, &at_limit).await, 1);
}
http_test!(
    upload_limit_at_and_past,
    body_at_and_past_the_limit,
    super::upload_limit()
);

async fn json_body_past_its_limit(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    // Exactly MAX_JSON_BODY bytes is read and parsed (the label is then too long for the
    // catalog); one byte more is refused unread.
    let limit = sync_protocol::wire::MAX_JSON_BODY as usize;
    let mut at_limit = format!("{{\"label\": \"{}\"}}", "x".repeat(200));
    at_limit.push_str(&" ".repeat(limit - at_limit.len()));
    assert_eq!(at_limit.len(), limit);
    let response = post_json_text(server, &alice, "/v1/tokens", at_limit.clone()).await;
    TestServer::expect_problem(response, 422, "invalid-field").await;
    let response = post_json_text(server, &alice, "/v1/tokens", format!("{at_limit} ")).await;
    TestServer::expect_problem(response, 413, "body-too-large").await;

    // A missing-objects query of MAX_MISSING_IDS ids is answered; one more id is refused.
    let max = sync_protocol::wire::MAX_MISSING_IDS;
    let ids: Vec<String> = (0..=max)
        .map(|n| sync_protocol::chunk_id(&n.to_le_bytes()).to_string())
        .collect();
    let response = server.missing_raw(&alice, &project, &ids[..max]).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["missing"].as_array().unwrap().len(), max);
    let response = server.missing_raw(&alice, &project, &ids).await;
    TestServer::expect_problem(response, 422, "invalid-field").await;

    let name = serde_json::json!({"name": "x".repeat(70 * 1024)});
    server
        .call_refused(
            reqwest::Method::POST,
            "/v1/teams",
            &alice,
            Some(&name),
            413,
            "body-too-large",
        )
        .await;
    let response = post_json_text(server, &alice, "/v1/teams", "{not json".to_owned()).await;
    TestServer::expect_problem(response, 400, "bad-json").await;
}

/// Posts `text` as a JSON body, as it is: no serializer would send it.
async fn post_json_text(
    server: &TestServer,
    user: &User,
    path: &str,
    text: String,
) -> reqwest::Response {
    server
        .http
        .post(server.url(path))
        .bearer_auth(&user.token)
        .header("content-type", "application/json")
        .body(text)
        .send()
        .await
        .unwrap()
}
http_test!(json_limits, json_body_past_its_limit);

/// A chain of `depth` nested dirs named `d` around one file `f`: the file's path has exactly
/// `depth` components. Objects children first, root last.
fn chain(depth: usize, content: &[u8]) -> Vec<Obj> {
    use sync_protocol::{Dir, DirEntry, EntryKind, Name, Object};
    let file = chunk(content);
    let mut dir = Dir::new(vec![DirEntry {
        name: Name::new("f").unwrap(),
        kind: EntryKind::File,
        target: ObjectKind::Chunk,
        size: content.len() as u64,
        id: file.id,
    }])
    .unwrap();
    let mut objects = vec![file, Obj::of(&Object::Dir(dir.clone()))];
    for _ in 1..depth {
        let inner = Object::Dir(dir).id();
        dir = Dir::new(vec![DirEntry::dir(Name::new("d").unwrap(), inner)]).unwrap();
        objects.push(Obj::of(&Object::Dir(dir.clone())));
    }
    objects
}

/// Path depth is a limit of the format that no single object carries: the server checks it on
/// the whole pushed tree, at the limit, one past it, and when a stored folder is moved deeper.
async fn path_depth_at_and_past_the_limit(server: &TestServer) {
    use sync_protocol::limits::MAX_PATH_DEPTH;
    use sync_protocol::{Dir, DirEntry, Name, Object};
    let (alice, _team, project) = server.owner_with_project("alice").await;

    let at = chain(MAX_PATH_DEPTH, b"deep");
    let at_root = at.last().unwrap().id;
    let response = server
        .push_raw(&alice, &project, "at-limit", 0, &at_root, stream_of(&at))
        .await;
    assert_eq!(
        response.status(),
        200,
        "a path of exactly the limit is valid"
    );

    let past = chain(MAX_PATH_DEPTH + 1, b"deeper");
    let past_root = past.last().unwrap().id;
    expect_rejected(
        server,
        &alice,
        &project,
        past_root,
        stream_of(&past),
        422,
        "bad-path",
    )
    .await;

    // Only a new root is sent: it puts the stored 64-deep tree one level lower.
    let moved = Obj::of(&Object::Dir(
        Dir::new(vec![DirEntry::dir(Name::new("x").unwrap(), at_root)]).unwrap(),
    ));
    expect_rejected(
        server,
        &alice,
        &project,
        moved.id,
        stream_of(std::slice::from_ref(&moved)),
        422,
        "bad-path",
    )
    .await;

    // The project still pulls whole.
    let pulled = server.pull(&alice, &project, serde_json::json!({})).await;
    assert_eq!(pulled.version, 1);
}
http_test!(path_depth_limit, path_depth_at_and_past_the_limit);

/// A NUL character, which PostgreSQL's text cannot hold, in every text the API takes that is
/// not already refused as a name: a typed answer in both catalogs, never `503 unavailable`,
/// and nothing stored.
async fn nul_characters_are_refused_by_field(server: &TestServer) {
    let (alice, team, project) = server.owner_with_project("alice").await;
    let t1 = tree(&[("a.json", "1")]);
    assert_eq!(server.push_tree(&alice, &project, 0, &t1).await, 1);
    let before = snapshot(server, &alice, &project).await;

    // Signing in as a name no account can have: the same answer as any unknown name.
    let response = server
        .http
        .post(server.url("/v1/sessions"))
        .json(&serde_json::json!({"login": "al\u{0}ice", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    TestServer::expect_problem(response, 401, "bad-credentials").await;
    // A member named with a NUL names nobody.
    let response = server
        .set_member_raw(&alice, &team, "b%00b", "viewer")
        .await;
    TestServer::expect_problem(response, 422, "invalid-field").await;
    let response = server.remove_member_raw(&alice, &team, "b%00b").await;
    TestServer::expect_problem(response, 422, "invalid-field").await;

    // A version's message, in each of the three ways one is given; the push is refused before
    // its objects are read, so none is stored.
    let t2 = tree(&[("a.json", "2")]);
    let response = server
        .http
        .post(server.url(&format!(
            "/v1/projects/{project}/push?push_id=nul-1&base_version=1&root={}&message=a%00b",
            t2.root
        )))
        .bearer_auth(&alice.token)
        .header("content-type", sync_protocol::wire::OBJECTS_MEDIA_TYPE)
        .body(t2.stream())
        .send()
        .await
        .unwrap();
    let problem = TestServer::expect_problem(response, 422, "invalid-field").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("message"),
        "{problem}"
    );
    let commit = serde_json::json!({
        "push_id": "nul-2", "base_version": 1, "root": t1.root.to_string(), "message": "a\u{0}b"
    });
    let response = server.commit_raw(&alice, &project, &commit).await;
    TestServer::expect_problem(response, 422, "invalid-field").await;
    let restore = serde_json::json!({"version": 1, "base_version": 1, "message": "\u{0}"});
    let response = server.restore_raw(&alice, &project, &restore).await;
    TestServer::expect_problem(response, 422, "invalid-field").await;
    assert_eq!(before, snapshot(server, &alice, &project).await);
    // Newlines stay allowed in messages.
    let restore = serde_json::json!({"version": 1, "base_version": 1, "message": "two\nlines"});
    let response = server.restore_raw(&alice, &project, &restore).await;
    assert_eq!(response.status(), 200);
}
http_test!(nul_characters, nul_characters_are_refused_by_field);
