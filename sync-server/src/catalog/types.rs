//! The values the catalog stores and returns: ids, accounts, tokens, teams, projects, versions,
//! commit requests and outcomes, cluster nodes, and the object index (packs and where each
//! object is in them).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sync_protocol::{Dir, Object, ObjectId, ObjectKind};

use super::error::{CatalogError, Field};
use super::limits;

/// Why a string is not one of the catalog's random ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a {what} id: expected 32 lowercase hex digits")]
pub struct ParseCatalogIdError {
    /// The kind of id that was expected, e.g. "project".
    pub what: &'static str,
}

macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        ///
        /// 128 random bits, chosen by the catalog when the row is created. Displays and parses as
        /// 32 lowercase hex digits, which is also how it is stored.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                Self(rand::random())
            }

            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }

            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for byte in self.0 {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = ParseCatalogIdError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                parse_hex16(text)
                    .map(Self)
                    .ok_or(ParseCatalogIdError { what: $what })
            }
        }
    };
}

fn parse_hex16(text: &str) -> Option<[u8; 16]> {
    let digits = text.as_bytes();
    if digits.len() != 32 {
        return None;
    }
    let value = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0u8; 16];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = (value(digits[2 * index])? << 4) | value(digits[2 * index + 1])?;
    }
    Some(bytes)
}

random_id!(
    /// An account's id.
    AccountId,
    "account"
);
random_id!(
    /// A token's id (not its secret: the secret is never stored).
    TokenId,
    "token"
);
random_id!(
    /// A browser session's id (not its secret: that lives only in the browser's cookie).
    SessionId,
    "session"
);
random_id!(
    /// A team's id.
    TeamId,
    "team"
);
random_id!(
    /// A project's id. Object store keys are namespaced by it.
    ProjectId,
    "project"
);
random_id!(
    /// A cluster node's id, chosen by the node when it starts.
    NodeId,
    "node"
);

/// A version number within a project. A new project's head is version 0.
pub type VersionNumber = u64;

/// A point in time, as milliseconds since the Unix epoch (UTC). PostgreSQL stores it as
/// `timestamptz`, SQLite as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// The current time from the system clock.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// How long before `later` this was; zero if it was not before.
    pub fn elapsed_until(self, later: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Self(i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
            Err(before) => Self(-i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(time: Timestamp) -> Self {
        let magnitude = Duration::from_millis(time.0.unsigned_abs());
        if time.0 >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

/// A member's role in a team: the wire contract's, so the API and the catalog name roles alike.
pub use sync_protocol::wire::Role;

/// An account, without its password hash (see [`AccountCredentials`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// The login name, as the user typed it. Unique ignoring case.
    pub name: String,
    /// Unique ignoring case.
    pub email: String,
    pub created: Timestamp,
}

/// What sign-up stores. Names and emails are unique ignoring case; the catalog checks lengths
/// (see [`limits`]) but not syntax, which is the API's policy.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub name: String,
    pub email: String,
    /// An argon2id PHC string (`$argon2id$v=19$...`). The catalog stores it as it is.
    pub password_hash: String,
}

impl fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccount")
            .field("name", &self.name)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// An account with its password hash, for logging in.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountCredentials {
    pub account: Account,
    /// The argon2id PHC string stored at sign-up or by the last password change.
    pub password_hash: String,
}

impl fmt::Debug for AccountCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountCredentials")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// The hash of a token's secret: the only form in which the catalog keeps it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The derive-key context of the token hash. Changing it invalidates every token.
    pub const CONTEXT: &'static str = "cairn.dev 2026-11 api token v1";

    /// Hashes a token secret (BLAKE3 in derive-key mode). Secrets are high-entropy random
    /// strings, so a fast hash is enough: there is nothing to brute-force.
    pub fn of_secret(secret: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(Self::CONTEXT);
        hasher.update(secret);
        Self(*hasher.finalize().as_bytes())
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl TokenHash {
    /// The derive-key context of a browser session's hash: another context than tokens', so a
    /// session secret can never pass for a token or the other way round.
    pub const SESSION_CONTEXT: &'static str = "cairn.dev 2026-12 web session v1";

    /// Hashes a browser session's secret.
    pub fn of_session_secret(secret: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(Self::SESSION_CONTEXT);
        hasher.update(secret);
        Self(*hasher.finalize().as_bytes())
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Even the hash stays out of logs.
        f.write_str("TokenHash(..)")
    }
}

/// An API token's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: TokenId,
    pub account: AccountId,
    /// What the user called it, e.g. "laptop".
    pub label: String,
    pub created: Timestamp,
    /// Updated by [`Catalog::authenticate_token`](super::Catalog::authenticate_token), at most
    /// once per [`limits::TOKEN_LAST_USED_RESOLUTION`].
    pub last_used: Option<Timestamp>,
    /// When it was revoked; a revoked token authenticates nothing.
    pub revoked: Option<Timestamp>,
}

/// Who a valid token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub account: Account,
    pub token: TokenId,
}

/// A signed-in browser of the account pages. Its cookie carries a secret; the catalog keeps
/// only the secret's hash ([`TokenHash::of_session_secret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    pub id: SessionId,
    pub account: AccountId,
    pub created: Timestamp,
    /// After this the session authenticates nothing.
    pub expires: Timestamp,
}

/// A browser session that authenticated, with its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub account: Account,
    pub session: WebSession,
}

/// A team: the unit that owns projects and grants roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub id: TeamId,
    /// Unique ignoring case across the whole catalog.
    pub name: String,
    pub created: Timestamp,
}

/// A team as one of its members sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamMembership {
    pub team: Team,
    pub role: Role,
}

/// One member of a team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub account: Account,
    pub role: Role,
}

/// A project and its current head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: ProjectId,
    pub team: TeamId,
    /// Unique ignoring case within the team.
    pub name: String,
    pub head_version: VersionNumber,
    pub head_root: ObjectId,
    pub created: Timestamp,
}

/// A project as an account sees it: with the role it has there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibleProject {
    pub project: Project,
    pub role: Role,
}

/// One version of a project. Version 0 is written when the project is created, with the empty
/// dir as its root, no parent, the creator as its author and [`PROJECT_CREATED_MESSAGE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub project: ProjectId,
    pub number: VersionNumber,
    pub root: ObjectId,
    /// The version before it; `None` only for version 0. Always `number - 1`: commits are
    /// linear (a push on an older base is a conflict, or is rebased onto the head).
    pub parent: Option<VersionNumber>,
    pub author: AccountId,
    /// The author's current account name, joined in for history listings.
    pub author_name: String,
    pub time: Timestamp,
    pub message: String,
    /// The push that created it; `None` for version 0.
    pub push_id: Option<PushId>,
}

/// The message of every project's version 0.
pub const PROJECT_CREATED_MESSAGE: &str = "Project created";

/// The root of the empty project: the id of the empty dir.
pub fn empty_root() -> ObjectId {
    Object::Dir(Dir::empty()).id()
}

/// A client-chosen idempotency key for one push: 1 to [`limits::MAX_PUSH_ID_LEN`] ASCII
/// letters, digits, `-` or `_` (a UUID fits). A retry with the same push id gets the original
/// result instead of a second commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushId(String);

impl PushId {
    pub fn new(text: &str) -> Result<Self, CatalogError> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if text.is_empty() || text.len() > limits::MAX_PUSH_ID_LEN || !text.chars().all(valid_char)
        {
            return Err(CatalogError::Invalid {
                field: Field::PushId,
                reason: format!(
                    "a push id is 1 to {} ASCII letters, digits, '-' or '_'",
                    limits::MAX_PUSH_ID_LEN
                ),
            });
        }
        Ok(Self(text.to_owned()))
    }

    /// A fresh random push id (32 hex digits).
    pub fn random() -> Self {
        Self(ProjectId::random().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PushId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PushId {
    type Err = CatalogError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::new(text)
    }
}

/// A request to move a project's head from `base_version` to a new version whose tree is `root`.
///
/// The caller must have stored every object reachable from `root` in the object store first:
/// the catalog does not check, and a commit is what makes a version visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    pub project: ProjectId,
    pub push_id: PushId,
    /// The head the client built on. The commit succeeds only if it is still the head.
    pub base_version: VersionNumber,
    pub root: ObjectId,
    pub author: AccountId,
    pub message: String,
    /// For a push rebased by the server (see `sync_protocol::rebase`): the head it goes on top
    /// of and the rebased root, committed instead of `root` on `base_version`. The push id's
    /// receipt still records `base_version` and `root` as the client sent them, so a retry is
    /// recognized and answered with the rebased version. A lost compare-and-swap records no
    /// receipt: the caller rebases again on the new head, or commits without `onto` to record
    /// the conflict.
    pub onto: Option<Onto>,
}

/// Where a rebased push is committed: on top of `head_version`, with `root`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Onto {
    pub head_version: VersionNumber,
    pub root: ObjectId,
}

/// A request to make an old version's tree the new head, as a new version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    pub project: ProjectId,
    pub push_id: PushId,
    pub base_version: VersionNumber,
    /// The version whose root becomes the new head's root.
    pub version: VersionNumber,
    pub author: AccountId,
    /// `None` writes "Restore version N".
    pub message: Option<String>,
}

/// What a commit did. Errors (unknown project, reused push id, database failure) are
/// [`CatalogError`]s; these two are the expected answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The head is now `version`.
    Committed {
        version: Version,
        /// True when this push id had already committed `version` and nothing new was written:
        /// the answer to a retry after an unknown outcome.
        replayed: bool,
        /// True when the push was rebased: `version` is not on the push's base, and its root is
        /// not the root the push named.
        rebased: bool,
    },
    /// The base was stale: nothing was written. Carries the current head, to pull and merge.
    Conflict {
        head_version: VersionNumber,
        head_root: ObjectId,
    },
}

/// Which page of a project's history to list, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionPage {
    /// Only versions numbered below this one; `None` starts at the head.
    pub before: Option<VersionNumber>,
    /// At most this many, capped at [`limits::MAX_VERSION_PAGE`].
    pub limit: u32,
}

impl Default for VersionPage {
    fn default() -> Self {
        Self {
            before: None,
            limit: limits::DEFAULT_VERSION_PAGE,
        }
    }
}

/// A registered server node: what it said of itself at its last heartbeat, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    pub status: NodeStatus,
    pub heartbeat: Timestamp,
}

/// What a node says of itself with each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Where the load balancer and operators reach it, e.g. `10.0.0.5:8080`.
    pub address: String,
    /// Its `sync-server` version.
    pub version: String,
    /// When its process started.
    pub started: Timestamp,
    /// True once it received SIGTERM: it answers `/readyz` with 503 and is about to leave.
    pub draining: bool,
    pub stats: NodeStats,
}

/// A node's figures at its last heartbeat: its hot cache's counters since it started. Stored
/// as a JSON object, so a newer node may add figures that an older one ignores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NodeStats {
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_evictions: u64,
    /// Bytes the cache holds now.
    pub cache_bytes: u64,
    pub cache_objects: u64,
    pub cache_capacity: u64,
    /// Event streams open on the node now.
    pub event_streams: u64,
}

impl NodeStats {
    /// The share of cache lookups that hit, or `None` before the first lookup.
    pub fn cache_hit_rate(&self) -> Option<f64> {
        let lookups = self.cache_hits + self.cache_misses;
        (lookups > 0).then(|| self.cache_hits as f64 / lookups as f64)
    }

    /// As stored in the catalog.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// From the catalog; a damaged value is reported as such.
    pub fn from_json(text: &str) -> Result<Self, CatalogError> {
        serde_json::from_str(text).map_err(|error| {
            CatalogError::corrupt("nodes", format!("the stats are not a JSON object: {error}"))
        })
    }
}

/// A pack's name: the hash of its bytes (see `store::pack`, which computes it with
/// `PackId::of`). The catalog stores it as its 32 bytes and shows it as 64 hex digits, like an
/// object id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId([u8; 32]);

impl PackId {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The same 64 hex digits as an object id.
        ObjectId::from_bytes(self.0).fmt(f)
    }
}

impl fmt::Debug for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackId({self})")
    }
}

impl FromStr for PackId {
    type Err = sync_protocol::ParseIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse::<ObjectId>().map(|id| Self(*id.as_bytes()))
    }
}

/// One row of a project's object index: where an object's frame is stored and what the object
/// is, so that "is it stored", "what kind and size is it" and "where do I read it" are
/// answered by the catalog without reading the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexedObject {
    pub id: ObjectId,
    /// The pack holding its frame.
    pub pack: PackId,
    /// The frame's first byte, from the start of the pack.
    pub offset: u64,
    /// The frame's length in bytes.
    pub length: u32,
    pub kind: ObjectKind,
    /// The object's content size (a chunk's length, a file's size, 0 for a dir).
    pub size: u64,
}

/// A stored pack as the catalog knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackRecord {
    pub id: PackId,
    /// The whole pack's length in bytes; every frame indexed in it lies within.
    pub length: u64,
    /// How many objects its table of contents lists.
    pub objects: u32,
    /// When it was first indexed. Indexing the same pack again keeps the first time.
    pub created: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_as_hex() {
        let id = ProjectId::random();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<ProjectId>(), Ok(id));
        assert!("ABCDEF".parse::<ProjectId>().is_err());
        assert!("g".repeat(32).parse::<TeamId>().is_err());
        assert!(format!("{}é", "a".repeat(30)).parse::<TeamId>().is_err());
    }

    #[test]
    fn timestamps_convert_both_ways() {
        let now = Timestamp::now();
        assert_eq!(Timestamp::from(SystemTime::from(now)), now);
        let before_epoch = Timestamp::from_unix_millis(-1500);
        assert_eq!(
            Timestamp::from(SystemTime::from(before_epoch)),
            before_epoch
        );
    }

    #[test]
    fn roles_order_by_power() {
        assert!(Role::Owner > Role::Editor && Role::Editor > Role::Viewer);
        for role in [Role::Owner, Role::Editor, Role::Viewer] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
    }

    #[test]
    fn token_hashes_depend_on_the_secret_only() {
        assert_eq!(TokenHash::of_secret(b"a"), TokenHash::of_secret(b"a"));
        assert_ne!(TokenHash::of_secret(b"a"), TokenHash::of_secret(b"b"));
        assert_eq!(format!("{:?}", TokenHash::of_secret(b"a")), "TokenHash(..)");
    }
}
