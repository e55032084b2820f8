//! Every text input of the API, found in the served OpenAPI document (JSON body members, query
//! parameters, path parameters), sent with values no catalog can store: a NUL character,
//! invalid UTF-8, and a length past the document's `maxLength` (or, where it declares none, far
//! past anything stored). Each request is otherwise valid, so what answers is the check of that
//! one field. In both catalogs:
//!
//! - never a 5xx: a value the database cannot take is the client's error, caught before it;
//! - a body member or query parameter is `422 invalid-field` naming it (sign-in's login and
//!   password answer `401 bad-credentials`, as any unknown login does); invalid UTF-8 in a JSON body makes the
//!   whole body unreadable, `400 bad-json`;
//! - a path parameter names nothing: `404 not-found`, or `422 invalid-field` naming it;
//! - nothing is stored: teams, projects, members, tokens and history are as they were.
//!
//! A new operation or text field in the document is walked without a change here, as long as
//! the table of valid values ([`valid_value`]) knows its other members; if not, the test says
//! which value to add.

use reqwest::Method;
use serde_json::{Map, Value, json};
use sync_protocol::wire::OBJECTS_MEDIA_TYPE;

use crate::http::support::{TestServer, User, tree};

/// Where a text input travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Path,
    Query,
    Body,
}

/// One text input of one operation.
#[derive(Debug, Clone)]
struct TextField {
    method: Method,
    /// The path template, `{name}` for parameters.
    path: String,
    place: Place,
    name: String,
    max_length: Option<u64>,
    /// A list of texts (the bad value is sent as its one item).
    list: bool,
}

/// A value no catalog can store.
#[derive(Debug, Clone, Copy)]
enum Bad {
    Nul,
    InvalidUtf8,
    TooLong,
}

/// The text of a bad value, for a path or query (invalid UTF-8 is percent-encoded there) or a
/// JSON body (where it is spliced in as raw bytes).
const PLACEHOLDER: &str = "\u{e000}bad\u{e000}";

fn bad_text(bad: Bad, max_length: Option<u64>) -> String {
    match bad {
        Bad::Nul => "a\u{0}b".to_owned(),
        Bad::InvalidUtf8 => PLACEHOLDER.to_owned(),
        // One past the document's limit, or far past anything stored where it has none.
        Bad::TooLong => "x".repeat(max_length.map_or(5_000, |max| max as usize + 1)),
    }
}

/// Percent-encodes a path segment or query value; the placeholder becomes invalid UTF-8.
fn encode(text: &str) -> String {
    if text == PLACEHOLDER {
        return "a%FFb".to_owned();
    }
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The schema `value`, with its `$ref` (if any) followed.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            resolve(document, &document["components"]["schemas"][name])
        }
        None => value,
    }
}

/// True if the schema takes a string (alone, nullable, or as one branch of several).
fn takes_text(document: &Value, schema: &Value) -> bool {
    let schema = resolve(document, schema);
    let typed = |kind: &Value| match kind {
        Value::String(kind) => kind == "string",
        Value::Array(kinds) => kinds.iter().any(|kind| kind == "string"),
        _ => false,
    };
    typed(&schema["type"])
        || ["anyOf", "oneOf"].iter().any(|key| {
            schema[key]
                .as_array()
                .is_some_and(|branches| branches.iter().any(|b| takes_text(document, b)))
        })
}

fn max_length(document: &Value, schema: &Value) -> Option<u64> {
    resolve(document, schema)["maxLength"].as_u64()
}

/// The JSON body schema of an operation, resolved, if it takes JSON.
fn json_body<'a>(document: &'a Value, operation: &'a Value) -> Option<&'a Value> {
    let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    (!schema.is_null()).then(|| resolve(document, schema))
}

/// Every text input the document declares.
fn text_fields(document: &Value) -> Vec<TextField> {
    let mut fields = Vec::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let field = |place, name: &str, schema: &Value, list| TextField {
                method: method.clone(),
                path: path.clone(),
                place,
                name: name.to_owned(),
                max_length: max_length(document, schema),
                list,
            };
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let parameter = resolve(document, parameter);
                let place = match parameter["in"].as_str() {
                    Some("path") => Place::Path,
                    Some("query") => Place::Query,
                    _ => continue,
                };
                if takes_text(document, &parameter["schema"]) {
                    let name = parameter["name"].as_str().expect("a parameter name");
                    fields.push(field(place, name, &parameter["schema"], false));
                }
            }
            if let Some(body) = json_body(document, operation) {
                for (name, schema) in body["properties"].as_object().into_iter().flatten() {
                    let items = &resolve(document, schema)["items"];
                    if takes_text(document, schema) {
                        fields.push(field(Place::Body, name, schema, false));
                    } else if !items.is_null() && takes_text(document, items) {
                        fields.push(field(Place::Body, name, items, true));
                    }
                }
            }
        }
    }
    fields
}

/// What the walk works on: an owner, a member, a team, a project with one version.
struct Fixture {
    alice: User,
    bob: User,
    team: String,
    project: String,
    version: u64,
    root: String,
    /// An object stream of a tree the project does not have, for push and upload bodies.
    stream: Vec<u8>,
}

/// A valid value of a body member or query parameter, by name; `n` makes names unique.
fn valid_value(fixture: &Fixture, name: &str, n: usize) -> Option<Value> {
    Some(match name {
        "name" => json!(format!("walk{n}")),
        "email" => json!(format!("walk{n}@example.com")),
        "password" => json!("correct horse battery"),
        "login" => json!(fixture.alice.name),
        "label" => json!(format!("walk {n}")),
        "role" => json!("viewer"),
        "push_id" => json!(format!("walk-{n}")),
        "message" => json!("a message"),
        "root" | "have" => json!(fixture.root),
        "want" | "version" | "base_version" => json!(fixture.version),
        "ids" => json!([fixture.root]),
        "records" => json!(false),
        "before" | "limit" => return None,
        _ => return None,
    })
}

/// A valid value of a path parameter.
fn path_value(fixture: &Fixture, name: &str) -> String {
    match name {
        "project" => fixture.project.clone(),
        "team" => fixture.team.clone(),
        "account" => fixture.bob.id.clone(),
        "token" => fixture.alice.token_id.clone(),
        "number" => fixture.version.to_string(),
        other => panic!("no valid value for the path parameter {{{other}}}: add one"),
    }
}

/// Sends `field`'s operation with `bad` in `field` and valid values everywhere else.
async fn send(
    server: &TestServer,
    document: &Value,
    fixture: &Fixture,
    field: &TextField,
    bad: Bad,
    n: usize,
) -> reqwest::Response {
    let operation = &document["paths"][&field.path][field.method.as_str().to_lowercase()];
    let value = bad_text(bad, field.max_length);
    // The path, its parameters filled in.
    let mut path = field.path.clone();
    while let Some(start) = path.find('{') {
        let end = start + path[start..].find('}').expect("a closing brace");
        let name = path[start + 1..end].to_owned();
        let segment = if field.place == Place::Path && name == field.name {
            encode(&value)
        } else {
            encode(&path_value(fixture, &name))
        };
        path.replace_range(start..=end, &segment);
    }
    // The query string.
    let mut query = Vec::new();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        let parameter = resolve(document, parameter);
        if parameter["in"] != "query" {
            continue;
        }
        let name = parameter["name"].as_str().expect("a name");
        if field.place == Place::Query && name == field.name {
            query.push(format!("{name}={}", encode(&value)));
        } else if let Some(valid) = valid_value(fixture, name, n) {
            let text = match valid {
                Value::String(text) => text,
                other => other.to_string(),
            };
            query.push(format!("{name}={}", encode(&text)));
        } else {
            assert!(
                parameter["required"] != true,
                "no valid value for the query parameter {name}: add one"
            );
        }
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let mut request = server.http.request(field.method.clone(), server.url(&path));
    let anonymous = operation["security"]
        .as_array()
        .is_some_and(|schemes| schemes.is_empty());
    if !anonymous {
        request = request.bearer_auth(&fixture.alice.token);
    }
    // The body.
    if let Some(schema) = json_body(document, operation) {
        let mut body = Map::new();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for name in schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            if field.place == Place::Body && *name == field.name {
                let bad = if field.list {
                    json!([value])
                } else {
                    json!(value)
                };
                body.insert(name.clone(), bad);
            } else if let Some(valid) = valid_value(fixture, name, n) {
                body.insert(name.clone(), valid);
            } else {
                assert!(
                    !required.contains(&name.as_str()),
                    "no valid value for the body member {name}: add one"
                );
            }
        }
        let text = serde_json::to_string(&body).unwrap();
        let placeholder = serde_json::to_string(PLACEHOLDER).unwrap();
        // The placeholder becomes a string whose middle byte is never UTF-8.
        let bytes = splice_invalid_utf8(text.replace(&placeholder, "\"a\u{fffd}b\"").into_bytes());
        request = request
            .header("content-type", "application/json")
            .body(bytes);
    } else if operation["requestBody"]["content"][OBJECTS_MEDIA_TYPE].is_object() {
        request = request
            .header("content-type", OBJECTS_MEDIA_TYPE)
            .body(fixture.stream.clone());
    }
    request.send().await.unwrap()
}

/// Replaces each U+FFFD (EF BF BD) by the lone byte FF.
fn splice_invalid_utf8(bytes: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index..].starts_with(&[0xef, 0xbf, 0xbd]) {
            out.push(0xff);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    out
}

/// Whether the answer is the one the module doc promises; else what was wrong.
fn judge(field: &TextField, bad: Bad, status: u16, problem: &Value) -> Result<(), String> {
    let code = problem["code"].as_str().unwrap_or("");
    let names_it = problem["field"] == field.name.as_str();
    let ok = match (field.place, bad) {
        _ if status >= 500 => false,
        (Place::Body, Bad::InvalidUtf8) => status == 400 && code == "bad-json",
        // Signing in with a login or password no account can have is signing in wrong.
        (Place::Body, _) if field.path == "/v1/sessions" && field.name != "label" => {
            status == 401 && code == "bad-credentials"
        }
        (Place::Body | Place::Query, _) => status == 422 && code == "invalid-field" && names_it,
        (Place::Path, _) => {
            (status == 404 && code == "not-found")
                || (status == 422 && code == "invalid-field" && names_it)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} {} {:?} {} {bad:?}: {status} {problem}",
            field.method, field.path, field.place, field.name
        ))
    }
}

/// What the walk must not change.
async fn state(server: &TestServer, fixture: &Fixture) -> Vec<Value> {
    let alice = &fixture.alice;
    let mut tokens = server
        .call_json(Method::GET, "/v1/tokens", alice, None)
        .await;
    // Using a token is not a change.
    for token in tokens["tokens"].as_array_mut().into_iter().flatten() {
        token["last_used"] = Value::Null;
    }
    let mut seen = vec![tokens];
    for path in [
        "/v1/teams".to_owned(),
        "/v1/projects".to_owned(),
        format!("/v1/teams/{}/members", fixture.team),
        format!("/v1/projects/{}", fixture.project),
        format!("/v1/projects/{}/versions", fixture.project),
    ] {
        seen.push(server.call_json(Method::GET, &path, alice, None).await);
    }
    seen
}

async fn every_text_field_refuses_what_no_catalog_can_store(server: &TestServer) {
    let (alice, team, project) = server.owner_with_project("alice").await;
    let bob = server.sign_up("bob").await;
    server.add_member(&alice, &team, &bob, "editor").await;
    let first = tree(&[("a.json", "1")]);
    let version = server.push_tree(&alice, &project, 0, &first).await;
    let fixture = Fixture {
        alice,
        bob,
        team,
        project,
        version,
        root: first.root.to_string(),
        stream: tree(&[("a.json", "2")]).stream(),
    };
    let document: Value = server.openapi_document().await;
    let fields = text_fields(&document);
    // Every operation with text in it, and the members it must have.
    let count = |place| fields.iter().filter(|f| f.place == place).count();
    assert!(
        count(Place::Path) >= 19 && count(Place::Query) >= 3 && count(Place::Body) >= 18,
        "the walk found too few text fields: {fields:#?}"
    );
    for (method, path, name) in [
        ("POST", "/v1/accounts", "email"),
        ("POST", "/v1/sessions", "login"),
        ("PUT", "/v1/teams/{team}/members/{account}", "account"),
        ("POST", "/v1/projects/{project}/push", "message"),
        ("POST", "/v1/projects/{project}/commits", "message"),
        ("POST", "/v1/projects/{project}/restore", "message"),
        ("POST", "/v1/projects/{project}/missing", "ids"),
    ] {
        assert!(
            fields
                .iter()
                .any(|f| f.method.as_str() == method && f.path == path && f.name == name),
            "{method} {path} {name} is not walked"
        );
    }
    let before = state(server, &fixture).await;
    let mut wrong = Vec::new();
    let mut sent = 0;
    for field in &fields {
        for bad in [Bad::Nul, Bad::InvalidUtf8, Bad::TooLong] {
            sent += 1;
            let response = send(server, &document, &fixture, field, bad, sent).await;
            let status = response.status().as_u16();
            let problem: Value = response.json().await.unwrap_or(Value::Null);
            if let Err(what) = judge(field, bad, status, &problem) {
                wrong.push(what);
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {sent} answers are not as promised:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(
        before,
        state(server, &fixture).await,
        "the walk changed something"
    );
    eprintln!("{sent} requests over {} text fields", fields.len());
}
http_test!(
    text_fields_walked_from_the_document,
    every_text_field_refuses_what_no_catalog_can_store
);
