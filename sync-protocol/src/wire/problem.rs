//! Problem documents (RFC 9457): the one shape of every error answer, and the one place that
//! says which code each failure gets.
//!
//! A [`ProblemCode`] has exactly one status and one title. Clients branch on the code, never on
//! `title` or `detail`. Every error of the stream and object decoders maps to a code here
//! ([`Problem::from`]), so the server answers and the client reads them alike.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::PROBLEM_TYPE_BASE;
use super::bodies::Head;
use crate::ObjectId;
use crate::accept::Rejection;
use crate::compress::CompressError;
use crate::object::ObjectError;
use crate::patch::PatchError;
use crate::respond::PullRejection;
use crate::stream::StreamError;

macro_rules! problem_codes {
    ($($variant:ident = $code:literal, $status:literal, $title:literal;)*) => {
        /// Every problem code of the API, with its status and title.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ProblemCode {
            $($variant,)*
        }

        impl ProblemCode {
            /// Every code, in the order of the table in http-api.md.
            pub const ALL: &'static [ProblemCode] = &[$(ProblemCode::$variant,)*];

            /// The code as it travels: `not-found`, `entry-mismatch`...
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ProblemCode::$variant => $code,)*
                }
            }

            /// The HTTP status of every answer with this code.
            pub const fn status(self) -> u16 {
                match self {
                    $(ProblemCode::$variant => $status,)*
                }
            }

            /// The fixed title of this code.
            pub const fn title(self) -> &'static str {
                match self {
                    $(ProblemCode::$variant => $title,)*
                }
            }

            /// The code named `text`, if this version of the API knows it.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($code => Some(ProblemCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

problem_codes! {
    BadRequest = "bad-request", 400, "Bad request";
    BadJson = "bad-json", 400, "Malformed JSON body";
    BadQuery = "bad-query", 400, "Malformed query string";
    BadStream = "bad-stream", 400, "Malformed object stream";
    TruncatedStream = "truncated-stream", 400, "Object stream cut short";
    Unauthorized = "unauthorized", 401, "Authentication required";
    BadCredentials = "bad-credentials", 401, "Wrong user name or password";
    Forbidden = "forbidden", 403, "Not allowed";
    NotFound = "not-found", 404, "Not found";
    UnknownVersion = "unknown-version", 404, "No such version";
    MethodNotAllowed = "method-not-allowed", 405, "Method not allowed";
    BodyTimeout = "body-timeout", 408, "The request body stalled";
    Conflict = "conflict", 409, "The project has moved on";
    AlreadyExists = "already-exists", 409, "Already exists";
    LastOwner = "last-owner", 409, "A team needs an owner";
    BodyTooLarge = "body-too-large", 413, "Request body too large";
    UnsupportedMediaType = "unsupported-media-type", 415, "Unsupported media type";
    InvalidField = "invalid-field", 422, "Invalid field";
    PushIdReused = "push-id-reused", 422, "Push id already used for another push";
    MissingObject = "missing-object", 422, "Missing object";
    EntryMismatch = "entry-mismatch", 422, "An entry does not match the object it names";
    HashMismatch = "hash-mismatch", 422, "Object hash mismatch";
    KindMismatch = "kind-mismatch", 422, "Object of the wrong kind";
    BadFrame = "bad-frame", 422, "Bad compressed frame";
    ObjectTooLarge = "object-too-large", 422, "Object too large";
    TooManyObjects = "too-many-objects", 422, "Too many objects in one stream";
    BadName = "bad-name", 422, "Invalid name";
    CaseCollision = "case-collision", 422, "Names collide ignoring case";
    NonCanonicalObject = "non-canonical-object", 422, "Not a canonical object";
    BadPath = "bad-path", 422, "Path outside the format's limits";
    BadRecords = "bad-records", 422, "Change records do not fit the base";
    TooManyRequests = "too-many-requests", 429, "Too many attempts";
    Internal = "internal", 500, "Internal server error";
    IntegrityError = "integrity-error", 500, "Stored data failed verification";
    Unavailable = "unavailable", 503, "Service unavailable";
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProblemCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One problem document. The members serialize in RFC 9457's order (`type`, `title`,
/// `status`, `detail`), then `code`, then the extension members that apply, by name.
///
/// `code` and `title` are strings so that a client can read a code a newer server added;
/// [`Problem::code`] gives the typed code when it is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    /// `hash-mismatch`: the id the frame's content hashes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<ObjectId>,
    /// `invalid-field`: the field or parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A frame error in an object stream: the frame's 0-based index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<u32>,
    /// `conflict`: the project's head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Head>,
    /// The object concerned: the missing one, the referring dir of an `entry-mismatch`, the
    /// frame's object, the corrupt stored object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    /// `body-too-large`, `object-too-large`, `too-many-objects`: the limit passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// `missing-object`: up to [`super::MAX_MISSING_REPORTED`] missing ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<ObjectId>>,
    /// A frame error in an object stream: the byte offset of the frame's kind tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl Problem {
    /// A problem of `code` whose detail is its title.
    pub fn new(code: ProblemCode) -> Self {
        Self {
            type_uri: format!("{PROBLEM_TYPE_BASE}{code}"),
            title: code.title().to_owned(),
            status: code.status(),
            detail: code.title().to_owned(),
            code: code.as_str().to_owned(),
            actual: None,
            field: None,
            frame: None,
            head: None,
            id: None,
            limit: None,
            missing: None,
            offset: None,
        }
    }

    /// The typed code, when this version of the API knows it.
    pub fn code(&self) -> Option<ProblemCode> {
        ProblemCode::parse(&self.code)
    }

    #[must_use]
    pub fn with_detail(mut self, detail: impl fmt::Display) -> Self {
        self.detail = detail.to_string();
        self
    }

    #[must_use]
    pub fn with_id(mut self, id: ObjectId) -> Self {
        self.id = Some(id);
        self
    }

    #[must_use]
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    #[must_use]
    pub fn with_frame(mut self, index: u32, offset: Option<u64>) -> Self {
        self.frame = Some(index);
        self.offset = offset;
        self
    }

    /// `invalid-field`: `field` has a value the API does not accept.
    pub fn invalid_field(field: &str, detail: impl fmt::Display) -> Self {
        let mut problem =
            Self::new(ProblemCode::InvalidField).with_detail(format!("{field}: {detail}"));
        problem.field = Some(field.to_owned());
        problem
    }

    /// `missing-object`: `missing` (the first named as `id`) are neither in the upload nor
    /// stored.
    pub fn missing_objects(missing: &[ObjectId], detail: impl fmt::Display) -> Self {
        let mut problem = Self::new(ProblemCode::MissingObject).with_detail(detail);
        problem.id = missing.first().copied();
        problem.missing = Some(
            missing
                .iter()
                .take(super::MAX_MISSING_REPORTED)
                .copied()
                .collect(),
        );
        problem
    }

    /// `conflict`: the base is stale; pull `head`, merge and push again.
    pub fn conflict(head: Head) -> Self {
        let mut problem = Self::new(ProblemCode::Conflict).with_detail(format!(
            "the head is version {}; pull it, merge and push again",
            head.version
        ));
        problem.head = Some(head);
        problem
    }

    /// `body-too-large`: the body of this request may be at most `limit` bytes.
    pub fn body_too_large(limit: u64) -> Self {
        Self::new(ProblemCode::BodyTooLarge)
            .with_detail(format!(
                "the body of this request may be at most {limit} bytes"
            ))
            .with_limit(limit)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)
    }
}

/// A frame that fails verification: its hash, zstd framing, size or kind.
impl From<&CompressError> for Problem {
    fn from(error: &CompressError) -> Self {
        match error {
            CompressError::IdMismatch { expected, actual } => {
                let mut problem = Self::new(ProblemCode::HashMismatch)
                    .with_detail(error)
                    .with_id(*expected);
                problem.actual = Some(*actual);
                problem
            }
            CompressError::TooLarge { limit } => Self::new(ProblemCode::ObjectTooLarge)
                .with_detail(error)
                .with_limit(*limit as u64),
            CompressError::NotAFrame | CompressError::Corrupt(_) => {
                Self::new(ProblemCode::BadFrame).with_detail(error)
            }
            CompressError::KindMismatch { id, .. } => Self::new(ProblemCode::KindMismatch)
                .with_detail(error)
                .with_id(*id),
            CompressError::Invalid { id, error: inner } => Self::from(inner).with_id(*id),
        }
    }
}

/// A decoded object that breaks a rule of the format.
impl From<&ObjectError> for Problem {
    fn from(error: &ObjectError) -> Self {
        let code = match error {
            ObjectError::BadName { .. } => ProblemCode::BadName,
            ObjectError::CaseCollision { .. } => ProblemCode::CaseCollision,
            ObjectError::TooLarge(_)
            | ObjectError::ChunkTooLarge(_)
            | ObjectError::TooManyChunks(_)
            | ObjectError::TooManyEntries(_)
            | ObjectError::FileTooLarge(_) => ProblemCode::ObjectTooLarge,
            ObjectError::Truncated { .. }
            | ObjectError::UnknownKind(_)
            | ObjectError::UnsupportedVersion(_)
            | ObjectError::TrailingBytes { .. }
            | ObjectError::TooFewChunks(_)
            | ObjectError::ChunkLength { .. }
            | ObjectError::FileSizeMismatch { .. }
            | ObjectError::UnknownEntryKind { .. }
            | ObjectError::BadEntry { .. }
            | ObjectError::Unsorted { .. }
            | ObjectError::DuplicateName { .. } => ProblemCode::NonCanonicalObject,
        };
        Self::new(code).with_detail(error)
    }
}

/// A malformed object stream. Frame errors keep the frame's index and offset.
impl From<&StreamError> for Problem {
    fn from(error: &StreamError) -> Self {
        match error {
            StreamError::BadFrame {
                index,
                offset,
                error: inner,
                ..
            } => Self::from(inner)
                .with_detail(error)
                .with_frame(*index, Some(*offset)),
            StreamError::Truncated { .. } => {
                Self::new(ProblemCode::TruncatedStream).with_detail(error)
            }
            StreamError::FrameTooLarge { index, .. } => Self::new(ProblemCode::ObjectTooLarge)
                .with_detail(error)
                .with_frame(*index, None),
            StreamError::TooManyFrames { limit, .. } => Self::new(ProblemCode::TooManyObjects)
                .with_detail(error)
                .with_limit(u64::from(*limit)),
            StreamError::BadMagic
            | StreamError::UnsupportedVersion(_)
            | StreamError::UnknownTag { .. }
            | StreamError::CountMismatch { .. }
            | StreamError::DigestMismatch { .. }
            | StreamError::TrailingBytes { .. }
            | StreamError::UnreadFrame { .. }
            | StreamError::BadRecord { .. }
            | StreamError::UnexpectedRecord { .. } => {
                Self::new(ProblemCode::BadStream).with_detail(error)
            }
        }
    }
}

/// Change records that do not fit the base they are applied to.
impl From<&PatchError> for Problem {
    fn from(error: &PatchError) -> Self {
        Self::new(ProblemCode::BadRecords).with_detail(error)
    }
}

/// Why the push acceptor refused a push, an upload or a commit.
impl From<&Rejection> for Problem {
    fn from(rejection: &Rejection) -> Self {
        match rejection {
            Rejection::Stream(error) => Self::from(error.as_ref()),
            Rejection::EntryMismatch(mismatch) => Self::new(ProblemCode::EntryMismatch)
                .with_detail(rejection)
                .with_id(mismatch.referrer),
            Rejection::Missing(ids) => Self::missing_objects(ids, rejection),
            Rejection::RootMissing(id) => Self::new(ProblemCode::MissingObject)
                .with_detail(rejection)
                .with_id(*id),
            Rejection::RootNotDir(_) => Self::invalid_field("root", rejection),
            Rejection::Path(_) => Self::new(ProblemCode::BadPath).with_detail(rejection),
            Rejection::Records(_) => Self::new(ProblemCode::BadRecords).with_detail(rejection),
            Rejection::Content { error, .. } => Self::from(error.as_ref()).with_detail(rejection),
            Rejection::Integrity(_) => {
                Self::new(ProblemCode::IntegrityError).with_detail(rejection)
            }
        }
    }
}

/// Why a pull could not be answered.
impl From<&PullRejection> for Problem {
    fn from(rejection: &PullRejection) -> Self {
        match rejection {
            PullRejection::RootMissing(id) => Self::new(ProblemCode::MissingObject)
                .with_detail(rejection)
                .with_id(*id),
            PullRejection::RootNotDir(_) => Self::invalid_field("want", rejection),
            PullRejection::Integrity(_) => {
                Self::new(ProblemCode::IntegrityError).with_detail(rejection)
            }
            PullRejection::Encode(_) => Self::new(ProblemCode::Internal).with_detail(rejection),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_has_a_client_or_server_status() {
        for &code in ProblemCode::ALL {
            assert_eq!(ProblemCode::parse(code.as_str()), Some(code));
            assert!((400..600).contains(&code.status()), "{code}");
            assert!(!code.title().is_empty());
        }
        assert_eq!(ProblemCode::parse("no-such-code"), None);
    }

    #[test]
    fn members_come_in_rfc_9457_order_then_extensions_by_name() {
        let id = crate::chunk_id(b"x");
        let problem = Problem::missing_objects(&[id], "send it first");
        let text = serde_json::to_string(&problem).unwrap();
        let expected = format!(
            "{{\"type\":\"https://cairn.dev/problems/missing-object\",\"title\":\"Missing object\",\
             \"status\":422,\"detail\":\"send it first\",\"code\":\"missing-object\",\
             \"id\":\"{id}\",\"missing\":[\"{id}\"]}}"
        );
        assert_eq!(text, expected);
        let back: Problem = serde_json::from_str(&text).unwrap();
        assert_eq!(back, problem);
        assert_eq!(back.code(), Some(ProblemCode::MissingObject));
    }

    #[test]
    fn a_newer_code_still_parses() {
        let text = r#"{"type":"x","title":"t","status":418,"detail":"d","code":"teapot","brew":1}"#;
        let problem: Problem = serde_json::from_str(text).unwrap();
        assert_eq!(problem.code, "teapot");
        assert_eq!(problem.code(), None);
    }

    #[test]
    fn decoder_errors_get_their_own_codes() {
        let id = crate::chunk_id(b"x");
        let mismatch = CompressError::IdMismatch {
            expected: id,
            actual: id,
        };
        assert_eq!(
            Problem::from(&mismatch).code(),
            Some(ProblemCode::HashMismatch)
        );
        assert_eq!(
            Problem::from(&CompressError::TooLarge { limit: 5 }).code(),
            Some(ProblemCode::ObjectTooLarge)
        );
        assert_eq!(
            Problem::from(&ObjectError::TrailingBytes { offset: 3 }).code(),
            Some(ProblemCode::NonCanonicalObject)
        );
        let truncated = StreamError::Truncated {
            section: crate::stream::Section::Trailer,
            index: 0,
            offset: 9,
        };
        assert_eq!(
            Problem::from(&truncated).code(),
            Some(ProblemCode::TruncatedStream)
        );
    }
}
