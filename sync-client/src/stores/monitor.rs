//! Asking the optional file-system monitor (`cairn daemon`) what changed since the last scan.
//!
//! A monitor watches one working copy and answers, for a token it handed out earlier, which
//! paths may have changed since. A command asks *before* it scans, remembers the new token in
//! the index only once its scan is recorded, and walks only the paths named; anything the
//! monitor cannot vouch for (no monitor, an unknown token, events lost or overflowed, a monitor
//! just started) is [`Changes::Everything`] or [`Changes::Unavailable`], and the command walks
//! the whole folder as it does without a monitor. So a monitor can make a command faster, never
//! wrong.
//!
//! This is the contract between the index (which stores the token) and the daemon (which
//! answers, `operations::daemon`), and the client half of their conversation:
//!
//! - The socket: a Unix socket at [`socket_path`], `.cairn/monitor.sock` unless that path is too
//!   long for a socket address (`sun_path`, 108 bytes with its NUL); then a name made of a hash
//!   of the root in `$XDG_RUNTIME_DIR`, else in the temp folder. A socket not owned by the owner
//!   of `.cairn/` is never asked (another user could have put it in a shared temp folder).
//! - The wire format ([`PROTOCOL`]): one request, one answer, each one line of JSON, then the
//!   daemon closes the connection. `{"version":1,"request":"changes","since":"…"|null}` is
//!   answered `{"version":1,"answer":"paths","token":"…","paths":["a/b.json",…]}`, or
//!   `{"version":1,"answer":"everything","token":"…"}`; `{"version":1,"request":"stop"}` by
//!   `{"version":1,"answer":"stopping"}`; anything else by `{"version":1,"answer":"error",
//!   "message":"…"}`. Paths are relative, `/`-separated, UTF-8 (a daemon that saw a path that
//!   is not UTF-8 answers `everything`).
//! - Tokens: `<instance>-<sequence>`, the daemon's random instance id and the number of the
//!   last event it had seen when it answered. Opaque to the client.
//! - [`changes_since`] gives up after [`QUERY_TIMEOUT`]: a slow monitor is no monitor.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Component, Path as FsPath, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::META_DIR;

/// An opaque token from the monitor: "the state of the folder as of this answer".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Token(pub String);

/// What the monitor says changed since a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// No monitor answers for this working copy: walk everything, and keep no token.
    Unavailable,
    /// A monitor answered but cannot vouch for the interval (no token or one it did not issue,
    /// events lost or overflowed, started since): walk everything, then keep `token`.
    Everything { token: Token },
    /// Only these paths, relative to the root, may have changed since the token; every other
    /// path is as the index recorded it. A path that is now a folder means "walk this folder
    /// and everything below it"; a path that no longer exists was removed (or renamed away),
    /// and so was everything below it. Keep `token` once the scan is recorded.
    Paths { token: Token, paths: Vec<PathBuf> },
}

/// The version of the wire format, in every request and answer.
pub const PROTOCOL: u32 = 1;
/// The socket's name in `.cairn/`.
pub const SOCKET_NAME: &str = "monitor.sock";
/// The longest socket path a socket address holds: `sun_path` is 108 bytes on Linux, with the
/// terminating NUL (104 on the BSDs and macOS).
#[cfg(target_os = "linux")]
pub const MAX_SOCKET_PATH: usize = 107;
#[cfg(not(target_os = "linux"))]
pub const MAX_SOCKET_PATH: usize = 103;
/// How long [`changes_since`] waits for the whole conversation before it counts the monitor as
/// unavailable. The daemon's own wait for its cookie is shorter (`operations::daemon`).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest request line a daemon reads (a token is about 50 bytes).
pub const MAX_REQUEST: u64 = 4096;
/// The longest answer a client reads: the daemon's path bound times long paths, with room.
const MAX_ANSWER: u64 = 256 << 20;

/// A request to the daemon, one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum RequestBody {
    /// What changed since `since` (none: "I have no token").
    Changes { since: Option<String> },
    /// Stop the daemon.
    Stop,
}

/// The daemon's answer, one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub version: u32,
    #[serde(flatten)]
    pub body: AnswerBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum AnswerBody {
    Everything { token: String },
    Paths { token: String, paths: Vec<String> },
    Stopping,
    Error { message: String },
}

/// The root as the daemon and its clients both name it: canonical when it can be, so that
/// `-C ./x` and `/home/me/x` find the same socket.
pub fn canonical_root(root: &FsPath) -> PathBuf {
    std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf())
}

/// Where the monitor of the working copy at `root` (canonical, see [`canonical_root`])
/// listens: `.cairn/monitor.sock` when that path fits in a socket address, else
/// `cairn-monitor-<hash of the root>.sock` in `$XDG_RUNTIME_DIR` (a private folder) or the temp
/// folder. `None` when even that does not fit.
pub fn socket_path(root: &FsPath) -> Option<PathBuf> {
    let inside = root.join(META_DIR).join(SOCKET_NAME);
    if fits(&inside) {
        return Some(inside);
    }
    let folder = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .unwrap_or_else(std::env::temp_dir);
    let hash = blake3::hash(root.as_os_str().as_encoded_bytes()).to_hex();
    let outside = folder.join(format!("cairn-monitor-{}.sock", &hash[..32]));
    fits(&outside).then_some(outside)
}

/// True when `path` fits in a socket address.
pub fn fits(path: &FsPath) -> bool {
    path.as_os_str().len() <= MAX_SOCKET_PATH
}

/// Asks the monitor of the working copy at `root` what changed since `since`.
///
/// Never fails: any trouble reaching or understanding the monitor is [`Changes::Unavailable`].
pub fn changes_since(root: &FsPath, since: Option<&Token>) -> Changes {
    let request = RequestBody::Changes {
        since: since.map(|token| token.0.clone()),
    };
    match ask(root, &request, QUERY_TIMEOUT) {
        Some(AnswerBody::Everything { token }) => Changes::Everything {
            token: Token(token),
        },
        Some(AnswerBody::Paths { token, paths }) => {
            match paths.iter().map(|path| relative_path(path)).collect() {
                Some(paths) => Changes::Paths {
                    token: Token(token),
                    paths,
                },
                None => Changes::Unavailable,
            }
        }
        Some(AnswerBody::Stopping | AnswerBody::Error { .. }) | None => Changes::Unavailable,
    }
}

/// Asks the monitor of `root` to stop. True when one answered that it is stopping.
pub fn request_stop(root: &FsPath) -> bool {
    matches!(
        ask(root, &RequestBody::Stop, QUERY_TIMEOUT),
        Some(AnswerBody::Stopping)
    )
}

/// One conversation with the monitor of `root`: `None` on any failure (no socket, refused,
/// someone else's socket, timeout, an answer that does not parse or is of another version).
pub fn ask(root: &FsPath, body: &RequestBody, timeout: Duration) -> Option<AnswerBody> {
    let root = canonical_root(root);
    let socket = socket_path(&root)?;
    // Only a socket of the working copy's owner is trusted with the answer.
    let owner = std::fs::metadata(root.join(META_DIR)).ok()?.uid();
    if std::fs::symlink_metadata(&socket).ok()?.uid() != owner {
        return None;
    }
    let mut stream = UnixStream::connect(&socket).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let mut line = serde_json::to_vec(&Request {
        version: PROTOCOL,
        body: body.clone(),
    })
    .ok()?;
    line.push(b'\n');
    stream.write_all(&line).ok()?;
    // The read timeout is per read: bound the whole answer by a deadline as well.
    let deadline = std::time::Instant::now() + timeout;
    let mut reader = BufReader::new(Deadline { stream, deadline }).take(MAX_ANSWER);
    let mut answer = Vec::new();
    reader.read_until(b'\n', &mut answer).ok()?;
    let answer: Answer = serde_json::from_slice(&answer).ok()?;
    (answer.version == PROTOCOL).then_some(answer.body)
}

/// A stream whose reads fail once `deadline` has passed.
struct Deadline {
    stream: UnixStream,
    deadline: std::time::Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// A path of an answer, if it is relative and stays below the root.
fn relative_path(text: &str) -> Option<PathBuf> {
    let path = PathBuf::from(text);
    let normal = path
        .components()
        .all(|component| matches!(component, Component::Normal(_)));
    (normal && !text.is_empty()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_format_is_small_and_tagged() {
        let request = Request {
            version: PROTOCOL,
            body: RequestBody::Changes {
                since: Some("ab-3".into()),
            },
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(text, r#"{"version":1,"request":"changes","since":"ab-3"}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), request);
        let answer = Answer {
            version: PROTOCOL,
            body: AnswerBody::Paths {
                token: "ab-4".into(),
                paths: vec!["a/b.json".into()],
            },
        };
        let text = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            text,
            r#"{"version":1,"answer":"paths","token":"ab-4","paths":["a/b.json"]}"#
        );
        assert_eq!(serde_json::from_str::<Answer>(&text).unwrap(), answer);
    }

    #[test]
    fn answers_name_only_paths_below_the_root() {
        assert_eq!(relative_path("a/b.json"), Some(PathBuf::from("a/b.json")));
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a"] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_socket_moves_out_of_a_root_too_long_for_an_address() {
        // `/` + name + `/.cairn/monitor.sock` (20 bytes) at the limit and one past it.
        let at_limit = PathBuf::from(format!("/{}", "r".repeat(MAX_SOCKET_PATH - 21)));
        let inside = socket_path(&at_limit).unwrap();
        assert_eq!(inside.as_os_str().len(), MAX_SOCKET_PATH);
        assert!(inside.starts_with(&at_limit));
        let past = PathBuf::from(format!("/{}", "r".repeat(MAX_SOCKET_PATH - 20)));
        let outside = socket_path(&past).unwrap();
        assert!(!outside.starts_with(&past), "{outside:?}");
        assert!(fits(&outside));
        // The name depends on the root only.
        assert_eq!(socket_path(&past), Some(outside.clone()));
        let other = PathBuf::from(format!("/{}", "s".repeat(MAX_SOCKET_PATH - 20)));
        assert_ne!(socket_path(&other), Some(outside));
    }

    #[test]
    fn no_socket_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(META_DIR)).unwrap();
        assert_eq!(changes_since(dir.path(), None), Changes::Unavailable);
    }
}
