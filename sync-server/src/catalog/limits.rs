//! The catalog's limits on stored text and numbers. Text is counted in characters (Unicode
//! scalar values), as JSON Schema's `maxLength` counts it. Each is checked by both implementations
//! before anything is written, and past it the caller gets
//! [`CatalogError::Invalid`](super::CatalogError::Invalid) naming the field.

use std::time::Duration;

/// Longest account, team or project name, in characters.
pub const MAX_NAME_LEN: usize = 100;
/// Longest email address, in characters (RFC 5321's path limit, counted as the API document
/// counts it).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest stored password hash (a PHC string, ASCII), in characters.
pub const MAX_PASSWORD_HASH_LEN: usize = 512;
/// Longest token label, in characters.
pub const MAX_TOKEN_LABEL_LEN: usize = 100;
/// Longest version message, in characters.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Longest push id, in characters (ASCII).
pub const MAX_PUSH_ID_LEN: usize = 64;
/// Longest node address, in characters.
pub const MAX_NODE_ADDRESS_LEN: usize = 255;
/// Most versions one history page returns; larger requests are capped, not refused.
pub const MAX_VERSION_PAGE: u32 = 1000;
/// Most projects one page of [`Catalog::all_projects`](super::Catalog::all_projects) returns.
pub const MAX_PROJECT_PAGE: u32 = 1000;
/// Versions per history page when the caller does not say.
pub const DEFAULT_VERSION_PAGE: u32 = 50;
/// A token's `last_used` is rewritten at most this often, so authenticating a request is not a
/// database write every time.
pub const TOKEN_LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);
/// The largest pack length, frame end (offset plus length) or object size the object index
/// stores: both databases' integers are signed 64-bit. Real values are far below (a pack is at
/// most a few tens of MiB, an object at most a few GiB).
pub const MAX_INDEXED_VALUE: u64 = i64::MAX as u64;
