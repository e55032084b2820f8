//! The API keeps the contract its OpenAPI document states, one regression test per class of
//! disagreement schemathesis found: methods a path does not declare, bodies that are not JSON
//! objects, members the document does not know, and text the document and the server judge
//! differently. (tests/tests/contract.rs runs schemathesis itself against the binary.)

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};
use sync_protocol::wire::{self, ROUTES};

use crate::http::support::{TestServer, User};

/// Every method a client might send; a path answers those it does not declare with `405`.
const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE",
];

/// `path` with each `{placeholder}` replaced by `value`.
fn filled(path: &str, value: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                value
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn undeclared_methods(server: &TestServer) {
    let (alice, _team, project) = server.owner_with_project("alice").await;
    let document: Value = server.openapi_document().await;
    let paths = document["paths"].as_object().unwrap();
    assert_eq!(
        paths.len(),
        ROUTES
            .iter()
            .map(|route| route.path)
            .collect::<BTreeSet<_>>()
            .len()
    );
    let mut refused = 0;
    for (template, item) in paths {
        let declared: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|method| method.to_ascii_uppercase())
            .collect();
        // `Allow` lists them in the route table's order of methods.
        let mut allow: Vec<wire::Method> = declared
            .iter()
            .map(|method| wire::Method::parse(method).unwrap())
            .collect();
        allow.sort();
        let allow: Vec<&str> = allow.iter().map(|method| method.as_str()).collect();
        let allow = allow.join(", ");
        let path = filled(template, &project);
        for method in METHODS
            .iter()
            .filter(|method| !declared.iter().any(|d| d == *method))
        {
            // With and without a token: the method is wrong before anything else is checked.
            for token in [None, Some(alice.token.as_str())] {
                let mut request = server.http.request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    server.url(&path),
                );
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 405, "{method} {path}");
                assert_eq!(
                    response.headers()["allow"],
                    allow.as_str(),
                    "{method} {path}"
                );
                if *method != "HEAD" {
                    TestServer::expect_problem(response, 405, "method-not-allowed").await;
                }
                refused += 1;
            }
        }
    }
    // POST, PUT and DELETE /v1/account among them, which once answered 404.
    assert!(refused > 100, "{refused}");
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let response = server.call(method, "/v1/account", &alice, None).await;
        assert_eq!(response.headers()["allow"], "GET");
        TestServer::expect_problem(response, 405, "method-not-allowed").await;
    }
}
http_test!(
    methods_a_path_does_not_declare_answer_405_with_allow,
    undeclared_methods
);

/// Sends `body` as the raw JSON body of `method path` with `user`'s token.
async fn send_raw(
    server: &TestServer,
    method: Method,
    path: &str,
    user: &User,
    body: &str,
) -> reqwest::Response {
    server
        .http
        .request(method, server.url(path))
        .bearer_auth(&user.token)
        .header("content-type", wire::JSON_MEDIA_TYPE)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn bodies_are_objects(server: &TestServer) {
    let (alice, team, project) = server.owner_with_project("alice").await;
    // serde would read an array as the struct's members in order: `["x"]` was team "x".
    for (path, body) in [
        ("/v1/teams".to_owned(), r#"["x"]"#),
        ("/v1/teams".to_owned(), r#""x""#),
        ("/v1/tokens".to_owned(), r#"["laptop"]"#),
        (format!("/v1/teams/{team}/projects"), r#"["x"]"#),
        (format!("/v1/projects/{project}/pull"), "[null, null]"),
        (format!("/v1/projects/{project}/pull"), "null"),
        (format!("/v1/projects/{project}/missing"), "[[]]"),
        (format!("/v1/projects/{project}/restore"), "[0, 0]"),
        (format!("/v1/projects/{project}/commits"), "7"),
    ] {
        let response = send_raw(server, Method::POST, &path, &alice, body).await;
        let problem = TestServer::expect_problem(response, 400, "bad-json").await;
        assert!(
            problem["detail"].as_str().unwrap().contains("JSON object"),
            "{path} {body}: {problem}"
        );
    }
    let teams = server
        .call_json(Method::GET, "/v1/teams", &alice, None)
        .await;
    assert_eq!(teams["teams"].as_array().unwrap().len(), 1, "{teams}");
    let path = format!("/v1/teams/{team}/members/alice");
    let response = send_raw(server, Method::PUT, &path, &alice, r#"["viewer"]"#).await;
    TestServer::expect_problem(response, 400, "bad-json").await;

    // An empty pull body is `{}`, as the document's optional body says.
    let response = send_raw(
        server,
        Method::POST,
        &format!("/v1/projects/{project}/pull"),
        &alice,
        "",
    )
    .await;
    assert_eq!(response.status(), 200);
    // A number with a zero fraction is an integer, in JSON Schema and so here.
    let response = send_raw(
        server,
        Method::POST,
        &format!("/v1/projects/{project}/pull"),
        &alice,
        r#"{"want": 0.0}"#,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[wire::VERSION_HEADER], "0");
}
http_test!(json_bodies_must_be_objects, bodies_are_objects);

async fn unknown_members(server: &TestServer) {
    let (alice, team, project) = server.owner_with_project("alice").await;
    let document: Value = server.openapi_document().await;
    // Each JSON request body, valid but for one member the document does not declare.
    let id = "0".repeat(64);
    let bodies = [
        (
            "SignUp",
            Method::POST,
            "/v1/accounts".to_owned(),
            json!({"name": "bob", "email": "bob@example.com", "password": "long enough"}),
        ),
        (
            "LogIn",
            Method::POST,
            "/v1/sessions".to_owned(),
            json!({"login": "alice", "password": "x"}),
        ),
        (
            "CreateToken",
            Method::POST,
            "/v1/tokens".to_owned(),
            json!({"label": "ci"}),
        ),
        (
            "NameBody",
            Method::POST,
            "/v1/teams".to_owned(),
            json!({"name": "other"}),
        ),
        (
            "NameBody",
            Method::POST,
            format!("/v1/teams/{team}/projects"),
            json!({"name": "other"}),
        ),
        (
            "RoleBody",
            Method::PUT,
            format!("/v1/teams/{team}/members/alice"),
            json!({"role": "owner"}),
        ),
        (
            "Restore",
            Method::POST,
            format!("/v1/projects/{project}/restore"),
            json!({"version": 0, "base_version": 0}),
        ),
        (
            "PullRequest",
            Method::POST,
            format!("/v1/projects/{project}/pull"),
            json!({}),
        ),
        (
            "Commit",
            Method::POST,
            format!("/v1/projects/{project}/commits"),
            json!({"push_id": "p", "base_version": 0, "root": id}),
        ),
        (
            "MissingQuery",
            Method::POST,
            format!("/v1/projects/{project}/missing"),
            json!({"ids": []}),
        ),
    ];
    let names: BTreeSet<&str> = bodies.iter().map(|(name, ..)| *name).collect();
    let routed: BTreeSet<&str> = ROUTES
        .iter()
        .filter_map(|route| match route.request {
            wire::routes::Body::Json(name) => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(names, routed, "a body of each JSON request type");
    for (name, method, path, mut body) in bodies {
        let schema = &document["components"]["schemas"][name];
        assert_eq!(schema["additionalProperties"], false, "{name}");
        body["unknown"] = json!(1);
        let response = server.call(method, &path, &alice, Some(&body)).await;
        let problem = TestServer::expect_problem(response, 400, "bad-json").await;
        assert!(
            problem["detail"].as_str().unwrap().contains("unknown"),
            "{name}: {problem}"
        );
    }
}
http_test!(
    members_the_document_does_not_declare_are_refused,
    unknown_members
);

/// Texts at the edges of the server's rules: blank, white space of every kind, control
/// characters, NUL (which PostgreSQL's text cannot hold), letters of other scripts, and the
/// length limit in characters, as the document's `maxLength` counts them: at it and one past
/// it, in one-byte, two-byte and four-byte characters.
fn texts(limit: usize) -> Vec<String> {
    let mut texts: Vec<String> = [
        "",
        " ",
        "a",
        " a ",
        "a b",
        "\u{3000}",
        "\u{3000}x",
        "\u{a0}",
        "\u{2028}",
        "\u{feff}",
        "\u{85}",
        "x\u{85}",
        "a\u{0}",
        "\u{0}",
        "a\tb",
        "a\nb",
        "\u{7f}",
        "\u{9f}x",
        "名前",
        "Ωμέγα",
        "emoji 🦀",
        "a\u{301}",
        "x\u{200b}",
    ]
    .iter()
    .map(|text| (*text).to_owned())
    .collect();
    texts.extend([
        "x".repeat(limit),
        "x".repeat(limit + 1),
        "é".repeat(limit),
        "é".repeat(limit + 1),
        "🦀".repeat(limit),
        "🦀".repeat(limit + 1),
    ]);
    texts
}

fn matches(pattern: &str, text: &str) -> bool {
    regex_lite::Regex::new(pattern).unwrap().is_match(text)
}

/// The document's rule for a string: its pattern and its length in characters.
fn fits(schema: &Value, text: &str) -> bool {
    let length = text.chars().count() as u64;
    schema["pattern"]
        .as_str()
        .is_none_or(|pattern| matches(pattern, text))
        && schema["minLength"].as_u64().is_none_or(|min| length >= min)
        && schema["maxLength"].as_u64().is_none_or(|max| length <= max)
}

async fn text_rules(server: &TestServer) {
    let (alice, team, project) = server.owner_with_project("alice").await;
    let document: Value = server.openapi_document().await;
    let schemas = &document["components"]["schemas"];
    let name = &schemas["NameBody"]["properties"]["name"];
    let label = &schemas["CreateToken"]["properties"]["label"];
    let message = &schemas["Commit"]["properties"]["message"];
    assert_eq!(name["pattern"], wire::TEXT_PATTERN);
    assert_eq!(message["pattern"], wire::MESSAGE_PATTERN);
    for (index, text) in texts(wire::MAX_NAME_CHARS).iter().enumerate() {
        // Unique names: a clash would answer `already-exists`.
        let unique = |text: &str| {
            if text.chars().count() < wire::MAX_NAME_CHARS - 4 && fits(name, text) {
                format!("{text}{index:03}")
            } else {
                text.to_owned()
            }
        };
        for path in ["/v1/teams".to_owned(), format!("/v1/teams/{team}/projects")] {
            let text = unique(text);
            let body = json!({ "name": text });
            let response = server.call(Method::POST, &path, &alice, Some(&body)).await;
            let status = response.status().as_u16();
            let expected = if fits(name, &text) { 201 } else { 422 };
            assert_eq!(
                status,
                expected,
                "{path} {text:?}: {}",
                response.text().await.unwrap()
            );
        }
    }
    for text in texts(wire::MAX_TOKEN_LABEL_CHARS) {
        let body = json!({ "label": text });
        let response = server
            .call(Method::POST, "/v1/tokens", &alice, Some(&body))
            .await;
        let expected = if fits(label, &text) { 201 } else { 422 };
        assert_eq!(response.status(), expected, "label {text:?}");
    }
    // Messages may be empty or blank and span lines; not NUL, not past the limit.
    let head = server.head(&alice, &project).await;
    let mut version = head.0;
    for (index, text) in texts(wire::MAX_MESSAGE_CHARS).iter().enumerate() {
        let body = json!({
            "version": 0,
            "base_version": version,
            "push_id": format!("restore-{index}"),
            "message": text,
        });
        let path = format!("/v1/projects/{project}/restore");
        let response = server.call(Method::POST, &path, &alice, Some(&body)).await;
        if fits(message, text) {
            assert_eq!(response.status(), 200, "message {text:?}");
            version += 1;
        } else {
            let problem = TestServer::expect_problem(response, 422, "invalid-field").await;
            assert_eq!(problem["field"], "message", "{problem}");
        }
    }
}
http_test!(text_is_judged_as_the_document_says, text_rules);
