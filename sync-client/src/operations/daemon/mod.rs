//! `cairn daemon`: the optional file-system monitor of one working copy, the side that answers
//! `stores::monitor::changes_since` (the wire format and the socket's place are there).
//!
//! - It watches the whole folder (`notify`: inotify, FSEvents, ...) and numbers every
//!   notification it receives. A path of the working copy (not `.cairn/`, not our temp files)
//!   that a notification names is recorded with that number. A token is the daemon's random
//!   instance id and a number; the answer for a token is every path recorded after it,
//!   deduplicated ([`MonitorState`]).
//! - "Since" is exact thanks to git fsmonitor's cookie files: notifications arrive
//!   asynchronously, so for each query the daemon creates a file in `.cairn/monitor-cookies/`
//!   and answers only once the notification of that file has arrived. Notifications come in the
//!   order of the changes, so by then every change made before the query was sent has been
//!   recorded: an edit finished before the command started is always in its answer. If the
//!   cookie's notification does not come within [`COOKIE_TIMEOUT`], the answer is "walk
//!   everything".
//! - A new folder is recorded as itself (a folder path means "walk it all"), since files made
//!   in it before its own watch was added have no notifications. The watch on it is added a
//!   little after its notification (by `notify`'s thread, after the batch it came in), so for
//!   [`SETTLE`] after a folder appears every answer records it once more after its token: a
//!   file made in it in that gap is found by the next command's walk of the folder.
//! - The daemon answers "everything" for no token, another instance's token, a token from
//!   before a lost notification (inotify's queue overflowed: `notify`'s rescan flag), and once
//!   more than [`MAX_PATHS`] paths are recorded (they are forgotten: memory stays bounded). An
//!   error of the watcher itself (a folder it could not watch) makes every later answer
//!   "everything": the daemon can no longer vouch for any interval.
//! - One daemon per working copy (`.cairn/monitor.lock`, flock). It stops on a `stop` request
//!   (`cairn daemon --stop`) and by itself once `.cairn/` is gone. A socket left by a killed
//!   daemon refuses connections (the client then walks everything) and is replaced by the
//!   next daemon.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::error::{ClientError, io_error};
use crate::stores::META_DIR;
use crate::stores::monitor::{
    Answer, AnswerBody, MAX_REQUEST, PROTOCOL, Request, RequestBody, canonical_root, socket_path,
};

mod state;

pub use state::{MonitorState, Observed, classify};

/// The folder in `.cairn/` where the daemon makes its cookie files.
pub const COOKIE_DIR: &str = "monitor-cookies";
/// The daemon's lock file in `.cairn/`.
pub const LOCK_NAME: &str = "monitor.lock";
/// The most paths the daemon keeps; past it it forgets them and answers "everything" for the
/// tokens it gave before (a bulk change is walked faster than listed anyway).
pub const MAX_PATHS: usize = 100_000;
/// How long a query waits for the notification of its cookie before answering "everything".
/// Below the client's own timeout (`stores::monitor::QUERY_TIMEOUT`, 1 s).
pub const COOKIE_TIMEOUT: Duration = Duration::from_millis(600);
/// How long after a folder appears answers keep naming it again (see the module docs).
pub const SETTLE: Duration = Duration::from_secs(2);
/// How often the daemon checks that `.cairn/` still exists (and its stop flag, when no
/// connection wakes it).
const GUARD_INTERVAL: Duration = Duration::from_millis(250);
/// How long a connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("a file-system monitor already runs for {} (it holds {})", root.display(), lock.display())]
    Running { root: PathBuf, lock: PathBuf },
    #[error("could not watch {} for changes", root.display())]
    Watch {
        root: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error(
        "no socket path fits in a socket address for {} (neither in .cairn/ nor in \
         $XDG_RUNTIME_DIR or the temp folder)",
        root.display()
    )]
    NoSocketPath { root: PathBuf },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What the notification thread and the connections share.
struct Shared {
    state: MonitorState,
    /// Queries waiting for their cookie, by cookie name.
    waiting: HashMap<OsString, mpsc::Sender<()>>,
}

/// A running daemon's handles, for its connections.
struct Daemon {
    socket: PathBuf,
    cookies: PathBuf,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    next_cookie: AtomicU64,
}

/// Runs the monitor of the working copy at `root` until it is asked to stop or `.cairn/`
/// disappears. `ready` is called with the socket's path once queries are answered.
pub fn run(root: &FsPath, ready: impl FnOnce(&FsPath)) -> Result<(), DaemonError> {
    run_with(root, MAX_PATHS, ready)
}

/// [`run`], keeping at most `max_paths` paths.
pub fn run_with(
    root: &FsPath,
    max_paths: usize,
    ready: impl FnOnce(&FsPath),
) -> Result<(), DaemonError> {
    let root = canonical_root(root);
    let state_dir = root.join(META_DIR);
    let _lock = lock(&root)?;
    let socket =
        socket_path(&root).ok_or_else(|| DaemonError::NoSocketPath { root: root.clone() })?;
    let cookies = state_dir.join(COOKIE_DIR);
    match fs::remove_dir_all(&cookies) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(ClientError::io("remove", &cookies, error).into());
        }
        _ => {}
    }
    fs::create_dir(&cookies).map_err(io_error("create folder", &cookies))?;
    let shared = Arc::new(Mutex::new(Shared {
        state: MonitorState::new(MonitorState::random_instance(), max_paths),
        waiting: HashMap::new(),
    }));
    let _watcher = watch(&root, &shared)?;
    // A socket left by a daemon that was killed: ours now (the lock says no daemon runs).
    match fs::remove_file(&socket) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(ClientError::io("remove", &socket, error).into());
        }
        _ => {}
    }
    let listener = UnixListener::bind(&socket).map_err(io_error("listen on", &socket))?;
    // Only the owner may ask (it matters in a shared temp folder).
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o600))
        .map_err(io_error("set the permissions of", &socket))?;
    let daemon = Arc::new(Daemon {
        socket: socket.clone(),
        cookies: cookies.clone(),
        shared,
        stop: Arc::new(AtomicBool::new(false)),
        next_cookie: AtomicU64::new(0),
    });
    // Accept waits at most this long, so the loop sees a removed `.cairn/` (whose socket
    // may be gone with it: no connection could wake it up).
    rustix::net::sockopt::set_socket_timeout(
        &listener,
        rustix::net::sockopt::Timeout::Recv,
        Some(GUARD_INTERVAL),
    )
    .map_err(|error| ClientError::io("set a timeout on", &socket, error.into()))?;
    ready(&socket);
    while !daemon.stop.load(Ordering::SeqCst) && state_dir.is_dir() {
        match listener.accept() {
            Ok((connection, _)) => {
                let daemon = Arc::clone(&daemon);
                std::thread::spawn(move || daemon.serve(connection));
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A failed accept (out of files, say): that query is lost, and its client walks
            // the whole folder. A pause, so that a lasting failure does not spin.
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let _ = fs::remove_file(&socket);
    let _ = fs::remove_dir_all(&cookies);
    Ok(())
}

/// Takes the daemon's lock of the working copy at `root`.
fn lock(root: &FsPath) -> Result<fs::File, DaemonError> {
    let path = root.join(META_DIR).join(LOCK_NAME);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error("open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(DaemonError::Running {
            root: root.to_path_buf(),
            lock: path,
        }),
        Err(fs::TryLockError::Error(error)) => Err(ClientError::io("lock", &path, error).into()),
    }
}

/// Waits up to `timeout` for the daemon of `root` to end (its lock to be free). True when
/// none runs.
pub fn wait_stopped(root: &FsPath, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match lock(&canonical_root(root)) {
            Ok(_) => return true,
            Err(DaemonError::Running { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => return false,
        }
    }
}

/// Starts the recursive watch of `root`, feeding `shared`.
fn watch(
    root: &FsPath,
    shared: &Arc<Mutex<Shared>>,
) -> Result<notify::RecommendedWatcher, DaemonError> {
    let watch_error = |source| DaemonError::Watch {
        root: root.to_path_buf(),
        source,
    };
    let owned_root = root.to_path_buf();
    let shared = Arc::clone(shared);
    let handler = move |event: notify::Result<notify::Event>| {
        let now = Instant::now();
        let observed = classify(&owned_root, &event);
        if observed.is_empty() {
            // Reads and opens (a scan makes many), and paths of no interest.
            return;
        }
        let mut shared = shared.lock().unwrap_or_else(|poison| poison.into_inner());
        let was_broken = shared.state.is_broken();
        for observed in observed {
            if let Some(cookie) = shared.state.observe(observed, now)
                && let Some(waiter) = shared.waiting.remove(&cookie)
            {
                let _ = waiter.send(());
            }
        }
        if shared.state.is_broken() && !was_broken {
            let why = event
                .err()
                .map_or("the folder moved".to_owned(), |e| e.to_string());
            eprintln!(
                "cairn daemon: lost track of {} ({why}); every command walks the whole folder \
                 until the daemon is restarted",
                owned_root.display()
            );
        }
    };
    // Symbolic links are not followed: the scan skips them, and one to `/` would have the
    // daemon watch the whole machine.
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = <notify::RecommendedWatcher as notify::Watcher>::new(handler, config)
        .map_err(watch_error)?;
    notify::Watcher::watch(&mut watcher, root, notify::RecursiveMode::Recursive)
        .map_err(watch_error)?;
    Ok(watcher)
}

impl Daemon {
    /// Stops the accept loop (it is woken by a connection of our own).
    fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.socket);
    }

    /// Answers one connection: one request line, one answer line.
    fn serve(&self, mut connection: UnixStream) {
        let _ = connection.set_read_timeout(Some(REQUEST_TIMEOUT));
        let _ = connection.set_write_timeout(Some(REQUEST_TIMEOUT));
        let mut line = Vec::new();
        let read = connection.try_clone().map(|reader| {
            BufReader::new(reader)
                .take(MAX_REQUEST)
                .read_until(b'\n', &mut line)
        });
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        let body = match read {
            Ok(Ok(_)) => self.answer(&line),
            Ok(Err(error)) | Err(error) => AnswerBody::Error {
                message: format!("could not read the request: {error}"),
            },
        };
        let stopping = body == AnswerBody::Stopping;
        if let Ok(mut text) = serde_json::to_vec(&Answer {
            version: PROTOCOL,
            body,
        }) {
            text.push(b'\n');
            let _ = connection.write_all(&text);
        }
        drop(connection);
        if stopping {
            self.request_stop();
        }
    }

    /// The answer to one request line.
    fn answer(&self, line: &[u8]) -> AnswerBody {
        if !line.ends_with(b"\n") {
            return AnswerBody::Error {
                message: format!("a request is one line of at most {MAX_REQUEST} bytes"),
            };
        }
        let request: Request = match serde_json::from_slice(line) {
            Ok(request) => request,
            Err(error) => {
                return AnswerBody::Error {
                    message: format!("not a request: {error}"),
                };
            }
        };
        if request.version != PROTOCOL {
            return AnswerBody::Error {
                message: format!(
                    "protocol version {} is not spoken here (version {PROTOCOL} is)",
                    request.version
                ),
            };
        }
        match request.body {
            RequestBody::Changes { since } => self.changes(since.as_deref()),
            RequestBody::Stop => AnswerBody::Stopping,
        }
    }

    /// What changed since `since`, once the cookie made now has come through.
    fn changes(&self, since: Option<&str>) -> AnswerBody {
        let name = OsString::from(format!(
            "{}-{}",
            std::process::id(),
            self.next_cookie.fetch_add(1, Ordering::Relaxed)
        ));
        let (sender, arrived) = mpsc::channel();
        self.lock_shared().waiting.insert(name.clone(), sender);
        let cookie = self.cookies.join(&name);
        let synced =
            fs::File::create(&cookie).is_ok() && arrived.recv_timeout(COOKIE_TIMEOUT).is_ok();
        let _ = fs::remove_file(&cookie);
        let mut shared = self.lock_shared();
        shared.waiting.remove(&name);
        shared.state.answer(since, synced, Instant::now())
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}
