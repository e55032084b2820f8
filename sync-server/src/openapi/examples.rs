//! Real values of every JSON body, checked against the document's schemas: answers as the
//! server builds them (catalog rows through the same views, problems from the same
//! constructors), requests a client may send, and requests the schemas must refuse.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Value, json};
use sync_protocol::wire::{self, Method, ROUTES, routes::Body};

use super::document;
use super::schema_check::check;
use super::tests::reference_value;
use crate::api::answer::rfc3339;
use crate::api::views;
use crate::catalog::{self, AccountId, ProjectId, PushId, Role, TeamId, Timestamp, TokenId};

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

fn example_rows() -> (
    catalog::Account,
    catalog::Team,
    catalog::Project,
    Vec<catalog::Version>,
) {
    let now = Timestamp::now();
    let account = catalog::Account {
        id: AccountId::random(),
        name: "ada".into(),
        email: "ada@example.com".into(),
        created: now,
    };
    let team = catalog::Team {
        id: TeamId::random(),
        name: "apis".into(),
        created: now,
    };
    let project = catalog::Project {
        id: ProjectId::random(),
        team: team.id,
        name: "petstore".into(),
        head_version: 1,
        head_root: sync_protocol::chunk_id(b"root"),
        created: now,
    };
    let first = catalog::Version {
        project: project.id,
        number: 0,
        root: catalog::empty_root(),
        parent: None,
        author: account.id,
        author_name: account.name.clone(),
        time: now,
        message: catalog::PROJECT_CREATED_MESSAGE.into(),
        push_id: None,
    };
    let second = catalog::Version {
        number: 1,
        root: project.head_root,
        parent: Some(0),
        push_id: Some(PushId::random()),
        message: "First version".into(),
        ..first.clone()
    };
    (account, team, project, vec![second, first])
}

/// A real answer of each JSON type, as the server writes it.
fn answer_examples(name: &str) -> Vec<Value> {
    let (account, team, project, versions) = example_rows();
    let token = catalog::Token {
        id: TokenId::random(),
        account: account.id,
        label: "laptop".into(),
        created: Timestamp::now(),
        last_used: Some(Timestamp::from_unix_millis(1_795_701_602_123)),
        revoked: None,
    };
    let id = sync_protocol::chunk_id(b"x");
    match name {
        "Account" => vec![to_json(&views::account(&account))],
        "NewToken" => vec![to_json(&wire::NewToken {
            token: crate::auth::new_token_secret(),
            token_id: token.id.to_string(),
            label: token.label.clone(),
            account: views::account(&account),
        })],
        "TokenList" => {
            let unused = catalog::Token {
                last_used: None,
                revoked: Some(Timestamp::now()),
                ..token.clone()
            };
            vec![to_json(&wire::TokenList {
                tokens: vec![views::token(&token), views::token(&unused)],
            })]
        }
        "Token" => {
            let unused = catalog::Token {
                last_used: None,
                revoked: Some(Timestamp::now()),
                ..token.clone()
            };
            vec![
                to_json(&views::token(&token)),
                to_json(&views::token(&unused)),
            ]
        }
        "Team" => vec![to_json(&views::team(&team, Role::Owner))],
        "TeamList" => vec![to_json(&wire::TeamList {
            teams: vec![views::team(&team, Role::Viewer)],
        })],
        "Member" => vec![to_json(&views::member(&catalog::Member {
            account: account.clone(),
            role: Role::Editor,
        }))],
        "MemberList" => vec![to_json(&wire::MemberList {
            members: vec![views::member(&catalog::Member {
                account,
                role: Role::Owner,
            })],
        })],
        "Project" => vec![to_json(&views::project(&project, Role::Editor))],
        "ProjectList" => vec![to_json(&wire::ProjectList {
            projects: vec![views::project(&project, Role::Viewer)],
        })],
        "Version" => versions
            .iter()
            .map(|v| to_json(&views::version(v)))
            .collect(),
        "VersionList" => vec![to_json(&wire::VersionList {
            versions: versions.iter().map(views::version).collect(),
        })],
        "Committed" => vec![
            to_json(&wire::Committed {
                version: 2,
                root: id,
                replayed: true,
                rebased: false,
            }),
            to_json(&wire::Committed {
                version: 5,
                root: id,
                replayed: false,
                rebased: true,
            }),
        ],
        "MissingAnswer" => vec![to_json(&wire::MissingAnswer { missing: vec![id] })],
        "UploadAnswer" => vec![to_json(&wire::UploadAnswer { received: 5 })],
        "HeadEvent" => vec![to_json(&crate::events::head_changed(project.id, 3, id))],
        "OpenApiDocument" => vec![document()],
        "Problem" => problem_examples(),
        _ => Vec::new(),
    }
}

/// Problem documents with every extension member, from the server's own constructors.
fn problem_examples() -> Vec<Value> {
    use crate::problem::Problem;
    use sync_protocol::CompressError;
    use sync_protocol::stream::StreamError;
    let id = sync_protocol::chunk_id(b"x");
    let head = wire::Head {
        version: 1,
        root: id,
    };
    let frame = StreamError::BadFrame {
        index: 2,
        offset: 77,
        kind: sync_protocol::ObjectKind::Chunk,
        id,
        error: CompressError::IdMismatch {
            expected: id,
            actual: sync_protocol::chunk_id(b"y"),
        },
    };
    let problems = [
        Problem::not_found(),
        Problem::conflict(head),
        Problem::missing_objects(&[id, id], "send them first"),
        Problem::invalid_field("push_id", "too long"),
        Problem::body_too_large(65_536),
        Problem::method_not_allowed("PATCH", "/v1/teams", &[Method::Get, Method::Post]),
        Problem::from(frame),
        Problem::internal("test"),
    ];
    problems
        .iter()
        .map(|problem| serde_json::from_slice(&problem.body()).unwrap())
        .collect()
}

/// Request bodies a client may send, and bodies the server refuses before any handler runs.
fn request_examples(name: &str) -> (Vec<Value>, Vec<Value>) {
    let id = sync_protocol::chunk_id(b"x").to_string();
    match name {
        "SignUp" => (
            vec![to_json(&wire::SignUp {
                name: "ada".into(),
                email: "ada@example.com".into(),
                password: "correct horse".into(),
            })],
            vec![
                json!({"name": "ada", "email": "a@b.c", "password": "short"}),
                json!({"name": "ada", "email": "a@b.c", "password": "long enough", "admin": true}),
            ],
        ),
        "LogIn" => (
            vec![
                json!({"login": "ada", "password": "x"}),
                json!({"login": "ada", "password": "x", "label": "laptop"}),
            ],
            vec![json!({"login": "ada"})],
        ),
        "CreateToken" => (vec![json!({"label": "ci"})], vec![json!({})]),
        "NameBody" => (vec![json!({"name": "apis"})], vec![json!({"name": 3})]),
        "RoleBody" => (
            vec![json!({"role": "viewer"})],
            vec![json!({"role": "admin"})],
        ),
        "Restore" => (
            vec![
                json!({"version": 1, "base_version": 2}),
                json!({"version": 1, "base_version": 2, "push_id": "restore-1", "message": "m"}),
            ],
            vec![
                json!({"version": -1, "base_version": 2}),
                json!({"version": 1, "base_version": 2, "push_id": "a b"}),
            ],
        ),
        "PullRequest" => (
            vec![
                json!({}),
                json!({"want": 2, "have": id, "records": true}),
                json!({"want": id}),
            ],
            vec![
                json!({"want": "head"}),
                json!({"have": "AB"}),
                json!({"wants": 1}),
            ],
        ),
        "Commit" => (
            vec![json!({"push_id": "commit-1", "base_version": 3, "root": id})],
            vec![json!({"push_id": "commit-1", "base_version": 3, "root": "x"})],
        ),
        "MissingQuery" => (
            vec![json!({"ids": [id]}), json!({"ids": []})],
            vec![
                json!({"ids": vec![id.clone(); wire::MAX_MISSING_IDS + 1]}),
                json!({"ids": ["nope"]}),
            ],
        ),
        _ => (Vec::new(), Vec::new()),
    }
}

#[test]
fn real_answers_fit_their_schemas() {
    let document = document();
    let mut names: BTreeSet<&str> = ROUTES
        .iter()
        .filter_map(|route| match route.response {
            Body::Json(name) => Some(name),
            _ => None,
        })
        .collect();
    names.extend(["Problem", "HeadEvent"]);
    for name in names {
        let examples = answer_examples(name);
        assert!(!examples.is_empty(), "no example of {name}");
        let schema = reference_value(name);
        for example in examples {
            if let Err(error) = check(&document, &schema, &example) {
                panic!("{name}: {error}\n{example:#}");
            }
        }
    }
}

#[test]
fn request_schemas_take_what_the_server_takes() {
    let document = document();
    for route in ROUTES {
        let Body::Json(name) = route.request else {
            continue;
        };
        let (good, bad) = request_examples(name);
        assert!(!good.is_empty() && !bad.is_empty(), "no examples of {name}");
        let schema = reference_value(name);
        for example in good {
            assert_eq!(
                check(&document, &schema, &example),
                Ok(()),
                "{name}: {example}"
            );
            assert!(
                serde_reads(name, &example),
                "{name}: serde refuses {example}"
            );
        }
        for example in bad {
            assert!(
                check(&document, &schema, &example).is_err(),
                "{name}: {example}"
            );
        }
    }
}

/// Whether serde reads `value` as the request type `name`.
fn serde_reads(name: &str, value: &Value) -> bool {
    macro_rules! reads {
        ($($type:ident),*) => {
            match name {
                $(stringify!($type) => serde_json::from_value::<wire::$type>(value.clone()).is_ok(),)*
                _ => false,
            }
        };
    }
    reads!(
        SignUp,
        LogIn,
        CreateToken,
        NameBody,
        RoleBody,
        Restore,
        PullRequest,
        Commit,
        MissingQuery
    )
}

/// Whether serde reads `value` as the answer type `name`.
fn serde_reads_answer(name: &str, value: &Value) -> bool {
    macro_rules! reads {
        ($($type:ident),*) => {
            match name {
                $(stringify!($type) => serde_json::from_value::<wire::$type>(value.clone()).is_ok(),)*
                other => panic!("{other} is not an answer type here"),
            }
        };
    }
    reads!(
        Account,
        NewToken,
        Token,
        TokenList,
        Team,
        TeamList,
        Member,
        MemberList,
        Project,
        ProjectList,
        Version,
        VersionList,
        Committed,
        MissingAnswer,
        UploadAnswer,
        HeadEvent,
        Problem
    )
}

/// Each member of `example` in turn, and each member `schema` declares, set to `null`: the
/// schema must allow it exactly when serde reads it, as it does an `Option`.
fn check_nulls(
    document: &Value,
    name: &str,
    example: &Value,
    reads: impl Fn(&Value) -> bool,
) -> usize {
    let schema = reference_value(name);
    let definition = &document["components"]["schemas"][name];
    let mut members: BTreeSet<String> = example
        .as_object()
        .map(|object| object.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(properties) = definition["properties"].as_object() {
        members.extend(properties.keys().cloned());
    }
    let mut nullable = 0;
    for member in members {
        let mut changed = example.clone();
        changed[member.as_str()] = Value::Null;
        let serde = reads(&changed);
        let documented = check(document, &schema, &changed).is_ok();
        assert_eq!(
            documented,
            serde,
            "{name}.{member}: the document {} null, serde {} it",
            if documented { "allows" } else { "refuses" },
            if serde { "reads" } else { "refuses" },
        );
        nullable += usize::from(serde);
    }
    nullable
}

#[test]
fn null_is_allowed_exactly_where_serde_reads_it() {
    let document = document();
    let mut nullable = 0;
    let mut names: BTreeSet<&str> = ROUTES
        .iter()
        .filter_map(|route| match route.response {
            Body::Json(name) if name != "OpenApiDocument" => Some(name),
            _ => None,
        })
        .collect();
    // The types inside lists, whose `Option`s the lists' examples hold.
    names.extend(["Problem", "HeadEvent", "Token"]);
    for name in names {
        for example in answer_examples(name) {
            nullable += check_nulls(&document, name, &example, |value| {
                serde_reads_answer(name, value)
            });
        }
    }
    for route in ROUTES {
        let Body::Json(name) = route.request else {
            continue;
        };
        for example in request_examples(name).0 {
            nullable += check_nulls(&document, name, &example, |value| serde_reads(name, value));
        }
    }
    // Among them Token.last_used and revoked, Version.parent and push_id.
    assert!(nullable > 10, "{nullable}");
}

#[test]
fn times_are_rfc_3339() {
    let document = json!({});
    let schema = json!({"type": "string", "format": "date-time"});
    let time = rfc3339(Timestamp::from_unix_millis(1_795_701_602_123));
    assert_eq!(check(&document, &schema, &json!(time)), Ok(()));
    assert!(check(&document, &schema, &json!("yesterday")).is_err());
}
