//! Server-side rebase (the `cairn-rebase: allowed` header): a push on a stale base whose paths
//! the head has not changed since is committed on top of the head; an overlap, or a client
//! without the header, still gets the conflict; a retried push id replays the rebased answer.

use serde_json::{Value, json};

use crate::http::support::{TestServer, User, tree};

/// A push of `tree`'s every object on `base`, with or without the rebase header.
async fn push(
    server: &TestServer,
    user: &User,
    project: &str,
    push_id: &str,
    base: u64,
    tree: &cairn_test_support::trees::Tree,
    rebase: Option<&str>,
) -> reqwest::Response {
    let mut request = server.push_request(user, project, push_id, base, &tree.root, tree.stream());
    if let Some(value) = rebase {
        request = request.header(sync_protocol::wire::REBASE_HEADER, value);
    }
    request.send().await.expect("push")
}

async fn committed(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON answer");
    assert_eq!(status, 200, "{body}");
    body
}

async fn rebase_disjoint_pushes(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let allowed = Some("allowed");
    let v1 = tree(&[("a/x", "a1"), ("b/y", "b1"), ("c", "c1")]);
    assert_eq!(server.push_tree(&alice, &project, 0, &v1).await, 1);
    // Another writer changes b/y: version 2.
    let theirs = tree(&[("a/x", "a1"), ("b/y", "b2"), ("c", "c1")]);
    assert_eq!(server.push_tree(&alice, &project, 1, &theirs).await, 2);

    // This writer, still on version 1, changed a/x only.
    let ours = tree(&[("a/x", "a2"), ("b/y", "b1"), ("c", "c1")]);
    let both = tree(&[("a/x", "a2"), ("b/y", "b2"), ("c", "c1")]);

    // A client that does not allow rebasing gets the conflict, as before.
    let old = push(server, &alice, &project, "old-style", 1, &ours, None).await;
    let problem = TestServer::expect_problem(old, 409, "conflict").await;
    assert_eq!(problem["head"]["version"], 2, "{problem}");
    // A header value other than `allowed` is refused, naming the header.
    let odd = push(server, &alice, &project, "odd", 1, &ours, Some("yes")).await;
    let problem = TestServer::expect_problem(odd, 422, "invalid-field").await;
    assert_eq!(problem["field"], "cairn-rebase", "{problem}");

    let rebased = committed(push(server, &alice, &project, "mine", 1, &ours, allowed).await).await;
    assert_eq!(
        rebased,
        json!({"version": 3, "root": both.root.to_string(), "replayed": false, "rebased": true})
    );
    // The head is the tree with both changes, and it is whole: a fresh pull gets every object.
    server
        .pull(&alice, &project, json!({}))
        .await
        .assert_objects_of(&both);
    let history = server.versions(&alice, &project, "/3").await;
    assert_eq!(history["root"], both.root.to_string(), "{history}");

    // A retry of the push id, with or without the header, replays the rebased answer.
    let replayed =
        json!({"version": 3, "root": both.root.to_string(), "replayed": true, "rebased": true});
    for header in [allowed, None] {
        let again = committed(push(server, &alice, &project, "mine", 1, &ours, header).await).await;
        assert_eq!(again, replayed);
    }
    // So does the old-style push's conflict, even with the header now.
    let again = push(server, &alice, &project, "old-style", 1, &ours, allowed).await;
    TestServer::expect_problem(again, 409, "conflict").await;
    assert_eq!(server.head(&alice, &project).await.0, 3);

    // Overlaps still conflict: a/x again on version 1 (changed since by version 3)...
    let same_file = tree(&[("a/x", "a3"), ("b/y", "b1"), ("c", "c1")]);
    let response = push(server, &alice, &project, "same", 1, &same_file, allowed).await;
    TestServer::expect_problem(response, 409, "conflict").await;
    // ...and a file where the head changed something inside the folder of that name.
    let file_for_folder = tree(&[("a/x", "a1"), ("b", "a file now"), ("c", "c1")]);
    let response = push(
        server,
        &alice,
        &project,
        "folder",
        1,
        &file_for_folder,
        allowed,
    )
    .await;
    TestServer::expect_problem(response, 409, "conflict").await;
    assert_eq!(
        server.head(&alice, &project).await,
        (3, both.root.to_string())
    );

    // The resumable path: objects uploaded, then a commit on the stale base, rebased too.
    let more = tree(&[("a/x", "a1"), ("b/y", "b1"), ("c", "c2")]);
    let uploaded = server.upload_raw(&alice, &project, more.stream()).await;
    assert_eq!(uploaded.status(), 200);
    let commit = json!({"push_id": "resumed", "base_version": 1, "root": more.root.to_string()});
    let response = server
        .http
        .post(server.url(&format!("/v1/projects/{project}/commits")))
        .bearer_auth(&alice.token)
        .header(sync_protocol::wire::REBASE_HEADER, "allowed")
        .json(&commit)
        .send()
        .await
        .expect("commit");
    let all = tree(&[("a/x", "a2"), ("b/y", "b2"), ("c", "c2")]);
    assert_eq!(
        committed(response).await,
        json!({"version": 4, "root": all.root.to_string(), "replayed": false, "rebased": true})
    );
    // A push on the head itself is not a rebase, header or not.
    let last = tree(&[("a/x", "a2"), ("b/y", "b2"), ("c", "c3")]);
    let response = push(server, &alice, &project, "on-head", 4, &last, allowed).await;
    assert_eq!(
        committed(response).await,
        json!({"version": 5, "root": last.root.to_string(), "replayed": false})
    );
}

http_test!(rebase, rebase_disjoint_pushes);
