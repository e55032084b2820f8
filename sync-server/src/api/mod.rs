//! The JSON and object-stream API under `/v1`.
//!
//! One warp filter takes every `/v1` request whole (method, path, query, headers and the body as
//! an unread stream) and [`dispatch`] matches it on `(method, path segments)`. Routing by hand
//! keeps the order of checks explicit in each handler: authenticate, check access to the project,
//! and only then read the body, within its limit. Every failure is a [`Problem`].
//!
//! Areas: [`accounts`] (sign up, log in, tokens), [`teams`] (teams, members, project creation),
//! [`projects`] (project list, head, history, restore), [`sync`] (pull, push, missing, upload,
//! commit) and [`events`] (the head-change stream).

pub mod accounts;
pub mod events;
pub mod projects;
pub mod sync;
pub mod teams;

use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use crate::app::App;
use crate::catalog::{Authenticated, Project, ProjectId, Role, Timestamp};
use crate::problem::Problem;

/// The largest JSON request body, in bytes.
pub const MAX_JSON_BODY: u64 = 64 * 1024;
/// The longest a client may pause while sending a request body; past it the request ends
/// with `408 body-timeout`, so a stalled upload does not hold a connection forever.
pub const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// The media type of object streams.
pub const OBJECTS_MEDIA_TYPE: &str = "application/vnd.cairn.objects";

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

/// The filter of the whole `/v1` tree.
pub fn filter(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let body = warp::body::stream().map(box_body);
    warp::path("v1")
        .and(warp::path::tail())
        .and(warp::method())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(body)
        .then(
            move |tail: warp::path::Tail, method, query, headers, body| {
                let app = app.clone();
                let segments = tail
                    .as_str()
                    .split('/')
                    .filter(|segment| !segment.is_empty())
                    .map(|segment| {
                        percent_encoding::percent_decode_str(segment)
                            .decode_utf8_lossy()
                            .into_owned()
                    })
                    .collect();
                let request = ApiRequest {
                    method,
                    segments,
                    query,
                    headers,
                    body,
                };
                async move { dispatch(&app, request).await }
            },
        )
}

fn box_body<S, B>(stream: S) -> BodyStream
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Sync + 'static,
    B: Buf,
{
    Box::pin(stream.map(|chunk| chunk.map(|mut buf| buf.copy_to_bytes(buf.remaining()))))
}

/// Routes one request and turns its failure, if any, into a problem document.
pub async fn dispatch(app: &App, request: ApiRequest) -> Response {
    match route(app, request).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn route(app: &App, request: ApiRequest) -> Result<Response, Problem> {
    let segments: Vec<String> = request.segments.clone();
    let path: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method.clone();
    match (method.as_str(), path.as_slice()) {
        ("GET", ["openapi.json"]) => Ok(crate::openapi::response()),
        ("POST", ["accounts"]) => accounts::sign_up(app, request).await,
        ("GET", ["account"]) => accounts::whoami(app, request).await,
        ("POST", ["sessions"]) => accounts::log_in(app, request).await,
        ("GET", ["tokens"]) => accounts::list_tokens(app, request).await,
        ("POST", ["tokens"]) => accounts::create_token(app, request).await,
        ("DELETE", ["tokens", token]) => accounts::revoke_token(app, request, token).await,
        ("GET", ["teams"]) => teams::list(app, request).await,
        ("POST", ["teams"]) => teams::create(app, request).await,
        ("GET", ["teams", team]) => teams::show(app, request, team).await,
        ("GET", ["teams", team, "members"]) => teams::members(app, request, team).await,
        ("PUT", ["teams", team, "members", account]) => {
            teams::set_member(app, request, team, account).await
        }
        ("DELETE", ["teams", team, "members", account]) => {
            teams::remove_member(app, request, team, account).await
        }
        ("POST", ["teams", team, "projects"]) => teams::create_project(app, request, team).await,
        ("GET", ["projects"]) => projects::list(app, request).await,
        ("GET", ["projects", project]) => projects::head(app, request, project).await,
        ("GET", ["projects", project, "versions"]) => {
            projects::versions(app, request, project).await
        }
        ("GET", ["projects", project, "versions", number]) => {
            projects::version(app, request, project, number).await
        }
        ("POST", ["projects", project, "restore"]) => {
            projects::restore(app, request, project).await
        }
        ("POST", ["projects", project, "pull"]) => sync::pull(app, request, project).await,
        ("POST", ["projects", project, "push"]) => sync::push(app, request, project).await,
        ("POST", ["projects", project, "missing"]) => sync::missing(app, request, project).await,
        ("POST", ["projects", project, "objects"]) => sync::upload(app, request, project).await,
        ("POST", ["projects", project, "commits"]) => sync::commit(app, request, project).await,
        ("GET", ["projects", project, "events"]) => events::stream(app, request, project).await,
        _ => {
            let full = format!("/v1/{}", path.join("/"));
            if crate::metrics::route_label(method.as_str(), &full) == "/v1/other" {
                Err(Problem::not_found())
            } else {
                Err(Problem::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method-not-allowed",
                    "Method not allowed",
                )
                .with_detail(format!("{method} is not allowed on {full}")))
            }
        }
    }
}

// Helpers shared by the handlers.

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

/// The project `id_text`, if `caller` may see it with at least role `needed`. A malformed id,
/// an unknown project and a project of another team all answer the same `not-found`.
pub async fn project_access(
    app: &App,
    caller: &Authenticated,
    id_text: &str,
    needed: Role,
) -> Result<(Project, Role), Problem> {
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
        || essence.eq_ignore_ascii_case("application/octet-stream")
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
            Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "The request body stalled",
            )
            .with_detail(format!(
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

/// Reads and parses a JSON body (at most [`MAX_JSON_BODY`] bytes). An empty body parses as `{}`.
pub async fn read_json<T: DeserializeOwned>(request: &mut ApiRequest) -> Result<T, Problem> {
    // The media type is not checked: whatever it says, the body must parse as JSON (so
    // `curl -d` works).
    check_declared_length(&request.headers, MAX_JSON_BODY)?;
    let bytes = read_body(&mut request.body, MAX_JSON_BODY).await?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes).map_err(|error| {
        Problem::new(StatusCode::BAD_REQUEST, "bad-json", "Malformed JSON body")
            .with_detail(error.to_string())
    })
}

/// Parses the query string into `T`.
pub fn parse_query<T: DeserializeOwned>(request: &ApiRequest) -> Result<T, Problem> {
    serde_urlencoded::from_str(&request.query).map_err(|error| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-query",
            "Malformed query string",
        )
        .with_detail(error.to_string())
    })
}

/// A JSON answer.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(bytes.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An empty `204 No Content` answer.
pub fn no_content() -> Response {
    let mut response = Response::new(Vec::new().into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// A timestamp as RFC 3339 in UTC with milliseconds, e.g. `2026-11-26T14:00:02.123Z`.
pub fn rfc3339(time: Timestamp) -> String {
    let millis = time.unix_millis();
    let seconds = millis.div_euclid(1000);
    let milli = millis.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(
            rfc3339(Timestamp::from_unix_millis(0)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_unix_millis(1_795_701_602_123)),
            "2026-11-26T14:00:02.123Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_unix_millis(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn declared_length_past_the_limit_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert!(check_declared_length(&headers, 10).is_ok());
        assert_eq!(
            check_declared_length(&headers, 9).unwrap_err().code,
            "body-too-large"
        );
    }
}
