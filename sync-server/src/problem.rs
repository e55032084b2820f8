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

use sync_protocol::stream::StreamError;
use sync_protocol::wire::{self, Head, ProblemCode};
use sync_protocol::{CompressError, ObjectError, ObjectId};

use crate::catalog::CatalogError;
use crate::store::StoreError;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

/// One error answer: a [`wire::Problem`] document (boxed: errors travel in `Result`s, which
/// stay small), the methods a `405` allows, and how long to wait before trying again.
#[derive(Debug, Clone)]
pub struct Problem {
    pub code: ProblemCode,
    pub document: Box<wire::Problem>,
    /// The `Allow` header of a `405 method-not-allowed`.
    pub allow: Option<String>,
    /// The `Retry-After` header, in seconds, of a failure that passes.
    pub retry_after: Option<u32>,
}

impl From<wire::Problem> for Problem {
    fn from(document: wire::Problem) -> Self {
        Self {
            // Every document the server makes starts from a known code.
            code: document.code().unwrap_or(ProblemCode::Internal),
            document: Box::new(document),
            allow: None,
            retry_after: None,
        }
    }
}

impl Problem {
    /// A problem of `code`, its detail the code's title.
    pub fn new(code: ProblemCode) -> Self {
        wire::Problem::new(code).into()
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.document.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    #[must_use]
    pub fn with_detail(mut self, detail: impl fmt::Display) -> Self {
        self.document.detail = detail.to_string();
        self
    }

    #[must_use]
    pub fn with_id(mut self, id: ObjectId) -> Self {
        self.document.id = Some(id);
        self
    }

    /// The answer for anything the caller may not see or that does not exist. It takes no
    /// argument on purpose: an invisible project must be indistinguishable from a missing one.
    pub fn not_found() -> Self {
        Self::new(ProblemCode::NotFound)
            .with_detail("There is nothing here, or you may not see it.")
    }

    pub fn unauthorized(detail: impl fmt::Display) -> Self {
        Self::new(ProblemCode::Unauthorized).with_detail(detail)
    }

    pub fn bad_credentials() -> Self {
        Self::new(ProblemCode::BadCredentials)
    }

    pub fn forbidden(detail: impl fmt::Display) -> Self {
        Self::new(ProblemCode::Forbidden).with_detail(detail)
    }

    pub fn bad_request(detail: impl fmt::Display) -> Self {
        Self::new(ProblemCode::BadRequest).with_detail(detail)
    }

    /// A JSON body that does not parse into its type.
    pub fn bad_json(detail: impl fmt::Display) -> Self {
        Self::new(ProblemCode::BadJson).with_detail(detail)
    }

    /// A field of a JSON body or query parameter has a value the API does not accept.
    pub fn invalid_field(field: &str, detail: impl fmt::Display) -> Self {
        wire::Problem::invalid_field(field, detail).into()
    }

    pub fn already_exists(detail: impl fmt::Display) -> Self {
        Self::new(ProblemCode::AlreadyExists).with_detail(detail)
    }

    pub fn body_too_large(limit: u64) -> Self {
        wire::Problem::body_too_large(limit).into()
    }

    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(ProblemCode::UnsupportedMediaType)
            .with_detail(format!("expected a body of type {expected}"))
    }

    /// `missing-object`: `missing` (at least one) are neither in the upload nor stored.
    pub fn missing_objects(missing: &[ObjectId], detail: impl fmt::Display) -> Self {
        wire::Problem::missing_objects(missing, detail).into()
    }

    /// `missing-object` about one object, without the `missing` list.
    pub fn missing_object(id: &ObjectId, detail: impl fmt::Display) -> Self {
        Self::new(ProblemCode::MissingObject)
            .with_detail(detail)
            .with_id(*id)
    }

    /// `409 conflict`: the base is stale; pull, merge and push again.
    pub fn conflict(head: Head) -> Self {
        wire::Problem::conflict(head).into()
    }

    /// `405 method-not-allowed`, with the methods the path allows.
    pub fn method_not_allowed(method: &str, path: &str, allow: &[wire::Method]) -> Self {
        let allowed: Vec<&str> = allow.iter().map(|method| method.as_str()).collect();
        let mut problem = Self::new(ProblemCode::MethodNotAllowed)
            .with_detail(format!("{method} is not allowed on {path}"));
        problem.allow = Some(allowed.join(", "));
        problem
    }

    pub fn internal(detail: impl fmt::Display) -> Self {
        // The detail is logged, not sent: internal errors may name hosts, files or queries.
        tracing::error!(error = %detail, "internal error");
        Self::new(ProblemCode::Internal)
            .with_detail("The server failed; the request may be retried.")
    }

    /// A stored object or version failed verification: never served as data.
    pub fn integrity(detail: impl fmt::Display) -> Self {
        tracing::error!(error = %detail, "integrity error");
        Self::new(ProblemCode::IntegrityError).with_detail(detail)
    }

    pub fn unavailable(detail: impl fmt::Display) -> Self {
        Self::new(ProblemCode::Unavailable).with_detail(detail)
    }

    /// Asks the client to wait `seconds` before it tries again (`Retry-After`).
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The JSON body, in RFC 9457's member order.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.document).unwrap_or_default()
    }

    pub fn into_response(self) -> Response {
        let mut response = Response::new(self.body().into());
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(wire::PROBLEM_MEDIA_TYPE),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.code == ProblemCode::Unauthorized || self.code == ProblemCode::BadCredentials {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cairn\""),
            );
        }
        if let Some(allow) = self
            .allow
            .and_then(|allow| HeaderValue::from_str(&allow).ok())
        {
            headers.insert(header::ALLOW, allow);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.document.fmt(f)
    }
}

impl warp::reject::Reject for Problem {}

impl warp::Reply for Problem {
    fn into_response(self) -> Response {
        Problem::into_response(self)
    }
}

/// A malformed or invalid object received from a client: the code is the wire contract's.
impl From<CompressError> for Problem {
    fn from(error: CompressError) -> Self {
        wire::Problem::from(&error).into()
    }
}

impl From<ObjectError> for Problem {
    fn from(error: ObjectError) -> Self {
        wire::Problem::from(&error).into()
    }
}

impl From<StreamError> for Problem {
    fn from(error: StreamError) -> Self {
        wire::Problem::from(&error).into()
    }
}

/// Catalog failures. A missing row answers like anything else the caller may not see.
impl From<CatalogError> for Problem {
    fn from(error: CatalogError) -> Self {
        match &error {
            CatalogError::AlreadyExists { .. } => Self::already_exists(&error),
            CatalogError::NotFound { .. } => Self::not_found(),
            CatalogError::Invalid { field, reason } => Self::invalid_field(&field.member(), reason),
            CatalogError::PushIdReused { .. } => {
                Self::new(ProblemCode::PushIdReused).with_detail(&error)
            }
            CatalogError::LastOwner { .. } => Self::new(ProblemCode::LastOwner).with_detail(&error),
            CatalogError::Database { .. } => {
                tracing::error!(%error, "catalog unavailable");
                Self::unavailable("The catalog is unavailable; retry later.")
            }
            _ => Self::internal(&error),
        }
    }
}

/// How long a client is asked to wait after the object store failed: the store has already
/// retried (the SDK each request, `ObjectStore` each broken or damaged read), so what is left
/// is an outage or a run of faults, which a second rarely outlasts but a pause helps.
pub const STORE_RETRY_AFTER_SECS: u32 = 1;

/// Object store failures. A stored object that fails verification is never served. A failure
/// of the store itself (S3 after its retries, an answer that broke off on every read, a local
/// file error) is `503 unavailable` with a `Retry-After`, which clients retry; only damage to
/// what is stored, found again on every read, is `500 integrity-error`.
impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Integrity { id, .. } | StoreError::Oversized { id, .. } => {
                tracing::error!(%error, "object store integrity error");
                Self::new(ProblemCode::IntegrityError)
                    .with_detail(format!("stored object {id} failed verification"))
                    .with_id(*id)
            }
            // A pack the index names is damaged, too long, gone or shorter than a row says:
            // stored data is not whole. The pack is named in the log, not to the client.
            StoreError::PackIntegrity { .. }
            | StoreError::OversizedPack { .. }
            | StoreError::MissingPack { .. }
            | StoreError::PackRange { .. } => {
                tracing::error!(%error, "object store integrity error");
                Self::new(ProblemCode::IntegrityError)
                    .with_detail("a stored pack failed verification")
            }
            StoreError::S3 { .. }
            | StoreError::Transfer { .. }
            | StoreError::Io { .. }
            | StoreError::Config(_)
            | StoreError::Backend { .. } => {
                tracing::error!(%error, "object store unavailable");
                Self::unavailable("The object store is unavailable; retry later.")
                    .with_retry_after(STORE_RETRY_AFTER_SECS)
            }
        }
    }
}

/// Failures of a project's objects: of the store or of the catalog's index.
impl From<crate::objects::ObjectsError> for Problem {
    fn from(error: crate::objects::ObjectsError) -> Self {
        match error {
            crate::objects::ObjectsError::Store(error) => error.into(),
            crate::objects::ObjectsError::Catalog(error) => error.into(),
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
        Problem::new(ProblemCode::MethodNotAllowed)
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        Problem::new(ProblemCode::BodyTooLarge)
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
        let body: serde_json::Value = serde_json::from_slice(&problem.body()).unwrap();
        assert_eq!(body["type"], "https://cairn.dev/problems/not-found");
        assert_eq!(body["status"], 404);
        assert_eq!(body["code"], "not-found");
        assert!(body["title"].is_string());
        assert!(body["detail"].is_string());
    }

    #[test]
    fn store_failures_that_pass_are_503_with_retry_after_and_damage_is_500() {
        let transfer = StoreError::Transfer {
            operation: "get",
            key: "s3://bucket/packs/p/x".to_owned(),
            message: "reading the body: connection closed".to_owned(),
        };
        let s3 = StoreError::S3 {
            operation: "put",
            key: "s3://bucket/packs/p/x".to_owned(),
            message: "503 SlowDown".to_owned(),
        };
        for error in [transfer, s3] {
            let response = Problem::from(error).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        }
        let object = sync_protocol::Object::Chunk(b"x".to_vec());
        let damaged = StoreError::Integrity {
            project: crate::catalog::ProjectId::random(),
            id: object.id(),
            error: Box::new(CompressError::NotAFrame),
        };
        let response = Problem::from(damaged).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn a_method_not_allowed_names_the_allowed_ones() {
        let problem = Problem::method_not_allowed(
            "PATCH",
            "/v1/teams",
            &[wire::Method::Get, wire::Method::Post],
        );
        let response = problem.into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, POST");
    }
}
