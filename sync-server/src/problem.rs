//! RFC 9457 problem documents: the one shape every error answer of the API takes.
//!
//! A [`Problem`] carries an HTTP status, a stable machine-readable `code` (also the last segment
//! of its `type` URI), a fixed `title` per code and a human `detail`. Clients branch on `code`,
//! never on `title` or `detail`. Every library error reaches the network through one of the
//! `From` impls or constructors here, so the mapping from failure to answer lives in one place.
//!
//! A project (or team) the caller may not see answers exactly like one that does not exist:
//! [`Problem::not_found`] takes no argument, so its body can never differ between the two cases.

use std::convert::Infallible;
use std::fmt;

use serde_json::{Map, Value};
use sync_protocol::stream::StreamError;
use sync_protocol::{CompressError, ObjectError, ObjectId};

use crate::catalog::CatalogError;
use crate::store::StoreError;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

/// The media type of problem documents.
pub const PROBLEM_MEDIA_TYPE: &str = "application/problem+json";
/// The prefix of every problem `type` URI; the code follows it.
pub const PROBLEM_TYPE_BASE: &str = "https://cairn.dev/problems/";

/// One error answer: status, stable code, title, detail and optional extra members.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub extra: Map<String, Value>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, title: &'static str) -> Self {
        Self {
            status,
            code,
            title,
            detail: title.to_owned(),
            extra: Map::new(),
        }
    }

    pub fn with_detail(mut self, detail: impl fmt::Display) -> Self {
        self.detail = detail.to_string();
        self
    }

    pub fn with_extra(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The answer for anything the caller may not see or that does not exist. It takes no
    /// argument on purpose: an invisible project must be indistinguishable from a missing one.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .with_detail("There is nothing here, or you may not see it.")
    }

    pub fn unauthorized(detail: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
        )
        .with_detail(detail)
    }

    pub fn bad_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "bad-credentials",
            "Wrong user name or password",
        )
    }

    pub fn forbidden(detail: impl fmt::Display) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed").with_detail(detail)
    }

    pub fn bad_request(detail: impl fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request").with_detail(detail)
    }

    /// A field of a JSON body or query parameter has a value the API does not accept.
    pub fn invalid_field(field: &str, detail: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "Invalid field",
        )
        .with_detail(format!("{field}: {detail}"))
        .with_extra("field", field)
    }

    pub fn already_exists(detail: impl fmt::Display) -> Self {
        Self::new(StatusCode::CONFLICT, "already-exists", "Already exists").with_detail(detail)
    }

    pub fn body_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
        )
        .with_detail(format!(
            "the body of this request may be at most {limit} bytes"
        ))
        .with_extra("limit", limit)
    }

    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
        )
        .with_detail(format!("expected a body of type {expected}"))
    }

    pub fn missing_object(id: &ObjectId, detail: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing-object",
            "Missing object",
        )
        .with_detail(detail)
        .with_extra("id", id.to_string())
    }

    pub fn internal(detail: impl fmt::Display) -> Self {
        // The detail is logged, not sent: internal errors may name hosts, files or queries.
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        )
        .with_detail("The server failed; the request may be retried.")
    }

    pub fn unavailable(detail: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        )
        .with_detail(detail)
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert(
            "type".into(),
            Value::String(format!("{PROBLEM_TYPE_BASE}{}", self.code)),
        );
        body.insert("title".into(), Value::String(self.title.into()));
        body.insert("status".into(), Value::from(self.status.as_u16()));
        body.insert("detail".into(), Value::String(self.detail.clone()));
        body.insert("code".into(), Value::String(self.code.into()));
        for (key, value) in &self.extra {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }

    pub fn into_response(self) -> Response {
        // Members in RFC 9457's order, then the extensions.
        let ordered = OrderedBody {
            kind: format!("{PROBLEM_TYPE_BASE}{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            extra: &self.extra,
        };
        let bytes = serde_json::to_vec(&ordered).unwrap_or_default();
        let mut response = Response::new(bytes.into());
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_MEDIA_TYPE),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cairn\""),
            );
        }
        response
    }
}

#[derive(serde::Serialize)]
struct OrderedBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl warp::reject::Reject for Problem {}

impl warp::Reply for Problem {
    fn into_response(self) -> Response {
        Problem::into_response(self)
    }
}

/// A malformed or invalid object received from a client.
impl From<CompressError> for Problem {
    fn from(error: CompressError) -> Self {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match &error {
            CompressError::IdMismatch { expected, actual } => {
                Self::new(unprocessable, "hash-mismatch", "Object hash mismatch")
                    .with_detail(&error)
                    .with_extra("id", expected.to_string())
                    .with_extra("actual", actual.to_string())
            }
            CompressError::TooLarge { limit } => {
                Self::new(unprocessable, "object-too-large", "Object too large")
                    .with_detail(&error)
                    .with_extra("limit", *limit)
            }
            CompressError::NotAFrame | CompressError::Corrupt(_) => {
                Self::new(unprocessable, "bad-frame", "Bad compressed frame").with_detail(&error)
            }
            CompressError::KindMismatch { id, .. } => {
                Self::new(unprocessable, "kind-mismatch", "Object of the wrong kind")
                    .with_detail(&error)
                    .with_extra("id", id.to_string())
            }
            CompressError::Invalid { id, error: inner } => {
                Self::from(inner.clone()).with_extra("id", id.to_string())
            }
            _ => Self::new(unprocessable, "invalid-object", "Invalid object").with_detail(&error),
        }
    }
}

/// A decoded object that breaks a rule of the format.
impl From<ObjectError> for Problem {
    fn from(error: ObjectError) -> Self {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match &error {
            ObjectError::BadName { .. } => {
                Self::new(unprocessable, "bad-name", "Invalid name").with_detail(&error)
            }
            ObjectError::CaseCollision { .. } => Self::new(
                unprocessable,
                "case-collision",
                "Names collide ignoring case",
            )
            .with_detail(&error),
            ObjectError::TooLarge(_)
            | ObjectError::ChunkTooLarge(_)
            | ObjectError::TooManyChunks(_)
            | ObjectError::TooManyEntries(_)
            | ObjectError::FileTooLarge(_) => {
                Self::new(unprocessable, "object-too-large", "Object too large").with_detail(&error)
            }
            _ => Self::new(
                unprocessable,
                "non-canonical-object",
                "Not a canonical object",
            )
            .with_detail(&error),
        }
    }
}

/// A malformed object stream. Frame errors keep the frame's index and offset.
impl From<StreamError> for Problem {
    fn from(error: StreamError) -> Self {
        let bad_request = StatusCode::BAD_REQUEST;
        match &error {
            StreamError::BadFrame {
                index,
                offset,
                error: inner,
                ..
            } => Self::from(inner.clone())
                .with_detail(&error)
                .with_extra("frame", *index)
                .with_extra("offset", *offset),
            StreamError::Truncated { .. } => {
                Self::new(bad_request, "truncated-stream", "Object stream cut short")
                    .with_detail(&error)
            }
            StreamError::FrameTooLarge { index, .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "object-too-large",
                "Object too large",
            )
            .with_detail(&error)
            .with_extra("frame", *index),
            StreamError::TooManyFrames { limit, .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too-many-objects",
                "Too many objects in one stream",
            )
            .with_detail(&error)
            .with_extra("limit", *limit),
            _ => {
                Self::new(bad_request, "bad-stream", "Malformed object stream").with_detail(&error)
            }
        }
    }
}

/// Catalog failures. A missing row answers like anything else the caller may not see.
impl From<CatalogError> for Problem {
    fn from(error: CatalogError) -> Self {
        match &error {
            CatalogError::AlreadyExists { .. } => Self::already_exists(&error),
            CatalogError::NotFound { .. } => Self::not_found(),
            CatalogError::Invalid { field, reason } => {
                Self::invalid_field(&field.to_string().replace(' ', "_"), reason)
            }
            CatalogError::PushIdReused { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "push-id-reused",
                "Push id already used for another push",
            )
            .with_detail(&error),
            CatalogError::LastOwner { .. } => {
                Self::new(StatusCode::CONFLICT, "last-owner", "A team needs an owner")
                    .with_detail(&error)
            }
            CatalogError::Database { .. } => {
                tracing::error!(%error, "catalog unavailable");
                Self::unavailable("The catalog is unavailable; retry later.")
            }
            _ => Self::internal(&error),
        }
    }
}

/// Object store failures. A stored object that fails verification is never served.
impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Integrity { id, .. } | StoreError::Oversized { id, .. } => {
                tracing::error!(%error, "object store integrity error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "integrity-error",
                    "A stored object is corrupt",
                )
                .with_detail(format!("stored object {id} failed verification"))
                .with_extra("id", id.to_string())
            }
            _ => {
                tracing::error!(%error, "object store unavailable");
                Self::unavailable("The object store is unavailable; retry later.")
            }
        }
    }
}

/// Turns every rejection that reaches the top of the filter tree into a problem document.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    if let Some(problem) = rejection.find::<Problem>() {
        return Ok(problem.clone().into_response());
    }
    let problem = if rejection.is_not_found() {
        Problem::not_found()
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
        )
    } else {
        Problem::bad_request(format!("{rejection:?}"))
    };
    Ok(problem.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_rfc9457_members_and_code() {
        let problem = Problem::not_found();
        let body = problem.body();
        assert_eq!(body["type"], "https://cairn.dev/problems/not-found");
        assert_eq!(body["status"], 404);
        assert_eq!(body["code"], "not-found");
        assert!(body["title"].is_string());
        assert!(body["detail"].is_string());
    }

    #[test]
    fn object_errors_get_their_own_codes() {
        let id = sync_protocol::chunk_id(b"x");
        let mismatch = CompressError::IdMismatch {
            expected: id,
            actual: id,
        };
        assert_eq!(Problem::from(mismatch).code, "hash-mismatch");
        assert_eq!(
            Problem::from(CompressError::TooLarge { limit: 5 }).code,
            "object-too-large"
        );
        assert_eq!(
            Problem::from(ObjectError::TrailingBytes { offset: 3 }).code,
            "non-canonical-object"
        );
    }
}
