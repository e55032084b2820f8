//! What a failure reads like, and which exit code it gets: the binary's wording of the
//! library's typed errors (`ClientError`, `RemoteError`), with what the user can do about it.
//!
//! The library says what failed and keeps the data (paths, ids, the server's problem code); this
//! module decides the words, the hints ("run `cairn login --server ...`", "pull first") and the
//! exit code, by matching on variants and problem codes, never on message text.

use std::fmt::Write as _;
use std::io;

use sync_client::ClientError;
use sync_client::transport::{AnswerError, NetworkStage, RemoteError};
use sync_protocol::wire::{Operation, ProblemCode};

/// Exit code: the command failed (I/O error, damaged `.cairn/` state, bad configuration).
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code: the command line is invalid (clap's own code).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code: the folder is not inside a working copy.
pub(crate) const EXIT_NOT_A_WORKING_COPY: u8 = 3;
// Exit code 4 meant "not implemented yet"; no command answers it today, and it stays reserved
// so that scripts written against earlier builds keep their meaning.
/// Exit code: not logged in, the token was refused, or the role is too low.
pub(crate) const EXIT_AUTH: u8 = 5;
/// Exit code: the project moved on and the push or restore could not be brought up to date.
pub(crate) const EXIT_CONFLICT: u8 = 6;
/// Exit code: the server could not be reached, the connection broke, or the server (or the
/// proxy in front of it) stayed unavailable (502, 503, 504) through every retry.
pub(crate) const EXIT_NETWORK: u8 = 7;

/// The library error in `error`'s chain, if any.
enum Found<'a> {
    Client(&'a ClientError),
    Remote(&'a RemoteError),
}

fn find(error: &anyhow::Error) -> Option<Found<'_>> {
    error.chain().find_map(|cause| {
        if let Some(client) = cause.downcast_ref::<ClientError>() {
            Some(Found::Client(client))
        } else {
            cause.downcast_ref::<RemoteError>().map(Found::Remote)
        }
    })
}

/// The exit code for `error`.
pub(crate) fn exit_code(error: &anyhow::Error) -> u8 {
    let remote = match find(error) {
        Some(Found::Client(ClientError::NotAWorkingCopy { .. })) => {
            return EXIT_NOT_A_WORKING_COPY;
        }
        Some(Found::Client(ClientError::NotConverged { .. })) => return EXIT_CONFLICT,
        Some(Found::Client(ClientError::Remote(remote))) | Some(Found::Remote(remote)) => remote,
        _ => return EXIT_FAILURE,
    };
    match remote_kind(remote) {
        RemoteKind::Unauthorized | RemoteKind::Forbidden => EXIT_AUTH,
        RemoteKind::Conflict => EXIT_CONFLICT,
        RemoteKind::Network | RemoteKind::Unavailable => EXIT_NETWORK,
        RemoteKind::NotFound | RemoteKind::Other => EXIT_FAILURE,
    }
}

/// What a request error means to the user.
enum RemoteKind {
    Network,
    /// A failing server or a proxy without one (502, 503, 504), after the retries.
    Unavailable,
    /// Not logged in, a refused token, a wrong password.
    Unauthorized,
    /// The role is too low.
    Forbidden,
    Conflict,
    NotFound,
    Other,
}

/// By problem code; by status only when the server sent no code this client knows (a proxy's
/// error page, a newer server's code).
fn remote_kind(error: &RemoteError) -> RemoteKind {
    if let RemoteError::Network { .. } = error {
        return RemoteKind::Network;
    }
    if error.is_unauthorized() {
        return RemoteKind::Unauthorized;
    }
    match (error.code(), error.status()) {
        (Some(ProblemCode::Forbidden), _) | (None, Some(403)) => RemoteKind::Forbidden,
        (Some(ProblemCode::Conflict), _) if error.conflict_head().is_some() => RemoteKind::Conflict,
        (Some(ProblemCode::NotFound), _) => RemoteKind::NotFound,
        (Some(ProblemCode::Unavailable), _) | (None, Some(502..=504)) => RemoteKind::Unavailable,
        _ => RemoteKind::Other,
    }
}

/// The message for `error`: contexts the binary added, then the library error worded here
/// (with its hint), or anyhow's own chain when the error is not the library's.
pub(crate) fn message(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        if !out.is_empty() {
            out.push_str(": ");
        }
        if let Some(client) = cause.downcast_ref::<ClientError>() {
            out.push_str(&client_message(client));
            return out;
        }
        if let Some(remote) = cause.downcast_ref::<RemoteError>() {
            out.push_str(&remote_message(remote));
            return out;
        }
        let _ = write!(out, "{cause}");
    }
    out
}

/// `error` and its sources, as `a: b: c`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(out, ": {cause}");
        source = cause.source();
    }
    out
}

pub(crate) fn client_message(error: &ClientError) -> String {
    match error {
        ClientError::NotAWorkingCopy { .. } => {
            format!("{error}; run `cairn init --server URL --project ID` to make one")
        }
        ClientError::CorruptState { .. } => {
            format!("{error}; move the .cairn/ folder aside and clone the project again")
        }
        ClientError::UnsupportedLayout { .. } => format!("{error}; update cairn"),
        ClientError::IndexUnrecoverable { .. } => format!(
            "{error}; nothing was changed: clone the project into a new folder and copy your edits over"
        ),
        ClientError::Io {
            action,
            path,
            source,
        } => io_message(action, &path.display().to_string(), source),
        ClientError::InsecureConfig { path, .. } => {
            format!("{error}; run `chmod 600 {}` and try again", path.display())
        }
        ClientError::NoConfigHome => {
            "no configuration folder found: set CAIRN_CONFIG, XDG_CONFIG_HOME or HOME".to_owned()
        }
        ClientError::Busy { .. } => format!("{error}; wait for it to finish"),
        ClientError::InvalidServerUrl { .. } | ClientError::InvalidProjectId { .. } => {
            format!("invalid argument: {error}")
        }
        ClientError::ObjectMissing { .. } => {
            format!("{error}; it must be downloaded (pull) before it can be written")
        }
        ClientError::ObjectCorrupt { source, .. } => {
            format!("{error}: {source}; it was removed, pull again")
        }
        ClientError::Remote(remote) => remote_message(remote),
        ClientError::PendingPaths { .. } => format!(
            "{error} (see `cairn status`); fix the cause (a file open elsewhere, an unlisted \
             file in the way) and pull again before pushing"
        ),
        ClientError::NotConverged { attempts } => format!(
            "others kept pushing: still behind the head after {attempts} attempts (each pulls \
             and merges first); nothing was lost, run the command again"
        ),
        other => chain(other),
    }
}

/// How I/O failures read: by kind, so a full disk or a permission problem reads as such
/// instead of as an errno.
fn io_message(action: &str, path: &str, source: &io::Error) -> String {
    match source.kind() {
        io::ErrorKind::StorageFull => format!(
            "could not {action} {path}: the disk is full; free some space and run the command \
             again (nothing was lost: files are replaced only once fully written)"
        ),
        io::ErrorKind::QuotaExceeded => format!(
            "could not {action} {path}: your disk quota is exceeded; free some space and run \
             the command again"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "could not {action} {path}: permission denied; check the owner and permissions of \
             the file and its folder"
        ),
        io::ErrorKind::ReadOnlyFilesystem => {
            format!("could not {action} {path}: the file system is read-only")
        }
        _ => format!("could not {action} {path}: {source}"),
    }
}

/// What the user asked the server for, in words.
fn operation_words(operation: Operation) -> &'static str {
    match operation {
        Operation::LogIn => "the log in",
        Operation::ListTeams => "the list of teams",
        Operation::ListProjects => "the list of projects",
        Operation::CreateProject => "creating the project",
        Operation::ShowProject => "reading the project",
        Operation::ListVersions => "the list of versions",
        Operation::Pull => "the pull",
        Operation::Push => "the push",
        Operation::Missing => "the missing-objects question",
        Operation::Upload => "the upload",
        Operation::Commit => "the commit",
        Operation::Restore => "the restore",
        Operation::Events => "the event stream",
        _ => operation.route().summary,
    }
}

fn remote_message(error: &RemoteError) -> String {
    let login = |server: &str| format!("run `cairn login --server {server}`");
    match error {
        RemoteError::Network {
            url,
            detail,
            stage: NetworkStage::Connect,
        } => format!(
            "could not reach the server at {url}: {detail}; check the URL and that the server \
             is running"
        ),
        RemoteError::Network { url, detail, .. } => format!(
            "the connection to the server broke during the request to {url}: {detail}; run \
             the command again"
        ),
        RemoteError::NotLoggedIn { server } => {
            format!("you are not logged in to {server}; {}", login(server))
        }
        RemoteError::Refused {
            server,
            operation,
            status,
            problem,
            ..
        } => {
            let what = operation_words(*operation);
            let (code, detail) = match problem {
                Some(problem) => (problem.code.as_str(), problem.detail.as_str()),
                None => ("", ""),
            };
            let refused = if problem.is_some() {
                format!("the server refused {what} ({status} {code}): {detail}")
            } else {
                format!("the server refused {what} (HTTP status {status})")
            };
            match remote_kind(error) {
                RemoteKind::Unauthorized if error.code() == Some(ProblemCode::BadCredentials) => {
                    format!(
                        "log in failed: unknown account or wrong password; {}",
                        login(server)
                    )
                }
                RemoteKind::Unauthorized => format!(
                    "{server} did not accept your access token ({}); {}",
                    if detail.is_empty() { code } else { detail },
                    login(server)
                ),
                RemoteKind::Conflict => {
                    let head = error.conflict_head().map_or(0, |head| head.version);
                    format!(
                        "the project has moved on to version {head} while this was based on \
                         an older one; pull and try again"
                    )
                }
                RemoteKind::Forbidden => format!(
                    "{refused}; your role in the project's team is too low for this (ask a \
                     team owner)"
                ),
                RemoteKind::NotFound => format!(
                    "{refused}; it does not exist or you are not a member of its team (see \
                     `cairn projects`)"
                ),
                RemoteKind::Unavailable => format!(
                    "the server at {server} is unavailable (HTTP status {status}{}); try again \
                     in a moment",
                    if code.is_empty() {
                        String::new()
                    } else {
                        format!(" {code}")
                    }
                ),
                RemoteKind::Network | RemoteKind::Other => refused,
            }
        }
        RemoteError::BadAnswer {
            operation, reason, ..
        } => {
            let what = operation_words(*operation);
            let reason = match reason {
                AnswerError::UnaskedRecords | AnswerError::WrongRoot { .. } => reason.to_string(),
                other => chain(other),
            };
            format!("the server's answer to {what} is not what the API describes: {reason}")
        }
        other => chain(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use sync_protocol::wire::{Head, Problem};

    fn worded(error: ClientError) -> (String, u8) {
        let error = anyhow::Error::from(error);
        (message(&error), exit_code(&error))
    }

    fn refused(operation: Operation, status: u16, problem: Option<Problem>) -> ClientError {
        ClientError::Remote(RemoteError::Refused {
            server: "https://cairn.test".to_owned(),
            operation,
            status,
            problem: problem.map(Box::new),
            retry_after: None,
        })
    }

    #[test]
    fn io_failures_read_by_kind() {
        let (text, code) = worded(ClientError::io(
            "write",
            "/x/y",
            io::Error::from(io::ErrorKind::StorageFull),
        ));
        assert!(
            text.contains("disk is full") && text.contains("/x/y"),
            "{text}"
        );
        assert_eq!(code, EXIT_FAILURE);
        let (text, _) = worded(ClientError::io(
            "read",
            "/x/y",
            io::Error::from(io::ErrorKind::PermissionDenied),
        ));
        assert!(text.contains("permission denied"), "{text}");
        // ENOSPC as the system reports it.
        let (text, _) = worded(ClientError::io(
            "write",
            "/x",
            io::Error::from_raw_os_error(28),
        ));
        assert!(text.contains("disk is full"), "{text}");
    }

    #[test]
    fn hints_and_exit_codes() {
        let (text, code) = worded(ClientError::NotAWorkingCopy {
            start: PathBuf::from("/somewhere"),
        });
        assert!(text.contains("not inside a Cairn working copy"), "{text}");
        assert!(text.contains("cairn init"), "{text}");
        assert_eq!(code, EXIT_NOT_A_WORKING_COPY);

        let (text, code) = worded(ClientError::Remote(RemoteError::NotLoggedIn {
            server: "https://cairn.test".to_owned(),
        }));
        assert!(
            text.contains("cairn login --server https://cairn.test"),
            "{text}"
        );
        assert_eq!(code, EXIT_AUTH);

        let (text, code) = worded(refused(
            Operation::Pull,
            401,
            Some(Problem::new(ProblemCode::Unauthorized).with_detail("unknown token")),
        ));
        assert!(text.contains("did not accept your access token"), "{text}");
        assert!(text.contains("cairn login"), "{text}");
        assert_eq!(code, EXIT_AUTH);

        let (text, code) = worded(refused(
            Operation::Push,
            403,
            Some(Problem::new(ProblemCode::Forbidden)),
        ));
        assert!(text.contains("role"), "{text}");
        assert_eq!(code, EXIT_AUTH);

        let head = Head {
            version: 9,
            root: sync_protocol::tree::empty_dir_id(),
        };
        let (text, code) = worded(refused(Operation::Push, 409, Some(Problem::conflict(head))));
        assert!(
            text.contains("version 9") && text.contains("pull"),
            "{text}"
        );
        assert_eq!(code, EXIT_CONFLICT);

        // A 409 of another code is no conflict.
        let (_, code) = worded(refused(
            Operation::CreateProject,
            409,
            Some(Problem::new(ProblemCode::AlreadyExists)),
        ));
        assert_eq!(code, EXIT_FAILURE);

        let (text, code) = worded(ClientError::Remote(RemoteError::Network {
            url: "http://127.0.0.1:9/v1/projects/p/pull".to_owned(),
            detail: "connection refused".to_owned(),
            stage: NetworkStage::Connect,
        }));
        assert!(
            text.contains("http://127.0.0.1:9/v1/projects/p/pull"),
            "{text}"
        );
        assert!(text.contains("could not reach"), "{text}");
        assert_eq!(code, EXIT_NETWORK);
        let (text, code) = worded(ClientError::Remote(RemoteError::Network {
            url: "http://127.0.0.1:9/v1/projects/p/pull".to_owned(),
            detail: "connection reset".to_owned(),
            stage: NetworkStage::Exchange,
        }));
        assert!(
            text.contains("connection to the server broke") && text.contains("/p/pull"),
            "{text}"
        );
        assert_eq!(code, EXIT_NETWORK);

        // What is left of a failover that outlasted the retries: one line, the network's code.
        let (text, code) = worded(refused(Operation::Pull, 503, None));
        assert_eq!(
            text,
            "the server at https://cairn.test is unavailable (HTTP status 503); try again in a \
             moment"
        );
        assert_eq!(code, EXIT_NETWORK);
        let (text, code) = worded(refused(
            Operation::Push,
            503,
            Some(Problem::new(ProblemCode::Unavailable).with_detail("shutting down")),
        ));
        assert!(
            text.contains("unavailable (HTTP status 503 unavailable)"),
            "{text}"
        );
        assert_eq!(code, EXIT_NETWORK);
        let (_, code) = worded(refused(Operation::Pull, 500, None));
        assert_eq!(code, EXIT_FAILURE);

        let (text, code) = worded(ClientError::PendingPaths {
            paths: vec![sync_protocol::tree::Path::new("spec.yaml").unwrap()],
        });
        assert!(
            text.contains("could not update spec.yaml") && text.contains("pull again"),
            "{text}"
        );
        assert_eq!(code, EXIT_FAILURE);

        let (_, code) = worded(ClientError::NotConverged { attempts: 5 });
        assert_eq!(code, EXIT_CONFLICT);

        let (text, code) = worded(ClientError::InsecureConfig {
            path: PathBuf::from("/home/ada/.config/cairn/config.toml"),
            mode: 0o644,
        });
        assert!(
            text.contains("chmod 600 /home/ada/.config/cairn/config.toml"),
            "{text}"
        );
        assert!(text.contains("mode 644"), "{text}");
        assert_eq!(code, EXIT_FAILURE);
    }

    #[test]
    fn contexts_stay_in_front() {
        let error = anyhow::Error::from(ClientError::NoConfigHome).context("logging in");
        let text = message(&error);
        assert!(
            text.starts_with("logging in: no configuration folder"),
            "{text}"
        );
        assert!(text.contains("set CAIRN_CONFIG"), "{text}");
    }
}
