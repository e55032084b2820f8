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
pub(crate) mod views;

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
use sync_protocol::wire::{self, Operation, ProblemCode, RouteMatch};

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

/// Dispatches one request by the route table, [`wire::ROUTES`].
async fn route(app: &App, request: ApiRequest) -> Result<Response, Problem> {
    let mut segments: Vec<&str> = vec!["v1"];
    segments.extend(request.segments.iter().map(String::as_str));
    let (route, values) = match wire::routes::find(request.method.as_str(), &segments) {
        RouteMatch::Found(route, values) => (route, values),
        RouteMatch::MethodNotAllowed(allowed) => {
            let path = format!("/{}", segments.join("/"));
            return Err(Problem::method_not_allowed(
                request.method.as_str(),
                &path,
                &allowed,
            ));
        }
        RouteMatch::NotFound => return Err(Problem::not_found()),
    };
    let value = |index: usize| values.get(index).map_or("", String::as_str);
    let (first, second) = (value(0), value(1));
    match route.operation {
        Operation::OpenApi => Ok(crate::openapi::response()),
        Operation::SignUp => accounts::sign_up(app, request).await,
        Operation::WhoAmI => accounts::whoami(app, request).await,
        Operation::LogIn => accounts::log_in(app, request).await,
        Operation::ListTokens => accounts::list_tokens(app, request).await,
        Operation::CreateToken => accounts::create_token(app, request).await,
        Operation::RevokeToken => accounts::revoke_token(app, request, first).await,
        Operation::ListTeams => teams::list(app, request).await,
        Operation::CreateTeam => teams::create(app, request).await,
        Operation::ShowTeam => teams::show(app, request, first).await,
        Operation::ListMembers => teams::members(app, request, first).await,
        Operation::SetMember => teams::set_member(app, request, first, second).await,
        Operation::RemoveMember => teams::remove_member(app, request, first, second).await,
        Operation::CreateProject => teams::create_project(app, request, first).await,
        Operation::ListProjects => projects::list(app, request).await,
        Operation::ShowProject => projects::head(app, request, first).await,
        Operation::ListVersions => projects::versions(app, request, first).await,
        Operation::ShowVersion => projects::version(app, request, first, second).await,
        Operation::Restore => projects::restore(app, request, first).await,
        Operation::Pull => sync::pull(app, request, first).await,
        Operation::Push => sync::push(app, request, first).await,
        Operation::Missing => sync::missing(app, request, first).await,
        Operation::Upload => sync::upload(app, request, first).await,
        Operation::Commit => sync::commit(app, request, first).await,
        Operation::Events => events::stream(app, request, first).await,
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
            ProblemCode::BodyTooLarge
        );
    }
}
