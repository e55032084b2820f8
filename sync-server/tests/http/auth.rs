//! The authorization matrix: owner, editor, viewer, a member of another team, no token and a
//! revoked token, on every project route. A project the caller may not see answers exactly
//! like one that does not exist.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::http::support::{TestServer, User, tree};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// Every project route: (method, path suffix, access it needs).
const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "", Access::Read),
    ("POST", "/pull", Access::Read),
    ("POST", "/missing", Access::Read),
    ("GET", "/versions", Access::Read),
    ("GET", "/versions/0", Access::Read),
    ("GET", "/events", Access::Read),
    ("POST", "/push", Access::Write),
    ("POST", "/objects", Access::Write),
    ("POST", "/commits", Access::Write),
    ("POST", "/restore", Access::Write),
];

/// A valid request of `route` on `project` whose head is `head`, sent with `token`.
async fn call(
    server: &TestServer,
    token: Option<&str>,
    project: &str,
    route: (&str, &str, Access),
    head: u64,
) -> reqwest::Response {
    let (method, suffix, _) = route;
    let empty = sync_protocol::Object::Dir(sync_protocol::Dir::empty()).id();
    let push_id = format!("p{:016x}", rand::random::<u64>());
    let mut url = server.url(&format!("/v1/projects/{project}{suffix}"));
    if suffix == "/push" {
        url.push_str(&format!(
            "?push_id={push_id}&base_version={head}&root={empty}"
        ));
    }
    let mut request = server
        .http
        .request(Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request = match suffix {
        "/pull" => request.json(&json!({})),
        "/missing" => request.json(&json!({"ids": [empty.to_string()]})),
        "/push" | "/objects" => request.body(tree(&[]).stream()),
        "/commits" => request
            .json(&json!({"push_id": push_id, "base_version": head, "root": empty.to_string()})),
        "/restore" => request.json(&json!({"version": 0, "base_version": head})),
        _ => request,
    };
    tokio::time::timeout(Duration::from_secs(20), request.send())
        .await
        .expect("an answer")
        .expect("a response")
}

/// Status, content type and body: what must be identical for "hidden" and "absent".
async fn fingerprint(response: reqwest::Response) -> (u16, Option<String>, Vec<u8>) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap_or_default().to_owned());
    let body = response.bytes().await.unwrap_or_default().to_vec();
    (status, content_type, body)
}

async fn matrix(server: &TestServer) {
    let owner = server.sign_up("owner").await;
    let editor = server.sign_up("editor").await;
    let viewer = server.sign_up("viewer").await;
    let outsider = server.sign_up("outsider").await;
    let revoked = server.sign_up("revoked").await;
    let team = server.create_team(&owner, "team").await;
    server.add_member(&owner, &team, &editor, "editor").await;
    server.add_member(&owner, &team, &viewer, "viewer").await;
    server.add_member(&owner, &team, &revoked, "owner").await;
    let other_team = server.create_team(&outsider, "elsewhere").await;
    server
        .create_project(&outsider, &other_team, "theirs")
        .await;
    let project = server.create_project(&owner, &team, "api").await;
    let v1 = tree(&[("a.json", "1")]);
    server.push_tree(&owner, &project, 0, &v1).await;

    let response = server
        .call(
            Method::DELETE,
            &format!("/v1/tokens/{}", revoked.token_id),
            &revoked,
            None,
        )
        .await;
    assert_eq!(response.status(), 204);

    let absent = "0123456789abcdef0123456789abcdef";
    for &route in ROUTES {
        let label = format!("{} {}", route.0, route.1);
        for (who, user) in [("owner", &owner), ("editor", &editor), ("viewer", &viewer)] {
            let head = server.head(&owner, &project).await.0;
            let response = call(server, Some(&user.token), &project, route, head).await;
            let status = response.status().as_u16();
            let allowed = route.2 == Access::Read || who != "viewer";
            if allowed {
                let body = if route.1 == "/events" {
                    String::new()
                } else {
                    response.text().await.unwrap_or_default()
                };
                assert!(
                    (200..300).contains(&status),
                    "{who} {label}: {status} {body}"
                );
            } else {
                TestServer::expect_problem(response, 403, "forbidden").await;
            }
        }
        // Another team's member sees exactly what a nonexistent project shows.
        let head = server.head(&owner, &project).await.0;
        let hidden =
            fingerprint(call(server, Some(&outsider.token), &project, route, head).await).await;
        let missing =
            fingerprint(call(server, Some(&outsider.token), absent, route, head).await).await;
        let malformed =
            fingerprint(call(server, Some(&outsider.token), "not-an-id", route, head).await).await;
        assert_eq!(hidden.0, 404, "outsider {label}");
        assert_eq!(
            hidden, missing,
            "outsider {label}: hidden differs from absent"
        );
        assert_eq!(
            hidden, malformed,
            "outsider {label}: hidden differs from malformed"
        );
        let body: Value = serde_json::from_slice(&hidden.2).unwrap();
        assert_eq!(body["code"], "not-found");

        for (who, token) in [
            ("no token", None),
            ("revoked", Some(revoked.token.as_str())),
        ] {
            let response = call(server, token, &project, route, head).await;
            assert!(
                response.headers().contains_key("www-authenticate"),
                "{who} {label}"
            );
            TestServer::expect_problem(response, 401, "unauthorized").await;
        }
    }

    // Team routes follow the same rule: outsiders see nothing, viewers cannot manage.
    let members = format!("/v1/teams/{team}/members");
    server
        .call_refused(Method::GET, &members, &outsider, None, 404, "not-found")
        .await;
    let response = server
        .set_member_raw(&viewer, &team, "outsider", "owner")
        .await;
    TestServer::expect_problem(response, 403, "forbidden").await;
    let projects = format!("/v1/teams/{team}/projects");
    let nope = json!({"name": "nope"});
    let response = server
        .call(Method::POST, &projects, &viewer, Some(&nope))
        .await;
    TestServer::expect_problem(response, 403, "forbidden").await;

    // The project list shows each caller only their own.
    let list = server
        .call_json(Method::GET, "/v1/projects", &outsider, None)
        .await;
    let names: Vec<&str> = list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|project| project["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["theirs"]);
}
http_test!(authorization_matrix, matrix);

async fn body_is_not_read_before_authentication(server: &TestServer) {
    let (_alice, _team, project) = server.owner_with_project("alice").await;
    // A body that sends a few bytes and then never ends: only an answer that does not wait
    // for it can arrive.
    let endless = futures_util::stream::unfold(0u32, |sent| async move {
        if sent > 0 {
            std::future::pending::<()>().await;
        }
        Some((Ok::<_, std::io::Error>(vec![0u8; 1024]), sent + 1))
    });
    let request = server
        .http
        .post(server.url(&format!(
            "/v1/projects/{project}/push?push_id=x&base_version=0&root={}",
            "0".repeat(64)
        )))
        .body(reqwest::Body::wrap_stream(endless))
        .send();
    let response = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("the server answers without reading the body")
        .expect("a response");
    TestServer::expect_problem(response, 401, "unauthorized").await;
}
http_test!(auth_before_body, body_is_not_read_before_authentication);

async fn accounts_and_tokens(server: &TestServer) {
    let alice: User = server.sign_up("alice").await;
    // Taken names and wrong passwords are typed.
    let refused = [
        (
            "/v1/accounts",
            json!({"name": "ALICE", "email": "other@example.com", "password": "long enough pw"}),
            409,
            "already-exists",
        ),
        (
            "/v1/accounts",
            json!({"name": "bob", "email": "bob@example.com", "password": "short"}),
            422,
            "invalid-field",
        ),
        (
            "/v1/sessions",
            json!({"login": "alice", "password": "wrong password"}),
            401,
            "bad-credentials",
        ),
        (
            "/v1/sessions",
            json!({"login": "nobody", "password": "wrong password"}),
            401,
            "bad-credentials",
        ),
    ];
    for (path, body, status, code) in refused {
        let response = server.call_anonymous(Method::POST, path, Some(&body)).await;
        TestServer::expect_problem(response, status, code).await;
    }

    // A new token is shown once; the list never shows secrets; revoking one leaves the others.
    let created = server
        .call_json(
            Method::POST,
            "/v1/tokens",
            &alice,
            Some(&json!({"label": "laptop"})),
        )
        .await;
    let laptop = created["token"].as_str().unwrap().to_owned();
    assert!(laptop.starts_with("cairn_") && laptop.len() == 70);
    let list = server
        .call_with_token(Method::GET, "/v1/tokens", Some(&laptop), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(!list.contains(&laptop) && !list.contains(&alice.token));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["tokens"].as_array().unwrap().len(), 2);
    let laptop_id = created["token_id"].as_str().unwrap();
    let response = server
        .call(
            Method::DELETE,
            &format!("/v1/tokens/{laptop_id}"),
            &alice,
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    let response = server
        .call_with_token(Method::GET, "/v1/account", Some(&laptop), None)
        .await;
    TestServer::expect_problem(response, 401, "unauthorized").await;
    let me = server
        .call_json(Method::GET, "/v1/account", &alice, None)
        .await;
    assert_eq!(me["name"], "alice");
}
http_test!(accounts, accounts_and_tokens);
