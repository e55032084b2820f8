//! The HTTP contract between `cairn` and `sync-server`, written once.
//!
//! Both sides import this module and nothing else to agree on the API: the routes
//! ([`routes::ROUTES`], from which the server's dispatcher, metrics labels and OpenAPI paths are
//! made and the client builds its URLs), the JSON bodies ([`bodies`], serde types with one field
//! list each), the problem documents ([`problem::Problem`] and [`problem::ProblemCode`], one title
//! per code, and the mapping of every decoder error to its code), the header names, media types
//! and limits below. The byte format of object streams is [`crate::stream`].
//!
//! The page `docs-src/content/docs/protocol/http-api.md` documents this module; tests hold its
//! table of problem codes to [`problem::ProblemCode::ALL`] and its table of decoder errors to
//! the `From` impls of [`problem::Problem`].
//!
//! With the `schema` feature every body derives `schemars::JsonSchema`, so the server's OpenAPI
//! document is generated from the very types it parses and writes.

pub mod bodies;
#[cfg(test)]
mod docs;
pub mod problem;
pub mod routes;

pub use bodies::*;
pub use problem::{Problem, ProblemCode};
pub use routes::{Method, Operation, ROUTES, Route, RouteMatch};

/// The media type of object streams (request and answer bodies of push, upload and pull).
pub const OBJECTS_MEDIA_TYPE: &str = "application/vnd.cairn.objects";
/// The media type of problem documents (RFC 9457).
pub const PROBLEM_MEDIA_TYPE: &str = "application/problem+json";
/// The media type of JSON bodies.
pub const JSON_MEDIA_TYPE: &str = "application/json";
/// The media type of the event stream.
pub const EVENT_STREAM_MEDIA_TYPE: &str = "text/event-stream";
/// Object-stream bodies may also be sent as this generic type.
pub const OCTET_STREAM_MEDIA_TYPE: &str = "application/octet-stream";

/// The prefix of every problem `type` URI; the code follows it.
pub const PROBLEM_TYPE_BASE: &str = "https://cairn.dev/problems/";

/// Answer header of a pull: the version number delivered (absent when the pull named a root).
pub const VERSION_HEADER: &str = "cairn-version";
/// Answer header of a pull: the root id delivered.
pub const ROOT_HEADER: &str = "cairn-root";
/// Answer header of a pull: how many frames and change records the stream holds.
pub const OBJECT_COUNT_HEADER: &str = "cairn-objects";
/// Request header of a push or commit: with the value [`REBASE_ALLOWED`], a push whose base is
/// no longer the head is committed on top of the head when the two changed different paths
/// (a server-side rebase; the answer says `rebased`). Without it, a stale base is always a
/// `409 conflict`, as for clients that predate rebasing.
pub const REBASE_HEADER: &str = "cairn-rebase";
/// The one value of [`REBASE_HEADER`].
pub const REBASE_ALLOWED: &str = "allowed";
/// The request id a client may send and every answer carries.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The longest `X-Request-Id` the server takes from a client.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Every API token starts with this, followed by 64 hex digits.
pub const TOKEN_PREFIX: &str = "cairn_";

/// The largest JSON request body, in bytes (the missing-objects query allows more).
pub const MAX_JSON_BODY: u64 = 64 * 1024;
/// The most ids one missing-objects query may ask about.
pub const MAX_MISSING_IDS: usize = 10_000;
/// The largest missing-objects query body: room for [`MAX_MISSING_IDS`] hex ids.
pub const MAX_MISSING_BODY: u64 = (MAX_MISSING_IDS as u64) * 70 + 1024;
/// The most missing ids one `missing-object` problem names.
pub const MAX_MISSING_REPORTED: usize = 100;
/// The most change records one push or pull answer carries (1 to this many changed paths);
/// a larger change travels as dirs, which are then the smaller form.
pub const MAX_RECORDS: usize = 256;
/// The longest a client may pause while sending a request body, in seconds; past it the request
/// ends with `408 body-timeout`.
pub const BODY_IDLE_TIMEOUT_SECS: u64 = 60;
/// How often an idle event stream carries a keep-alive comment, in seconds: a client that hears
/// nothing for much longer may take the connection for dead and reconnect.
pub const EVENT_KEEP_ALIVE_SECS: u64 = 15;
/// The longest push id, in bytes (ASCII letters, digits, `-` and `_`).
pub const MAX_PUSH_ID_LEN: usize = 64;

/// True for a push id the server accepts: 1 to [`MAX_PUSH_ID_LEN`] ASCII letters, digits, `-`
/// or `_`.
pub fn is_valid_push_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_PUSH_ID_LEN
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_ids_at_and_past_the_limit() {
        assert!(is_valid_push_id(&"a".repeat(MAX_PUSH_ID_LEN)));
        assert!(!is_valid_push_id(&"a".repeat(MAX_PUSH_ID_LEN + 1)));
        assert!(!is_valid_push_id(""));
        assert!(!is_valid_push_id("a b"));
        assert!(is_valid_push_id("0123-abc_XYZ"));
    }

    #[test]
    fn the_missing_body_has_room_for_every_id() {
        let ids: Vec<String> = (0..MAX_MISSING_IDS).map(|_| "f".repeat(64)).collect();
        let body = serde_json::to_vec(&MissingQuery { ids }).unwrap();
        assert!((body.len() as u64) < MAX_MISSING_BODY);
    }
}
