//! A `/v1` request as the handlers see it, and what they do with it before any work: find the
//! caller, check their access, and read the body within its limit and its idle timeout.

use std::pin::Pin;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use sync_protocol::ObjectId;
use sync_protocol::wire::{self, ProblemCode};
use warp::http::{HeaderMap, Method, header};

use crate::app::App;
use crate::catalog::{Authenticated, Project, ProjectId, Role};
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

pub(super) fn box_body<S, B>(stream: S) -> BodyStream
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
    let id: ProjectId = id_text.parse().map_err(|_| Problem::not_found())?;
    let role = app
        .catalog
        .project_role(caller.account.id, id)
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
    Ok((caller, project, role))
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

/// Reads a whole body of at most `limit` bytes, however it is framed.
pub async fn read_body(body: &mut BodyStream, limit: u64) -> Result<Vec<u8>, Problem> {
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

/// Reads and parses a JSON body (at most [`wire::MAX_JSON_BODY`] bytes). An empty body parses as `{}`.
pub async fn read_json<T: DeserializeOwned>(request: &mut ApiRequest) -> Result<T, Problem> {
    // The media type is not checked: whatever it says, the body must parse as JSON (so
    // `curl -d` works).
    check_declared_length(&request.headers, wire::MAX_JSON_BODY)?;
    let bytes = read_body(&mut request.body, wire::MAX_JSON_BODY).await?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes).map_err(Problem::bad_json)
}

/// Parses the query string into `T`.
pub fn parse_query<T: DeserializeOwned>(request: &ApiRequest) -> Result<T, Problem> {
    serde_urlencoded::from_str(&request.query)
        .map_err(|error| Problem::new(ProblemCode::BadQuery).with_detail(error))
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
}
