//! A `/v1` request as the handlers see it, and what they do with it before any work: find the
//! caller, check their access, and read the body within its limit and its idle timeout.

use std::pin::Pin;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sync_protocol::ObjectId;
use sync_protocol::wire::{self, ProblemCode};
use warp::http::{HeaderMap, Method, header};

use crate::app::App;
use crate::catalog::{AccountId, Authenticated, Project, ProjectId, Role};
use crate::problem::Problem;

/// The longest a client may pause while sending a request body; past it the request ends
/// with `408 body-timeout`, so a stalled upload does not hold a connection forever.
pub const BODY_IDLE_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(wire::BODY_IDLE_TIMEOUT_SECS);

/// A request body not read yet.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send + Sync>>;

/// One `/v1` request, as the handlers see it.
pub struct ApiRequest {
    pub method: Method,
    /// The path after `/v1/`, split at `/` and percent-decoded.
    pub segments: Vec<String>,
    /// The raw query string (without `?`), empty when absent.
    pub query: String,
    pub headers: HeaderMap,
    /// The client's address (see [`crate::pages::client_address`]): failed log-ins count per
    /// address.
    pub client: Option<std::net::IpAddr>,
    pub body: BodyStream,
}

impl std::fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiRequest")
            .field("method", &self.method)
            .field("segments", &self.segments)
            .finish_non_exhaustive()
    }
}

/// A request path split at `/`, without empty segments, each percent-decoded (invalid UTF-8
/// replaced: such a segment names no route, no id, no page).
pub(crate) fn path_segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

pub(crate) fn box_body<S, B>(stream: S) -> BodyStream
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Sync + 'static,
    B: Buf,
{
    Box::pin(stream.map(|chunk| chunk.map(|mut buf| buf.copy_to_bytes(buf.remaining()))))
}

/// The caller, from the bearer token. Runs before any body is read.
pub async fn authenticate(app: &App, request: &ApiRequest) -> Result<Authenticated, Problem> {
    let Some(secret) = crate::auth::bearer_token(&request.headers) else {
        return Err(Problem::unauthorized(
            "send an API token: Authorization: Bearer <token>",
        ));
    };
    app.catalog
        .authenticate_token(&crate::auth::token_hash(secret))
        .await?
        .ok_or_else(|| Problem::unauthorized("the token is unknown or revoked"))
}

/// The caller and the project `id_text`, if the caller may see it with at least role `needed`,
/// with the caller's role on it. A malformed id, an unknown project and a project of another
/// team all answer the same `not-found`. Runs before any body is read.
pub async fn project_access(
    app: &App,
    request: &ApiRequest,
    id_text: &str,
    needed: Role,
) -> Result<(Authenticated, Project, Role), Problem> {
    let caller = authenticate(app, request).await?;
    let (project, role) = project_of(app, caller.account.id, id_text, needed).await?;
    Ok((caller, project, role))
}

/// The project `id_text` if `account` may see it with at least role `needed`, with its role
/// there: the one access check of the API and the account pages. A malformed id, an unknown
/// project and a project of another team all answer the same `not-found`.
pub async fn project_of(
    app: &App,
    account: AccountId,
    id_text: &str,
    needed: Role,
) -> Result<(Project, Role), Problem> {
    let id: ProjectId = id_text.parse().map_err(|_| Problem::not_found())?;
    let role = app
        .catalog
        .project_role(account, id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let project = app
        .catalog
        .project(id)
        .await?
        .ok_or_else(Problem::not_found)?;
    if role < needed {
        return Err(Problem::forbidden(format!(
            "this needs the {needed} role on the project; you are {role}"
        )));
    }
    Ok((project, role))
}

/// Rejects a body whose declared length is past `limit` before reading any of it.
pub fn check_declared_length(headers: &HeaderMap, limit: u64) -> Result<(), Problem> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit => Err(Problem::body_too_large(limit)),
        _ => Ok(()),
    }
}

/// Checks the body's media type, when the client named one: `expected` or the generic
/// `application/octet-stream`.
pub fn check_media_type(headers: &HeaderMap, expected: &str) -> Result<(), Problem> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if essence.eq_ignore_ascii_case(expected)
        || essence.eq_ignore_ascii_case(wire::OCTET_STREAM_MEDIA_TYPE)
    {
        Ok(())
    } else {
        Err(Problem::unsupported_media_type(expected))
    }
}

/// The next piece of a body, waiting at most [`BODY_IDLE_TIMEOUT`] for it.
pub async fn next_chunk(
    body: &mut BodyStream,
) -> Result<Option<Result<Bytes, warp::Error>>, Problem> {
    tokio::time::timeout(BODY_IDLE_TIMEOUT, body.next())
        .await
        .map_err(|_| {
            Problem::new(ProblemCode::BodyTimeout).with_detail(format!(
                "no body bytes arrived for {} seconds",
                BODY_IDLE_TIMEOUT.as_secs()
            ))
        })
}

/// The longest a small body (JSON, a missing-objects query: at most a few hundred KiB) may
/// take to arrive in all, however steadily it trickles: a client sending a sign-in one byte
/// every few seconds would otherwise hold its connection for as long as it likes.
pub const SMALL_BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a whole body of at most `limit` bytes, however it is framed, within
/// [`SMALL_BODY_DEADLINE`].
pub async fn read_body(body: &mut BodyStream, limit: u64) -> Result<Vec<u8>, Problem> {
    tokio::time::timeout(SMALL_BODY_DEADLINE, read_whole(body, limit))
        .await
        .map_err(|_| {
            Problem::new(ProblemCode::BodyTimeout).with_detail(format!(
                "the body did not arrive in full within {} seconds",
                SMALL_BODY_DEADLINE.as_secs()
            ))
        })?
}

async fn read_whole(body: &mut BodyStream, limit: u64) -> Result<Vec<u8>, Problem> {
    let mut out = Vec::new();
    while let Some(chunk) = next_chunk(body).await? {
        let chunk =
            chunk.map_err(|error| Problem::bad_request(format!("reading the body: {error}")))?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(Problem::body_too_large(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads and parses a JSON body (at most [`wire::MAX_JSON_BODY`] bytes): see
/// [`parse_json_body`].
pub async fn read_json<T: DeserializeOwned>(request: &mut ApiRequest) -> Result<T, Problem> {
    // The media type is not checked: whatever it says, the body must parse as JSON (so
    // `curl -d` works).
    check_declared_length(&request.headers, wire::MAX_JSON_BODY)?;
    let bytes = read_body(&mut request.body, wire::MAX_JSON_BODY).await?;
    parse_json_body(&bytes)
}

/// Parses a JSON request body into `T`, as the OpenAPI document describes it: the body is a
/// JSON object, or empty, which counts as `{}`. Anything else is `bad-json`: serde alone would
/// read an array as a struct's fields in order (`["x"]` as `{"name": "x"}`), which the
/// document does not allow. A member named twice is `bad-json` too. A number with a zero
/// fraction (`3.0`, `3e0`) is the integer it equals, as in JSON Schema, where it is an
/// `integer`.
pub fn parse_json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice::<BodyValue>(bytes)
            .map_err(Problem::bad_json)?
            .0
    };
    if !value.is_object() {
        return Err(Problem::bad_json(format!(
            "the body must be a JSON object, not {}",
            json_kind(&value)
        )));
    }
    serde_json::from_value(value).map_err(Problem::bad_json)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON value read as request bodies are read ([`parse_json_body`]): a member named twice
/// is an error, as it is for serde's derived structs, and a number with a zero fraction that
/// fits 64 bits is that integer.
struct BodyValue(Value);

impl<'de> Deserialize<'de> for BodyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(BodyValueVisitor)
            .map(BodyValue)
    }
}

struct BodyValueVisitor;

impl<'de> Visitor<'de> for BodyValueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(value.into())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(value.into())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        // 2^64 and -2^63: within them an integral f64 converts exactly.
        const UNSIGNED_END: f64 = 18_446_744_073_709_551_616.0;
        const SIGNED_START: f64 = -9_223_372_036_854_775_808.0;
        if value.fract() == 0.0 {
            if (0.0..UNSIGNED_END).contains(&value) {
                return Ok((value as u64).into());
            }
            if (SIGNED_START..0.0).contains(&value) {
                return Ok((value as i64).into());
            }
        }
        Ok(value.into())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(BodyValue(item)) = sequence.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(de::Error::custom(format_args!(
                    "the member `{name}` appears twice"
                )));
            }
            let BodyValue(value) = map.next_value()?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

/// Parses the query string into `T`.
pub fn parse_query<T: DeserializeOwned>(request: &ApiRequest) -> Result<T, Problem> {
    check_utf8_query(&request.query)?;
    serde_urlencoded::from_str(&request.query)
        .map_err(|error| Problem::new(ProblemCode::BadQuery).with_detail(error))
}

/// Refuses a query member whose percent-decoded bytes are not UTF-8: form decoding would put
/// U+FFFD in their place and store a text the client never sent.
fn check_utf8_query(query: &str) -> Result<(), Problem> {
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let utf8 = |text: &str| {
            percent_encoding::percent_decode_str(&text.replace('+', " "))
                .decode_utf8()
                .is_ok()
        };
        if !utf8(value) || !utf8(name) {
            let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            return Err(Problem::invalid_field(&name, "is not UTF-8"));
        }
    }
    Ok(())
}

/// Parses an object id from JSON or a query, as a typed error.
pub fn parse_id(field: &str, text: &str) -> Result<ObjectId, Problem> {
    text.parse()
        .map_err(|error| Problem::invalid_field(field, error))
}

#[cfg(test)]
mod tests {
    use warp::http::HeaderValue;

    use super::*;

    #[test]
    fn declared_length_past_the_limit_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert!(check_declared_length(&headers, 10).is_ok());
        assert_eq!(
            check_declared_length(&headers, 9).unwrap_err().code,
            ProblemCode::BodyTooLarge
        );
    }

    #[test]
    fn query_text_must_be_utf8() {
        assert!(check_utf8_query("message=a%C3%A9b+c&push_id=p").is_ok());
        assert!(check_utf8_query("").is_ok());
        let problem = check_utf8_query("push_id=p&message=a%FFb").unwrap_err();
        assert_eq!(problem.code, ProblemCode::InvalidField);
        assert!(check_utf8_query("a%FF=1").is_err());
    }

    #[test]
    fn json_bodies_are_objects() {
        let team: wire::NameBody = parse_json_body(br#" {"name": "x"} "#).unwrap();
        assert_eq!(team.name, "x");
        let pull: wire::PullRequest = parse_json_body(b" \n").unwrap();
        assert_eq!(pull, wire::PullRequest::default());
        // serde alone reads a sequence as a struct's fields in order.
        for body in [
            &br#"["x"]"#[..],
            b"[null, null]",
            b"null",
            b"3",
            br#""x""#,
            b"[]",
        ] {
            let error = parse_json_body::<wire::PullRequest>(body).unwrap_err();
            assert_eq!(error.code, ProblemCode::BadJson, "{body:?}");
            assert!(error.document.detail.contains("JSON object"), "{error}");
        }
        let error = parse_json_body::<wire::NameBody>(br#"["x"]"#).unwrap_err();
        assert_eq!(error.code, ProblemCode::BadJson);
    }

    #[test]
    fn json_numbers_with_a_zero_fraction_are_integers() {
        let body = br#"{"push_id": "p", "base_version": 24729390835.0, "root": "r"}"#;
        let commit: wire::Commit = parse_json_body(body).unwrap();
        assert_eq!(commit.base_version, 24_729_390_835);
        let pull: wire::PullRequest = parse_json_body(br#"{"want": 1.17e5}"#).unwrap();
        assert_eq!(pull.want, Some(wire::Want::Version(117_000)));
        let pull: wire::PullRequest = parse_json_body(br#"{"want": -0.0}"#).unwrap();
        assert_eq!(pull.want, Some(wire::Want::Version(0)));
        let big = br#"{"version": 18446744073709551615, "base_version": 1.8e19}"#;
        let restore: wire::Restore = parse_json_body(big).unwrap();
        assert_eq!(restore.version, u64::MAX);
        assert_eq!(restore.base_version, 18_000_000_000_000_000_000);
        for body in [
            &br#"{"version": 1.5, "base_version": 1}"#[..],
            br#"{"version": -1.0, "base_version": 1}"#,
            br#"{"version": 1.8446744073709552e19, "base_version": 1}"#,
            br#"{"version": 18446744073709551616, "base_version": 1}"#,
        ] {
            let error = parse_json_body::<wire::Restore>(body).unwrap_err();
            assert_eq!(error.code, ProblemCode::BadJson, "{body:?}");
        }
    }

    #[test]
    fn json_members_named_twice_are_refused() {
        let error =
            parse_json_body::<wire::NameBody>(br#"{"name": "a", "name": "b"}"#).unwrap_err();
        assert_eq!(error.code, ProblemCode::BadJson);
        let error = parse_json_body::<wire::NameBody>(br#"{"name": "a", "x": {"k": 1, "k": 2}}"#)
            .unwrap_err();
        assert!(error.document.detail.contains("twice"), "{error}");
    }
}
