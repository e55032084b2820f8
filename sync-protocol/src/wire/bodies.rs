//! The JSON bodies of the API: one serde type per request and answer, used by the server to
//! parse and write them and by the client to write and parse them.
//!
//! Request bodies refuse unknown fields. Ids the server checks itself (object ids, push ids,
//! roles in requests) are strings here, so that a malformed one is answered `422
//! invalid-field` naming the field, not `400 bad-json`; in answers they are typed.
//! Times are RFC 3339 strings in UTC with milliseconds.
//!
//! With the `schema` feature the `schemars` attributes below state in the JSON schemas what
//! the server enforces beyond the Rust types (id patterns, text patterns and lengths, time
//! formats); they never change what serde reads or writes. The server's text limits count
//! characters (Unicode scalar values), as `maxLength` does, so the schemas state them exactly.

use serde::{Deserialize, Serialize};

use crate::ObjectId;

#[cfg(feature = "schema")]
use schemars::JsonSchema;

/// A version number: 0 is a project's first, empty version.
pub type VersionNumber = u64;

/// The pattern of account, team, project and token ids: 32 lowercase hex digits.
pub const ID_PATTERN: &str = "^[0-9a-f]{32}$";
/// The pattern of a push id: [`super::is_valid_push_id`] as a regular expression.
pub const PUSH_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";
/// The pattern of an API token's secret: [`super::TOKEN_PREFIX`] and 64 lowercase hex digits.
pub const TOKEN_PATTERN: &str = "^cairn_[0-9a-f]{64}$";

/// The pattern of text the server stores as a team or project name or a token label: at least
/// one character that is not white space (Unicode `White_Space`, what `str::trim` removes) and
/// no control character (Unicode `Cc`, NUL among them).
pub const TEXT_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$";
/// The pattern of an account name: letters and digits (Unicode `Alphabetic` and `N`, what
/// `char::is_alphanumeric` takes), `.`, `-` and `_`, starting with a letter or digit. Account
/// names never hold `@`, which marks an email when logging in.
pub const ACCOUNT_NAME_PATTERN: &str = r"^[\p{Alpha}\p{N}][\p{Alpha}\p{N}._-]*$";
/// The pattern of an email address as the server checks it: one or more characters before the
/// first `@`, a dot somewhere after it, and no white space or control character anywhere.
pub const EMAIL_PATTERN: &str = r"^[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+@[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*\.[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$";
/// The pattern of a version message: anything but NUL, which PostgreSQL's text cannot hold.
/// It may be empty and span lines.
pub const MESSAGE_PATTERN: &str = r"^[^\x00]*$";

/// The longest account, team or project name, in characters (Unicode scalar values, as the
/// document's `maxLength` counts them; so are the limits below).
pub const MAX_NAME_CHARS: usize = 100;
/// The longest email address, in characters (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// The longest token label, in characters.
pub const MAX_TOKEN_LABEL_CHARS: usize = 100;
/// The longest version message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;
/// The shortest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// A member's role in a team, which is their role on each of the team's projects.
///
/// Ordered by power: `Viewer < Editor < Owner`, so `role >= Role::Editor` asks "may push".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May read projects and their history.
    Viewer,
    /// May also push, restore and create projects.
    Editor,
    /// May also manage members.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Owner => "owner",
        }
    }

    /// The role named `text` (`viewer`, `editor` or `owner`), if any.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Self::Viewer),
            "editor" => Some(Self::Editor),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }

    pub fn can_write(self) -> bool {
        self >= Self::Editor
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// Accounts and tokens.

/// `POST /v1/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    /// Letters, digits, `.`, `-` and `_`, starting with a letter or digit; at most 100 characters.
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(ACCOUNT_NAME_PATTERN), length(min = 1, max = MAX_NAME_CHARS))
    )]
    pub name: String,
    /// At most 254 characters.
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(EMAIL_PATTERN), length(max = MAX_EMAIL_CHARS))
    )]
    pub email: String,
    /// At least 8 characters, at most 1,024.
    #[cfg_attr(
        feature = "schema",
        schemars(length(min = MIN_PASSWORD_CHARS, max = MAX_PASSWORD_CHARS))
    )]
    pub password: String,
}

/// `POST /v1/sessions`: `login` is the account name or email.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LogIn {
    pub login: String,
    pub password: String,
    /// The new token's label, at most 100 characters; `session` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(TEXT_PATTERN), length(min = 1, max = MAX_TOKEN_LABEL_CHARS))
    )]
    pub label: Option<String>,
}

// By hand: a password never lands in a log.
impl std::fmt::Debug for LogIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogIn")
            .field("login", &self.login)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// At most 100 characters.
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(TEXT_PATTERN), length(min = 1, max = MAX_TOKEN_LABEL_CHARS))
    )]
    pub label: String,
}

/// An account as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Account {
    #[cfg_attr(feature = "schema", schemars(pattern(ID_PATTERN)))]
    pub id: String,
    pub name: String,
    pub email: String,
    #[cfg_attr(feature = "schema", schemars(extend("format" = "date-time")))]
    pub created: String,
}

/// A new token: its secret is in this answer only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct NewToken {
    #[cfg_attr(feature = "schema", schemars(pattern(TOKEN_PATTERN)))]
    pub token: String,
    #[cfg_attr(feature = "schema", schemars(pattern(ID_PATTERN)))]
    pub token_id: String,
    pub label: String,
    pub account: Account,
}

// By hand: the secret never lands in a log or a panic message.
impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("token_id", &self.token_id)
            .field("label", &self.label)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// One of the caller's tokens, never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Token {
    #[cfg_attr(feature = "schema", schemars(pattern(ID_PATTERN)))]
    pub id: String,
    pub label: String,
    #[cfg_attr(feature = "schema", schemars(extend("format" = "date-time")))]
    pub created: String,
    /// Updated at most once a minute; `null` when never used.
    #[cfg_attr(feature = "schema", schemars(extend("format" = "date-time")))]
    pub last_used: Option<String>,
    /// When it was revoked; `null` while it is valid.
    #[cfg_attr(feature = "schema", schemars(extend("format" = "date-time")))]
    pub revoked: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

// Teams.

/// `POST /v1/teams` and `POST /v1/teams/{team}/projects`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NameBody {
    /// At most 100 characters; unique in its scope ignoring case.
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(TEXT_PATTERN), length(min = 1, max = MAX_NAME_CHARS))
    )]
    pub name: String,
}

/// A team, with the caller's role in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Team {
    #[cfg_attr(feature = "schema", schemars(pattern(ID_PATTERN)))]
    pub id: String,
    pub name: String,
    pub role: Role,
    #[cfg_attr(feature = "schema", schemars(extend("format" = "date-time")))]
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct TeamList {
    pub teams: Vec<Team>,
}

/// `PUT /v1/teams/{team}/members/{account}`: `owner`, `editor` or `viewer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    #[cfg_attr(feature = "schema", schemars(with = "Role"))]
    pub role: String,
}

/// An account as a member list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct AccountRef {
    #[cfg_attr(feature = "schema", schemars(pattern(ID_PATTERN)))]
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Member {
    pub account: AccountRef,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct MemberList {
    pub members: Vec<Member>,
}

// Projects and history.

/// A project and its head, with the caller's role on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Project {
    #[cfg_attr(feature = "schema", schemars(pattern(ID_PATTERN)))]
    pub id: String,
    /// The team's id.
    #[cfg_attr(feature = "schema", schemars(pattern(ID_PATTERN)))]
    pub team: String,
    pub name: String,
    pub role: Role,
    /// The head version number.
    pub version: VersionNumber,
    /// The head version's root dir.
    pub root: ObjectId,
    #[cfg_attr(feature = "schema", schemars(extend("format" = "date-time")))]
    pub created: String,
}

impl Project {
    pub fn head(&self) -> Head {
        Head {
            version: self.version,
            root: self.root,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct ProjectList {
    pub projects: Vec<Project>,
}

/// A project's head: its latest version and root. Also the `head` member of a `conflict`
/// problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Head {
    pub version: VersionNumber,
    pub root: ObjectId,
}

/// One version of a project's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Version {
    pub number: VersionNumber,
    pub root: ObjectId,
    /// The version it was committed on; `null` for version 0.
    pub parent: Option<VersionNumber>,
    pub author: AccountRef,
    #[cfg_attr(feature = "schema", schemars(extend("format" = "date-time")))]
    pub time: String,
    pub message: String,
    /// The push id that made it; `null` for version 0.
    #[cfg_attr(feature = "schema", schemars(pattern(PUSH_ID_PATTERN)))]
    pub push_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct VersionList {
    pub versions: Vec<Version>,
}

/// The query of `GET /v1/projects/{project}/versions`: newest first, older than `before`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<VersionNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `POST /v1/projects/{project}/restore`: `version`'s tree as a new version on
/// `base_version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Restore {
    pub version: VersionNumber,
    pub base_version: VersionNumber,
    /// A new random one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(pattern(PUSH_ID_PATTERN)))]
    pub push_id: Option<String>,
    /// At most 4,096 characters; `Restore version N` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(MESSAGE_PATTERN), length(max = MAX_MESSAGE_CHARS))
    )]
    pub message: Option<String>,
}

/// The answer to a push, commit or restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Committed {
    pub version: VersionNumber,
    pub root: ObjectId,
    /// True when this push id had already committed: the answer to a retry.
    pub replayed: bool,
    /// True when the push's base was no longer the head and the server committed its changes
    /// on top of the head (asked for with the `cairn-rebase` header): `version` follows the
    /// head, not the push's base, and `root` is the head's tree with the push's changes, not
    /// the root the push named. Absent (false) otherwise.
    #[serde(default, skip_serializing_if = "is_false")]
    pub rebased: bool,
}

// Sync.

/// What a pull wants: a version number or a root id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(untagged)]
pub enum Want {
    Version(VersionNumber),
    Root(#[cfg_attr(feature = "schema", schemars(with = "ObjectId"))] String),
}

/// `POST /v1/projects/{project}/pull`. An empty body pulls the head against nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// A version number or a root id; the head when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub want: Option<Want>,
    /// The root the client has; the empty project when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<ObjectId>"))]
    pub have: Option<String>,
    /// The client can rebuild dirs from change records applied to its listing of `have`: the
    /// server may then answer a diff of 1 to [`super::MAX_RECORDS`] changes with change records
    /// and the new non-dir objects instead of the dirs.
    #[serde(default, skip_serializing_if = "is_false")]
    #[cfg_attr(
        feature = "schema",
        schemars(
            description = format!(
                "The client can rebuild dirs from change records applied to its listing of \
                 `have`: the server may then answer a diff of 1 to {} changes with change \
                 records and the new non-dir objects instead of the dirs.",
                super::MAX_RECORDS
            ),
            extend("default" = false)
        )
    )]
    pub records: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The query of `POST /v1/projects/{project}/push`, whose body is an object stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PushQuery {
    #[cfg_attr(feature = "schema", schemars(pattern(PUSH_ID_PATTERN)))]
    pub push_id: String,
    pub base_version: VersionNumber,
    #[cfg_attr(feature = "schema", schemars(with = "ObjectId"))]
    pub root: String,
    /// At most 4,096 characters.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(MESSAGE_PATTERN), length(max = MAX_MESSAGE_CHARS))
    )]
    pub message: String,
}

/// `POST /v1/projects/{project}/commits`: a root whose objects are all stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Commit {
    #[cfg_attr(feature = "schema", schemars(pattern(PUSH_ID_PATTERN)))]
    pub push_id: String,
    pub base_version: VersionNumber,
    #[cfg_attr(feature = "schema", schemars(with = "ObjectId"))]
    pub root: String,
    /// At most 4,096 characters.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(MESSAGE_PATTERN), length(max = MAX_MESSAGE_CHARS))
    )]
    pub message: String,
}

/// `POST /v1/projects/{project}/missing`: at most [`super::MAX_MISSING_IDS`] ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(
    feature = "schema",
    schemars(description = format!(
        "`POST /v1/projects/{{project}}/missing`: at most {} ids.",
        super::MAX_MISSING_IDS
    ))
)]
#[serde(deny_unknown_fields)]
pub struct MissingQuery {
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Vec<ObjectId>", length(max = super::MAX_MISSING_IDS))
    )]
    pub ids: Vec<String>,
}

/// Which of the asked ids the project does not store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct MissingAnswer {
    pub missing: Vec<ObjectId>,
}

/// The answer to an upload of objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct UploadAnswer {
    /// Objects in the stream (duplicates counted once).
    pub received: usize,
}

/// The data of a `head` event on `GET /v1/projects/{project}/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct HeadEvent {
    /// The project's id.
    #[cfg_attr(feature = "schema", schemars(pattern(ID_PATTERN)))]
    pub project: String,
    pub version: VersionNumber,
    pub root: ObjectId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_travel_as_hex() {
        let root = crate::tree::empty_dir_id();
        let text = serde_json::to_string(&Head { version: 3, root }).unwrap();
        assert_eq!(text, format!("{{\"version\":3,\"root\":\"{root}\"}}"));
        assert_eq!(serde_json::from_str::<Head>(&text).unwrap().root, root);
        assert!(serde_json::from_str::<Head>("{\"version\":3,\"root\":\"AB\"}").is_err());
    }

    #[test]
    fn request_bodies_refuse_unknown_fields_and_take_defaults() {
        assert!(serde_json::from_str::<PullRequest>("{\"wants\": 1}").is_err());
        let pull: PullRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(pull, PullRequest::default());
        let pull: PullRequest = serde_json::from_str("{\"want\": 4}").unwrap();
        assert_eq!(pull.want, Some(Want::Version(4)));
        let pull: PullRequest = serde_json::from_str("{\"want\": \"ab\"}").unwrap();
        assert_eq!(pull.want, Some(Want::Root("ab".into())));
    }

    #[test]
    fn roles_are_lowercase_and_ordered() {
        assert_eq!(serde_json::to_string(&Role::Editor).unwrap(), "\"editor\"");
        assert_eq!(Role::parse("owner"), Some(Role::Owner));
        assert_eq!(Role::parse("Owner"), None);
        assert!(Role::Viewer < Role::Editor && Role::Editor < Role::Owner);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let log_in = LogIn {
            login: "ada".into(),
            password: "correct horse".into(),
            label: None,
        };
        assert!(!format!("{log_in:?}").contains("horse"));
    }
}
