//! A session of the `cairn` client built before the push acceptor and pull responder (commit
//! 23836e4), replayed against today's server: the wire format must not have changed, so every
//! recorded request must get the recorded answer.
//!
//! The transcript, `old_client/NNN.request` and `NNN.response`, holds each exchange as raw
//! bytes, as `scripts/record-old-client.sh` recorded them between the old `cairn` (and curl,
//! for sign-up and the team) and the old `sync-server` in embedded mode. Each request is sent
//! on its own connection, byte for byte, except for what differs per run:
//!
//! - the `Host` header (the server's port);
//! - the ids the server chooses (accounts, tokens, teams, projects) and the token secret: each
//!   old value is mapped to the new one the first time a `201 Created` answer shows it (sign-up,
//!   log-in, team, project), and replaced wherever it appears in a later request's head or JSON
//!   body (same length, so `Content-Length` still holds). Push ids are chosen by the client and
//!   object ids by the content, so they stay as recorded.
//!
//! Each answer is checked against the recorded one:
//!
//! - the status, and the headers `content-type`, `cache-control`, `www-authenticate`, `allow`
//!   and every `cairn-*` (not `date`, `x-request-id` or `content-length`, which vary per run or
//!   with the normalised members below);
//! - object streams (pull answers) and every other non-JSON body byte for byte;
//! - JSON bodies, problem documents included, equal as values and in the order of every object's
//!   members, after the recorded ids are mapped as above and after every RFC 3339 string (account
//!   and project `created`, version `time`) is reduced to its shape (each digit as `0`), since
//!   the clock differs per run. A string the map does not know must be equal as recorded.
//!
//! No problem-document member is exempt: `title` and `detail` are compared too (see
//! [`PROBLEM_MEMBERS_EXEMPT`]). One object's member order is not compared, a difference found
//! by this test ([`MEMBER_ORDER_EXEMPT`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use sync_protocol::ObjectKind;
use sync_protocol::stream::{Item, StreamDecoder};

use crate::http::support::TestServer;

mod raw;

use raw::{Message, send};

/// Problem-document members left out of the comparison, with the reason. None so far: the old
/// client shows `detail` to people, and the new server still words every one the same.
const PROBLEM_MEMBERS_EXEMPT: &[&str] = &[];

/// JSON objects whose member order is not compared, by path in the answer (as
/// [`member_order`] writes it), with the reason. Their values still are.
const MEMBER_ORDER_EXEMPT: &[(&str, &str)] = &[(
    "head",
    "a real difference, reported: the old server wrote a 409 conflict's `head` as \
     {\"root\", \"version\"}, the new one writes {\"version\", \"root\"}, the order the API page \
     shows. JSON objects are unordered and the old client reads `head` by member name, so it \
     syncs as before; the bytes of the document differ.",
)];

http_test!(old_client_session_gets_the_recorded_answers, replay);

async fn replay(server: &TestServer) {
    let exchanges = transcript();
    let host = server.base.trim_start_matches("http://").to_owned();
    let mut ids = IdMap::default();
    let mut differences = Vec::new();
    for exchange in &exchanges {
        let request = ids.request(&exchange.request, &host);
        let answer = send(&host, &request).await;
        let actual = Message::parse(&answer, Some(&exchange.method)).unwrap_or_else(|error| {
            panic!("{}: the answer does not parse: {error}", exchange.name)
        });
        let found = compare(exchange, &actual, &mut ids);
        differences.extend(
            found
                .into_iter()
                .map(|difference| format!("{}: {difference}", exchange.name)),
        );
    }
    assert!(
        differences.is_empty(),
        "{} differences from the {} recorded answers ({:?} mode):\n{}",
        differences.len(),
        exchanges.len(),
        server.mode,
        differences.join("\n")
    );
}

/// The comparison itself can fail: one flipped byte of a recorded pull answer, or another
/// version number in a JSON answer, is a difference.
#[test]
fn a_changed_answer_is_a_difference() {
    let exchanges = transcript();
    let pull = exchanges
        .iter()
        .find(|exchange| exchange.path.ends_with("/pull") && exchange.response.body.len() > 45)
        .expect("a pull answer with objects");
    let mut flipped = pull.response.clone();
    let last = flipped.body.len() - 1;
    flipped.body[last / 2] ^= 1;
    let mut ids = IdMap::identity(&exchanges);
    assert!(compare(pull, &pull.response, &mut ids).is_empty());
    let found = compare(pull, &flipped, &mut ids);
    assert!(
        found.iter().any(|found| found.contains("byte")),
        "{found:?}"
    );

    let push = exchanges
        .iter()
        .find(|exchange| exchange.path.contains("/push") && exchange.response.status == 200)
        .expect("a committed push");
    let mut other = push.response.clone();
    let text = String::from_utf8(other.body).unwrap();
    other.body = text
        .replacen("\"version\":", "\"version\":1", 1)
        .into_bytes();
    let found = compare(push, &other, &mut ids);
    assert!(!found.is_empty(), "another version number went unnoticed");
}

/// The transcript covers the routes and the forms of push and pull an old client uses: a
/// re-recording that lost part of the session fails here.
#[test]
fn the_transcript_covers_the_session() {
    let exchanges = transcript();
    let routes: Vec<String> = exchanges.iter().map(Exchange::route).collect();
    for expected in [
        "201 POST /v1/accounts",
        "401 POST /v1/sessions",
        "201 POST /v1/sessions",
        "201 POST /v1/teams",
        "200 GET /v1/teams",
        "201 POST /v1/teams/{team}/projects",
        "200 GET /v1/projects",
        "200 GET /v1/projects/{project}",
        "200 POST /v1/projects/{project}/push",
        "409 POST /v1/projects/{project}/push",
        "200 POST /v1/projects/{project}/pull",
        "200 POST /v1/projects/{project}/missing",
        "200 POST /v1/projects/{project}/objects",
        "200 POST /v1/projects/{project}/commits",
        "200 GET /v1/projects/{project}/versions",
        "200 POST /v1/projects/{project}/restore",
    ] {
        assert!(
            routes.iter().any(|route| route == expected),
            "no {expected}"
        );
    }
    // (objects, records, file objects) of each push body and pull answer.
    let streams = |suffix: &str, body: fn(&Exchange) -> &[u8]| -> Vec<(usize, usize, usize)> {
        exchanges
            .iter()
            .filter(|exchange| exchange.path.ends_with(suffix))
            .map(|exchange| stream_items(body(exchange)))
            .collect()
    };
    let pushes = streams("/push", |exchange| &exchange.request.body);
    let pulls = streams("/pull", |exchange| &exchange.response.body);
    assert!(
        matches!(pushes.first(), Some(&(_, 0, files)) if files > 0),
        "the first push is not objects only with a file object: {pushes:?}"
    );
    assert!(
        pushes[1..].iter().all(|&(_, records, _)| records > 0),
        "{pushes:?}"
    );
    assert!(
        pulls.iter().any(|&(_, records, _)| records > 0),
        "{pulls:?}"
    );
    assert!(pulls.iter().any(|&(_, _, files)| files > 0), "{pulls:?}");
    assert!(
        pulls
            .iter()
            .any(|&(objects, records, _)| objects + records == 0),
        "{pulls:?}"
    );
}

/// (object frames, change records, file objects) of an object stream.
fn stream_items(stream: &[u8]) -> (usize, usize, usize) {
    let mut decoder = StreamDecoder::new();
    decoder.feed(stream);
    let mut counts = (0, 0, 0);
    while let Some(item) = decoder.next_item().expect("a valid object stream") {
        match item {
            Item::Object(frame) => {
                counts.0 += 1;
                counts.2 += usize::from(frame.kind == ObjectKind::File);
            }
            Item::Record(_) => counts.1 += 1,
        }
    }
    decoder.finish().expect("a whole object stream");
    counts
}

/// One recorded exchange.
#[derive(Debug)]
struct Exchange {
    /// `NNN METHOD PATH`, for messages.
    name: String,
    method: String,
    /// The request target without the query.
    path: String,
    /// The raw request, as recorded.
    request: Message,
    /// The recorded answer, parsed.
    response: Message,
}

impl Exchange {
    /// `STATUS METHOD TEMPLATE`, with the server's ids as placeholders.
    fn route(&self) -> String {
        let segments: Vec<&str> = self.path.split('/').collect();
        let template: Vec<&str> = segments
            .iter()
            .enumerate()
            .map(|(index, segment)| {
                let after = index.checked_sub(1).map(|before| segments[before]);
                match after {
                    Some("teams") if is_server_id(segment) => "{team}",
                    Some("projects") if is_server_id(segment) => "{project}",
                    _ => segment,
                }
            })
            .collect();
        format!(
            "{} {} {}",
            self.response.status,
            self.method,
            template.join("/")
        )
    }
}

fn transcript_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/http/old_client")
}

/// Every exchange of the transcript, in order.
fn transcript() -> Vec<Exchange> {
    let dir = transcript_dir();
    let mut numbers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".request").map(str::to_owned)
        })
        .collect();
    numbers.sort();
    assert!(!numbers.is_empty(), "no exchanges in {}", dir.display());
    numbers
        .iter()
        .map(|number| {
            let read = |suffix: &str| {
                let path = dir.join(format!("{number}.{suffix}"));
                std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            };
            let request = Message::parse(&read("request"), None)
                .unwrap_or_else(|error| panic!("{number}.request: {error}"));
            let (method, target) = request.request_line();
            let response = Message::parse(&read("response"), Some(&method))
                .unwrap_or_else(|error| panic!("{number}.response: {error}"));
            let path = target.split('?').next().unwrap_or_default().to_owned();
            Exchange {
                name: format!("{number} {method} {path}"),
                method,
                path,
                request,
                response,
            }
        })
        .collect()
}

/// Ids and the token secret the server chose, old (recorded) to new (this run).
#[derive(Debug, Default)]
struct IdMap {
    old_to_new: BTreeMap<String, String>,
}

impl IdMap {
    /// Every recorded id mapped to itself: for comparing recorded answers with each other.
    fn identity(exchanges: &[Exchange]) -> IdMap {
        let mut ids = IdMap::default();
        for exchange in exchanges
            .iter()
            .filter(|exchange| exchange.response.status == 201)
        {
            if let Ok(value) = serde_json::from_slice::<Value>(&exchange.response.body) {
                ids.learn(&value, &value, &mut Vec::new());
            }
        }
        ids
    }

    /// The recorded request as it is sent this run: `Host` for this server, mapped ids in the
    /// head and in a JSON body.
    fn request(&self, recorded: &Message, host: &str) -> Vec<u8> {
        let mut head = String::new();
        for line in recorded.head.split_inclusive("\r\n") {
            if line.to_ascii_lowercase().starts_with("host:") {
                head.push_str(&format!("host: {host}\r\n"));
            } else {
                head.push_str(&self.replace(line));
            }
        }
        let mut bytes = head.into_bytes();
        if recorded.media_type() == "application/json" {
            let body = String::from_utf8(recorded.raw_body.clone()).expect("a UTF-8 JSON body");
            bytes.extend_from_slice(self.replace(&body).as_bytes());
        } else {
            bytes.extend_from_slice(&recorded.raw_body);
        }
        bytes
    }

    fn replace(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (old, new) in &self.old_to_new {
            text = text.replace(old.as_str(), new);
        }
        text
    }

    /// Learns the ids a creating answer reveals: walks the recorded and actual answers side by
    /// side, mapping each unmapped server id of the recorded one to the actual one.
    fn learn(&mut self, recorded: &Value, actual: &Value, differences: &mut Vec<String>) {
        match (recorded, actual) {
            (Value::String(old), Value::String(new))
                if (is_server_id(old) || is_token(old)) && !self.old_to_new.contains_key(old) =>
            {
                if new.len() != old.len() || !(is_server_id(new) || is_token(new)) {
                    differences.push(format!("id {old:?} became {new:?}"));
                } else if self.old_to_new.values().any(|mapped| mapped == new) {
                    differences.push(format!("{new:?} was already another id's"));
                } else {
                    self.old_to_new.insert(old.clone(), new.clone());
                }
            }
            (Value::Array(old), Value::Array(new)) => {
                for (old, new) in old.iter().zip(new) {
                    self.learn(old, new, differences);
                }
            }
            (Value::Object(old), Value::Object(new)) => {
                for (key, old) in old {
                    if let Some(new) = new.get(key) {
                        self.learn(old, new, differences);
                    }
                }
            }
            _ => {}
        }
    }

    /// `value` with every RFC 3339 time reduced to its shape and, for a recorded answer
    /// (`map_ids`), every known old id replaced by the new one.
    fn normalise(&self, value: &Value, map_ids: bool) -> Value {
        match value {
            Value::String(text) => match self.old_to_new.get(text) {
                Some(new) if map_ids => Value::String(new.clone()),
                _ => Value::String(time_shape(text)),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.normalise(item, map_ids))
                    .collect(),
            ),
            Value::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(key, member)| (key.clone(), self.normalise(member, map_ids)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Accounts, tokens, teams and projects: 32 lowercase hex digits (as are push ids, which the
/// client chooses and which therefore stay as recorded).
fn is_server_id(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// A token secret: `cairn_` and 64 hex digits.
fn is_token(text: &str) -> bool {
    text.strip_prefix("cairn_").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// An RFC 3339 time (`2026-11-26T14:50:00.225Z`) with every digit as `0`, so two times of the
/// same form are equal; any other string unchanged.
fn time_shape(text: &str) -> String {
    let bytes = text.as_bytes();
    let digits_at = |positions: &[usize]| {
        positions
            .iter()
            .all(|&at| bytes.get(at).is_some_and(u8::is_ascii_digit))
    };
    let is_time = bytes.len() >= 20
        && digits_at(&[0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && (text.ends_with('Z') || text[text.len() - 6..].starts_with(['+', '-']));
    if is_time {
        text.chars()
            .map(|char| if char.is_ascii_digit() { '0' } else { char })
            .collect()
    } else {
        text.to_owned()
    }
}

/// Every JSON object of `body` as its path (`""` for the top, `head`, `versions[].author`)
/// and its member names in the order they were written, objects in document order.
fn member_order(body: &[u8]) -> Vec<(String, Vec<String>)> {
    serde_json::from_slice::<MemberOrder>(body)
        .map(|order| order.0)
        .unwrap_or_default()
}

/// What [`member_order`] reads; paths relative to the value read.
struct MemberOrder(Vec<(String, Vec<String>)>);

impl MemberOrder {
    fn empty<E>() -> Result<MemberOrder, E> {
        Ok(MemberOrder(Vec::new()))
    }

    /// These objects, found under `step` of the value that holds them.
    fn under(self, step: &str) -> impl Iterator<Item = (String, Vec<String>)> {
        self.0.into_iter().map(move |(path, names)| {
            let path = if path.is_empty() {
                step.to_owned()
            } else if path.starts_with('[') {
                format!("{step}{path}")
            } else {
                format!("{step}.{path}")
            };
            (path, names)
        })
    }
}

impl<'de> Deserialize<'de> for MemberOrder {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MemberOrderVisitor)
    }
}

struct MemberOrderVisitor;

impl<'de> Visitor<'de> for MemberOrderVisitor {
    type Value = MemberOrder;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MemberOrder, A::Error> {
        let mut names = Vec::new();
        let mut inner = Vec::new();
        while let Some((name, order)) = map.next_entry::<String, MemberOrder>()? {
            inner.extend(order.under(&name));
            names.push(name);
        }
        inner.insert(0, (String::new(), names));
        Ok(MemberOrder(inner))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MemberOrder, A::Error> {
        let mut inner = Vec::new();
        while let Some(order) = seq.next_element::<MemberOrder>()? {
            inner.extend(order.under("[]"));
        }
        Ok(MemberOrder(inner))
    }

    fn visit_bool<E>(self, _: bool) -> Result<MemberOrder, E> {
        MemberOrder::empty()
    }

    fn visit_i64<E>(self, _: i64) -> Result<MemberOrder, E> {
        MemberOrder::empty()
    }

    fn visit_u64<E>(self, _: u64) -> Result<MemberOrder, E> {
        MemberOrder::empty()
    }

    fn visit_f64<E>(self, _: f64) -> Result<MemberOrder, E> {
        MemberOrder::empty()
    }

    fn visit_str<E>(self, _: &str) -> Result<MemberOrder, E> {
        MemberOrder::empty()
    }

    fn visit_unit<E>(self) -> Result<MemberOrder, E> {
        MemberOrder::empty()
    }
}

/// The headers compared: those a client reads or the API page promises.
fn compared_headers(message: &Message) -> BTreeMap<&str, &str> {
    message
        .headers
        .iter()
        .filter(|(name, _)| {
            name.starts_with("cairn-")
                || ["content-type", "cache-control", "www-authenticate", "allow"]
                    .contains(&name.as_str())
        })
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// How `actual` differs from the recorded answer of `exchange`; learns the ids of a creating
/// answer first.
fn compare(exchange: &Exchange, actual: &Message, ids: &mut IdMap) -> Vec<String> {
    let recorded = &exchange.response;
    let mut differences = Vec::new();
    if actual.status != recorded.status {
        differences.push(format!(
            "status {} instead of {}: {}",
            actual.status,
            recorded.status,
            String::from_utf8_lossy(&actual.body)
        ));
        return differences;
    }
    let (want_headers, got_headers) = (compared_headers(recorded), compared_headers(actual));
    if want_headers != got_headers {
        differences.push(format!(
            "headers {got_headers:?} instead of {want_headers:?}"
        ));
    }
    match recorded.media_type() {
        "application/json" | "application/problem+json" => {
            let parsed = (
                serde_json::from_slice::<Value>(&recorded.body),
                serde_json::from_slice::<Value>(&actual.body),
            );
            let (Ok(want), Ok(got)) = parsed else {
                differences.push(format!(
                    "a JSON body does not parse: {}",
                    String::from_utf8_lossy(&actual.body)
                ));
                return differences;
            };
            if recorded.status == 201 {
                ids.learn(&want, &got, &mut differences);
            }
            let (mut want, mut got) = (ids.normalise(&want, true), ids.normalise(&got, false));
            if recorded.media_type() == "application/problem+json" {
                for member in PROBLEM_MEMBERS_EXEMPT {
                    for document in [&mut want, &mut got] {
                        if let Some(members) = document.as_object_mut() {
                            members.remove(*member);
                        }
                    }
                }
            }
            if want != got {
                differences.push(format!("JSON {got} instead of {want}"));
            }
            let compared_order = |body: &[u8]| {
                let mut order = member_order(body);
                order.retain(|(path, _)| {
                    !MEMBER_ORDER_EXEMPT.iter().any(|(exempt, _)| exempt == path)
                });
                order
            };
            let (want_order, got_order) =
                (compared_order(&recorded.body), compared_order(&actual.body));
            if want_order != got_order {
                differences.push(format!(
                    "members in the order {got_order:?} instead of {want_order:?}"
                ));
            }
        }
        _ => {
            if actual.body != recorded.body {
                let first = actual
                    .body
                    .iter()
                    .zip(&recorded.body)
                    .position(|(got, want)| got != want)
                    .unwrap_or(actual.body.len().min(recorded.body.len()));
                differences.push(format!(
                    "the body ({} bytes, recorded {}) differs from byte {first} on",
                    actual.body.len(),
                    recorded.body.len()
                ));
            }
        }
    }
    differences
}
