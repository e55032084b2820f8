//! The OpenAPI 3.1 document of the JSON API, served at `/v1/openapi.json`.
//!
//! Built from one table of operations so that adding a route is one line here. The object-stream
//! bodies (push, upload, pull) are described as `application/vnd.cairn.objects` binaries; their
//! byte format is in the protocol spec.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

/// One operation: method, path, operation id, summary, request body schema (if any, `"stream"`
/// for an object stream), success status and its schema (`"stream"`, `"sse"` or none), and the
/// problem codes it may answer besides the generic ones.
struct Operation {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    authenticated: bool,
    request: Option<&'static str>,
    status: u16,
    response: Option<&'static str>,
    problems: &'static [&'static str],
}

const OPERATIONS: &[Operation] = &[
    Operation {
        method: "post",
        path: "/v1/accounts",
        id: "signUp",
        summary: "Create an account",
        authenticated: false,
        request: Some("SignUp"),
        status: 201,
        response: Some("Account"),
        problems: &["invalid-field", "already-exists"],
    },
    Operation {
        method: "post",
        path: "/v1/sessions",
        id: "logIn",
        summary: "Log in: exchange a name (or email) and password for a new token",
        authenticated: false,
        request: Some("LogIn"),
        status: 201,
        response: Some("NewToken"),
        problems: &["bad-credentials"],
    },
    Operation {
        method: "get",
        path: "/v1/account",
        id: "whoAmI",
        summary: "The caller's account",
        authenticated: true,
        request: None,
        status: 200,
        response: Some("Account"),
        problems: &[],
    },
    Operation {
        method: "get",
        path: "/v1/tokens",
        id: "listTokens",
        summary: "The caller's tokens (never their secrets)",
        authenticated: true,
        request: None,
        status: 200,
        response: Some("TokenList"),
        problems: &[],
    },
    Operation {
        method: "post",
        path: "/v1/tokens",
        id: "createToken",
        summary: "Create a token; its secret is shown only in this answer",
        authenticated: true,
        request: Some("CreateToken"),
        status: 201,
        response: Some("NewToken"),
        problems: &["invalid-field"],
    },
    Operation {
        method: "delete",
        path: "/v1/tokens/{token}",
        id: "revokeToken",
        summary: "Revoke one of the caller's tokens",
        authenticated: true,
        request: None,
        status: 204,
        response: None,
        problems: &["not-found"],
    },
    Operation {
        method: "get",
        path: "/v1/teams",
        id: "listTeams",
        summary: "The caller's teams and roles",
        authenticated: true,
        request: None,
        status: 200,
        response: Some("TeamList"),
        problems: &[],
    },
    Operation {
        method: "post",
        path: "/v1/teams",
        id: "createTeam",
        summary: "Create a team owned by the caller",
        authenticated: true,
        request: Some("Name"),
        status: 201,
        response: Some("Team"),
        problems: &["invalid-field", "already-exists"],
    },
    Operation {
        method: "get",
        path: "/v1/teams/{team}",
        id: "showTeam",
        summary: "One team (members only)",
        authenticated: true,
        request: None,
        status: 200,
        response: Some("Team"),
        problems: &["not-found"],
    },
    Operation {
        method: "get",
        path: "/v1/teams/{team}/members",
        id: "listMembers",
        summary: "A team's members",
        authenticated: true,
        request: None,
        status: 200,
        response: Some("MemberList"),
        problems: &["not-found"],
    },
    Operation {
        method: "put",
        path: "/v1/teams/{team}/members/{account}",
        id: "setMember",
        summary: "Add a member or change their role (owners; account id or name)",
        authenticated: true,
        request: Some("RoleBody"),
        status: 200,
        response: Some("Member"),
        problems: &["not-found", "forbidden", "invalid-field", "last-owner"],
    },
    Operation {
        method: "delete",
        path: "/v1/teams/{team}/members/{account}",
        id: "removeMember",
        summary: "Remove a member (owners), or leave",
        authenticated: true,
        request: None,
        status: 204,
        response: None,
        problems: &["not-found", "forbidden", "invalid-field", "last-owner"],
    },
    Operation {
        method: "post",
        path: "/v1/teams/{team}/projects",
        id: "createProject",
        summary: "Create a project in a team (editors and owners)",
        authenticated: true,
        request: Some("Name"),
        status: 201,
        response: Some("Project"),
        problems: &["not-found", "forbidden", "invalid-field", "already-exists"],
    },
    Operation {
        method: "get",
        path: "/v1/projects",
        id: "listProjects",
        summary: "Every project the caller may see",
        authenticated: true,
        request: None,
        status: 200,
        response: Some("ProjectList"),
        problems: &[],
    },
    Operation {
        method: "get",
        path: "/v1/projects/{project}",
        id: "head",
        summary: "A project and its head (version and root)",
        authenticated: true,
        request: None,
        status: 200,
        response: Some("Project"),
        problems: &["not-found"],
    },
    Operation {
        method: "post",
        path: "/v1/projects/{project}/pull",
        id: "pull",
        summary: "Stream the objects needed to go from `have` to `want` (default: the head); head version and root in the Cairn-Version and Cairn-Root headers",
        authenticated: true,
        request: Some("Pull"),
        status: 200,
        response: Some("stream"),
        problems: &[
            "not-found",
            "unknown-version",
            "missing-object",
            "invalid-field",
        ],
    },
    Operation {
        method: "post",
        path: "/v1/projects/{project}/push",
        id: "push",
        summary: "Upload objects (children first) and commit `root` on `base_version`, in one request; idempotent by push_id",
        authenticated: true,
        request: Some("stream"),
        status: 200,
        response: Some("Committed"),
        problems: &[
            "not-found",
            "forbidden",
            "conflict",
            "hash-mismatch",
            "non-canonical-object",
            "bad-name",
            "case-collision",
            "object-too-large",
            "bad-frame",
            "kind-mismatch",
            "missing-object",
            "entry-mismatch",
            "bad-path",
            "bad-records",
            "truncated-stream",
            "bad-stream",
            "too-many-objects",
            "body-too-large",
            "push-id-reused",
            "invalid-field",
            "bad-query",
        ],
    },
    Operation {
        method: "post",
        path: "/v1/projects/{project}/missing",
        id: "missing",
        summary: "Which of these object ids the project does not have (resume, negotiation)",
        authenticated: true,
        request: Some("MissingQuery"),
        status: 200,
        response: Some("MissingAnswer"),
        problems: &["not-found", "invalid-field", "body-too-large"],
    },
    Operation {
        method: "post",
        path: "/v1/projects/{project}/objects",
        id: "upload",
        summary: "Upload objects without committing (resuming an interrupted push)",
        authenticated: true,
        request: Some("stream"),
        status: 200,
        response: Some("UploadAnswer"),
        problems: &[
            "not-found",
            "forbidden",
            "hash-mismatch",
            "non-canonical-object",
            "bad-name",
            "case-collision",
            "object-too-large",
            "missing-object",
            "entry-mismatch",
            "truncated-stream",
            "bad-stream",
            "body-too-large",
        ],
    },
    Operation {
        method: "post",
        path: "/v1/projects/{project}/commits",
        id: "commit",
        summary: "Commit a root whose objects are all stored; idempotent by push_id",
        authenticated: true,
        request: Some("Commit"),
        status: 200,
        response: Some("Committed"),
        problems: &[
            "not-found",
            "forbidden",
            "conflict",
            "missing-object",
            "entry-mismatch",
            "bad-path",
            "push-id-reused",
            "invalid-field",
        ],
    },
    Operation {
        method: "get",
        path: "/v1/projects/{project}/versions",
        id: "listVersions",
        summary: "History, newest first (query: before, limit)",
        authenticated: true,
        request: None,
        status: 200,
        response: Some("VersionList"),
        problems: &["not-found", "bad-query"],
    },
    Operation {
        method: "get",
        path: "/v1/projects/{project}/versions/{number}",
        id: "showVersion",
        summary: "One version",
        authenticated: true,
        request: None,
        status: 200,
        response: Some("Version"),
        problems: &["not-found", "unknown-version"],
    },
    Operation {
        method: "post",
        path: "/v1/projects/{project}/restore",
        id: "restore",
        summary: "Make an old version's tree the head, as a new version",
        authenticated: true,
        request: Some("Restore"),
        status: 200,
        response: Some("Committed"),
        problems: &[
            "not-found",
            "forbidden",
            "conflict",
            "push-id-reused",
            "unknown-version",
            "invalid-field",
        ],
    },
    Operation {
        method: "get",
        path: "/v1/projects/{project}/events",
        id: "events",
        summary: "Server-Sent Events: `head` events with the project's head, the current one first",
        authenticated: true,
        request: None,
        status: 200,
        response: Some("sse"),
        problems: &["not-found"],
    },
];

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn string() -> Value {
    json!({"type": "string"})
}

fn object(properties: &[(&str, Value)], required: &[&str]) -> Value {
    let properties: Map<String, Value> = properties
        .iter()
        .map(|(name, schema)| ((*name).to_owned(), schema.clone()))
        .collect();
    json!({"type": "object", "properties": properties, "required": required})
}

fn schemas() -> Value {
    let id = json!({"type": "string", "pattern": "^[0-9a-f]{32}$"});
    let object_id =
        json!({"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "BLAKE3 object id"});
    let time = json!({"type": "string", "format": "date-time"});
    let version = json!({"type": "integer", "minimum": 0});
    let role = json!({"type": "string", "enum": ["owner", "editor", "viewer"]});
    let list = |key: &str, item: &str| {
        object(
            &[(key, json!({"type": "array", "items": schema_ref(item)}))],
            &[key],
        )
    };
    json!({
        "Problem": object(&[
            ("type", string()), ("title", string()), ("status", json!({"type": "integer"})),
            ("detail", string()), ("code", string()),
        ], &["type", "title", "status", "detail", "code"]),
        "SignUp": object(&[("name", string()), ("email", string()), ("password", json!({"type": "string", "minLength": 8}))], &["name", "email", "password"]),
        "LogIn": object(&[("login", string()), ("password", string()), ("label", string())], &["login", "password"]),
        "CreateToken": object(&[("label", string())], &["label"]),
        "Account": object(&[("id", id.clone()), ("name", string()), ("email", string()), ("created", time.clone())], &["id", "name", "email", "created"]),
        "NewToken": object(&[("token", string()), ("token_id", id.clone()), ("label", string()), ("account", schema_ref("Account"))], &["token", "token_id", "label", "account"]),
        "Token": object(&[("id", id.clone()), ("label", string()), ("created", time.clone()), ("last_used", time.clone()), ("revoked", time.clone())], &["id", "label", "created"]),
        "TokenList": list("tokens", "Token"),
        "Name": object(&[("name", string())], &["name"]),
        "Team": object(&[("id", id.clone()), ("name", string()), ("role", role.clone()), ("created", time.clone())], &["id", "name", "role", "created"]),
        "TeamList": list("teams", "Team"),
        "RoleBody": object(&[("role", role.clone())], &["role"]),
        "Member": object(&[("account", object(&[("id", id.clone()), ("name", string())], &["id", "name"])), ("role", role.clone())], &["account", "role"]),
        "MemberList": list("members", "Member"),
        "Project": object(&[("id", id.clone()), ("team", id.clone()), ("name", string()), ("role", role), ("version", version.clone()), ("root", object_id.clone()), ("created", time.clone())], &["id", "team", "name", "role", "version", "root", "created"]),
        "ProjectList": list("projects", "Project"),
        "Pull": object(&[
            ("want", json!({"oneOf": [version.clone(), object_id.clone()], "description": "a version number or a root id; the head when absent"})),
            ("have", object_id.clone()),
            ("records", json!({"type": "boolean", "default": false, "description": "the client can rebuild dirs from change records applied to its listing of `have`: the server may then answer a diff of 1 to 256 changes with change records and the new non-dir objects instead of the dirs"})),
        ], &[]),
        "MissingQuery": object(&[("ids", json!({"type": "array", "items": object_id.clone(), "maxItems": sync_protocol::wire::MAX_MISSING_IDS}))], &["ids"]),
        "MissingAnswer": object(&[("missing", json!({"type": "array", "items": object_id.clone()}))], &["missing"]),
        "UploadAnswer": object(&[("received", json!({"type": "integer"}))], &["received"]),
        "Commit": object(&[("push_id", string()), ("base_version", version.clone()), ("root", object_id.clone()), ("message", string())], &["push_id", "base_version", "root"]),
        "Committed": object(&[("version", version.clone()), ("root", object_id.clone()), ("replayed", json!({"type": "boolean"}))], &["version", "root", "replayed"]),
        "Restore": object(&[("version", version.clone()), ("base_version", version.clone()), ("push_id", string()), ("message", string())], &["version", "base_version"]),
        "Version": object(&[("number", version.clone()), ("root", object_id), ("parent", version), ("author", object(&[("id", id), ("name", string())], &["id", "name"])), ("time", time), ("message", string()), ("push_id", string())], &["number", "root", "author", "time", "message"]),
        "VersionList": list("versions", "Version"),
    })
}

fn content(kind: &str) -> Value {
    match kind {
        "stream" => {
            json!({sync_protocol::wire::OBJECTS_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}})
        }
        "sse" => json!({"text/event-stream": {"schema": {"type": "string"}}}),
        name => json!({"application/json": {"schema": schema_ref(name)}}),
    }
}

/// A longer description for the operations whose summary does not say enough.
fn description(id: &str) -> Option<&'static str> {
    match id {
        "pull" => Some(
            "The answer is an object stream. With `records: true` it may hold change records (one per changed path, one-chunk files inline, maybe as a zstd delta against the client's old chunk) and the new non-dir objects instead of the dirs; the client rebuilds the dirs and checks them against Cairn-Root. Cairn-Objects counts frames and records.",
        ),
        "push" => Some(
            "The body is an object stream. It may hold change records in place of the new dirs: they are applied to the head, only when `base_version` is the head (otherwise the answer is `conflict` or the replayed outcome), and must give `root`, else `bad-records`.",
        ),
        "upload" => Some(
            "The body is an object stream of objects only; a change record answers `bad-stream`.",
        ),
        _ => None,
    }
}

fn operation(op: &Operation) -> Value {
    let mut responses = Map::new();
    let mut success = json!({"description": "Success"});
    if let Some(kind) = op.response {
        success["content"] = content(kind);
    }
    responses.insert(op.status.to_string(), success);
    let problem = json!({"description": "A problem document", "content": {
        sync_protocol::wire::PROBLEM_MEDIA_TYPE: {"schema": schema_ref("Problem")}
    }});
    responses.insert("default".into(), problem);
    let mut parameters = Vec::new();
    for name in ["team", "account", "token", "project", "number"] {
        if op.path.contains(&format!("{{{name}}}")) {
            parameters
                .push(json!({"name": name, "in": "path", "required": true, "schema": string()}));
        }
    }
    if op.id == "push" {
        for (name, required) in [
            ("push_id", true),
            ("base_version", true),
            ("root", true),
            ("message", false),
        ] {
            parameters.push(
                json!({"name": name, "in": "query", "required": required, "schema": string()}),
            );
        }
    }
    if op.id == "listVersions" {
        for name in ["before", "limit"] {
            parameters.push(json!({"name": name, "in": "query", "required": false, "schema": {"type": "integer"}}));
        }
    }
    let mut value = json!({
        "operationId": op.id,
        "summary": op.summary,
        "parameters": parameters,
        "responses": responses,
        "x-problem-codes": op.problems,
    });
    if let Some(text) = description(op.id) {
        value["description"] = json!(text);
    }
    if let Some(kind) = op.request {
        value["requestBody"] = json!({"required": kind != "Pull", "content": content(kind)});
    }
    if !op.authenticated {
        value["security"] = json!([]);
    }
    value
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.method] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Cairn sync API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JSON control messages and binary object streams. Errors are RFC 9457 problem documents whose `code` is stable.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}

/// The document as an answer (serialized once per process).
pub fn response() -> Response {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = BYTES.get_or_init(|| serde_json::to_vec_pretty(&document()).unwrap_or_default());
    let mut response = Response::new(bytes.clone().into());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_reference_resolves() {
        let document = document();
        let text = document.to_string();
        let schemas = document["components"]["schemas"].as_object().unwrap();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name: String = piece.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(schemas.contains_key(&name), "missing schema {name}");
        }
        assert_eq!(
            document["paths"]["/v1/projects/{project}/push"]["post"]["operationId"],
            "push"
        );
    }

    #[test]
    fn change_records_are_described() {
        let document = document();
        let records = &document["components"]["schemas"]["Pull"]["properties"]["records"];
        assert_eq!(records["type"], "boolean");
        assert_eq!(records["default"], false);
        let push = &document["paths"]["/v1/projects/{project}/push"]["post"];
        assert!(
            push["x-problem-codes"]
                .as_array()
                .unwrap()
                .contains(&json!("bad-records"))
        );
        assert!(
            push["description"]
                .as_str()
                .unwrap()
                .contains("change records")
        );
        // The document is served as JSON and must survive a round trip.
        let text = serde_json::to_string(&document).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), document);
    }
}
