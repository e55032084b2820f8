use std::collections::BTreeSet;

use serde_json::{Value, json};
use sync_protocol::wire::{self, Method, Operation, ProblemCode, ROUTES, routes::Body};

use super::*;

fn operation_of<'a>(document: &'a Value, route: &Route) -> &'a Value {
    &document["paths"][route.path][route.method.as_str().to_ascii_lowercase()]
}

/// The schema a `$ref` names, or the schema itself.
fn resolved<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => document.pointer(pointer).unwrap_or(&Value::Null),
        None => schema,
    }
}

fn json_schema<'a>(document: &'a Value, content: &'a Value) -> &'a Value {
    resolved(document, &content[wire::JSON_MEDIA_TYPE]["schema"])
}

/// Every `(path in the document, value)` under `value` whose key is `key`.
fn members_named<'a>(value: &'a Value, key: &str, at: String, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(object) => {
            for (name, member) in object {
                let here = format!("{at}/{name}");
                if name == key {
                    out.push((here.clone(), member));
                }
                members_named(member, key, here, out);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                members_named(item, key, format!("{at}/{index}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let document = document();
    let mut references = Vec::new();
    members_named(&document, "$ref", String::new(), &mut references);
    assert!(references.len() > 50);
    for (at, reference) in references {
        let name = reference
            .as_str()
            .and_then(|r| r.strip_prefix(SCHEMAS))
            .unwrap_or_else(|| panic!("{at}: {reference} is not a component schema"));
        assert!(
            document["components"]["schemas"].get(name).is_some(),
            "{at}: {reference} does not resolve"
        );
    }
}

#[test]
fn every_route_is_in_the_document_and_nothing_else() {
    let document = document();
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            let method = Method::parse(&method.to_ascii_uppercase()).unwrap();
            assert!(
                ROUTES.iter().any(|r| r.path == path && r.method == method),
                "{path} {method:?} is not in the route table"
            );
        }
    }
    assert_eq!(operations, ROUTES.len());
    for route in ROUTES {
        let operation = operation_of(&document, route);
        assert_eq!(operation["operationId"], route.id, "{}", route.path);
        assert_eq!(operation["summary"], route.summary);
        let success = &operation["responses"][route.status.to_string()];
        assert!(
            success.is_object(),
            "{} lacks its {}",
            route.id,
            route.status
        );
        assert_eq!(
            success["content"].is_object(),
            route.response != Body::Empty
        );
        assert_eq!(
            operation["requestBody"].is_object(),
            route.request != Body::Empty
        );
        assert_eq!(
            operation.get("security") == Some(&json!([])),
            !route.authenticated
        );
    }
}

#[test]
fn parameters_come_from_the_path_query_and_rebase_header() {
    let document = document();
    for route in ROUTES {
        let parameters = operation_of(&document, route)["parameters"]
            .as_array()
            .unwrap();
        let mut expected: Vec<(String, &str, bool)> = route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| (name.to_owned(), "path", true))
            .collect();
        expected.extend(
            route
                .query
                .iter()
                .map(|(n, r)| ((*n).to_owned(), "query", *r)),
        );
        if matches!(route.operation, Operation::Push | Operation::Commit) {
            expected.push((wire::REBASE_HEADER.to_owned(), "header", false));
        }
        let found: Vec<(String, &str, bool)> = parameters
            .iter()
            .map(|p| {
                let name = p["name"].as_str().unwrap().to_owned();
                (
                    name,
                    p["in"].as_str().unwrap(),
                    p["required"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(found, expected, "{}", route.id);
    }
    // The query types say the same as the route table, so their fields give the schemas.
    for route in ROUTES.iter().filter(|route| !route.query.is_empty()) {
        let name = query_type(route.operation).expect("a route with a query has a query type");
        let schema = &document["components"]["schemas"][name];
        let properties: BTreeSet<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            properties,
            route.query.iter().map(|(n, _)| *n).collect(),
            "{name}"
        );
        let expected: BTreeSet<&str> = route
            .query
            .iter()
            .filter(|(_, r)| *r)
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(required, expected, "{name}");
    }
    let push = operation_of(&document, Operation::Push.route());
    assert_eq!(
        push["parameters"][3]["schema"]["$ref"],
        format!("{SCHEMAS}ObjectId")
    );
    let history = operation_of(&document, Operation::ListVersions.route());
    assert_eq!(history["parameters"][1]["schema"]["type"], "integer");
}

#[test]
fn every_listed_problem_code_is_a_problem_code() {
    let document = document();
    let mut lists = Vec::new();
    members_named(&document, "x-problem-codes", String::new(), &mut lists);
    assert_eq!(lists.len(), ROUTES.len());
    for (at, list) in lists {
        for code in list.as_array().unwrap() {
            let code = code.as_str().unwrap();
            assert!(ProblemCode::parse(code).is_some(), "{at}: {code}");
        }
    }
    let catalog = document["x-problems"].as_object().unwrap();
    assert_eq!(catalog.len(), ProblemCode::ALL.len());
    for (code, entry) in catalog {
        let known = ProblemCode::parse(code).unwrap();
        assert_eq!(entry["status"], known.status());
        assert_eq!(entry["title"], known.title());
    }
    // Each problem status of an operation names its codes, which have that status.
    for route in ROUTES {
        let operation = operation_of(&document, route);
        assert_eq!(operation["x-problem-codes"], json!(route.problem_codes()));
        for code in route.problem_codes() {
            let answer = &operation["responses"][code.status().to_string()];
            let text = answer["description"].as_str().unwrap();
            assert!(text.contains(&format!("`{code}`")), "{}: {code}", route.id);
        }
    }
}

#[test]
fn request_bodies_refuse_unknown_members() {
    let document = document();
    let mut checked = 0;
    for route in ROUTES {
        let body = &operation_of(&document, route)["requestBody"];
        if let Body::Json(name) = route.request {
            let schema = json_schema(&document, &body["content"]);
            assert_eq!(schema["additionalProperties"], false, "{name}");
            checked += 1;
        }
        // An empty JSON body counts as `{}`: only the pull's may be left out.
        if route.request != Body::Empty {
            assert_eq!(
                body["required"],
                route.operation != Operation::Pull,
                "{}",
                route.id
            );
        }
    }
    assert!(checked > 5);
    for name in ["PushQuery", "HistoryQuery"] {
        assert_eq!(
            document["components"]["schemas"][name]["additionalProperties"],
            false
        );
    }
}

#[test]
fn body_names_are_schema_names() {
    // A name of the route table is the schema schemars generates for that wire type.
    let mut generator = SchemaSettings::draft2020_12()
        .with(|settings| settings.definitions_path = SCHEMAS.into())
        .into_generator();
    let mut names: Vec<&str> = ROUTES
        .iter()
        .flat_map(|route| [route.request, route.response])
        .filter_map(|body| match body {
            Body::Json(name) => Some(name),
            _ => None,
        })
        .filter(|name| *name != OPENAPI_DOCUMENT)
        .collect();
    names.extend(["Problem", "HeadEvent", "PushQuery", "HistoryQuery"]);
    for name in names {
        let reference = wire_schema(&mut generator, name);
        assert_eq!(reference, Some(reference_value(name)), "{name}");
    }
}

pub(super) fn reference_value(name: &str) -> Value {
    json!({"$ref": format!("{SCHEMAS}{name}")})
}

#[test]
fn types_read_and_written_have_one_schema() {
    let mut schemas = Schemas::new();
    for route in ROUTES {
        if let Body::Json(name) = route.request {
            schemas.request(name);
        }
        if let Body::Json(name) = route.response {
            schemas.answer(name);
        }
    }
    schemas.answer("Problem");
    schemas.answer("HeadEvent");
    let requests = schemas.requests.definitions().clone();
    let answers = schemas.answers.definitions();
    let mut shared = 0;
    for (name, schema) in &requests {
        if let Some(other) = answers.get(name) {
            assert_eq!(schema, other, "{name} differs between requests and answers");
            shared += 1;
        }
    }
    assert!(shared >= 2, "ObjectId and Role are both read and written");
}

#[test]
fn the_server_rules_are_in_the_schemas() {
    let document = document();
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["SignUp"]["properties"]["password"]["minLength"],
        crate::auth::MIN_PASSWORD_LEN
    );
    assert_eq!(
        schemas["MissingQuery"]["properties"]["ids"]["maxItems"],
        wire::MAX_MISSING_IDS
    );
    let records = &schemas["PullRequest"]["properties"]["records"];
    assert_eq!(records["type"], "boolean");
    assert_eq!(records["default"], false);
    assert!(
        records["description"]
            .as_str()
            .unwrap()
            .contains("256 changes")
    );
    // Descriptions are prose, not rustdoc.
    let text = document.to_string();
    assert!(
        !text.contains("[`"),
        "a rustdoc link leaked into the document"
    );
    // The push id pattern is `is_valid_push_id`.
    let pattern = regex_lite::Regex::new(wire::PUSH_ID_PATTERN).unwrap();
    let long = "a".repeat(wire::MAX_PUSH_ID_LEN);
    let too_long = "a".repeat(wire::MAX_PUSH_ID_LEN + 1);
    for sample in ["", "a", "A-b_9", "a b", "ä", "a/b", "a.b", &long, &too_long] {
        assert_eq!(
            pattern.is_match(sample),
            wire::is_valid_push_id(sample),
            "{sample:?}"
        );
    }
    let token = regex_lite::Regex::new(wire::TOKEN_PATTERN).unwrap();
    assert!(token.is_match(&crate::auth::new_token_secret()));
}

#[test]
fn text_limits_are_the_servers() {
    use crate::catalog::limits;
    let document = document();
    let schemas = &document["components"]["schemas"];
    let property = |schema: &str, name: &str| schemas[schema]["properties"][name].clone();
    for (schema, name, pattern, max) in [
        (
            "SignUp",
            "name",
            wire::ACCOUNT_NAME_PATTERN,
            limits::MAX_NAME_LEN,
        ),
        (
            "SignUp",
            "email",
            wire::EMAIL_PATTERN,
            limits::MAX_EMAIL_LEN,
        ),
        ("NameBody", "name", wire::TEXT_PATTERN, limits::MAX_NAME_LEN),
        (
            "CreateToken",
            "label",
            wire::TEXT_PATTERN,
            limits::MAX_TOKEN_LABEL_LEN,
        ),
        (
            "LogIn",
            "label",
            wire::TEXT_PATTERN,
            limits::MAX_TOKEN_LABEL_LEN,
        ),
        (
            "Restore",
            "message",
            wire::MESSAGE_PATTERN,
            limits::MAX_MESSAGE_LEN,
        ),
        (
            "Commit",
            "message",
            wire::MESSAGE_PATTERN,
            limits::MAX_MESSAGE_LEN,
        ),
        (
            "PushQuery",
            "message",
            wire::MESSAGE_PATTERN,
            limits::MAX_MESSAGE_LEN,
        ),
    ] {
        let property = property(schema, name);
        assert_eq!(property["pattern"], pattern, "{schema}.{name}");
        assert_eq!(property["maxLength"], max, "{schema}.{name}");
    }
    let password = property("SignUp", "password");
    assert_eq!(password["minLength"], crate::auth::MIN_PASSWORD_LEN);
    assert_eq!(password["maxLength"], crate::auth::MAX_PASSWORD_LEN);
    // The push query's `message` is a parameter with the same rule.
    let push = operation_of(&document, Operation::Push.route());
    let message = push["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|parameter| parameter["name"] == "message")
        .unwrap();
    assert_eq!(message["schema"]["pattern"], wire::MESSAGE_PATTERN);
}

/// Names and emails at the edges of the server's checks.
const SAMPLES: &[&str] = &[
    "",
    " ",
    "a",
    "ada",
    "Ada.Lovelace-1_x",
    "_ada",
    ".ada",
    "-ada",
    "9lives",
    "a b",
    "a@b",
    "a@b.c",
    "@b.c",
    "a@bc",
    "a@b.c@d",
    "a b@c.d",
    "a@b.c ",
    "a\u{3000}@b.c",
    "a\u{feff}@b.c",
    "a\u{0}@b.c",
    "a\u{85}@b.c",
    "ä@ö.ü",
    "名前",
    "名前@例え.jp",
    "Ωμέγα",
    "x\u{301}",
    "\u{301}x",
    "٣x",
    "Ⅻ",
    "𝔞𝔟",
    "🦀",
    "a🦀",
    "a\u{200b}",
    "a\u{0}",
    "a\t",
    "ǅ",
];

#[test]
fn account_names_and_emails_match_the_servers_checks() {
    use crate::api::accounts::{check_account_name, check_email};
    for sample in SAMPLES {
        let name = schema_check::pattern_matches(wire::ACCOUNT_NAME_PATTERN, sample).unwrap();
        assert_eq!(name, check_account_name(sample).is_ok(), "name {sample:?}");
        // The catalog stores no control character, in an email either.
        let stored = !sample.chars().any(char::is_control);
        let email = schema_check::pattern_matches(wire::EMAIL_PATTERN, sample).unwrap();
        assert_eq!(
            email,
            check_email(sample).is_ok() && stored,
            "email {sample:?}"
        );
    }
}

#[test]
fn text_patterns_match_the_catalogs_rules() {
    // The catalog's rule for names and labels (validate::text, less the length): not blank
    // once trimmed, no control character; for messages: no NUL.
    let text = |value: &str| !value.trim().is_empty() && !value.chars().any(char::is_control);
    let mut samples: Vec<String> = SAMPLES.iter().map(|sample| (*sample).to_owned()).collect();
    // Every white space and control character, alone and beside a letter.
    for code in (0..0x3001).chain([0xfeff]) {
        let Some(c) = char::from_u32(code) else {
            continue;
        };
        if c.is_whitespace() || c.is_control() || code < 0x100 {
            samples.extend([c.to_string(), format!("a{c}"), format!("{c}a{c}")]);
        }
    }
    let pattern = regex_lite::Regex::new(wire::TEXT_PATTERN).unwrap();
    let message = regex_lite::Regex::new(wire::MESSAGE_PATTERN).unwrap();
    for sample in &samples {
        assert_eq!(pattern.is_match(sample), text(sample), "{sample:?}");
        assert_eq!(
            message.is_match(sample),
            !sample.contains('\0'),
            "{sample:?}"
        );
        if let Err(error) = crate::catalog::validate_message(sample) {
            assert!(!message.is_match(sample), "{sample:?}: {error}");
        }
    }
}

#[test]
fn integers_have_their_bounds() {
    /// Every object under `value` with a `format` member.
    fn formatted<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
        match value {
            Value::Object(object) => {
                if object.contains_key("format") {
                    out.push(value);
                }
                object.values().for_each(|member| formatted(member, out));
            }
            Value::Array(items) => items.iter().for_each(|item| formatted(item, out)),
            _ => {}
        }
    }
    let document = document();
    let mut schemas = Vec::new();
    formatted(&document, &mut schemas);
    let mut bounded = 0;
    for schema in schemas {
        let maximum = match schema["format"].as_str() {
            Some("uint16") => u64::from(u16::MAX),
            Some("uint32") => u64::from(u32::MAX),
            Some("uint64" | "uint") => u64::MAX,
            _ => continue,
        };
        assert_eq!(schema["minimum"], 0, "{schema}");
        assert_eq!(schema["maximum"], maximum, "{schema}");
        bounded += 1;
    }
    assert!(bounded > 10, "{bounded}");
    let history = operation_of(&document, Operation::ListVersions.route());
    assert_eq!(history["parameters"][1]["schema"]["maximum"], u64::MAX);
    assert_eq!(history["parameters"][2]["schema"]["maximum"], u32::MAX);
}

#[test]
fn event_streams_describe_their_events() {
    let document = document();
    let events = operation_of(&document, Operation::Events.route());
    let schema = &events["responses"]["200"]["content"][wire::EVENT_STREAM_MEDIA_TYPE]["schema"];
    assert_eq!(schema["properties"]["event"]["const"], "head");
    let data = &schema["properties"]["data"];
    assert_eq!(data["contentMediaType"], wire::JSON_MEDIA_TYPE);
    assert_eq!(
        data["contentSchema"],
        super::tests::reference_value("HeadEvent")
    );
    assert_eq!(schema["required"], json!(["event", "id", "data"]));
}

#[test]
fn the_long_descriptions_stay() {
    let document = document();
    for (operation, words) in [
        (Operation::Pull, "change records"),
        (Operation::Push, "bad-records"),
        (Operation::Upload, "bad-stream"),
    ] {
        let text = operation_of(&document, operation.route())["description"].as_str();
        assert!(text.unwrap().contains(words), "{operation:?}");
    }
    let scheme = &document["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(document["security"], json!([{"bearer": []}]));
}

#[test]
fn the_answer_is_the_document() {
    let response = response();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        wire::JSON_MEDIA_TYPE
    );
    let text = serde_json::to_string(&document()).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), document());
}
