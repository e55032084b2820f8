//! Sync over HTTP: push, pull, conflicts, retries, resume, history and restore, in embedded and
//! production mode.

use reqwest::Method;
use serde_json::{Value, json};

use crate::http::support::{TestServer, stream_of, tree};

async fn push_then_pull_round_trip(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let (version, root) = server.head(&alice, &project).await;
    assert_eq!(version, 0);
    let v1 = tree(&[
        ("requests/get.json", "{\"method\":\"GET\"}"),
        ("env.json", "{}"),
    ]);
    assert_eq!(server.push_tree(&alice, &project, 0, &v1).await, 1);
    assert_eq!(
        server.head(&alice, &project).await,
        (1, v1.root.to_string())
    );

    // A fresh client (have: nothing) gets every object of version 1.
    let pulled = server.pull(&alice, &project, json!({})).await;
    assert_eq!(pulled.version, 1);
    assert_eq!(pulled.root, v1.root.to_string());
    pulled.assert_objects_of(&v1);

    // An edit sends and receives only what changed.
    let v2 = tree(&[
        ("requests/get.json", "{\"method\":\"POST\"}"),
        ("env.json", "{}"),
    ]);
    assert_eq!(server.push_tree(&alice, &project, 1, &v2).await, 2);
    let pulled = server
        .pull(&alice, &project, json!({"have": v1.root.to_string()}))
        .await;
    assert_eq!(pulled.version, 2);
    // New: the root, the requests dir and the edited chunk.
    assert_eq!(pulled.objects.len(), 3, "{:?}", pulled.objects);
    assert_eq!(root.len(), 64);

    // An old version by number.
    let pulled = server
        .pull(
            &alice,
            &project,
            json!({"want": 1, "have": v2.root.to_string()}),
        )
        .await;
    assert_eq!(pulled.version, 1);
    assert_eq!(pulled.root, v1.root.to_string());
}
http_test!(push_then_pull, push_then_pull_round_trip);

async fn noop_pull_reads_nothing(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let v1 = tree(&[("a.json", "1"), ("b/c.json", "2")]);
    server.push_tree(&alice, &project, 0, &v1).await;
    let before = server.store_requests();
    let pulled = server
        .pull(&alice, &project, json!({"have": v1.root.to_string()}))
        .await;
    assert_eq!(pulled.version, 1);
    assert!(pulled.objects.is_empty());
    assert_eq!(
        server.store_requests(),
        before,
        "a no-op pull must not touch the store"
    );
}
http_test!(noop_pull, noop_pull_reads_nothing);

async fn stale_base_conflicts(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let v1 = tree(&[("a.json", "1")]);
    server.push_tree(&alice, &project, 0, &v1).await;
    let stale = tree(&[("a.json", "other edit")]);
    let response = server
        .push_raw(&alice, &project, "stale-1", 0, &stale.root, stale.stream())
        .await;
    let problem = TestServer::expect_problem(response, 409, "conflict").await;
    assert_eq!(problem["head"]["version"], 1);
    assert_eq!(problem["head"]["root"], v1.root.to_string());
    // Nothing moved, and the stale objects were not stored.
    assert_eq!(
        server.head(&alice, &project).await,
        (1, v1.root.to_string())
    );
    let missing = server
        .app
        .store
        .missing(&project.parse().unwrap(), &[stale.root])
        .await;
    assert_eq!(missing.unwrap(), vec![stale.root]);
}
http_test!(conflict, stale_base_conflicts);

async fn retry_after_lost_answer(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let v1 = tree(&[("a.json", "1")]);
    let first = server
        .push_raw(&alice, &project, "push-once", 0, &v1.root, v1.stream())
        .await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["replayed"], false);
    // Someone else pushes on top: the retry must still get its original answer.
    let v2 = tree(&[("a.json", "2")]);
    server.push_tree(&alice, &project, 1, &v2).await;
    let retry = server
        .push_raw(&alice, &project, "push-once", 0, &v1.root, v1.stream())
        .await;
    assert_eq!(retry.status(), 200);
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["version"], 1);
    assert_eq!(retry["replayed"], true);
    let versions = server.versions(&alice, &project, "").await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 3);
    // The same push id for a different push is a client bug, answered as such.
    let response = server
        .push_raw(&alice, &project, "push-once", 2, &v1.root, v1.stream())
        .await;
    TestServer::expect_problem(response, 422, "push-id-reused").await;
}
http_test!(idempotent_retry, retry_after_lost_answer);

async fn resume_sends_only_missing(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let v1 = tree(&[("a.json", "1"), ("b.json", "2"), ("dir/c.json", "3")]);
    // The first half of the upload got through before the connection dropped (chunks only).
    let chunks: Vec<_> = v1
        .objects
        .iter()
        .filter(|object| object.kind == sync_protocol::ObjectKind::Chunk)
        .take(2)
        .cloned()
        .collect();
    let response = server
        .upload_raw(&alice, &project, stream_of(&chunks))
        .await;
    assert_eq!(response.status(), 200);
    // The client asks which objects are missing, sends only those, then commits.
    let ids: Vec<String> = v1.ids().iter().map(ToString::to_string).collect();
    let response = server.missing_raw(&alice, &project, &ids).await;
    assert_eq!(response.status(), 200);
    let missing: Value = response.json().await.unwrap();
    let missing: Vec<String> = missing["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(missing.len(), v1.objects.len() - 2);
    let rest: Vec<_> = v1
        .objects
        .iter()
        .filter(|object| missing.contains(&object.id.to_string()))
        .cloned()
        .collect();
    let stored_before = server.store_requests();
    let response = server.upload_raw(&alice, &project, stream_of(&rest)).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert!(server.store_requests() > stored_before);
    let commit = json!({
        "push_id": "resumed",
        "base_version": 0,
        "root": v1.root.to_string(),
        "message": "resumed"
    });
    let response = server.commit_raw(&alice, &project, &commit).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(
        server.head(&alice, &project).await,
        (1, v1.root.to_string())
    );
    // A commit of a root that is not stored is refused.
    let other = tree(&[("x", "never uploaded")]);
    let commit = json!({"push_id": "bad", "base_version": 1, "root": other.root.to_string()});
    let response = server.commit_raw(&alice, &project, &commit).await;
    TestServer::expect_problem(response, 422, "missing-object").await;
}
http_test!(resume_upload, resume_sends_only_missing);

async fn restore_old_version(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let v1 = tree(&[("a.json", "1")]);
    let v2 = tree(&[("a.json", "2")]);
    server.push_tree(&alice, &project, 0, &v1).await;
    server.push_tree(&alice, &project, 1, &v2).await;
    let restore = json!({"version": 1, "base_version": 2, "push_id": "restore-1"});
    let response = server.restore_raw(&alice, &project, &restore).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["version"], 3);
    assert_eq!(body["root"], v1.root.to_string());
    let version = server.versions(&alice, &project, "/3").await;
    assert_eq!(version["message"], "Restore version 1");
    assert_eq!(version["parent"], 2);
    assert_eq!(version["author"]["name"], "alice");
    // Restoring on a stale base conflicts.
    let stale = json!({"version": 0, "base_version": 2});
    let response = server.restore_raw(&alice, &project, &stale).await;
    TestServer::expect_problem(response, 409, "conflict").await;
    // A pull of the restored head from v2 brings back v1's objects.
    let pulled = server
        .pull(&alice, &project, json!({"have": v2.root.to_string()}))
        .await;
    assert_eq!(pulled.version, 3);
    assert_eq!(pulled.root, v1.root.to_string());
}
http_test!(restore, restore_old_version);

async fn history_lists_newest_first(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    for n in 1..=3u64 {
        let t = tree(&[("a.json", &n.to_string())]);
        server.push_tree(&alice, &project, n - 1, &t).await;
    }
    let page = server.versions(&alice, &project, "?limit=2").await;
    assert_eq!(version_numbers(&page), vec![3, 2]);
    let page = server.versions(&alice, &project, "?before=2").await;
    assert_eq!(version_numbers(&page), vec![1, 0]);
}

/// The numbers of a history page's versions, in its order.
fn version_numbers(page: &Value) -> Vec<u64> {
    page["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["number"].as_u64().unwrap())
        .collect()
}
http_test!(versions, history_lists_newest_first);

async fn events_stream_head_changes(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let events = format!("/v1/projects/{project}/events");
    let response = server.call(Method::GET, &events, &alice, None).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = response.bytes_stream();
    let seen = read_until(&mut body, "\"version\":0").await;
    assert!(seen.contains("event:head"), "{seen}");
    let v1 = tree(&[("a.json", "1")]);
    server.push_tree(&alice, &project, 0, &v1).await;
    let seen = read_until(&mut body, "\"version\":1").await;
    assert!(seen.contains(&v1.root.to_string()), "{seen}");
}

async fn read_until<S, B, E>(body: &mut S, needle: &str) -> String
where
    S: futures_util::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Debug,
{
    use futures_util::StreamExt;
    let mut seen = String::new();
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream stays open")
            .expect("a chunk");
        seen.push_str(&String::from_utf8_lossy(chunk.as_ref()));
    }
    seen
}
http_test!(events, events_stream_head_changes);

/// Reads `body` until the server ends it; panics if it is still open after `limit`.
async fn ends_within<S, B, E>(body: &mut S, limit: std::time::Duration) -> String
where
    S: futures_util::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    use futures_util::StreamExt;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => panic!("the stream is still open after {limit:?}; it sent: {seen}"),
            Ok(None | Some(Err(_))) => return seen,
            Ok(Some(Ok(chunk))) => seen.push_str(&String::from_utf8_lossy(chunk.as_ref())),
        }
    }
}

/// An event stream stops as soon as its holder may no longer see the project: a member
/// removed from the team, a token revoked. A member whose role changes but who still sees the
/// project keeps the stream.
async fn event_streams_end_with_access(server: &TestServer) {
    let (alice, team, project) = server.owner_with_project("alice").await;
    let [bob, carol, dave] = [
        server.sign_up("bob").await,
        server.sign_up("carol").await,
        server.sign_up("dave").await,
    ];
    server.add_member(&alice, &team, &bob, "viewer").await;
    server.add_member(&alice, &team, &carol, "viewer").await;
    server.add_member(&alice, &team, &dave, "editor").await;
    let events = format!("/v1/projects/{project}/events");
    let mut streams = Vec::new();
    for user in [&bob, &carol, &dave] {
        let response = server.call(Method::GET, &events, user, None).await;
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        read_until(&mut body, "\"version\":0").await;
        streams.push(body);
    }
    let [mut bobs, mut carols, mut daves] = <[_; 3]>::try_from(streams).ok().unwrap();
    let limit = std::time::Duration::from_secs(5);
    // Removed from the team.
    let response = server.remove_member_raw(&alice, &team, &bob.name).await;
    assert_eq!(response.status(), 204);
    ends_within(&mut bobs, limit).await;
    // Her token revoked (she revokes it herself, with itself).
    let revoke = format!("/v1/tokens/{}", carol.token_id);
    let response = server.call(Method::DELETE, &revoke, &carol, None).await;
    assert_eq!(response.status(), 204);
    ends_within(&mut carols, limit).await;
    // Demoted, still a member: the stream goes on and carries the next head.
    server.add_member(&alice, &team, &dave, "viewer").await;
    let v1 = tree(&[("a.json", "1")]);
    server.push_tree(&alice, &project, 0, &v1).await;
    let seen = read_until(&mut daves, "\"version\":1").await;
    assert!(seen.contains(&v1.root.to_string()), "{seen}");
}
http_test!(events_end_with_access, event_streams_end_with_access);
