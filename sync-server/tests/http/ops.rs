//! Operations endpoints, routing edges, teams, and fsck finding damage.

use reqwest::Method;
use serde_json::{Value, json};
use sync_server::catalog::ProjectId;

use crate::http::support::{TestServer, tree};

async fn health_ready_metrics_openapi(server: &TestServer) {
    let health = server.call_anonymous(Method::GET, "/healthz", None).await;
    assert_eq!(health.status(), 200);
    // A sane client request id is echoed; a missing one is generated.
    let ready = server
        .http
        .get(server.url("/readyz"))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.headers()["x-request-id"], "trace-123");
    assert!(health.headers()["x-request-id"].len() >= 16);

    // Some traffic to count: a push, a conflict, a pull.
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let v1 = tree(&[("a.json", "1")]);
    server.push_tree(&alice, &project, 0, &v1).await;
    let response = server
        .push_raw(&alice, &project, "late", 0, &v1.root, v1.stream())
        .await;
    TestServer::expect_problem(response, 409, "conflict").await;
    server.pull(&alice, &project, json!({})).await;

    let metrics = server
        .call_anonymous(Method::GET, "/metrics", None)
        .await
        .text()
        .await
        .unwrap();
    for needle in [
        "cairn_http_requests_total{method=\"POST\",route=\"/v1/projects/{project}/push\",status=\"200\"} 1",
        "cairn_http_requests_total{method=\"POST\",route=\"/v1/projects/{project}/push\",status=\"409\"} 1",
        "cairn_http_request_duration_seconds_count{route=\"/v1/projects/{project}/pull\"} 1",
        "cairn_push_conflicts_total 1",
        "cairn_pushes_committed_total 1",
        "cairn_pulls_total 1",
        "cairn_objects_stored_total 2",
        "cairn_store_put_requests_total",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
    let bytes_in: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("cairn_http_bytes_in_total "))
        .and_then(|value| value.parse().ok())
        .unwrap();
    assert!(bytes_in >= 2 * v1.stream().len() as u64);

    let openapi: Value = server.openapi_document().await;
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/v1/projects/{project}/push"]["post"].is_object());

    // Routing edges: unknown routes and wrong methods are problem documents too.
    for (method, path, status, code) in [
        (Method::GET, "/v1/nothing/here".to_owned(), 404, "not-found"),
        (
            Method::DELETE,
            format!("/v1/projects/{project}/push"),
            405,
            "method-not-allowed",
        ),
    ] {
        let response = server.call_anonymous(method, &path, None).await;
        TestServer::expect_problem(response, status, code).await;
    }
}
http_test!(operations, health_ready_metrics_openapi);

async fn teams_and_members(server: &TestServer) {
    let owner = server.sign_up("owner").await;
    let bob = server.sign_up("bob").await;
    let team = server.create_team(&owner, "team").await;
    server
        .call_refused(
            Method::POST,
            "/v1/teams",
            &bob,
            Some(&json!({"name": "TEAM"})),
            409,
            "already-exists",
        )
        .await;
    server.add_member(&owner, &team, &bob, "viewer").await;
    let members = server
        .call_json(
            Method::GET,
            &format!("/v1/teams/{team}/members"),
            &bob,
            None,
        )
        .await;
    assert_eq!(members["members"].as_array().unwrap().len(), 2);
    // An unknown role or account is a typed error; the last owner cannot leave.
    let response = server.set_member_raw(&owner, &team, "bob", "admin").await;
    TestServer::expect_problem(response, 422, "invalid-field").await;
    let response = server
        .set_member_raw(&owner, &team, "nobody", "viewer")
        .await;
    TestServer::expect_problem(response, 422, "invalid-field").await;
    let response = server.remove_member_raw(&owner, &team, "owner").await;
    TestServer::expect_problem(response, 409, "last-owner").await;
    // Anyone may leave; then the team is invisible to them.
    let response = server.remove_member_raw(&bob, &team, "bob").await;
    assert_eq!(response.status(), 204);
    let team_path = format!("/v1/teams/{team}");
    server
        .call_refused(Method::GET, &team_path, &bob, None, 404, "not-found")
        .await;
    let teams = server
        .call_json(Method::GET, "/v1/teams", &owner, None)
        .await;
    assert_eq!(teams["teams"][0]["role"], "owner");
}
http_test!(teams, teams_and_members);

async fn pull_edges(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let v1 = tree(&[("a.json", "1"), ("d/b.json", "2")]);
    server.push_tree(&alice, &project, 0, &v1).await;
    // A base the project does not have: the whole head comes back.
    let stranger = tree(&[("x", "not here")]);
    let pulled = server
        .pull(&alice, &project, json!({"have": stranger.root.to_string()}))
        .await;
    assert_eq!(pulled.objects.len(), v1.objects.len());
    // An unknown version is typed.
    let response = server.pull_raw(&alice, &project, json!({"want": 9})).await;
    TestServer::expect_problem(response, 404, "unknown-version").await;
    let response = server
        .pull_raw(&alice, &project, json!({"have": "xyz"}))
        .await;
    TestServer::expect_problem(response, 422, "invalid-field").await;
    server
        .call_refused(
            Method::GET,
            &format!("/v1/projects/{project}/versions/7"),
            &alice,
            None,
            404,
            "unknown-version",
        )
        .await;
    let response = server
        .restore_raw(&alice, &project, &json!({"version": 7, "base_version": 1}))
        .await;
    TestServer::expect_problem(response, 404, "unknown-version").await;
    // Version 0, the empty project, from version 1: only the empty dir.
    let pulled = server
        .pull(
            &alice,
            &project,
            json!({"want": 0, "have": v1.root.to_string()}),
        )
        .await;
    assert_eq!(pulled.version, 0);
    assert!(pulled.objects.len() <= 1);
}
http_test!(pulls, pull_edges);

async fn fsck_reports_damage(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let v1 = tree(&[("a.json", "1"), ("d/b.json", "2")]);
    server.push_tree(&alice, &project, 0, &v1).await;
    let catalog = server.app.catalog.as_ref();
    let store = &server.app.store;
    let read_data = sync_server::fsck::Options {
        read_data: true,
        sample: 1.0,
    };
    let report = sync_server::fsck::run(catalog, store, Some(&project), read_data)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.versions, 2);
    assert_eq!(report.reachable, v1.objects.len());
    assert_eq!(report.verified, v1.objects.len());
    assert_eq!((report.packs, report.indexed), (1, v1.objects.len()));

    // Flip one byte of a chunk's frame inside the stored pack, behind the server's back.
    let id: ProjectId = project.parse().unwrap();
    let flipped = v1.objects[1].id;
    let row = catalog.locate(id, &[flipped], false).await.unwrap()[0].unwrap();
    let mut bytes = store
        .backend()
        .read_pack(&id, row.pack)
        .await
        .unwrap()
        .to_vec();
    bytes[row.offset as usize + row.length as usize / 2] ^= 0x55;
    store
        .backend()
        .delete_packs(&id, &[row.pack])
        .await
        .unwrap();
    store
        .backend()
        .put_pack(&id, row.pack, bytes::Bytes::from(bytes))
        .await
        .unwrap();
    // A node that has not read it: a pull refuses it with an integrity error naming it.
    server.app.cache.clear();
    let response = server.pull_raw(&alice, &project, json!({})).await;
    let problem = TestServer::expect_problem(response, 500, "integrity-error").await;
    assert_eq!(problem["id"], flipped.to_string(), "{problem}");
    // fsck without --read-data reads dirs only: the pack's contents still agree with the index.
    let report = sync_server::fsck::run(catalog, store, None, Default::default())
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
    // With it, the object is named.
    let report = sync_server::fsck::run(catalog, store, None, read_data)
        .await
        .unwrap();
    assert_eq!(report.corrupt.len(), 1, "{report}");
    assert_eq!(report.corrupt[0].1, flipped);

    // An object the index lost is missing from the version that needs it.
    let lost = v1.objects[0].id;
    let future = sync_server::catalog::Timestamp::from(
        std::time::SystemTime::now() + std::time::Duration::from_secs(86_400),
    );
    assert_eq!(catalog.unindex(id, &[lost], future).await.unwrap(), 1);
    let report = sync_server::fsck::run(catalog, store, None, read_data)
        .await
        .unwrap();
    assert_eq!(report.missing.len(), 1, "{report}");
    assert_eq!(report.missing[0].2, lost);
    assert!(report.to_string().contains("status: damaged"));
}
http_test!(fsck, fsck_reports_damage);
