//! The client library's error types: [`ClientError`] for any operation, [`RemoteError`] for a
//! request to the server (which [`ClientError::Remote`] carries).
//!
//! Both are data: each variant keeps what failed (the path, the object id, the problem document
//! the server answered with its code, the counts) so that callers branch on it, never on message
//! text. Their `Display` is a plain description of what failed; what a user should do about it
//! (log in, pull first, free some space) and which exit code it gets is the `cairn` binary's to
//! say (`src/bin/cairn/errors.rs`).
//!
//! This module is in the lowest layer: it imports nothing from the crate, so every layer may
//! return these types.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use sync_protocol::negotiate::AnswerError as NegotiationAnswerError;
use sync_protocol::patch::DecodeRecordsError;
use sync_protocol::tree::{Path, TreeError};
use sync_protocol::wire::{Head, Operation, Problem, ProblemCode};
use sync_protocol::{CompressError, ObjectError, ObjectId, StreamError};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error(
        "{} is not inside a Cairn working copy (no .cairn/ folder here or above)",
        start.display()
    )]
    NotAWorkingCopy { start: PathBuf },
    #[error("{} is already a Cairn working copy (it has a .cairn/ folder)", root.display())]
    AlreadyAWorkingCopy { root: PathBuf },
    /// A `.cairn/` state file that is missing or does not decode.
    #[error("the working-copy state file {} is corrupted ({detail})", path.display())]
    CorruptState { path: PathBuf, detail: String },
    /// The index was damaged and the tree of its base is not in the object cache to rebuild it
    /// from. Nothing was changed: the files are as they were, the damaged index was left.
    #[error(
        "the index {} was damaged ({detail}) and the tree of the base (version {}) is not in the object cache to rebuild it ({missing} is missing)",
        path.display(),
        version.map_or_else(|| "none".to_owned(), |version| version.to_string())
    )]
    IndexUnrecoverable {
        path: PathBuf,
        detail: String,
        version: Option<u64>,
        missing: sync_protocol::ObjectId,
    },
    /// A `.cairn/` folder of a layout version this client does not read.
    #[error(
        "{} is of layout version {found}; this client reads version {supported}",
        path.display()
    )]
    UnsupportedLayout {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("could not {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The user config holds tokens but other users may read it.
    #[error(
        "{} can be read by other users (mode {mode:03o}) and holds an access token",
        path.display()
    )]
    InsecureConfig { path: PathBuf, mode: u32 },
    #[error("invalid configuration in {}: {detail}", path.display())]
    Config { path: PathBuf, detail: String },
    #[error("no configuration folder found: CAIRN_CONFIG, XDG_CONFIG_HOME and HOME are unset")]
    NoConfigHome,
    /// Another process holds the working copy's lock.
    #[error("another cairn command is working in {} (it holds {})", root.display(), lock.display())]
    Busy { root: PathBuf, lock: PathBuf },
    #[error("server {server:?} is not an http:// or https:// URL")]
    InvalidServerUrl { server: String },
    #[error("project id {project:?} is not 1 to 128 letters, digits, '-', '_' or '.'")]
    InvalidProjectId { project: String },
    #[error("object {id} is missing from the local object cache")]
    ObjectMissing { id: ObjectId },
    /// The cached object failed verification; it was removed from the cache.
    #[error("object {id} in the local object cache is damaged")]
    ObjectCorrupt {
        id: ObjectId,
        #[source]
        source: CompressError,
    },
    /// A file's bytes could not be encoded as objects.
    #[error("could not encode {}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: ObjectError,
    },
    /// The scanned files do not make a valid tree (a folder with too many entries, say).
    #[error("the working copy's files do not make a valid tree")]
    WorkingTree(#[source] TreeError),
    /// A version's tree, read from the object cache, is not a valid tree.
    #[error("the tree of version {version} is invalid")]
    VersionTree {
        version: u64,
        #[source]
        source: TreeError,
    },
    #[error("could not merge the new version into the working copy")]
    Merge(#[from] sync_protocol::merge::MergeError),
    #[error("could not plan the push")]
    Plan(#[from] sync_protocol::plan::PushPlanError),
    /// An object could not go into a push stream (`object` names it, when one did).
    #[error("could not build the push stream")]
    PushStream {
        object: Option<ObjectId>,
        #[source]
        source: Box<StreamError>,
    },
    /// The server's answers during the resume negotiation do not fit the tree.
    #[error("the resume negotiation failed")]
    Negotiation(#[source] NegotiationAnswerError),
    /// A pull's change records do not apply to the base; nothing in the working copy changed.
    #[error("the pull's change records do not apply to the base")]
    PulledRecords(#[from] RecordsError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The last pull left these paths as they were (`Base::pending`): a push
    /// must wait until a pull brings them up to date.
    #[error("the last pull could not update {}", join_paths(paths))]
    PendingPaths { paths: Vec<Path> },
    /// Every round of pull, merge and push found the head moved on again.
    #[error("still behind the head after {attempts} rounds of pull, merge and push")]
    NotConverged { attempts: u32 },
}

fn join_paths(paths: &[Path]) -> String {
    paths
        .iter()
        .map(Path::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ClientError {
    /// The error for an I/O failure while doing `action` ("write", "read", ...) on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// True when the disk (or the user's quota) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Self::Io { source, .. } if is_disk_full(source))
    }

    /// The request error, when the server or the network is the cause.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            Self::Remote(remote) => Some(remote),
            _ => None,
        }
    }
}

/// `map_err` helper: `.map_err(io_error("read", &path))`.
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> ClientError {
    let path = path.into();
    move |source| ClientError::io(action, path, source)
}

/// True for the errors of a full disk or an exceeded quota.
pub fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Why a pull's change records do not apply to the base they were asked against.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    /// A record's inline content does not decode (or its delta's base chunk is not at hand).
    #[error("the records do not decode against the base")]
    Decode(#[source] DecodeRecordsError),
    #[error("the base with the records applied is not a valid tree")]
    Tree(#[source] TreeError),
    #[error("applied to the base they give root {built}, the server named {named}")]
    RootMismatch { built: ObjectId, named: ObjectId },
}

/// Why a request to the server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The server could not be reached, or the connection broke before a whole answer arrived.
    /// `stage` says whether the request may have reached the server.
    #[error("could not reach {url}: {detail}")]
    Network {
        url: String,
        detail: String,
        stage: NetworkStage,
    },
    /// There is no token for this server.
    #[error("not logged in to {server}")]
    NotLoggedIn { server: String },
    /// The server answered `operation` with an error status: its problem document, or `None`
    /// when the body was not one (a proxy's error page, say), and its `Retry-After` (in
    /// seconds; the date form is not read).
    #[error("{server} refused the {} request: {}", operation.route().id, Refusal { status: *status, problem: problem.as_deref() })]
    Refused {
        server: String,
        operation: Operation,
        status: u16,
        problem: Option<Box<Problem>>,
        retry_after: Option<Duration>,
    },
    /// An answer that does not follow the API.
    #[error("the answer of {server} to the {} request does not follow the API", operation.route().id)]
    BadAnswer {
        server: String,
        operation: Operation,
        #[source]
        reason: AnswerError,
    },
}

impl RemoteError {
    /// The problem code of a refusal, when the server sent a problem document with a code this
    /// client knows.
    pub fn code(&self) -> Option<ProblemCode> {
        match self {
            Self::Refused {
                problem: Some(problem),
                ..
            } => problem.code(),
            _ => None,
        }
    }

    /// The problem document of a refusal.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Refused { problem, .. } => problem.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The project's head, when the server refused because the base is stale (`conflict`).
    pub fn conflict_head(&self) -> Option<Head> {
        match self.code() {
            Some(ProblemCode::Conflict) => self.problem().and_then(|problem| problem.head),
            _ => None,
        }
    }

    /// True when the server would not let this client in: no token, a token it refused, a
    /// wrong password (a `401` answer, whatever its code).
    pub fn is_unauthorized(&self) -> bool {
        match self {
            Self::NotLoggedIn { .. } => true,
            Self::Refused { status, .. } => {
                matches!(
                    self.code(),
                    Some(ProblemCode::Unauthorized | ProblemCode::BadCredentials)
                ) || *status == 401
            }
            _ => false,
        }
    }

    /// True when retrying the same request may succeed (the outcome is unknown or transient):
    /// a network failure, or the statuses of a failing server or of a proxy that found no
    /// server (500, 502, 503, 504).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network { .. } => true,
            Self::Refused { status, .. } => matches!(status, 500 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// True when the request certainly never reached a server: no connection was made.
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            Self::Network {
                stage: NetworkStage::Connect,
                ..
            }
        )
    }

    /// How long the server asked to wait before trying again (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// How far a request got before the network failed it: what decides whether a request that
/// is not safe to repeat may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkStage {
    /// No connection was made (refused, unreachable, a failed name lookup or TLS handshake):
    /// the request never left this machine.
    Connect,
    /// The connection was made, then broke or timed out: the request may have reached the
    /// server, and may have been carried out.
    Exchange,
}

/// How an answer breaks the API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    #[error("its JSON body does not parse")]
    Json(#[source] serde_json::Error),
    #[error("its {0} header is missing or invalid")]
    Header(&'static str),
    #[error("its object stream is invalid")]
    Stream(#[source] Box<StreamError>),
    #[error("it carries change records the request did not ask for")]
    UnaskedRecords,
    #[error("it committed root {committed} instead of {expected}")]
    WrongRoot {
        expected: ObjectId,
        committed: ObjectId,
    },
}

/// A refusal's status and problem, as one line.
struct Refusal<'a> {
    status: u16,
    problem: Option<&'a Problem>,
}

impl std::fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.problem {
            Some(problem) => write!(f, "{problem}"),
            None => write!(f, "HTTP status {}", self.status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_stay_small() {
        // They travel in every `Result` of the library: large sources are boxed.
        assert!(std::mem::size_of::<ClientError>() <= 128);
        assert!(std::mem::size_of::<RemoteError>() <= 128);
    }

    #[test]
    fn disk_full_is_told_apart() {
        let error = ClientError::io("write", "/x/y", io::Error::from(io::ErrorKind::StorageFull));
        assert!(error.is_disk_full());
        let error = ClientError::io(
            "read",
            "/x/y",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(!error.is_disk_full());
    }

    #[test]
    fn a_real_enospc_is_disk_full() {
        // /dev/full fails every write with ENOSPC.
        let Ok(mut full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            return;
        };
        let source = std::io::Write::write_all(&mut full, b"x").unwrap_err();
        let error = ClientError::io("write", "/dev/full", source);
        assert!(error.is_disk_full(), "{error:?}");
    }

    #[test]
    fn raw_enospc_is_disk_full() {
        // ENOSPC is 28 on Linux and macOS.
        let error = ClientError::io("write", "/x", io::Error::from_raw_os_error(28));
        assert!(error.is_disk_full());
    }

    fn refused(status: u16, problem: Option<Problem>) -> RemoteError {
        RemoteError::Refused {
            server: "https://cairn.test".to_owned(),
            operation: Operation::Push,
            status,
            problem: problem.map(Box::new),
            retry_after: None,
        }
    }

    #[test]
    fn refusals_are_read_by_their_code() {
        let head = Head {
            version: 7,
            root: sync_protocol::tree::empty_dir_id(),
        };
        let conflict = refused(409, Some(Problem::conflict(head)));
        assert_eq!(conflict.code(), Some(ProblemCode::Conflict));
        assert_eq!(conflict.conflict_head(), Some(head));
        assert!(!conflict.is_transient() && !conflict.is_unauthorized());
        // Another 409 is no conflict, whatever its text says.
        let exists = refused(
            409,
            Some(Problem::new(ProblemCode::AlreadyExists).with_detail("conflict")),
        );
        assert_eq!(exists.conflict_head(), None);
        assert!(refused(401, Some(Problem::new(ProblemCode::BadCredentials))).is_unauthorized());
        // A proxy's answer without a problem document: the status still says what happened.
        let gateway = refused(502, None);
        assert_eq!(gateway.code(), None);
        assert!(gateway.is_transient());
        assert!(refused(401, None).is_unauthorized());
        assert!(gateway.to_string().contains("HTTP status 502"), "{gateway}");
        // A code a newer server added is kept as text, and is no known code.
        let mut newer = Problem::new(ProblemCode::BadRequest);
        newer.code = "teapot".to_owned();
        assert_eq!(refused(418, Some(newer)).code(), None);
    }
}
